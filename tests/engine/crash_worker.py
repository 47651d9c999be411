"""Labbot processes that die the hard way, forked from one warm parent: ``python -m tests.engine.crash_worker``.

Each line read on stdin (settings overrides as JSON) forks one labbot process (imports are done once, in this
parent, so an incarnation costs milliseconds instead of seconds). The child starts a Runtime, which resumes
every unfinished lab, and the moment a step is recorded done it prints ``step <name>`` and SIGKILLs itself:
no ``finally``, no lease release, connections cut mid-flight, the other branches of the DAG interrupted
wherever they were. If no step is left to finish, the build ends and the child exits 0. After each child the
parent prints ``exit <status>`` (a negative status is the signal that ended it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

from config.settings import load_settings
from services.labs.runtime import Runtime


async def incarnation(overrides: dict[str, object]) -> int:
    settings = load_settings(**overrides)

    async def die(_lab_id: int, step: str) -> None:
        print(f"step {step}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    runtime = Runtime(settings, after_step=die, engine_poll_interval=0.2)
    await runtime.start()
    try:
        await runtime.engine.wait_idle(timeout=120)
    finally:
        await runtime.stop()
    return 0


def serve() -> None:
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                code = asyncio.run(incarnation(json.loads(line)))
            except BaseException:
                logging.exception("incarnation failed")
                code = 1
            sys.stdout.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"exit {code}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    serve()
