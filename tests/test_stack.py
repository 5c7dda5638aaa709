"""``rinha stack up``: the real topology (processors, two instances on unix sockets, nginx).

Everything is a real process on real sockets: the stack is started as ``rinha stack up`` on free
ports, payments go through nginx, each instance is also asked directly on its unix socket, and
the processors' admin API is the referee. Process clean-up is checked in ``/proc``: no process
may remain in any process group the stack started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rinha import stack as stack_module
from rinha.cli.main import app
from rinha.stack import NGINX_HINT, NginxNotFound, StackError, find_nginx, render_nginx_conf
from tests.conftest import Processors
from tests.support.engines import both_engines, query
from tests.support.load import PaymentStream
from tests.support.procs import Service, free_port, rinha_command
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]


# --- helpers -----------------------------------------------------------------------------------


@dataclass
class Stack:
    service: Service
    port: int
    runtime_dir: Path
    db: str
    processors: Processors | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict:
        return json.loads((self.runtime_dir / "stack.json").read_text())

    def children(self, role: str | None = None) -> list[dict]:
        return [c for c in self.state()["children"] if role is None or c["role"] == role]

    def instance(self, name: str) -> dict:
        return next(c for c in self.children("instance") if c["name"] == name)

    def instance_summary(self, name: str) -> dict:
        """``GET /payments-summary`` straight from one instance's unix socket, not through nginx."""
        path = self.instance(name)["address"].removeprefix("unix:")
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=10) as client:
            reply = client.get("http://rinha/payments-summary")
        assert reply.status_code == 200, reply.text
        return reply.json()

    def query(self, sql: str, *args) -> list[tuple]:
        return query(self.db, sql, *args)  # either engine

    def owners(self) -> dict[int, int]:
        """Pending payments per owning instance pid (the owner is ``host:pid:nonce``)."""
        rows = self.query("SELECT owner, COUNT(*) FROM payments WHERE state = 'pending' AND owner IS NOT NULL GROUP BY owner")
        counts: dict[int, int] = {}
        for owner, count in rows:
            pid = int(owner.split(":")[1])
            counts[pid] = counts.get(pid, 0) + count
        return counts


