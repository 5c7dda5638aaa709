"""Money, instants, payment validation and the store, without any server."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rinha.clock import InstantError, iso_from_ms, iso_from_us, parse_instant_us
from rinha.money import MAX_AMOUNT_CENTS, AmountError, format_cents, parse_cents
from rinha.payment import _CANONICAL, PaymentError, _parse_json, parse_payment
from rinha.store.base import ACCEPT, CLAIM, DEAD, LEASE, PAID, PIN, RELEASE, RENEW
from tests.support.engines import ENGINES, apply, migrated_store


@pytest.mark.parametrize("value,cents", [(Decimal("19.90"), 1990), (Decimal("0.01"), 1), (7, 700),
                                         (Decimal("1.500"), 150), ("3.2", 320)])
def test_parse_cents(value, cents):
    assert parse_cents(value) == cents


@pytest.mark.parametrize("value", [Decimal("0"), Decimal("-1"), Decimal("0.001"), Decimal("NaN"), True, None, 1.5,
                                   Decimal(MAX_AMOUNT_CENTS + 1) / 100, "abc"])
def test_parse_cents_rejects(value):
    with pytest.raises(AmountError):
        parse_cents(value)


def test_format_cents():
    assert format_cents(1990) == "19.90"
    assert format_cents(5) == "0.05"
    assert format_cents(0) == "0.00"
    assert format_cents(-250) == "-2.50"


def test_instants_round_trip():
    assert iso_from_ms(1752582896789) == "2025-07-15T12:34:56.789Z"
    assert parse_instant_us("2025-07-15T12:34:56.789Z") == 1752582896789000
    assert parse_instant_us("2025-07-15T12:34:56.789") == 1752582896789000  # no offset: UTC
    assert parse_instant_us("2025-07-15T14:34:56.789+02:00") == 1752582896789000
    assert parse_instant_us("2025-07-15T12:34:56.7891239Z") == 1752582896789123  # truncated, not rounded
    assert iso_from_us(1752582896789123) == "2025-07-15T12:34:56.789123Z"
    with pytest.raises(InstantError):
        parse_instant_us("yesterday")


def test_payment_lower_cases_the_id():
    payment = parse_payment(b'{"correlationId":"4A7901B8-7D26-4D9D-AA19-4DC1C7CF60B3","amount":19.9}')
    assert payment.correlation_id == "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3"
    assert payment.amount_cents == 1990
    with pytest.raises(PaymentError) as info:
        parse_payment(b'{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":"19.90"}')
    assert info.value.field == "amount"


_ID = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3"


@pytest.mark.parametrize("amount, message", [
    ("1e999999999", "at most 1000000000.00"),  # arithmetic on it overflows the decimal context
    ("1.5e999999", "at most 1000000000.00"),
    ("1234567890123456789012345678.001", "at most 1000000000.00"),  # quantize would need 32 digits
    ("9e999999999999999999", "at most 1000000000.00"),  # beyond any decimal's exponent
    ("1e-9999999999999999999", "at most 2 decimal places"),
    pytest.param("9" * 5000, "at most 1000000000.00", id="5000-digits"),  # past int()'s 4,300 digits
    ("1e-9999999", "at most 2 decimal places"),  # x100 underflows to 0 in the context
    ("1E-999999", "at most 2 decimal places"),
])
def test_amounts_beyond_any_range_are_refused_as_amounts(amount, message):
    with pytest.raises(PaymentError) as info:
        parse_payment(('{"correlationId":"%s","amount":%s}' % (_ID, amount)).encode())
    assert info.value.field == "amount" and message in info.value.message, info.value.message


def test_cents_are_exact_from_the_digits():
    assert parse_cents(Decimal("19.900000000000000000000000000000000000")) == 1990
    assert parse_cents(Decimal("1E+9")) == MAX_AMOUNT_CENTS
    assert parse_cents(Decimal("0.0100")) == 1
    assert parse_payment(('{"correlationId":"%s","amount":%s}' % (_ID, "7." + "0" * 60)).encode()).amount_cents == 700
    with pytest.raises(AmountError, match="2 decimal places"):
        parse_cents(Decimal("0." + "0" * 40 + "1"))


@pytest.mark.parametrize("body, key", [
    ('{"correlationId":"%s","amount":1,"amount":2}' % _ID, "amount"),
    ('{"correlationId":"%s","correlationId":"%s","amount":3}' % (_ID, _ID.upper()), "correlationId"),
    ('{"correlationId":"%s","amount":1,"extra":{"a":1,"a":2}}' % _ID, "a"),
])
def test_a_key_given_twice_makes_the_body_ambiguous(body, key):
    with pytest.raises(PaymentError) as info:
        parse_payment(body.encode())
    assert info.value.field == "body" and info.value.message == f"request body has the key {key!r} more than once"


def test_nesting_is_judged_by_structure_not_by_braces_in_strings():
    note = "{[" * 40
    assert parse_payment(('{"correlationId":"%s","amount":19.90,"note":"%s"}' % (_ID, note)).encode()).amount_cents == 1990
    with pytest.raises(PaymentError) as info:
        parse_payment(b"[" * 60000)
    assert info.value.message == "request body is nested too deeply"


def _outcome(parse, body: bytes):
    try:
        return parse(body)
    except PaymentError as exc:
        return ("error", exc.field, exc.message)


_JSON_SPACE = st.text(alphabet=" \t\n\r", max_size=2)
_NEAR_SPACE = st.sampled_from(["", " ", "\x0b", "\x0c", "\u00a0"])  # not JSON whitespace
_IDS = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
                 st.sampled_from(["", "not-a-uuid", "4a7901b87d264d9daa194dc1c7cf60b3",
                                  "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b", "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3z"]))
_AMOUNTS = st.one_of(
    st.decimals(min_value=0, max_value=10**10, places=2).map(str),
    st.sampled_from(["0", "00", "01", "0.0", "0.01", "1.", ".5", "19.9", "19.90", "19.900", "19.901", "-1",
                     "1e2", "1E-2", "999999999.99", "1000000000.00", "1000000000.01", "9999999999999",
                     "\"19.90\"", "true", "null", "NaN", "Infinity", "[1]"]))


@given(space=st.lists(st.one_of(_JSON_SPACE, _NEAR_SPACE), min_size=8, max_size=8), cid=_IDS, amount=_AMOUNTS,
       swapped=st.booleans())
@settings(max_examples=400, deadline=None)
def test_the_canonical_fast_path_means_what_the_json_path_means(space, cid, amount, swapped):
    """Whatever the body, the shortcut for the usual shape answers exactly what full JSON parsing does."""
    a, b, c, d, e, f, g, h = space
    fields = [f'{b}"correlationId"{c}:{d}"{cid}"', f'{e}"amount"{f}:{g}{amount}']
    if swapped:
        fields.reverse()
    body = f"{a}{{{fields[0]},{fields[1]}{h}}}{a}".encode()
    assert _outcome(parse_payment, body) == _outcome(_parse_json, body)


def test_the_canonical_fast_path_takes_the_contest_body():
    body = b'{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.9}'
    assert _CANONICAL.fullmatch(body) is not None
    assert parse_payment(body).amount_cents == 1990


@pytest.fixture(params=ENGINES)
def store(request, tmp_path):
    """The store on each engine: a SQLite file, then a fresh database on a real PostgreSQL server."""
    if request.param == "postgres":
        db = request.getfixturevalue("postgres_server").create_database()
    else:
        db = str(tmp_path / "s.db")
    store = migrated_store(db)
    yield store
    store.close()


def test_accept_is_idempotent_by_id_and_amount(store):
    assert apply(store, ACCEPT, "a", 100, 1, "me", 10) == "new"
    assert apply(store, ACCEPT, "a", 100, 2, "me", 10) == "same"
    assert apply(store, ACCEPT, "a", 101, 3, "me", 10) == "conflict"
    assert store.counts() == {"pending": 1, "paid": 0, "dead": 0}


def test_summary_counts_paid_by_requested_at_inclusive(store):
    for i, cid in enumerate("abc"):
        apply(store, ACCEPT, cid, 1990, 1, None, 0)
        apply(store, PAID, cid, "default" if cid != "c" else "fallback", f"t{i}", 1000 + i, 5, 1)
    apply(store, ACCEPT, "d", 5, 1, None, 0)  # pending: never counted
    summary = store.summary(1000, 1001)
    assert (summary.default.requests, summary.default.amount_cents) == (2, 3980)
    assert summary.fallback.requests == 0
    assert store.summary(None, None).fallback.requests == 1
    assert store.summary(1003, 1000).default.requests == 0
    assert summary.contest_json() == (b'{"default":{"totalRequests":2,"totalAmount":39.80},'
                                      b'"fallback":{"totalRequests":0,"totalAmount":0.00}}')


def test_paid_and_dead_are_final(store):
    apply(store, ACCEPT, "a", 100, 1, None, 0)
    apply(store, PAID, "a", "default", "t", 5, 6, 1)
    apply(store, PAID, "a", "fallback", "t2", 7, 8, 2)  # a second record changes nothing
    apply(store, DEAD, "a", "late", 9)
    row = store.payment("a")
    assert (row["state"], row["processor"], row["requested_at"]) == ("paid", "default", "t")


def test_claims_and_leases(store):
    apply(store, ACCEPT, "mine", 1, 1, "A", 1000)
    apply(store, ACCEPT, "free", 1, 1, None, 0)
    apply(store, PIN, "free", "fallback", True)
    claimed = apply(store, CLAIM, "B", 500, 2000, 10)
    assert [(c.correlation_id, c.pinned, c.ambiguous) for c in claimed] == [("free", "fallback", True)]
    assert apply(store, CLAIM, "C", 999, 3000, 10) == []  # A's lease runs until 1000
    apply(store, RENEW, "A", 5000)
    assert apply(store, CLAIM, "C", 1500, 3000, 10) == []
    apply(store, RELEASE, "A")  # A hands its payments back
    claimed = apply(store, CLAIM, "C", 1500, 3000, 10)
    assert [(c.correlation_id, c.pinned, c.ambiguous) for c in claimed] == [("mine", None, False)]


def test_the_cheap_claimable_read_agrees_with_the_claim(tmp_path):
    """The dispatcher skips a claim when this read says nothing is claimable: it must never say
    so while a claim would take something."""
    store = migrated_store(str(tmp_path / "s.db"))
    try:
        def agree(owner, now):
            before = store.claimable_now(now)
            claimed = apply(store, CLAIM, owner, now, now + 1000, 10)
            assert before == bool(claimed), (now, claimed)
            return [c.correlation_id for c in claimed]

        assert agree("B", 0) == []  # empty store
        apply(store, ACCEPT, "mine", 1, 1, "A", 1000)
        apply(store, ACCEPT, "paid", 1, 1, None, 0)
        apply(store, PAID, "paid", "default", "t", 5, 6, 1)
        assert agree("B", 999) == []  # A's lease holds; the paid one is never claimable
        apply(store, ACCEPT, "free", 1, 1, None, 0)
        assert agree("B", 999) == ["free"]
        assert agree("C", 1000) == []  # B now holds "free" until 1999; A's lease ends at 1000
        assert agree("C", 1001) == ["mine"]
    finally:
        store.close()


def test_a_payment_adopted_from_a_dead_owner_is_ambiguous_where_it_was_bound(store):
    apply(store, ACCEPT, "at-default", 1, 1, "A", 1000)
    apply(store, ACCEPT, "at-fallback", 1, 1, "A", 1000)
    apply(store, PIN, "at-fallback", "fallback", False)
    # A died: nobody renewed its lease, which ran out at 1000
    claimed = sorted(apply(store, CLAIM, "B", 1001, 5000, 10), key=lambda c: c.correlation_id)
    assert [(c.correlation_id, c.pinned, c.ambiguous) for c in claimed] == [
        ("at-default", "default", True), ("at-fallback", "fallback", True)]
    assert store.payment("at-default")["ambiguous"] in (1, True)


def test_named_lease_has_one_holder(store):
    assert apply(store, LEASE, "health", "A", 0, 100)
    assert not apply(store, LEASE, "health", "B", 50, 150)
    assert apply(store, LEASE, "health", "A", 60, 160)  # renewal
    assert apply(store, LEASE, "health", "B", 161, 300)  # expired: taken over
    assert not apply(store, LEASE, "health", "A", 200, 400)


def test_migrate_twice_is_harmless(store):
    store.migrate()
    assert store.counts()["pending"] == 0
