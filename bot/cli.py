"""The ``labbot`` command line. Each sub-command lives with its feature; this module only wires them."""

from __future__ import annotations

import typer

from bot.cli_bake import bake_command
from bot.cli_console import console_command, demo_command
from bot.cli_db import db_app
from bot.cli_doctor import doctor_command
from bot.cli_i18n import i18n_app
from bot.cli_secret_key import secret_key_app
from bot.cli_sweep import pool_command, sweep_command
from bot.cli_worker import worker_command
from bot.slack.cli import run_command
from sandbox.cli import sandbox_app
from sandbox.zstack_sim.cli import sim_app
from services import __version__

app = typer.Typer(help="labbot: builds, watches and tears down ZStack training labs.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.command("bake")(bake_command)
app.command("console")(console_command)
app.command("demo")(demo_command)
app.command("doctor")(doctor_command)
app.add_typer(i18n_app, name="i18n")
app.command("run")(run_command)
app.add_typer(sim_app, name="sim")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(secret_key_app, name="secret-key")
app.command("sweep")(sweep_command)
app.command("pool")(pool_command)
app.command("worker")(worker_command)


@app.command()
def version() -> None:
    """Print labbot's version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point: configuration errors print as one clear line, not a traceback."""
    from config.errors import ConfigError

    try:
        app()
    except ConfigError as err:
        typer.secho(f"labbot: {err}", err=True, fg=typer.colors.RED)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
