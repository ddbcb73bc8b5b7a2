"""Run every benchmark in this folder and print one table from data_stats/bench_*.csv.

    python benchmarks/run_all.py          # what `make bench` runs
    python benchmarks/run_all.py --quick  # smaller sizes where a benchmark supports it
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
STATS = HERE.parent / "data_stats"


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"--- {script.name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent)
        print(f"--- {script.name}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script.name)
    frames = []
    for csv in sorted(STATS.glob("bench_*.csv")):
        df = pd.read_csv(csv)
        df.insert(0, "file", csv.name)
        frames.append(df)
    if frames:
        table = pd.concat(frames, ignore_index=True)
        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 70):
            print("\n" + table.to_string(index=False))
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
