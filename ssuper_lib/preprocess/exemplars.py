"""Context exemplars: the faces detected in a sample's context panels, with their surroundings.

Beyond the original (docs/design.md 7b). The paper's claim is that the panels around a masked face tell which
character it is. The most direct carrier of that information is the character's own face in an earlier
panel. This module gathers, for every sample of a sequence file:

* **candidates**: every face the detector found in the context panels (p1, p2) that passes the same
  filters as the preprocessing (confidence, NMS, minimum side), up to ``k_per_panel`` per panel (highest
  confidence first). They come from the annotation files: the sequence JSON keeps one box per panel.
  Each candidate is a ``face_size`` square face crop (the same square rule as the targets), its
  *surroundings* (the region around and below the face: hair, neck, clothes; the face itself greyed out)
  and its position in the panel;
* the **query**: the same surroundings crop and position for the masked face of the last panel. The face
  is greyed out there too, so query and candidates show the same kind of evidence.

Crops are computed once per (panel, box) and cached beside the sequence file under a hash of the sequence
file, the annotation files and the settings (``<data root>/exemplar_cache/``). The baselines of
:mod:`ssuper_lib.evaluate.baselines` and the Exemplar-SSuperGAN variant (:mod:`ssuper_lib.models.exemplar`)
read them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .sequences import square_face_box
from ..config import DataConfig, resolve_path
from ..data.boxes import box_iou
from ..data.comics import read_annotations
from ..data.pixels import to_unit
from ..detect import filter_panel_boxes
from ..storage import atomic_torch_save

__all__ = [
    "ExemplarSet",
    "CONTEXT_REGION",
    "surroundings_box",
    "build_exemplars",
    "load_or_build_exemplars",
    "ExemplarDataset",
    "exemplar_fields",
    "candidate_characters",
]

# Surroundings of a face square of side s with top-left (x, y): [x - 0.75 s, y - 0.5 s, x + 1.75 s, y + 2.5 s]:
# 2.5 s wide and 3 s high, so it holds the hair above, the neck, shoulders and clothes below.
CONTEXT_REGION = (0.75, 0.5, 0.75, 1.5)  # left, top, right, bottom margins in units of the face side
CACHE_VERSION = "exemplars-v1"


@dataclass
class ExemplarSet:
    """Candidates and queries of the samples of one sequence file (N samples, C = k_per_panel * (S - 1)).

    All crops are uint8; geometry is ``(cx / W, cy / H, side / min(W, H))`` of the face square.
    """

    cand_face: torch.Tensor  # (N, C, 3, F, F) uint8 face squares
    cand_ctx: torch.Tensor  # (N, C, 3, s, s) uint8 surroundings, face greyed out
    cand_geo: torch.Tensor  # (N, C, 3) float32
    cand_valid: torch.Tensor  # (N, C) bool
    cand_box: torch.Tensor  # (N, C, 4) int32 face squares in original panel pixels
    cand_panel: torch.Tensor  # (N, C) int8 index of the context panel in the window (-1 = empty slot)
    query_ctx: torch.Tensor  # (N, 3, s, s) uint8 surroundings of the masked face, face greyed out
    query_geo: torch.Tensor  # (N, 3) float32
    keys: list[str]  # sample keys "<panel>|<x1 y1 x2 y2>" of the target, aligned with N
    k_per_panel: int
    key: str = ""  # cache key
    seconds: float = 0.0
    computed: bool = True

    def __len__(self) -> int:
        return int(self.cand_valid.shape[0])

    def subset(self, index: Sequence[int] | np.ndarray) -> "ExemplarSet":
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return ExemplarSet(
            self.cand_face[idx], self.cand_ctx[idx], self.cand_geo[idx], self.cand_valid[idx], self.cand_box[idx],
            self.cand_panel[idx], self.query_ctx[idx], self.query_geo[idx], [self.keys[i] for i in idx.tolist()],
            self.k_per_panel, self.key, self.seconds, self.computed,
        )


def surroundings_box(face: Sequence[float]) -> tuple[float, float, float, float]:
    """The surroundings region (x1, y1, x2, y2) of a face square (may extend past the panel)."""
    x1, y1, x2, y2 = (float(v) for v in face)
    s = max(x2 - x1, y2 - y1, 1.0)
    left, top, right, bottom = CONTEXT_REGION
    return x1 - left * s, y1 - top * s, x2 + right * s, y2 + bottom * s


def _crop_resized(im, box: Sequence[float], size: int) -> np.ndarray:
    """Crop ``box`` (may stick out: black padding, as PIL's crop) and resize to (size, size): (size, size, 3) uint8."""
    from PIL import Image

    W, H = im.size
    x1, y1, x2, y2 = box
    if x1 >= 0 and y1 >= 0 and x2 <= W and y2 <= H:
        out = im.resize((size, size), Image.BILINEAR, box=(x1, y1, x2, y2))
    else:
        out = im.crop(tuple(int(round(v)) for v in box)).resize((size, size), Image.BILINEAR)
    return np.array(out, dtype=np.uint8)  # a writable copy


def _surroundings(im, face: Sequence[float], size: int) -> np.ndarray:
    """Surroundings crop of ``face`` with the face square greyed out (the masked face of a query is hidden)."""
    region = surroundings_box(face)
    arr = _crop_resized(im, region, size).copy()
    rx1, ry1, rx2, ry2 = region
    kx, ky = size / (rx2 - rx1), size / (ry2 - ry1)
    fx1, fy1 = int(np.floor((face[0] - rx1) * kx)), int(np.floor((face[1] - ry1) * ky))
    fx2, fy2 = int(np.ceil((face[2] - rx1) * kx)), int(np.ceil((face[3] - ry1) * ky))
    arr[max(fy1, 0):max(fy2, 0), max(fx1, 0):max(fx2, 0)] = 128
    return arr


def _geometry(face: Sequence[float], W: int, H: int) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in face)
    return [(x1 + x2) / 2 / W, (y1 + y2) / 2 / H, max(x2 - x1, y2 - y1) / max(min(W, H), 1)]


