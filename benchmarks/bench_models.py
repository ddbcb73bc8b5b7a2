"""Forward+backward seconds per batch on CPU: a demo config and the README config (B5, 300x300, batch 2).

    .venv/bin/python benchmarks/bench_models.py [--repeats 3] [--threads N] [--out data_stats/bench_models.csv]

One "step" here = encode the panels, sample z, generate the faces, score them with the local
discriminator (and the global one for SSuperGlobalGAN), one backward of the summed outputs. It measures the
networks only (no data loading, no optimiser). For a frozen backbone the step is also timed from cached
pre-head features, which is what training does with ``train.cache_features``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from ssuper_lib.config import REPO_ROOT, load_config
from ssuper_lib.models import build_model, count_parameters

CASES = [
    # (label, config, overrides, batch, from_features)
    ("demo", "configs/models/demo_plain_ssupergan.yaml", [], 32, False),
    ("demo (cached features)", "configs/models/demo_plain_ssupergan.yaml", [], 32, True),
    ("README", "configs/models/plain_ssupergan.yaml", ["model.pretrained=false"], 2, False),
]


def _step(model, panels, feats):
    out = model.forward_features(feats) if feats is not None else model(panels)
    loss = out["face"].mean() + out["mu"].pow(2).mean()
    if model.local_disc is not None:
        loss = loss + model.local_disc(out["face"]).mean()
    loss.backward()


def bench(config: str, overrides: list[str], batch: int, from_features: bool, repeats: int) -> dict:
    cfg = load_config(REPO_ROOT / config, overrides)
    H, W = cfg.data.panel_size
    torch.manual_seed(0)
    model = build_model(cfg.model, (H, W)).train()
    panels = torch.rand(batch, 3, 3, H, W) * 2 - 1
    feats = None
    if from_features:
        with torch.no_grad():
            feats = model.backbone_features(panels)
    _step(model, panels, feats)  # warm-up
    times = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        _step(model, panels, feats)
        times.append(time.perf_counter() - t0)
    return {
        "config": Path(config).stem,
        "backbone": cfg.model.backbone,
        "pretrained": cfg.model.pretrained,
        "frozen": cfg.model.freeze_backbone,
        "from_cached_features": from_features,
        "panel": f"{H}x{W}",
        "batch": batch,
        "params": count_parameters(model),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "sec_per_batch_median": round(statistics.median(times), 4),
        "sec_per_batch_min": round(min(times), 4),
    }


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--out", default=str(REPO_ROOT / "data_stats" / "bench_models.csv"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for label, config, overrides, batch, from_features in CASES:
        row = {"case": label, **bench(config, overrides, batch, from_features, args.repeats)}
        print(f"{label:24s} {row['sec_per_batch_median']:8.3f} s/batch", flush=True)
        rows.append(row)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.to_string(index=False))
    print(f"wrote {out}")
    return df


if __name__ == "__main__":
    main()
