"""What the data plane exposes: its three endpoints, nothing of the control plane, and error bodies
without stack traces or paths.

* The control API (status, metrics, DLQ, replay) is served on a unix socket only, mode 0600: no
  path, method, traversal shape or Host on the data-plane port reaches it or shows its content,
  the daemon listens on no other TCP port, and another user cannot even connect to the socket.
* When a handler raises (a real store fault: the payments table gone from under the daemon), the
  client gets a generic JSON error; the traceback goes to the log only.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import time
from contextlib import closing

import httpx
import pytest

from tests.support.cli import control_get, wait_for_control
from tests.support.wait import wait_until

NOT_FOUND = {"error": "no such endpoint; try POST /payments or GET /payments-summary"}

CONTROL_PATHS = ["/status", "/health", "/metrics", "/dlq", "/dlq/replay", "/payments/states", "/control",
                 "/control/status", "/admin/payments-summary", "/admin/purge-payments", "/admin/in-flight",
                 "/admin/configurations/delay", "/admin/configurations/token", "/debug", "/.env", "/server-status"]
TRAVERSALS = ["/../status", "/payments/../status", "/payments-summary/../metrics", "/payments/../../metrics",
              "/%2e%2e/status", "/payments/%2e%2e/metrics", "/payments%2f..%2fstatus", "/..%2fmetrics", "//status",
              "/./metrics", "/payments/./../dlq", "/payments/..;/status", "/payments\\..\\status",
              "/payments-summary/../../../../etc/passwd", "/rinha.db.control.sock/status", "/unix:status",
              "/status%00", "/metrics?/payments-summary", "/payments/%2e%2e/%2e%2e/dlq/replay"]


def raw(url: str, data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """One raw request; the first response (status, headers, body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        buf = b""
        while True:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get(b"content-length", b"0"))
                if len(rest) >= length:
                    return int(head.split(b" ")[1]), headers, rest[:length]
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before a whole response: {buf!r}"
            buf += chunk


