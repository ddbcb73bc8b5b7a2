"""Training and evaluating the seed's Siamese cartoon-face network (docs/original.md 9.2): the embedding that
:mod:`ssuper_lib.identity.label_free` scores identity with on comics without character labels.

* Face sets with identities (:class:`IdentityFaces`): the iCartoonFace recognition layout
  ``<root>/<identity>/*.jpg`` (:func:`load_identity_folder`), or the synthetic comics' ground-truth faces
  (:func:`synthetic_identity_faces`: square crops of the true boxes, identity = character), split by series.
* Pairs as the original's ``PairedFaceDataset``: a random anchor; with probability 0.5 a face of the same identity
  (label 0), else a face of another identity (label 1) (:func:`sample_pairs`, :class:`PairDataset`).
* :func:`train_siamese`: Adam 5e-4 on the contrastive loss (margin 1), seeded, with a ``tqdm`` bar and a run
  directory ``<out>/<NNNNN>-<name>/`` holding ``config.json``, ``metrics.jsonl`` and ``checkpoints/siamese.pt``
  (state_dict + settings, ``weights_only`` loadable).
* :func:`pair_accuracy` (the original's rule: "same" iff distance < 0.5; plus ROC AUC), :func:`nearest_neighbours`
  and the notebook's plots.

Differences from the original: pairs are drawn from a seeded generator per step (the original seeded ``random``
once in the dataset constructor and drew from it in the loader), the held-out pairs are fixed for a seed, and
training faces are augmented by a small random shift and brightness change (``augment=True``; the original
used none) because the synthetic training set is small.

CLI (``python -m ssuper_lib.identity.siamese_training`` is the same command)::

    python -m ssuper_lib.identity train --data data/synthetic --steps 300            # synthetic, split by series
    python -m ssuper_lib.identity train --faces icartoonface_rectrain --test-faces icartoonface_rectest
    python -m ssuper_lib.identity convert original_siamese.pth siamese_kit.pt       # the seed's whole-model pickle
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .classifier import random_shift
from ..config import resolve_device
from ..data.comics import natural_key
from ..models.siamese import (DIFFERENT, MARGIN, SAME, SAME_THRESHOLD, SiameseNetwork, contrastive_loss, embed_faces,
                             faces_to_unit, load_original_siamese, load_siamese, pair_distance, save_siamese)
from ..preprocess.sequences import square_face_box
from ..progress import progress_bar
from ..runs import make_run_dir

__all__ = [
    "IdentityFaces",
    "load_identity_folder",
    "synthetic_identity_faces",
    "split_by_series",
    "sample_pairs",
    "PairDataset",
    "SiameseRun",
    "train_siamese",
    "cached_siamese",
    "pair_accuracy",
    "nearest_neighbours",
    "plot_distance_histogram",
    "plot_nearest_neighbours",
    "main",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


# --------------------------------------------------------------------------------------------------
# Face sets with identities
# --------------------------------------------------------------------------------------------------


@dataclass
class IdentityFaces:
    """Faces with identities: ``faces`` (N, 3, S, S) uint8, ``identities`` and ``series`` (N,) string arrays."""

    faces: torch.Tensor
    identities: np.ndarray
    series: np.ndarray
    names: list[str] = field(default_factory=list)  # where each face came from (for plots and errors)

    def __post_init__(self) -> None:
        self.identities = np.asarray(self.identities, dtype=str)
        self.series = np.asarray(self.series, dtype=str)
        if not (len(self.faces) == len(self.identities) == len(self.series)):
            raise ValueError(f"IdentityFaces: {len(self.faces)} faces, {len(self.identities)} identities, {len(self.series)} series")

    def __len__(self) -> int:
        return len(self.faces)

    def subset(self, mask: np.ndarray) -> "IdentityFaces":
        idx = np.flatnonzero(np.asarray(mask))
        names = [self.names[i] for i in idx] if self.names else []
        return IdentityFaces(self.faces[torch.from_numpy(idx)], self.identities[idx], self.series[idx], names)

    def summary(self) -> str:
        return f"{len(self)} faces, {len(set(self.identities))} identities, {len(set(self.series))} series"


def _load_face(path: Path, size: int) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as im:
            img = im.convert("RGB").resize((size, size), Image.BILINEAR)
    except Exception as exc:  # noqa: BLE001
        raise OSError(f"cannot read face image {path}: {exc}") from exc
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def load_identity_folder(root: str | os.PathLike, size: int = 64, limit: int | None = None,
                         min_per_identity: int = 1) -> IdentityFaces:
    """The iCartoonFace recognition layout: ``<root>/<identity>/<face>.jpg`` (identity = folder name).

    ``series`` is the identity (each identity is its own group). ``limit``: at most this many faces (sorted
    order, as the original's ``num_training_samples``); identities with fewer than ``min_per_identity`` faces are
    dropped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"face folder {root} does not exist (expected <root>/<identity>/*.jpg)")
    paths = sorted(p for p in root.glob("*/*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if limit is not None:
        paths = paths[:limit]
    ids = [p.parent.name for p in paths]
    counts = {i: ids.count(i) for i in set(ids)}
    paths = [p for p, i in zip(paths, ids) if counts[i] >= min_per_identity]
    if not paths:
        raise ValueError(f"{root}: no face images in <identity>/ subfolders")
    faces = torch.stack([_load_face(p, size) for p in paths])
    ids = [p.parent.name for p in paths]
    return IdentityFaces(faces, ids, ids, [str(p.relative_to(root)) for p in paths])


def synthetic_identity_faces(data_root: str | os.PathLike, series: Sequence[str] | None = None, size: int = 64,
                             min_side: int = 24) -> IdentityFaces:
    """Ground-truth faces of a synthetic data set: square crops (as the kit's face crops) of the true boxes with
    max side >= ``min_side``, identity = the character, from ``series`` only (None: all)."""
    import pandas as pd
    from PIL import Image

    root = Path(data_root)
    gt_path = root / "ground_truth.csv"
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path} not found: identities come from a synthetic data set's ground truth")
    gt = pd.read_csv(gt_path, dtype={"panel": str, "character": str, "series": str})
    if series is not None:
        gt = gt[gt["series"].isin({str(s) for s in series})]
    gt = gt[np.maximum(gt["x2"] - gt["x1"], gt["y2"] - gt["y1"]) >= min_side]
    gt = gt[gt["character"].notna()]  # extras of the realism presets belong to no cast member: no identity
    faces, ids, ser, names = [], [], [], []
    for panel, g in gt.groupby("panel", sort=True):
        with Image.open(root / "panels" / panel) as im:
            img = im.convert("RGB")
        for row in g.itertuples(index=False):
            x1, y1, x2, y2 = square_face_box([row.x1, row.y1, row.x2, row.y2], img.width, img.height)
            crop = img.crop((x1, y1, x2, y2)).resize((size, size), Image.BILINEAR)
            faces.append(torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1))
            ids.append(row.character)
            ser.append(row.series)
            names.append(panel)
    if not faces:
        raise ValueError(f"{gt_path}: no faces with max side >= {min_side} in the chosen series")
    return IdentityFaces(torch.stack(faces), ids, ser, names)


