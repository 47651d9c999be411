"""The console front end: the same grammar and dispatch as Slack, in a terminal (like a chat shell).

Interactive: type ``/lab …`` lines; progress of every lab prints as it happens. Script mode runs commands one
after another, waits for the work each one starts, checks it ended as asked, and reports a failure by exit code.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from rich.console import Console
from rich.text import Text

from bot.blocks.format import state_word
from bot.console.render import render_reply, say
from bot.text import printable
from services.commands import (
    ClassCreateCommand,
    ClassDestroyCommand,
    CreateCommand,
    DestroyCommand,
    RetryCommand,
    parse_command,
)
from services.dispatch import Reply, ReplyKind, execute
from services.errors import LabbotError
from services.i18n import _
from services.labs.models import LabState
from services.labs.runtime import Runtime
from services.labs.service import Actor
from services.labs.views import LabView

log = logging.getLogger(__name__)

# What a scripted command must end in for the script to go on.
_EXPECTED = {
    ReplyKind.CREATED: LabState.READY,
    ReplyKind.RETRYING: LabState.READY,
    ReplyKind.SOLVING: LabState.READY,
    ReplyKind.DESTROYING: LabState.DESTROYED,
}


class ConsoleFrontEnd:
    """Reads commands, prints replies; one user (the console's) who is an admin of this labbot."""

    def __init__(self, runtime: Runtime, console: Console, *, user: str = "console", admin: bool = True) -> None:
        self.runtime = runtime
        self.console = console
        self.actor = Actor(user, is_admin=admin)

    async def handle(self, line: str) -> Reply | None:
        """Run one command line; errors are printed (as Slack would show them) and return None."""
        try:
            command = parse_command(line)
            reply = await execute(command, actor=self.actor, service=self.runtime.service, channel="console")
        except LabbotError as err:
            say(self.console, f"✗ {err.user_message}", "red")
            return None
        render_reply(self.console, reply)
        return reply

    async def run_script(self, lines: list[str], *, limit: float = 1800) -> int:
        """Run commands in order, waiting for each one's work; 0 when every one ended as asked."""
        for line in lines:
            self.console.rule(Text(printable(line), style="bold"))
            command = _safe_parse(line)
            reply = await self.handle(line)
            if reply is None:
                return 1
            if reply.kind == ReplyKind.DOCTOR and not all(check.ok for check in reply.data["checks"]):
                say(self.console, _("✗ `{line}` found problems").format(line=line), "bold red")
                return 1
            ends_class = isinstance(command, ClassDestroyCommand) and command.yes
            if (isinstance(command, ClassCreateCommand) or ends_class) and reply.klass is not None:
                wanted = LabState.READY if isinstance(command, ClassCreateCommand) else LabState.DESTROYED
                if not await self._wait_for(reply.klass.labs, wanted, line, limit):
                    return 1
                continue
            wanted = _EXPECTED.get(reply.kind)
            if wanted is None or reply.lab is None:
                continue
            await self.runtime.engine.wait_idle(reply.lab.id, timeout=limit)
            lab = await self.runtime.service.view(reply.lab.id)
            if lab.state != wanted:
                detail = (
                    _(" at {failed_step}: {error}").format(failed_step=lab.failed_step, error=lab.error)
                    if lab.error
                    else ""
                )
                say(
                    self.console,
                    _("✗ `{line}` ended with lab {name} {state}{detail}").format(
                        line=line, name=lab.name, state=state_word(lab.state), detail=detail
                    ),
                    "bold red",
                )
                return 1
            if isinstance(command, CreateCommand | RetryCommand | DestroyCommand):
                done = _("✓ lab {name} is {state}").format(name=lab.name, state=state_word(lab.state))
                say(self.console, done, "bold green")
        return 0

    async def _wait_for(self, labs: tuple[LabView, ...], wanted: LabState, line: str, limit: float) -> bool:
        """Wait for each lab's work, then say whether every one ended ``wanted``."""
        for lab in labs:
            await self.runtime.engine.wait_idle(lab.id, timeout=limit)
        states = [await self.runtime.service.view(lab.id) for lab in labs]
        wrong = [f"{lab.name} {lab.state}" for lab in states if lab.state != wanted]
        if wrong:
            say(self.console, _("✗ `{line}` ended with {join}").format(line=line, join=", ".join(wrong)), "bold red")
            return False
        say(self.console, _("✓ {len} labs {wanted}").format(len=len(states), wanted=wanted), "bold green")
        return True

    async def run_interactive(self) -> None:
        """A prompt loop until EOF or `exit`; progress prints between prompts."""
        self.console.print(_("labbot console — type `/lab help`, or `exit`."), style="bold")
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, _prompt)
            if line is None or line.strip() in ("exit", "quit"):
                return
            if line.strip():
                await self.handle(line)


def _safe_parse(line: str) -> object:
    try:
        return parse_command(line)
    except LabbotError:
        return None


def _prompt() -> str | None:
    try:
        return input("lab> ")
    except EOFError:
        return None


def stdin_is_terminal() -> bool:
    """Whether an interactive prompt makes sense."""
    return sys.stdin.isatty()
