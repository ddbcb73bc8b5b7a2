"""Throughput of the synthetic generator and of the header-only panel scan.

    python benchmarks/bench_data_gen.py               # 40 series (>= 5,000 panels), as the acceptance test
    python benchmarks/bench_data_gen.py --series 8    # smaller
    python benchmarks/bench_data_gen.py --quick       # 8 series

Targets: generation of 40 series (>= 5,000 panels) in <= 2 minutes on 2 cores, scan >= 2,000
panels/s on 2 cores. The dataset is written to a temporary folder that is removed afterwards.

Writes rows (benchmark, value, unit, detail) to data_stats/bench_data.csv, replacing only this script's
rows (the dataset-loading benchmark writes other rows to the same file), and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from ssuper_lib.data import stats
from ssuper_lib.data.synthetic import generate

REPO = Path(__file__).resolve().parent.parent
CSV = REPO / "data_stats" / "bench_data.csv"
COLUMNS = ["benchmark", "value", "unit", "detail"]


def record(rows: list[dict], csv: Path = CSV) -> pd.DataFrame:
    """Merge ``rows`` into ``csv`` by benchmark name: replace rows with the same name, keep the others."""
    new = pd.DataFrame(rows, columns=COLUMNS)
    if csv.is_file():
        old = pd.read_csv(csv)
        old = old[~old["benchmark"].isin(new["benchmark"])]
        new = pd.concat([old, new], ignore_index=True)
    csv.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv.with_name(csv.name + ".tmp")
    new.to_csv(tmp, index=False)
    os.replace(tmp, csv)
    return new


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=40, help="series to generate (default 40)")
    ap.add_argument("--quick", action="store_true", help="8 series instead of 40")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--repeat", type=int, default=3, help="scan repetitions (best is reported)")
    args = ap.parse_args()
    n_series = 8 if args.quick else args.series
    workers = args.workers or os.cpu_count() or 1
    machine = f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"

    tmp = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        root = tmp / "synthetic"
        t0 = time.perf_counter()
        manifest = generate(root, n_series=n_series, seed=args.seed, workers=workers)
        dt_gen = time.perf_counter() - t0
        n = manifest["counts"]["panels"]

        scan_times = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            df = stats.scan_panels(root / "panels", workers=workers, progress=False)
            scan_times.append(time.perf_counter() - t0)
        assert len(df) == n and df["readable"].all()
        t0 = time.perf_counter()
        stats.scan_panels(root / "panels", workers=1, progress=False)
        dt_scan1 = time.perf_counter() - t0

        t0 = time.perf_counter()
        faces, _ = stats.face_stats(root / "annotations")
        dt_faces = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    detail = f"{n_series} series, {n} panels, {workers} workers; {machine}"
    rows = [
        {"benchmark": "synthetic_generate", "value": round(n / dt_gen, 1), "unit": "panels/s", "detail": detail},
        {"benchmark": "synthetic_generate_wall", "value": round(dt_gen, 2), "unit": "s", "detail": detail},
        {"benchmark": "stats_scan", "value": round(n / min(scan_times), 1), "unit": "panels/s",
         "detail": f"header-only scan, best of {len(scan_times)}, warm page cache; {detail}"},
        {"benchmark": "stats_scan_1proc", "value": round(n / dt_scan1, 1), "unit": "panels/s",
         "detail": f"header-only scan, 1 process, warm page cache; {n} panels"},
        {"benchmark": "stats_face_lines", "value": round(len(faces) / dt_faces, 1), "unit": "lines/s",
         "detail": f"annotation parsing into the faces table; {len(faces)} lines"},
    ]
    record(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 90):
        print(pd.DataFrame(rows, columns=COLUMNS).to_string(index=False))
    ok = n >= 5000 and dt_gen <= 120 if n_series >= 40 else True
    if n_series >= 40:
        print(f"\ngeneration: {n} panels in {dt_gen:.1f} s (target: >= 5,000 panels in <= 120 s) -> {'OK' if ok else 'MISSED'}")
    print(f"scan: {n / min(scan_times):.0f} panels/s (target >= 2,000 panels/s on 2 cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
