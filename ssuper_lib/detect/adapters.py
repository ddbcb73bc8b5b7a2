"""Detector adapters: existing annotation files, the ``animeface`` package and a torchvision checkpoint
(the seed's RetinaFace is :class:`~ssuper_lib.detect.bbtnet.BBTNetDetector`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..data.comics import Annotations, read_annotation_file
from ..storage import safe_torch_load
from .base import Detection, ImageInput, open_rgb

__all__ = ["AnnotationFileDetector", "AnimeFaceDetector", "TORCHVISION_ARCHS", "TorchvisionDetector"]


class AnnotationFileDetector:
    """Boxes from existing annotation files ``<annot_root>/<series>.txt`` (original format, docs/original.md 3.1).

    An image is identified by its last two path components ``series/page_panel.jpg`` (a path, or a PIL image
    opened from a file, which keeps ``.filename``). Panels absent from the files have no boxes. Files are
    read lazily, once per series.
    """

    needs_pixels = False

    def __init__(self, annot_root: str | Path):
        self.annot_root = Path(annot_root)
        if not self.annot_root.is_dir():
            raise FileNotFoundError(f"annotation folder {self.annot_root} does not exist")
        self._cache: dict[str, Annotations] = {}

    def _key(self, image: ImageInput) -> str:
        name = image if isinstance(image, (str, os.PathLike)) else getattr(image, "filename", "")
        if not name:
            raise ValueError("AnnotationFileDetector needs file paths (or PIL images opened from files)")
        p = Path(name)
        return f"{p.parent.name}/{p.name}"

    def detect(self, images: Sequence[ImageInput]) -> list[Detection]:
        out = []
        for image in images:
            key = self._key(image)
            series = key.split("/")[0]
            if series not in self._cache:
                f = self.annot_root / f"{series}.txt"
                self._cache[series] = read_annotation_file(f) if f.is_file() else Annotations()
            boxes = self._cache[series].boxes.get(key, [])
            out.append(Detection([b.as_list() for b in boxes], [b.conf for b in boxes]))
        return out


class AnimeFaceDetector:
    """The ``animeface`` package (nvxs drawn-face detector); ``likelihood`` is used as the score.

    Imported lazily so that the rest of the kit works without it. The detector is tuned for anime-style
    faces; on Golden Age comics and on the synthetic faces its recall is low - it is here as a
    no-weights-needed baseline, not as a replacement for the paper's detector.
    """

    needs_pixels = True

    def __init__(self) -> None:
        try:
            import animeface  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("AnimeFaceDetector needs the 'animeface' package: pip install animeface") from exc

    def detect(self, images: Sequence[ImageInput]) -> list[Detection]:
        import animeface

        out = []
        for image in images:
            faces = animeface.detect(open_rgb(image))
            boxes = [[f.face.pos.x, f.face.pos.y, f.face.pos.x + f.face.pos.width, f.face.pos.y + f.face.pos.height] for f in faces]
            out.append(Detection(boxes, [f.likelihood for f in faces]))
        return out


TORCHVISION_ARCHS = ("fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn")


def _infer_num_classes(state: dict, arch: str) -> int | None:
    """Class count from the classifier weights of a torchvision detection state dict."""
    if "roi_heads.box_predictor.cls_score.weight" in state:
        return int(state["roi_heads.box_predictor.cls_score.weight"].shape[0])
    if "head.classification_head.cls_logits.weight" in state and "head.regression_head.bbox_reg.weight" in state:
        n_anchors = state["head.regression_head.bbox_reg.weight"].shape[0] // 4
        return int(state["head.classification_head.cls_logits.weight"].shape[0] // n_anchors)
    return None


class TorchvisionDetector:
    """A torchvision detection model loaded from a user's checkpoint (no download: weights=None everywhere).

    The checkpoint is either a bare ``state_dict`` or a dict ``{"model": state_dict, "arch": ..., "num_classes":
    ..., "face_label": ...}`` (``"state_dict"`` is accepted for ``"model"``). Arguments given here override the
    checkpoint's; ``num_classes`` is otherwise inferred from the classifier weights. Only boxes whose label is
    ``face_label`` are returned. ``min_score`` is the model's own score floor (the kit filters later).
    """

    needs_pixels = True

    def __init__(
        self,
        checkpoint: str | Path,
        arch: str | None = None,
        num_classes: int | None = None,
        face_label: int | None = None,
        device: str = "cpu",
        min_score: float = 0.05,
        batch_size: int = 4,
    ):
        import torch
        import torchvision

        ckpt = safe_torch_load(checkpoint, hint="pass a torchvision detector checkpoint (a state_dict, or {'model': ...})")
        state = ckpt
        meta: dict = {}
        if isinstance(ckpt, dict) and ("model" in ckpt or "state_dict" in ckpt):
            state = ckpt.get("model", ckpt.get("state_dict"))
            meta = {k: v for k, v in ckpt.items() if k not in ("model", "state_dict")}
        arch = arch or meta.get("arch")
        if arch is None:
            raise ValueError(f"{checkpoint}: the architecture is unknown; pass arch= one of {', '.join(TORCHVISION_ARCHS)}")
        if arch not in TORCHVISION_ARCHS:
            raise ValueError(f"arch {arch!r} is not supported; choose one of {', '.join(TORCHVISION_ARCHS)}")
        num_classes = num_classes or meta.get("num_classes") or _infer_num_classes(state, arch)
        if num_classes is None:
            raise ValueError(f"{checkpoint}: cannot infer num_classes from the weights; pass num_classes=")
        self.face_label = int(face_label if face_label is not None else meta.get("face_label", 1))
        if not 0 <= self.face_label < num_classes:
            raise ValueError(f"face_label {self.face_label} is outside the model's {num_classes} classes")
        builder = getattr(torchvision.models.detection, arch)
        kwargs = dict(weights=None, weights_backbone=None, num_classes=int(num_classes))
        kwargs["score_thresh" if arch.startswith("retinanet") else "box_score_thresh"] = float(min_score)
        model = builder(**kwargs)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{checkpoint}: weights do not fit {arch} with {num_classes} classes: {exc}") from exc
        self.model = model.eval().to(device)
        self.device = device
        self.arch, self.num_classes, self.batch_size = arch, int(num_classes), int(batch_size)

    def detect(self, images: Sequence[ImageInput]) -> list[Detection]:
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        out: list[Detection] = []
        for start in range(0, len(images), self.batch_size):
            batch = [pil_to_tensor(open_rgb(im)).float().div_(255).to(self.device) for im in images[start : start + self.batch_size]]
            with torch.inference_mode():
                preds = self.model(batch)
            for p in preds:
                keep = p["labels"] == self.face_label
                out.append(Detection(p["boxes"][keep].cpu().numpy(), p["scores"][keep].cpu().numpy()))
        return out
