"""The dispatch path's HTTP client against a real server on a real socket."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from rinha.http.client import Pool
from rinha.http.response import response
from rinha.http.server import Limits, Server


async def _ok(request) -> bytes:
    return response(200, b'{"ok":true}')


@pytest.mark.anyio
async def test_an_idle_connection_the_server_closed_is_not_reused():
    """Servers close idle keep-alive connections; the next request must not fail as ambiguous."""
    server = Server(_ok, Limits(idle_timeout=0.2))
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.serve_connection, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        pool = Pool(f"http://127.0.0.1:{port}", max_connections=4)
        request = pool.build("GET", "/")
        assert (await pool.send(request, timeout=5)).status == 200
        with trio.fail_after(5):  # the server closes the idle connection after 0.2 s
            while server.connections:
                await trio.sleep(0.01)
        reply = await pool.send(request, timeout=5)  # would raise Ambiguous on the closed connection
        assert reply.status == 200
        assert server.connections == 1  # a fresh connection, kept for the next request
        await pool.aclose()
        nursery.cancel_scope.cancel()