def _sample_key(panel: str, face: Sequence[int]) -> str:
    return f"{panel}|{' '.join(str(int(v)) for v in face)}"


def build_exemplars(data_cfg: DataConfig, samples: Sequence, k_per_panel: int = 3, ctx_size: int = 48,
                    progress: bool = False) -> ExemplarSet:
    """Candidates and queries for ``samples`` (:class:`~ssuper_lib.data.comics.SequenceSample`) of ``data_cfg``."""
    from PIL import Image
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    F = int(data_cfg.face_size)
    S = len(samples[0].panels) if samples else int(data_cfg.window_size)
    C = k_per_panel * (S - 1)
    N = len(samples)
    panel_root = resolve_path(data_cfg.panel_path)
    series = sorted({s.series for s in samples})
    ann = read_annotations(resolve_path(data_cfg.annot_path), series)

    # every (panel, face square) whose crops are needed, grouped by panel so that each image is decoded once
    need: dict[str, dict[tuple, None]] = {}
    cand_boxes: list[list[tuple[str, tuple, int]]] = []  # per sample: (panel, square, panel index)
    kept_cache: dict[str, list] = {}
    for s in samples:
        cands = []
        for j, panel in enumerate(s.panels[:-1]):
            if panel not in kept_cache:
                kept, _ = filter_panel_boxes(ann.boxes.get(panel, []), data_cfg.conf_thold, data_cfg.nms_iou,
                                             data_cfg.face_thold)
                kept_cache[panel] = sorted(kept, key=lambda b: (-b.conf, b.x1, b.y1))
            for b in kept_cache[panel][:k_per_panel]:
                cands.append((panel, b, j))
        cand_boxes.append(cands)
        need.setdefault(s.panels[-1], {})[("query", tuple(int(v) for v in s.faces[-1]))] = None
        for panel, b, _ in cands:
            need.setdefault(panel, {})[("box", (b.x1, b.y1, b.x2, b.y2))] = None

    crops: dict[tuple[str, str, tuple], Any] = {}
    for panel in tqdm(sorted(need), desc="context exemplars", unit="panel", disable=not progress):
        path = panel_root / panel
        try:
            with Image.open(path) as im0:
                im = im0.convert("RGB")
        except Exception as exc:  # noqa: BLE001
            raise OSError(f"context exemplars: cannot read panel {path}: {exc}") from exc
        W, H = im.size
        for kind, box in need[panel]:
            sq = list(box) if kind == "query" else square_face_box(list(box), W, H, data_cfg.add_face_margin)
            face = _crop_resized(im, sq, F) if kind == "box" else None
            crops[(panel, kind, box)] = (face, _surroundings(im, sq, ctx_size), _geometry(sq, W, H), sq)

    cand_face = torch.zeros(N, C, 3, F, F, dtype=torch.uint8)
    cand_ctx = torch.zeros(N, C, 3, ctx_size, ctx_size, dtype=torch.uint8)
    cand_geo = torch.zeros(N, C, 3)
    cand_valid = torch.zeros(N, C, dtype=torch.bool)
    cand_box = torch.zeros(N, C, 4, dtype=torch.int32)
    cand_panel = torch.full((N, C), -1, dtype=torch.int8)
    query_ctx = torch.zeros(N, 3, ctx_size, ctx_size, dtype=torch.uint8)
    query_geo = torch.zeros(N, 3)
    keys = []
    for i, (s, cands) in enumerate(zip(samples, cand_boxes)):
        q = tuple(int(v) for v in s.faces[-1])
        _, ctx, geo, _ = crops[(s.panels[-1], "query", q)]
        query_ctx[i] = torch.from_numpy(ctx).permute(2, 0, 1)
        query_geo[i] = torch.tensor(geo)
        keys.append(_sample_key(s.panels[-1], q))
        for c, (panel, b, j) in enumerate(cands[:C]):
            face, ctx, geo, sq = crops[(panel, "box", (b.x1, b.y1, b.x2, b.y2))]
            cand_face[i, c] = torch.from_numpy(face).permute(2, 0, 1)
            cand_ctx[i, c] = torch.from_numpy(ctx).permute(2, 0, 1)
            cand_geo[i, c] = torch.tensor(geo)
            cand_valid[i, c] = True
            cand_box[i, c] = torch.tensor([int(v) for v in sq], dtype=torch.int32)
            cand_panel[i, c] = j
    return ExemplarSet(cand_face, cand_ctx, cand_geo, cand_valid, cand_box, cand_panel, query_ctx, query_geo, keys,
                       k_per_panel, seconds=time.perf_counter() - t0)


