"""The model variants by name and :func:`build_model`, the one way to construct a model from its config.

The four original variants (``ORIGINAL_VARIANTS``; the nine table rows use these) and the variants beyond
the original (Exemplar-SSuperGAN, ``ssuper_exemplar``) are registered here, under their ``variant`` names.
"""

from __future__ import annotations

from typing import Iterable

from ..config import ModelConfig
from .exemplar import SSuperExemplar
from .ssuper import SSuperGAN, SSuperGlobalGAN, SSuperModel, SSuperVAE, SSuperVAECA

__all__ = ["VARIANTS", "ORIGINAL_VARIANTS", "register_variant", "build_model"]

VARIANTS = {"ssupervae": SSuperVAE, "ssupergan": SSuperGAN, "ssuperglobalgan": SSuperGlobalGAN, "ssupervae_ca": SSuperVAECA}
ORIGINAL_VARIANTS = tuple(VARIANTS)  # the nine table rows use these; variants beyond the original register below


def register_variant(cls: type[SSuperModel]) -> type[SSuperModel]:
    """Register a model class under its ``variant`` name (for :func:`build_model` and ``model.variant``)."""
    VARIANTS[cls.variant] = cls
    return cls


register_variant(SSuperExemplar)


def build_model(cfg: ModelConfig, panel_size: Iterable[int] = (300, 300)) -> SSuperModel:
    """The variant named by ``cfg.variant`` for panels of ``panel_size`` = (H, W) (usually cfg.data.panel_size)."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"model.variant: expected one of {', '.join(VARIANTS)}, got {cfg.variant!r}")
    if cfg.vae_output not in ("tanh", "none"):
        raise ValueError(f"model.vae_output: expected tanh or none, got {cfg.vae_output!r}")
    H, W = (int(v) for v in panel_size)
    return VARIANTS[cfg.variant](cfg, (H, W))
