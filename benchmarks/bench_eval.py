"""Evaluation throughput: faces/s for PSNR, SSIM and feature extraction -> data_stats/bench_eval.csv.

    python benchmarks/bench_eval.py [--faces 512] [--inception-faces 64] [--out data_stats/bench_eval.csv]

Feature extraction is timed with torch-fidelity's Inception (the FID network) when its weights are
available; otherwise with the same architecture and random weights (throughput does not depend on the
weight values; labelled "random weights, throughput only") and with the kit's tiny registered extractor
``ssuper-pixpool8`` (labelled; its distances are never reported as FID). Inputs are 64x64 faces as in
the evaluation. Timings on a shared CPU are pessimistic.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from ssuper_lib.evaluate import fid as FID
from ssuper_lib.evaluate import metrics as M
from ssuper_lib.config import resolve_path


def _time(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _random_inception_weights(path: Path) -> None:
    """Write a state dict of the torch-fidelity Inception architecture with random weights."""
    import torch_fidelity.feature_extractor_inceptionv3 as inc

    real_url, real_load = inc.load_state_dict_from_url, inc.FeatureExtractorInceptionV3.load_state_dict
    inc.load_state_dict_from_url = lambda *a, **k: {}
    inc.FeatureExtractorInceptionV3.load_state_dict = lambda self, sd: None
    try:
        net = inc.FeatureExtractorInceptionV3(FID.INCEPTION_NAME, ["2048"])
    finally:
        inc.load_state_dict_from_url, inc.FeatureExtractorInceptionV3.load_state_dict = real_url, real_load
    torch.save(net.state_dict(), path)


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=512, help="faces for PSNR/SSIM/pixpool timing")
    ap.add_argument("--inception-faces", type=int, default=64, help="faces for the Inception timing")
    ap.add_argument("--out", default="data_stats/bench_eval.csv")
    args = ap.parse_args(argv)

    g = torch.Generator().manual_seed(0)
    real = torch.rand(args.faces, 3, 64, 64, generator=g) * 2 - 1
    fake = (real + 0.2 * torch.randn(real.shape, generator=g)).clamp(-1, 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}, {device}"
    rows = []

    def add(what, n, seconds, note=""):
        rows.append({"measure": what, "faces": n, "seconds": round(seconds, 4), "faces_per_s": round(n / seconds, 1),
                     "device": device if "feature" in what else "cpu", "note": note, "env": env})

    add("psnr_per_image", len(real), _time(lambda: M.psnr_per_image(fake, real)))
    add("ssim_per_image (skimage)", len(real), _time(lambda: M.ssim_per_image(fake, real), repeats=2))
    add("psnr_original_protocol (batch 64)", len(real), _time(lambda: M.psnr_original_protocol(fake, real)))

    name = FID.register_pixel_pool_extractor()
    add("features ssuper-pixpool8", len(real),
        _time(lambda: FID.extract_features(real, feature_extractor=name, batch_size=64)),
        "tiny plumbing extractor; its distance is never reported as FID")

    n_inc = args.inception_faces
    weights = FID.resolve_inception_weights(None, allow_download=False)
    with tempfile.TemporaryDirectory() as tmp:
        if weights.available:
            path, note = weights.path, f"torch-fidelity Inception ({weights.source})"
        else:
            path, note = str(Path(tmp) / "random_inception.pth"), "Inception architecture, random weights (throughput only)"
            _random_inception_weights(Path(path))
        add("features inception-v3-compat (2048)", n_inc,
            _time(lambda: FID.extract_features(real[:n_inc], weights_path=path, batch_size=32), repeats=1), note)

    df = pd.DataFrame(rows)
    out = resolve_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(df[["measure", "faces", "seconds", "faces_per_s", "device", "note"]].to_string(index=False))
    print(f"\n{env}\nwritten: {out}")
    return df


if __name__ == "__main__":
    main()
