"""Pure rules of the processor emulator: body binding, GUIDs, dates, decimals, storage, summary."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rinha.clock import iso_from_ms
from rinha.emulator.app import json_number, net_json_string, route_segments
from rinha.emulator.binding import (
    EMPTY_GUID,
    MAX_TICKS,
    BindingError,
    bind_field,
    bind_payment,
    bind_payment_json,
    bind_summary_bounds,
    fold,
    json_charset,
    net_decimal,
    parse_guid,
    parse_iso_datetime,
    parse_lenient_datetime,
    read_bool,
    read_canonical_payment,
    read_decimal,
    read_int32,
    read_json_object,
    read_nullable_string,
)
from rinha.emulator.ledger import INFINITY, MINUS_INFINITY, Ledger, format_timestamp, stored_amount, stored_timestamp
from rinha.processor import payment_body

JSON = b"application/json"
GUID = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3"


def status_of(call, *args) -> int:
    with pytest.raises(BindingError) as caught:
        call(*args)
    return caught.value.status


def stored_text(iso: str) -> str:
    """What GET /payments/{id} shows for a requestedAt sent as ``iso``."""
    ticks = parse_iso_datetime(iso)
    assert ticks is not None, iso
    return format_timestamp(stored_timestamp(ticks))


# --- the body ----------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    b"application/json", b"Application/JSON", b"application/json; charset=utf-8", b"application/json;charset=UTF-8",
    b"application/problem+json", b"text/vnd.x+JSON", b" application / json ", b'application/json; charset="utf-8"',
])
def test_json_content_types(content_type):
    assert read_json_object(b"{}", content_type) == []


@pytest.mark.parametrize("content_type", [None, b"text/plain", b"text/json", b"application/jsonx", b"application/x-json",
                                          b"application/json, text/plain", b"application", b"application/json;"])
def test_non_json_content_type_is_415(content_type):
    assert status_of(read_json_object, b"{}", content_type) == 415


def test_no_body_is_400_whatever_the_content_type():
    assert status_of(read_json_object, b"", None) == 400
    assert status_of(read_json_object, b"", b"text/plain") == 400


def test_charset_unknown_to_dotnet_is_500_and_known_ones_decode():
    assert status_of(read_json_object, b"{}", b"application/json; charset=utf8") == 500
    assert json_charset(b"application/json; charset=latin1") == "latin-1"
    body = '{"token":"é"}'.encode("utf-16-le")
    assert read_json_object(body, b"application/json; charset=utf-16") == [("token", "é")]


@pytest.mark.parametrize("body", [
    b"[]", b"null", b"1", b'"x"', b"{", b'{"a":1,}', b'{"a":NaN}', b'{"a":Infinity}', b"{} {}", b"{/*c*/}",
    b"{'a':1}", b'{"a":01}', b'{"a":"\x01"}', b"\xff{}",
])
def test_invalid_json_or_not_an_object_is_400(body):
    assert status_of(read_json_object, body, JSON) == 400


def test_bom_and_whitespace_are_accepted():
    assert read_json_object(b'\xef\xbb\xbf \r\n\t{"a":1} ', JSON) == [("a", 1)]


def test_depth_limit_is_64():
    def nested(depth: int) -> bytes:
        return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    assert read_json_object(nested(64), JSON)
    assert status_of(read_json_object, nested(65), JSON) == 400
    assert status_of(read_json_object, nested(5000), JSON) == 400


def test_payment_defaults():
    payment = bind_payment(b"{}", JSON)
    assert (payment.correlation_id, payment.amount, payment.requested_at) == (EMPTY_GUID, 0, 0)


def test_payment_names_are_case_insensitive_last_wins_unknown_ignored():
    body = (b'{"CORRELATIONID":"' + GUID.upper().encode() + b'","amount":1,"Amount":"2.50","extra":[{"x":null}],'
            b'"requestedat":"2025-07-10T12:00:00Z"}')
    payment = bind_payment(body, JSON)
    assert payment.correlation_id == GUID
    assert payment.amount == Decimal("2.50") and str(payment.amount) == "2.50"
    assert payment.requested_at == parse_iso_datetime("2025-07-10T12:00:00Z")


def test_every_duplicate_must_be_valid():
    assert status_of(bind_payment, b'{"amount":null,"amount":1}', JSON) == 400


def _bound(bind, body: bytes, content_type: bytes | None = JSON):
    """What a binder makes of a body: the payment with its amount's exact digits and scale, or the status."""
    try:
        payment = bind(body, content_type)
    except BindingError as exc:
        return exc.status
    return payment.correlation_id, payment.amount.as_tuple(), payment.requested_at


