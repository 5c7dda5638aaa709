"""What the operator commands share: finding the store and the daemon's control socket,
talking to the control plane (httpx over the unix socket, on anyio so that callers on either
event loop may use :class:`ControlClient`), and failing with one clear line.

The control socket of the daemon using ``--db PATH`` is ``PATH.control.sock`` unless the
daemon was started with ``--control``; pass the same ``--control`` to the commands then.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import NoReturn

import anyio
import httpx
import typer

from rinha.clock import InstantError, parse_instant_us
from rinha.daemon.config import default_control_path

DEFAULT_DB = "./rinha.db"
DB_HELP = "The daemon's store: SQLite file or postgresql:// URL (as given to `rinha serve --db`)."
CONTROL_HELP = "The daemon's control socket (default: <db>.control.sock; for a URL, $TMPDIR/rinha-<hash>.control.sock)."


def db_option():
    return typer.Option(DEFAULT_DB, "--db", envvar="RINHA_DB", help=DB_HELP)


def control_option():
    return typer.Option(None, "--control", envvar="RINHA_CONTROL", help=CONTROL_HELP)


def fail(message: str, code: int = 1) -> NoReturn:
    """An expected failure: one line on stderr, exit ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def parse_instant_option(value: str | None, option: str) -> int | None:
    """Microseconds from an ISO-8601 option value (None stays None); a bad one is a usage error."""
    if value is None or not value.strip():
        return None
    try:
        return parse_instant_us(value)
    except InstantError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from None


# ---------------------------------------------------------------------------------------------
# the store


def open_db(db: str):
    """The store at ``db`` (a SQLite file or a PostgreSQL URL) for the operator commands, or a
    one-line failure (exit 1).

    Never creates a database. An older schema is migrated, exactly as ``rinha serve`` would.
    """
    from rinha.store import EngineMissing, check_db, display, is_url, open_store
    from rinha.store.schema import MIGRATIONS

    try:
        check_db(db)
    except (ValueError, EngineMissing) as exc:
        fail(f"--db {exc}")
    if not is_url(db) and not os.path.isfile(db):
        fail(f"no database at {db} (pass --db PATH or URL, or set RINHA_DB)")
    name = display(db)
    store = open_store(db)
    try:
        version = store.schema_version()
        if version == 0:
            store.close()
            fail(f"{name} is not a rinha database (no schema)")
        if version < len(MIGRATIONS):
            store.migrate()
        elif version > len(MIGRATIONS):
            store.close()
            fail(f"{name} has schema version {version}, newer than this rinha knows ({len(MIGRATIONS)}); upgrade rinha")
    except store.errors as exc:
        store.close()
        fail(f"cannot read {name}: {' '.join(str(exc).split())}")
    return store


# ---------------------------------------------------------------------------------------------
# the control socket


class ControlUnavailable(Exception):
    """No daemon answers on the control socket; the message says why, in one line."""


class ControlError(Exception):
    """The daemon answered with an error."""


def control_path(db: str, control: str | None) -> str:
    control = (control or "").strip()
    return control if control else default_control_path(db)


def probe(path: str, timeout: float = 2.0) -> str:
    """``running``, ``absent`` (no socket file) or ``stale`` (a socket file nobody answers on)."""
    if not os.path.exists(path):
        return "absent"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return "stale"
    except OSError as exc:
        raise ControlUnavailable(_connect_problem(path, exc)) from None
    finally:
        sock.close()
    return "running"


def _connect_problem(path: str, exc: BaseException) -> str:
    # httpx wraps the socket's OSError: raised from it (__cause__) or while handling it
    # (__context__, as httpcore does).
    while not isinstance(exc, OSError) and (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT or not os.path.exists(path):
        return f"no daemon: no control socket at {path} (is `rinha serve` running with this --db? else pass --control)"
    if code == errno.ECONNREFUSED:
        return f"no daemon answering on {path} (a stale socket: the daemon is not running)"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied on {path} (the control socket is mode 0600: run as the daemon's user)"
    return f"cannot reach the daemon on {path}: {exc}"


class ControlClient:
    """The control plane's HTTP API over its unix socket (use ``async with``)."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> "ControlClient":
        self._client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=self.path),
                                         base_url="http://rinha-control", timeout=self.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.aclose()

    async def get(self, endpoint: str, **params) -> dict:
        return self._json(await self._request("GET", endpoint, params={k: v for k, v in params.items() if v is not None}))

    async def get_text(self, endpoint: str) -> str:
        return (await self._request("GET", endpoint)).text

    async def post(self, endpoint: str, payload: dict) -> dict:
        return self._json(await self._request("POST", endpoint, json=payload))

    async def _request(self, method: str, endpoint: str, **kwargs) -> httpx.Response:
        try:
            reply = await self._client.request(method, endpoint, **kwargs)
        except httpx.ConnectError as exc:
            raise ControlUnavailable(_connect_problem(self.path, exc)) from None
        except httpx.TimeoutException:
            raise ControlUnavailable(f"the daemon on {self.path} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ControlUnavailable(f"the daemon on {self.path} broke the connection ({type(exc).__name__})") from None
        if reply.status_code >= 400:
            try:
                message = reply.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = reply.text[:200]
            raise ControlError(f"the daemon answered {reply.status_code}: {message}")
        return reply

    @staticmethod
    def _json(reply: httpx.Response) -> dict:
        try:
            return reply.json()
        except ValueError:
            raise ControlError("the daemon answered something that is not JSON") from None


def run(function, *args):
    """Run an async function of the CLI on trio (the daemon's loop); control failures exit 1."""
    try:
        return anyio.run(function, *args, backend="trio")
    except (ControlUnavailable, ControlError) as exc:
        fail(str(exc))


async def fetch(path: str, endpoint: str, timeout: float = 10.0, **params) -> dict:
    """One GET to the control plane."""
    async with ControlClient(path, timeout) as client:
        return await client.get(endpoint, **params)