def test_control_and_admin_paths_are_not_served_on_the_data_plane(daemon_factory):
    daemon = daemon_factory()
    control = wait_for_control(daemon.db)
    status = control_get(daemon.db, "/status").json()
    metrics = control_get(daemon.db, "/metrics").text
    assert "rinha_accepted_total" in metrics
    # what only the control API would show
    secrets = [status["instance"].encode(), b"uptimeSeconds", b"rinha_accepted_total", b"# HELP", b"# TYPE",
               b"deadLetters", b"healthMonitor", b"writerBatches", control.encode(), os.path.basename(control).encode(),
               daemon.db.encode(), b"Traceback"]

    requests = []
    for path in CONTROL_PATHS + TRAVERSALS:
        for method in (b"GET", b"POST", b"PUT", b"DELETE"):
            body = b'{"ids":[],"dryRun":true}' if method in (b"POST", b"PUT") else b""
            requests.append(method + b" " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
                            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    for host in (b"control", b"localhost", b"unix:" + control.encode(), b"127.0.0.1:9999"):
        requests.append(b"GET /status HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    # absolute-form and other targets a proxy would forward
    for target in (b"http://control/status", b"http://localhost/metrics", b"unix:" + control.encode() + b":/status",
                   b"*", b"status", b"control:80"):
        for method in (b"GET", b"CONNECT", b"OPTIONS"):
            requests.append(method + b" " + target + b" HTTP/1.1\r\nHost: control\r\n\r\n")

    answers = {}
    for request in requests:
        status_code, headers, body = raw(daemon.url, request)
        answers[request.split(b"\r\n")[0]] = status_code
        assert status_code in (400, 404, 405), (request, status_code, body)
        leaked = [secret for secret in secrets if secret in body]
        assert leaked == [], (request, body)
        if status_code == 404:
            assert httpx.Response(404, content=body).json() == NOT_FOUND
    assert answers[b"GET /status HTTP/1.1"] == 404 and answers[b"GET /metrics HTTP/1.1"] == 404
    assert answers[b"GET http://control/status HTTP/1.1"] == 400
    # the data plane itself still answers, and so does the control socket
    assert httpx.get(daemon.url + "/payments-summary", timeout=10).status_code == 200
    assert control_get(daemon.db, "/status").status_code == 200


def listening_sockets(pid: int) -> tuple[set[int], set[str]]:
    """The TCP ports and unix socket paths process ``pid`` listens on, read from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    paths = set()
    with open("/proc/net/unix") as lines:
        next(lines)
        for line in lines:
            fields = line.split()
            if len(fields) >= 8 and fields[6] in inodes and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON
                paths.add(fields[7])
    return ports, paths


def test_the_daemon_listens_on_its_data_port_and_a_0600_control_socket_only(daemon_factory):
    daemon = daemon_factory()
    control = wait_for_control(daemon.db)
    ports, paths = listening_sockets(daemon.service.pid)
    assert ports == {int(daemon.url.rsplit(":", 1)[1])}
    assert paths == {os.path.abspath(control)} or paths == {control}
    info = os.stat(control)
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.stat(f"/proc/{daemon.service.pid}").st_uid
    if os.geteuid() != 0:
        pytest.skip("connecting as another user needs root to switch users (the 0600 mode is checked above)")
    with closing(socket.socket(socket.AF_UNIX)) as sock:
        sock.connect(control)  # its owner may
    child = os.fork()
    if child == 0:  # another user may not
        code = 2
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with closing(socket.socket(socket.AF_UNIX)) as sock:
                sock.connect(control)
            code = 0
        except PermissionError:
            code = 13
        finally:
            os._exit(code)
    _, exit_status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(exit_status) == 13, "an unprivileged user connected to the control socket"


LEAKS = [b"Traceback", b'File "', b".py", b"sqlite", b"no such table", b"payments_gone", b"/tmp", b"/work", b"/home",
         b"/root"]


def test_error_bodies_never_leak_stack_traces_or_paths(daemon_factory, processors):
    daemon = daemon_factory("--no-control")
    body = '{"correlationId":"%s","amount":1.00}'
    assert daemon.post(body % "11111111-1111-4111-8111-111111111111").status_code == 202
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 1, what="first payment paid")
    with closing(sqlite3.connect(daemon.db, timeout=10)) as conn:
        conn.execute("ALTER TABLE payments RENAME TO payments_gone")  # a store fault: the table vanished
    try:
        summary = httpx.get(daemon.url + "/payments-summary", timeout=10)  # the handler raises
        assert summary.status_code == 500
        assert summary.json() == {"error": "internal error"}
        refused = daemon.post(body % "22222222-2222-4222-8222-222222222222")
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        purge = httpx.post(daemon.url + "/purge-payments", timeout=10)
        assert purge.status_code == 503
        for reply in (summary, refused, purge):
            assert [leak for leak in LEAKS if leak in reply.content] == [], reply.content
            assert reply.headers["Content-Type"] == "application/json"
        log = daemon.service.log_text()
        assert "Traceback" in log and "no such table: payments" in log  # the operator sees what happened
    finally:
        with closing(sqlite3.connect(daemon.db, timeout=10)) as conn:
            conn.execute("ALTER TABLE payments_gone RENAME TO payments")
    # and it recovers by itself
    assert httpx.get(daemon.url + "/payments-summary", timeout=10).status_code == 200
    wait_until(lambda: daemon.post(body % "33333333-3333-4333-8333-333333333333").status_code in (200, 202),
               timeout=10, what="a payment accepted again")
    wait_until(lambda: daemon.summary()["default"]["totalRequests"] == 2, what="it is paid")
    assert processors.payment("default", "22222222-2222-4222-8222-222222222222") is None


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(daemon_factory):
    daemon = daemon_factory("--no-control", "--idle-timeout", "0.5")
    host, port = daemon.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /payments-summary HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = b""
        while b"}}" not in answer:  # the summary's JSON ends the whole answer
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        idle_since = time.monotonic()
        assert sock.recv(65536) == b""  # closed by the server, silently
        assert 0.4 <= time.monotonic() - idle_since < 5