@given(st.uuids(), st.integers(min_value=1, max_value=10**15), st.integers(min_value=0, max_value=253402300799999))
def test_the_daemons_payment_bodies_take_the_canonical_reading_and_bind_as_the_json_reader_binds_them(
        correlation_id, cents, ms):
    body = payment_body(str(correlation_id), cents, iso_from_ms(ms))
    assert read_canonical_payment(body, JSON) is not None
    assert _bound(bind_payment, body) == _bound(bind_payment_json, body)


def _digits(low: int, high: int, width: int):
    return st.integers(min_value=low, max_value=high).map(lambda n: str(n).zfill(width))


#: Bodies near the canonical shape: any GUID case, amounts with leading zeros, a sign, many or no
#: decimals, impossible dates and times, fractions of other lengths, other zones.
_NEAR_CANONICAL = st.builds(
    lambda guid, amount, date, time, fraction, zone: (
        '{"correlationId":"%s","amount":%s,"requestedAt":"%sT%s%s%s"}' % (guid, amount, date, time, fraction, zone)).encode(),
    st.one_of(st.uuids().map(str), st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), st.just(EMPTY_GUID)),
    st.one_of(st.integers(min_value=0, max_value=10**6).map(lambda c: f"{c // 100}.{c % 100:02d}"),
              st.from_regex(r"-?[0-9]{1,17}(\.[0-9]{0,4})?", fullmatch=True)),
    st.builds("{}-{}-{}".format, _digits(0, 9999, 4), _digits(0, 13, 2), _digits(0, 32, 2)),
    st.builds("{}:{}:{}".format, _digits(0, 24, 2), _digits(0, 60, 2), _digits(0, 60, 2)),
    st.sampled_from([".123"] * 6 + ["", ".", ".1", ".12", ".1234", ".1234567"]),
    st.sampled_from(["Z"] * 6 + ["", "+01:00", "z"]),
)


@settings(max_examples=1000)  # ~1 in 20 of these bodies is canonical
@given(_NEAR_CANONICAL, st.sampled_from([JSON] * 4 + [b"application/json; charset=utf-8", b"text/plain"]))
def test_the_canonical_reading_answers_what_the_json_reader_answers_or_nothing(body, content_type):
    canonical = read_canonical_payment(body, content_type)
    if canonical is not None:
        assert _bound(read_canonical_payment, body, content_type) == _bound(bind_payment_json, body, content_type)
    assert _bound(bind_payment, body, content_type) == _bound(bind_payment_json, body, content_type)


def test_the_canonical_reading_leaves_what_it_cannot_tell_to_the_json_reader():
    guid = GUID.encode()
    taken = b'{"correlationId":"' + guid + b'","amount":19.90,"requestedAt":"2025-07-15T12:34:56.789Z"}'
    assert read_canonical_payment(taken, JSON) == bind_payment_json(taken, JSON)
    for body in (taken.replace(b"19.90", b"019.90"),  # a leading zero: invalid JSON, 400
                 taken.replace(b"-07-", b"-13-"),  # no such month: 400
                 taken.replace(b"2025-07-15", b"2025-02-29"),  # no such days either
                 taken.replace(b"2025-07-15", b"2024-02-30"),
                 taken.replace(b"2025-07-15", b"2025-04-31"),
                 taken.replace(b"2025-07-15", b"0000-01-01"),
                 taken.replace(b"12:34:56", b"24:00:00"),
                 taken.replace(b"12:34:56", b"23:59:60"),
                 taken.replace(guid, guid.upper()),  # the reader lower-cases it
                 taken.replace(guid, guid[:8].upper() + guid[8:]),
                 taken.replace(b"Z", b"+01:00"),  # moved to UTC by the reader
                 taken.replace(b"19.90", b"-19.90"),
                 taken.replace(b",", b", "),
                 taken.replace(b'"amount":19.90,', b"") + b" "):
        assert read_canonical_payment(body, JSON) is None, body
    assert read_canonical_payment(taken, b"application/json; charset=utf-8") is None
    assert status_of(bind_payment, taken.replace(b"19.90", b"019.90"), JSON) == 400
    assert status_of(bind_payment, taken.replace(b"-07-", b"-13-"), JSON) == 400
    assert status_of(bind_payment, taken.replace(b"2025-07-15", b"2025-02-29"), JSON) == 400
    leap_day = taken.replace(b"2025-07-15", b"2024-02-29")
    assert read_canonical_payment(leap_day, JSON) == bind_payment_json(leap_day, JSON)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    | st.sampled_from(["19.90", "1e-99999999999999999999", GUID, "2025-07-10T12:00:00Z", "\ud800"]),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=10)
