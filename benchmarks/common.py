"""What the benchmarks share: the machine line, RESULTS.md sections, and process figures read from /proc.

Each benchmark owns one section of benchmarks/RESULTS.md between ``<!-- name:start -->`` and
``<!-- name:end -->``; ``write_section`` replaces only that section, so benchmarks can run in any order or alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
MIB = 1024 * 1024
TCP_ESTABLISHED = "01"


def machine() -> str:
    """CPU model, cores, memory, OS and Python."""
    model = "unknown CPU"
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024**2:.0f} GB RAM"
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {os.cpu_count()} cores{memory}, {system}, Python {platform.python_version()}"


def stamp() -> str:
    """Machine and date, the first line of every section."""
    return f"Machine: {machine()}. Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."


def write_section(name: str, lines: Iterable[str]) -> str:
    """Replace benchmark ``name``'s section of RESULTS.md (or append it); return the section text."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = "\n".join([start, *lines, end])
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    return section


# --- /proc ----------------------------------------------------------------------------------------------


def _status_kib(pid: int | str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of one process."""
    return _status_kib(pid, "VmRSS:") * 1024


def pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages divided among their users), so a sum over processes is honest."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def open_fds(pid: int | str = "self") -> int:
    """How many file descriptors a process holds."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _socket_inodes(pid: int | str) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def ssh_connections(pid: int | str = "self") -> int:
    """Established TCP connections to port 22 owned by the process (what ``ss -tnp dport = 22`` shows)."""
    return socket_peers(pid).get(22, 0)


def netns_pids(prefix: str) -> list[int]:
    """Every process in a network namespace named ``<prefix>-...`` (a sandbox's VMs and segments)."""
    inodes = set()
    try:
        names = os.listdir("/run/netns")
    except OSError:
        names = []
    for name in names:
        if name.startswith(prefix + "-"):
            try:
                inodes.add(os.stat(f"/run/netns/{name}").st_ino)
            except OSError:
                continue
    if not inodes:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def netns_count(prefix: str) -> int:
    """How many network namespaces a sandbox has (VMs and segments)."""
    try:
        return sum(1 for n in os.listdir("/run/netns") if n.startswith(prefix + "-"))
    except OSError:
        return 0


def process_count(comm: str, pids: Iterable[int]) -> int:
    """How many of ``pids`` run the command ``comm`` (e.g. per-connection ``sshd-session`` processes)."""
    count = 0
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                count += 1
        except OSError:
            continue
    return count


@dataclass
class Peaks:
    """Peak values of named gauges, sampled in the background while a benchmark runs."""

    gauges: dict[str, Callable[[], float]]
    interval: float = 0.5
    peaks: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    _task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for name, gauge in self.gauges.items():
            value = gauge()
            self.last[name] = value
            self.peaks[name] = max(self.peaks.get(name, value), value)
        self.samples += 1

    async def _run(self) -> None:
        while True:
            # /proc walks are blocking but short; a thread keeps them off the event loop being measured.
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> Peaks:
        self.sample()
        self._task = asyncio.create_task(self._run(), name="benchmark-peaks")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()


@dataclass
class CpuMeter:
    """Machine-wide CPU use and this process's CPU time between ``start`` and ``stop``."""

    busy: float = 0.0  # share of all cores' time spent not idle, 0..1
    process_seconds: float = 0.0  # this process's user + system CPU time
    _machine: tuple[int, int] = (0, 0)
    _process: float = 0.0

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    def start(self) -> CpuMeter:
        self._machine, self._process = self._read(), time.process_time()
        return self

    def stop(self) -> CpuMeter:
        total, idle = self._read()
        spent = total - self._machine[0]
        self.busy = 1 - (idle - self._machine[1]) / spent if spent else 0.0
        self.process_seconds = time.process_time() - self._process
        return self


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time of the process itself (clock ticks → seconds).

    Not its reaped children's: a child sampled while alive would then count twice (itself, and in its parent).
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class GroupCpu:
    """CPU seconds used by a changing group of processes, each counted at the highest value seen.

    Each process counts its own time only, so a process that lived and died between two samples is missed: the
    total is a lower bound.
    """

    seen: dict[int, float] = field(default_factory=dict)

    def sample(self, pids: Iterable[int]) -> float:
        for pid in pids:
            self.seen[pid] = max(self.seen.get(pid, 0.0), cpu_seconds(pid))
        return self.total

    @property
    def total(self) -> float:
        return sum(self.seen.values())


def socket_peers(pid: int | str = "self") -> dict[int, int]:
    """How many of the process's TCP sockets are connected to each remote port (e.g. 5432: its database pool)."""
    mine = _socket_inodes(pid)
    peers: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[9] in mine and cols[3] == TCP_ESTABLISHED:
                port = int(cols[2].rsplit(":", 1)[1], 16)
                peers[port] = peers.get(port, 0) + 1
    return peers
