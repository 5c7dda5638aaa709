"""``serve()``: the daemon's nursery. One member per role, the store writer around them all.

Lifecycle, one log line each: store ready, processors reachable (or not yet), listening,
draining, shutdown. SIGTERM or SIGINT drains: new payments get 503 with ``Retry-After`` (the
load balancer sends them elsewhere), attempts in flight finish within ``--grace-seconds``, the
payments left are handed back to the store, the store writer commits what it holds, exit 0.
A second signal stops at once (what was in flight is pinned ambiguous, nothing is lost).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import uuid

import trio

from rinha.daemon import stalls
from rinha.daemon.config import ServeConfig
from rinha.daemon.control import start_operations
from rinha.daemon.dispatcher import Dispatcher
from rinha.daemon.health import HealthMonitor
from rinha.daemon.intake import Intake
from rinha.daemon.store_writer import StoreWriter
from rinha.http.listen import ListenError, open_listeners
from rinha.http.server import Server
from rinha.policy import make_policy
from rinha.processor import DEFAULT, FALLBACK, Processor
from rinha.daemon.journal_mover import JournalMover
from rinha.store import display, is_url, open_store
from rinha.store.journal import IntakeJournal

log = logging.getLogger("rinha.serve")


#: The collector's generation thresholds. Each request allocates a few dozen objects and almost
#: none survive it; the default (700, 10, 10) ran a young collection every ~20 requests.
GC_THRESHOLDS = (20_000, 20, 50)
#: Seconds a thread waiting for the GIL lets the running one keep it (Python's default: 5 ms).
#: SQLite gives the GIL up inside every statement; when the store writer's thread or a reader
#: thread takes it then, the event loop, SQLite's write lock in hand, waited up to 5 ms to run
#: its next statement, and the other processes waited for the lock behind it. Contest profile
#: at 1,100 VUs, five pairs alternated (``benchmarks/README.md``): api accepts over 5 ms
#: 158/200/206/134 -> 126/119/151/184 (one more pair: a host stall in the baseline run).
SWITCH_INTERVAL = 0.0002


class StartupError(Exception):
    """The daemon cannot start: its store, its intake journal or its address. One line, for the operator."""


async def serve(config: ServeConfig, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)
    stalls.WATCH.install()
    instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    store = open_store(config.db)
    listeners: list[trio.SocketListener] = []
    journal = mover = None
    try:
        try:
            await trio.to_thread.run_sync(store.migrate)
        except Exception as exc:  # not a database, a newer schema, unreachable, not writable...
            reason = " ".join(str(exc).split())  # PostgreSQL's errors span lines
            raise StartupError(f"cannot open the store {display(config.db)}: {reason}") from None
        log.info("store ready: %s (instance %s, roles %s)", display(config.db), instance, ",".join(sorted(config.roles)))
        if not is_url(config.db) and "api" in config.roles and "dispatch" not in config.roles:
            try:  # SQLite: intake-only instances journal their accepts (rinha.store.journal)
                journal = IntakeJournal(config.db, instance)
            except (OSError, RuntimeError) as exc:
                raise StartupError(f"cannot open the intake journal: {exc}") from None
        if "api" in config.roles:  # bound before anything starts: a taken address stops nothing midway
            try:
                listeners = await open_listeners(config.listen)
            except ListenError as exc:
                raise StartupError(str(exc)) from None
        writer = StoreWriter(store)
        if not is_url(config.db):
            mover = JournalMover(store, config.db, journal)
            mover.start()  # last: nothing below it in this block can fail with the thread running
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        if journal is not None:
            journal.close()
        store.close()
        raise
    try:
        async with writer.running():
            async with trio.open_nursery() as nursery:
                dispatcher = monitor = intake = None

                server = None

                async def drain() -> None:
                    give_up_at = trio.current_time() + config.grace_seconds
                    if intake is not None:
                        intake.draining = True
                        await server.quiesce(config.grace_seconds)  # answers of payments already taken
                    if dispatcher is not None:
                        await dispatcher.drain(max(0.0, give_up_at - trio.current_time()))

                nursery.start_soon(_stop_on_signals, nursery.cancel_scope, drain, config.grace_seconds)
                if "dispatch" in config.roles:
                    processors = {
                        DEFAULT: Processor(DEFAULT, config.default_url, config.concurrency, config.timeout),
                        FALLBACK: Processor(FALLBACK, config.fallback_url, config.concurrency, config.timeout),
                    }
                    policy = make_policy(config.policy, deadline_s=config.deadline)
                    dispatcher = Dispatcher(writer, store, processors, policy, instance, config.concurrency,
                                            config.lease_seconds, max_age=config.max_age)
                    await nursery.start(dispatcher.run)
                    nursery.start_soon(_report_reachability, processors)
                if "health" in config.roles:
                    monitor = HealthMonitor(writer, {DEFAULT: config.default_url, FALLBACK: config.fallback_url},
                                            instance, config.health_interval)
                    await nursery.start(monitor.run)
                if "api" in config.roles:
                    intake = Intake(writer, store, dispatcher, journal)
                    server = Server(intake.handle, config.limits)
                    await nursery.start(server.serve, listeners)
                    log.info("listening on %s", config.listen)
                await start_operations(nursery, config, instance, store, writer, dispatcher, intake, monitor, mover)
                task_status.started()
                # Everything built so far lives as long as the process: keep it out of the
                # collector's scans. (With the thresholds below: p99 3.2 vs 3.3-3.9 ms at 550/s.)
                gc.freeze()
    finally:
        for listener in listeners:  # closed already if they were served
            listener.socket.close()
        if mover is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(mover.stop)
        store.close()
        log.info("shutdown complete")


async def _stop_on_signals(scope: trio.CancelScope, drain, grace: float) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        first = await signals.__anext__()
        log.info("%s received: draining (new payments get 503) for up to %g s", signal.Signals(first).name, grace)
        async with trio.open_nursery() as draining:

            async def on_second_signal() -> None:
                async for signum in signals:
                    log.warning("%s received again: stopping now", signal.Signals(signum).name)
                    draining.cancel_scope.cancel()
                    return

            draining.start_soon(on_second_signal)
            await drain()
            draining.cancel_scope.cancel()
    scope.cancel()


async def _report_reachability(processors: dict[str, Processor]) -> None:
    """Log once whether each processor accepts connections (no request: health calls are rationed)."""
    for name, processor in processors.items():
        pool = processor.pool
        try:
            with trio.fail_after(2):
                stream = await trio.open_tcp_stream(pool.host, pool.port)
            await stream.aclose()
            log.info("processor %s reachable at %s", name, processor.url)
        except (OSError, trio.TooSlowError) as exc:
            log.warning("processor %s not reachable at %s yet (%s); payments wait for it", name, processor.url, exc)
