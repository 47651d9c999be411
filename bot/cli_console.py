"""``labbot console`` and ``labbot demo``: the chat front end in a terminal, on the real platform or the sandbox."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

import typer
from pydantic import SecretStr
from rich.console import Console

from bot.console.app import ConsoleFrontEnd, stdin_is_terminal
from bot.console.notifier import ConsoleNotifier
from bot.logs import configure_logging
from config.profiles import InstallSpec, PoolSpec, load_profiles
from config.settings import Settings, load_settings
from services import db
from services.crypto import require_strong_secret_key
from services.i18n import _, normalize_language, set_default_language
from services.labs.runtime import Runtime

log = logging.getLogger(__name__)

DEMO_SCRIPT = [
    "/lab doctor",
    "/lab create demo --ttl 2h",
    "/lab status demo",
    "/lab health demo",
    "/lab access demo",
    "/lab logs demo iscsi_target",
    "/lab destroy demo --yes",
    "/lab list --all",
]


async def _bake_for_demo(runtime: Runtime, console: Console) -> None:
    """The demo's baked image: VM2 of a lab built up to the install, as profile ``<default>-baked``."""
    default = runtime.settings.default_profile
    console.print(_("baking VM2 of profile {profile} (a lab built up to the install, then an image of its "
                    "VM2) …").format(profile=default), style="bold")

    async def progress(line: str) -> None:
        console.print(f"  {line}", style="dim")

    baked = await runtime.baking.bake(profile=default, from_lab=None, image_name=None, progress=progress)
    recipe = runtime.profiles[default]
    name = f"{default}-baked"
    runtime.profiles[name] = recipe.model_copy(update={
        "name": name,
        "vm2": recipe.vm2.model_copy(update={"image": baked.name}),
        "install": InstallSpec(mode="baked", timeout_minutes=recipe.install.timeout_minutes),
    })
    console.print(_("baked image {image} holds ZStack {version}; profile {profile} builds VM2 from it "
                    "(`/lab create NAME --profile {profile}`)").format(
                        image=baked.name, version=baked.zstack_version, profile=name), style="bold")


async def _run_front_end(settings: Settings, console: Console, script: list[str] | None, *, pool: int = 0,
                         files_dir: Path | None = None, bake: bool = False) -> int:
    profiles = None
    if pool:
        # The demo's warm pool: the default profile asks for ``pool`` labs, built before the script runs.
        profiles = {name: p.model_copy(update={"pool": PoolSpec(size=pool)}) if name == settings.default_profile
                    else p for name, p in load_profiles(settings.profiles_dir).items()}
    notifier = ConsoleNotifier(console, files_dir=files_dir)
    runtime = Runtime(settings, profiles=profiles, notifiers=[notifier], engine_poll_interval=2.0)
    notifier.pictures = runtime.service.picture_of
    await runtime.start()
    try:
        front = ConsoleFrontEnd(runtime, console)
        if bake:
            await _bake_for_demo(runtime, console)
        if pool:
            console.print(
                _("warm pool: building {pool} lab(s) of profile {default_profile} first …").format(
                    pool=pool, default_profile=settings.default_profile
                ),
                style="bold",
            )
            await runtime.service.pool.refill()
            await runtime.engine.wait_idle(timeout=1800)
            for status in await runtime.service.pool.status():
                console.print(
                    _("warm pool {profile}: {ready} ready of {target}").format(
                        profile=status.profile, ready=status.ready, target=status.target
                    ),
                    style="bold",
                )
        if script:
            return await front.run_script(script)
        await front.run_interactive()
        return 0
    finally:
        await runtime.stop()


def _script(commands: list[str] | None, script: bool) -> list[str] | None:
    """``--script "/lab create x" "/lab status x"``: the commands, or None for the interactive console."""
    if commands and not script:
        raise typer.BadParameter(_('commands given without --script; use --script "/lab create x" …'))
    if script and not commands:
        raise typer.BadParameter(_('--script needs at least one command, e.g. --script "/lab list"'))
    return list(commands) if script else None


FILES_HELP = "Where lab pictures and packet captures are written."
LANGUAGE_HELP = "en or zh_CN: the language of the console (default: LABBOT_LANGUAGE)."


def _language(language: str | None) -> str | None:
    """``--language`` checked, and made the process's language at once (the first lines come before any lab)."""
    if language is None:
        return None
    chosen = normalize_language(language)
    if chosen is None:
        raise typer.BadParameter(f"{language!r}: choose en or zh_CN")
    set_default_language(chosen)
    return chosen


