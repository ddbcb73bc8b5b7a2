"""The seed's Siamese cartoon-face network (docs/original.md 9.2) and a safe loader for its whole-model pickle.

The seed lists a Siamese face model (~86% pair accuracy on iCartoonFace) among its pretrained models. It embeds a
64x64 RGB face in [0, 1] (``ToTensor`` without normalisation) into 5 numbers:

* ``cnn1``: the first 8 children of torchvision's ResNet-18 (conv1, bn1, relu, maxpool, layer1..4; no pooling),
  so a 64x64 face gives 512 x 2 x 2 = 2048 features; or the BASIC trunk (three reflection-padded 3x3 convs
  3 -> 4 -> 8 -> 8, each followed by ReLU and BatchNorm, at full resolution: 8 * dim * dim features);
* ``fc1``: an MLP 2048 -> 500 -> ReLU -> 500 -> ReLU -> 5 (``fc1.net.{0,2,4}``).

Pairs are labelled 0 (same identity) or 1 (different), the original's convention; the loss is the contrastive
loss of Hadsell et al. (2006) with margin 1, ``mean((1 - y) d^2 + y max(0, 1 - d)^2)`` on the Euclidean distance
d, and a pair counts as "same" when d < 0.5.

Differences from the original: its module imported a missing ``networks.mlp`` (docs/original.md 8, item 20); its
``forward`` took a ``(x1, x2, labels)`` batch - here ``forward(x)`` embeds one batch (``forward_once``), which is
what retrieval needs; the feature size follows the input size instead of a hard-coded 2048. The original saved
the trained network whole with ``torch.save(model)`` (a pickle naming its classes). :func:`load_original_siamese`
reads such a file without running code from it: torch's own ``weights_only=True`` loader, with exactly the
original's class paths allow-listed as inert records, accepts tensors and plain containers only, and the weights
are then loaded strictly into :class:`SiameseNetwork`.
"""

from __future__ import annotations

import enum
import math
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .weights import state_dict_mismatch
from ..storage import CheckpointError, atomic_torch_save, safe_torch_load

__all__ = [
    "SiameseBackbone",
    "MLP",
    "SiameseNetwork",
    "contrastive_loss",
    "pair_distance",
    "faces_to_unit",
    "embed_faces",
    "ORIGINAL_CLASS_PATHS",
    "OriginalPickleError",
    "read_original_pickle",
    "load_original_siamese",
    "save_siamese",
    "load_siamese",
]

SAME, DIFFERENT = 0, 1  # pair labels, the original's convention
MARGIN = 1.0
SAME_THRESHOLD = 0.5  # distance below which a pair is called "same" (the original's accuracy rule)


class SiameseBackbone(enum.Enum):
    """The original's trunk choices (same names and values, so its pickled enum maps onto this one)."""

    BASIC = 1
    RESNET_18 = 2


_BACKBONE_NAMES = {"basic": SiameseBackbone.BASIC, "resnet18": SiameseBackbone.RESNET_18}


