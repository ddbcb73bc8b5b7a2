"""The SSuperGAN model family, assembled from a :class:`~ssuper_lib.config.ModelConfig` (REFERENCE.md 1.1).

Every variant shares the conditional-VAE front end: a panel embedder (shared EfficientNet + head), a
sequence encoder with its latent head giving q(z | panels) = N(mu, exp(log_sigma)^2), and a face
generator. The variants add discriminators:

| class             | generator        | local D | global D | extra                                  |
|-------------------|------------------|---------|----------|----------------------------------------|
| SSuperVAE         | IntroVAE decoder | -       | -        |                                        |
| SSuperGAN         | DCGAN            | yes     | -        |                                        |
| SSuperGlobalGAN   | DCGAN            | yes     | yes      | paste of faces into panels             |
| SSuperVAECA       | IntroVAE decoder | -       | -        | fine generator + two WGAN critics      |

Losses and update schedules live in ``ssuper_lib.losses`` / ``ssuper_lib.train``; the model only offers
the pieces (``encode``, ``generate``, discriminators, ``refine``) and the parameter groups to optimise.

Differences from the original container: no ``forward(x, f="method")`` dispatch (DataParallel-era trick),
no ``.cuda()`` calls (``sample`` draws on the model's device, reproducibly with a ``torch.Generator``), one
KL/sampling convention (``sequence.reparameterize``/``kl_normal``), and state-dict names that depend only
on the variant's parts: ``backbone.net.*``, ``backbone.head.fc.*``, ``seq_encoder.*``, ``generator.*``,
``local_disc.*``, ``global_disc.*``, ``refiner.*``, ``local_critic.*``, ``global_critic.*``.
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
import torch.nn as nn

from ..config import ModelConfig
from .attention import FineGenerator, GlobalCritic, LocalCritic
from .backbone import PanelEmbedder
from .discriminator import GlobalDiscriminator, LocalDiscriminator, crop_faces, paste_faces
from .generator import DCGANGenerator, IntroVAEDecoder
from .sequence import ConvLSTMSequenceEncoder, LSTMSequenceEncoder, PlainSequenceEncoder, reparameterize

__all__ = [
    "SSuperModel",
    "SSuperVAE",
    "SSuperGAN",
    "SSuperGlobalGAN",
    "SSuperVAECA",
    "build_model",
    "count_parameters",
    "parameter_table",
    "parameter_summary",
    "shape_trace",
    "PART_NAMES",
]

SEQ_LEN = 3  # panels per sample (the data's window_size)

PART_NAMES = ("backbone", "embed_head", "seq_encoder", "generator", "local_disc", "global_disc", "refiner", "local_critic",
              "global_critic", "exemplar_attention", "exemplar_generator")


class SSuperModel(nn.Module):
    """Base: panel embedder + sequence encoder (+ latent head) + generator. Subclasses add the rest.

    Attributes absent from a variant are None: ``local_disc``, ``global_disc``, ``refiner``,
    ``local_critic``, ``global_critic``.
    """

    variant = "base"

    def __init__(self, cfg: ModelConfig, panel_size: tuple[int, int] = (300, 300), seq_len: int = SEQ_LEN):
        super().__init__()
        self.cfg = cfg
        self.panel_size = (int(panel_size[0]), int(panel_size[1]))
        self.latent_dim = cfg.latent_dim
        self.img_size = cfg.img_size
        spatial = cfg.spatial_features or cfg.seq_encoder == "convlstm"
        if spatial and cfg.seq_encoder != "convlstm":
            raise ValueError(f"model.spatial_features: feature maps are read only by seq_encoder=convlstm, not {cfg.seq_encoder!r}")
        dropout = cfg.convlstm_dropout if spatial else cfg.backbone_dropout  # maps: no dropout unless configured
        self.backbone = PanelEmbedder(
            cfg.backbone, cfg.embed_dim, dropout, cfg.pretrained, cfg.freeze_backbone, spatial, self.panel_size,
            cfg.train_top_stages,
        )
        E = self.backbone.embed_dim
        if cfg.seq_encoder == "plain":
            self.seq_encoder = PlainSequenceEncoder(E, seq_len, cfg.latent_dim, cfg.fc_hidden_dims, cfg.fc_dropout)
        elif cfg.seq_encoder in ("lstm", "bilstm"):
            self.seq_encoder = LSTMSequenceEncoder(
                E, cfg.lstm_hidden, cfg.latent_dim, cfg.lstm_layers, cfg.lstm_dropout, cfg.seq_encoder == "bilstm",
                cfg.masked_first, cfg.fc_hidden_dims, cfg.fc_dropout,
            )
        elif cfg.seq_encoder == "convlstm":
            self.seq_encoder = ConvLSTMSequenceEncoder(
                E, cfg.lstm_hidden, cfg.convlstm_kernel, self.backbone.feature_hw, cfg.latent_dim, cfg.masked_first,
                cfg.fc_hidden_dims, cfg.fc_dropout,
            )
        else:
            raise ValueError(f"model.seq_encoder: expected plain, lstm, bilstm or convlstm, got {cfg.seq_encoder!r}")
        self.generator: nn.Module = self._make_generator(cfg)
        self.local_disc: nn.Module | None = None
        self.global_disc: nn.Module | None = None
        self.refiner: nn.Module | None = None
        self.local_critic: nn.Module | None = None
        self.global_critic: nn.Module | None = None

    def _make_generator(self, cfg: ModelConfig) -> nn.Module:
        return DCGANGenerator(cfg.latent_dim, cfg.gen_channels, cfg.img_size, cfg.gen_norm)

    # ------------------------------------------------------------------ encoder
    def backbone_features(self, panels: torch.Tensor) -> torch.Tensor:
        """(B, S, 3, H, W) -> pre-head features (B, S, F) or (B, S, F, h, w) (cacheable when frozen)."""
        return self.backbone.backbone_features(panels)

    def encode_features(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-head features -> (mu, log_sigma), each (B, latent): embedding head, sequence encoder, latent head."""
        return self.seq_encoder(self.backbone.forward_head(feats))

    def encode(self, panels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, 3, H, W) in [-1, 1] -> (mu, log_sigma), each (B, latent); log_sigma = log std."""
        return self.encode_features(self.backbone_features(panels))

    # ---------------------------------------------------------------- generator
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent) -> faces (B, 3, img, img)."""
        return self.generator(z)

    def generate_for(self, z: torch.Tensor, batch: dict | None = None) -> torch.Tensor:
        """Faces for latent ``z`` given the rest of a batch (variants that read more than z override it)."""
        return self.generate(z)

    def reconstruct(self, panels: torch.Tensor) -> torch.Tensor:
        """Deterministic face G(mu) for the masked panel (the kit's PSNR protocol)."""
        mu, _ = self.encode(panels)
        return self.generate(mu)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n faces from the prior z ~ N(0, I), drawn on the model's device (reproducible with ``generator``)."""
        p = next(self.generator.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, device=p.device, dtype=p.dtype)
        return self.generate(z)

    def forward(self, panels: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Encode, reparameterise and generate: dict(mu, log_sigma, z, face)."""
        mu, log_sigma = self.encode(panels)
        z = reparameterize(mu, log_sigma, generator)
        return {"mu": mu, "log_sigma": log_sigma, "z": z, "face": self.generate(z)}

    def forward_features(self, feats: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """As :meth:`forward` from cached pre-head features."""
        mu, log_sigma = self.encode_features(feats)
        z = reparameterize(mu, log_sigma, generator)
        return {"mu": mu, "log_sigma": log_sigma, "z": z, "face": self.generate(z)}

    # --------------------------------------------------------------- bookkeeping
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters per optimiser: encoder (frozen backbone excluded), generator, discriminators."""
        enc = list(self.backbone.parameters()) + list(self.seq_encoder.parameters())
        groups = {"encoder": enc, "generator": list(self.generator.parameters())}
        if self.refiner is not None:
            groups["generator"] += list(self.refiner.parameters())
        for name in ("local_disc", "global_disc", "local_critic", "global_critic"):
            part = getattr(self, name)
            if part is not None:
                groups[name] = list(part.parameters())
        return {k: [p for p in v if p.requires_grad] for k, v in groups.items()}

    def channels_last(self) -> "SSuperModel":
        """Put the model's 4-d weights in ``channels_last`` (NHWC); the backbone is NHWC already.

        oneDNN on CPU (and cuDNN's tensor cores) run these small-image convolutions faster in NHWC. Measured on
        2 CPU cores, demo configs, per training step: SSuperVAE 150 -> 95 ms, Plain-SSuperGAN 65 -> 52 ms,
        Exemplar-SSuperGAN 126 -> 93 ms. Results differ from NCHW at float rounding only."""
        return self.to(memory_format=torch.channels_last)

    def parts(self) -> dict[str, nn.Module]:
        """The named parts present in this variant (for parameter tables)."""
        out = {"backbone": self.backbone.net, "embed_head": self.backbone.head, "seq_encoder": self.seq_encoder,
               "generator": self.generator}
        for name in ("local_disc", "global_disc", "refiner", "local_critic", "global_critic"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


class SSuperVAE(SSuperModel):
    """Conditional VAE: sequence encoder + IntroVAE residual decoder (trained with the ELBO)."""

    variant = "ssupervae"

    def _make_generator(self, cfg: ModelConfig) -> nn.Module:
        return IntroVAEDecoder(cfg.latent_dim, cfg.vae_channels, cfg.img_size, cfg.gen_norm, cfg.vae_output)


class SSuperGAN(SSuperModel):
    """Conditional VAE-GAN: DCGAN generator + local DCGAN discriminator on 64x64 faces."""

    variant = "ssupergan"

    def __init__(self, cfg: ModelConfig, panel_size: tuple[int, int] = (300, 300), seq_len: int = SEQ_LEN):
        super().__init__(cfg, panel_size, seq_len)
        self.local_disc = LocalDiscriminator(cfg.local_disc_channels, cfg.img_size, cfg.disc_norm)


class SSuperGlobalGAN(SSuperGAN):
    """SSuperGAN + a global discriminator on the last panel with the face pasted in (:meth:`paste`)."""

    variant = "ssuperglobalgan"

    def __init__(self, cfg: ModelConfig, panel_size: tuple[int, int] = (300, 300), seq_len: int = SEQ_LEN):
        super().__init__(cfg, panel_size, seq_len)
        self.global_disc = GlobalDiscriminator(self.panel_size, cfg.global_disc_channels, cfg.disc_norm)

    @staticmethod
    def paste(panels: torch.Tensor, faces: torch.Tensor, mask_coords: torch.Tensor) -> torch.Tensor:
        """Masked last panel (B, S, 3, H, W) or (B, 3, H, W) with ``faces`` pasted at the mask boxes."""
        last = panels[:, -1] if panels.dim() == 5 else panels
        return paste_faces(last, faces, mask_coords)


class SSuperVAECA(SSuperVAE):
    """Plain SSuperVAE (coarse face) + contextual-attention fine generator and two WGAN critics."""

    variant = "ssupervae_ca"

    def __init__(self, cfg: ModelConfig, panel_size: tuple[int, int] = (256, 256), seq_len: int = SEQ_LEN):
        super().__init__(cfg, panel_size, seq_len)
        self.refiner = FineGenerator(cfg.ca_cnum)
        self.local_critic = LocalCritic(cfg.ca_critic_channels, cfg.img_size)
        self.global_critic = GlobalCritic(self.panel_size, cfg.ca_critic_channels)

    def refine(self, panels: torch.Tensor, coarse_face: torch.Tensor, mask: torch.Tensor,
               mask_coords: torch.Tensor) -> dict[str, torch.Tensor]:
        """Paste the coarse face into the masked last panel and repaint the hole.

        panels (B, S, 3, H, W) (the last one masked) or (B, 3, H, W); coarse_face (B, 3, 64, 64);
        mask (B, 1, H, W) 1 in the hole; mask_coords (B, 4). Returns ``fine_panel`` (B, 3, H, W): the
        refined hole composited into the known context, and ``fine_face`` (B, 3, 64, 64): the raw
        refined output cropped at the box (what the reference scored).
        """
        last = panels[:, -1] if panels.dim() == 5 else panels
        mask = mask.to(last.dtype)
        x = paste_faces(last, coarse_face, mask_coords)  # (B, 3, H, W) coarse-filled panel
        raw = self.refiner(x, mask)  # (B, 3, H, W)
        fine_panel = raw * mask + last * (1.0 - mask)
        fine_face = crop_faces(raw, mask_coords, self.img_size)
        return {"fine_panel": fine_panel, "fine_face": fine_face}


VARIANTS = {"ssupervae": SSuperVAE, "ssupergan": SSuperGAN, "ssuperglobalgan": SSuperGlobalGAN, "ssupervae_ca": SSuperVAECA}
ORIGINAL_VARIANTS = tuple(VARIANTS)  # the nine table rows use these; variants beyond the original register below


def register_variant(cls: type[SSuperModel]) -> type[SSuperModel]:
    """Register a model class under its ``variant`` name (for :func:`build_model` and ``model.variant``)."""
    VARIANTS[cls.variant] = cls
    return cls


def _register_beyond_original() -> None:
    from .exemplar import SSuperExemplar

    register_variant(SSuperExemplar)


def build_model(cfg: ModelConfig, panel_size: Iterable[int] = (300, 300)) -> SSuperModel:
    """The variant named by ``cfg.variant`` for panels of ``panel_size`` = (H, W) (usually cfg.data.panel_size)."""
    if cfg.variant not in VARIANTS:
        _register_beyond_original()
    if cfg.variant not in VARIANTS:
        raise ValueError(f"model.variant: expected one of {', '.join(VARIANTS)}, got {cfg.variant!r}")
    if cfg.vae_output not in ("tanh", "none"):
        raise ValueError(f"model.vae_output: expected tanh or none, got {cfg.vae_output!r}")
    H, W = (int(v) for v in panel_size)
    return VARIANTS[cfg.variant](cfg, (H, W))


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters of a module (0 for None)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_table(cfg: ModelConfig, panel_size: Iterable[int] = (300, 300), name: str | None = None):
    """pandas DataFrame with one row per part (and a ``total`` row): ``part``, ``module``, ``params``, ``trainable``.

    The model is built on the ``meta`` device with ``pretrained=False``: no weights are read or
    downloaded and no memory is allocated, so counting even the 150M-parameter ConvLSTM model is instant.
    """
    import dataclasses

    import pandas as pd

    cfg_np = dataclasses.replace(cfg, pretrained=False)
    ctx = torch.device("meta") if hasattr(torch, "device") else contextlib.nullcontext()
    with ctx:
        model = build_model(cfg_np, panel_size)
    rows = []
    for part, module in model.parts().items():
        n = count_parameters(module)
        rows.append({"part": part, "module": type(module).__name__, "params": n,
                     "trainable": count_parameters(module, trainable_only=True)})
    rows.append({"part": "total", "module": type(model).__name__, "params": sum(r["params"] for r in rows),
                 "trainable": sum(r["trainable"] for r in rows)})
    df = pd.DataFrame(rows)
    if name is not None:
        df.insert(0, "model", name)
    return df


def parameter_summary(config_paths: Iterable, overrides: list[str] | None = None):
    """One row per config file: name, variant, encoder, sizes, panel size, parameters per part and total.

    Each model is counted at its configured ``data.panel_size`` without weights (see :func:`parameter_table`).
    """
    from pathlib import Path

    import pandas as pd

    from ..config import load_config

    rows = []
    for path in config_paths:
        cfg = load_config(path, overrides)
        table = parameter_table(cfg.model, cfg.data.panel_size).set_index("part")["params"]
        row = {
            "model": Path(path).stem,
            "variant": cfg.model.variant,
            "encoder": cfg.model.seq_encoder,
            "latent": cfg.model.latent_dim,
            "lstm_hidden": cfg.model.lstm_hidden if cfg.model.seq_encoder != "plain" else None,
            "embed": cfg.model.embed_dim,
            "panel": "x".join(str(v) for v in cfg.data.panel_size),
        }
        row.update({part: int(table.get(part, 0)) for part in PART_NAMES})
        row["total"] = int(table["total"])
        rows.append(row)
    df = pd.DataFrame(rows)
    df["lstm_hidden"] = df["lstm_hidden"].astype("Int64")  # empty for plain encoders
    return df


@torch.no_grad()
def shape_trace(model: SSuperModel, panels: torch.Tensor, mask_coords: torch.Tensor | None = None):
    """Tensor shapes through every part of ``model`` for one batch (eval mode, no gradient): DataFrame(stage, shape).

    Without ``mask_coords`` a centred box of half the panel side is used for the paste / refinement stages.
    """
    import pandas as pd

    was_training = model.training
    model.eval()
    B, S, _, H, W = panels.shape
    if mask_coords is None:
        mask_coords = torch.tensor([[H // 4, H // 4 + H // 2, W // 4, W // 4 + W // 2]] * B)
    rows = [("panels (B, S, 3, H, W)", panels.shape)]
    feats = model.backbone_features(panels)
    rows.append(("backbone features", feats.shape))
    emb = model.backbone.forward_head(feats)
    rows.append(("panel embeddings (head)", emb.shape))
    mu, log_sigma = model.seq_encoder(emb)
    rows += [("mu", mu.shape), ("log_sigma", log_sigma.shape)]
    z = reparameterize(mu, log_sigma)
    rows.append(("z", z.shape))
    face = model.generate(z)
    rows.append((f"face ({type(model.generator).__name__})", face.shape))
    if model.local_disc is not None:
        rows.append(("local_disc logits", model.local_disc(face).shape))
    if model.global_disc is not None:
        composite = paste_faces(panels[:, -1], face, mask_coords)
        rows += [("panel with pasted face", composite.shape), ("global_disc logits", model.global_disc(composite).shape)]
    if model.refiner is not None:
        mask = torch.zeros(B, 1, H, W, device=panels.device)
        for i, (y1, y2, x1, x2) in enumerate(mask_coords.tolist()):
            mask[i, :, y1:y2, x1:x2] = 1.0
        ref = model.refine(panels, face, mask, mask_coords)
        rows += [("fine_panel", ref["fine_panel"].shape), ("fine_face", ref["fine_face"].shape),
                 ("local_critic scores", model.local_critic(ref["fine_face"]).shape),
                 ("global_critic scores", model.global_critic(ref["fine_panel"]).shape)]
    model.train(was_training)
    return pd.DataFrame([(stage, tuple(shape)) for stage, shape in rows], columns=["stage", "shape"])
