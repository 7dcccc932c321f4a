"""``careloom db``: the care records database's schema (Alembic migrations in ``store/migrations``).

Development hosts migrate on start; production hosts refuse to start until ``careloom db upgrade`` has run,
once per release, from one host (a deployment step before the workers roll).
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import settings
from cli.output import console, fail, print_json, safe

app = typer.Typer(help="The care records database: schema status and migrations.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _database():  # noqa: ANN202
    from store.database import Database

    cfg = settings()
    return Database(cfg.database_location, pool_size=1)


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Where the schema is and where this careloom needs it. Exit 1 if it is behind or ahead."""
    from store.schema import state

    db = _database()
    try:
        found = state(db)
    finally:
        db.close()
    current = found.current == found.head
    if as_json:
        print_json({"database": db.url, "dialect": db.dialect, "revision": found.current, "head": found.head,
                    "current": current, "known": found.known})
    elif current:
        console.print(safe(f"{db.url}: schema at {found.head}, current"))
    elif not found.known:
        console.print(safe(f"{db.url}: schema at {found.current}, newer than this careloom ({found.head})"))
    else:
        console.print(safe(f"{db.url}: schema at {found.current or '(none)'}, this careloom needs {found.head}: "
                           "run `careloom db upgrade`"))
    if not current:
        raise typer.Exit(1)


@app.command()
def upgrade() -> None:
    """Apply every pending migration, in one transaction (all or nothing)."""
    from runtime.errors import ConfigurationError
    from store.schema import upgrade as apply

    db = _database()
    try:
        before, after = apply(db)
    except ConfigurationError as err:
        fail(str(err), code=2)
        return
    finally:
        db.close()
    if before == after:
        console.print(safe(f"{db.url}: schema already at {after}"))
    else:
        console.print(safe(f"{db.url}: schema upgraded {before or '(none)'} → {after}"))
