"""Listening addresses: ``HOST:PORT`` for TCP or ``unix:/path`` for a unix socket."""

from __future__ import annotations

import errno
import os
import socket as stdsocket
import stat
from dataclasses import dataclass

import trio


class AddressError(ValueError):
    """An address that cannot be parsed; the message says what is expected."""


class ListenError(Exception):
    """An address that cannot be listened on; the message says which and why, in one line."""


@dataclass(frozen=True)
class Address:
    host: str = ""
    port: int = 0
    unix_path: str = ""

    @property
    def is_unix(self) -> bool:
        return bool(self.unix_path)

    def __str__(self) -> str:
        return f"unix:{self.unix_path}" if self.is_unix else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """``HOST:PORT``, ``:PORT`` (all interfaces) or ``unix:/path``."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise AddressError(f"{text!r}: expected unix:/path/to/socket")
        return Address(unix_path=path)
    host, colon, port = text.rpartition(":")
    if not colon or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise AddressError(f"{text!r}: expected HOST:PORT (port 0-65535) or unix:/path")
    host = host.strip("[]") or "0.0.0.0"
    return Address(host=host, port=int(port))


async def open_listeners(address: Address, backlog: int = 4096) -> list[trio.SocketListener]:
    """Bind and listen, or raise :class:`ListenError`. A unix socket replaces a stale socket
    file (nobody answers on it), never a live one nor any other kind of file."""
    if not address.is_unix:
        try:
            return await trio.open_tcp_listeners(address.port, host=address.host, backlog=backlog)
        except OSError as exc:  # in use, not this host's address, a name that does not resolve
            raise ListenError(f"cannot listen on {address}: {_reason(exc)}") from None
        except UnicodeError:  # "a..b", a label over 63 characters: IDNA cannot encode it
            raise ListenError(f"cannot listen on {address}: not a valid host name") from None
    path = address.unix_path
    await trio.to_thread.run_sync(clear_stale_socket, path)
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        await sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:  # another process bound it since the check
            raise ListenError(f"cannot listen on {address}: in use by another running process") from None
        raise ListenError(f"cannot listen on {address}: {_reason(exc)}") from None
    except BaseException:
        sock.close()
        raise
    return [trio.SocketListener(sock)]


def clear_stale_socket(path: str) -> None:
    """Make way for a unix socket at ``path``: remove a socket file nobody answers on (what a
    process that died leaves). Raise :class:`ListenError` if a live process answers on it, or if
    ``path`` is something else than a socket. Blocks for up to a second (a full backlog)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenError(f"cannot listen on unix:{path}: {_reason(exc)}") from None
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen on unix:{path}: it exists and is not a socket; not replacing it")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    except OSError as exc:
        raise ListenError(f"cannot listen on unix:{path}: cannot tell whether it is in use ({exc})") from None
    finally:
        probe.close()
    raise ListenError(f"cannot listen on unix:{path}: in use by another running process")


def _reason(exc: OSError) -> str:
    """Why a bind failed, without the address (the caller names it): ``Address already in use``."""
    if isinstance(exc, stdsocket.gaierror) or not exc.errno:
        return exc.strerror or str(exc)
    return os.strerror(exc.errno)


def bound_port(listeners: list[trio.SocketListener]) -> int:
    """The TCP port the first listener got (useful after binding port 0)."""
    return listeners[0].socket.getsockname()[1]
