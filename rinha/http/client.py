"""A lean keep-alive HTTP/1.1 client on trio sockets (see :mod:`rinha.http.wire`), for the dispatch path.

Requests are pre-built bytes (see :meth:`Pool.build`), sent over a bounded pool of keep-alive
connections to one origin. What matters to the caller is *whether the request may have reached
the server*, so failures come in exactly two kinds:

* :class:`NotSent`: the connection could not be opened; the server never saw the request.
* :class:`Ambiguous`: something failed after the first byte was handed to the socket (timeout,
  reset, early close, garbage). The server may have acted on the request.

An idle keep-alive connection is checked before it is reused: one the server closed meanwhile
(servers close idle connections after their keep-alive timeout) is dropped and another one is
used, so a daemon that sat idle does not turn its first requests into ambiguous attempts. A
connection the server closes at the very moment it is reused still shows up as
:class:`Ambiguous`; callers of idempotent-by-key endpoints (a processor's ``POST /payments``)
retry the same server.
"""

from __future__ import annotations

import errno
import socket as stdsocket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio

from rinha.http.wire import Wire


class NotSent(Exception):
    """The request never left this process: safe to send anywhere."""


class Ambiguous(Exception):
    """The request may have been received and acted upon."""


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes


class _Connection:
    __slots__ = ("wire", "buf")

    def __init__(self, wire: Wire):
        self.wire = wire
        self.buf = bytearray()

    def idle_and_open(self) -> bool:
        """May this idle connection carry a request? Not if anything arrived on it since its last
        reply: the server's close (EOF) or bytes nobody asked for. One peek, no waiting."""
        return not self.buf and not self.wire.readable_now()

    async def read_reply(self, head_request: bool = False) -> tuple[Reply, bool]:
        """Read one response (just after its request was sent); returns it and whether the
        connection may be reused."""
        buf = self.buf
        head_end = buf.find(b"\r\n\r\n")
        wait_first = not buf  # the request has only just left: its answer cannot be here yet
        while head_end < 0:
            await self._fill(wait_first)
            wait_first = False
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0 and len(buf) > 65536:
                raise Ambiguous("response head too large")
        lines = bytes(buf[:head_end]).split(b"\r\n")
        del buf[: head_end + 4]
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or not status_line[1].isdigit():
            raise Ambiguous(f"malformed status line {lines[0][:80]!r}")
        status = int(status_line[1])
        reusable = status_line[0] == b"HTTP/1.1"
        length = -1
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                length = int(value) if value.isdigit() else -2
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                lowered = value.lower()
                if b"close" in lowered:
                    reusable = False
                elif b"keep-alive" in lowered:
                    reusable = True
        if head_request or status in (204, 304) or 100 <= status < 200:
            return Reply(status, b""), reusable
        if chunked:
            return Reply(status, await self._read_chunked()), reusable
        if length == -2:
            raise Ambiguous("invalid Content-Length in response")
        if length < 0:  # delimited by close
            while True:
                try:
                    await self._fill()
                except Ambiguous:
                    break
            body = bytes(buf)
            buf.clear()
            return Reply(status, body), False
        while len(buf) < length:
            await self._fill()
        body = bytes(buf[:length])
        del buf[:length]
        return Reply(status, body), reusable

    async def _read_chunked(self) -> bytes:
        buf = self.buf
        body = bytearray()
        while True:
            line_end = buf.find(b"\r\n")
            while line_end < 0:
                await self._fill()
                line_end = buf.find(b"\r\n")
            size_text = bytes(buf[:line_end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise Ambiguous("malformed chunk size") from None
            del buf[: line_end + 2]
            if size == 0:
                # trailers, then the final blank line
                while True:
                    line_end = buf.find(b"\r\n")
                    while line_end < 0:
                        await self._fill()
                        line_end = buf.find(b"\r\n")
                    line = bytes(buf[:line_end])
                    del buf[: line_end + 2]
                    if not line:
                        return bytes(body)
            while len(buf) < size + 2:
                await self._fill()
            body += buf[:size]
            del buf[: size + 2]

    async def _fill(self, wait_first: bool = False) -> None:
        try:
            data = await self.wire.receive(wait_first)
        except OSError as exc:
            raise Ambiguous(f"connection lost: {exc}") from None
        if not data:
            raise Ambiguous("connection closed by the server")
        self.buf += data


class Pool:
    """A bounded pool of keep-alive connections to one ``http://host:port`` origin."""

    def __init__(self, url: str, max_connections: int = 64, connect_timeout: float = 2.0):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url!r}: expected http://host[:port]")
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.encode()
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []
        self._slots = trio.Semaphore(max_connections)
        self._closed = False

    def build(self, method: str, path: str, body: bytes = b"", content_type: bytes = b"application/json", headers: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
        """Request bytes for this origin; build the constant part once and reuse it."""
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode(), path.encode(), self.host_header)]
        for name, value in headers:
            lines.append(name + b": " + value + b"\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Type: " + content_type + b"\r\nContent-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)

    async def send(self, raw: bytes, timeout: float, head_request: bool = False,
                   guard: Callable[[], bool] | None = None) -> Reply:
        """Send one pre-built request and read its reply within ``timeout`` seconds.

        ``guard``, if given, is asked once a connection is ready, just before the first byte
        leaves (after every wait): False withdraws the request (:class:`NotSent`)."""
        slots = self._slots
        try:
            slots.acquire_nowait()  # the usual case; the request's own wait is the checkpoint
        except trio.WouldBlock:
            await slots.acquire()
        try:
            conn = None
            while self._idle:
                candidate = self._idle.pop()
                if candidate.idle_and_open():
                    conn = candidate
                    break
                candidate.wire.close()
            if conn is None:
                conn = await self._connect()
            reusable = False
            try:
                if guard is not None and not guard():
                    reusable = True
                    raise NotSent("withdrawn before sending")
                with trio.move_on_after(timeout) as scope:
                    try:
                        await conn.wire.send_all(raw)
                    except OSError as exc:
                        raise Ambiguous(f"send failed: {exc}") from None
                    reply, reusable = await conn.read_reply(head_request)
                if scope.cancelled_caught:
                    raise Ambiguous(f"no reply within {timeout:g} s")
                return reply
            finally:
                if reusable and not self._closed:
                    self._idle.append(conn)
                else:
                    conn.wire.close()
        finally:
            slots.release()

    async def _connect(self) -> _Connection:
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(self.host, self.port)
        except trio.TooSlowError:
            raise NotSent(f"connect to {self.url} timed out") from None
        except OSError as exc:
            reason = errno.errorcode.get(exc.errno or 0, "") or str(exc)
            raise NotSent(f"connect to {self.url} failed: {reason}") from None
        wire = Wire.from_stream(stream)
        wire.sock.setsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY, 1)
        return _Connection(wire)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.wire.close()
