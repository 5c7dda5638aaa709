"""Run processors on TCP listeners: in-process (:func:`run_processors`) or as the CLI does
(:func:`run_until_signalled`). Options are those of :class:`~rinha.emulator.app.Processor`."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Callable, Sequence

import trio

from rinha.emulator.app import Processor
from rinha.emulator.limiters import IDLE_LIMIT
from rinha.http.listen import Address, bound_port, open_listeners
from rinha.http.response import error_empty
from rinha.http.server import Limits, Server

#: Kestrel's limits: 32 KB of headers (plus the request line), 30 MB of body, 130 s keep-alive,
#: 30 s to send the request headers.
KESTREL_LIMITS = Limits(max_header_bytes=40_960, max_body_bytes=30_000_000, header_timeout=30.0, idle_timeout=130.0)


@dataclass(frozen=True)
class ProcessorSpec:
    """A processor to start: its name (``default``/``fallback``), fee and address (port 0: any)."""

    name: str
    fee: Decimal
    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Listening:
    """A started processor: where it listens, and the object itself (for in-process callers)."""

    name: str
    fee: Decimal
    host: str
    port: int
    processor: Processor


Bound = list[tuple[ProcessorSpec, list[trio.SocketListener]]]


async def bind(specs: Sequence[ProcessorSpec]) -> Bound:
    """Listen on every spec's address; on an OSError (port taken, bad host) nothing is left open."""
    bound: Bound = []
    try:
        for spec in specs:
            bound.append((spec, await open_listeners(Address(host=spec.host, port=spec.port))))
    except BaseException:
        for _, listeners in bound:
            for listener in listeners:
                await listener.aclose()
        raise
    return bound


async def serve(bound: Bound, *, token: str | None = "123", rate_limit_seconds: int = 5,
                health_idle_seconds: float = IDLE_LIMIT, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve a processor on each bound address until cancelled; ``task_status.started`` receives
    a list of :class:`Listening`."""
    async with trio.open_nursery() as nursery:
        listening = []
        for spec, listeners in bound:
            processor = Processor(spec.fee, token=token, rate_limit_seconds=rate_limit_seconds,
                                  health_idle_seconds=health_idle_seconds)
            nursery.start_soon(processor.run)
            server = Server(processor.handle, KESTREL_LIMITS, error_response=error_empty)
            await nursery.start(server.serve, listeners)
            listening.append(Listening(spec.name, spec.fee, spec.host, bound_port(listeners), processor))
        task_status.started(listening)


async def run_processors(specs: Sequence[ProcessorSpec], *, task_status=trio.TASK_STATUS_IGNORED, **options) -> None:
    """:func:`bind` then :func:`serve` (same options), until cancelled."""
    await serve(await bind(specs), task_status=task_status, **options)


async def run_until_signalled(specs: Sequence[ProcessorSpec], announce: Callable[[list[Listening]], None],
                              **options) -> None:
    """Bind (an OSError propagates as is), serve, call ``announce`` once all listen, and return on
    SIGTERM or SIGINT."""
    bound = await bind(specs)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            announce(await nursery.start(partial(serve, bound, **options)))
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
