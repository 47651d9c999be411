"""``labbot bake --profile P [--from-lab NAME] [--name IMAGE]``: an image of VM2 with ZStack installed.

The image goes on the lab platform's backup storage, tagged with the ZStack version it holds; the command
prints the profile lines that use it (``vm2.image`` and ``install: {mode: baked}``). Without ``--from-lab``
labbot builds a lab up to the install for the purpose and destroys it afterwards, which takes as long as one
install. A running labbot on the same database sees the temporary lab like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import typer

from bot.cli_worker import LogNotifier, configure_logging
from config.settings import Settings, load_settings
from services.crypto import require_strong_secret_key
from services.errors import LabbotError
from services.i18n import _
from services.labs.build.bake import BakedImage
from services.labs.runtime import Runtime

log = logging.getLogger(__name__)


def profile_lines(baked: BakedImage) -> str:
    """What a profile says to build VM2 from the image."""
    return f"vm2:\n  image: {baked.name}\ninstall:\n  mode: baked\n"


def describe(baked: BakedImage) -> str:
    """The image in one line, for people."""
    return _("image {name} ({uuid}): ZStack {version}, {size} MiB, baked from lab `{lab}` (profile {profile})").format(
        name=baked.name, uuid=baked.uuid, version=baked.zstack_version, size=baked.size_bytes // 1024**2,
        lab=baked.source_lab, profile=baked.profile)


async def run_bake(settings: Settings, *, profile: str | None, from_lab: str | None, name: str | None,
                   echo: Callable[[str], None]) -> BakedImage:
    """Bake with a runtime of its own (its engine builds and destroys the temporary lab)."""
    rt = Runtime(settings, notifiers=[LogNotifier()], engine_poll_interval=2.0)

    async def progress(line: str) -> None:
        echo(f"  {line}")

    try:
        await rt.start()
        return await rt.baking.bake(profile=profile, from_lab=from_lab, image_name=name, progress=progress)
    finally:
        await rt.stop()


def bake_command(
    profile: str | None = typer.Option(None, "--profile", help="The profile whose VM2 to bake (default: the default)."),
    from_lab: str | None = typer.Option(None, "--from-lab", help="Bake this built lab's VM2 instead of a new lab's."),
    name: str | None = typer.Option(None, "--name", help="The image's name (default: PREFIX-PROFILE-vm2-baked-TIME)."),
) -> None:
    """Make an image of VM2 with ZStack installed, so labs of a profile skip the install."""
    settings = load_settings()
    require_strong_secret_key(settings)
    configure_logging(settings)

    try:  # the runtime refuses a database that is not migrated, before anything is built
        baked = asyncio.run(run_bake(settings, profile=profile, from_lab=from_lab, name=name, echo=typer.echo))
    except LabbotError as err:
        typer.echo(_("bake failed: {error}").format(error=err.user_message), err=True)
        raise typer.Exit(1) from None
    typer.echo(describe(baked))
    typer.echo(_("to build VM2 from it, put this in a profile (a copy of {profile}, say):").format(
        profile=baked.profile))
    typer.echo(profile_lines(baked))