class MLP(nn.Module):
    """Linear -> ReLU, ``num_layers`` times, then Linear; layers in ``self.net`` (keys ``net.0``, ``net.2``, ...)."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 500, num_layers: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Linear(input_size if i == 0 else hidden_size, hidden_size), nn.ReLU()]
        layers.append(nn.Linear(hidden_size if num_layers else input_size, output_size))
        self.net = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1).float()
        for layer in self.net:
            x = layer(x)
        return x


def _basic_trunk() -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in ((3, 4), (4, 8), (8, 8)):
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers)


class SiameseNetwork(nn.Module):
    """Face -> ``embed_dim`` embedding. Input (B, 3, image_dim, image_dim) in [0, 1]; output (B, embed_dim)."""

    def __init__(self, image_dim: int = 64, backbone: str | SiameseBackbone = "resnet18", embed_dim: int = 5,
                 hidden: int = 500):
        super().__init__()
        if isinstance(backbone, str):
            if backbone not in _BACKBONE_NAMES:
                raise ValueError(f"Siamese backbone {backbone!r}: choose one of {', '.join(_BACKBONE_NAMES)}")
            backbone = _BACKBONE_NAMES[backbone]
        self.backbone = backbone
        self.image_dim = int(image_dim)
        if backbone is SiameseBackbone.BASIC:
            self.cnn1 = _basic_trunk()
            fc_in = 8 * self.image_dim * self.image_dim  # (B, 8, dim, dim) flattened
        else:
            import torchvision

            net = torchvision.models.resnet18(weights=None)  # random init, as the original
            self.cnn1 = nn.Sequential(*list(net.children())[:8])
            side = math.ceil(self.image_dim / 32)
            fc_in = 512 * side * side  # (B, 512, dim/32, dim/32) flattened: 2048 at 64 px
        self.fc1 = MLP(fc_in, embed_dim, hidden, 2)

    @property
    def backbone_name(self) -> str:
        return "basic" if self.backbone is SiameseBackbone.BASIC else "resnet18"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.cnn1(x).flatten(1))  # (B, embed_dim)

    forward_once = forward  # the original's name for the single-branch pass

    def config(self) -> dict:
        return {"image_dim": self.image_dim, "backbone": self.backbone_name, "embed_dim": self.fc1.net[-1].out_features,
                "hidden": self.fc1.net[0].out_features}


def pair_distance(e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between paired embeddings (B, D), (B, D) -> (B,)."""
    return F.pairwise_distance(e1, e2)


def contrastive_loss(e1: torch.Tensor, e2: torch.Tensor, label: torch.Tensor, margin: float = MARGIN) -> torch.Tensor:
    """Hadsell et al. contrastive loss; ``label`` 0 = same identity, 1 = different (the original's convention)."""
    d = pair_distance(e1, e2)
    y = label.float().view(-1)
    return torch.mean((1 - y) * d.pow(2) + y * torch.clamp(margin - d, min=0).pow(2))


def faces_to_unit(faces: torch.Tensor, image_dim: int | None = 64) -> torch.Tensor:
    """Kit faces -> the network's input: uint8 [0, 255] or float [-1, 1] (B, 3, H, W) -> float [0, 1] (B, 3, d, d)."""
    x = faces.float() / 255.0 if faces.dtype == torch.uint8 else (faces.float() + 1.0) / 2.0
    if image_dim is not None and tuple(x.shape[-2:]) != (image_dim, image_dim):
        x = F.interpolate(x, size=(image_dim, image_dim), mode="bilinear", align_corners=False, antialias=True)
    return x


@torch.no_grad()
def embed_faces(model: nn.Module, faces: torch.Tensor, batch_size: int = 256, device: str | torch.device | None = None) -> torch.Tensor:
    """(N, D) embeddings of kit faces (uint8 or [-1, 1], see :func:`faces_to_unit`) with ``model`` in eval mode."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    dim = getattr(model, "image_dim", 64)
    out = [model(faces_to_unit(faces[s : s + batch_size], dim).to(dev)).float().cpu() for s in range(0, len(faces), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, getattr(model, "config", lambda: {"embed_dim": 5})()["embed_dim"])


# --------------------------------------------------------------------------------------------------
# The kit's own checkpoints (state_dict + settings, weights_only loadable)
# --------------------------------------------------------------------------------------------------


def save_siamese(model: SiameseNetwork, path: str | os.PathLike, **extra) -> Path:
    """Write ``{"model": state_dict, "config": model.config(), **extra}`` atomically (temp file + rename)."""
    return atomic_torch_save({"model": model.state_dict(), "config": model.config(), **extra}, path)


def load_siamese(path: str | os.PathLike, map_location: str = "cpu") -> SiameseNetwork:
    """A kit Siamese checkpoint (:func:`save_siamese`, ``weights_only=True``) -> :class:`SiameseNetwork` in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Siamese checkpoint {path} not found")
    try:
        ckpt = safe_torch_load(path, map_location=map_location, hint="train or convert the Siamese model again")
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (not a kit Siamese checkpoint; for the original's whole-model pickle use "
                              f"load_original_siamese)") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a kit Siamese checkpoint (expected keys 'model' and 'config'); for the "
                         f"original's whole-model pickle use load_original_siamese")
    model = SiameseNetwork(**ckpt["config"])
    _load_strict(model, ckpt["model"], path)
    return model.eval()


