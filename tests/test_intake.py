"""The data plane's answers to good and bad input, against a real daemon and real processors."""

from __future__ import annotations

import socket
import uuid

import httpx
import pytest

from tests.support.engines import both_engines
from tests.support.wait import wait_until


def new_id() -> str:
    return str(uuid.uuid4())


def raw_exchange(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks):
                head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")), 0)
                if len(rest) >= length:
                    break
        return b"".join(chunks)


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


@both_engines
def test_payment_accepted_then_paid_once(daemon, processors):
    cid = new_id()
    reply = daemon.post('{"correlationId":"%s","amount":19.90}' % cid)
    assert reply.status_code == 202
    held = wait_until(lambda: processors.payment("default", cid), what="payment at default")
    assert held["amount"] == 19.9
    assert wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 1, what="daemon summary")
    assert daemon.summary() == {"default": {"totalRequests": 1, "totalAmount": 19.9},
                                "fallback": {"totalRequests": 0, "totalAmount": 0}}
    assert processors.summary("fallback")["totalRequests"] == 0


@both_engines
def test_same_correlation_id_is_not_paid_twice(daemon, processors):
    cid = new_id()
    assert daemon.post('{"correlationId":"%s","amount":10.00}' % cid).status_code == 202
    again = daemon.post('{"correlationId":"%s","amount":10}' % cid.upper())
    assert again.status_code == 200
    conflict = daemon.post('{"correlationId":"%s","amount":10.01}' % cid)
    assert conflict.status_code == 409
    assert "different amount" in conflict.json()["error"]
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 1, what="paid once")
    assert processors.summary("default")["totalRequests"] == 1


BAD_BODIES = [
    (b"", "body"),
    (b"not json", "body"),
    (b"[1,2]", "body"),
    (b"\xff\xfe{}", "body"),
    (b"[" * 200 + b"]" * 200, "body"),
    (b'{"amount":19.90}', "correlationId"),
    (b'{"correlationId":"not-a-uuid","amount":19.90}', "correlationId"),
    (b'{"correlationId":42,"amount":19.90}', "correlationId"),
    (b'{"correlationId":"{4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3}","amount":1}', "correlationId"),
    (b'{"correlationId":"ID","amount":"19.90"}', "amount"),
    (b'{"correlationId":"ID"}', "amount"),
    (b'{"correlationId":"ID","amount":null}', "amount"),
    (b'{"correlationId":"ID","amount":true}', "amount"),
    (b'{"correlationId":"ID","amount":0}', "amount"),
    (b'{"correlationId":"ID","amount":-5}', "amount"),
    (b'{"correlationId":"ID","amount":19.901}', "amount"),
    (b'{"correlationId":"ID","amount":NaN}', "amount"),
    (b'{"correlationId":"ID","amount":Infinity}', "amount"),
    (b'{"correlationId":"ID","amount":1e30}', "amount"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES)
def test_invalid_body_is_400_naming_the_field(daemon, body, field):
    reply = daemon.post(body.replace(b"ID", new_id().encode()))
    assert reply.status_code == 400
    assert reply.json()["field"] == field
    assert reply.json()["error"]
    # still serving, and the rejected request left nothing behind
    assert daemon.post('{"correlationId":"%s","amount":1.00}' % new_id()).status_code == 202


def test_amount_with_trailing_zero_decimals_is_accepted(daemon):
    assert daemon.post('{"correlationId":"%s","amount":19.900}' % new_id()).status_code == 202


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_non_json_content_type_is_415(daemon, content_type):
    reply = daemon.post('{"correlationId":"%s","amount":1}' % new_id(), content_type=content_type)
    assert reply.status_code == 415


def test_oversized_body_is_413_and_oversized_headers_431(daemon):
    answer = raw_exchange(daemon.url, b"POST /payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                      b"Content-Length: 10000000\r\n\r\n{")
    assert answer.startswith(b"HTTP/1.1 413 ")
    answer = raw_exchange(daemon.url, b"GET /payments-summary HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert daemon.post('{"correlationId":"%s","amount":1}' % new_id()).status_code == 202


def test_unknown_path_404_and_wrong_method_405(daemon):
    assert httpx.get(daemon.url + "/nope").status_code == 404
    reply = httpx.get(daemon.url + "/payments")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"
    assert httpx.post(daemon.url + "/payments-summary").status_code == 405


@both_engines
def test_summary_bounds(daemon, processors):
    cid = new_id()
    assert daemon.post('{"correlationId":"%s","amount":5.55}' % cid).status_code == 202
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 1, what="paid")
    held = processors.payment("default", cid)["requestedAt"] + "Z"
    # both bounds inclusive, exactly at the stored instant
    assert daemon.summary(held, held)["default"] == {"totalRequests": 1, "totalAmount": 5.55}
    assert daemon.summary(held, None)["default"]["totalRequests"] == 1
    assert daemon.summary(None, held)["default"]["totalRequests"] == 1
    assert daemon.summary("2000-01-01T00:00:00Z", "2000-01-02T00:00:00Z")["default"]["totalRequests"] == 0
    assert processors.summary("default", held, held)["totalRequests"] == 1
    bad = httpx.get(daemon.url + "/payments-summary", params={"from": "yesterday", "to": held})
    assert bad.status_code == 400
    assert "from" in bad.json()["error"]


@both_engines
def test_summary_amounts_render_two_decimals(daemon):
    reply = httpx.get(daemon.url + "/payments-summary")
    assert b'"totalAmount":0.00' in reply.content


@both_engines
def test_purge_wipes_records(daemon):
    assert daemon.post('{"correlationId":"%s","amount":3}' % new_id()).status_code == 202
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 1, what="paid")
    assert httpx.post(daemon.url + "/purge-payments").status_code == 200
    assert daemon.summary()["default"]["totalRequests"] == 0


def test_protocol_errors_answer_and_keep_serving(daemon):
    for request, status in [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /payments-summary HTTP/9.9\r\nHost: x\r\n\r\n", b"505"),
        (b"POST /payments HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", b"400"),
        (b"POST /payments HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
        (b"POST /payments HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", b"400"),
        (b"GET /payments-summary HTTP/1.1\r\n\r\n", b"400"),
    ]:
        answer = raw_exchange(daemon.url, request)
        assert answer.split(b" ")[1] == status, (request, answer)
        assert b"Traceback" not in answer
    assert daemon.post('{"correlationId":"%s","amount":1}' % new_id()).status_code == 202


def test_keep_alive_serves_many_requests_on_one_connection(daemon):
    with httpx.Client() as client:
        for _ in range(20):
            reply = client.post(daemon.url + "/payments", content='{"correlationId":"%s","amount":1}' % new_id(),
                                headers={"Content-Type": "application/json"})
            assert reply.status_code == 202
