"""Hostile input on the data plane: every answer is well-formed HTTP with a documented status,
the daemon keeps serving, slow clients are cut off without starving others, and the valid
payments among the noise are all paid."""

from __future__ import annotations

import json
import socket
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.wait import wait_until

DOCUMENTED = {200, 202, 400, 404, 405, 408, 409, 411, 413, 415, 431, 505}


def exchange(url: str, data: bytes, timeout: float = 5.0) -> list[tuple[int, dict, bytes]]:
    """Send raw bytes, then read every response until the server closes or goes quiet."""
    host, port = url.removeprefix("http://").split(":")
    responses = []
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            buf += chunk
    while buf:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        assert sep, f"truncated response head: {buf[:200]!r}"
        lines = head.split(b"\r\n")
        version, status, _ = lines[0].split(b" ", 2)
        assert version == b"HTTP/1.1"
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            assert colon, f"malformed header line {line!r}"
            headers[name.strip().lower()] = value.strip()
        length = int(headers[b"content-length"])
        assert len(rest) >= length, "body shorter than Content-Length"
        responses.append((int(status), headers, rest[:length]))
        buf = rest[length:]
    return responses


@pytest.fixture(scope="module")
def daemon(processors_session, tmp_path_factory):
    from tests.support.procs import Service, free_port, rinha_command

    processors_session.reset()
    port = free_port()
    db = str(tmp_path_factory.mktemp("hostile") / "rinha.db")
    service = Service(rinha_command("serve", "--listen", f"127.0.0.1:{port}", "--db", db,
                                    "--default-url", processors_session.default_url,
                                    "--fallback-url", processors_session.fallback_url),
                      ready_url=f"http://127.0.0.1:{port}/payments-summary", name="serve")
    with service:
        yield f"http://127.0.0.1:{port}"


methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"G\x00T", b"", b"POST POST"])
paths = st.sampled_from([b"/payments", b"/payments-summary", b"/purge-payments-not", b"/", b"*", b"/payments?x=\xff",
                         b"/payments-summary?from=\xff&to=2020", b"/%00", b"//payments"])
header_values = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)
headers = st.lists(st.tuples(st.sampled_from([b"Content-Type", b"X-A", b"Connection", b"Content-Length", b"Transfer-Encoding",
                                              b"Bad Header", b"Host"]), header_values), max_size=4)
bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda cid, amount: json.dumps({"correlationId": cid, "amount": amount}).encode(),
              st.one_of(st.uuids().map(str), st.text(max_size=10)),
              st.one_of(st.integers(-5, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
                        st.none(), st.booleans())),
    st.recursive(st.none() | st.booleans() | st.integers(), lambda c: st.lists(c) | st.dictionaries(st.text(max_size=3), c),
                 max_leaves=30).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, extra=headers, body=bodies, version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2"]))
def test_arbitrary_requests_get_well_formed_documented_answers(daemon, method, path, extra, body, version):
    head = method + b" " + path + b" " + version + b"\r\nHost: t\r\n"
    for name, value in extra:
        head += name + b": " + value + b"\r\n"
    if not any(name == b"Content-Length" for name, _ in extra):
        head += b"Content-Length: %d\r\n" % len(body)
    for status, headers_, payload in exchange(daemon, head + b"\r\n" + body):
        assert status in DOCUMENTED, (status, payload)
        if status >= 400:
            assert b"Traceback" not in payload and b"/work" not in payload and b".py" not in payload
    assert httpx.get(daemon + "/payments-summary").status_code == 200


def test_valid_payments_among_noise_are_all_paid(daemon, processors_session):
    valid = [str(uuid.uuid4()) for _ in range(20)]
    noise = [b"POST /payments HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{[}",
             b"POST /payments HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
             b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"]  # a TLS hello
    for i, cid in enumerate(valid):
        body = json.dumps({"correlationId": cid, "amount": 1.25}).encode()
        request = (b"POST /payments HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
        answers = exchange(daemon, request + noise[i % len(noise)])
        assert answers[0][0] == 202
    for cid in valid:
        wait_until(lambda: processors_session.payment("default", cid), timeout=20, what=f"{cid} paid")


def test_amounts_out_of_any_range_get_400_and_the_connection_stays_open(daemon):
    """Amounts no decimal arithmetic can hold were a 500 and a closed connection once: the
    payment pipelined behind them went unanswered."""
    cid = str(uuid.uuid4())
    data = b""
    for amount in (b"1e999999999", b"9e999999999999999999", b"1234567890123456789012345678.001", b"9" * 5000):
        body = b'{"correlationId":"%s","amount":%s}' % (str(uuid.uuid4()).encode(), amount)
        data += (b"POST /payments HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body)) + body
    body = json.dumps({"correlationId": cid, "amount": 3.5}).encode()
    data += (b"POST /payments HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % len(body)) + body
    answers = exchange(daemon, data)
    assert [status for status, _, _ in answers] == [400] * 4 + [202]
    assert all(json.loads(answer)["field"] == "amount" for _, _, answer in answers[:4])


def test_a_head_with_bare_line_feeds_is_refused_at_once(daemon):
    """It ends in a blank line, but never in the CRLF CRLF a head needs: a 400 now, not a 408
    when the header timeout (10 s) runs out."""
    host, port = daemon.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.sendall(b"GET /payments-summary HTTP/1.1\nHost: x\n\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)  # times out (3 s) if the server is still waiting
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"CRLF" in answer


def test_pipelined_requests_are_answered_in_order(daemon):
    ids = [str(uuid.uuid4()) for _ in range(5)]
    data = b""
    for cid in ids:
        body = json.dumps({"correlationId": cid, "amount": 2}).encode()
        data += (b"POST /payments HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body)) + body
    data += b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n"
    assert [status for status, _, _ in exchange(daemon, data)] == [202] * 5 + [404]


def test_slow_client_is_cut_off_without_starving_others(tmp_path, processors):
    from tests.support.procs import Service, free_port, rinha_command

    port = free_port()
    service = Service(rinha_command("serve", "--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "r.db"),
                                    "--default-url", processors.default_url, "--fallback-url", processors.fallback_url,
                                    "--header-timeout", "1"),
                      ready_url=f"http://127.0.0.1:{port}/payments-summary", name="serve")
    with service:
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        for sock in slow:
            sock.sendall(b"POST /payments HTTP/1.1\r\nHost: t\r\n")  # and never the rest
        reply = httpx.post(f"http://127.0.0.1:{port}/payments", headers={"Content-Type": "application/json"},
                           content=json.dumps({"correlationId": str(uuid.uuid4()), "amount": 1}))
        assert reply.status_code == 202  # served while 50 slow clients hang
        for sock in slow:
            sock.settimeout(5)
            data = sock.recv(1000)
            assert data.startswith(b"HTTP/1.1 408 "), data
            assert sock.recv(1000) == b""  # then closed
            sock.close()
