"""``rinha processors`` over real sockets: every row of spec/processor-api.md as a client sees it.

Most tests share the session's processors (conftest's ``processors_session``, reset around each
test); the rate-limiter and lifecycle tests start their own. The limiters' exact timing is pinned
in virtual time (trio's MockClock) at the end of the file; over sockets only robust bounds are
asserted.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import uuid
from decimal import Decimal
from functools import partial

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from rinha.emulator.app import Processor
from rinha.emulator.delay import DelayTimer
from rinha.emulator.limiters import ConcurrencyLimiter, HealthLimiter
from rinha.emulator.run import ProcessorSpec, run_processors
from rinha.http.server import Request
from tests.support.procs import Service, free_port, rinha_command
from tests.support.wait import wait_until

TOKEN = {"X-Rinha-Token": "123"}
JSON_UTF8 = "application/json; charset=utf-8"
TOO_MANY = b"Calm down, bitch. Try again later."


def start_default(*args: str) -> tuple[Service, int]:
    """``rinha processors --only default`` with ``args`` on a free port, answering: (service, port)."""
    port = free_port()
    command = rinha_command("processors", "--host", "127.0.0.1", "--only", "default", "--port", str(port), *args)
    return Service(command, ready_url=f"http://127.0.0.1:{port}/", name="processors").start(), port


def port_of(url: str) -> int:
    return httpx.URL(url).port


@pytest.fixture
def api(processors_session):
    """A client of the session's default processor (conftest): no payments, delay 0 and failure off
    before the test, delay 0 and failure off again after it."""

    def reset() -> None:
        assert client.put("/admin/configurations/delay", json={"delay": 0}, headers=TOKEN).status_code == 200
        assert client.put("/admin/configurations/failure", json={"failure": False}, headers=TOKEN).status_code == 200

    with httpx.Client(base_url=processors_session.default_url, timeout=10) as client:
        assert client.post("/admin/purge-payments", headers=TOKEN).status_code == 200
        reset()
        yield client
        reset()


def pay(client: httpx.Client, correlation_id: str | None = None, amount="19.90", requested_at="2025-07-10T12:34:56.789Z",
        **kwargs) -> httpx.Response:
    """POST /payments with a body written by hand (so amounts keep their JSON spelling)."""
    correlation_id = correlation_id or str(uuid.uuid4())
    body = f'{{"correlationId":"{correlation_id}","amount":{amount},"requestedAt":"{requested_at}"}}'
    return client.post("/payments", content=body, headers={"Content-Type": "application/json"}, **kwargs)


def summary(client: httpx.Client, **params) -> dict:
    reply = client.get("/admin/payments-summary", params=params, headers=TOKEN)
    assert reply.status_code == 200, reply
    return reply.json(parse_float=Decimal, parse_int=Decimal)


def assert_empty(reply: httpx.Response, status: int) -> None:
    assert reply.status_code == status
    assert reply.content == b""
    assert reply.headers.get("content-length") == "0"
    assert "content-type" not in reply.headers


def get_request(path: str, *headers: str) -> bytes:
    """``GET path`` exactly as written (no client normalisation), closing the connection after."""
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: x", "Connection: close", *headers, "", ""]).encode()


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes as they are, read the reply until the server closes (send ``Connection: close``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- start-up and command line -------------------------------------------------------------------


def test_both_processors_start_with_their_fees(processors_session):
    default_port, fallback_port = port_of(processors_session.default_url), port_of(processors_session.fallback_url)
    log = processors_session.service.log_text()
    assert f"default processor (fee 0.05) listening on http://127.0.0.1:{default_port}" in log
    assert f"fallback processor (fee 0.15) listening on http://127.0.0.1:{fallback_port}" in log
    for port, fee in ((default_port, "0.05"), (fallback_port, "0.15")):
        reply = httpx.get(f"http://127.0.0.1:{port}/admin/payments-summary", headers=TOKEN)
        assert reply.text.endswith(f',"feePerTransaction":{fee}}}')


@pytest.mark.parametrize("args, complaint", [
    (["--only", "fallback", "--port", "1", "--fee", "abc"], "--fee"),
    (["--only", "fallback", "--fee", "1.5"], "--fee"),
    (["--only", "fallback", "--fee", "-0.1"], "--fee"),
    (["--default-port", "70000"], "--default-port"),
    (["--only", "main"], "--only"),
    (["--port", "9000"], "--port"),
    (["--rate-limit-seconds", "0"], "--rate-limit-seconds"),
    (["--default-port", "9000", "--fallback-port", "9000"], "--fallback-port"),
])
def test_bad_options_are_refused_with_exit_2(args, complaint):
    done = subprocess.run(rinha_command("processors", *args), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert complaint in done.stderr


def test_port_in_use_exits_1_with_a_message(processors_session):
    port = port_of(processors_session.default_url)
    done = subprocess.run(rinha_command("processors", "--only", "default", "--port", str(port)), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1
    assert "rinha processors:" in done.stderr


def test_only_one_processor_with_its_own_port_and_fee():
    port = free_port()
    command = rinha_command("processors", "--host", "127.0.0.1", "--only", "fallback", "--port", str(port), "--fee", "0.20")
    with Service(command, ready_url=f"http://127.0.0.1:{port}/", name="processors") as service:
        reply = httpx.get(f"http://127.0.0.1:{port}/admin/payments-summary", headers=TOKEN)
        assert reply.json()["feePerTransaction"] == 0.2 and '"feePerTransaction":0.20' in reply.text
        assert service.log_text().count("listening on") == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_it_with_exit_0(signum):
    service, _ = start_default()
    try:
        service.signal(signum)
        assert service.wait(timeout=10) == 0
    finally:
        service.kill()


@pytest.mark.anyio
async def test_run_processors_in_process_on_any_free_port():
    specs = [ProcessorSpec("default", Decimal("0.05"), 0), ProcessorSpec("fallback", Decimal("0.150"), 0)]
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(partial(run_processors, specs, token="t"))
        assert [started.name for started in listening] == ["default", "fallback"]
        async with httpx.AsyncClient(headers={"X-Rinha-Token": "t"}) as client:
            for started, fee in zip(listening, ("0.05", "0.150")):
                reply = await client.get(f"http://127.0.0.1:{started.port}/admin/payments-summary")
                assert reply.text.endswith(f'"feePerTransaction":{fee}}}')
        nursery.cancel_scope.cancel()


# --- POST /payments and GET /payments/{id} --------------------------------------------------------


def test_payment_is_stored_and_read_back(api):
    correlation_id = str(uuid.uuid4())
    reply = pay(api, correlation_id)
    assert reply.status_code == 200
    assert reply.content == b'{"message":"payment processed successfully"}'
    assert reply.headers["content-type"] == JSON_UTF8
    assert reply.headers["server"] == "Kestrel"
    found = api.get(f"/payments/{correlation_id}")
    assert found.status_code == 200 and found.headers["content-type"] == JSON_UTF8
    assert found.text == f'{{"correlationId":"{correlation_id}","amount":19.90,"requestedAt":"2025-07-10T12:34:56.789"}}'
    assert summary(api) == {"totalAmount": Decimal("19.90"), "totalRequests": 1, "totalFee": Decimal("0.9950"),
                            "feePerTransaction": Decimal("0.05")}


def test_duplicate_is_422_and_recorded_once(api):
    correlation_id = str(uuid.uuid4())
    assert pay(api, correlation_id).status_code == 200
    again = pay(api, correlation_id.upper(), amount="5", requested_at="2025-07-11T00:00:00Z")
    assert again.status_code == 422 and again.headers["content-type"] == JSON_UTF8
    assert again.json()["message"].startswith(
        f"Payment could not be processed. CorrelationId already exists: {correlation_id}. Error details: Npgsql.")
    assert summary(api)["totalRequests"] == 1
    assert api.get(f"/payments/{correlation_id}").json()["amount"] == 19.9


@pytest.mark.parametrize("content, content_type, status", [
    (b"", "application/json", 400),
    (b"", None, 400),
    (b'{"amount":1}', None, 415),
    (b'{"amount":1}', "text/plain", 415),
    (b'{"amount":1}', "application/json; charset=nope", 500),
    (b"not json", "application/json", 400),
    (b"[]", "application/json", 400),
    (b"null", "application/json", 400),
    (b'{"correlationId":null}', "application/json", 400),
    (b'{"correlationId":1}', "application/json", 400),
    (b'{"correlationId":"{4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3}"}', "application/json", 400),
    (b'{"correlationId":"4a7901b87d264d9daa194dc1c7cf60b3"}', "application/json", 400),
    (b'{"amount":null}', "application/json", 400),
    (b'{"amount":true}', "application/json", 400),
    (b'{"amount":8e28}', "application/json", 400),
    (b'{"amount":"19,90"}', "application/json", 400),
    (b'{"requestedAt":null}', "application/json", 400),
    (b'{"requestedAt":1752150896}', "application/json", 400),
    (b'{"requestedAt":"2025-07-10 12:34:56"}', "application/json", 400),
    (b'{"requestedAt":"2025-07-10t12:34:56"}', "application/json", 400),
])
def test_bad_bodies_are_refused_empty(api, content, content_type, status):
    headers = {"Content-Type": content_type} if content_type else {}
    assert_empty(api.post("/payments", content=content, headers=headers), status)
    assert summary(api)["totalRequests"] == 0


def test_json_content_types_with_suffix_and_parameters_are_accepted(api):
    for content_type in ("application/problem+json", "Application/JSON; charset=UTF-8"):
        body = json.dumps({"correlationId": str(uuid.uuid4()), "amount": 1})
        assert api.post("/payments", content=body, headers={"Content-Type": content_type}).status_code == 200


def test_bad_bodies_skip_the_delay_and_the_failure_mode(api):
    api.put("/admin/configurations/delay", json={"delay": 1000}, headers=TOKEN)
    api.put("/admin/configurations/failure", json={"failure": True}, headers=TOKEN)
    started = time.monotonic()
    assert_empty(api.post("/payments", content=b"{", headers={"Content-Type": "application/json"}), 400)
    assert_empty(api.post("/payments", content=b"{}"), 415)
    assert time.monotonic() - started < 0.9
    started = time.monotonic()
    assert_empty(pay(api), 500)
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize("amount, requested_at, shown_amount, shown_at", [
    ("19.90", "2025-07-10T12:34:56.789Z", "19.90", "2025-07-10T12:34:56.789"),
    ("19.9", "2025-07-10T12:34:56.1234567", "19.9", "2025-07-10T12:34:56.123456"),
    ("0.125", "2025-07-10T12:34:56+02:00", "0.12", "2025-07-10T10:34:56"),
    ("0.135", "2025-07-10T12:34-03", "0.14", "2025-07-10T15:34:00"),
    ("1.025", "2025-07-10", "1.02", "2025-07-10T00:00:00"),
    ('"1.015"', "2025-07-10T12:34:56.000000Z", "1.02", "2025-07-10T12:34:56"),
    ("1E2", "0001-01-01T00:00:00", "100", "0001-01-01T00:00:00"),
    ("-5.555", "9999-12-31T23:59:59.9999999", "-5.56", "9999-12-31T23:59:59.9999999"),
    ("0", "2025-07-10T12:34:56.Z", "0", "2025-07-10T12:34:56"),
])
def test_amounts_and_timestamps_as_stored(api, amount, requested_at, shown_amount, shown_at):
    correlation_id = str(uuid.uuid4())
    assert pay(api, correlation_id, amount, requested_at).status_code == 200
    found = api.get(f"/payments/{correlation_id}")
    assert found.text == f'{{"correlationId":"{correlation_id}","amount":{shown_amount},"requestedAt":"{shown_at}"}}'


def test_missing_fields_take_their_defaults(api):
    json_headers = {"Content-Type": "application/json"}
    assert api.post("/payments", content=b"{}", headers=json_headers).status_code == 200
    assert api.post("/payments", content=b'{"unknown":[1,{"a":null}]}', headers=json_headers).status_code == 422
    found = api.get("/payments/00000000-0000-0000-0000-000000000000").text
    assert found == '{"correlationId":"00000000-0000-0000-0000-000000000000","amount":0,"requestedAt":"0001-01-01T00:00:00"}'


def test_names_are_case_insensitive_and_the_last_duplicate_wins(api):
    correlation_id = str(uuid.uuid4())
    body = f'{{"CorrelationID":"{correlation_id}","AMOUNT":1,"amount":"2.50","REQUESTEDat":"2025-07-10T00:00:00Z"}}'
    assert api.post("/payments", content=body, headers={"Content-Type": "application/json"}).status_code == 200
    assert api.get(f"/payments/{correlation_id}").json()["amount"] == 2.5
    assert '"amount":2.50' in api.get(f"/payments/{correlation_id}").text


def test_get_payment_accepts_lenient_ids(api):
    correlation_id = str(uuid.uuid4())
    pay(api, correlation_id)
    hexed = correlation_id.replace("-", "")
    for form in (correlation_id.upper(), hexed, f"%7B{correlation_id}%7D", f"({correlation_id})",
                 f"%20{correlation_id}%09", f"{correlation_id}/"):
        found = api.get(f"/payments/{form}")
        assert found.status_code == 200, form
        assert found.json()["correlationId"] == correlation_id
    for form in ("nope", hexed[:-1], f"{correlation_id}0", "{" + hexed + "}"):
        assert_empty(api.get(f"/payments/{form}"), 400)
    assert_empty(api.get(f"/payments/{uuid.uuid4()}"), 404)


def test_failure_mode_answers_500_and_stores_nothing(api):
    stored = str(uuid.uuid4())
    pay(api, stored)
    api.put("/admin/configurations/failure", json={"failure": True}, headers=TOKEN)
    fresh = str(uuid.uuid4())
    assert_empty(pay(api, fresh), 500)
    assert_empty(pay(api, stored), 500)  # a duplicate in failure mode: 500, not 422
    api.put("/admin/configurations/failure", json={"failure": False}, headers=TOKEN)
    assert_empty(api.get(f"/payments/{fresh}"), 404)
    assert pay(api, stored).status_code == 422
    assert summary(api)["totalRequests"] == 1


@pytest.mark.anyio
async def test_failure_flag_is_read_after_the_delay(api):
    async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as client:
        await client.put("/admin/configurations/delay", json={"delay": 1500}, headers=TOKEN)
        await client.put("/admin/configurations/failure", json={"failure": True}, headers=TOKEN)
        correlation_id = str(uuid.uuid4())
        body = json.dumps({"correlationId": correlation_id, "amount": 1})
        outcome = {}

        async def post() -> None:
            started = time.monotonic()
            outcome["reply"] = await client.post("/payments", content=body, headers={"Content-Type": "application/json"})
            outcome["elapsed"] = time.monotonic() - started

        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            # No event tells that the request is inside its delay; 0.5 s into 1.5 s leaves margin both ways.
            await trio.sleep(0.5)
            await client.put("/admin/configurations/failure", json={"failure": False}, headers=TOKEN)
        assert outcome["reply"].status_code == 200
        assert outcome["elapsed"] >= 1.5
        assert (await client.get(f"/payments/{correlation_id}")).status_code == 200


def test_a_client_timeout_does_not_stop_the_payment(api):
    api.put("/admin/configurations/delay", json={"delay": 1000}, headers=TOKEN)
    correlation_id = str(uuid.uuid4())
    with pytest.raises(httpx.ReadTimeout):
        pay(api, correlation_id, timeout=0.2)
    assert_empty(api.get(f"/payments/{correlation_id}"), 404)  # still inside its delay
    deadline = time.monotonic() + 10
    while api.get(f"/payments/{correlation_id}").status_code != 200:
        assert time.monotonic() < deadline, "the payment was never recorded"
        time.sleep(0.05)
    assert summary(api)["totalRequests"] == 1


# --- routing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, allow", [
    ("GET", "/payments", "POST"),
    ("DELETE", "/payments/", "POST"),
    ("POST", "/payments/service-health", "GET"),
    ("HEAD", "/payments/service-health", "GET"),
    ("PUT", "/payments/4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3", "GET"),
    ("GET", "/admin/configurations/token", "PUT"),
    ("POST", "/admin/configurations/delay", "PUT"),
    ("GET", "/admin/configurations/failure", "PUT"),
    ("GET", "/admin/purge-payments", "POST"),
    ("POST", "/admin/payments-summary", "GET"),
    ("POST", "/", "GET"),
])
def test_wrong_method_is_405_with_allow(api, method, path, allow):
    reply = api.request(method, path)
    assert_empty(reply, 405)
    assert reply.headers["allow"] == allow


@pytest.mark.parametrize("path", ["/nope", "/payments/a/b", "/admin", "/admin/configurations", "//payments",
                                  "/payments//", "/admin%2Fpurge-payments", "//admin/payments-summary"])
def test_unknown_path_is_404(processors_session, path):
    reply = raw_exchange(port_of(processors_session.default_url), get_request(path, "X-Rinha-Token: 123"))
    assert reply == b"HTTP/1.1 404 Not Found\r\nServer: Kestrel\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("path", ["/ADMIN/Payments-Summary", "/admin/payments-summary/", "/x/../admin/./payments-summary",
                                  "/admin/p%61yments-summary", "/admin/payments-summary/x/..", "/../admin/payments-summary"])
def test_routes_ignore_case_one_trailing_slash_and_dot_segments(processors_session, path):
    reply = raw_exchange(port_of(processors_session.default_url), get_request(path, "X-Rinha-Token: 123"))
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")


def test_methods_match_case_insensitively(processors_session):
    request = b"get /admin/payments-summary HTTP/1.1\r\nHost: x\r\nX-Rinha-Token: 123\r\nConnection: close\r\n\r\n"
    assert raw_exchange(port_of(processors_session.default_url), request).startswith(b"HTTP/1.1 200 OK\r\n")


def test_home_page_is_html(api):
    reply = api.get("/")
    assert reply.status_code == 200 and reply.headers["content-type"] == "text/html; charset=utf-8"
    assert "Payment Processor" in reply.text


def test_protocol_errors_have_empty_bodies(processors_session):
    port = port_of(processors_session.default_url)
    chunked = b"POST /payments HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    assert raw_exchange(port, chunked).startswith(b"HTTP/1.1 411 ")
    reply = raw_exchange(port, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")  # no Host
    assert reply.startswith(b"HTTP/1.1 400 ") and reply.endswith(b"\r\n\r\n")


# --- admin -----------------------------------------------------------------------------------------


def test_admin_needs_the_exact_token(api):
    for headers in ({}, {"X-Rinha-Token": "1234"}, {"X-Rinha-Token": "ABC"}, [("X-Rinha-Token", "123")] * 2):
        assert_empty(api.post("/admin/purge-payments", headers=headers), 401)
        assert_empty(api.get("/admin/payments-summary", headers=headers), 401)
        assert_empty(api.put("/admin/configurations/delay", json={"delay": 1}, headers=headers), 401)
    assert "www-authenticate" not in api.post("/admin/purge-payments").headers
    assert api.post("/admin/purge-payments", headers={"x-rinha-token": "123"}).status_code == 200


def test_token_change_and_null_token(api):
    reply = api.put("/admin/configurations/token", json={"token": "s3cret"}, headers=TOKEN)
    assert reply.status_code == 204 and reply.content == b"" and "content-length" not in reply.headers
    try:
        assert_empty(api.post("/admin/purge-payments", headers=TOKEN), 401)
        assert api.post("/admin/purge-payments", headers={"X-Rinha-Token": "s3cret"}).status_code == 200
        assert api.put("/admin/configurations/token", json={}, headers={"X-Rinha-Token": "s3cret"}).status_code == 204
        assert api.post("/admin/purge-payments").status_code == 200  # null token: only requests without the header
        assert_empty(api.post("/admin/purge-payments", headers={"X-Rinha-Token": ""}), 401)
        assert_empty(api.post("/admin/purge-payments", headers=TOKEN), 401)
    finally:
        for headers in ({}, {"X-Rinha-Token": "s3cret"}):
            api.put("/admin/configurations/token", json={"token": "123"}, headers=headers)
    assert api.post("/admin/purge-payments", headers=TOKEN).status_code == 200


def test_admin_body_errors_come_before_the_token(api):
    wrong = {"X-Rinha-Token": "wrong"}
    assert_empty(api.put("/admin/configurations/delay", content=b"", headers=wrong), 400)
    assert_empty(api.put("/admin/configurations/delay", content=b'{"delay":1}', headers=wrong), 415)
    assert_empty(api.put("/admin/configurations/failure", json={"failure": "yes"}, headers=wrong), 400)
    assert_empty(api.put("/admin/configurations/token", json={"token": 1}, headers=wrong), 400)


def test_summary_query_errors_come_after_the_token(api):
    assert_empty(api.get("/admin/payments-summary?from=nope&to=2025-07-10", headers={"X-Rinha-Token": "no"}), 401)
    assert_empty(api.get("/admin/payments-summary?from=nope&to=2025-07-10", headers=TOKEN), 400)


REFUSED = "refused"
MISSING = "missing"


@pytest.mark.parametrize("config, value, expected", [
    ("delay", 100, 100), ("delay", "250", 250), ("delay", -7, -7), ("delay", MISSING, 0), ("delay", None, REFUSED),
    ("delay", 1.5, REFUSED), ("delay", True, REFUSED), ("delay", "1.5", REFUSED), ("delay", 2**31, REFUSED),
    ("failure", True, True), ("failure", False, False), ("failure", MISSING, False), ("failure", "true", REFUSED),
    ("failure", 1, REFUSED), ("failure", None, REFUSED),
])
def test_config_bodies(api, config, value, expected):
    initial = 42 if config == "delay" else True
    api.put(f"/admin/configurations/{config}", json={config: initial}, headers=TOKEN)
    reply = api.put(f"/admin/configurations/{config}", json={} if value == MISSING else {config: value}, headers=TOKEN)
    if expected == REFUSED:
        assert_empty(reply, 400)
        return
    assert reply.status_code == 200 and reply.headers["content-type"] == JSON_UTF8
    assert reply.text == json.dumps({"config": config, "was": initial, "is": expected}, separators=(",", ":"))


def test_purge_keeps_the_configuration(api):
    pay(api)
    api.put("/admin/configurations/delay", json={"delay": 5}, headers=TOKEN)
    reply = api.post("/admin/purge-payments", headers=TOKEN)
    assert reply.status_code == 200 and reply.content == b'{"message":"All payments purged."}'
    assert summary(api)["totalRequests"] == 0
    assert api.put("/admin/configurations/delay", json={"delay": 0}, headers=TOKEN).json()["was"] == 5


def test_summary_arithmetic_and_bounds(api):
    at = ["2025-07-10T12:00:00.000001Z", "2025-07-10T12:00:01Z", "2025-07-10T12:00:02.5Z"]
    for amount, requested_at in zip(("19.90", "19.9", "0.125"), at):
        assert pay(api, amount=amount, requested_at=requested_at).status_code == 200
    assert summary(api) == {"totalAmount": Decimal("39.92"), "totalRequests": 3, "totalFee": Decimal("1.9960"),
                            "feePerTransaction": Decimal("0.05")}
    reply = api.get("/admin/payments-summary", params={"from": at[0], "to": at[1]}, headers=TOKEN)
    assert reply.text == '{"totalAmount":39.80,"totalRequests":2,"totalFee":1.9900,"feePerTransaction":0.05}'
    assert summary(api, **{"from": "2025-07-10T12:00:00.000002Z", "to": at[1]})["totalRequests"] == 1
    assert summary(api, **{"from": "2025-07-10T12:00:00Z", "to": "2025-07-10T12:00:01.999999Z"})["totalRequests"] == 2
    assert summary(api, **{"from": at[1]})["totalRequests"] == 3  # a missing bound counts everything
    assert summary(api, **{"from": "", "to": at[0]})["totalRequests"] == 3  # so does an empty one
    assert summary(api, **{"from": at[1], "to": at[0]})["totalRequests"] == 0
    assert summary(api, **{"from": " 2025-07-10T09:00:01-03:00 ", "to": "2025-07-10 12:00:01"})["totalRequests"] == 1
    one = api.get("/admin/payments-summary", params={"from": at[1], "to": at[1]}, headers=TOKEN).text
    assert one == '{"totalAmount":19.9,"totalRequests":1,"totalFee":0.995,"feePerTransaction":0.05}'


# --- rate limiters over sockets ------------------------------------------------------------------------


async def raw_request(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection (``Connection: close``): status, headers, body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def post_request(correlation_id: str) -> bytes:
    body = f'{{"correlationId":"{correlation_id}","amount":1}}'.encode()
    return (b"POST /payments HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.mark.anyio
async def test_concurrency_limit_800_running_500_queued_then_429():
    service, port = start_default("--rate-limit-seconds", "3")
    with service:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=TOKEN) as admin:
            await admin.put("/admin/configurations/delay", json={"delay": 4000})
        statuses: list[int] = []
        refused = trio.Event()
        extra = 5

        async def one() -> None:
            status, headers, body = await raw_request(port, post_request(str(uuid.uuid4())))
            statuses.append(status)
            if status == 429:
                assert body == TOO_MANY and headers["retry-after"] == "3" and "content-type" not in headers
                if statuses.count(429) == extra:
                    refused.set()

        async with trio.open_nursery() as nursery:
            for _ in range(800 + 500 + extra):
                nursery.start_soon(one)
            with trio.fail_after(3.5):
                await refused.wait()  # the limiter is full now: 800 in their delay, 500 queued
            status, headers, body = await raw_request(port, get_request(f"/payments/{uuid.uuid4()}"))
            assert (status, body, headers["retry-after"]) == (429, TOO_MANY, "3")  # GET shares the limiter
            assert (await raw_request(port, get_request("/payments/service-health")))[0] == 200
            assert (await raw_request(port, get_request("/admin/payments-summary", "X-Rinha-Token: 123")))[0] == 200
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=TOKEN) as admin:
                await admin.put("/admin/configurations/delay", json={"delay": 0})  # the queued ones read it
        assert statuses.count(429) == extra and statuses.count(200) == 1300
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=TOKEN) as admin:
            assert (await admin.get("/admin/payments-summary")).json()["totalRequests"] == 1300


@pytest.mark.anyio
async def test_health_window_holds_two_and_refuses_the_third():
    service, port = start_default("--rate-limit-seconds", "1")
    with service:
        health = get_request("/payments/service-health")
        status, headers, body = await raw_request(port, health)
        first = time.monotonic()
        assert (status, body, headers["content-type"]) == (200, b'{"failing":false,"minResponseTime":0}', JSON_UTF8)
        done: list[tuple[int, dict, bytes, float]] = []

        async def call() -> None:
            status, headers, body = await raw_request(port, health)
            done.append((status, headers, body, time.monotonic() - first))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(call)
        (refused, *held) = sorted(done, key=lambda item: item[3])  # the refusal comes back at once
        status, headers, body, _ = refused
        assert (status, body, headers["retry-after"]) == (429, TOO_MANY, "1") and "content-type" not in headers
        assert [item[0] for item in held] == [200, 200]
        assert held[0][3] >= 0.9 and held[1][3] - held[0][3] >= 0.9  # one per window, at successive refills
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=TOKEN) as admin:
            await admin.put("/admin/configurations/delay", json={"delay": -20})
            await admin.put("/admin/configurations/failure", json={"failure": True})
        status, _, body = await raw_request(port, health)  # held until the next window at most
        assert (status, body) == (200, b'{"failing":true,"minResponseTime":-20}')


@pytest.mark.anyio
async def test_health_limiter_starts_afresh_after_being_idle():
    """Window 2 s, idle limit 0.5 s (the framework's 10 s, shortened through a hidden option).

    First call at 0: refill at ~2.0 leaves it idle, so it is discarded at ~2.6. A call at 3.0
    then creates a new limiter anchored at 3.0, and the next call waits for its refill at ~5.0.
    Had the old limiter lived on, that call would have been served at its refill near 4.0.
    """
    service, port = start_default("--rate-limit-seconds", "2", "--health-idle-seconds", "0.5")
    with service:
        health = get_request("/payments/service-health")
        assert (await raw_request(port, health))[0] == 200
        await trio.sleep(3.0)  # the scenario itself: time passing with no calls
        assert (await raw_request(port, health))[0] == 200
        started = time.monotonic()
        assert (await raw_request(port, health))[0] == 200
        assert time.monotonic() - started >= 1.9


# --- limiter timing in virtual time ----------------------------------------------------------------------


def run_virtual(main) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_health_limiter_timing():
    served: list[tuple[int, bool, float]] = []

    async def main() -> None:
        limiter = HealthLimiter(5)

        async def call(number: int) -> None:
            served.append((number, await limiter.acquire(), trio.current_time()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(limiter.run)
            await trio.sleep(0.05)
            for number in range(4):  # created at 0.05: one served, two held, one refused
                nursery.start_soon(call, number)
                await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(30.05 - trio.current_time())  # idle since the refill at 15.1, discarded at 25.2
            for number in (4, 5):
                nursery.start_soon(call, number)
                await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(10)
            nursery.cancel_scope.cancel()

    run_virtual(main)
    times = {number: (ok, round(at, 6)) for number, ok, at in served}
    assert times == {0: (True, 0.05), 3: (False, 0.05), 1: (True, 5.1), 2: (True, 10.1), 4: (True, 30.05),
                     5: (True, 35.1)}


def test_health_limiter_keeps_its_windows_while_in_use():
    served: list[float] = []

    async def main() -> None:
        limiter = HealthLimiter(5)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(limiter.run)
            await trio.sleep(0.05)
            for _ in range(3):  # one call every 9 s: never idle for 10 s, windows keep their phase
                assert await limiter.acquire()
                served.append(round(trio.current_time(), 6))
                await trio.sleep(9)
            assert await limiter.acquire()
            assert await limiter.acquire()  # held until the refill at the window's phase
            served.append(round(trio.current_time(), 6))
            nursery.cancel_scope.cancel()

    run_virtual(main)
    assert served == [0.05, 9.05, 18.05, 30.1]


def test_health_values_are_read_when_a_held_request_leaves_the_queue():
    async def main() -> None:
        processor = Processor(Decimal("0.05"), rate_limit_seconds=5)
        health = Request(b"GET", b"/payments/service-health", b"", {}, b"", True)
        delay = Request(b"PUT", b"/admin/configurations/delay", b"",
                        {b"content-type": b"application/json", b"x-rinha-token": b"123"}, b'{"delay":250}', True)
        replies = []
        answered = trio.Event()

        async def call() -> None:
            replies.append(await processor.handle(health))
            answered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(processor.run)
            await processor.handle(health)
            nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()  # held until the next window
            await processor.handle(delay)
            with trio.fail_after(6):
                await answered.wait()
            nursery.cancel_scope.cancel()
        assert replies[0].endswith(b'{"failing":false,"minResponseTime":250}')

    run_virtual(main)


def test_delay_timer_ends_each_wait_on_the_millisecond_after_its_delay():
    """A delay of D ms started at t ms ends at ceil(t) + D ms; waits ending on the same millisecond
    end together, and one ending before the timer's current sleep cuts that sleep short."""
    ended: dict[str, float] = {}

    async def main() -> None:
        timer = DelayTimer()

        async def wait(name: str, delay_ms: int, start_ms: float) -> None:
            await trio.sleep(start_ms / 1000)
            await timer.wait(delay_ms)
            ended[name] = round(trio.current_time() * 1000, 6)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(timer.run)
            async with trio.open_nursery() as waits:
                waits.start_soon(wait, "long", 2000, 0)  # the timer sleeps towards 2,000 ms
                waits.start_soon(wait, "a", 20, 0.4)  # ends on 1 + 20: the timer must wake before 2,000
                waits.start_soon(wait, "b", 20, 0.7)
                waits.start_soon(wait, "c", 20, 1)  # exactly on a millisecond: 1 + 20 as well
                waits.start_soon(wait, "d", 1, 5.5)
                waits.start_soon(wait, "e", 20, 1.2)  # 2 + 20
            nursery.cancel_scope.cancel()

    run_virtual(main)
    assert ended == {"long": 2000.0, "a": 21.0, "b": 21.0, "c": 21.0, "d": 7.0, "e": 22.0}


def test_delay_timer_a_cancelled_wait_leaves_at_once_and_the_others_end_on_time():
    ended: dict[str, float] = {}

    async def main() -> None:
        timer = DelayTimer()

        async def wait(name: str, delay_ms: int) -> None:
            await timer.wait(delay_ms)
            ended[name] = trio.current_time() * 1000

        async with trio.open_nursery() as nursery:
            nursery.start_soon(timer.run)
            nursery.start_soon(wait, "kept", 20)
            with trio.move_on_after(0.005) as cut:
                async with trio.open_nursery() as doomed:
                    doomed.start_soon(wait, "same end", 20)  # shares its millisecond with "kept"
                    doomed.start_soon(wait, "alone", 10)  # the only one on its millisecond
            assert cut.cancelled_caught and trio.current_time() == 0.005
            await timer.wait(30)
            ended["after"] = trio.current_time() * 1000
            nursery.cancel_scope.cancel()

    run_virtual(main)
    assert ended == {"kept": 20.0, "after": 35.0}


def test_delay_timer_a_wait_made_before_the_timer_starts_ends_on_time():
    """The processor starts its timer and its server soon, in no set order: a request can park first."""
    ended: list[float] = []

    async def main() -> None:
        timer = DelayTimer()
        done = trio.Event()

        async def wait() -> None:
            await timer.wait(20)
            ended.append(trio.current_time() * 1000)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()  # parked, and no timer yet
            assert not ended
            nursery.start_soon(timer.run)
            with trio.fail_after(1):  # virtual seconds: a timer blind to the wait would never end it
                await done.wait()
            nursery.cancel_scope.cancel()

    run_virtual(main)
    assert ended == [20.0]


def test_concurrency_limiter_is_fifo_and_bounded():
    async def main() -> None:
        limiter = ConcurrencyLimiter(permits=2, queue_limit=2)
        order: list[int] = []

        async def waiter(number: int) -> None:
            assert await limiter.acquire()
            order.append(number)

        assert await limiter.acquire() and await limiter.acquire()
        async with trio.open_nursery() as nursery:
            for number in (1, 2):
                nursery.start_soon(waiter, number)
                await trio.testing.wait_all_tasks_blocked()
            assert not await limiter.acquire()
            limiter.release()
            await trio.testing.wait_all_tasks_blocked()
            assert order == [1]
            limiter.release()
        assert order == [1, 2]
        limiter.release()
        limiter.release()
        assert await limiter.acquire() and await limiter.acquire()

    run_virtual(main)


_PATHS = st.sampled_from([b"/", b"/payments", b"/payments/service-health", b"/admin/configurations/token",
                          b"/admin/configurations/delay", b"/admin/configurations/failure", b"/admin/purge-payments",
                          b"/admin/payments-summary", b"/payments/4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3"])


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"get"]),
       path=_PATHS | st.binary(max_size=60).map(lambda tail: b"/" + tail) | _PATHS.map(lambda p: p + b"/%7B%zz"),
       query=st.binary(max_size=40) | st.just(b"from=2025-07-10&to=2025-07-11"),
       body=st.binary(max_size=60) | st.sampled_from([b'{"amount":"1e-99999999999999999999"}', b'{"token":null}',
                                                      b'{"delay":-5}', b'{"failure":true}', b"{}"]),
       content_type=st.sampled_from([None, b"application/json", b"text/plain", b"application/json; charset=x"]))