def console_command(
    commands: list[str] = typer.Argument(None, help="With --script: the commands to run, each one quoted."),
    script: bool = typer.Option(False, "--script", help="Run COMMANDS and exit (non-zero on any failure)."),
    files: Path = typer.Option(Path("labbot-files"), "--files", help=FILES_HELP),
    language: str | None = typer.Option(None, "--language", help=LANGUAGE_HELP),
) -> None:
    """Chat with labbot in the terminal, against the configured lab platform and database."""
    chosen = _language(language)
    settings = load_settings(**({"language": chosen} if chosen else {}))
    set_default_language(settings.language)
    require_strong_secret_key(settings)
    configure_logging(logging.WARNING)  # the console shows what happens; the log only what went wrong
    code = asyncio.run(_run_front_end(settings, Console(), _script(commands, script), files_dir=files))
    raise typer.Exit(code)


async def _demo(
    script: list[str] | None,
    latency_scale: float,
    keep: bool,
    console: Console,
    pool: int = 0,
    files_dir: Path | None = None,
    language: str = "en",
    bake: bool = False,
) -> int:
    from sandbox import lifecycle
    from sandbox.config import SandboxConfig
    from sandbox.hooks import OuterSandboxHooks
    from sandbox.zstack_sim.seed import OuterSeed
    from sandbox.zstack_sim.server import serve_simulator

    config = SandboxConfig.from_env()
    console.print(_("bringing up the lab-in-a-box under {base_dir} …").format(base_dir=config.base_dir), style="bold")
    await lifecycle.up(config)
    workdir = Path(tempfile.mkdtemp(prefix="labbot-demo-"))
    try:
        async with serve_simulator(
            "outer",
            hooks=OuterSandboxHooks(config),
            latency_scale=latency_scale,
            outer_seed=OuterSeed(ranges=config.public_ranges()),
        ) as sim:
            console.print(_("lab platform (ZStack simulator, outer role) at {url}").format(url=sim.url), style="bold")
            settings = load_settings(
                database_url=f"sqlite+aiosqlite:///{workdir / 'labbot.db'}",
                state_dir=workdir,
                platform_url=sim.url,
                platform_account="admin",
                platform_password=SecretStr("password"),
                default_profile="sandbox",
                language=language,
            )
            await db.upgrade(settings.database_url)
            return await _run_front_end(settings, console, script, pool=pool, files_dir=files_dir, bake=bake)
    finally:
        if keep:
            console.print(
                _("--keep: sandbox and {workdir} left in place (`labbot sandbox down` removes it)").format(
                    workdir=workdir
                )
            )
        else:
            report = await lifecycle.down(config)
            shutil.rmtree(workdir, ignore_errors=True)
            console.print(_("sandbox down: {summary}").format(summary=report.summary()), style="dim")


def demo_command(
    commands: list[str] = typer.Argument(None, help="With --script: the commands to run, each one quoted."),
    script: bool = typer.Option(False, "--script", help="Run COMMANDS instead of the interactive console, then exit."),
    latency_scale: float = typer.Option(0.02, help="Scale of the simulator's realistic API durations."),
    keep: bool = typer.Option(False, help="Leave the sandbox up afterwards."),
    files: Path = typer.Option(Path("labbot-files"), "--files", help=FILES_HELP),
    pool: int = typer.Option(
        0, "--pool", min=0, max=5, help="Keep this many labs of the default profile built first (a warm pool)."
    ),
    language: str | None = typer.Option(None, "--language", help=LANGUAGE_HELP),
    bake: bool = typer.Option(
        False, "--bake", help="Bake VM2 of the default profile first; profile DEFAULT-baked then builds from it."
    ),
) -> None:
    """Bring up the sandbox (outer simulator + namespace VMs) and SQLite, then open the console on them.

    Without --script and without a terminal, runs the standard demo script.
    """
    console = Console()
    configure_logging(logging.WARNING)
    chosen = _language(language) or load_settings().language
    set_default_language(chosen)
    lines = _script(commands, script)
    if lines is None and not stdin_is_terminal():
        lines = DEMO_SCRIPT
    code = asyncio.run(_demo(lines, latency_scale, keep, console, pool, files, chosen, bake))
    raise typer.Exit(code)