def _cache_key(data_cfg: DataConfig, samples: Sequence, k_per_panel: int, ctx_size: int) -> str:
    h = hashlib.sha256()
    facts = {"v": CACHE_VERSION, "k": k_per_panel, "ctx": ctx_size, "region": CONTEXT_REGION,
             "conf": data_cfg.conf_thold, "nms": data_cfg.nms_iou, "min": data_cfg.face_thold,
             "margin": data_cfg.add_face_margin, "F": data_cfg.face_size}
    h.update(json.dumps(facts, sort_keys=True).encode())
    for s in samples:
        h.update(json.dumps(s.to_original()).encode())
    annot = resolve_path(data_cfg.annot_path)
    for series in sorted({s.series for s in samples}):
        f = annot / f"{series}.txt"
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:20]


def load_or_build_exemplars(data_cfg: DataConfig, samples: Sequence, k_per_panel: int = 3, ctx_size: int = 48,
                            progress: bool = False, write: bool = True) -> ExemplarSet:
    """:func:`build_exemplars`, cached in ``<sequence folder>/exemplar_cache/<key>.pt`` (atomic write)."""
    key = _cache_key(data_cfg, samples, k_per_panel, ctx_size)
    folder = resolve_path(data_cfg.sequence_path).parent / "exemplar_cache"
    path = folder / f"exemplars_{key}.pt"
    t0 = time.perf_counter()
    if path.is_file():
        d = torch.load(path, map_location="cpu", weights_only=True)
        return ExemplarSet(**{k: d[k] for k in ("cand_face", "cand_ctx", "cand_geo", "cand_valid", "cand_box",
                                                  "cand_panel", "query_ctx", "query_geo")},
                           keys=list(d["keys"]), k_per_panel=int(d["k_per_panel"]), key=key,
                           seconds=time.perf_counter() - t0, computed=False)
    ex = build_exemplars(data_cfg, samples, k_per_panel, ctx_size, progress)
    ex.key = key
    if write:
        atomic_torch_save({"cand_face": ex.cand_face, "cand_ctx": ex.cand_ctx, "cand_geo": ex.cand_geo,
                           "cand_valid": ex.cand_valid, "cand_box": ex.cand_box, "cand_panel": ex.cand_panel,
                           "query_ctx": ex.query_ctx, "query_geo": ex.query_geo, "keys": ex.keys,
                           "k_per_panel": ex.k_per_panel}, path)
    return ex


