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


def _rows(csv: Path) -> pd.DataFrame:
    """One benchmark CSV as rows of the common table: benchmark, value, unit, detail."""
    df = pd.read_csv(csv)
    if {"benchmark", "value", "unit"} <= set(df.columns):  # already in the common form
        out = df[["benchmark", "value", "unit"]].copy()
        out["detail"] = df.get("detail", "")
    elif "faces_per_s" in df.columns:  # bench_eval
        out = pd.DataFrame({"benchmark": df["measure"], "value": df["faces_per_s"], "unit": "faces/s",
                            "detail": df["faces"].astype(str) + " faces; " + df["note"].fillna("").astype(str)})
    elif "sec_per_batch_median" in df.columns:  # bench_models
        out = pd.DataFrame({"benchmark": "forward+backward " + df["case"] + " (" + df["config"] + ")",
                            "value": df["sec_per_batch_median"], "unit": "s/batch",
                            "detail": df["backbone"] + ", " + df["panel"] + ", batch " + df["batch"].astype(str)
                            + ", cached features " + df["from_cached_features"].astype(str)})
    elif "samples_per_s" in df.columns:  # bench_train
        out = pd.DataFrame({"benchmark": "training step " + df["case"] + " (" + df["variant"] + ")",
                            "value": df["samples_per_s"], "unit": "samples/s",
                            "detail": df["backbone"] + ", " + df["panel_size"] + ", batch " + df["batch_size"].astype(str)
                            + ", " + df["s_per_step"].astype(str) + " s/step, " + df["device"]
                            + ", GPU peak GB " + df["gpu_peak_mem_gb"].fillna("-").astype(str)
                            + ", peak RSS GB " + (df["peak_rss_gb"] if "peak_rss_gb" in df else pd.Series("-", index=df.index)).fillna("-").astype(str)})
    elif "peak_rss_gb" in df.columns and "scale" in df.columns:  # bench_comics_scale
        out = pd.DataFrame({"benchmark": "preprocess at COMICS scale " + (df["scale"] * 100).round().astype(int).astype(str) + "%",
                            "value": df["seconds"], "unit": "s",
                            "detail": df["series"].astype(str) + " series, " + df["panels"].astype(str) + " panels, "
                            + df["samples"].astype(str) + " samples, peak RSS GB " + df["peak_rss_gb"].astype(str)})
    else:
        out = pd.DataFrame({"benchmark": [c for c in df.columns], "value": "", "unit": "", "detail": "unknown format"})
    out.insert(0, "file", csv.name)
    return out


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
    frames = [_rows(csv) for csv in sorted(STATS.glob("bench_*.csv"))]
    if frames:
        table = pd.concat(frames, ignore_index=True)
        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 70):
            print("\n" + table.to_string(index=False))
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
