"""Typed experiment configuration: YAML files -> nested dataclasses, with dotted overrides.

A config file is YAML with the sections ``data``, ``model``, ``train`` and ``eval`` plus a few top-level
keys (``name``, ``seed``). A file may start with ``include: [other.yaml, ...]`` (paths relative to the
including file); included files are merged first, then the file itself, then the overrides.

Overrides use the same dotted names everywhere (notebooks and command line)::

    cfg = load_config("configs/models/demo_plain_ssupergan.yaml", ["train.batch_size=8", "data.panel_size=[96,96]"])

Every problem is an error that names the file, the key and what was expected: an unknown key (a typo
is never silently ignored), a wrong type, or an out-of-range value.

Differences from the original code (docs/original.md 6): the original read untracked YAMLs into namedtuples
through a module that raised unless the working directory matched one of five personal paths; here
every key is declared, documented in the shipped YAML files, and validated.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
import yaml

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "ExperimentConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "save_config",
    "REPO_ROOT",
    "masked_index",
    "resolve_device",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the file, the key and the expectation."""


def masked_index(panel_order: str) -> int:
    """Index of the masked panel along a sample's panel axis S: last (-1) in ``chronological`` order
    ``[p1, p2, masked p3]``, first (0) in ``masked_first`` order ``[p3, p1, p2]``."""
    return 0 if panel_order == "masked_first" else -1


def resolve_device(name: str | None = "auto", local_rank: int = 0) -> torch.device:
    """The one device rule of the kit: ``auto`` (or None) -> ``cuda:<local_rank>`` when CUDA is present, else
    ``cpu``; ``cuda`` -> ``cuda:<local_rank>``; any other name as given. Asking for CUDA where there is none
    is an error that says what to use instead."""
    if name in (None, "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} but CUDA is not available; use device=auto or cpu")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


# --------------------------------------------------------------------------------------------------
# Schema. Every field documents itself in the shipped YAML files (one comment per key).
# --------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Where the panels, detections and sequences live, and how samples are built (docs/original.md 3)."""

    panel_path: str = "data/synthetic/panels"  # root holding <series>/<page>_<panel>.jpg
    annot_path: str = "data/synthetic/annotations"  # folder of <series>.txt detector files
    sequence_path: str = "data/synthetic/sequences.json"  # sequence JSON (original format)
    faces_path: str = "data/synthetic/faces"  # face crops <series>/<page>_<panel>_<k>.jpg
    ground_truth_path: str | None = "data/synthetic/ground_truth.csv"  # synthetic only; None for COMICS
    conf_thold: float = 0.9  # minimum detector confidence
    nms_iou: float = 0.2  # IoU above which NMS removes the weaker box
    face_thold: int = 32  # minimum face side (max(w, h)) in original pixels
    window_size: int = 3  # consecutive panels per sample
    add_face_margin: bool = False  # square face boxes with the original's margin (centre up h/6, radius x1.5)
    split: str = "series_threshold"  # series_threshold (original rule) | series_fraction
    max_series: int | None = None  # series count N of the original rule: train if series <= int(N*ratio)
    train_test_ratio: float = 0.95  # fraction of series for training
    val_series: int = 0  # training series held out for validation (the last ones in natural order; 0 = none)
    face_train_test_ratio: float = 0.9  # split ratio for face-crop datasets
    panel_size: list[int] = field(default_factory=lambda: [300, 300])  # [H, W] of resized panels
    face_size: int = 64  # side of the target face
    mask_val: float = 1.0  # fill of the masked face in [0,1] space (1 = white as the original)
    panel_order: str = "chronological"  # chronological [p1,p2,masked p3] | masked_first [p3,p1,p2]
    augment: bool = False  # colour augmentation (off in every original run)
    num_workers: int = 2  # DataLoader worker processes
    limit_size: int = -1  # use at most this many samples (-1 = all)
    seed: int = 0  # seed for crops and splits

    @property
    def masked_index(self) -> int:
        """Index of the masked panel along S for this ``panel_order`` (:func:`masked_index`)."""
        return masked_index(self.panel_order)


