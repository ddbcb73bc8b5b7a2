"""Benchmark: PanelSequenceDataset throughput (300x300 panels, 0 and 2 DataLoader workers) and preprocessing time.

    python benchmarks/bench_datasets.py            # 40 synthetic series (the default dataset size)
    python benchmarks/bench_datasets.py --quick    # 8 series
    python benchmarks/bench_datasets.py --data data/synthetic   # an existing dataset root (not modified:
                                                                # outputs go to a temporary folder)

Writes rows into data_stats/bench_data.csv (columns benchmark, value, unit, detail), replacing only this
script's rows (other benchmarks write into the same file), and prints a table.
Targets: >= 100 samples/s per worker; preprocessing of 40 series <= 60 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
CSV = REPO / "data_stats" / "bench_data.csv"
NAMES = ("dataset_samples_per_s_w0", "dataset_samples_per_cpu_s_w0", "dataset_samples_per_s_w2", "dataset_samples_per_s_per_worker_w2",
         "preprocess_seconds", "preprocess_samples")


def _merge_rows(rows: list[dict]) -> pd.DataFrame:
    CSV.parent.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(CSV) if CSV.is_file() else pd.DataFrame(columns=["benchmark", "value", "unit", "detail"])
    mine = {r["benchmark"] for r in rows}
    df = pd.concat([old[~old["benchmark"].isin(mine | set(NAMES))], pd.DataFrame(rows)], ignore_index=True)
    tmp = CSV.with_name(CSV.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, CSV)
    return df


def _throughput(ds, workers: int, n: int, batch_size: int = 16) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second of this process); the CPU figure is meaningful for
    workers=0 only and is robust to other jobs sharing the machine."""
    sub = torch.utils.data.Subset(ds, list(range(min(n, len(ds)))))
    loader = torch.utils.data.DataLoader(sub, batch_size=batch_size, num_workers=workers, shuffle=False,
                                         persistent_workers=False)
    it = iter(loader)
    first = next(it)  # worker start-up and first batch are not timed
    t0, c0 = time.perf_counter(), time.process_time()
    count = 0
    for b in it:
        count += b["panels"].shape[0]
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    del first
    return count / dt, count / max(dc, 1e-9)


def main(argv: list[str] | None = None) -> int:
    from ssuper_lib.config import DataConfig
    from ssuper_lib.data.datasets import PanelSequenceDataset
    from ssuper_lib.data.synthetic import generate
    from ssuper_lib.preprocess import run_preprocessing

    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="8 series instead of 40")
    p.add_argument("--data", default=None, help="existing dataset root (panels/, annotations/)")
    p.add_argument("--samples", type=int, default=None, help="samples timed per worker setting")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    n_series = 8 if a.quick else 40
    n_samples = a.samples or (160 if a.quick else 480)
    tmp = Path(tempfile.mkdtemp(prefix="bench_datasets_"))
    if a.data:
        root = Path(a.data) if Path(a.data).is_absolute() else REPO / a.data
        n_series = len([d for d in (root / "panels").iterdir() if d.is_dir()])
    else:
        root = tmp / "synthetic"
        t0 = time.perf_counter()
        generate(root, n_series=n_series, seed=0)
        print(f"generated {n_series} series in {time.perf_counter() - t0:.1f} s")
    cfg = DataConfig(panel_path=str(root / "panels"), annot_path=str(root / "annotations"),
                     sequence_path=str(tmp / "out" / "sequences.json"), faces_path=str(tmp / "out" / "faces"),
                     ground_truth_path=None, panel_size=[300, 300])
    rep = run_preprocessing(cfg, progress=False)
    print(rep)
    ds = PanelSequenceDataset.from_config(cfg, "all")
    host = f"{platform.node()} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})"
    w0, w0_cpu = _throughput(ds, 0, n_samples)
    w2, _ = _throughput(ds, 2, n_samples)
    rows = [
        {"benchmark": "dataset_samples_per_s_w0", "value": round(w0, 1), "unit": "samples/s",
         "detail": f"PanelSequenceDataset 300x300, 3 panels + face, num_workers=0, {n_samples} samples; {host}"},
        {"benchmark": "dataset_samples_per_cpu_s_w0", "value": round(w0_cpu, 1), "unit": "samples/CPU-s",
         "detail": "num_workers=0, samples per CPU second of the loading process (independent of machine load)"},
        {"benchmark": "dataset_samples_per_s_w2", "value": round(w2, 1), "unit": "samples/s",
         "detail": f"same, num_workers=2, batch 16; {host}"},
        {"benchmark": "dataset_samples_per_s_per_worker_w2", "value": round(w2 / 2, 1), "unit": "samples/s/worker",
         "detail": "num_workers=2 throughput / 2 (target >= 100)"},
        {"benchmark": "preprocess_seconds", "value": round(rep.seconds, 2), "unit": "s",
         "detail": f"run_preprocessing on {n_series} synthetic series ({rep.panels_total} panels, {rep.boxes_read} boxes, "
                   f"{rep.face_crops} face crops); target <= 60 s for 40 series; {host}"},
        {"benchmark": "preprocess_samples", "value": rep.samples, "unit": "samples",
         "detail": f"{rep.windows} windows, train {rep.train_samples} / test {rep.test_samples}"},
    ]
    df = _merge_rows(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 90):
        print(pd.DataFrame(rows).to_string(index=False))
        print(f"\n{CSV} now holds {len(df)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
