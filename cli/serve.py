"""``rinha serve``: run the daemon."""

from __future__ import annotations

import logging

import typer

from rinha.daemon.config import ConfigError, make_config


def serve(
    listen: str = typer.Option("0.0.0.0:9999", envvar="RINHA_LISTEN", help="HOST:PORT or unix:/path for the data plane."),
    db: str = typer.Option("./rinha.db", envvar="RINHA_DB", help="SQLite database file (created if missing), or a postgresql://user@host/dbname URL (pip install 'rinha[postgres]')."),
    default_url: str = typer.Option("http://localhost:8001", envvar="RINHA_DEFAULT_URL", help="Default processor (5 % fee)."),
    fallback_url: str = typer.Option("http://localhost:8002", envvar="RINHA_FALLBACK_URL", help="Fallback processor (15 % fee)."),
    roles: str = typer.Option("api,dispatch,health", envvar="RINHA_ROLES", help="Comma-separated roles of this instance: api, dispatch, health."),
    policy: str = typer.Option("fee-first", envvar="RINHA_POLICY", help="Routing policy: fee-first (default only), deadline or latency."),
    deadline: float = typer.Option(10.0, envvar="RINHA_DEADLINE", help="deadline policy: seconds a payment waits for a failing default before the fallback may pay it."),
    max_age: float = typer.Option(0.0, envvar="RINHA_MAX_AGE", help="Dead-letter payments not paid within this many seconds (0: never)."),
    health_interval: float = typer.Option(5.0, envvar="RINHA_HEALTH_INTERVAL", help="Seconds between health calls to each processor (the processors allow one per 5 s)."),
    concurrency: int = typer.Option(64, envvar="RINHA_CONCURRENCY", help="Attempts in flight per processor."),
    timeout: float = typer.Option(10.0, envvar="RINHA_TIMEOUT", help="Seconds before an unanswered attempt counts as ambiguous."),
    lease_seconds: float = typer.Option(5.0, envvar="RINHA_LEASE_SECONDS", help="Seconds after which another instance adopts a dead instance's payments."),
    header_timeout: float = typer.Option(10.0, envvar="RINHA_HEADER_TIMEOUT", help="Seconds a client has to send a whole request once it started (slow clients get 408)."),
    idle_timeout: float = typer.Option(75.0, envvar="RINHA_IDLE_TIMEOUT", help="Seconds an idle keep-alive connection is kept open."),
    control: str = typer.Option(None, "--control", envvar="RINHA_CONTROL", help="Control socket (status, metrics, DLQ replay); default: <db>.control.sock. '' disables it."),
    no_control: bool = typer.Option(False, "--no-control", envvar="RINHA_NO_CONTROL", help="Run without the control socket."),
    attempts_retention: float = typer.Option(7 * 86400.0, envvar="RINHA_ATTEMPTS_RETENTION", help="Seconds each payment attempt is kept in the store for `rinha payment` (0: forever)."),
    grace_seconds: float = typer.Option(5.0, envvar="RINHA_GRACE_SECONDS", help="On SIGTERM/SIGINT: seconds in-flight payments may take to finish (new ones get 503) before the rest is handed back."),
    log_level: str = typer.Option("info", envvar="RINHA_LOG_LEVEL", help="debug, info, warning or error."),
) -> None:
    """Run the payment daemon: HTTP intake, dispatch to the processors, health monitoring.

    Examples:

      rinha serve                                   # everything on :9999, ./rinha.db

      rinha serve --listen unix:/run/rinha/api1.sock --roles api

      RINHA_DB=/var/lib/rinha/rinha.db rinha serve --roles dispatch,health
    """
    try:
        config = make_config(listen, db, default_url, fallback_url, roles, policy, concurrency, timeout, lease_seconds,
                             deadline, max_age, health_interval, header_timeout, idle_timeout,
                             control="" if no_control else control, attempts_retention=attempts_retention, grace_seconds=grace_seconds)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise typer.BadParameter(f"--log-level {log_level!r}: expected debug, info, warning or error")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))  # one line per request otherwise
    import trio

    from rinha.daemon.serve import StartupError, serve as run

    try:
        trio.run(run, config)
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
