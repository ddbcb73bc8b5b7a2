"""torch.profiler table of one training iteration at the README config (not a benchmark: prints, writes nothing).

    python benchmarks/profile_train_step.py                 # CPU, Bi-LSTM SSuperGAN, B5, 300x300, batch 2
    python benchmarks/profile_train_step.py --device cuda   # the same on a GPU (adds CUDA kernel times)
    python benchmarks/profile_train_step.py --rows 40 --sort cpu_time_total

Two warm-up iterations, then one profiled ``GANObjective.step`` on a fixed random batch. It is how the
kit's training costs were found: the EfficientNet's Python Swish (``SwishImplementation`` forward and
backward, ~25% of the CPU time), unfused padding copies and NCHW depthwise convolutions (docs/performance.md
says what the kit uses instead).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ssuper_lib.config import load_config  # noqa: E402
from ssuper_lib.models import build_model  # noqa: E402
from ssuper_lib.train import OBJECTIVES, _amp_dtype, _Dist  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none", help="none | bf16 | fp16 (train.amp)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--sort", default="self_cpu_time_total")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    cfg = load_config(REPO / "configs/models/bilstm_ssupergan.yaml",
                      ["model.pretrained=false", f"train.batch_size={a.batch}", "data.panel_size=[300,300]", f"train.amp={a.amp}"])
    torch.manual_seed(0)
    model = build_model(cfg.model, panel_size=(300, 300)).to(device).train()
    objective = OBJECTIVES[cfg.model.variant](model, cfg, device, _amp_dtype(a.amp, device), _Dist(), 100)
    g = torch.Generator().manual_seed(1)
    batch = {"panels": (torch.rand(a.batch, 3, 3, 300, 300, generator=g) * 2 - 1).to(device),  # (B, S, 3, H, W)
             "face": (torch.rand(a.batch, 3, 64, 64, generator=g) * 2 - 1).to(device)}  # (B, 3, 64, 64)
    for i in range(2):
        objective.step(batch, i)
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        objective.step(batch, 2)
        if device.type == "cuda":
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by=a.sort, row_limit=a.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
