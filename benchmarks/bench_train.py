"""Training throughput (samples/s) of the kit's engine, measured through ``ssuper_lib.train.train``.

    python benchmarks/bench_train.py            # demo config + README config (B5, 300 px, batch 2)
    python benchmarks/bench_train.py --quick    # fewer steps

Rows:

* ``demo``: ``configs/models/demo_plain_ssupergan.yaml`` as shipped (frozen pretrained EfficientNet-Lite0,
  96 px panels, batch 32) with cached backbone features; also reports the one-off feature-caching time.
* ``readme``: ``configs/models/bilstm_ssupergan.yaml`` (the original README's SSuperDCGAN: Bi-LSTM) with the
  README's sizes: EfficientNet-B5 fine-tuned end to end on 300x300 panels, batch 2, ``pretrained=false`` (no
  download needed; speed does not depend on it).
* ``readme_b16``: the same at batch 16 (run by default on CUDA only: batch 2 leaves a GPU mostly idle).

Each row trains on a small synthetic dataset generated into a temporary folder; the first logging window
(warm-up, allocator growth) is dropped and samples/s is the median over the remaining windows. On a CUDA
machine the same rows run on the GPU and add the peak GPU memory. Every row has the peak RSS of the
process during that case (``VmHWM`` from ``/proc/self/status``, reset before each case through
``/proc/self/clear_refs``; it includes the data loader's parent process, not its worker processes).
Writes ``data_stats/bench_train.csv`` and prints the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ssuper_lib.config import load_config  # noqa: E402
from ssuper_lib.train import data_overrides, read_metrics, train  # noqa: E402

CSV = REPO / "data_stats" / "bench_train.csv"

CASES = {
    "demo": ("configs/models/demo_plain_ssupergan.yaml", []),
    "readme": (
        "configs/models/bilstm_ssupergan.yaml",
        ["model.backbone=efficientnet-b5", "model.pretrained=false", "model.freeze_backbone=false",
         "data.panel_size=[300,300]", "train.batch_size=2"],
    ),
    # the README config at a batch that fills a GPU better (run by default on CUDA only)
    "readme_b16": (
        "configs/models/bilstm_ssupergan.yaml",
        ["model.backbone=efficientnet-b5", "model.pretrained=false", "model.freeze_backbone=false",
         "data.panel_size=[300,300]", "train.batch_size=16"],
    ),
}


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (``VmHWM``); a no-op where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_gb() -> float:
    """Peak RSS of this process in GiB since the last :func:`reset_peak_rss` (``ru_maxrss`` off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def make_data(root: Path, n_series: int, panels: int) -> Path:
    from ssuper_lib.data.synthetic import generate
    from ssuper_lib.preprocess import run_preprocessing

    generate(root, n_series=n_series, seed=0, panels_per_series=panels)
    cfg = load_config(CASES["demo"][0], data_overrides(root) + ["data.val_series=0"])  # a throughput benchmark: no validation split
    run_preprocessing(cfg.data, progress=False, write_faces=False)
    return root


def bench(case: str, root: Path, out: Path, steps: int, log_every: int, device: str, workers: int = 2) -> dict:
    config, extra = CASES[case]
    cfg = load_config(config, data_overrides(root) + extra + [
        f"train.max_steps={steps}", f"train.log_every={log_every}", "train.sample_every=0", "train.ckpt_every=0",
        f"train.out_dir={out}", f"train.device={device}", f"data.num_workers={workers}", f"train.num_workers={workers}", "data.val_series=0",
    ])
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    import gc

    gc.collect()
    reset_peak_rss()
    t0 = time.perf_counter()
    result = train(cfg, progress=False)
    wall = time.perf_counter() - t0
    rows = read_metrics(result.run_dir)
    start = read_metrics(result.run_dir, kind="start")[0]
    rates = [r["samples_per_s"] for r in rows[1:]] or [r["samples_per_s"] for r in rows]
    sps = statistics.median(rates)
    row = {
        "case": case,
        "config": config,
        "variant": cfg.model.variant,
        "backbone": cfg.model.backbone,
        "panel_size": "x".join(map(str, cfg.data.panel_size)),
        "batch_size": cfg.train.batch_size,
        "pretrained": cfg.model.pretrained,
        "frozen_cached_features": bool(start.get("use_features")),
        "device": start["device"],
        "amp": start["amp"],
        "threads": torch.get_num_threads(),
        "workers": workers,
        "steps": steps,
        "samples_per_s": round(sps, 2),
        "s_per_step": round(cfg.train.batch_size / sps, 3),
        "feature_cache_s": start.get("feature_seconds", ""),
        "wall_s": round(wall, 1),
        "gpu_peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else "",
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "host": f"{platform.node()} ({os.cpu_count()} cpus)",
    }
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer steps")
    p.add_argument("--cases", nargs="*", default=None, choices=list(CASES),
                   help="default: demo and readme, plus readme_b16 on CUDA")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--workers", type=int, default=2, help="data loader worker processes")
    args = p.parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cases = args.cases or (list(CASES) if device.startswith("cuda") else ["demo", "readme"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        root = make_data(Path(tmp) / "synthetic", n_series=4 if args.quick else 6, panels=24 if args.quick else 40)
        for case in cases:
            if case == "demo":
                steps, every = (40, 10) if args.quick else (120, 20)
            else:
                steps, every = (4, 1) if args.quick else (6, 1)
            if device.startswith("cuda") and case.startswith("readme"):
                steps, every = 60, 10
            elif case == "readme_b16":
                steps, every = 3, 1
            row = bench(case, root, Path(tmp) / "runs", steps, every, device, args.workers)
            rows.append(row)
            print(f"{case}: {row['samples_per_s']} samples/s ({row['s_per_step']} s/step) on {row['device']}, "
                  f"peak RSS {row['peak_rss_gb']} GiB", flush=True)
    df = pd.DataFrame(rows)
    CSV.parent.mkdir(parents=True, exist_ok=True)
    if CSV.is_file():  # keep rows of other devices, replace this device's rows of the same cases
        old = pd.read_csv(CSV)
        old = old[~(old["case"].isin(df["case"]) & (old["device"] == df["device"].iloc[0]))]
        df = pd.concat([old, df], ignore_index=True)
    df.to_csv(CSV, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
