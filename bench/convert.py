"""Times `porter convert` of every installed recipe against a bare libcst parse plus code
generation of the same files, side by side in one run, and prints the ratio.

Target: at most 2.0. Run: python bench/convert.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import libcst as cst

from porter.convert import convert
from porter.sources import read_source
from porter.sources import discover


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    sources = discover([], installed=True)

    def baseline() -> None:
        for source in sources:
            cst.parse_module(read_source(source.path)).code

    def porter() -> None:
        with tempfile.TemporaryDirectory() as out:
            convert(sources, Path(out))

    porter()  # warm caches both sides share: imports, templates, black
    timings = {"baseline": [], "porter": []}
    runs = [("baseline", baseline), ("porter", porter)]
    for _ in range(args.rounds):
        runs.reverse()  # neither side always goes first
        for name, run in runs:
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    base, ported = statistics.median(timings["baseline"]), statistics.median(timings["porter"])
    # Each round's two runs are neighbours in time: their ratio cancels the machine's
    # slower and faster spells, which on a shared VM move both by tens of percent.
    ratio = statistics.median(p / b for p, b in zip(timings["porter"], timings["baseline"]))
    print(f"files: {len(sources)}  rounds: {args.rounds}")
    print(f"median libcst parse + codegen: {base:.3f} s   median porter convert: {ported:.3f} s")
    print(f"ratio porter / baseline (median of rounds): {ratio:.2f} (target <= 2.0)")


if __name__ == "__main__":
    main()
