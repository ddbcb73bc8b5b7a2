"""Parameter tables and tensor shapes of the model variants (notebook 03, docs/results.md)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Iterable

import torch
import torch.nn as nn

from ..config import ModelConfig, load_config
from .build import build_model
from .discriminator import paste_faces
from .sequence import reparameterize
from .ssuper import SSuperModel

__all__ = ["PART_NAMES", "count_parameters", "parameter_table", "parameter_summary", "shape_trace"]

PART_NAMES = ("backbone", "embed_head", "seq_encoder", "generator", "local_disc", "global_disc", "refiner", "local_critic",
              "global_critic", "exemplar_attention", "exemplar_generator")


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters of a module (0 for None)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_table(cfg: ModelConfig, panel_size: Iterable[int] = (300, 300), name: str | None = None):
    """pandas DataFrame with one row per part (and a ``total`` row): ``part``, ``module``, ``params``, ``trainable``.

    The model is built on the ``meta`` device with ``pretrained=False``: no weights are read or
    downloaded and no memory is allocated, so counting even the 150M-parameter ConvLSTM model is instant.
    """
    import pandas as pd

    cfg_np = dataclasses.replace(cfg, pretrained=False)
    ctx = torch.device("meta") if hasattr(torch, "device") else contextlib.nullcontext()
    with ctx:
        model = build_model(cfg_np, panel_size)
    rows = []
    for part, module in model.parts().items():
        n = count_parameters(module)
        rows.append({"part": part, "module": type(module).__name__, "params": n,
                     "trainable": count_parameters(module, trainable_only=True)})
    rows.append({"part": "total", "module": type(model).__name__, "params": sum(r["params"] for r in rows),
                 "trainable": sum(r["trainable"] for r in rows)})
    df = pd.DataFrame(rows)
    if name is not None:
        df.insert(0, "model", name)
    return df


def parameter_summary(config_paths: Iterable, overrides: list[str] | None = None):
    """One row per config file: name, variant, encoder, sizes, panel size, parameters per part and total.

    Each model is counted at its configured ``data.panel_size`` without weights (see :func:`parameter_table`).
    """
    import pandas as pd

    rows = []
    for path in config_paths:
        cfg = load_config(path, overrides)
        table = parameter_table(cfg.model, cfg.data.panel_size).set_index("part")["params"]
        row = {
            "model": Path(path).stem,
            "variant": cfg.model.variant,
            "encoder": cfg.model.seq_encoder,
            "latent": cfg.model.latent_dim,
            "lstm_hidden": cfg.model.lstm_hidden if cfg.model.seq_encoder != "plain" else None,
            "embed": cfg.model.embed_dim,
            "panel": "x".join(str(v) for v in cfg.data.panel_size),
        }
        row.update({part: int(table.get(part, 0)) for part in PART_NAMES})
        row["total"] = int(table["total"])
        rows.append(row)
    df = pd.DataFrame(rows)
    df["lstm_hidden"] = df["lstm_hidden"].astype("Int64")  # empty for plain encoders
    return df


@torch.no_grad()
def shape_trace(model: SSuperModel, panels: torch.Tensor, mask_coords: torch.Tensor | None = None):
    """Tensor shapes through every part of ``model`` for one batch (eval mode, no gradient): DataFrame(stage, shape).

    Without ``mask_coords`` a centred box of half the panel side is used for the paste / refinement stages.
    """
    import pandas as pd

    was_training = model.training
    model.eval()
    B, S, _, H, W = panels.shape
    if mask_coords is None:
        mask_coords = torch.tensor([[H // 4, H // 4 + H // 2, W // 4, W // 4 + W // 2]] * B)
    rows = [("panels (B, S, 3, H, W)", panels.shape)]
    feats = model.backbone_features(panels)
    rows.append(("backbone features", feats.shape))
    emb = model.backbone.forward_head(feats)
    rows.append(("panel embeddings (head)", emb.shape))
    mu, log_sigma = model.seq_encoder(emb)
    rows += [("mu", mu.shape), ("log_sigma", log_sigma.shape)]
    z = reparameterize(mu, log_sigma)
    rows.append(("z", z.shape))
    face = model.generate(z)
    rows.append((f"face ({type(model.generator).__name__})", face.shape))
    if model.local_disc is not None:
        rows.append(("local_disc logits", model.local_disc(face).shape))
    if model.global_disc is not None:
        composite = paste_faces(panels[:, -1], face, mask_coords)
        rows += [("panel with pasted face", composite.shape), ("global_disc logits", model.global_disc(composite).shape)]
    if model.refiner is not None:
        mask = torch.zeros(B, 1, H, W, device=panels.device)
        for i, (y1, y2, x1, x2) in enumerate(mask_coords.tolist()):
            mask[i, :, y1:y2, x1:x2] = 1.0
        ref = model.refine(panels, face, mask, mask_coords)
        rows += [("fine_panel", ref["fine_panel"].shape), ("fine_face", ref["fine_face"].shape),
                 ("local_critic scores", model.local_critic(ref["fine_face"]).shape),
                 ("global_critic scores", model.global_critic(ref["fine_panel"]).shape)]
    model.train(was_training)
    return pd.DataFrame([(stage, tuple(shape)) for stage, shape in rows], columns=["stage", "shape"])