@dataclass
class ModelConfig:
    """Architecture of one SSuperGAN variant (docs/original.md 1)."""

    variant: str = "ssupergan"  # ssupervae | ssupergan | ssuperglobalgan | ssupervae_ca | ssuper_exemplar (beyond the original)
    backbone: str = "efficientnet-b5"  # efficientnet-b0..b7 | efficientnet-lite0
    pretrained: Union[bool, str] = True  # true | false | path to a weights file
    freeze_backbone: bool = False  # keep the backbone fixed (enables feature caching)
    train_top_stages: int = 0  # with freeze_backbone: the last N stages of MBConv blocks and the head conv still train (the original trains all); the frozen layers' output is cached
    backbone_dropout: float = 0.4  # dropout before the embedding Linear
    embed_dim: int = 256  # panel embedding size E
    spatial_features: bool = False  # backbone returns feature maps (ConvLSTM)
    seq_encoder: str = "plain"  # plain | lstm | bilstm | convlstm
    latent_dim: int = 256  # size of z
    lstm_hidden: int = 256  # LSTM hidden size (Bi-LSTM: both directions together); ConvLSTM channels
    lstm_layers: int = 1  # stacked LSTM layers
    lstm_dropout: float = 0.0  # dropout between LSTM layers
    convlstm_kernel: int = 3  # ConvLSTM kernel size
    convlstm_dropout: float = 0.0  # dropout on the backbone feature maps the ConvLSTM reads (original: none, 0)
    masked_first: bool = True  # LSTMs read [masked p3, p1, p2] as the original
    fc_hidden_dims: list[int] = field(default_factory=list)  # optional Linear projector before the latent head
    fc_dropout: float = 0.0  # dropout in the projector / on concatenated features
    img_size: int = 64  # generated face side
    gen_channels: int = 64  # DCGAN generator base width ngf
    gen_norm: str = "batch"  # batch | instance | layer
    vae_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 512])  # IntroVAE decoder widths
    local_disc_channels: int = 64  # local discriminator base width
    global_disc_channels: int = 64  # global discriminator base width
    disc_norm: str = "batch"  # batch | instance | layer | none
    ca_cnum: int = 64  # contextual-attention fine generator width
    ca_critic_channels: int = 32  # WGAN-GP critic width for the CA variant
    exemplar_k: int = 3  # Exemplar-SSuperGAN: context faces per context panel (highest detector confidence first)
    exemplar_ctx_size: int = 32  # Exemplar-SSuperGAN: side of the surroundings crops (query and candidates)
    exemplar_dim: int = 128  # Exemplar-SSuperGAN: attention / feature size
    exemplar_width: int = 16  # Exemplar-SSuperGAN: base width of the crop encoders and the exemplar generator
    exemplar_dropout: float = 0.0  # Exemplar-SSuperGAN: dropout in the MLP of the "metric+mlp" scorer
    exemplar_target_size: int = 4  # Exemplar-SSuperGAN: side of the pooled faces the selection target compares (64 = pixel MSE)
    exemplar_null_margin: float = 1.0  # Exemplar-SSuperGAN: the selection target's null face loses unless a candidate is this much nearer (1 = plain nearest)
    exemplar_scorer: str = "metric"  # Exemplar-SSuperGAN: metric (learned weighted nearest-surroundings) | metric+mlp
    exemplar_output: str = "paint"  # Exemplar-SSuperGAN: paint (the residual generator's face) | copy (the selected exemplar itself)
    exemplar_hard: bool = True  # Exemplar-SSuperGAN: draw from the arg-max exemplar (straight-through); false = soft mix
    vae_output: str = "tanh"  # IntroVAE decoder output: tanh (kit default, faces in [-1,1]) | none (original: unbounded)


