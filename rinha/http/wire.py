"""Bytes in and out of a connected socket, for the lean server and client.

trio's ``SocketStream`` yields to the scheduler after every send or receive that succeeded at
once, and reaches "would block" through an exception inside an async context manager. On the
payment path (a request in and an answer out at the daemon, the same at each processor
attempt) that machinery cost more than the system calls themselves. A :class:`Wire` calls the
socket directly and waits (``trio.lowlevel.wait_readable`` / ``wait_writable``) only when the
socket says it must; a caller that knows the peer has not answered yet waits first and saves
the call that would fail. Measured in ``benchmarks/README.md``.

Errors are the socket's own: ``OSError`` (``ConnectionResetError``, ``BrokenPipeError``...).
An operation that completes at once is not a trio checkpoint; the server adds one per request
where a client keeps it from ever waiting.
"""

from __future__ import annotations

import socket

import trio
from trio.lowlevel import notify_closing, wait_readable, wait_writable

RECEIVE_SIZE = 65536


class Wire:
    """A connected non-blocking socket, owned by one task at a time."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self.sock = sock

    @classmethod
    def from_stream(cls, stream: trio.SocketStream) -> Wire:
        """Take over the socket of a trio ``SocketStream`` (which is left closed)."""
        inner = stream.socket
        return cls(socket.socket(inner.family, inner.type, inner.proto, fileno=inner.detach()))

    async def receive(self, wait_first: bool = False) -> bytes:
        """The next bytes the peer sent (``b""``: it closed its side)."""
        sock = self.sock
        if wait_first:
            await wait_readable(sock)
        while True:
            try:
                return sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                await wait_readable(sock)

    async def send_all(self, data: bytes) -> None:
        sock = self.sock
        total = len(data)
        sent = 0
        while True:
            try:
                sent += sock.send(data if sent == 0 else memoryview(data)[sent:])
            except BlockingIOError:
                await wait_writable(sock)
                continue
            if sent >= total:
                return

    def readable_now(self) -> bool:
        """Did anything (bytes or the peer's close) arrive that nobody has read? No waiting."""
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            pass
        return True

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            notify_closing(self.sock)
            self.sock.close()
