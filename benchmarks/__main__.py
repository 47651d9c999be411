"""Run the benchmarks: ``python -m benchmarks [--quick] [name ...]`` (``make bench`` runs them all).

Each benchmark is a module here, runnable alone (``python -m benchmarks.engine``), that writes its own section
of benchmarks/RESULTS.md and exits non-zero when it misses a target. This runs them one after another, never side
by side (one must not load the machine under another's measurement), each in a fresh process (so one's memory
figures do not include another's leftovers). ``--quick`` passes on to those with a smaller smoke variant.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

# In the order ``make bench`` runs them: cheap ones first; the sandbox ones need root and the lab-in-a-box.
BENCHMARKS = ("zstack_polls", "slack_ack", "cleanup", "engine", "lifecycle_cost", "load", "hostile_vm", "pool", "bake")
QUICK = frozenset({"cleanup", "engine", "lifecycle_cost", "load", "pool",
                  "bake"})  # the ones with a --quick smoke variant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name", help=f"benchmarks to run (default: all of "
                                                                  f"{', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="the fast smoke variant where there is one")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results: dict[str, tuple[int, float]] = {}
    root = Path(__file__).resolve().parents[1]
    for name in args.names or BENCHMARKS:
        print(f"== {name}", flush=True)
        command = [sys.executable, "-m", f"benchmarks.{name}", *(["--quick"] if args.quick and name in QUICK else [])]
        started = time.monotonic()
        # A failing benchmark does not stop the others: their figures are still worth having.
        code = subprocess.run(command, cwd=root, check=False).returncode
        results[name] = (code, time.monotonic() - started)
    for name, (code, seconds) in results.items():
        print(f"{name}: {'ok' if code == 0 else f'target missed or failed (exit {code})'} ({seconds:.0f} s)")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