@dataclass
class TrainConfig:
    """Objective, optimisation and run bookkeeping (docs/original.md 2 and 6)."""

    batch_size: int = 32  # samples per step (per process under DDP)
    epochs: int = 200  # passes over the training split (ignored when max_steps > 0)
    max_steps: int = 0  # stop after this many steps (0 = use epochs)
    lr: float = 2e-4  # learning rate of generator / encoder
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])  # Adam betas of G and D
    encoder_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam betas of the encoder
    weight_decay: float = 0.0  # Adam weight decay
    lr_decay: str = "linear"  # linear (to 0 at the end) | none
    grad_clip: float = 100.0  # max gradient norm per part (0 = off)
    kl_weight: float = 1.0  # weight of KL(q(z|panels) || N(0, I))
    kl_anneal_steps: int = 0  # linear KL warm-up steps (0 = off)
    sample_z: bool = True  # train on z ~ q(z | panels); false: z = mu (the original's no-KL global trainer, docs/original.md 2.4a)
    recon_loss: str = "gaussian_nll"  # gaussian_nll | sse | l1
    recon_weight: float = 1.0  # reconstruction weight in the encoder/VAE loss
    gen_recon_weight: float = 0.1  # reconstruction weight in the generator loss (original: NLL / 10)
    gan_loss: str = "bce"  # bce (with logits, as the original) | hinge
    adv_to_encoder: bool = False  # encoder also receives the adversarial gradient
    adv_weight: float = 1.0  # local adversarial weight in the generator loss
    global_adv_weight: float = 0.02  # global adversarial weight in the generator loss
    global_disc_lr: float = 2e-4  # learning rate of the global discriminator
    l1_fine_weight: float = 1.0  # CA: weight of L1(fine face, true face)
    select_weight: float = 1.0  # Exemplar-SSuperGAN: weight of the selection loss (attention -> candidate nearest the true face)
    select_lr: float = 0.01  # Exemplar-SSuperGAN: Adam learning rate of the selector (region weights, temperature, null score)
    wgan_gp_lambda: float = 10.0  # CA: gradient-penalty weight
    global_wgan_weight: float = 1.0  # CA: weight of the global critic terms
    amp: str = "auto"  # auto (bf16 on supporting GPUs) | bf16 | fp16 | none
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False  # GPU: deterministic kernels (no cuDNN autotuning): bit-reproducible runs and resume, slower
    channels_last: bool = True  # the model's 4-d weights in channels_last (NHWC): faster convolutions on CPU (oneDNN), same results to float rounding
    cache_features: bool = True  # with a frozen backbone, compute panel features once
    feature_dtype: str = "float32"  # autocast dtype of the frozen backbone while caching features: float32 (exact) | bfloat16 (CPUs with AVX-512 BF16 and GPUs: about 2x faster caching, features within ~5%; its own cache key)
    log_every: int = 50  # steps between metrics.jsonl lines
    sample_every: int = 500  # steps between sample sheets
    tensorboard: Union[bool, str] = "auto"  # TensorBoard event files in <run>/tensorboard/ (metrics.jsonl scalars, sample sheets, config): auto (on when the tensorboard package is installed) | true | false
    ckpt_every: int = 500  # steps between checkpoints
    out_dir: str = "runs"  # parent of run directories runs/<NNNNN>-<name>/
    resume: str | None = None  # run directory or checkpoint to continue from
    num_workers: int = 2  # DataLoader workers per process
    val_every: int = 500  # steps between validation errors on the whole validation split (0 = off)
    keep_best: bool = True  # keep checkpoints/best.pt: the checkpoint with the best validation criterion
    val_select: str = "mse"  # what best.pt and early stopping minimise: mse (validation error) | context (validation error minus that with shuffled context: the label-free context gain, negated)
    early_stop_patience: int = 0  # stop after this many validations without improvement (0 = off)
    inject_nan_at: int = -1  # testing aid: make the loss non-finite at this step (-1 = never)


@dataclass
class EvalConfig:
    """Evaluation protocols (docs/design.md 7)."""

    batch_size: int = 64  # faces per forward pass (also the original protocol's batch)
    n_bootstrap: int = 1000  # bootstrap resamples for confidence intervals
    ci: float = 0.95  # confidence level
    fid: bool = True  # compute FID/KID (needs Inception weights)
    fid_weights: str | None = None  # local path of torch-fidelity's Inception weights
    kid_subset_size: int = 1000  # KID subset size (capped at the sample count)
    prior_samples: int = 1000  # prior samples for the separate prior FID
    max_samples: int = -1  # evaluate at most this many test samples (-1 = all)
    label_free: bool = True  # label-free identity metric (Siamese retrieval of the true face among other series' faces)
    siamese_weights: str | None = None  # Siamese checkpoint (kit file or the original's pickle); None: train one on the training series' ground truth (synthetic)
    siamese_steps: int = 150  # training steps of that Siamese model (cached by data and settings)
    checkpoint: str = "best"  # best (lowest validation error; latest when the run kept none) | latest


