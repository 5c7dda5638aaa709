"""``rinha stack up``: the whole local topology, supervised in the foreground.

What runs (each child in its own process group, so that a signal reaches it and everything it
started, and so that the terminal's Ctrl-C reaches only the supervisor, which stops them in order):

* the processor pair (``rinha processors``), when asked;
* N ``rinha serve`` instances on unix sockets ``api1.sock``, ``api2.sock``, ... in a runtime
  directory, sharing one SQLite file: all roles each (topology ``all``), or ``--roles api`` each
  plus one ``worker`` with ``--roles dispatch,health`` (topology ``split``);
* nginx on the port, with the repository's ``nginx.conf`` rendered for those sockets and port.

Contract: :func:`run` returns once everything it started has exited. ``0`` after SIGTERM/SIGINT;
``1`` when a child died unexpectedly (or could not start), after stopping the rest; the caller
turns :class:`NginxNotFound` into exit code 2 before anything was started. Stopping is SIGTERM to
each process group, then SIGKILL after ``grace`` seconds: nothing is left behind. If the
supervisor itself is killed, its children get SIGTERM from the kernel (``PR_SET_PDEATHSIG``).

Synchronous on purpose: a handful of ``Popen`` objects, a wake-up socket for signals, polling.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

from rinha.store import display

#: Where ``rinha stack up`` looks for nginx after ``$RINHA_NGINX`` and ``$PATH``.
NGINX_FALLBACK_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin")
NGINX_HINT = "nginx not found; install it with: apt-get install nginx-light"
#: The longest path a unix socket address can hold on Linux (``sun_path`` is 108 bytes).
MAX_SOCKET_PATH = 107
LOCAL_HOSTS = ("127.0.0.1", "localhost")


class StackError(Exception):
    """The stack cannot start; the message says why (one line)."""


class NginxNotFound(StackError):
    """No usable nginx binary."""


# ---------------------------------------------------------------------------------------------
# nginx: finding it, rendering its configuration


#: The stack's topologies; see Plan.topology.
TOPOLOGIES = ("all", "split")


def find_nginx(environ: dict[str, str] | None = None) -> str:
    """The nginx binary: ``$RINHA_NGINX`` if set (and nothing else), else ``$PATH``, else the sbin dirs."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("RINHA_NGINX")
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise NginxNotFound(f"{NGINX_HINT} (RINHA_NGINX={explicit} is not an executable file)")
    found = shutil.which("nginx", path=environ.get("PATH", os.defpath))
    if found:
        return found
    for directory in NGINX_FALLBACK_DIRS:
        candidate = os.path.join(directory, "nginx")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise NginxNotFound(NGINX_HINT)


