"""PyTorch datasets: panel sequences with a masked face (the paper's input), face crops, series split.

:class:`PanelSequenceDataset` turns a :class:`~ssuper_lib.data.comics.SequenceSample` into what every model
of the kit consumes: three panels (3, 3, H, W) in [-1, 1] whose last panel has the target face box filled
with ``mask_val``, the true face (3, 64, 64), the binary mask and the mask coordinates (docs/original.md 3.2, 3.3).

Differences from the original ``GoldenPanelsDataset`` (docs/original.md 3.2 and 8, item 15):

* the mask is filled AFTER resizing, in resized coordinates (floor/ceil of the mapped face box, clamped to
  the panel), so its edges are crisp and the filled region is exactly the ``mask`` / ``mask_coords`` region
  (the original masked before a bilinear resize, which blurred the hole edges);
* any panel size, including non-square (H, W); the face is resized with antialiasing (PIL);
* decoding is fast: JPEGs decode with libjpeg-turbo straight into uint8 tensors, only the rectangle the crop
  needs where the kit's C helpers are built (``_native.c``), else whole panels (simplejpeg, else torchvision;
  the same pixels every way), or with PIL's ``Image.draft`` downscaling by 4/8 when the panel is reduced 4x
  or more; crop + resize is torch's uint8 antialiased bilinear kernel (PIL's filter, ~5-10x faster); one
  uint8 -> float pass per panel (in C where built). About 3.5x the original's samples/s on the same files
  (``benchmarks/bench_vs_original.py --parts loader``);
* a missing or unreadable panel raises :class:`PanelReadError` naming the file and the sample index;
* colour augmentation is off by default (as in every original run) and seeded by (seed, epoch, index) when
  on (the training loop calls :meth:`PanelSequenceDataset.set_epoch`), so each epoch draws new jitter;
* the split is by series (``split_samples``): the original rule ``series <= int(max_series * ratio)`` with
  ``max_series`` = the largest series present unless configured (the original hard-coded 3958), or the first
  ``round(ratio * n)`` series in natural order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig, resolve_path
from .boxes import box_iou
from .comics import IMAGE_EXTENSIONS, SequenceSample, list_series, natural_key, read_json, read_sequences
from .decode import _unit_converter, decode_jpeg_panel
from .pixels import to_unit

__all__ = [
    "PanelReadError",
    "PanelSequenceDataset",
    "FaceCropDataset",
    "split_series",
    "split_samples",
    "read_split",
    "holdout_val_series",
    "match_ground_truth",
]


class PanelReadError(OSError):
    """A panel listed in a sequence file is missing or cannot be decoded."""


# --------------------------------------------------------------------------------------------------
# Series split
# --------------------------------------------------------------------------------------------------


def split_series(series: Sequence[str], data_cfg: DataConfig) -> tuple[list[str], list[str]]:
    """Train and test series (natural order) under ``data_cfg.split`` and ``data_cfg.train_test_ratio``.

    * ``series_threshold`` (original rule): train iff int(series) <= int(max_series * ratio); ``max_series``
      defaults to the largest series number present (the original hard-coded 3958 for COMICS).
    * ``series_fraction``: the first round(ratio * n) series in natural order are train.
    """
    series = sorted({str(s) for s in series}, key=natural_key)
    ratio = data_cfg.train_test_ratio
    if data_cfg.split == "series_fraction":
        n_train = int(round(ratio * len(series)))
        return series[:n_train], series[n_train:]
    if data_cfg.split != "series_threshold":
        raise ValueError(f"data.split: expected series_threshold or series_fraction, got {data_cfg.split!r}")
    bad = [s for s in series if not s.isdigit()]
    if bad:
        raise ValueError(f"data.split=series_threshold needs numeric series names, got {bad[0]!r}; use data.split=series_fraction")
    if not series:
        return [], []
    max_series = data_cfg.max_series if data_cfg.max_series is not None else max(int(s) for s in series)
    limit = int(max_series * ratio)
    return [s for s in series if int(s) <= limit], [s for s in series if int(s) > limit]


def split_samples(
    samples: Sequence[SequenceSample], data_cfg: DataConfig, series: Sequence[str] | None = None
) -> tuple[list[SequenceSample], list[SequenceSample]]:
    """Split samples by the series of their panels (never by sample): ``(train, test)``.

    ``series`` is the full series list (defaults to the series present in ``samples``); it matters for the
    threshold rule's default ``max_series``. A sample whose panels span two series is rejected.
    """
    if series is None:
        series = sorted({s.series for s in samples}, key=natural_key)
    train_s, _ = split_series(series, data_cfg)
    train_set = set(train_s)
    train, test = [], []
    for i, s in enumerate(samples):
        owners = {p.split("/")[0] for p in s.panels}
        if len(owners) != 1:
            raise ValueError(f"sample {i} mixes series {sorted(owners)}: {s.panels}")
        (train if s.series in train_set else test).append(s)
    return train, test


def holdout_val_series(train_series: Sequence[str], data_cfg: DataConfig) -> tuple[list[str], list[str]]:
    """(train, val): the last ``data_cfg.val_series`` training series (natural order) become validation series.

    Validation series are for every choice made while developing (early stopping, settings); the test
    series are touched only by the final evaluation.
    """
    train = sorted({str(s) for s in train_series}, key=natural_key)
    k = int(data_cfg.val_series)
    if k < 0:
        raise ValueError(f"data.val_series: expected >= 0, got {k}")
    if k and k >= len(train):
        raise ValueError(f"data.val_series = {k} would leave no training series (there are {len(train)})")
    return (train[: len(train) - k], train[len(train) - k :]) if k else (train, [])


def read_split(path: str | Path) -> dict[str, list[str]]:
    """``split.json`` -> {"train": [...], "val": [...], "test": [...]} ("val" is empty in files without it)."""
    data = read_json(path, "run the preprocessing again (it writes split.json beside the sequence file)")
    if not isinstance(data, dict) or not {"train", "test"} <= set(data):
        raise ValueError(f"{path}: expected {{'train': [series...], 'val': [series...], 'test': [series...]}}")
    return {k: [str(s) for s in data.get(k, [])] for k in ("train", "val", "test")}


# --------------------------------------------------------------------------------------------------
# Panel sequences
# --------------------------------------------------------------------------------------------------


def _to_unit(src: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (3, H, W) [0, 255] -> float32 (3, H, W) [-1, 1] (``x / 127.5 - 1`` in float32), into ``out``.

    The resize leaves HWC memory; turning it into CHW floats is the slow part of torch's conversion, and
    the C loop does it in about a quarter of the time (0.12 against 0.46 ms per 300x300 sample here)."""
    if out is None:
        out = torch.empty(src.shape, dtype=torch.float32)
    convert = _unit_converter()
    hwc = src.permute(1, 2, 0)
    if convert is not None and hwc.is_contiguous() and out.is_contiguous() and src.dtype == torch.uint8:
        convert(hwc.numpy(), out.numpy())
        return out
    return out.copy_(src).div_(127.5).sub_(1.0)


