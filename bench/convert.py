"""`porter convert` against libcst's own codemod command line, as whole processes, side
by side in one run, on the same files with the same number of processes.

- cold: `porter convert --no-cache` against `python -m libcst.tool codemod
  noop.NOOPCommand` (parse, no-op, print, compare); target: at most 1.0 with the
  default number of processes (the cores), printed with one process each too;
- check: `porter convert --check` on up-to-date outputs (the cache warm) against the
  same baseline; target: at most 0.3;
- scaling: both, on 1, 2, 4 and 8 copies of the installed torchtune's recipes.

Each round runs the commands back to back, in alternating order; each ratio is the
median of the rounds' ratios, which cancels the slow and fast spells of a shared VM.
Run: python bench/convert.py [--rounds N] [--copies 1 2 4 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from porter.sources import installed_recipes_dir


def timed(command: List[str], cwd: Path, env: Dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench: {' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def copies_of_recipes(root: Path, copies: int) -> Path:
    """`copies` copies of the installed recipes (Python files only) under `root`."""
    folder = root / f"recipes-x{copies}"
    if not folder.exists():
        for copy in range(copies):
            shutil.copytree(
                installed_recipes_dir(),
                folder / f"copy{copy}",
                ignore=shutil.ignore_patterns("configs", "*.yaml", "*.md", "__pycache__"),
            )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    jobs = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="porter-bench-") as scratch:
        root = Path(scratch)
        # No project settings and no .libcst.codemod.yaml here: both tools run with their defaults.
        env = {**os.environ, "PORTER_CACHE_DIR": str(root / "cache"), "NO_COLOR": "1"}

        # libcst reads its options after the command's name.
        def libcst(folder, extra=()):
            return [
                sys.executable,
                "-m",
                "libcst.tool",
                "codemod",
                "noop.NOOPCommand",
                "--no-format",
                "--hide-progress",
                *extra,
                str(folder),
            ]

        def porter(folder, out, extra=()):
            return [sys.executable, "-m", "porter", "convert", str(folder), "-o", str(out), *extra]

        print(f"cores: {jobs}  rounds: {args.rounds}")
        print(
            f"{'copies':>6} {'files':>5} {'libcst -j N':>12} {'porter cold':>12} {'cold ratio':>10} {'porter --check':>15} {'check ratio':>11}"
        )
        summary = {}
        for copies in args.copies:
            folder = copies_of_recipes(root, copies)
            files = sum(1 for _ in folder.rglob("*.py"))
            out = root / f"out-x{copies}"
            timed(porter(folder, out), root, env)  # outputs and cache up to date, for --check
            times: Dict[str, List[float]] = {"libcst": [], "cold": [], "check": []}
            runs = [
                ("libcst", libcst(folder)),
                ("cold", porter(folder, root / f"cold-x{copies}", ["--no-cache"])),
                ("check", porter(folder, out, ["--check"])),
            ]
            for _ in range(args.rounds):
                runs.reverse()
                for name, command in runs:
                    shutil.rmtree(root / f"cold-x{copies}", ignore_errors=True)
                    times[name].append(timed(command, root, env))
            cold = statistics.median(c / b for c, b in zip(times["cold"], times["libcst"], strict=True))
            check = statistics.median(c / b for c, b in zip(times["check"], times["libcst"], strict=True))
            summary[copies] = (cold, check)
            print(
                f"{copies:>6} {files:>5} {statistics.median(times['libcst']):>11.2f}s {statistics.median(times['cold']):>11.2f}s "
                f"{cold:>10.2f} {statistics.median(times['check']):>14.2f}s {check:>11.2f}"
            )

        folder = copies_of_recipes(root, args.copies[0])
        serial: Dict[str, List[float]] = {"libcst": [], "porter": []}
        for _ in range(args.rounds):
            shutil.rmtree(root / "serial", ignore_errors=True)
            serial["porter"].append(timed(porter(folder, root / "serial", ["--no-cache", "-j", "1"]), root, env))
            serial["libcst"].append(timed(libcst(folder, ["-j", "1"]), root, env))
        one = statistics.median(p / b for p, b in zip(serial["porter"], serial["libcst"], strict=True))
        cold, check = summary[args.copies[0]]
        print()
        print(f"porter convert cold / libcst noop, {jobs} processes each: {cold:.2f} (target <= 1.0)")
        print(f"porter convert cold / libcst noop, 1 process each:       {one:.2f}")
        print(f"porter convert --check (up to date) / libcst noop:        {check:.2f} (target <= 0.3)")


if __name__ == "__main__":
    main()