_FIELDS = st.sampled_from(["correlationId", "amount", "requestedAt", "AMOUNT", "token", "delay", "x"])


@given(st.dictionaries(_FIELDS, _JSON_VALUES))
def test_any_json_object_binds_or_is_refused(document):
    import json

    for body in (json.dumps(document).encode(), json.dumps(document).replace('"19.90"', "1e99999999999999999999").encode()):
        try:
            bind_payment(body, JSON)
            bind_field(body, JSON, "delay", read_int32, 0)
            bind_field(body, JSON, "token", read_nullable_string, None)
        except BindingError as exc:
            assert exc.status == 400


@given(st.binary(max_size=200))
def test_any_bytes_bind_or_are_refused(body):
    try:
        bind_payment(body, JSON)
    except BindingError as exc:
        assert exc.status == 400


@given(st.text(max_size=80) | st.text(alphabet="0123456789-:.TZ+{}(),x ", max_size=80))
def test_text_parsers_never_raise(text):
    parse_guid(text)
    parse_iso_datetime(text)
    parse_lenient_datetime(text)
    try:
        bind_summary_bounds(b"from=" + text.encode() + b"&to=" + text.encode())
    except BindingError as exc:
        assert exc.status == 400


def test_dotnet_case_folding():
    assert fold("requeſtedAt") == fold("REQUESTEDAT")  # U+017F upper-cases to S, as in .NET
    assert fold("\u212amount") != fold("kmount")  # the Kelvin sign stays itself


@pytest.mark.parametrize("value", [GUID, GUID.upper()])
def test_body_guid_hyphenated(value):
    assert bind_payment(b'{"correlationId":"' + value.encode() + b'"}', JSON).correlation_id == GUID


@pytest.mark.parametrize("value", ["{" + GUID + "}", GUID.replace("-", ""), " " + GUID, "(" + GUID + ")", None, 1, "",
                                   GUID[:-1] + "g", [GUID]])
def test_body_guid_other_forms_are_400(value):
    with pytest.raises(BindingError):
        bind_payment(b'{"correlationId":' + _json(value) + b"}", JSON)


def _json(value) -> bytes:
    import json

    return json.dumps(value).encode()


@pytest.mark.parametrize("raw, expected", [
    (b"19.90", "19.90"), (b"19.9", "19.9"), (b"19", "19"), (b"-5", "-5"), (b"1E2", "100"), (b"1.0E2", "100"),
    (b"1.50E1", "15.0"), (b"100E-2", "1.00"), (b"0.000", "0.000"), (b"-0", "0"), (b'"19.90"', "19.90"),
    (b'"+1"', "1"), (b'".5"', "0.5"), (b'"5."', "5"), (b'"1e-2"', "0.01"), (b'"00012.3"', "12.3"),
    (b"79228162514264337593543950335", "79228162514264337593543950335"),
    (b"0.1234567890123456789012345678901", "0.1234567890123456789012345679"),
    (b"1E-40", "0.0000000000000000000000000000"),
])
def test_amount_reading(raw, expected):
    assert format(read_decimal(read_json_object(b'{"a":' + raw + b"}", JSON)[0][1]), "f") == expected


@pytest.mark.parametrize("raw", [b"null", b"true", b'""', b'" 1"', b'"1 "', b'"1_000"', b'"NaN"', b'"."', b'"e5"',
                                 "\"\u0661\"".encode(), b'"0x10"', b"79228162514264337593543950336", b"1E29",
                                 b'"-79228162514264337593543950336"', b"{}", b"[1]"])
def test_amount_invalid_is_400(raw):
    assert status_of(read_decimal, read_json_object(b'{"a":' + raw + b"}", JSON)[0][1]) == 400


@pytest.mark.parametrize("amount, stored", [
    ("0.125", "0.12"), ("0.135", "0.14"), ("1.015", "1.02"), ("1.025", "1.02"), ("19.9", "19.9"), ("19.90", "19.90"),
    ("19", "19"), ("-0.001", "0.00"), ("-5.555", "-5.56"), ("2.675", "2.68"), ("0.1250000000000000000000000000", "0.12"),
])
def test_stored_amount_is_bankers_rounding_keeping_small_scales(amount, stored):
    assert format(stored_amount(Decimal(amount)), "f") == stored


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**9, max_value=10**9))
def test_stored_amount_matches_round_half_even(amount):
    expected = amount if amount.as_tuple().exponent >= -2 else amount.quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    assert stored_amount(amount) == expected