def find_nginx_conf(explicit: str | None = None) -> Path:
    """The ``nginx.conf`` to render: given, else ``./nginx.conf``, else the source checkout's."""
    candidates = [Path(explicit)] if explicit else [Path.cwd() / "nginx.conf", Path(__file__).resolve().parents[1] / "nginx.conf"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise StackError(f"nginx.conf not found (looked at {', '.join(map(str, candidates))}); pass --nginx-conf")


_LISTEN = re.compile(r"^(?P<head>\s*listen\s+)(?P<port>\d+)(?P<tail>[\s;])", re.MULTILINE)
_UNIX_SERVER = re.compile(r"^(?P<indent>[ \t]*)server\s+unix:(?P<path>[^\s;]+)(?P<params>[^;]*);[^\n]*\n?", re.MULTILINE)


def render_nginx_conf(template: str, port: int, sockets: list[str]) -> str:
    """``template`` with its one ``listen <port>`` set to ``port`` and its upstream's
    ``server unix:...;`` lines replaced by one line per socket (parameters of the first kept)."""
    if not sockets:
        raise ValueError("at least one socket is needed")
    listens = _LISTEN.findall(template)
    if len(listens) != 1:
        raise StackError(f"nginx.conf: expected exactly one `listen <port>` line, found {len(listens)}")
    servers = list(_UNIX_SERVER.finditer(template))
    if not servers:
        raise StackError("nginx.conf: no `server unix:/path;` line to render the instances into")
    first = servers[0]
    lines = "".join(f"{first['indent']}server unix:{path}{first['params']};\n" for path in sockets)
    out, cursor = [], 0
    for index, match in enumerate(servers):
        out.append(template[cursor:match.start()])
        if index == 0:
            out.append(lines)
        cursor = match.end()
    out.append(template[cursor:])
    rendered = "".join(out)
    return _LISTEN.sub(lambda m: f"{m['head']}{port}{m['tail']}", rendered, count=1)


def nginx_args(nginx: str, prefix: str, conf: str, *, test: bool = False) -> list[str]:
    """The nginx command line for a private prefix: pid file and temp dirs under ``prefix``."""
    directives = f"daemon off; pid {os.path.join(prefix, 'nginx.pid')};"
    if os.geteuid() == 0:
        # Root master: keep the workers as the supervisor's user, which can reach the sockets
        # wherever the runtime directory is (nginx's default `nobody` may not traverse it).
        directives += " user root;"
    args = [nginx, "-p", prefix.rstrip("/") + "/", "-e", "stderr", "-c", conf, "-g", directives]
    return [*args, "-t", "-q"] if test else args


def check_nginx_conf(nginx: str, prefix: str, conf: str) -> None:
    """``nginx -t`` on the rendered file; raises StackError with nginx's own message."""
    result = subprocess.run(nginx_args(nginx, prefix, conf, test=True), capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        message = " ".join((result.stderr or result.stdout).split())
        raise StackError(f"nginx -t rejected {conf}: {message}")


# ---------------------------------------------------------------------------------------------
# The plan: what to start, decided (and validated) before anything starts


@dataclass(frozen=True)
class Plan:
    port: int
    instances: int
    with_processors: bool
    default_url: str
    fallback_url: str
    db: str
    lease_seconds: float
    runtime_dir: str
    keep_going: bool = False
    log_level: str = "info"
    nginx: str = "nginx"
    nginx_conf: str = "nginx.conf"
    grace: float = 10.0
    owns_runtime_dir: bool = False  # created by us: removed at the end
    #: "all": every instance takes, pays and polls; "split": the instances only take payments
    #: (--roles api) and one more process, the worker, pays them and polls (dispatch,health).
    topology: str = "split"

    @property
    def sockets(self) -> list[str]:
        return [os.path.join(self.runtime_dir, f"api{i}.sock") for i in range(1, self.instances + 1)]

    @property
    def nginx_prefix(self) -> str:
        return os.path.join(self.runtime_dir, "nginx")

    @property
    def processor_ports(self) -> tuple[int, int]:
        return _port_of(self.default_url), _port_of(self.fallback_url)

    def processors_command(self) -> list[str]:
        default_port, fallback_port = self.processor_ports
        return _rinha("processors", "--host", "127.0.0.1", "--default-port", str(default_port),
                      "--fallback-port", str(fallback_port))

    @property
    def worker_control(self) -> str:
        return os.path.join(self.runtime_dir, "worker.control.sock")

    def serve_command(self, socket_path: str) -> list[str]:
        roles = "api" if self.topology == "split" else "api,dispatch,health"
        return self._serve(socket_path, roles)

    def worker_command(self) -> list[str]:
        """The split topology's payer: no data plane (its --listen is never opened)."""
        return self._serve(os.path.join(self.runtime_dir, "worker.sock"), "dispatch,health")

    def _serve(self, socket_path: str, roles: str) -> list[str]:
        # Each instance its own control socket: the default one (next to the shared db) is taken
        # by the first instance only.
        control = socket_path.removesuffix(".sock") + ".control.sock"
        # The database reaches the children as RINHA_DB (see Supervisor.run), not on their command
        # line: a PostgreSQL URL may hold a password, and command lines are readable by all users.
        return _rinha("serve", "--listen", f"unix:{socket_path}", "--control", control,
                      "--default-url", self.default_url, "--fallback-url", self.fallback_url,
                      "--roles", roles, "--lease-seconds", str(self.lease_seconds),
                      "--log-level", self.log_level)


def _rinha(*args: str) -> list[str]:
    # This interpreter, not whatever `rinha` is on PATH: the children run the same code.
    return [sys.executable, "-m", "rinha.cli", *args]


def _port_of(url: str) -> int:
    port = httpx.URL(url).port
    return port if port is not None else 80


def make_plan(*, port: int, instances: int, with_processors: bool, default_url: str, fallback_url: str,
              db: str, lease_seconds: float, runtime_dir: str | None = None, keep_going: bool = False,
              log_level: str = "info", nginx_conf: str | None = None, nginx: str = "nginx",
              grace: float = 10.0, topology: str = "split") -> Plan:
    """Validate the options (ValueError names the bad one) and decide the paths."""
    from rinha.daemon.config import ConfigError, check_url

    if not 1 <= port <= 65535:
        raise ValueError(f"--port {port}: expected 1-65535")
    if not 1 <= instances <= 32:
        raise ValueError(f"--instances {instances}: expected 1-32")
    if topology not in TOPOLOGIES:
        raise ValueError(f"--topology {topology!r}: expected one of {', '.join(TOPOLOGIES)}")
    if not 0.5 <= lease_seconds <= 3600:
        raise ValueError(f"--lease-seconds {lease_seconds}: expected 0.5-3600 seconds")
    try:
        default_url = check_url("--default-url", default_url)
        fallback_url = check_url("--fallback-url", fallback_url)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if with_processors:
        for option, url in (("--default-url", default_url), ("--fallback-url", fallback_url)):
            parsed = httpx.URL(url)
            if parsed.host not in LOCAL_HOSTS or parsed.port is None:
                raise ValueError(f"{option} {url!r}: with --with-processors it must be "
                                 f"http://127.0.0.1:PORT or http://localhost:PORT (where they are started)")
        ports = {_port_of(default_url), _port_of(fallback_url)}
        if len(ports) != 2 or port in ports:
            raise ValueError("--port, --default-url and --fallback-url must use three different ports")
    from rinha.store import EngineMissing, check_db, is_url

    try:
        check_db(db)
    except (ValueError, EngineMissing) as exc:
        raise ValueError(f"--db {exc}") from None
    conf = find_nginx_conf(nginx_conf)
    owns = runtime_dir is None
    if runtime_dir is None:
        runtime_dir = tempfile.mkdtemp(prefix="rinha-stack-")
    runtime_dir = os.path.abspath(runtime_dir)
    if os.path.exists(runtime_dir) and not os.path.isdir(runtime_dir):
        raise ValueError(f"--runtime-dir {runtime_dir!r}: exists and is not a directory")
    longest = os.path.join(runtime_dir, f"api{instances}.control.sock")
    if len(longest.encode()) > MAX_SOCKET_PATH:
        raise ValueError(f"--runtime-dir {runtime_dir!r}: too long for a unix socket path ({longest})")
    return Plan(port=port, instances=instances, with_processors=with_processors, default_url=default_url,
                fallback_url=fallback_url, db=db if is_url(db) else os.path.abspath(db), lease_seconds=lease_seconds,
                runtime_dir=runtime_dir, keep_going=keep_going, log_level=log_level, nginx=nginx,
                nginx_conf=str(conf), grace=grace, owns_runtime_dir=owns, topology=topology)


# ---------------------------------------------------------------------------------------------
# Children


@dataclass
class Child:
    name: str
    role: str  # processors | instance | nginx
    address: str
    proc: subprocess.Popen
    reported: bool = False  # its death was reported already

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel for SIGTERM when the supervisor dies, however it dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _spawn(args: list[str]) -> subprocess.Popen:
    def prepare() -> None:  # pragma: no cover - runs in the child between fork and exec
        if sys.platform.startswith("linux"):
            _die_with_parent()

    return subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=prepare)


def _signal_group(child: Child, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    """Starts the plan's processes, watches them, stops them all. One use."""

    def __init__(self, plan: Plan, say: Callable[[str], None], warn: Callable[[str], None],
                 show_table: Callable[[list[tuple[str, int, str]]], None]):
        self.plan = plan
        self.say = say
        self.warn = warn
        self.show_table = show_table
        self.children: list[Child] = []
        self.stop_signal: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._old_handlers: dict[int, object] = {}
        self._old_wakeup = -1

    # -- signals ---------------------------------------------------------------------------

    def _install_signals(self) -> None:
        for sock in (self._wake_r, self._wake_w):
            sock.setblocking(False)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        self._wake_r.close()
        self._wake_w.close()

    def _on_signal(self, signum, frame) -> None:
        if signum != signal.SIGCHLD and self.stop_signal is None:
            self.stop_signal = signum

    def _pause(self, seconds: float) -> None:
        """Sleep until ``seconds`` pass or a signal arrives (a child exiting, SIGTERM...)."""
        try:
            select.select([self._wake_r], [], [], seconds)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for safety
            pass
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        try:
            try:
                self._start_all()
            except StackError as exc:
                self.warn(f"error: {exc}")
                return 1
            except _Stopped:
                return 0

            self.say(f"ready: http://localhost:{self.plan.port} (db {display(self.plan.db)}); Ctrl-C stops everything")
            return self._watch()
        finally:
            self.stop_all()
            self._restore_signals()
            if self.plan.owns_runtime_dir:
                shutil.rmtree(self.plan.runtime_dir, ignore_errors=True)

    def _start_all(self) -> None:
        plan = self.plan
        os.makedirs(plan.runtime_dir, exist_ok=True)
        os.makedirs(plan.nginx_prefix, exist_ok=True)
        conf_path = os.path.join(plan.nginx_prefix, "nginx.conf")
        template = Path(plan.nginx_conf).read_text()
        Path(conf_path).write_text(render_nginx_conf(template, plan.port, plan.sockets))
        check_nginx_conf(plan.nginx, plan.nginx_prefix, conf_path)
        if "://" not in plan.db:  # a file path, not a database URL
            os.makedirs(os.path.dirname(plan.db) or ".", exist_ok=True)

        if plan.with_processors:
            child = self._start("processors", "processors", f"{plan.default_url} {plan.fallback_url}",
                                plan.processors_command())
            for port in plan.processor_ports:
                self._wait_ready(child, lambda port=port: _tcp_answers("127.0.0.1", port))
        # The schema first, in a process of its own: the instances then find it up to date and
        # never load the migration code (sqlite-utils: tens of MB each).
        os.environ["RINHA_DB"] = plan.db  # for every child: see Plan._serve
        migrated = subprocess.run(_rinha("migrate"), capture_output=True, text=True)
        if migrated.returncode:
            raise StackError(f"rinha migrate --db {display(plan.db)} failed: {(migrated.stderr or migrated.stdout).strip()}")
        # One after the other: each would migrate the shared database on start.
        for index, path in enumerate(plan.sockets, start=1):
            child = self._start(f"api{index}", "instance", f"unix:{path}", plan.serve_command(path))
            self._wait_ready(child, lambda path=path: _http_answers("http://rinha/payments-summary", uds=path))
        if plan.topology == "split":
            # At the api instances' priority, on purpose: a worker held back (its autogroup at nice
            # 10) kept SQLite's write lock longer, and accepts over 2.5 ms doubled (1,100 VUs)
            child = self._start("worker", "instance", "(pays; no data plane)", plan.worker_command())
            self._wait_ready(child, lambda: _http_answers("http://rinha/status", uds=plan.worker_control))
        nginx = self._start("nginx", "nginx", f"http://0.0.0.0:{plan.port}", nginx_args(plan.nginx, plan.nginx_prefix, conf_path))
        self._write_state()
        self.show_table([(c.name, c.pid, c.address) for c in self.children])
        self._wait_ready(nginx, lambda: _http_answers(f"http://127.0.0.1:{plan.port}/payments-summary", status=200))

    def _start(self, name: str, role: str, address: str, args: list[str]) -> Child:
        child = Child(name, role, address, _spawn(args))
        self.children.append(child)
        return child

    def _wait_ready(self, child: Child, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.stop_signal is not None:
                raise _Stopped
            for other in self.children:
                if not other.alive():
                    other.reported = True
                    raise StackError(f"{other.name} (pid {other.pid}) exited with code {other.proc.returncode} while starting")
            if ready():
                return
            if time.monotonic() > deadline:
                raise StackError(f"{child.name} not ready after {timeout:g} s")
            self._pause(0.05)

    def _watch(self) -> int:
        """Until a stop signal (0) or a death that ends the stack (1)."""
        while self.stop_signal is None:
            for child in self.children:
                if child.alive() or child.reported:
                    continue
                child.reported = True
                self.warn(f"error: {child.name} (pid {child.pid}) exited unexpectedly with code {child.proc.returncode}")
                survivors = [c for c in self.children if c.role == "instance" and c.alive()]
                if self.plan.keep_going and child.role == "instance" and survivors:
                    self.warn(f"--keep-going: {', '.join(c.name for c in survivors)} keep serving; "
                              f"{child.name}'s pending payments are adopted after {self.plan.lease_seconds:g} s")
                    continue
                self.warn("stopping the stack")
                return 1
            self._pause(1.0)
        self.say(f"{signal.Signals(self.stop_signal).name} received: stopping the stack")
        return 0

    def stop_all(self) -> None:
        """nginx first (no new requests), then the instances, then the processors they pay through."""
        order = {"nginx": 0, "instance": 1, "processors": 2}
        for stage in sorted({c.role for c in self.children}, key=order.__getitem__):
            group = [c for c in self.children if c.role == stage]
            for child in group:
                if child.alive():
                    _signal_group(child, signal.SIGTERM)
            deadline = time.monotonic() + self.plan.grace
            for child in group:
                try:
                    child.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.warn(f"{child.name} (pid {child.pid}) still running after {self.plan.grace:g} s: SIGKILL")
                    _signal_group(child, signal.SIGKILL)
                    child.proc.wait()
                # Anything the child started in its group and left behind.
                _signal_group(child, signal.SIGKILL)

    def _write_state(self) -> None:
        """``stack.json`` in the runtime directory: who runs where (for tools and tests)."""
        state = {
            "port": self.plan.port, "db": display(self.plan.db), "runtime_dir": self.plan.runtime_dir,
            "supervisor": os.getpid(),
            "children": [{"name": c.name, "role": c.role, "pid": c.pid, "address": c.address} for c in self.children],
        }
        path = os.path.join(self.plan.runtime_dir, "stack.json")
        Path(path + ".tmp").write_text(json.dumps(state, indent=2))
        os.replace(path + ".tmp", path)


class _Stopped(Exception):
    """A stop signal arrived while starting."""


def _tcp_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _http_answers(url: str, uds: str | None = None, status: int | None = None) -> bool:
    transport = httpx.HTTPTransport(uds=uds) if uds else None
    try:
        with httpx.Client(transport=transport, timeout=1.0) as client:
            reply = client.get(url)
    except httpx.HTTPError:
        return False
    return status is None or reply.status_code == status
