"""Detached long commands on a lab VM (the ZStack install takes 10-30 minutes).

A job runs under ``setsid nohup`` in its own session on the remote host, so neither a dropped SSH connection
nor a labbot restart stops it. Everything about it lives in one directory on that host::

    /var/tmp/labbot/<lab>/<job>/
        started/    created atomically by the first start: later starts see it and do nothing
        command     the shell command
        boot_id     the host's boot id at start (a reboot since then means the job is lost)
        pid         the job's process id (its process group, for cancel)
        log         stdout and stderr, appended as the job runs
        exit        the exit status, written (atomically) when the job ends

``/var/tmp`` survives reboots, unlike ``/tmp``. labbot re-attaches by name: ``read_log`` resumes from a byte
offset and ``job_exit_code`` reads ``exit``; ``follow`` does both in a loop until the job ends, riding out
connection drops.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from dataclasses import dataclass
from typing import Literal

from services import shell
from services.ssh.errors import SSHError, SSHTimeoutError, SSHUnreachableError, tail
from services.ssh.result import LineCallback, LinesCallback
from services.ssh.session import LabSSH, Target

log = logging.getLogger(__name__)

JOBS_ROOT = "/var/tmp/labbot"
MAX_CHUNK = 1 << 20  # bytes of log read per round trip
MAX_LINE_BYTES = 64 * 1024  # a longer log line is passed on in pieces
MAX_FOLLOWED_BYTES = 256 * 1024 * 1024  # of one job's log; ZStack's installer writes a few MiB
_RECENT_LINES = 20
_RECENT_LINE_CHARS = 500  # what an error keeps of each of the last lines
_POLL_TIMEOUT = 60.0
_LAST_POLL_SECONDS = 5.0
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

JobState = Literal["absent", "running", "finished", "lost"]


@dataclass(frozen=True)
class JobStatus:
    """Where a detached job is: never started, running, finished (with its exit code) or lost (host rebooted)."""

    state: JobState
    exit_code: int | None = None


class DetachedJobLostError(SSHError):
    """The job's process is gone without an exit code (the host rebooted or it was killed)."""


def job_dir(lab: str, job: str) -> str:
    """The job's directory on the remote host (validated parts, safe to quote)."""
    return f"{JOBS_ROOT}/{shell.identifier(lab)}/{shell.job_name(job)}"


# $1 is the job directory in every script below; values never appear in the script text itself.
_START = r"""
d=$1
mkdir -p "$d" || exit 90
if ! mkdir "$d/started" 2>/dev/null; then echo already-started; exit 0; fi
printf '%s\n' "$2" > "$d/command"
cat /proc/sys/kernel/random/boot_id > "$d/boot_id" 2>/dev/null
setsid nohup /bin/sh -c '
  echo $$ > "$1/pid"
  /bin/sh "$1/command" > "$1/log" 2>&1 < /dev/null
  echo $? > "$1/exit.tmp" && mv "$1/exit.tmp" "$1/exit"
' labbot-job "$d" > /dev/null 2>&1 < /dev/null &
echo started
"""

# A process counts as alive unless it is gone or a zombie (an exited job whose parent has not reaped it).
_ALIVE = r"""alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }"""

# Prints the state on the first line, then the log from byte offset $2 (at most $3 bytes), base64-encoded.
_POLL = _ALIVE + r"""
d=$1
state=running
if [ -f "$d/exit" ]; then state="finished $(cat "$d/exit")"
elif [ ! -d "$d/started" ]; then state=absent
elif [ -f "$d/boot_id" ] && [ "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)" != "$(cat "$d/boot_id")" ]; then
  state=lost
elif [ -f "$d/pid" ] && ! alive "$(cat "$d/pid")"; then
  if [ -f "$d/exit" ]; then state="finished $(cat "$d/exit")"; else state=lost; fi
fi
echo "$state"
if [ -f "$d/log" ]; then tail -c +"$(($2 + 1))" "$d/log" | head -c "$3" | base64 | tr -d '\n'; fi
echo
"""

# The wrapper shell dies with its group, so the exit code of a cancelled job (128 + SIGTERM) is written here.
_CANCEL = r"""
d=$1
[ -f "$d/exit" ] && exit 0
[ -f "$d/pid" ] && kill -TERM "-$(cat "$d/pid")" 2>/dev/null  # a negative pid is the process group
sleep 0.2
[ -f "$d/exit" ] || { echo 143 > "$d/exit.tmp" && mv "$d/exit.tmp" "$d/exit"; }
exit 0
"""