def test_double_rounding_like_dotnet():
    # 29 decimals: .NET's parser first rounds to 28 (…25000…0), then Round(…, 2) sees a tie.
    amount = read_decimal(Decimal("0.12500000000000000000000000001"))
    assert format(stored_amount(amount), "f") == "0.12"


@pytest.mark.parametrize("value, expected", [(100, 100), ("100", 100), ("+5", 5), ("-0", 0), ("007", 7), (-2**31, -2**31),
                                             (2**31 - 1, 2**31 - 1)])
def test_int32(value, expected):
    assert read_int32(value) == expected


@pytest.mark.parametrize("raw", [b"1.5", b"1.0", b"1e2", b'"1.5"', b'" 1"', b"true", b"null", b"2147483648",
                                 b'"-2147483649"', b'"1e2"', b"[]"])
def test_int32_invalid(raw):
    assert status_of(read_int32, read_json_object(b'{"a":' + raw + b"}", JSON)[0][1]) == 400


def test_bool_and_nullable_string():
    assert read_bool(True) is True and read_bool(False) is False
    for value in ("true", 1, None, 0):
        assert status_of(read_bool, value) == 400
    assert read_nullable_string(None) is None and read_nullable_string("") == ""
    assert status_of(read_nullable_string, 123) == 400
    assert status_of(read_nullable_string, "\ud800") == 400


def test_admin_field_defaults_and_case():
    assert bind_field(b"{}", JSON, "delay", read_int32, 0) == 0
    assert bind_field(b'{"DELAY":"250","other":true}', JSON, "delay", read_int32, 0) == 250
    assert bind_field(b'{"token":null}', JSON, "token", read_nullable_string, "x") is None
    assert status_of(bind_field, b"null", JSON, "delay", read_int32, 0) == 400


# --- dates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("iso, shown", [
    ("2025-07-10T12:34:56.789Z", "2025-07-10T12:34:56.789"),
    ("2025-07-10T12:34:56.789", "2025-07-10T12:34:56.789"),
    ("2025-07-10T12:34:56.1234567", "2025-07-10T12:34:56.123456"),
    ("2025-07-10T12:34:56.1234567891234567", "2025-07-10T12:34:56.123456"),
    ("2025-07-10T12:34:56.000000", "2025-07-10T12:34:56"),
    ("2025-07-10T12:34:56.Z", "2025-07-10T12:34:56"),
    ("2025-07-10T12:34:56+02:00", "2025-07-10T10:34:56"),
    ("2025-07-10T00:30-03", "2025-07-10T03:30:00"),
    ("2025-07-10T12:34Z", "2025-07-10T12:34:00"),
    ("2025-07-10", "2025-07-10T00:00:00"),
    ("2024-02-29T23:59:59.999999+14:00", "2024-02-29T09:59:59.999999"),
    ("0001-01-01T00:00:00", "0001-01-01T00:00:00"),
    ("0001-01-01T00:00:00.0000001", "0001-01-01T00:00:00.000001"),  # truncated toward 2000, so up
    ("9999-12-31T23:59:59.9999999", "9999-12-31T23:59:59.9999999"),
    ("1999-12-31T23:59:59.9999995", "2000-01-01T00:00:00"),  # Npgsql truncates toward 2000
])
def test_requested_at_as_stored_and_shown(iso, shown):
    assert stored_text(iso) == shown


@pytest.mark.parametrize("text", [
    "2025-07-10 12:34:56", "2025-07-10t12:34:56", "2025-07-10T12:34:56z", "2025-07-10T12:34:56.", "2025-07-10Z",
    "2025-07-10T12", "2025-07-10T12:34:5", "2025-07-10T24:00:00", "2025-07-10T12:60:00", "2025-07-10T12:34:60",
    "2025-02-29", "2025-13-01", "0000-01-01", "2025-7-10", "2025-07-10T12:34:56.12345678912345678",
    "2025-07-10T12:34:56+1400", "2025-07-10T12:34:56+14:01", "2025-07-10T12:34:56+15:00", "2025-07-10T12:34:56+01:60",
    "0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", " 2025-07-10", "2025-07-10T12:34:56Z ",
    "２０２５-07-10", "",
])
def test_requested_at_refused(text):
    assert parse_iso_datetime(text) is None


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_requested_at_roundtrip_at_microseconds(moment):
    iso = moment.isoformat(timespec="microseconds")
    shown = stored_text(iso + "Z")
    assert datetime.fromisoformat(shown) == moment


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
       st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_offsets_convert_to_utc(moment, offset_minutes):
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    iso = f"{moment.isoformat(timespec='microseconds')}{sign}{hours:02d}:{minutes:02d}"
    expected = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes))).astimezone(timezone.utc)
    assert datetime.fromisoformat(stored_text(iso)) == expected.replace(tzinfo=None)


