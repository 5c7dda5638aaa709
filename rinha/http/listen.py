"""Listening addresses: ``HOST:PORT`` for TCP or ``unix:/path`` for a unix socket."""

from __future__ import annotations

import os
import socket as stdsocket
import stat
from dataclasses import dataclass

import trio


class AddressError(ValueError):
    """An address that cannot be parsed; the message says what is expected."""


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
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise AddressError(f"{text!r}: expected HOST:PORT (port 0-65535) or unix:/path")
    host = host.strip("[]") or "0.0.0.0"
    return Address(host=host, port=int(port))


async def open_listeners(address: Address, backlog: int = 4096) -> list[trio.SocketListener]:
    """Bind and listen. A unix socket replaces a stale socket file, never a regular file."""
    if not address.is_unix:
        return await trio.open_tcp_listeners(address.port, host=address.host, backlog=backlog)
    path = address.unix_path
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        await sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return [trio.SocketListener(sock)]


def bound_port(listeners: list[trio.SocketListener]) -> int:
    """The TCP port the first listener got (useful after binding port 0)."""
    return listeners[0].socket.getsockname()[1]