@dataclass
class ExperimentConfig:
    """One experiment: a model variant trained and evaluated on one data set."""

    name: str = "experiment"  # run name (runs/<NNNNN>-<name>/)
    seed: int = 0  # global seed (each DDP rank adds its rank)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Allowed values of the string choice fields; validated after loading.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.split": ("series_threshold", "series_fraction"),
    "data.panel_order": ("chronological", "masked_first"),
    "eval.checkpoint": ("best", "latest"),
    "model.variant": ("ssupervae", "ssupergan", "ssuperglobalgan", "ssupervae_ca", "ssuper_exemplar"),
    "model.exemplar_scorer": ("metric", "metric+mlp"),
    "model.exemplar_output": ("paint", "copy"),
    "model.seq_encoder": ("plain", "lstm", "bilstm", "convlstm"),
    "model.gen_norm": ("batch", "instance", "layer"),
    "model.disc_norm": ("batch", "instance", "layer", "none"),
    "model.vae_output": ("tanh", "none"),
    "train.lr_decay": ("linear", "none"),
    "train.recon_loss": ("gaussian_nll", "sse", "l1"),
    "train.gan_loss": ("bce", "hinge"),
    "train.amp": ("auto", "bf16", "fp16", "none"),
    "train.val_select": ("mse", "context"),
    "train.feature_dtype": ("float32", "bfloat16"),
}

# (min, max) inclusive ranges; None = unbounded on that side.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "data.conf_thold": (0.0, 1.0),
    "data.nms_iou": (0.0, 1.0),
    "data.face_thold": (0, None),
    "data.window_size": (2, None),
    "data.train_test_ratio": (0.0, 1.0),
    "data.face_train_test_ratio": (0.0, 1.0),
    "data.face_size": (8, None),
    "data.mask_val": (0.0, 1.0),
    "data.num_workers": (0, None),
    "model.backbone_dropout": (0.0, 1.0),
    "model.convlstm_dropout": (0.0, 1.0),
    "model.embed_dim": (1, None),
    "model.train_top_stages": (0, None),
    "model.latent_dim": (1, None),
    "model.lstm_hidden": (1, None),
    "model.lstm_layers": (1, None),
    "model.lstm_dropout": (0.0, 1.0),
    "model.fc_dropout": (0.0, 1.0),
    "model.exemplar_target_size": (1, None),
    "model.exemplar_null_margin": (1.0, None),
    "model.exemplar_dropout": (0.0, 1.0),
    "train.batch_size": (1, None),
    "train.epochs": (0, None),
    "train.max_steps": (0, None),
    "train.lr": (0.0, None),
    "train.grad_clip": (0.0, None),
    "train.select_lr": (0.0, None),
    "train.kl_weight": (0.0, None),
    "eval.batch_size": (1, None),
    "eval.n_bootstrap": (0, None),
    "eval.ci": (0.0, 1.0),
}


