"""The ``labbot`` command line. Each sub-command lives with its feature; this module only wires them."""

from __future__ import annotations

import typer

from services import __version__

app = typer.Typer(help="labbot: builds, watches and tears down ZStack training labs.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print labbot's version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
