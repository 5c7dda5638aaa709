"""A lean HTTP/1.1 server on trio sockets: one task per connection, no task per request.

The data plane of the daemon and the processor emulator both run on it. The measurements in
the architecture note rule out hypercorn and h11 there: a hand-written parser of the small
subset of HTTP/1.1 that real clients send costs about half the CPU of h11.

Contract:

* ``handler(request)`` is awaited once per request and returns the whole response as bytes
  (see :mod:`rinha.http.response`). It may set ``request.keep_alive = False`` to close the
  connection after its response.
* Keep-alive is the default for HTTP/1.1; ``Connection: close`` and HTTP/1.0 close after the
  response. Pipelined requests are answered in order.
* Bodies are framed by ``Content-Length`` only. ``Transfer-Encoding`` is refused (411 alone,
  400 beside a ``Content-Length``), and so are conflicting lengths: the request-smuggling
  shapes never reach a handler.
* Limits: the header block (431), the body (413), a header timeout that starts at a request's
  first byte (408, against slow clients), an idle timeout between requests (silent close) and a
  send timeout (a client that does not read its answers is dropped). A protocol error answers
  and closes the connection, since its framing can no longer be trusted.
* The handler is never cancelled by these timeouts: a request that has been read runs to the
  end even if its client has gone (the processors behave so, and the daemon relies on it).
* The timeouts are kept by a watchdog, not by trio deadlines: moving a cancel scope's deadline
  (three times per request) cost ~7 % of an api instance's CPU. Each connection notes when it
  is due; the watchdog, which runs only while connections are open, cancels the overdue ones
  every eighth of the shortest timeout (at most 0.5 s). A timeout fires that much late at most.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Awaitable, Callable

import trio

from rinha.http.response import error_json
from rinha.http.wire import Wire

log = logging.getLogger(__name__)

_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Bytes a request target may hold: all but controls, space and DEL.
_TARGET_CHARS = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
# (``x.translate(None, chars)`` deletes the allowed bytes: anything left over is not allowed.)


@dataclass(frozen=True)
class Limits:
    """Per-connection limits of the server (sizes in bytes, times in seconds)."""

    max_header_bytes: int = 8192
    max_body_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    send_timeout: float = 10.0


class Request:
    """One parsed request. ``headers`` maps lower-case names to values (repeats joined by ``, ``)."""

    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive")

    def __init__(self, method: bytes, path: bytes, query: bytes, headers: dict[bytes, bytes], body: bytes, keep_alive: bool):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive

    def __repr__(self) -> str:
        return f"<Request {self.method.decode()} {self.path.decode(errors='replace')}>"


Handler = Callable[[Request], Awaitable[bytes]]
ErrorResponder = Callable[[int, str], bytes]


class ProtocolError(Exception):
    """A request the server refuses before any handler sees it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_head(head: bytes | bytearray) -> tuple[bytes, bytes, bytes, dict[bytes, bytes], int, bool]:
    """Parse a request head (without the final blank line).

    Returns (method, path, query, headers, content_length, keep_alive) or raises ProtocolError.
    """
    lines = bytes(head).split(b"\r\n")
    request_line = lines[0]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        raise ProtocolError(400, "malformed request line")
    method, target, version = parts
    if not method or method.translate(None, _TOKEN_CHARS):
        raise ProtocolError(400, "malformed method")
    if version == b"HTTP/1.1":
        keep_alive = True
    elif version == b"HTTP/1.0":
        keep_alive = False
    elif version.startswith(b"HTTP/"):
        raise ProtocolError(505, "only HTTP/1.1 and HTTP/1.0 are supported")
    else:
        raise ProtocolError(400, "malformed request line")
    if not target.startswith(b"/") or target.translate(None, _TARGET_CHARS):
        raise ProtocolError(400, "malformed request target")
    path, _, query = target.partition(b"?")

    headers: dict[bytes, bytes] = {}
    content_length = -1
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TOKEN_CHARS):
            raise ProtocolError(400, "malformed header line")
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            raise ProtocolError(400, "malformed header value")
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            if not value.isdigit() or len(value) > 18:
                raise ProtocolError(400, "invalid Content-Length")
            length = int(value)
            if content_length not in (-1, length):
                raise ProtocolError(400, "conflicting Content-Length headers")
            content_length = length
            headers[name] = value
            continue
        previous = headers.get(name)
        headers[name] = value if previous is None else previous + b", " + value

    if b"transfer-encoding" in headers:
        if content_length >= 0:
            raise ProtocolError(400, "both Transfer-Encoding and Content-Length")
        raise ProtocolError(411, "Transfer-Encoding is not supported; send a Content-Length")
    if b"host" not in headers and keep_alive:
        raise ProtocolError(400, "missing Host header")
    connection = headers.get(b"connection")
    if connection is not None:
        tokens = connection.lower()
        if b"close" in tokens:
            keep_alive = False
        elif b"keep-alive" in tokens and version == b"HTTP/1.0":
            keep_alive = True
    return method, path, query, headers, max(content_length, 0), keep_alive


