"""``labbot db ...``: schema migrations."""

from __future__ import annotations

import asyncio

import typer

from config.settings import load_settings
from services import db

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision (default: the newest).")) -> None:
    """Apply migrations to the configured database (LABBOT_DATABASE_URL)."""
    settings = load_settings()
    asyncio.run(db.upgrade(settings.database_url, revision))
    typer.echo(f"database at {revision if revision != 'head' else db.head_revision()}")


@db_app.command("downgrade")
def downgrade(revision: str = typer.Argument(..., help="Target revision; `base` removes every table.")) -> None:
    """Revert migrations on the configured database."""
    settings = load_settings()
    asyncio.run(db.downgrade(settings.database_url, revision))
    typer.echo(f"database at {revision}")


@db_app.command("current")
def current() -> None:
    """Print the revision the configured database is at, and the newest one."""
    settings = load_settings()

    async def read() -> str | None:
        engine = db.make_engine(settings.database_url)
        try:
            return await db.current_revision(engine)
        finally:
            await engine.dispose()

    typer.echo(f"current: {asyncio.run(read()) or '(empty)'}  head: {db.head_revision()}")