def _load_strict(model: nn.Module, state: dict, path: Path) -> None:
    missing, unexpected, shapes = state_dict_mismatch(model.state_dict(), state)
    if missing or unexpected or shapes:
        raise ValueError(f"{path}: weights do not fit the Siamese network: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}, other shapes {shapes[:5]}")
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------------------------------
# The original's whole-model pickle, read safely
# --------------------------------------------------------------------------------------------------

# Class paths a pickled original SiameseNetwork names, mapped to what the kit uses for them. Modules become inert
# records (their tensors are collected afterwards); nothing from the file is imported or called.
ORIGINAL_CLASS_PATHS: dict[tuple[str, str], str] = {
    ("networks.siamese.siamese_network", "SiameseNetwork"): "ssuper_lib.models.siamese.SiameseNetwork",
    ("networks.siamese_network", "SiameseNetwork"): "ssuper_lib.models.siamese.SiameseNetwork",
    ("networks.siamese.siamese_network", "SiameseBackbone"): "ssuper_lib.models.siamese.SiameseBackbone",
    ("networks.siamese_network", "SiameseBackbone"): "ssuper_lib.models.siamese.SiameseBackbone",
    ("networks.siamese.mlp", "MLP"): "ssuper_lib.models.siamese.MLP",
    ("networks.mlp", "MLP"): "ssuper_lib.models.siamese.MLP",
}
# The torch layers the original's two trunks (BASIC, ResNet-18 children) and its MLP are built from; they too
# become inert records. Tensors, OrderedDict and set are in torch's own weights_only allow-list.
_TORCH_LAYER_PATHS = (
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.conv", "Conv2d"),
    ("torch.nn.modules.batchnorm", "BatchNorm2d"),
    ("torch.nn.modules.activation", "ReLU"),
    ("torch.nn.modules.pooling", "MaxPool2d"),
    ("torch.nn.modules.padding", "ReflectionPad2d"),
    ("torch.nn.modules.linear", "Linear"),
    ("torchvision.models.resnet", "BasicBlock"),
)


class OriginalPickleError(pickle.UnpicklingError):
    """The file names something outside the allow-list (or is not the original's Siamese pickle)."""


class _Record:
    """An inert stand-in for a pickled ``nn.Module``: the unpickler sets its ``__dict__``; nothing else runs."""

    kit_class = ""

    def __new__(cls, *args, **kwargs):  # a pickled module is rebuilt without arguments (NEWOBJ, then BUILD)
        if args or kwargs:
            raise OriginalPickleError(f"{cls.__module__}.{cls.__name__} is rebuilt with arguments")
        return super().__new__(cls)

    def __reduce__(self):  # never re-pickled
        raise TypeError("_Record is not picklable")


def _named(obj, module: str, name: str):
    # torch's allow-list keys an entry by ``__module__`` + ``__name__`` (2.5, 2.6) or ``__qualname__`` (later)
    obj.__module__, obj.__name__, obj.__qualname__ = module, name, name
    return obj


def _record_class(module: str, name: str, kit_class: str) -> type:
    return _named(type(name, (_Record,), {"kit_class": kit_class}), module, name)


def _backbone_from(module: str, name: str):
    def backbone(value):  # the pickled enum is rebuilt as SiameseBackbone(value)
        try:
            return SiameseBackbone(value)
        except ValueError:
            raise OriginalPickleError(f"{module}.{name}({value!r}) is not a SiameseBackbone") from None

    return _named(backbone, module, name)


def _allowed_globals() -> list:
    """What :func:`read_original_pickle` allow-lists for ``torch.load(weights_only=True)``, exactly these names."""
    out = []
    for (module, name), target in ORIGINAL_CLASS_PATHS.items():
        out.append(_backbone_from(module, name) if target.endswith("SiameseBackbone")
                   else _record_class(module, name, target))
    out += [_record_class(module, name, f"{module}.{name}") for module, name in _TORCH_LAYER_PATHS]
    return out


