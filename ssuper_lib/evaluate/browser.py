"""Looking at single test sequences of a run (notebook widget): panels, true face, generated face, pasted face."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import metrics as M
from .generate import generate_faces
from .run import model_label
from ..config import resolve_device
from ..data.datasets import PanelSequenceDataset
from ..models.discriminator import paste_faces
from ..preprocess.exemplars import exemplar_fields, load_or_build_exemplars
from ..runs import load_run

__all__ = ["RunBrowser"]


@dataclass
class RunBrowser:
    """A loaded run and its test split, for looking at single sequences: panels, true face, generated face,
    face pasted into the panel. ``view(i)`` returns the images, ``figure(i)`` draws them."""

    run_dir: Path
    split: str = "test"
    device: str | None = None
    cfg: Any = field(init=False)
    model: Any = field(init=False)
    dataset: Any = field(init=False)

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self.cfg, self.model = load_run(self.run_dir, device=str(resolve_device(self.device)))
        self.model.eval()
        self.dataset = PanelSequenceDataset.from_config(self.cfg.data, split=self.split, return_gt_panel=True)
        self.exemplars = None
        if self.cfg.model.variant == "ssuper_exemplar":
            self.exemplars = load_or_build_exemplars(self.cfg.data, self.dataset.samples, self.cfg.model.exemplar_k,
                                                     self.cfg.model.exemplar_ctx_size)

    def __len__(self) -> int:
        return len(self.dataset)

    @torch.no_grad()
    def view(self, index: int) -> dict:
        item = self.dataset[index]
        dev = next(self.model.parameters()).device
        panels = item["panels"][None].to(dev)
        extra = None
        if self.exemplars is not None:
            extra = {k: v.to(dev) for k, v in exemplar_fields(self.exemplars, torch.tensor([index])).items()}
        out = generate_faces(self.model, panels, item["mask"][None].to(dev), item["mask_coords"][None].to(dev), extra=extra,
                             masked_pos=self.cfg.data.masked_index)
        g = out["face"].float().cpu()
        pasted = paste_faces(item["gt_panel"][None], g, item["mask_coords"][None])[0]
        view = {"panels": item["panels"], "gt_panel": item["gt_panel"], "face": item["face"], "generated": g[0],
                "pasted": pasted, "psnr": float(M.psnr_per_image(g, item["face"][None])[0]),
                "series": item["series"], "index": index}
        if extra is not None:  # the candidates and their attention weights (slot 0 = the null candidate)
            view.update(cand_face=extra["cand_face"][0].cpu(), cand_valid=extra["cand_valid"][0].cpu(),
                        attn=out["attn"][0].float().cpu())
        return view

    def figure(self, index: int, title: str | None = None):
        import matplotlib.pyplot as plt

        v = self.view(index)
        img = lambda t: ((t.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()  # noqa: E731
        S = v["panels"].shape[0]
        if "attn" in v:  # second row: the context faces with their attention weights
            C = v["cand_face"].shape[0]
            fig = plt.figure(figsize=(2.0 * (S + 3), 4.2))
            top = fig.subfigures(2, 1, height_ratios=[2.4, 1.6])
            axes = top[0].subplots(1, S + 3, gridspec_kw={"width_ratios": [1] * S + [0.6, 0.6, 1]})
            cax = top[1].subplots(1, C + 1)
            pick = int(v["attn"].argmax()) - 1
            for c in range(C):
                cax[c].axis("off")
                if bool(v["cand_valid"][c]):
                    cax[c].imshow(img(v["cand_face"][c]))
                    cax[c].set_title(("chosen " if c == pick else "") + f"{float(v['attn'][c + 1]):.2f}", fontsize=8,
                                     color="red" if c == pick else "black")
            cax[C].axis("off")
            cax[C].set_title(f"null {float(v['attn'][0]):.2f}", fontsize=8, color="red" if pick < 0 else "black")
        else:
            fig, axes = plt.subplots(1, S + 3, figsize=(2.0 * (S + 3), 2.4),
                                     gridspec_kw={"width_ratios": [1] * S + [0.6, 0.6, 1]})
        for j in range(S):
            axes[j].imshow(img(v["panels"][j]))
            axes[j].set_title(f"panel {j + 1}" + (" (masked)" if j == self.cfg.data.masked_index % S else ""), fontsize=8)
        axes[S].imshow(img(v["face"]))
        axes[S].set_title("true face", fontsize=8)
        axes[S + 1].imshow(img(v["generated"]))
        axes[S + 1].set_title(f"generated\n{v['psnr']:.1f} dB", fontsize=8)
        axes[S + 2].imshow(img(v["pasted"]))
        axes[S + 2].set_title("pasted", fontsize=8)
        for a in axes:
            a.axis("off")
        fig.suptitle(title or f"{model_label(self.cfg)} ({self.run_dir.name}) - test sample {index}, series {v['series']}", fontsize=9)
        if "attn" not in v:
            fig.tight_layout()
        return fig
