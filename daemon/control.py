"""The control plane: a small ASGI app on a unix socket next to the database, served by hypercorn.

The socket is created here (bound, ``chmod 0600``, then listening, so nobody but the daemon's
user can ever connect) and handed to hypercorn as ``fd://N``. A stale socket file left by a dead
daemon is replaced; one that a live process answers on is left alone and this instance runs
without a control plane (several instances sharing one database need one ``--control`` each).

Endpoints (JSON unless said otherwise; shapes documented in the README):

========================== =====================================================================
``GET /status``            instance, roles, policy, queue depth by state, oldest unpaid age,
                           breaker and health per processor, every instance sharing the store
``GET /health``            the processors' part of ``/status``
``GET /metrics``           Prometheus text format
``GET /dlq``               dead letters, ``?since=ISO&reason=TEXT&limit=N``
``POST /dlq/replay``       ``{"ids": [...], "dryRun": false}``: re-queue dead letters (see :func:`replay`)
``POST /payments/states``  ``{"ids": [...]}`` → ``{"states": {id: state}}`` (replay progress)
========================== =====================================================================

Nothing here runs on the payment path: store reads go to worker threads, writes through the
store writer, and the only per-payment cost is the intake latency histogram
(``rinha.daemon.metrics``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import parse_qs

import trio

from rinha.clock import InstantError, iso_from_ms, now_ms, parse_instant_us
from rinha.daemon import metrics, stalls, store_writer
from rinha.daemon.health import LEASE_NAME as HEALTH_LEASE
from rinha.daemon.housekeeping import ALIVE_MS
from rinha.http.listen import ListenError, clear_stale_socket
from rinha.money import format_cents
from rinha.processor import DEFAULT, FALLBACK, PROCESSORS, LookupFailed, Processor
from rinha.store.base import REQUEUE, SETTLE_DEAD

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
MAX_REPLAY_IDS = 10_000
DLQ_DEFAULT_LIMIT = 1000
LOOKUP_CONCURRENCY = 16


class ControlSocketError(Exception):
    """The control socket cannot be created at its path; the message says why."""


# ---------------------------------------------------------------------------------------------
# replay: shared by the control plane and by `rinha replay-dlq` when no daemon runs


@dataclass
class ReplayResult:
    requeued: list[str]
    already_paid: list[dict]
    unverified: list[dict]
    not_dead: list[str]
    dry_run: bool = False

    def as_json(self) -> dict:
        return {"dryRun": self.dry_run, "requeued": self.requeued, "alreadyPaid": self.already_paid,
                "unverified": self.unverified, "notDead": self.not_dead}


async def replay(ids: list[str], states: dict[str, str], processors: dict[str, Processor],
                 write: Callable[..., Awaitable[object]], dry_run: bool = False) -> ReplayResult:
    """Re-queue dead letters, never one that a processor already holds.

    ``states`` is the store's state of each id (read just before); only ``dead`` ones are
    considered. Each is looked up at both processors (``GET /payments/{id}``): held by one, it is
    recorded paid there with the ``requestedAt`` that processor holds (SETTLE_DEAD); held by
    none, it is re-queued (REQUEUE); when a processor cannot be asked, it is left dead
    (``unverified``): a replay must never risk a second payment. ``write(kind, *args)`` commits
    one op and returns its result. With ``dry_run`` nothing is written.
    """
    dead = [cid for cid in dict.fromkeys(ids) if states.get(cid) == "dead"]
    not_dead = [cid for cid in dict.fromkeys(ids) if states.get(cid) != "dead"]
    found: dict[str, tuple[str, str, int]] = {}
    unverified: dict[str, str] = {}
    limiter = trio.CapacityLimiter(LOOKUP_CONCURRENCY)

    async def check(correlation_id: str) -> None:
        async with limiter:
            holders = []
            for name in PROCESSORS:
                try:
                    held = await processors[name].lookup(correlation_id)
                except LookupFailed as exc:
                    unverified[correlation_id] = f"{name}: {exc}"
                    return
                if held is not None:
                    holders.append((name, *held))
            if len(holders) > 1:
                unverified[correlation_id] = "held by both processors; settle it by hand"
            elif holders:
                found[correlation_id] = holders[0]

    async with trio.open_nursery() as nursery:
        for correlation_id in dead:
            nursery.start_soon(check, correlation_id)

    already_paid = []
    for correlation_id in dead:
        if correlation_id not in found:
            continue
        name, requested_at, requested_at_us = found[correlation_id]
        if not dry_run and not await write(SETTLE_DEAD, correlation_id, name, requested_at, requested_at_us, now_ms()):
            not_dead.append(correlation_id)
            continue
        already_paid.append({"correlationId": correlation_id, "processor": name, "requestedAt": requested_at})
    to_requeue = [cid for cid in dead if cid not in found and cid not in unverified]
    if dry_run:
        requeued = to_requeue
    else:
        requeued = list(await write(REQUEUE, to_requeue, now_ms())) if to_requeue else []
        done = set(requeued)
        not_dead.extend(cid for cid in to_requeue if cid not in done)
    return ReplayResult(
        requeued=requeued, already_paid=already_paid,
        unverified=[{"correlationId": cid, "error": unverified[cid]} for cid in dead if cid in unverified],
        not_dead=not_dead, dry_run=dry_run,
    )


def lookup_processors(default_url: str, fallback_url: str, timeout: float = 5.0) -> dict[str, Processor]:
    """Small pools of their own for lookups (the dispatcher's pools are left to payments)."""
    return {DEFAULT: Processor(DEFAULT, default_url, 4, timeout), FALLBACK: Processor(FALLBACK, fallback_url, 4, timeout)}


def dead_letter_json(row: dict) -> dict:
    return {
        "correlationId": row["correlation_id"],
        "amount": format_cents(row["amount_cents"]),
        "acceptedAt": _iso(row["accepted_at_ms"]),
        "deadAt": _iso(row["dead_at_ms"]),
        "reason": row["reason"],
        "attempts": row["attempts"],
    }


# ---------------------------------------------------------------------------------------------
# the ASGI app


class ControlApp:
    """The control plane's ASGI app. Any of ``dispatcher``, ``intake``, ``monitor`` may be None
    (that role does not run in this instance); ``mover`` is None on PostgreSQL."""

    def __init__(self, *, store, writer, instance: str, roles: frozenset[str], policy: str, control: str,
                 default_url: str, fallback_url: str, dispatcher=None, intake=None, monitor=None,
                 mover=None, started_at_ms: int | None = None):
        self.store = store
        self.writer = writer
        self.instance = instance
        self.roles = roles
        self.policy = policy
        self.control = control
        self.urls = {DEFAULT: default_url, FALLBACK: fallback_url}
        self.dispatcher = dispatcher
        self.intake = intake
        self.monitor = monitor
        self.mover = mover
        self.started_at_ms = started_at_ms or now_ms()
        self._processors: dict[str, Processor] | None = None
        self._routes = {
            ("GET", "/status"): self.status,
            ("GET", "/health"): self.health,
            ("GET", "/metrics"): self.metrics,
            ("GET", "/dlq"): self.dlq,
            ("POST", "/dlq/replay"): self.replay,
            ("POST", "/payments/states"): self.states,
        }

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/") or "/"
        handler = self._routes.get((scope["method"], path))
        if handler is None:
            if any(route_path == path for _, route_path in self._routes):
                await _send_json(send, 405, {"error": f"method {scope['method']} not allowed on {path}"})
            else:
                await _send_json(send, 404, {"error": f"no such endpoint {path}; see GET /status"})
            return
        try:
            body = await _read_body(receive)
            query = parse_qs(scope.get("query_string", b"").decode("utf-8", "replace"))
            status, payload = await handler(query, body)
        except _BadRequest as exc:
            await _send_json(send, exc.status, {"error": str(exc)})
            return
        except Exception as exc:  # a store fault: answer it, keep serving
            log.exception("control %s %s failed", scope["method"], path)
            await _send_json(send, 503, {"error": f"{type(exc).__name__}: {exc}"})
            return
        if isinstance(payload, str):
            await _send(send, status, payload.encode(), b"text/plain; version=0.0.4; charset=utf-8")
        else:
            await _send_json(send, status, payload)

    async def aclose(self) -> None:
        if self._processors is not None:
            processors, self._processors = self._processors, None
            for processor in processors.values():
                await processor.aclose()

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- endpoints ------------------------------------------------------------------------

    async def status(self, query, body):
        reading = await trio.to_thread.run_sync(self._read_status)
        now = now_ms()
        counts, oldest, instances = reading["counts"], reading["oldest"], reading["instances"]
        dispatcher, intake = self.dispatcher, self.intake
        return 200, {
            "instance": self.instance,
            "roles": sorted(self.roles),
            "pid": os.getpid(),
            "startedAt": iso_from_ms(self.started_at_ms),
            "uptimeSeconds": round((now - self.started_at_ms) / 1000, 3),
            "policy": self.policy if dispatcher is not None else None,
            "control": self.control,
            "queue": counts,
            "oldestPendingAgeSeconds": None if oldest is None else round((now - oldest) / 1000, 3),
            "intake": None if intake is None else {
                "accepted": intake.accepted,
                "latencyP50Ms": _ms(metrics.INTAKE_LATENCY.quantile(0.5)),
                "latencyP99Ms": _ms(metrics.INTAKE_LATENCY.quantile(0.99)),
            },
            "dispatcher": None if dispatcher is None else {
                "queued": dispatcher.queued, "inFlight": dispatcher.in_flight, "paid": dispatcher.paid,
                "dead": dispatcher.dead, "attempts": dispatcher.attempts,
            },
            "processors": self._processors_json(reading["health"], now),
            "healthMonitor": self._monitor_json(reading["lease"], now),
            "instances": [
                {"instance": row["instance"], "roles": row["roles"].split(","), "control": row["control"] or None,
                 "pid": row["pid"], "startedAt": _iso(row["started_at_ms"]), "seenAt": _iso(row["seen_at_ms"]),
                 "alive": now - row["seen_at_ms"] <= ALIVE_MS}
                for row in instances
            ],
            "store": {"writerBatches": self.writer.batches, "writerInlineBatches": self.writer.inline_batches,
                      "writerFailing": self.writer.failing},
            "journal": self._journal_json(),
        }

    def _journal_json(self) -> dict | None:
        mover = self.mover
        if mover is None:
            return None
        journal = mover.journal
        return {"path": None if journal is None else journal.path,
                "pending": None if journal is None else journal.pending(),
                "moved": mover.moved, "swept": mover.swept, "conflicts": mover.conflicts, "failing": mover.failing}

    async def health(self, query, body):
        health, lease = await trio.to_thread.run_sync(lambda: (self.store.health(), self.store.lease_holder(HEALTH_LEASE)))
        now = now_ms()
        return 200, {"processors": self._processors_json(health, now), "healthMonitor": self._monitor_json(lease, now)}

    async def metrics(self, query, body):
        reading = await trio.to_thread.run_sync(self._read_metrics)
        return 200, self._render_metrics(reading, now_ms())

    async def dlq(self, query, body):
        since_ms = None
        if query.get("since", [""])[-1].strip():
            try:
                since_ms = parse_instant_us(query["since"][-1]) // 1000
            except InstantError as exc:
                raise _BadRequest(f"since: {exc}") from None
        reason = query.get("reason", [""])[-1] or None
        limit_text = query.get("limit", [str(DLQ_DEFAULT_LIMIT)])[-1]
        if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= 100_000:
            raise _BadRequest(f"limit {limit_text!r}: expected 1-100000")

        def read():
            return (self.store.dead_letters(since_ms, reason, int(limit_text)),
                    self.store.dead_letter_count(since_ms, reason))

        rows, total = await trio.to_thread.run_sync(read)
        return 200, {"total": total, "deadLetters": [dead_letter_json(row) for row in rows]}

    async def replay(self, query, body):
        data = _json_body(body)
        ids = data.get("ids")
        if not isinstance(ids, list) or not all(isinstance(cid, str) for cid in ids) or len(ids) > MAX_REPLAY_IDS:
            raise _BadRequest(f'expected {{"ids": [correlationId, ...]}} with at most {MAX_REPLAY_IDS} ids')
        dry_run = data.get("dryRun", False)
        if not isinstance(dry_run, bool):
            raise _BadRequest("dryRun: expected true or false")
        ids = [cid.strip().lower() for cid in ids]
        states = await trio.to_thread.run_sync(self.store.states, ids)
        if self._processors is None:
            self._processors = lookup_processors(self.urls[DEFAULT], self.urls[FALLBACK])
        result = await replay(ids, states, self._processors, self.writer.write, dry_run)
        if not dry_run and (result.requeued or result.already_paid):
            log.info("replay: %d dead letters re-queued, %d already held by a processor (recorded paid), %d unverified",
                     len(result.requeued), len(result.already_paid), len(result.unverified))
        return 200, result.as_json()

    async def states(self, query, body):
        ids = _json_body(body).get("ids")
        if not isinstance(ids, list) or not all(isinstance(cid, str) for cid in ids) or len(ids) > MAX_REPLAY_IDS:
            raise _BadRequest(f'expected {{"ids": [correlationId, ...]}} with at most {MAX_REPLAY_IDS} ids')
        states = await trio.to_thread.run_sync(self.store.states, [cid.strip().lower() for cid in ids])
        return 200, {"states": states}

    # -- reading and rendering ------------------------------------------------------------

    def _read_status(self) -> dict:
        store = self.store
        return {"counts": store.state_counts(), "oldest": store.oldest_pending_ms(), "health": store.health(),
                "lease": store.lease_holder(HEALTH_LEASE), "instances": store.instances()}

    def _read_metrics(self) -> dict:
        store = self.store
        return {"counts": store.state_counts(), "oldest": store.oldest_pending_ms(), "health": store.health(),
                "summary": store.summary(None, None)}

    def _processors_json(self, health: dict, now: int) -> dict:
        result = {}
        for name in PROCESSORS:
            breaker = self.dispatcher.breakers.get(name) if self.dispatcher is not None else None
            reading = health.get(name)
            result[name] = {
                "url": self.urls[name],
                "breaker": None if breaker is None else ("open" if breaker.is_open else "closed"),
                "consecutiveFailures": None if breaker is None else breaker.consecutive_failures,
                "health": None if reading is None else {
                    "failing": reading.failing, "minResponseTime": reading.min_response_time,
                    "checkedAt": iso_from_ms(reading.checked_at_ms),
                    "ageSeconds": round((now - reading.checked_at_ms) / 1000, 3),
                },
            }
        return result

    def _monitor_json(self, lease, now: int) -> dict:
        holder, until = lease if lease is not None else (None, None)
        active = until is not None and until >= now
        return {
            "holder": holder if active else None,
            "until": _iso(until) if active else None,
            "thisInstance": bool(active and holder == self.instance),
            "runsHere": self.monitor is not None,
        }

    def _render_metrics(self, reading: dict, now: int) -> str:
        m = metrics.metric
        dispatcher, intake = self.dispatcher, self.intake
        counts, summary = reading["counts"], reading["summary"]
        oldest = reading["oldest"]
        parts = [
            m("rinha_info", "gauge", "This instance: its id, roles and policy (value always 1).",
              [({"instance": self.instance, "roles": ",".join(sorted(self.roles)), "policy": self.policy}, 1)]),
            m("rinha_payments", "gauge", "Payments in the store by state (all instances sharing it).",
              [({"state": state}, count) for state, count in counts.items()]),
            m("rinha_oldest_pending_age_seconds", "gauge",
              "Age of the oldest unpaid payment in the store (0 when none waits).",
              0 if oldest is None else max(now - oldest, 0) / 1000),
            m("rinha_paid_total", "counter", "Payments recorded paid in the store, by processor (all instances).",
              [({"processor": DEFAULT}, summary.default.requests), ({"processor": FALLBACK}, summary.fallback.requests)]),
            m("rinha_paid_amount_total", "counter", "Amount recorded paid in the store, by processor, in currency units.",
              [({"processor": DEFAULT}, summary.default.amount_cents / 100),
               ({"processor": FALLBACK}, summary.fallback.amount_cents / 100)]),
            m("rinha_store_write_batches_total", "counter", "Transactions committed by this instance's store writer.",
              self.writer.batches),
            m("rinha_store_inline_batches_total", "counter",
              "Of those, committed on the event loop (the rest waited for the lock or were bulk ops).",
              self.writer.inline_batches),
            m("rinha_store_failing", "gauge", "1 while this instance's store writes fail.", int(self.writer.failing)),
            store_writer.DEFERRED_WRITES.render(),
        ]
        lock_waits = getattr(self.writer.store, "loop_lock_waits", None)  # SQLite's; not PostgreSQL's
        if lock_waits is not None:
            parts += [
                m("rinha_store_lock_waits_total", "counter",
                  "Commits on the event loop that found another process holding the store's write lock.",
                  lock_waits.count),
                m("rinha_store_lock_wait_seconds_total", "counter",
                  "Seconds the event loop waited for it, serving nothing meanwhile (a commit that waits too long "
                  "goes to the writer thread).", lock_waits.seconds),
            ]
        parts += [
            stalls.LOOP_STALLS.render(),
            m("rinha_loop_stall_off_cpu_seconds_total", "counter",
              "Of the event loop's stalls, seconds its thread was off a CPU (waiting for a core, the GIL or a "
              "blocking call); the rest was this process's own work.", stalls.WATCH.off_cpu_seconds),
            m("rinha_loop_runqueue_wait_seconds_total", "counter",
              "Seconds the event loop's thread was runnable but waiting for a core (the kernel's schedstat), "
              "including the waits after a request woke it, which the stalls miss.",
              stalls.WATCH.runqueue_wait_seconds()),
        ]
        mover = self.mover
        if mover is not None:
            if mover.journal is not None:
                parts += [
                    m("rinha_journal_pending", "gauge",
                      "Payments this instance accepted into its intake journal and not yet moved into the store.",
                      mover.journal.pending()),
                    m("rinha_journal_moved_total", "counter",
                      "Payments moved from this instance's intake journal into the store.", mover.moved),
                ]
            parts += [
                m("rinha_journal_swept_total", "counter",
                  "Payments this instance moved into the store from the intake journals of stopped instances.",
                  mover.swept),
                m("rinha_journal_conflicts_total", "counter",
                  "Journaled payments the store already held with another amount (two instances accepted one "
                  "correlationId with two amounts at once); the store keeps the first, the other is not paid.",
                  mover.conflicts),
                m("rinha_journal_failing", "gauge", "1 while moving intake journals into the store fails.",
                  int(mover.failing)),
            ]
        if intake is not None:
            parts.append(m("rinha_accepted_total", "counter", "Payments accepted (202) by this instance.", intake.accepted))
            parts.append(metrics.INTAKE_LATENCY.render())
        if dispatcher is not None:
            settled = dispatcher.paid + dispatcher.dead
            parts += [
                m("rinha_dispatch_paid_total", "counter", "Payments this instance recorded paid.", dispatcher.paid),
                m("rinha_dead_letters_total", "counter", "Payments this instance dead-lettered.", dispatcher.dead),
                m("rinha_attempts_total", "counter", "Payment attempts this instance sent to a processor.",
                  dispatcher.attempts),
                m("rinha_retries_total", "counter",
                  "Attempts that did not settle their payment (500, 429, timeouts, refused connections).",
                  max(dispatcher.attempts - settled, 0)),
                m("rinha_dispatch_queued", "gauge", "Payments waiting in this instance's memory for a worker.",
                  dispatcher.queued),
                m("rinha_dispatch_in_flight", "gauge", "Payments a worker of this instance is paying now.",
                  dispatcher.in_flight),
                m("rinha_breaker_open", "gauge", "1 while this instance's breaker for the processor is open.",
                  [({"processor": name}, int(breaker.is_open)) for name, breaker in sorted(dispatcher.breakers.items())]),
            ]
        health = reading["health"]
        if health:
            parts += [
                m("rinha_processor_failing", "gauge", "The processor's last health reading: 1 if failing.",
                  [({"processor": name}, int(h.failing)) for name, h in sorted(health.items())]),
                m("rinha_processor_min_response_time_seconds", "gauge",
                  "The processor's configured delay, from its last health reading.",
                  [({"processor": name}, h.min_response_time / 1000) for name, h in sorted(health.items())]),
                m("rinha_processor_health_age_seconds", "gauge", "Age of the processor's last health reading.",
                  [({"processor": name}, max(now - h.checked_at_ms, 0) / 1000) for name, h in sorted(health.items())]),
            ]
        return "".join(parts)


class _BadRequest(Exception):
    """A request the control API refuses; ``status`` 400 unless said otherwise."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _json_body(body: bytes) -> dict:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise _BadRequest("body is not JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    return data


async def _read_body(receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _BadRequest(f"body larger than {MAX_BODY} bytes", 413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_json(send, status: int, payload: dict) -> None:
    await _send(send, status, json.dumps(payload).encode(), b"application/json")


async def _send(send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_from_ms(ms)


def _ms(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    return None if seconds == float("inf") else round(seconds * 1000, 3)


# ---------------------------------------------------------------------------------------------
# the socket and the server


def bind_control_socket(path: str, backlog: int = 64) -> socket.socket:
    """A listening AF_UNIX socket at ``path``, mode 0600 before it listens.

    Replaces a stale socket file (nobody answers on it); raises :class:`ControlSocketError` if
    the path is something else than a socket, or if a live process answers on it.
    """
    try:
        clear_stale_socket(path)
    except ListenError as exc:
        raise ControlSocketError(str(exc)) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if isinstance(exc, OSError) and exc.errno == 98:  # EADDRINUSE: another instance bound it first
            raise ControlSocketError(f"{path} is in use by another running daemon") from None
        raise ControlSocketError(f"cannot create {path}: {exc.strerror or exc}") from None
    return sock


async def serve_control(path: str, app: ControlApp, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` on a unix socket at ``path`` until cancelled; then remove the socket file.

    If the socket cannot be created, logs why and returns (the daemon runs without it).
    """
    from hypercorn.config import Config
    from hypercorn.trio import serve

    try:
        sock = await trio.to_thread.run_sync(bind_control_socket, path)
    except ControlSocketError as exc:
        log.warning("no control plane: %s (give this instance its own --control PATH, or --no-control)", exc)
        task_status.started()
        return
    identity = os.stat(path).st_ino
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns the descriptor from here on
    config.accesslog = None
    server_log = logging.getLogger("rinha.control.server")
    server_log.setLevel(max(logging.WARNING, logging.getLogger().level))
    config.errorlog = server_log
    config.graceful_timeout = 1.0
    try:
        await serve(app, config, task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await app.aclose()
        try:
            if os.stat(path).st_ino == identity:
                os.unlink(path)
        except FileNotFoundError:
            pass


async def start_operations(nursery: trio.Nursery, config, instance: str, store, writer, dispatcher=None, intake=None,
                           monitor=None, mover=None) -> ControlApp | None:
    """Start what operators use, in the daemon's nursery: the instance heartbeat, the pruning
    of old attempts and (unless disabled) the control plane. Returns the app, if served."""
    from rinha.daemon.housekeeping import heartbeat, prune_attempts

    started_at_ms = now_ms()
    roles = ",".join(sorted(config.roles))
    control = config.control
    if control is None:
        from rinha.daemon.config import default_control_path

        control = default_control_path(config.db)
    app = None
    if control:
        app = ControlApp(store=store, writer=writer, instance=instance, roles=config.roles, policy=config.policy,
                         control=os.path.abspath(control), default_url=config.default_url,
                         fallback_url=config.fallback_url, dispatcher=dispatcher, intake=intake, monitor=monitor,
                         mover=mover, started_at_ms=started_at_ms)
        if await nursery.start(serve_control, control, app) is None:
            app = None
        else:
            log.info("control plane on unix:%s", control)
    await nursery.start(heartbeat, writer, instance, roles, os.path.abspath(control) if app else "", started_at_ms,
                        os.getpid())
    await nursery.start(prune_attempts, writer, instance, config.attempts_retention)
    return app