class _Watch:
    """When a connection's current timeout runs out (``trio.current_time()`` scale; ``math.inf``:
    none now), and the scope the watchdog cancels then."""

    __slots__ = ("scope", "due")

    def __init__(self, scope: trio.CancelScope):
        self.scope = scope
        self.due = math.inf


class Server:
    """Serves ``handler`` on listeners; see the module docstring for the contract."""

    def __init__(self, handler: Handler, limits: Limits = Limits(), error_response: ErrorResponder = error_json):
        self.handler = handler
        self.limits = limits
        self.error_response = error_response
        self.connections = 0
        #: Requests whose handler is running (read, not yet answered).
        self.handling = 0
        self._watches: set[_Watch] = set()
        self._watchdog_running = False
        self._tick = min(0.5, max(0.005, min(limits.header_timeout, limits.idle_timeout, limits.send_timeout) / 8))

    async def quiesce(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) until no request is being handled; the caller has made the
        handler refuse new work, so the answers already being written get out."""
        with trio.move_on_after(timeout):
            while self.handling:
                await trio.sleep(0.005)

    async def serve(self, listeners: list[trio.abc.Listener], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await trio.serve_listeners(self.serve_connection, listeners, task_status=task_status)

    async def serve_connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        wire = Wire.from_stream(stream)
        try:
            await self._converse(wire)
        except OSError:
            pass  # the client reset or vanished: nothing to answer
        finally:
            wire.close()
            self.connections -= 1

    def _watch(self, scope: trio.CancelScope) -> _Watch:
        watch = _Watch(scope)
        self._watches.add(watch)
        if not self._watchdog_running:
            self._watchdog_running = True
            trio.lowlevel.spawn_system_task(self._watchdog)
        return watch

    async def _watchdog(self) -> None:
        """Cancel the connections whose timeout ran out; ends once no connection is open."""
        try:
            while self._watches:
                await trio.sleep(self._tick)
                now = trio.current_time()
                for watch in self._watches:
                    if watch.due <= now:
                        watch.scope.cancel()
        finally:
            self._watchdog_running = False

    async def _converse(self, wire: Wire) -> None:
        limits = self.limits
        handler = self.handler
        buf = bytearray()
        pending_error: ProtocolError | None = None
        partial = False
        answered = False  # a response went out: the client's next request cannot be here yet
        with trio.CancelScope() as timer:
            watch = self._watch(timer)
            try:
                while True:
                    # 1. A complete head: idle timeout before the first byte, header timeout after it.
                    watch.due = trio.current_time() + (limits.header_timeout if buf else limits.idle_timeout)
                    partial = bool(buf)
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end >= 0 and answered:
                        await trio.lowlevel.checkpoint()  # pipelined: let the other connections in
                    while head_end < 0:
                        if len(buf) > limits.max_header_bytes:
                            pending_error = ProtocolError(431, "request header block too large")
                            break
                        data = await wire.receive(wait_first=answered and not buf)
                        if not data:
                            return
                        if not buf:
                            watch.due = trio.current_time() + limits.header_timeout
                            partial = True
                        start = max(0, len(buf) - 3)
                        buf += data
                        head_end = buf.find(b"\r\n\r\n", start)
                        if head_end < 0 and buf.find(b"\n\n", start) >= 0:  # would wait for a CRLF that never comes
                            pending_error = ProtocolError(400, "malformed request: lines must end with CRLF")
                            break
                    if pending_error is not None:
                        break
                    if head_end > limits.max_header_bytes:
                        pending_error = ProtocolError(431, "request header block too large")
                        break
                    try:
                        method, path, query, headers, length, keep_alive = parse_head(buf[:head_end])
                    except ProtocolError as exc:
                        pending_error = exc
                        break
                    if length > limits.max_body_bytes:
                        pending_error = ProtocolError(413, f"request body larger than {limits.max_body_bytes} bytes")
                        break
                    # 2. The body, under the same header timeout.
                    end = head_end + 4 + length
                    while len(buf) < end:
                        data = await wire.receive()
                        if not data:
                            return
                        buf += data
                    body = bytes(buf[head_end + 4 : end])
                    del buf[:end]
                    partial = False
                    # 3. The handler, never cancelled by the connection's timers.
                    watch.due = math.inf
                    request = Request(method, path, query, headers, body, keep_alive)
                    self.handling += 1
                    try:
                        try:
                            response = await handler(request)
                        except Exception:
                            log.exception("handler failed on %r", request)
                            response = self.error_response(500, "internal error")
                            request.keep_alive = False
                        watch.due = trio.current_time() + limits.send_timeout
                        await wire.send_all(response)
                        answered = True
                    finally:
                        self.handling -= 1
                    if not request.keep_alive:
                        return
            finally:
                self._watches.discard(watch)
        # Left the loop on a protocol error, or a timer fired mid-request: answer, then close.
        if pending_error is None and timer.cancelled_caught and partial:
            pending_error = ProtocolError(408, "request not received in time")
        if pending_error is not None:
            with trio.move_on_after(limits.send_timeout):
                await wire.send_all(self.error_response(pending_error.status, pending_error.message))