_RESET = _ALIVE + r"""
d=$1
if [ -d "$d/started" ] && [ ! -f "$d/exit" ] && [ -f "$d/pid" ] && alive "$(cat "$d/pid")"; then
  echo running; exit 3
fi
rm -rf -- "$d"
"""



async def start_detached(session: LabSSH, target: Target, job: str, command: str) -> None:
    """Start ``command`` as job ``job`` on ``target`` unless that job was already started (running or done).

    ``command`` is shell text (built from validated, quoted values); it is stored on the host and run by
    ``/bin/sh`` with stdout and stderr going to the job's log.
    """
    directory = job_dir(session.lab, job)
    result = await session.run(target, shell.sh_c(_START, directory, command), timeout=_POLL_TIMEOUT)
    outcome = result.stdout.strip()
    log.info("detached job %s lab=%s host=%s job=%s", outcome, session.lab, target, job)


async def _poll(session: LabSSH, target: Target, job: str, offset: int, timeout: float = _POLL_TIMEOUT,  # noqa: ASYNC109 - one poll's budget
                chunk: int = MAX_CHUNK) -> tuple[JobStatus, bytes]:
    directory = job_dir(session.lab, job)
    result = await session.run(target, shell.sh_c(_POLL, directory, offset, chunk), timeout=timeout)
    first, _, rest = result.stdout.partition("\n")
    words = first.split()
    if not words or words[0] not in {"absent", "running", "finished", "lost"}:
        raise SSHError(f"unexpected job status {first[:80]!r} from {target}", lab=session.lab, host=target)
    try:
        data = base64.b64decode(rest.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SSHError(f"unreadable log of job {job} on {target}", lab=session.lab, host=target) from None
    if words[0] == "finished":
        try:
            return JobStatus("finished", int(words[1])), data
        except (IndexError, ValueError):
            return JobStatus("lost"), data
    return JobStatus(words[0]), data  # type: ignore[arg-type]


def _complete_utf8(data: bytes) -> bytes:
    """``data`` without a trailing, incomplete UTF-8 sequence (it is read again with the next chunk)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): is its sequence complete?
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            return data if back >= need else data[:-back]
    return data


def split_lines(buffer: bytes) -> tuple[list[str], bytes]:
    """Complete lines in ``buffer`` and the bytes left over (a partial line, a split character, a lone ``\\r``).

    A partial line longer than ``MAX_LINE_BYTES`` is passed on in pieces of that size, so a log that never
    breaks its lines cannot make the bytes held over grow without end.
    """
    lines, rest = _split_complete(buffer)
    while len(rest) > MAX_LINE_BYTES:  # the rest holds no line break, at most a "\r" at its very end
        piece = _complete_utf8(rest[:MAX_LINE_BYTES]) or rest[:MAX_LINE_BYTES]
        lines.append(piece.decode("utf-8", errors="replace"))
        rest = rest[len(piece) :]
    return lines, rest


def _split_complete(buffer: bytes) -> tuple[list[str], bytes]:
    complete = _complete_utf8(buffer)
    text = complete.decode("utf-8", errors="replace")
    hold = ""
    if text.endswith("\r"):  # may be the first half of "\r\n"
        text, hold = text[:-1], "\r"
    *lines, last = _LINE_BREAK.split(text)
    return lines, (last + hold).encode() + buffer[len(complete) :]


async def read_log(session: LabSSH, target: Target, job: str, offset: int) -> tuple[str, int]:
    """The job's log from byte ``offset`` (up to 1 MiB) and the offset to resume from next time."""
    _, data = await _poll(session, target, job, offset)
    complete = _complete_utf8(data)
    return complete.decode("utf-8", errors="replace"), offset + len(complete)


async def job_status(session: LabSSH, target: Target, job: str) -> JobStatus:
    """The job's state (and exit code once it finished)."""
    status, _ = await _poll(session, target, job, 0)
    return status


async def job_exit_code(session: LabSSH, target: Target, job: str) -> int | None:
    """The exit code of a finished job, None while it runs (or was never started).

    Raises ``DetachedJobLostError`` if its process vanished without an exit code.
    """
    status = await job_status(session, target, job)
    if status.state == "lost":
        raise _lost(session, target, job)
    return status.exit_code


async def cancel_job(session: LabSSH, target: Target, job: str) -> None:
    """Send SIGTERM to the job's process group and record exit code 143 (no-op if it already finished)."""
    await session.run(target, shell.sh_c(_CANCEL, job_dir(session.lab, job)), timeout=_POLL_TIMEOUT)


async def reset_job(session: LabSSH, target: Target, job: str) -> None:
    """Remove a finished or lost job's directory so that it can be started afresh; refuses a running job."""
    command = shell.sh_c(_RESET, job_dir(session.lab, job))
    result = await session.run(target, command, timeout=_POLL_TIMEOUT, check=False)
    if result.exit_status == 3:
        raise SSHError(f"job {job} on {target} is still running; cancel it first", lab=session.lab, host=target)
    if not result.ok:
        raise SSHError(f"cannot reset job {job} on {target}: {tail(result.stderr)}", lab=session.lab, host=target)


def _lost(session: LabSSH, target: Target, job: str) -> DetachedJobLostError:
    return DetachedJobLostError(
        f"job {job} on {target} in lab {session.lab} stopped without an exit code (host rebooted or process killed)",
        lab=session.lab,
        host=target,
    )


async def follow(
    session: LabSSH,
    target: Target,
    job: str,
    *,
    offset: int = 0,
    on_line: LineCallback | None = None,
    on_lines: LinesCallback | None = None,
    poll_interval: float = 2.0,
    timeout: float,  # noqa: ASYNC109 - the agreed interface; the job's budget, spanning reconnects
    max_log_bytes: int = MAX_FOLLOWED_BYTES,
) -> int:
    """Stream the job's log lines from ``offset`` to ``on_line`` until it ends; return its exit code.

    ``on_lines`` gets the same lines a poll at a time (one call per poll that brought any), for consumers
    that store them: one write per poll instead of one per line.

    Connection drops are ridden out (the session reconnects on the next poll) until ``timeout`` seconds
    have passed; then ``SSHTimeoutError`` carries the last lines seen. The job keeps running on the host either
    way. ``\r`` counts as a line break, so progress bars arrive as separate lines. After ``max_log_bytes`` of
    log the rest is not read (a last line says so); the job is still waited for.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = b""
    recent: list[str] = []
    log_left = max_log_bytes

    async def emit(lines: list[str]) -> None:
        if not lines:
            return
        recent.extend(line[:_RECENT_LINE_CHARS] for line in lines[-_RECENT_LINES:])
        del recent[:-_RECENT_LINES]
        if on_lines is not None:
            await on_lines(lines)
        if on_line is not None:
            for line in lines:
                await on_line(line)

    while True:
        try:
            # A poll may outlast the job's deadline by at most _LAST_POLL_SECONDS (enough to read the last lines
            # on a slow connection), not by a whole _POLL_TIMEOUT.
            budget = min(_POLL_TIMEOUT, max(_LAST_POLL_SECONDS, deadline - loop.time()))
            status, data = await _poll(session, target, job, offset, timeout=budget,
                                       chunk=max(0, min(MAX_CHUNK, log_left)))
        except (SSHUnreachableError, SSHTimeoutError) as err:
            if loop.time() >= deadline:
                raise SSHTimeoutError(
                    lab=session.lab, host=target, command=f"job {job}", timeout=timeout, stdout="\n".join(recent)
                ) from err
            log.warning("following job %s lab=%s host=%s: %s; retrying", job, session.lab, target, err.message)
            await asyncio.sleep(poll_interval)
            continue
        offset += len(data)
        reading = log_left > 0
        log_left -= len(data)
        lines, pending = split_lines(pending + data)
        if ((status.state == "finished" and len(data) < MAX_CHUNK) or log_left <= 0) and pending.rstrip(b"\r"):
            lines.append(pending.rstrip(b"\r").decode("utf-8", errors="replace"))  # the last line had no newline
            pending = b""
        if reading and log_left <= 0:
            log.warning("job %s lab=%s host=%s: log over %d bytes; the rest is not read", job, session.lab, target,
                        max_log_bytes)
            lines.append(f"[labbot: the log passed {max_log_bytes:,} bytes; the rest of it is not read]")
        await emit(lines)
        if len(data) == MAX_CHUNK:
            continue  # more log is waiting; read it before looking at the state again
        if status.state == "finished":
            assert status.exit_code is not None
            log.info("job %s finished lab=%s host=%s exit=%d", job, session.lab, target, status.exit_code)
            return status.exit_code
        if status.state == "lost":
            raise _lost(session, target, job)
        if status.state == "absent":
            raise SSHError(f"job {job} was never started on {target}", lab=session.lab, host=target)
        if loop.time() >= deadline:
            raise SSHTimeoutError(
                lab=session.lab, host=target, command=f"job {job}", timeout=timeout, stdout="\n".join(recent)
            )
        await asyncio.sleep(poll_interval)
