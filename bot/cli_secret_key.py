"""``labbot secret-key new`` and ``labbot secret-key rotate OLD NEW``."""

from __future__ import annotations

import asyncio

import typer
from pydantic import SecretStr

from config.settings import load_settings
from services import db
from services.crypto import SecretBox, new_secret_key, secret_key_problem
from services.secret_rotation import rotate_secrets

secret_key_app = typer.Typer(help="The key that encrypts lab secrets at rest (LABBOT_SECRET_KEY).",
                             no_args_is_help=True)


@secret_key_app.command("new")
def new() -> None:
    """Print a fresh random key for LABBOT_SECRET_KEY."""
    typer.echo(new_secret_key())


@secret_key_app.command("rotate")
def rotate(old: str = typer.Argument(..., help="The key the secrets are encrypted with now."),
           new: str = typer.Argument(..., help="The key to re-encrypt them with (then LABBOT_SECRET_KEY).")) -> None:
    """Re-encrypt every stored secret under NEW (stop labbot first; safe to run again if interrupted)."""
    problem = secret_key_problem(new)
    if problem is not None:
        raise typer.BadParameter(f"the new key {problem}", param_hint="NEW")
    settings = load_settings()

    async def run() -> list[str]:
        engine = db.make_engine(settings.database_url)
        try:
            await db.require_migrated(engine)
            report = await rotate_secrets(db.make_sessionmaker(engine), old=SecretBox(SecretStr(old)),
                                          new=SecretBox(SecretStr(new)))
        finally:
            await engine.dispose()
        if report.unreadable:
            for line in report.lines():
                typer.echo(line, err=True)
            raise typer.Exit(1)
        return report.lines()

    for line in asyncio.run(run()):
        typer.echo(line)
    typer.echo("done: start labbot with LABBOT_SECRET_KEY set to the new key")
