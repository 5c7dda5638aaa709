"""An upstream that answers every request with a constant, on the daemon's own lean HTTP server.

``POST /payments`` gets the daemon's 202 and anything else an empty payments summary: no parsing
of the body, no store, no journal, no instruments. Behind nginx (``benchmarks/floor.py
--upstream trio``) it shows what a request costs in a trio process before any of the daemon's
work: the floor under the api instances. Not a test fixture and not for production.

    python -m benchmarks.const_upstream unix:/path/to.sock
"""

from __future__ import annotations

import sys

import trio

from rinha.http.listen import open_listeners, parse_address
from rinha.http.response import response
from rinha.http.server import Request, Server

ACCEPTED = response(202, b'{"status":"accepted"}')
SUMMARY = response(200, b'{"default":{"totalRequests":0,"totalAmount":0.00},'
                        b'"fallback":{"totalRequests":0,"totalAmount":0.00}}')


async def answer(request: Request) -> bytes:
    return ACCEPTED if request.path == b"/payments" else SUMMARY


async def main(address: str) -> None:
    await Server(answer).serve(await open_listeners(parse_address(address)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    trio.run(main, sys.argv[1])