class ExemplarDataset(Dataset):
    """A dataset whose items carry an ``index`` into ``exemplars``, extended with the exemplar fields:
    ``cand_face`` (C, 3, F, F), ``cand_ctx`` (C, 3, s, s) float in [-1, 1], ``cand_geo`` (C, 3),
    ``cand_valid`` (C,), ``query_ctx`` (3, s, s), ``query_geo`` (3,)."""

    def __init__(self, base: Dataset, exemplars: ExemplarSet):
        if len(base) != len(exemplars):
            raise ValueError(f"exemplars cover {len(exemplars)} samples, the dataset has {len(base)}")
        self.base, self.ex = base, exemplars

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        item.update(exemplar_fields(self.ex, i))
        return item


def exemplar_fields(ex: ExemplarSet, i: int | torch.Tensor) -> dict[str, torch.Tensor]:
    """The float exemplar fields of sample(s) ``i`` (an int, or an index tensor for a batch)."""
    return {"cand_face": to_unit(ex.cand_face[i]), "cand_ctx": to_unit(ex.cand_ctx[i]), "cand_geo": ex.cand_geo[i],
            "cand_valid": ex.cand_valid[i], "query_ctx": to_unit(ex.query_ctx[i]), "query_geo": ex.query_geo[i]}


def candidate_characters(ex: ExemplarSet, samples: Sequence, gt_csv: str | Path, iou_thold: float = 0.3) -> np.ndarray:
    """(N, C) object array: the ground-truth character of each candidate (None: empty slot or no true box with
    IoU >= ``iou_thold``). Synthetic data only; for the oracle baseline and the attention diagnostics."""
    import pandas as pd

    df = pd.read_csv(gt_csv, dtype={"panel": str, "character": str})
    by_panel = {p: (g[["x1", "y1", "x2", "y2"]].to_numpy(np.float64),
                    [c if isinstance(c, str) and c else None for c in g["character"]])  # "" (an extra): None
                for p, g in df.groupby("panel", sort=False)}
    N, C = ex.cand_valid.shape
    out = np.full((N, C), None, dtype=object)
    for i, s in enumerate(samples):
        for c in range(C):
            if not bool(ex.cand_valid[i, c]):
                continue
            panel = s.panels[int(ex.cand_panel[i, c])]
            boxes, chars = by_panel.get(panel, (np.zeros((0, 4)), []))
            if not len(chars):
                continue
            ious = box_iou(ex.cand_box[i, c].numpy()[None].astype(np.float64), boxes)[0]
            j = int(np.argmax(ious))
            if ious[j] >= iou_thold:
                out[i, c] = chars[j]
    return out
