"""``rinha migrate``: bring a store's schema to this version of rinha, then exit."""

from __future__ import annotations

import typer


def migrate(
    db: str = typer.Option("./rinha.db", envvar="RINHA_DB", help="SQLite file or postgresql:// URL (created if missing)."),
) -> None:
    """Create or upgrade the store's schema, then exit. Safe while daemons run.

    `rinha serve` migrates on start too; running this first (as the container image and
    `rinha stack up` do) keeps the migration code out of the long-running daemons' memory.

    Examples:

      rinha migrate --db /var/lib/rinha/rinha.db
    """
    from rinha.store import EngineMissing, check_db, display, open_store

    try:
        check_db(db)
        store = open_store(db)
        try:
            store.migrate()
        finally:
            store.close()
    except (ValueError, EngineMissing) as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    except Exception as exc:  # a store that cannot be opened or written: one line, exit 1
        typer.echo(f"error: cannot migrate {display(db)}: {exc}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{display(db)}: schema up to date")
