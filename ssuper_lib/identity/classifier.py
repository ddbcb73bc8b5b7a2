"""Identity accuracy on synthetic data: a small CNN trained on true faces names the character of a face.

On the synthetic comics every face has a known character (``ground_truth.csv``). Characters are per series,
so a classifier trained on the training series cannot name test characters; :func:`cross_fit_identity`
therefore trains :class:`IdentityClassifier` on *true* test faces by 2-fold cross-fitting: the evaluated
samples are split in two seeded folds, and the classifier trained on the true faces of one fold names the
true and generated faces (e.g. from true and from shuffled context) of the other. No evaluated target face is
ever in the training set of the classifier that scores it; its accuracy on the held-out true faces is the
ceiling. Trained classifiers are cached by a hash of their training data and settings.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.pixels import to_unit
from ..storage import atomic_torch_save, safe_torch_load

__all__ = ["IdentityClassifier", "random_shift", "train_identity_classifier", "cross_fit_identity"]


class IdentityClassifier(nn.Module):
    """Small CNN naming the character of a 64x64 face: 3 stride-2 conv blocks, global pooling, Linear."""

    def __init__(self, n_classes: int, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),  # (B, w, 32, 32)
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),  # (B, 2w, 16, 16)
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),  # (B, 4w, 8, 8)
            nn.Conv2d(4 * w, 4 * w, 3, 1, 1), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),  # (B, 4w, 1, 1)
        )
        self.head = nn.Linear(4 * w, n_classes)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(faces).flatten(1))  # (B, n_classes) logits


def random_shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each image of (B, C, H, W) by up to ``max(1, H // 16)`` px in each axis (reflect padding; 4 px on
    64x64 faces), drawn from ``gen``: the translation part of both identity models' augmentation."""
    B, _, H, W = x.shape
    p = max(1, H // 16)
    pad = F.pad(x, (p, p, p, p), mode="reflect")
    dy = torch.randint(0, 2 * p + 1, (B,), generator=gen)
    dx = torch.randint(0, 2 * p + 1, (B,), generator=gen)
    return torch.stack([pad[i, :, dy[i] : dy[i] + H, dx[i] : dx[i] + W] for i in range(B)])


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation (:func:`random_shift`) and brightness x[0.9, 1.1]: (B, 3, 64, 64) in [-1, 1] -> same."""
    B = x.shape[0]
    out = random_shift(x, gen)
    scale = 1.0 + 0.2 * (torch.rand(B, 1, 1, 1, generator=gen) - 0.5)
    return (out * scale).clamp(-1, 1)


def train_identity_classifier(faces_u8: torch.Tensor, labels: torch.Tensor, n_classes: int, epochs: int = 30,
                              seed: int = 0, batch_size: int = 64) -> IdentityClassifier:
    """Train :class:`IdentityClassifier` on uint8 faces (N, 3, 64, 64) with integer labels (N,). CPU, seeded."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = IdentityClassifier(n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps = max(1, epochs * math.ceil(len(faces_u8) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    x_all = to_unit(faces_u8)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(net(_augment(x_all[idx], gen)), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def _predict(net: IdentityClassifier, faces_u8: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    preds = [net(to_unit(faces_u8[s : s + batch_size])).argmax(1) for s in range(0, len(faces_u8), batch_size)]
    return torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)


def cross_fit_identity(
    true_faces_u8: torch.Tensor,
    characters: Sequence[str | None],
    to_classify: dict[str, torch.Tensor],
    seed: int = 0,
    epochs: int = 30,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """2-fold cross-fitted identity predictions (see the module docstring).

    ``true_faces_u8`` (N, 3, 64, 64) uint8 true faces with their ``characters`` (None = unknown, never
    used for training). ``to_classify``: named uint8 face sets aligned with the samples (e.g. generated
    faces). Returns {"fold": (N,), "pred_true": (N,) str|None, "pred_<name>": ...,
    "n_classes", "n_train": [n fold 0 training, n fold 1 training], "cached": [bool, bool]}.
    Classifiers are cached in ``cache_dir`` under a hash of their training faces, labels and settings.
    """
    n = len(true_faces_u8)
    characters = [c if isinstance(c, str) else None for c in characters]  # NaN / None = unknown
    known = np.array([c is not None for c in characters])
    classes = sorted({c for c in characters if c is not None})
    cls_index = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng([seed, 104729])
    fold = np.zeros(n, dtype=np.int64)
    fold[rng.permutation(n)[: n // 2]] = 1
    out: dict[str, Any] = {"fold": fold, "n_classes": len(classes), "n_train": [], "cached": []}
    names = ["true"] + list(to_classify)
    preds = {k: np.array([None] * n, dtype=object) for k in names}
    for k in (0, 1):
        train_idx = np.flatnonzero((fold != k) & known)
        test_idx = np.flatnonzero(fold == k)
        out["n_train"].append(int(len(train_idx)))
        if len(train_idx) < 2 or len(test_idx) == 0 or len(classes) < 2:
            out["cached"].append(False)
            continue
        x = true_faces_u8[train_idx].contiguous()
        y = torch.tensor([cls_index[characters[i]] for i in train_idx], dtype=torch.int64)
        h = hashlib.sha256()
        h.update(x.numpy().tobytes())
        h.update(repr((y.tolist(), classes, epochs, seed + k, "IdentityClassifier-v1")).encode())
        path = Path(cache_dir) / f"identity_{h.hexdigest()[:20]}.pt" if cache_dir is not None else None
        net = IdentityClassifier(len(classes))
        if path is not None and path.is_file():
            net.load_state_dict(safe_torch_load(path, hint="delete this cache file: the classifier is trained again"))
            net.eval()
            out["cached"].append(True)
        else:
            net = train_identity_classifier(x, y, len(classes), epochs=epochs, seed=seed + k)
            out["cached"].append(False)
            if path is not None:
                atomic_torch_save(net.state_dict(), path)
        for name in names:
            faces = true_faces_u8 if name == "true" else to_classify[name]
            p = _predict(net, faces[test_idx].contiguous())
            preds[name][test_idx] = [classes[j] for j in p]
    for name in names:
        out[f"pred_{name}"] = preds[name]
    return out