def test_infinities():
    assert stored_timestamp(0) == MINUS_INFINITY
    assert stored_timestamp(MAX_TICKS) == INFINITY
    assert format_timestamp(MINUS_INFINITY) == "0001-01-01T00:00:00"


@pytest.mark.parametrize("text, iso", [
    ("2025-07-10T12:34:56.789Z", "2025-07-10T12:34:56.789Z"),
    ("  2025-07-10T12:34:56.789Z\u3000", "2025-07-10T12:34:56.789Z"),
    ("2025-07-10 12:34:56", "2025-07-10T12:34:56"),
    ("2025-07-10", "2025-07-10T00:00:00"),
    ("2025/7/1 1:02", "2025-07-01T01:02:00"),
    ("7/10/2025 12:34:56", "2025-07-10T12:34:56"),
    ("2025-07-10T12:34:56+0130", "2025-07-10T11:04:56Z"),
    ("2025-07-10T12:34:56-3", "2025-07-10T15:34:56Z"),
    ("2025-07-10T12:34:56.12345678", "2025-07-10T12:34:56.1234568"),
    ("2025-07-10T12:34:56." + "1" * 5000, "2025-07-10T12:34:56.1111111"),
])
def test_lenient_summary_bounds(text, iso):
    assert parse_lenient_datetime(text) == parse_iso_datetime(iso)


@pytest.mark.parametrize("text", ["", "yesterday", "2025-07-32", "2025-07-10T25:00", "2025-07-10T12:34:56 01:00",
                                  "2025-07-10X12:00"])
def test_lenient_summary_bounds_refused(text):
    assert parse_lenient_datetime(text) is None


def test_summary_query():
    assert bind_summary_bounds(b"") == (None, None)
    assert bind_summary_bounds(b"from=&to=2025-07-10") == (None, parse_iso_datetime("2025-07-10"))
    assert bind_summary_bounds(b"FROM=2025-07-10T00%3A00%3A00Z&To=2025-07-10+01:00") == (
        parse_iso_datetime("2025-07-10T00:00:00Z"), parse_iso_datetime("2025-07-10T01:00"))
    for query in (b"from=nope", b"to=2025-07-10&to=2025-07-11", b"from", b"to=2025-07-10T12:00:00+01:00"):
        if query == b"from":
            assert bind_summary_bounds(query) == (None, None)
        else:
            assert status_of(bind_summary_bounds, query) == 400


# --- GUIDs in routes -------------------------------------------------------------------------------


@given(st.uuids())
def test_route_guid_forms(value):
    text = str(value)
    for form in (text, text.upper(), value.hex, "{" + text + "}", "(" + text.upper() + ")", f" \t{text}\u00a0"):
        assert parse_guid(form) == text


@pytest.mark.parametrize("text, expected", [
    ("{0x4a7901b8,0x7d26,0x4d9d,{0xaa,0x19,0x4d,0xc1,0xc7,0xcf,0x60,0xb3}}", GUID),
    ("{ 0x4a7901b8 , 0X7d26,0x4d9d,{0xaa,0x19,0x4d,0xc1,0xc7,0xcf,0x60,0x+0xb3}}", GUID),
    ("{0x1,0x2,0x3,{0x4,0x5,0x6,0x7,0x8,0x9,0xa,0xb}}", "00000001-0002-0003-0405-060708090a0b"),
    ("{0x1,0x12345,0x3,{0x4,0x5,0x6,0x7,0x8,0x9,0xa,0xb}}", "00000001-2345-0003-0405-060708090a0b"),
    ("+0x79018-+7d2-0x9d-+0x1-+0x1c7cf60b3", "00079018-07d2-009d-0001-0001c7cf60b3"),
    ("0x7901b8-7d26-4d9d-aa19-4dc1c7cf60b3", "007901b8-7d26-4d9d-aa19-4dc1c7cf60b3"),
])
def test_route_guid_legacy_forms(text, expected):
    assert parse_guid(text) == expected