# --------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class _KeyProblem(Exception):
    """Raised while building: a problem with one dotted key (the file is attached later)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    got = f"got {value!r} ({type(value).__name__})"
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arm, where)
            except _KeyProblem:
                pass
        arms = " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
        raise _KeyProblem(where, f"expected {arms}, {got}")
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise _KeyProblem(where, f"expected a list of {_type_name(item_tp)}, {got}")
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _KeyProblem(where, f"expected true or false, {got}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _KeyProblem(where, f"expected an integer, {got}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _KeyProblem(where, f"expected a number, {got}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _KeyProblem(where, f"expected a string, {got}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    raise _KeyProblem(where, f"unsupported type {tp!r}")


def _build(cls: type, data: Any, where: str = "") -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise _KeyProblem(where or "<top>", f"expected a mapping of keys for section {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise _KeyProblem(_join(where, str(key)), f"unknown key; valid keys here are: {', '.join(names)}")
    return cls(**{n: _coerce(data[n], hints[n], _join(where, n)) for n in names if n in data})


def _check_values(cfg: ExperimentConfig) -> None:
    """Choices and ranges that a type alone cannot express."""
    for dotted, allowed in CHOICES.items():
        value = _get(cfg, dotted)
        if value not in allowed:
            raise _KeyProblem(dotted, f"expected one of {', '.join(allowed)}, got {value!r}")
    for dotted, (lo, hi) in RANGES.items():
        value = _get(cfg, dotted)
        if value is None:
            continue
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise _KeyProblem(dotted, f"expected a value in {bounds}, got {value!r}")
    if isinstance(cfg.train.tensorboard, str) and cfg.train.tensorboard != "auto":
        raise _KeyProblem("train.tensorboard", f"expected auto, true or false, got {cfg.train.tensorboard!r}")
    if len(cfg.data.panel_size) != 2 or min(cfg.data.panel_size) < 32:
        raise _KeyProblem("data.panel_size", f"expected [H, W] with both >= 32, got {cfg.data.panel_size}")
    for key in ("train.betas", "train.encoder_betas"):
        if len(_get(cfg, key)) != 2:
            raise _KeyProblem(key, "expected two numbers [beta1, beta2]")
    if cfg.data.panel_order == "masked_first" and cfg.model.masked_first and cfg.model.seq_encoder != "plain":
        # one source of truth for the reading order: both would permute, and the LSTM would read [p2, p3, p1]
        raise _KeyProblem("model.masked_first", "data.panel_order=masked_first already puts the masked panel first, and "
                          "model.masked_first=true would move it again; set model.masked_first=false or "
                          "data.panel_order=chronological")
    backbone = cfg.model.backbone
    if not (backbone == "efficientnet-lite0" or (backbone.startswith("efficientnet-b") and backbone[-1] in "01234567")):
        raise _KeyProblem("model.backbone", f"expected efficientnet-b0..efficientnet-b7 or efficientnet-lite0, got {backbone!r}")


def _get(cfg: Any, dotted: str) -> Any:
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _record_origins(data: dict, source: str, origins: dict[str, str], prefix: str = "") -> None:
    for key, value in data.items():
        dotted = _join(prefix, str(key))
        origins[dotted] = source
        if isinstance(value, dict):
            _record_origins(value, source, origins, dotted)


def _read_yaml(path: Path, origins: dict[str, str], seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML file with its includes resolved (included files first); ``origins`` maps each
    dotted key to the file that set it last, so that errors name the right file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: include cycle through {' -> '.join(str(p) for p in seen)}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict = {}
    for inc in includes:
        merged = _deep_merge(merged, _read_yaml(path.parent / inc, origins, seen + (path.resolve(),)))
    label = f"{path} (included from {seen[-1]})" if seen else str(path)
    _record_origins(data, label, origins)
    return _deep_merge(merged, data)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.batch_size=8")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(
    data: dict, overrides: list[str] | dict[str, Any] | None, origins: dict[str, str] | None = None
) -> dict:
    """Apply dotted overrides (``["train.lr=1e-3"]`` or ``{"train.lr": 1e-3}``) to a raw config dict."""
    data = copy.deepcopy(data)
    if not overrides:
        return data
    items = overrides.items() if isinstance(overrides, dict) else (_parse_override(o) for o in overrides)
    for key, value in items:
        parts = key.split(".") if isinstance(key, str) else key
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(parts)}: '{part}' is not a section")
        node[parts[-1]] = value
        if origins is not None:
            origins[".".join(parts)] = "override"
    return data


def config_from_dict(data: dict, source: str = "<dict>", origins: dict[str, str] | None = None) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from a raw dict.

    Errors name the file that set the offending key (``origins``: dotted key -> file), else ``source``.
    """
    data = dict(data)
    data.pop("include", None)
    try:
        cfg = _build(ExperimentConfig, data)
        _check_values(cfg)
    except _KeyProblem as exc:
        key = exc.key.split("[")[0]
        where = source
        parts = key.split(".")
        for i in range(len(parts), 0, -1):  # the most specific key that has a recorded origin
            if origins and ".".join(parts[:i]) in origins:
                where = origins[".".join(parts[:i])]
                break
        raise ConfigError(f"{where}: {exc.key}: {exc.message}") from None
    return cfg


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> ExperimentConfig:
    """Load a YAML config (with includes), apply dotted overrides, validate and return it.

    ``path`` may be relative to the current directory or to the repository root.
    """
    data: dict = {}
    origins: dict[str, str] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        if not p.is_file() and (REPO_ROOT / p).is_file():
            p = REPO_ROOT / p
        data = _read_yaml(p, origins)
        source = str(path)
    return config_from_dict(apply_overrides(data, overrides, origins), source, origins)


def config_to_dict(cfg: Any) -> dict:
    """Plain-dict form of a config (for saving and for checkpoints)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (every run does this next to its checkpoints)."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def resolve_path(path: str | Path) -> Path:
    """A data/run path from a config: absolute as given, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p