def split_by_series(faces: IdentityFaces, test_fraction: float = 0.25) -> tuple[IdentityFaces, IdentityFaces]:
    """(train, test): the last ``test_fraction`` of the series in natural order are held out."""
    series = sorted(set(faces.series), key=natural_key)
    n_test = max(1, int(round(test_fraction * len(series))))
    test = set(series[len(series) - n_test:])
    mask = np.array([s in test for s in faces.series])
    return faces.subset(~mask), faces.subset(mask)


# --------------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------------


def sample_pairs(identities: np.ndarray, n: int, seed: int, p_same: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` pairs ``(i, j, label)``: a random anchor i; with probability ``p_same`` another face of its identity
    (label 0; the anchor itself when it is the only one), else a face of a random other identity (label 1)."""
    identities = np.asarray(identities)
    uniq, inv = np.unique(identities, return_inverse=True)
    if len(uniq) < 2:
        raise ValueError(f"pairs need at least 2 identities, got {len(uniq)}")
    members = [np.flatnonzero(inv == k) for k in range(len(uniq))]
    rng = np.random.default_rng([seed, 7919])
    a = rng.integers(0, len(identities), n)
    same = rng.random(n) < p_same
    b = np.empty(n, dtype=np.int64)
    for t in range(n):
        k = inv[a[t]]
        if same[t]:
            m = members[k]
            others = m[m != a[t]]
            b[t] = rng.choice(others) if len(others) else a[t]
        else:
            other = rng.integers(0, len(uniq) - 1)
            other += other >= k  # any identity but k
            b[t] = rng.choice(members[other])
    return a, b, np.where(same, SAME, DIFFERENT).astype(np.int64)


class PairDataset(Dataset):
    """Pairs of a face set as a Dataset: item ``(x1, x2, label)``, faces in [0, 1] (B, 3, S, S), label 0 = same."""

    def __init__(self, faces: IdentityFaces, n_pairs: int, seed: int = 0, image_dim: int = 64):
        self.faces = faces
        self.a, self.b, self.label = sample_pairs(faces.identities, n_pairs, seed)
        self.image_dim = image_dim

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int):
        x = faces_to_unit(self.faces.faces[[int(self.a[i]), int(self.b[i])]], self.image_dim)
        return x[0], x[1], torch.tensor(self.label[i])


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shift (:func:`random_shift`) and brightness x[0.9, 1.1]: (B, 3, H, W) in [0, 1] -> same."""
    out = random_shift(x, gen)
    return (out * (0.9 + 0.2 * torch.rand(x.shape[0], 1, 1, 1, generator=gen))).clamp(0, 1)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@dataclass
class SiameseRun:
    """What :func:`train_siamese` returns: the trained model (eval mode), its run directory and records."""

    model: SiameseNetwork
    run_dir: Path | None
    history: list[dict]
    val: dict | None  # pair_accuracy on the held-out faces (without the distance arrays)
    seconds: float


def _open_run_dir(out_dir: str | os.PathLike | None, name: str, settings: dict) -> Path | None:
    """A new run directory ``<out_dir>/<NNNNN>-<name>/`` holding ``config.json`` (None without ``out_dir``)."""
    if out_dir is None:
        return None
    run_dir = make_run_dir(out_dir, name)
    (run_dir / "config.json").write_text(json.dumps(settings, indent=2) + "\n")
    return run_dir


def train_siamese(
    train: IdentityFaces,
    val: IdentityFaces | None = None,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 5e-4,
    backbone: str = "resnet18",
    image_dim: int = 64,
    embed_dim: int = 5,
    augment: bool = True,
    seed: int = 0,
    device: str = "auto",
    out_dir: str | os.PathLike | None = "runs",
    name: str = "siamese",
    eval_every: int = 100,
    val_pairs: int = 1000,
    progress: bool = True,
) -> SiameseRun:
    """Train a :class:`SiameseNetwork` on pairs of ``train`` (contrastive loss, margin 1, Adam ``lr``).

    Every ``eval_every`` steps and at the end, the pair accuracy on ``val_pairs`` fixed pairs of ``val`` is
    recorded. With ``out_dir`` a run directory ``<out_dir>/<NNNNN>-<name>/`` receives ``config.json``,
    ``metrics.jsonl`` and ``checkpoints/siamese.pt`` (load it with :func:`ssuper_lib.models.siamese.load_siamese`).
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SiameseNetwork(image_dim, backbone, embed_dim).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    a, b, label = sample_pairs(train.identities, steps * batch_size, seed)
    x_all = faces_to_unit(train.faces, image_dim)  # (N, 3, d, d) in [0, 1], kept on the CPU
    settings = dict(steps=steps, batch_size=batch_size, lr=lr, backbone=backbone, image_dim=image_dim,
                    embed_dim=embed_dim, augment=augment, seed=seed, margin=MARGIN, same_threshold=SAME_THRESHOLD,
                    train=train.summary(), val=val.summary() if val is not None else None, device=str(dev))
    run_dir = _open_run_dir(out_dir, name, settings)
    history: list[dict] = []
    val_res = None

    def log(rec: dict) -> None:
        history.append(rec)
        if run_dir is not None:
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")

    bar = progress_bar(range(steps), desc="siamese (label-free identity)", unit="step", disable=not progress)
    model.train()
    for step in bar:
        sl = slice(step * batch_size, (step + 1) * batch_size)
        x1, x2 = x_all[torch.from_numpy(a[sl])], x_all[torch.from_numpy(b[sl])]
        if augment:
            x1, x2 = _augment(x1, gen), _augment(x2, gen)
        y = torch.from_numpy(label[sl]).to(dev)
        e = model(torch.cat([x1, x2]).to(dev))  # one pass over both branches: (2B, D)
        loss = contrastive_loss(e[: len(y)], e[len(y):], y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"Siamese training: non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            d = pair_distance(e[: len(y)], e[len(y):])
            acc = float(((d < SAME_THRESHOLD) == (y == SAME)).float().mean())
        log({"kind": "train", "step": step + 1, "loss": float(loss.detach()), "pair_acc": acc})
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", acc=f"{acc:.2f}", refresh=False)
        if val is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            res = pair_accuracy(model, val, n_pairs=val_pairs, seed=seed + 1)
            val_res = {k: v for k, v in res.items() if not isinstance(v, np.ndarray)}
            log({"kind": "eval", "step": step + 1, **val_res})
            model.train()
    model.eval()
    seconds = time.perf_counter() - t0
    if run_dir is not None:
        save_siamese(model, run_dir / "checkpoints" / "siamese.pt", step=steps, val=val_res, seconds=seconds)
    return SiameseRun(model, run_dir, history, val_res, seconds)


def cached_siamese(train: IdentityFaces, cache_dir: str | os.PathLike, steps: int = 150, seed: int = 0,
                   progress: bool = False, **kwargs) -> SiameseNetwork:
    """A Siamese model trained on ``train`` (no validation, no run directory), cached in ``cache_dir`` under a
    hash of the training faces, identities and settings; reloaded (``weights_only``) when present. For the
    evaluation, which needs one embedding for every model and baseline."""
    h = hashlib.sha256()
    h.update(train.faces.numpy().tobytes())
    h.update(repr((list(train.identities), steps, seed, sorted(kwargs.items()), "SiameseNetwork-v1")).encode())
    path = Path(cache_dir) / f"siamese_{h.hexdigest()[:20]}.pt"
    if path.is_file():
        return load_siamese(path)
    run = train_siamese(train, None, steps=steps, seed=seed, out_dir=None, progress=progress, **kwargs)
    save_siamese(run.model, path, step=steps, seconds=run.seconds)
    return run.model


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def _auc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (ROC AUC)."""
    from scipy.stats import rankdata

    if len(scores_pos) == 0 or len(scores_neg) == 0:
        return float("nan")
    r = rankdata(np.concatenate([scores_pos, scores_neg]))
    n1 = len(scores_pos)
    return float((r[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * len(scores_neg)))


@torch.no_grad()
def pair_accuracy(model: SiameseNetwork, faces: IdentityFaces, n_pairs: int = 1000, seed: int = 1,
                  threshold: float = SAME_THRESHOLD) -> dict:
    """Held-out pair accuracy: the original's rule (same iff distance < ``threshold``) on ``n_pairs`` fixed pairs.

    Returns ``accuracy``, ``auc`` (ROC AUC of -distance for "same"), ``best_accuracy`` / ``best_threshold`` (the
    threshold chosen on these pairs: optimistic, for reference), ``n_pairs``, ``threshold`` and the arrays
    ``distances`` and ``labels`` (0 = same).
    """
    i, j, label = sample_pairs(faces.identities, n_pairs, seed)
    emb = embed_faces(model, faces.faces)
    d = pair_distance(emb[torch.from_numpy(i)], emb[torch.from_numpy(j)]).numpy()
    same = label == SAME
    acc = float(((d < threshold) == same).mean())
    ths = np.unique(np.concatenate([d, [0.0]]))
    accs = [((d < t) == same).mean() for t in ths]
    k = int(np.argmax(accs))
    return {"accuracy": acc, "auc": _auc(-d[same], -d[~same]), "best_accuracy": float(accs[k]),
            "best_threshold": float(ths[k]), "n_pairs": int(n_pairs), "threshold": float(threshold),
            "distances": d, "labels": label}


@torch.no_grad()
def nearest_neighbours(model: SiameseNetwork, queries: IdentityFaces, gallery: IdentityFaces | None = None,
                       k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Indices (Q, k) into ``gallery`` (default: ``queries`` itself, excluding each face) and their distances."""
    q = embed_faces(model, queries.faces)
    g = q if gallery is None else embed_faces(model, gallery.faces)
    d = torch.cdist(q, g)
    if gallery is None:
        d.fill_diagonal_(float("inf"))
    dist, idx = torch.topk(d, min(k, d.shape[1]), dim=1, largest=False)
    return idx.numpy(), dist.numpy()


def plot_distance_histogram(res: dict, title: str = "held-out pairs") -> "plt.Figure":  # noqa: F821
    """Histogram of pair distances for same and different identities, with the 0.5 decision threshold."""
    import matplotlib.pyplot as plt

    d, same = res["distances"], res["labels"] == SAME
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.linspace(0, max(1.5, float(np.percentile(d, 99))), 40)
    ax.hist(d[same], bins=bins, alpha=0.6, label=f"same identity ({same.sum()})", color="tab:green")
    ax.hist(d[~same], bins=bins, alpha=0.6, label=f"different ({(~same).sum()})", color="tab:red")
    ax.axvline(res["threshold"], color="k", ls="--", lw=1, label=f"threshold {res['threshold']}")
    ax.set_xlabel("embedding distance")
    ax.set_ylabel("pairs")
    ax.set_title(f"{title}: accuracy {res['accuracy']:.1%}, AUC {res['auc']:.3f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_nearest_neighbours(queries: IdentityFaces, idx: np.ndarray, dist: np.ndarray,
                            gallery: IdentityFaces | None = None, rows: Sequence[int] = range(6)) -> "plt.Figure":  # noqa: F821
    """One row per query: the query face, then its nearest faces (green frame: same identity, red: another)."""
    import matplotlib.pyplot as plt

    gallery = queries if gallery is None else gallery
    rows = [r for r in rows if r < len(queries)]
    k = idx.shape[1]
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(1.3 * (k + 1), 1.4 * len(rows)), squeeze=False)
    for r, q in enumerate(rows):
        axes[r, 0].imshow(queries.faces[q].permute(1, 2, 0).numpy())
        axes[r, 0].set_title(f"query {queries.identities[q]}", fontsize=7)
        for c in range(k):
            g = int(idx[q, c])
            ax = axes[r, c + 1]
            ax.imshow(gallery.faces[g].permute(1, 2, 0).numpy())
            ok = gallery.identities[g] == queries.identities[q]
            for s in ax.spines.values():
                s.set_edgecolor("tab:green" if ok else "tab:red")
                s.set_linewidth(3)
            ax.set_title(f"d={dist[q, c]:.2f}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ssuper_lib.identity", description="Siamese cartoon-face model.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on synthetic ground-truth faces or an iCartoonFace-layout folder")
    t.add_argument("--data", help="synthetic data root (ground_truth.csv + panels/); split by series")
    t.add_argument("--test-fraction", type=float, default=0.25, help="synthetic: fraction of series held out")
    t.add_argument("--faces", help="training faces <root>/<identity>/*.jpg (iCartoonFace recognition layout)")
    t.add_argument("--test-faces", help="held-out faces in the same layout")
    t.add_argument("--limit", type=int, help="at most this many faces per folder")
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--backbone", choices=("resnet18", "basic"), default="resnet18")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--out", default="runs", help="parent of the run directory")
    t.add_argument("--name", default="siamese")
    c = sub.add_parser("convert", help="the original's whole-model pickle -> a kit checkpoint (weights_only loadable)")
    c.add_argument("original")
    c.add_argument("out")
    e = sub.add_parser("eval", help="held-out pair accuracy of a checkpoint (kit or original pickle)")
    e.add_argument("checkpoint")
    e.add_argument("--data")
    e.add_argument("--faces")
    e.add_argument("--test-fraction", type=float, default=0.25)
    e.add_argument("--pairs", type=int, default=2000)
    a = p.parse_args(argv)

    def faces_for(args) -> tuple[IdentityFaces, IdentityFaces]:
        if getattr(args, "data", None):
            return split_by_series(synthetic_identity_faces(args.data), args.test_fraction)
        if getattr(args, "faces", None):
            test_dir = getattr(args, "test_faces", None)
            faces = load_identity_folder(args.faces, limit=getattr(args, "limit", None))
            if test_dir:
                return faces, load_identity_folder(test_dir, limit=getattr(args, "limit", None))
            return split_by_series(faces, args.test_fraction)
        p.error("give --data (synthetic) or --faces (iCartoonFace layout)")

    if a.cmd == "train":
        train, test = faces_for(a)
        print(f"train: {train.summary()}; held out: {test.summary()}")
        run = train_siamese(train, test, steps=a.steps, batch_size=a.batch_size, lr=a.lr, backbone=a.backbone,
                            augment=not a.no_augment, seed=a.seed, device=a.device, out_dir=a.out, name=a.name)
        print(f"{run.run_dir}: held-out pair accuracy {run.val['accuracy']:.3f} (AUC {run.val['auc']:.3f}) "
              f"after {a.steps} steps in {run.seconds:.0f} s")
    elif a.cmd == "convert":
        model = load_original_siamese(a.original)
        save_siamese(model, a.out, source=str(a.original))
        print(f"{a.original} -> {a.out} ({model.config()})")
    else:
        path = Path(a.checkpoint)
        try:
            model = load_siamese(path)
        except ValueError:
            model = load_original_siamese(path)
        _, test = faces_for(a) if a.data else (None, load_identity_folder(a.faces))
        res = pair_accuracy(model, test, n_pairs=a.pairs)
        print(json.dumps({k: v for k, v in res.items() if not isinstance(v, np.ndarray)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