@pytest.mark.parametrize("text", [
    "", "nope", GUID[:-1], GUID + "0", GUID.replace("-", "")[:-1] + "g", "{" + GUID, "{" + GUID + ")", "(" + GUID + "}",
    "\x1c" + GUID, GUID.replace("-", "+", 1), "0x" + GUID, GUID[:24] + "+0x1" + GUID[28:-1] + "x",
    "{0x1,0x2,0x3,{0x4,0x5,0x6,0x7,0x8,0x9,0xa,0x100}}", "{0x1,0x2,0x3,{0x4,0x5,0x6,0x7,0x8,0x9,0xa}}",
    "{0x123456789,0x2,0x3,{0x4,0x5,0x6,0x7,0x8,0x9,0xa,0xb}}", "{0x,0x2,0x3,{0x4,0x5,0x6,0x7,0x8,0x9,0xa,0xb}}",
])
def test_route_guid_refused(text):
    assert parse_guid(text) is None


# --- routing, numbers, decimals ---------------------------------------------------------------------


@pytest.mark.parametrize("path, segments", [
    (b"/", []), (b"/payments", ["payments"]), (b"/payments/", ["payments"]), (b"/payments//", ["payments", ""]),
    (b"//", [""]), (b"/a/../payments", ["payments"]), (b"/payments/x/..", ["payments"]),
    (b"/p%61yments/%7Bx%7D", ["payments", "{x}"]), (b"/admin%2Fpurge-payments", ["admin/purge-payments"]),
])
def test_route_segments(path, segments):
    assert route_segments(path) == segments


def test_json_numbers_are_plain():
    assert json_number(Decimal("0.9950")) == "0.9950"
    assert json_number(Decimal("1E+2")) == "100"
    assert json_number(Decimal("-0.00")) == "0.00"
    assert json_number(Decimal("0E-28")) == "0." + "0" * 28


def test_strings_are_escaped_like_system_text_json():
    assert net_json_string("a\"b\\c\n'<>&+`é") == "a\\u0022b\\\\c\\n\\u0027\\u003C\\u003E\\u0026\\u002B\\u0060\\u00E9"


def test_net_decimal_range_and_precision():
    assert net_decimal(Decimal("7922816251426433759354395033.56")) == Decimal("7922816251426433759354395034")
    assert net_decimal(Decimal("7922816251426433759354395033.46")) == Decimal("7922816251426433759354395033.5")
    assert net_decimal(Decimal("-79228162514264337593543950336")) is None
    assert net_decimal(Decimal("1E+29")) is None


# --- the ledger -----------------------------------------------------------------------------------


def test_ledger_insert_get_duplicate_purge():
    ledger = Ledger()
    assert ledger.insert(GUID, Decimal("19.905"), parse_iso_datetime("2025-07-10T12:00:00Z"))
    assert not ledger.insert(GUID, Decimal("1"), 0)
    assert ledger.get(GUID) == (Decimal("19.90"), stored_timestamp(parse_iso_datetime("2025-07-10T12:00:00")))
    ledger.purge()
    assert ledger.get(GUID) is None and len(ledger) == 0


def test_ledger_summary_bounds_inclusive_at_microseconds():
    ledger = Ledger()
    at = parse_iso_datetime
    ledger.insert(str(uuid.uuid4()), Decimal("19.90"), at("2025-07-10T12:00:00.000001"))
    ledger.insert(str(uuid.uuid4()), Decimal("19.9"), at("2025-07-10T12:00:01"))
    ledger.insert(str(uuid.uuid4()), Decimal("1"), 0)  # -infinity
    assert ledger.summary(at("2025-07-10T12:00:00.000001"), at("2025-07-10T12:00:01")) == (2, Decimal("39.80"))
    assert ledger.summary(at("2025-07-10T12:00:00.0000019"), at("2025-07-10T12:00:00.9999999")) == (1, Decimal("19.90"))
    assert ledger.summary(at("2025-07-10T12:00:00.000002"), at("2025-07-10T12:00:00.999999")) == (0, Decimal(0))
    assert ledger.summary(at("2025-07-10T12:00:01"), at("2025-07-10T12:00:00")) == (0, Decimal(0))
    assert ledger.summary(None, at("2000-01-01")) == (3, Decimal("40.80"))
    assert ledger.summary(at("0001-01-01"), at("2000-01-01")) == (1, Decimal(1))
    assert str(Ledger().summary(None, None)[1]) == "0"
