"""The `rinha` command line."""

import typer

from rinha.cli import serve

app = typer.Typer(no_args_is_help=True, help="rinha: a payment intermediary daemon and its operator toolkit.")

app.command("serve")(serve.serve)


@app.command()
def version() -> None:
    """Print the version."""
    from rinha import __version__

    typer.echo(__version__)
