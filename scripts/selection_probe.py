"""Exemplar selector probe on the validation series: train only the attention (no generator) with the
self-supervised selection target, and count how often its pick shows the right character (ground truth).

    .venv/bin/python scripts/selection_probe.py data/ladder/real-seed0 metric:4:1 metric:4:2 metric+mlp:4:2

Each variant is ``scorer:target_size:null_margin``. The data root needs sequences.json and split.json
(python -m ssuper_lib.preprocess); the crops come from the exemplar cache. Seconds per variant on 2 cores.
Used to choose Robust Exemplar-SSuperGAN (docs/exemplar.md); validation series only, never the test split.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from ssuper_lib.config import load_config
from ssuper_lib.data.datasets import PanelSequenceDataset, match_ground_truth
from ssuper_lib.evaluate.baselines import nearest_context_index
from ssuper_lib.models.exemplar import ExemplarAttention, selection_target
from ssuper_lib.preprocess.exemplars import candidate_characters, exemplar_fields, load_or_build_exemplars


def split_data(cfg, root: str, split: str):
    ds = PanelSequenceDataset.from_config(cfg.data, split=split, augment=False)
    ex = load_or_build_exemplars(cfg.data, ds.samples, cfg.model.exemplar_k, cfg.model.exemplar_ctx_size)
    tchar = [g["target_character"] for g in match_ground_truth(ds.samples, f"{root}/ground_truth.csv")]
    cchar = candidate_characters(ex, ds.samples, f"{root}/ground_truth.csv")
    faces = torch.stack([ds.masked_panel(i)[1] for i in range(len(ds))])
    return ex, tchar, cchar, faces


def right_share(idx: np.ndarray, tchar, cchar) -> tuple[float, float]:
    """(share of known targets whose pick shows their character, share with a right candidate at all)."""
    known = np.array([t is not None for t in tchar])
    right = np.array([idx[i] >= 0 and cchar[i][idx[i]] == tchar[i] for i in range(len(tchar))])
    has = np.array([any(c == tchar[i] for c in cchar[i]) for i in range(len(tchar))])
    return float(right[known].mean()), float(has[known].mean())


def train_selector(train, scorer: str, size: int, margin: float, steps: int, seed: int) -> ExemplarAttention:
    torch.manual_seed(seed)
    att = ExemplarAttention(128, 16, 0.0, scorer)
    sel = att.selector_parameters()
    rest = [p for p in att.parameters() if all(p is not q for q in sel)]
    opt = torch.optim.Adam([{"params": sel, "lr": 0.01}, {"params": rest, "lr": 1e-3}])
    ex, _, _, faces = train
    null = faces.mean(0)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        b = torch.randint(0, len(ex), (32,), generator=g)
        f = exemplar_fields(ex, b)
        valid = f["cand_valid"].bool()
        logits, _ = att(f["query_ctx"], f["query_geo"], f["cand_ctx"], f["cand_face"], f["cand_geo"], valid)
        loss = F.cross_entropy(logits, selection_target(f["cand_face"], valid, null, faces[b], size, margin))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return att


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root")
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--config", default="configs/models/demo_plain_ssuper_exemplar.yaml")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    r = args.root
    paths = dict(panel_path=f"{r}/panels", annot_path=f"{r}/annotations", sequence_path=f"{r}/sequences.json",
                 faces_path=f"{r}/faces", ground_truth_path=f"{r}/ground_truth.csv")
    cfg = load_config(args.config, [f"data.{k}={v}" for k, v in paths.items()])
    t0 = time.perf_counter()
    train, val = split_data(cfg, r, "train"), split_data(cfg, r, "val")
    print(f"{len(train[0])} training and {len(val[0])} validation samples ({time.perf_counter() - t0:.0f} s)")
    right, has = right_share(nearest_context_index(val[0]), val[1], val[2])
    print(f"nearest-context rule: right character {right:.3f} (a right candidate exists for {has:.3f})")
    for v in args.variants:
        scorer, size, margin = (v.split(":") + ["4", "1"])[:3]
        att = train_selector(train, scorer, int(size), float(margin), args.steps, args.seed)
        with torch.no_grad():
            f = exemplar_fields(val[0], torch.arange(len(val[0])))
            logits, _ = att(f["query_ctx"], f["query_geo"], f["cand_ctx"], f["cand_face"], f["cand_geo"],
                            f["cand_valid"].bool())
        idx = logits.argmax(1).numpy() - 1
        print(f"{v}: right character {right_share(idx, val[1], val[2])[0]:.3f}, null picked {np.mean(idx < 0):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