_ALLOWED_GLOBALS = _allowed_globals()
_NAMED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_INNER_ERROR = re.compile(r"WeightsUnpickler error:\s*(.*)")


def _refusal(path: Path, exc: BaseException) -> OriginalPickleError:
    """One line for a file torch's weights_only unpickler refused (never torch's advice to turn it off)."""
    text = str(exc)
    m = _NAMED_GLOBAL.search(text)
    if m:
        return OriginalPickleError(f"{path}: refusing to load {m.group(1)}: the file may only hold the original "
                                   f"Siamese network (its classes, torch layers and tensors)")
    inner = _INNER_ERROR.search(text)
    reason = (inner.group(1) if inner else text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    reason = reason.split(" Please ")[0].split(" Re-running ")[0].strip()
    if "weights_only" in reason:  # torch's own advice, not a reason
        reason = type(exc).__name__
    return OriginalPickleError(f"{path}: refused: {reason} (the file may only hold the original Siamese network: "
                               f"its classes, torch layers and tensors)")


def _collect(record, prefix: str, out: dict) -> None:
    for name, p in (getattr(record, "_parameters", None) or {}).items():
        if p is not None:
            out[prefix + name] = p.detach() if isinstance(p, torch.Tensor) else p
    non_persistent = getattr(record, "_non_persistent_buffers_set", set()) or set()
    for name, b in (getattr(record, "_buffers", None) or {}).items():
        if b is not None and name not in non_persistent:
            out[prefix + name] = b
    for name, child in (getattr(record, "_modules", None) or {}).items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out)


def read_original_pickle(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, attributes)`` from the original's ``torch.save(model)`` file, without running its code.

    ``attributes``: ``image_dim`` and ``backbone`` when the pickle holds them. Raises :class:`OriginalPickleError`
    when the file names any other global (e.g. a callable smuggled into the pickle).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"original Siamese model {path} not found")
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            root = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    if not isinstance(root, _Record) or not root.kit_class.endswith("SiameseNetwork"):
        raise OriginalPickleError(f"{path}: expected a pickled SiameseNetwork, found {type(root).__name__}")
    state: dict[str, torch.Tensor] = {}
    _collect(root, "", state)
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise OriginalPickleError(f"{path}: {k} is a {type(v).__name__}, not a tensor")
    attrs = {"image_dim": getattr(root, "image_dim", None), "backbone": getattr(root, "backbone", None)}
    return state, attrs


def load_original_siamese(path: str | os.PathLike) -> SiameseNetwork:
    """The original's saved Siamese model (whole-model pickle) as a kit :class:`SiameseNetwork` (eval mode).

    The trunk (BASIC / ResNet-18), input size and embedding size are read from the pickle's attributes and weight
    shapes; the weights load strictly. Convert once with ``python -m ssuper_lib.siamese convert IN OUT`` to get a
    kit checkpoint that loads with ``weights_only=True``.
    """
    path = Path(path)
    state, attrs = read_original_pickle(path)
    backbone = attrs["backbone"] if isinstance(attrs["backbone"], SiameseBackbone) else (
        SiameseBackbone.RESNET_18 if any(k.startswith("cnn1.4.") for k in state) else SiameseBackbone.BASIC)
    image_dim = int(attrs["image_dim"]) if isinstance(attrs["image_dim"], int) else 64
    out_w = [k for k in state if k.startswith("fc1.net.") and k.endswith(".weight")]
    last = max(out_w, key=lambda k: int(k.split(".")[2])) if out_w else None
    embed_dim = int(state[last].shape[0]) if last else 5
    hidden = int(state["fc1.net.0.weight"].shape[0]) if "fc1.net.0.weight" in state else 500
    model = SiameseNetwork(image_dim, backbone, embed_dim, hidden)
    _load_strict(model, state, path)
    return model.eval()
