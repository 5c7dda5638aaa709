"""The `rinha` command line."""

import typer

from rinha.cli import processors, serve
from rinha.cli import stack
from rinha.cli import payment, replay, status, summary
from rinha.cli import profile
from rinha.cli import migrate

app = typer.Typer(no_args_is_help=True, help="rinha: a payment intermediary daemon and its operator toolkit.")

app.command("serve")(serve.serve)
app.command("migrate")(migrate.migrate)
app.command("processors")(processors.processors)
app.add_typer(stack.app, name="stack")
app.command("summary")(summary.summary)
app.command("replay-dlq")(replay.replay_dlq)
app.command("status")(status.status)
app.command("health")(status.health)
app.command("payment")(payment.payment)
app.add_typer(profile.app, name="profile")


@app.command()
def version() -> None:
    """Print the version."""
    from rinha import __version__

    typer.echo(__version__)
