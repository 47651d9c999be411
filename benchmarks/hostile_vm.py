"""A lab VM whose owner has root, against labbot: floods, drips, log spam and terminal escapes (issue 12, 1-4).

``python -m benchmarks.hostile_vm`` runs each attack in a fresh process (so one's memory high-water mark is not
another's) and writes the figures to benchmarks/RESULTS.md. ``--code DIR`` runs the same attacks against the
labbot code in another checkout (how the "before" figures were taken: the attack helpers
``tests/ssh/loopback_sshd.py`` and ``tests/zstack/test_zstack_bounds.py`` copied into it). Needs root (sshd).

Memory is the growth of the process's resident set: its high-water mark (VmHWM) after the attack minus its
resident size just before it. The event loop's stall is the longest gap seen by a task sleeping 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import machine, write_section

MIB = 1024 * 1024
FLOOD = "yes 'this VM greets every login with this line, again and again, without end'"
SCENARIOS = ("ssh_128mib", "ssh_endless", "http_160mib", "http_drip", "install_5000", "console_escapes")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


@asynccontextmanager
async def measured() -> AsyncIterator[dict[str, Any]]:
    """Elapsed seconds, the loop's longest stall and the resident-set growth of the block."""
    figures: dict[str, Any] = {"stall_s": 0.0}

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            figures["stall_s"] = max(figures["stall_s"], now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    before = _status_kib("VmRSS")
    started = time.monotonic()
    try:
        yield figures
    finally:
        figures["elapsed_s"] = round(time.monotonic() - started, 2)
        figures["rss_growth_mib"] = round((_status_kib("VmHWM") - before) / 1024, 1)
        figures["stall_s"] = round(figures["stall_s"], 2)
        ticker.cancel()


def _outcome(err: BaseException | None, result: object = None) -> str:
    if err is None:
        return f"returned {result}"
    text = str(err).splitlines()[0]
    return f"{type(err).__name__}: {text[:110]}"


async def _ssh_attack(force: str, timeout: float) -> dict[str, Any]:
    from tests.ssh.loopback_sshd import LoopbackSSHD

    with tempfile.TemporaryDirectory() as base, LoopbackSSHD(Path(base), force_command=f"#!/bin/sh\n{force}\n") as vm:
        async with vm.ssh() as ssh:
            await ssh.connection("vm1")
            err: BaseException | None = None
            result = None
            async with measured() as figures:
                try:
                    result = (await ssh.run("vm1", "true", timeout=timeout, check=False)).exit_status
                except Exception as caught:  # the outcome is what is measured
                    err = caught
    figures["outcome"] = _outcome(err, result)
    return figures


async def _http_attack(answer: Any, call: Callable[[Any], Awaitable[object]]) -> dict[str, Any]:
    from pydantic import SecretStr

    from services.zstack import ZStackClient
    from tests.zstack.test_zstack_bounds import hostile_server

    async with hostile_server(answer) as url, ZStackClient(url, "admin", SecretStr("password")) as client:
        err: BaseException | None = None
        result = None
        async with measured() as figures:
            try:
                result = await call(client)
            except Exception as caught:
                err = caught
    figures["outcome"] = _outcome(err, result if not isinstance(result, str) else f"{len(result):,} characters")
    return figures


async def _install_attack() -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from services import db
    from tests.engine.test_install_log import run_install
    from tests.ssh.loopback_sshd import LoopbackSSHD

    with tempfile.TemporaryDirectory() as base:
        root = Path(base)
        url = f"sqlite+aiosqlite:///{root / 'labbot.db'}"
        await db.upgrade(url)
        engine: AsyncEngine = db.make_engine(url)
        (root / "vm").mkdir()
        (root / "work").mkdir()
        with LoopbackSSHD(root / "vm") as vm:
            async with measured() as figures:
                statements, _, tail, _, _ = await run_install(db.make_sessionmaker(engine), vm, root / "work",
                                                              "yes '' | head -n 5000; exit 3\n")
        await engine.dispose()
    figures.update(statements=statements, tail_chars=len(tail), outcome=f"{statements:,} SQL statements")
    return figures


async def _console_attack() -> dict[str, Any]:
    from datetime import UTC, datetime

    from rich.console import Console

    from bot.console.notifier import ConsoleNotifier
    from services.labs.notifier import Notice, NoticeKind
    from services.labs.views import LabView, StepView

    out = io.StringIO()
    console = Console(file=out, width=400, force_terminal=True, color_system="truecolor")
    notifier = ConsoleNotifier(console, progress_interval=0)
    now = datetime.now(UTC)
    lab = LabView(id=1, uuid="0" * 32, name="hostile", owner="U1", channel=None, profile="sandbox",
                  state="provisioning", created_at=now, expires_at=now, destroyed_at=None, ttl_extensions=0,
                  failed_step=None, error=None, health="unknown", health_failing=(), vm1_public_ip=None,
                  vm1_vpc_ip=None, vm2_ip=None, iscsi_iqn=None, iscsi_wwid=None, progress_ref=None)
    sent, raised = 100, 0
    for i in range(sent):
        # Half the lines carry a stray closing tag, all of them a title change and a screen clear.
        text = f"{i}% \x1b]0;owned\x07\x1b[2J {'[/dim] ' if i % 2 else ''}done"
        step = StepView(name="install_zstack", title="Install ZStack on VM2", state="running", attempt=1,
                        started_at=None, finished_at=None, duration_seconds=None, error=None, progress=text,
                        output_tail=None)
        try:
            await notifier.notify(Notice(NoticeKind.STEP_PROGRESS, lab, step=step, text=text))
        except Exception:  # what an admin's console did with it
            raised += 1
    written = out.getvalue()
    foreign = len(re.findall(r"\x1b(?!\[[0-9;]*m)", written))  # escape sequences other than rich's colours
    return {"lines_sent": sent, "lines_printed": written.count("\n"), "raised": raised,
            "foreign_escapes": foreign,
            "outcome": f"{written.count(chr(10))} of {sent} printed, {raised} raised, {foreign} escape sequences "
                       "reached the terminal"}


async def scenario(name: str) -> dict[str, Any]:
    """Run one attack in this process and return its figures."""
    from tests.zstack.test_zstack_bounds import drip, huge_json

    if name == "ssh_128mib":
        return await _ssh_attack(f"{FLOOD} | head -c {128 * MIB}", timeout=120)
    if name == "ssh_endless":
        return await _ssh_attack(f"exec {FLOOD}", timeout=15)
    if name == "http_160mib":
        return await _http_attack(huge_json(160 * MIB, announce=False),
                                  lambda client: client.get_version(deadline=time.monotonic() + 120))
    if name == "http_drip":
        return await _http_attack(drip(b'{"version": "5.2.1"}' + b" " * 280, every=0.1),
                                  lambda client: client.is_ready(within=5))
    if name == "install_5000":
        return await _install_attack()
    if name == "console_escapes":
        return await _console_attack()
    raise SystemExit(f"unknown scenario {name}")


def run_all(code: Path) -> dict[str, dict[str, Any]]:
    """Every scenario in its own process, against the code in ``code``."""
    here = Path(__file__).resolve().parents[1]
    results = {}
    for name in SCENARIOS:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(code), str(here)]))}
        done = subprocess.run([sys.executable, "-m", "benchmarks.hostile_vm", "--scenario", name], cwd=code, env=env,
                              capture_output=True, text=True, check=False, timeout=900)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        results[name] = json.loads(lines[-1]) if lines else {"outcome": f"crashed: {done.stderr.strip()[-200:]}"}
        print(name, results[name], flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile_vm", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=SCENARIOS, help="run one attack in this process, print JSON")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the labbot checkout to attack (default: this one)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--label", default="", help="written as its own section (e.g. 'before' with --code)")
    args = parser.parse_args(argv)
    if args.scenario:
        print(json.dumps(asyncio.run(scenario(args.scenario))), flush=True)
        return 0
    results = run_all(args.code.resolve())
    if not args.no_write:
        rows = [f"| {name} | {r.get('rss_growth_mib', '')} | {r.get('elapsed_s', '')} | {r.get('stall_s', '')} | "
                f"{r['outcome']} |" for name, r in results.items()]
        label = f" ({args.label})" if args.label else ""
        write_section("hostile_vm" + (f"_{args.label}" if args.label else ""),
                      [f"### Hostile lab VM{label}", "", f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}", "",
                                     "| attack | RSS growth MiB | s | longest loop stall s | outcome |",
                                     "|---|---|---|---|---|", *rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