def process_groups() -> dict[int, set[int]]:
    """Every live process, by process group (zombies included: they are left behind too)."""
    groups: dict[int, set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        pgrp = int(stat.rsplit(")", 1)[1].split()[2])
        groups.setdefault(pgrp, set()).add(int(entry))
    return groups


def started_processes(stack: Stack) -> set[int]:
    """The stack's children and everything in their process groups (nginx's workers...)."""
    groups = process_groups()
    pids = set()
    for child in stack.children():
        pids |= groups.get(child["pid"], set())
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def short_dir() -> Path:
    # unix socket paths are limited to 107 bytes: pytest's tmp_path can be too deep
    return Path(tempfile.mkdtemp(prefix="rs-"))


@pytest.fixture
def stack_factory(db_url):
    started: list[tuple[Service, Path]] = []

    def start(*extra: str, with_processors: bool = True) -> Stack:
        port, default_port, fallback_port = free_port(), free_port(), free_port()
        runtime_dir = short_dir()
        db = db_url  # a SQLite file unless the test runs @both_engines
        default_url, fallback_url = f"http://127.0.0.1:{default_port}", f"http://127.0.0.1:{fallback_port}"
        args = ["stack", "up", "--port", str(port), "--db", db, "--runtime-dir", str(runtime_dir),
                "--default-url", default_url, "--fallback-url", fallback_url, *extra]
        if with_processors:
            args.append("--with-processors")
        service = Service(rinha_command(*args), name="stack")
        started.append((service, runtime_dir))
        service.start()
        stack = Stack(service, port, runtime_dir, db,
                      Processors(default_url, fallback_url, service) if with_processors else None)

        def ready() -> bool:
            if service.proc.poll() is not None:
                raise AssertionError(f"stack exited with {service.proc.returncode}:\n{service.log_text()}")
            # The supervisor's own "ready" line, not nginx answering: nginx answers a moment before
            # the supervisor sees it and starts watching, and a child killed in that moment is
            # reported as dying "while starting" (a race CI hit once).
            return f"ready: http://localhost:{port} " in service.log_text()

        wait_until(ready, timeout=60, what="the supervisor's ready line")
        return stack

    yield start
    for service, runtime_dir in started:
        service.stop(timeout=30)
        # a failed test must not leave the stack's children behind (they have their own groups)
        try:
            children = json.loads((runtime_dir / "stack.json").read_text())["children"]
        except (OSError, ValueError):
            children = []
        for child in children:
            if alive(child["pid"]):
                try:
                    os.killpg(child["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(runtime_dir, ignore_errors=True)


def post(client: httpx.Client, correlation_id: str, amount: str = "19.90") -> httpx.Response:
    return client.post("/payments", content='{"correlationId":"%s","amount":%s}' % (correlation_id, amount),
                       headers={"Content-Type": "application/json"})


def assert_summaries_agree(ours: dict, processors: Processors) -> None:
    theirs = processors.summary("default")
    assert ours["default"]["totalRequests"] == theirs["totalRequests"]
    assert round(ours["default"]["totalAmount"] * 100) == round(float(theirs["totalAmount"]) * 100)
    assert ours["fallback"]["totalRequests"] == processors.summary("fallback")["totalRequests"] == 0


# --- the topology at work ------------------------------------------------------------------------


@pytest.mark.slow
@both_engines
def test_payments_through_nginx_are_spread_over_both_instances_paid_once_and_summaries_agree(stack_factory):
    stack = stack_factory("--topology", "all")
    processors = stack.processors
    # Hold every payment pending (fee-first waits for default): a pending payment's owner is the
    # instance that accepted it.
    processors.set("default", failure=True)
    ids = [str(uuid.uuid4()) for _ in range(40)]
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        for cid in ids:
            assert post(client, cid).status_code == 202
    owners = stack.owners()
    instance_pids = {c["pid"] for c in stack.children("instance")}
    assert set(owners) == instance_pids and len(instance_pids) == 2
    assert sum(owners.values()) == 40 and min(owners.values()) >= 10, owners

    processors.set("default", failure=False)
    for name in ("api1", "api2"):
        wait_until(lambda: stack.instance_summary(name)["default"]["totalRequests"] == 40, timeout=60,
                   what=f"40 payments paid, as {name} reports")
    for name in ("api1", "api2"):
        summary = stack.instance_summary(name)
        assert summary["default"] == {"totalRequests": 40, "totalAmount": 796.0}
        assert_summaries_agree(summary, processors)
    assert_summaries_agree(httpx.get(stack.url + "/payments-summary", timeout=10).json(), processors)
    assert [cid for cid in ids if processors.payment("default", cid) is None] == []
    assert stack.query("SELECT state, COUNT(*) FROM payments GROUP BY state") == [("paid", 40)]


@pytest.mark.slow
def test_split_topology_instances_only_take_payments_and_the_worker_pays_them(stack_factory):
    stack = stack_factory("--topology", "split")
    processors = stack.processors
    children = {c["name"]: c for c in stack.children("instance")}
    assert set(children) == {"api1", "api2", "worker"}
    ids = [str(uuid.uuid4()) for _ in range(40)]
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        for cid in ids:
            assert post(client, cid).status_code == 202
        wait_until(lambda: client.get("/payments-summary").json()["default"]["totalRequests"] == 40, timeout=60,
                   what="40 payments paid")
        assert_summaries_agree(client.get("/payments-summary").json(), processors)
    # the api instances never owned a payment; the worker claimed and paid them all
    roles = dict(stack.query("SELECT pid, roles FROM instances"))
    assert roles == {children["api1"]["pid"]: "api", children["api2"]["pid"]: "api",
                     children["worker"]["pid"]: "dispatch,health"}
    assert stack.query("SELECT state, COUNT(*) FROM payments GROUP BY state") == [("paid", 40)]
    assert [cid for cid in ids if processors.payment("default", cid) is None] == []
    # The database (a PostgreSQL URL may hold a password) reaches the instances through their
    # environment, which only their user can read, never through their command lines.
    for child in children.values():
        argv = Path(f"/proc/{child['pid']}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{child['pid']}/environ").read_bytes().split(b"\0")
        assert b"--db" not in argv and stack.db.encode() not in argv, argv
        assert f"RINHA_DB={stack.db}".encode() in environ


@pytest.mark.slow
def test_kill_9_of_one_instance_under_load_loses_nothing_the_survivor_adopts(stack_factory):
    stack = stack_factory("--topology", "all", "--keep-going", "--lease-seconds", "1")
    processors = stack.processors
    victim, survivor = stack.instance("api1"), stack.instance("api2")
    processors.set("default", failure=True)  # payments pile up, owned by the instance that took them
    stream = PaymentStream(stack.url, rate=100).start()
    try:
        stream.wait_for(100)
        wait_until(lambda: stack.owners().get(victim["pid"], 0) >= 20, timeout=30, what="api1 owning payments")
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(lambda: "api1" in stack.service.log_text() and "exited unexpectedly" in stack.service.log_text(),
                   timeout=10, what="the stack reporting api1's death")
        orphaned = {cid for (cid,) in stack.query(
            "SELECT correlation_id FROM payments WHERE state = 'pending' AND owner LIKE ?", f"%:{victim['pid']}:%")}
        assert orphaned
        processors.set("default", failure=False)
        answered = len(stream.accepted) + len(stream.failed)
        stream.wait_for(answered + 150)
    finally:
        stream.stop()
    assert stack.service.proc.poll() is None, "--keep-going: the stack survives one instance"
    # A POST that may have reached the dead instance is answered 502, never replayed elsewhere;
    # one that could not connect is retried on the survivor. The stream sends one at a time.
    assert all(status == 502 for _, status in stream.failed), stream.failed
    assert len(stream.failed) <= 2, stream.failed
    maybe = {cid for cid, _ in stream.failed}

    expected = len(stream.accepted)
    wait_until(lambda: stack.instance_summary("api2")["default"]["totalRequests"] >= expected, timeout=60,
               what=f"{expected} payments paid by the survivor's account")
    wait_until(lambda: not stack.query("SELECT 1 FROM payments WHERE state = 'pending'"), timeout=30,
               what="nothing left pending")
    ours = stack.instance_summary("api2")
    assert_summaries_agree(ours, processors)
    assert 0 <= ours["default"]["totalRequests"] - expected <= len(maybe)
    assert [cid for cid in stream.accepted if processors.payment("default", cid) is None] == []
    placeholders = ",".join("?" * len(orphaned))
    states = stack.query(f"SELECT DISTINCT state FROM payments WHERE correlation_id IN ({placeholders})", *orphaned)
    assert states == [("paid",)], "the dead instance's payments were adopted and paid"
    assert alive(survivor["pid"])


# --- starting and stopping -------------------------------------------------------------------------


@pytest.mark.parametrize("with_processors", [True, False], ids=["with-processors", "instances-only"])
def test_sigterm_stops_everything_and_leaves_no_process_behind(stack_factory, with_processors):
    stack = stack_factory(with_processors=with_processors)
    roles = {c["role"] for c in stack.children()}
    assert roles == ({"processors", "instance", "nginx"} if with_processors else {"instance", "nginx"})
    processes = started_processes(stack)
    nginx = stack.children("nginx")[0]["pid"]
    assert len(process_groups()[nginx]) >= 2, "nginx master and its worker"
    assert len(processes) >= len(stack.children()) + 1

    stack.service.signal(signal.SIGTERM)
    assert stack.service.wait(30) == 0, stack.service.log_text()
    assert [pid for pid in processes if alive(pid)] == []
    groups = process_groups()
    assert [c["name"] for c in stack.children() if c["pid"] in groups] == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(stack.url + "/payments-summary", timeout=2)
    assert "SIGTERM received: stopping the stack" in stack.service.log_text()


def test_a_child_dying_stops_the_stack_with_an_error(stack_factory):
    stack = stack_factory(with_processors=False)
    processes = started_processes(stack)
    api2 = stack.instance("api2")["pid"]
    os.kill(api2, signal.SIGKILL)
    assert stack.service.wait(30) == 1
    log = stack.service.log_text()
    assert f"api2 (pid {api2}) exited unexpectedly" in log
    assert [pid for pid in processes if alive(pid)] == []


def test_children_stop_when_the_supervisor_is_killed(stack_factory):
    """kill -9 of `rinha stack up` itself: the kernel signals its children (PR_SET_PDEATHSIG)."""
    stack = stack_factory(with_processors=False)
    processes = started_processes(stack)
    stack.service.proc.kill()
    stack.service.wait(10)
    wait_until(lambda: not [pid for pid in processes if alive(pid)], timeout=20,
               what="every child of the killed supervisor gone")


def test_a_port_in_use_fails_the_start_and_stops_what_was_started(tmp_path):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runtime_dir = short_dir()
        try:
            result = subprocess.run(
                rinha_command("stack", "up", "--port", str(port), "--db", str(tmp_path / "rinha.db"),
                              "--runtime-dir", str(runtime_dir), "--default-url", f"http://127.0.0.1:{free_port()}",
                              "--fallback-url", f"http://127.0.0.1:{free_port()}"),
                capture_output=True, text=True, timeout=60)
            state = json.loads((runtime_dir / "stack.json").read_text())
        finally:
            shutil.rmtree(runtime_dir, ignore_errors=True)
    assert result.returncode == 1
    assert "nginx" in result.stderr and "exited" in result.stderr
    assert "Address already in use" in result.stderr
    assert [c["pid"] for c in state["children"] if alive(c["pid"])] == []


def test_missing_nginx_is_one_clear_line_and_starts_nothing(tmp_path):
    runtime_dir = tmp_path / "run"
    result = subprocess.run(
        rinha_command("stack", "up", "--port", str(free_port()), "--db", str(tmp_path / "rinha.db"),
                      "--runtime-dir", str(runtime_dir), "--with-processors",
                      "--default-url", f"http://127.0.0.1:{free_port()}", "--fallback-url", f"http://127.0.0.1:{free_port()}"),
        capture_output=True, text=True, timeout=60, env={**os.environ, "RINHA_NGINX": str(tmp_path / "no-nginx")})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: nginx not found; install it with: apt-get install nginx-light")
    assert result.stdout == ""
    assert not runtime_dir.exists() and not (tmp_path / "rinha.db").exists()


def test_nginx_lookup_order(tmp_path, monkeypatch):
    real = find_nginx()
    monkeypatch.setattr(stack_module, "NGINX_FALLBACK_DIRS", (str(tmp_path / "sbin"),))
    with pytest.raises(NginxNotFound) as caught:
        find_nginx({"PATH": str(tmp_path / "bin")})
    assert str(caught.value) == NGINX_HINT
    (tmp_path / "sbin").mkdir()
    os.symlink(real, tmp_path / "sbin" / "nginx")
    assert find_nginx({"PATH": str(tmp_path / "bin")}) == str(tmp_path / "sbin" / "nginx")
    (tmp_path / "bin").mkdir()
    os.symlink(real, tmp_path / "bin" / "nginx")
    assert find_nginx({"PATH": str(tmp_path / "bin")}) == str(tmp_path / "bin" / "nginx")
    assert find_nginx({"PATH": str(tmp_path / "bin"), "RINHA_NGINX": real}) == real


@pytest.mark.parametrize("options, complaint", [
    (["--instances", "0"], "--instances 0"),
    (["--port", "70000"], "--port 70000"),
    (["--lease-seconds", "0.1"], "--lease-seconds 0.1"),
    (["--default-url", "ftp://x"], "--default-url"),
    (["--with-processors", "--default-url", "http://example.com:8001"], "--with-processors"),
    (["--with-processors", "--default-url", "http://127.0.0.1:8002"], "three different ports"),
    (["--runtime-dir", "/tmp/" + "x" * 120], "too long"),
    (["--runtime-dir", __file__], "exists and is not a directory"),
    (["--log-level", "loud"], "--log-level"),
    (["--topology", "mesh"], "--topology 'mesh'"),
])
def test_bad_options_are_refused_before_anything_starts(options, complaint):
    result = CliRunner().invoke(app, ["stack", "up", *options])
    assert result.exit_code == 2
    text = " ".join(result.output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())  # unwrap rich's error box
    assert "Invalid value" in text and complaint in text, text


# --- rendering nginx.conf ----------------------------------------------------------------------------


def test_render_sets_the_port_and_one_upstream_line_per_socket():
    template = (ROOT / "nginx.conf").read_text()
    rendered = render_nginx_conf(template, 12345, ["/a/api1.sock", "/a/api2.sock", "/a/api3.sock"])
    assert "listen 12345 backlog=4096;" in rendered and "listen 9999" not in rendered
    assert [line.strip() for line in rendered.splitlines() if line.strip().startswith("server unix:")] == [
        "server unix:/a/api1.sock;", "server unix:/a/api2.sock;", "server unix:/a/api3.sock;"]
    # nothing else changes
    strip = lambda text: [line for line in text.splitlines() if not line.strip().startswith(("server unix:", "listen "))]
    assert strip(rendered) == strip(template)


def test_render_keeps_server_parameters_and_refuses_templates_it_cannot_render():
    template = "http {\n  upstream u {\n    server unix:/x.sock max_fails=3;\n  }\n  server {\n    listen 80;\n  }\n}\n"
    assert "    server unix:/s1 max_fails=3;\n    server unix:/s2 max_fails=3;\n" in render_nginx_conf(template, 81, ["/s1", "/s2"])
    with pytest.raises(StackError, match="listen"):
        render_nginx_conf(template.replace("listen 80;", ""), 81, ["/s1"])
    with pytest.raises(StackError, match="server unix"):
        render_nginx_conf(template.replace("server unix:/x.sock max_fails=3;", "server 127.0.0.1:1;"), 81, ["/s1"])