def _to_tensor(img) -> torch.Tensor:
    """PIL RGB -> float32 (3, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return to_unit(torch.from_numpy(arr.copy()).permute(2, 0, 1))


def _jitter_params(rng: np.random.Generator) -> dict:
    """Colour jitter draws (each factor applied with p = 0.5; docs/original.md 3.4 ranges: brightness 0.8-1.6,
    contrast 0.8-2.0, saturation 0-0.9). One draw per sample keeps the panels and the face consistent."""
    return {
        "brightness": rng.uniform(0.8, 1.6) if rng.random() < 0.5 else None,
        "contrast": rng.uniform(0.8, 2.0) if rng.random() < 0.5 else None,
        "saturation": rng.uniform(0.0, 0.9) if rng.random() < 0.5 else None,
    }


def _color_jitter(x: torch.Tensor, p: dict) -> torch.Tensor:
    """Apply :func:`_jitter_params` draws to a (..., 3, H, W) tensor in [-1, 1]."""
    y = (x + 1) / 2
    if p["brightness"] is not None:
        y = y * p["brightness"]
    if p["contrast"] is not None:
        mean = y.mean(dim=(-3, -2, -1), keepdim=True)
        y = (y - mean) * p["contrast"] + mean
    if p["saturation"] is not None:
        gray = 0.299 * y[..., 0:1, :, :] + 0.587 * y[..., 1:2, :, :] + 0.114 * y[..., 2:3, :, :]
        y = gray + (y - gray) * p["saturation"]
    return y.clamp(0, 1) * 2 - 1


class PanelSequenceDataset(Dataset):
    """Three consecutive panels with the last one's face masked, and the target face (docs/design.md 10.1).

    ``__getitem__(i)`` returns a dict: ``panels`` (3, 3, H, W) float32 in [-1, 1] in ``panel_order``;
    ``face`` (3, face_size, face_size); ``mask`` (1, H, W) with 1 inside the masked box; ``mask_coords``
    int64 (y1, y2, x1, x2) in resized-panel pixels, end exclusive; ``index``; ``series``; and ``gt_panel``
    (3, H, W), the unmasked last panel, with ``return_gt_panel``.

    ``panel_order``: ``chronological`` -> [p1, p2, masked p3]; ``masked_first`` -> [masked p3, p1, p2] (the
    original LSTM's reading order). ``panel_size`` is (H, W).
    """

    def __init__(
        self,
        panel_root: str | Path,
        samples: Sequence[SequenceSample],
        panel_size: Sequence[int] = (300, 300),
        face_size: int = 64,
        mask_val: float = 1.0,
        panel_order: str = "chronological",
        augment: bool = False,
        return_gt_panel: bool = False,
        seed: int = 0,
    ):
        if panel_order not in ("chronological", "masked_first"):
            raise ValueError(f"panel_order: expected chronological or masked_first, got {panel_order!r}")
        if not 0.0 <= mask_val <= 1.0:
            raise ValueError(f"mask_val must be in [0, 1] (image space before normalisation), got {mask_val}")
        self.panel_root = Path(panel_root)
        self.samples = list(samples)
        self.panel_size = (int(panel_size[0]), int(panel_size[1]))
        self.face_size = int(face_size)
        self.mask_val = float(mask_val)
        self.panel_order = panel_order
        self.augment = augment
        self.return_gt_panel = return_gt_panel
        self.seed = int(seed)
        self.epoch = 0  # augmentation draws depend on it (set_epoch)
        # False: only the last (masked) panel is decoded and the context panels are NaN; for callers that read
        # the context from cached backbone features (the evaluation), so three decodes become one
        self.context_panels = True

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation draws of ``epoch`` (the training loop calls this before every epoch)."""
        self.epoch = int(epoch)

    @classmethod
    def from_config(cls, data_cfg: DataConfig, split: str = "train", **kwargs) -> "PanelSequenceDataset":
        """Dataset of ``split`` ("train" | "val" | "test" | "all") from ``data_cfg``'s sequence file and ``split.json``.

        Without a ``split.json`` beside the sequence file, the split is computed with :func:`split_samples`.
        ``data_cfg.limit_size`` keeps the first N samples of the split.
        """
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split: expected train, val, test or all, got {split!r}")
        seq_path = resolve_path(data_cfg.sequence_path)
        samples = read_sequences(seq_path)
        if split != "all":
            sp = seq_path.parent / "split.json"
            if sp.is_file():
                wanted = set(read_split(sp)[split])
                samples = [s for s in samples if s.series in wanted]
            else:
                train, test = split_samples(samples, data_cfg)
                if split == "test":
                    samples = test
                else:
                    tr_s, val_s = holdout_val_series({s.series for s in train}, data_cfg)
                    wanted = set(tr_s if split == "train" else val_s)
                    samples = [s for s in train if s.series in wanted]
        if data_cfg.limit_size >= 0:
            samples = samples[: data_cfg.limit_size]
        opts = dict(panel_size=data_cfg.panel_size, face_size=data_cfg.face_size, mask_val=data_cfg.mask_val,
                    panel_order=data_cfg.panel_order, augment=data_cfg.augment, seed=data_cfg.seed)
        opts.update(kwargs)
        return cls(resolve_path(data_cfg.panel_path), samples, **opts)

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, rel: str, index: int, need: float, box: Sequence[float]
                ) -> tuple[torch.Tensor, float, float, int, int, int, int]:
        """Decode what ``box`` (x1, y1, x2, y2, panel pixels) needs of one panel: (uint8 (3, h, w) tensor,
        x0, y0, sx, sy, dw, dh): (x0, y0) is the tensor's top-left in
        decoded pixels, (sx, sy) the decoded/original scale, (dw, dh) the decoded panel's size. Where the box
        crosses the panel's edges, the tensor's edges are the panel's.

        JPEG goes through libjpeg-turbo straight into a tensor (:func:`~ssuper_lib.data.decode.decode_jpeg_panel`):
        only the rectangle the crop needs where the kit's decoder is built, else the whole panel (simplejpeg where
        installed, else torchvision); the same pixels every way, about twice as fast as PIL's decode + convert.
        When the panel is reduced by 4x or more (``need`` <= 0.25), PIL's ``draft`` lets the JPEG decoder
        downscale by 4/8 instead, which is faster still (at 2x the saving in decoding is eaten by PIL's
        conversions). Other formats use PIL.
        """
        from PIL import Image

        path = self.panel_root / rel
        try:
            decoded = decode_jpeg_panel(path, need, box)
            if decoded is not None:
                return decoded
            with Image.open(path) as im:
                W, H = im.size
                if im.format == "JPEG" and need <= 0.25:
                    im.draft("RGB", (math.ceil(W * need), math.ceil(H * need)))
                im = im.convert("RGB")
            img = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)  # (3, h, w)
            return img, 0, 0, im.size[0] / W, im.size[1] / H, im.size[0], im.size[1]
        except FileNotFoundError:
            raise PanelReadError(f"sample {index}: panel {path} does not exist (listed in the sequence file)") from None
        except Exception as exc:  # noqa: BLE001
            raise PanelReadError(f"sample {index}: cannot read panel {path}: {exc}") from exc

    @staticmethod
    def _resize_box(img: torch.Tensor, box: Sequence[float], size: tuple[int, int],
                    origin: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """Crop ``box`` = (x1, y1, x2, y2) (decoded pixels, rounded; outside ``img`` reads as black, as PIL's
        crop) from uint8 (3, h, w) whose top-left pixel is ``origin`` = (x0, y0), and resize to ``size`` =
        (H, W): bilinear with antialiasing, in uint8.

        torch's uint8 antialiased bilinear kernel is a port of PIL's ``resize(BILINEAR)`` (same filter,
        same rounding) and runs ~5-10x faster on a (3, h, w) tensor with HWC memory layout.
        """
        import torch.nn.functional as F

        h, w = img.shape[-2:]
        x1, y1, x2, y2 = (int(round(v)) for v in box)  # rounded in panel pixels, then moved to img's
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        x1, x2, y1, y2 = x1 - origin[0], x2 - origin[0], y1 - origin[1], y2 - origin[1]
        if x1 >= 0 and y1 >= 0 and x2 <= w and y2 <= h:
            part = img[:, y1:y2, x1:x2]
        else:
            part = img.new_zeros(3, y2 - y1, x2 - x1)
            ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            if ix2 > ix1 and iy2 > iy1:
                part[:, iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1] = img[:, iy1:iy2, ix1:ix2]
        if tuple(part.shape[-2:]) == tuple(size):
            return part.clone()  # never a view of the decode buffer, which the next panel overwrites
        part = part[None].contiguous(memory_format=torch.channels_last)  # (1, 3, h', w'), HWC: the fast path
        return F.interpolate(part, size=size, mode="bilinear", antialias=True, align_corners=False)[0]

    def _load_panel(self, rel: str, crop: Sequence[int], index: int, face: Sequence[int] | None):
        """Crop + resize one panel (and the face when given). Returns (panel uint8 (3, H, W), face uint8
        (3, F, F) or None)."""
        ph, pw = self.panel_size
        cx1, cy1, cx2, cy2 = (float(v) for v in crop)
        cw, ch = cx2 - cx1, cy2 - cy1
        if cw <= 0 or ch <= 0:
            raise ValueError(f"sample {index}: empty crop {list(crop)} for panel {rel}")
        # scale the decoder may reduce to: the crop must keep >= panel size (and the face >= face size)
        need = max(pw / cw, ph / ch)
        if face is not None:
            need = max(need, self.face_size / max(1.0, min(face[2] - face[0], face[3] - face[1])))
        box = (cx1, cy1, cx2, cy2)
        if face is not None:  # the face lies in the crop, but nothing relies on it
            box = (min(cx1, face[0]), min(cy1, face[1]), max(cx2, face[2]), max(cy2, face[3]))
        img, x0, y0, sx, sy, dw, dh = self._decode(rel, index, need, box)
        panel = self._resize_box(img, (cx1 * sx, cy1 * sy, cx2 * sx, cy2 * sy), (ph, pw), (x0, y0))
        face_t = None
        if face is not None:
            fx1, fy1 = max(0.0, face[0] * sx), max(0.0, face[1] * sy)
            fx2, fy2 = min(dw, face[2] * sx), min(dh, face[3] * sy)
            face_t = self._resize_box(img, (fx1, fy1, fx2, fy2), (self.face_size, self.face_size), (x0, y0))
        return panel, face_t

    def mask_coords(self, sample: SequenceSample) -> tuple[int, int, int, int]:
        """(y1, y2, x1, x2) of the last face in resized-panel pixels: floor/ceil of the mapped box, clamped."""
        ph, pw = self.panel_size
        cx1, cy1, cx2, cy2 = sample.crops[-1]
        fx1, fy1, fx2, fy2 = sample.faces[-1]
        kx, ky = pw / (cx2 - cx1), ph / (cy2 - cy1)
        x1 = min(max(math.floor((fx1 - cx1) * kx), 0), pw)
        x2 = min(max(math.ceil((fx2 - cx1) * kx), 0), pw)
        y1 = min(max(math.floor((fy1 - cy1) * ky), 0), ph)
        y2 = min(max(math.ceil((fy2 - cy1) * ky), 0), ph)
        return y1, y2, x1, x2

    def _mask(self, panel: torch.Tensor, coords: tuple[int, int, int, int]) -> None:
        """Fill the face box of a (3, H, W) panel in [-1, 1] in place: ``mask_val`` 1 -> white."""
        y1, y2, x1, x2 = coords
        panel[:, y1:y2, x1:x2] = self.mask_val * 2.0 - 1.0

    def context_panel(self, index: int, j: int) -> torch.Tensor:
        """Context panel ``j`` (chronological, ``j < S - 1``) of sample ``index``: (3, H, W) in [-1, 1], the
        values ``self[index]`` holds for it without augmentation. Windows of a series share their context
        panels, so the feature cache computes each (panel, crop) once (:mod:`ssuper_lib.features`)."""
        sample = self.samples[index]
        panel, _ = self._load_panel(sample.panels[j], sample.crops[j], index, None)
        return _to_unit(panel)

    def masked_panel(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked last panel (3, H, W), face (3, F, F)) of sample ``index`` in [-1, 1], as ``self[index]``
        without augmentation."""
        sample = self.samples[index]
        panel, face = self._load_panel(sample.panels[-1], sample.crops[-1], index, sample.faces[-1])
        panel = _to_unit(panel)
        self._mask(panel, self.mask_coords(sample))
        return panel, _to_unit(face)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        sample = self.samples[index]
        n = len(sample.panels)
        panels = torch.empty(n, 3, *self.panel_size, dtype=torch.float32)  # (S, 3, H, W), filled in place
        face_t = None
        for j, (rel, crop) in enumerate(zip(sample.panels, sample.crops)):
            last = j == n - 1
            if not (last or self.context_panels):
                panels[j].fill_(float("nan"))  # not decoded: anything that reads it gives NaN, never a wrong face
                continue
            panel, face_u8 = self._load_panel(rel, crop, index, sample.faces[j] if last else None)
            _to_unit(panel, panels[j])  # (3, H, W) uint8 -> float in [-1, 1], one pass
            if last:
                face_t = _to_unit(face_u8)
        if self.augment:
            params = _jitter_params(np.random.default_rng([self.seed, self.epoch, index]))
            panels, face_t = _color_jitter(panels, params), _color_jitter(face_t, params)
        y1, y2, x1, x2 = self.mask_coords(sample)
        gt_panel = panels[-1].clone() if self.return_gt_panel else None
        self._mask(panels[-1], (y1, y2, x1, x2))
        mask = torch.zeros(1, *self.panel_size, dtype=torch.float32)
        mask[:, y1:y2, x1:x2] = 1.0
        if self.panel_order == "masked_first":
            panels = torch.cat([panels[-1:], panels[:-1]], 0)
        out = {
            "panels": panels,  # (3, 3, H, W)
            "face": face_t,  # (3, F, F)
            "mask": mask,  # (1, H, W)
            "mask_coords": torch.tensor([y1, y2, x1, x2], dtype=torch.int64),
            "index": index,
            "series": sample.series,
        }
        if gt_panel is not None:
            out["gt_panel"] = gt_panel
        return out


# --------------------------------------------------------------------------------------------------
# Face crops
# --------------------------------------------------------------------------------------------------


class FaceCropDataset(Dataset):
    """Square face crops ``<root>/<series>/<page>_<panel>_<k>.jpg`` resized to ``size`` (docs/original.md 3.5).

    ``series``: only these series (e.g. the train list of ``split.json``); None = all. Items are dicts
    ``{"face": (3, size, size) in [-1, 1], "series": str, "index": int}``; ``paths`` lists the files.
    """

    def __init__(self, root: str | Path, series: Sequence[str] | None = None, size: int = 64):
        self.root = Path(root)
        names = list_series(self.root) if series is None else sorted({str(s) for s in series}, key=natural_key)
        self.paths: list[Path] = []
        for s in names:
            d = self.root / s
            if d.is_dir():
                self.paths += sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: natural_key(p.name))
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        path = self.paths[index]
        try:
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft("RGB", (self.size, self.size))
                img = im.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        except Exception as exc:  # noqa: BLE001
            raise PanelReadError(f"face {index}: cannot read {path}: {exc}") from exc
        return {"face": _to_tensor(img), "series": path.parent.name, "index": index}


# --------------------------------------------------------------------------------------------------
# Ground-truth identities (synthetic data)
# --------------------------------------------------------------------------------------------------


def match_ground_truth(samples: Sequence[SequenceSample], gt_csv: str | Path, iou_thold: float = 0.3) -> list[dict]:
    """Character identities for each sample from the synthetic ``ground_truth.csv``.

    Returns one dict per sample: ``target_character`` (the character whose true box has the highest IoU with
    the target face square, or None below ``iou_thold`` - squares around rectangular boxes have IoU < 1, hence
    the lenient default), ``target_iou``, and ``context_characters``: a list with one set per panel of the
    characters visible in it (all true boxes; in the last panel the target face itself is excluded, other
    faces there stay visible to the model).
    """
    import pandas as pd

    df = pd.read_csv(gt_csv, dtype={"panel": str, "character": str})
    # rows of each panel, in file order (a stable sort instead of a pandas groupby: ~20x faster)
    panels = df["panel"].to_numpy()
    boxes_all = df[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
    # an empty character (an extra of the realism presets: a face of no cast member) is unknown: None
    chars_all = np.array([c if isinstance(c, str) and c else None for c in df["character"]], dtype=object)
    order = np.argsort(panels, kind="stable")
    ps = panels[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]]) if len(ps) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(ps)]
    by_panel: dict[str, tuple[np.ndarray, list[str]]] = {
        ps[a]: (boxes_all[order[a:b]], chars_all[order[a:b]].tolist()) for a, b in zip(starts, ends)}
    out = []
    for s in samples:
        boxes, chars = by_panel.get(s.panels[-1], (np.zeros((0, 4)), []))
        target, t_iou, t_idx = None, 0.0, -1
        if len(chars):
            ious = box_iou(np.array([s.faces[-1]], np.float64), boxes)[0]
            t_idx = int(np.argmax(ious))
            t_iou = float(ious[t_idx])
            if t_iou >= iou_thold:
                target = chars[t_idx]
            else:
                t_idx = -1
        ctx = []
        for j, p in enumerate(s.panels):
            _, cs = by_panel.get(p, (None, []))
            if j == len(s.panels) - 1:
                cs = [c for k, c in enumerate(cs) if k != t_idx]
            ctx.append({c for c in cs if c is not None})
        out.append({"target_character": target, "target_iou": t_iou, "context_characters": ctx})
    return out
