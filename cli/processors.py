"""``rinha processors``: a local pair of Payment Processors, faithful to ``spec/processor-api.md``."""

from __future__ import annotations

import re
import resource
from decimal import Decimal
from functools import partial

import typer

FEES = {"default": Decimal("0.05"), "fallback": Decimal("0.15")}
_FEE_TEXT = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def processors(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: all)."),
    default_port: int = typer.Option(8001, help="Port of the default processor (fee 0.05)."),
    fallback_port: int = typer.Option(8002, help="Port of the fallback processor (fee 0.15)."),
    token: str = typer.Option("123", help="Initial admin token (X-Rinha-Token)."),
    rate_limit_seconds: int = typer.Option(5, min=1, help="Health-check window in seconds; also every 429's Retry-After."),
    only: str | None = typer.Option(None, help="Start one processor only: default or fallback."),
    port: int | None = typer.Option(None, help="With --only: its port (default 8001 or 8002; 0: any free port)."),
    fee: str | None = typer.Option(None, help="With --only: its fee, a fraction such as 0.05."),
    health_idle_seconds: float | None = typer.Option(None, hidden=True, help="Health limiter idle reset (tests; 10 s)."),
) -> None:
    """Run the default (fee 0.05) and fallback (fee 0.15) payment processors until Ctrl-C or SIGTERM.

    They start with delay 0 and failure off; change that through their admin API, e.g.
    curl -X PUT localhost:8001/admin/configurations/delay -H 'X-Rinha-Token: 123'
    -H 'Content-Type: application/json' -d '{"delay": 100}'

    Examples:

      rinha processors

      rinha processors --only fallback --port 9002 --fee 0.2
    """
    from rinha.emulator.run import ProcessorSpec

    options: dict = {"token": token, "rate_limit_seconds": rate_limit_seconds}
    if health_idle_seconds is not None:
        if health_idle_seconds <= 0:
            raise typer.BadParameter("must be positive", param_hint="--health-idle-seconds")
        options["health_idle_seconds"] = health_idle_seconds
    if only is None:
        if port is not None or fee is not None:
            raise typer.BadParameter("--port and --fee need --only default|fallback", param_hint="--port/--fee")
        _check_port(default_port, "--default-port")
        _check_port(fallback_port, "--fallback-port")
        if default_port == fallback_port != 0:
            raise typer.BadParameter("the two processors need different ports", param_hint="--fallback-port")
        specs = [ProcessorSpec("default", FEES["default"], default_port, host),
                 ProcessorSpec("fallback", FEES["fallback"], fallback_port, host)]
    else:
        if only not in FEES:
            raise typer.BadParameter(f"{only!r}: expected default or fallback", param_hint="--only")
        chosen_port = port if port is not None else (default_port if only == "default" else fallback_port)
        _check_port(chosen_port, "--port")
        specs = [ProcessorSpec(only, FEES[only] if fee is None else _parse_fee(fee), chosen_port, host)]
    _serve(specs, options)


def _check_port(port: int, option: str) -> None:
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"{port}: expected a port between 0 and 65535", param_hint=option)


def _parse_fee(text: str) -> Decimal:
    """A fee as the processor's ``TRANSACTION_FEE``: a plain decimal fraction, scale kept."""
    if not _FEE_TEXT.fullmatch(text.strip()) or Decimal(text.strip()) > 1:
        raise typer.BadParameter(f"{text!r}: expected a decimal fraction between 0 and 1, e.g. 0.05", param_hint="--fee")
    return Decimal(text.strip())


def _serve(specs, options: dict) -> None:
    """Run until a signal; exit 1 with a message if an address cannot be bound."""
    import trio

    from rinha.emulator.run import run_until_signalled
    from rinha.http.listen import ListenError

    _raise_open_files_limit()  # Kestrel has no connection limit; 800 + 500 in flight need the fds

    def announce(listening) -> None:
        for started in listening:
            typer.echo(f"{started.name} processor (fee {started.fee}) listening on http://{started.host}:{started.port}")

    try:
        trio.run(partial(run_until_signalled, specs, announce, **options))
    except (OSError, ListenError) as exc:
        typer.echo(f"rinha processors: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # an unlimited hard limit cannot become the soft one: keep what we have
        pass
