"""``rinha stack``: the whole local topology (processors, N instances, nginx) in the foreground."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Run the whole local topology: processors, instances, nginx.")


@app.command("up")
def up(
    port: int = typer.Option(9999, help="Port of the load balancer (nginx)."),
    instances: int = typer.Option(2, help="Number of `rinha serve` instances behind nginx."),
    with_processors: bool = typer.Option(False, "--with-processors", help="Also start `rinha processors` where the URLs point."),
    default_url: str = typer.Option("http://localhost:8001", help="Default processor (started there with --with-processors)."),
    fallback_url: str = typer.Option("http://localhost:8002", help="Fallback processor (started there with --with-processors)."),
    db: str = typer.Option("./rinha.db", help="SQLite file shared by every instance, or a postgresql:// URL."),
    topology: str = typer.Option("split", help="all: each instance takes and pays payments; split: the instances only take them and one worker process pays them."),
    lease_seconds: float = typer.Option(5.0, help="Seconds after which a dead instance's payments are adopted."),
    runtime_dir: str = typer.Option(None, help="Directory for the sockets, nginx's files and stack.json (default: a temporary one, removed at the end)."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Keep running when an instance dies while another one lives (default: stop everything)."),
    nginx_conf: str = typer.Option(None, help="nginx.conf to render (default: ./nginx.conf, else the source checkout's)."),
    log_level: str = typer.Option("info", help="Log level of the instances."),
) -> None:
    """Start the processors (optional), N daemon instances on unix sockets and nginx on --port.

    Runs in the foreground until Ctrl-C or SIGTERM, then stops everything it started. If a
    process dies on its own, the rest are stopped and the exit code is 1. nginx is looked up in
    $RINHA_NGINX, then $PATH, then /usr/sbin.

    Examples:

      rinha stack up --with-processors              # everything local: :8001, :8002, :9999

      rinha stack up --instances 3 --db /tmp/rinha.db --lease-seconds 2
    """
    from rinha.stack import NginxNotFound, StackError, Supervisor, find_nginx, make_plan

    try:
        nginx = find_nginx()
    except NginxNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"{log_level!r}: expected debug, info, warning or error", param_hint="--log-level")
    try:
        plan = make_plan(port=port, instances=instances, with_processors=with_processors, default_url=default_url,
                         fallback_url=fallback_url, db=db, lease_seconds=lease_seconds, runtime_dir=runtime_dir,
                         keep_going=keep_going, log_level=log_level.lower(), nginx_conf=nginx_conf, nginx=nginx,
                         topology=topology)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except StackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)

    out = Console()
    err = Console(stderr=True)

    def show_table(rows: list[tuple[str, int, str]]) -> None:
        table = Table(title=f"rinha stack (runtime dir {plan.runtime_dir})")
        table.add_column("process")
        table.add_column("pid", justify="right")
        table.add_column("listens on")
        for name, pid, address in rows:
            table.add_row(name, str(pid), address)
        out.print(table)

    supervisor = Supervisor(plan, say=lambda text: out.print(text, highlight=False, markup=False),
                            warn=lambda text: err.print(text, highlight=False, markup=False), show_table=show_table)
    code = supervisor.run()
    if code:
        raise typer.Exit(code)