def test_any_request_gets_an_http_reply(method, path, query, body, content_type):
    headers = {b"x-rinha-token": b"123"} if content_type is None else {b"x-rinha-token": b"123", b"content-type": content_type}

    async def main() -> None:
        reply = await Processor(Decimal("0.05")).handle(Request(method, path, query, headers, body, True))
        assert reply.startswith(b"HTTP/1.1 ")
        assert reply.startswith(b"HTTP/1.1 204 ") or b"\r\nContent-Length: " in reply

    run_virtual(main)


def test_in_flight_counts_payments_held_in_their_delay_and_a_purge_does_not_stop_them(api):
    assert_empty(api.get("/admin/in-flight"), 401)
    assert api.put("/admin/configurations/delay", json={"delay": 400}, headers=TOKEN).status_code == 200
    held = str(uuid.uuid4())
    with httpx.Client(base_url=str(api.base_url), timeout=10) as other:
        def held_payment() -> None:
            assert pay(other, held).status_code == 200

        sender = threading.Thread(target=held_payment)
        sender.start()
        wait_until(lambda: api.get("/admin/in-flight", headers=TOKEN).json() == {"payments": 1}, timeout=5,
                   what="the payment held in its delay")
        assert api.post("/admin/purge-payments", headers=TOKEN).status_code == 200
        sender.join()
    assert api.get("/admin/in-flight", headers=TOKEN).json() == {"payments": 0}
    assert summary(api)["totalRequests"] == 1  # stored after the purge
