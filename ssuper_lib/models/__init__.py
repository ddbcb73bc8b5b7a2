"""SSuperGAN networks: panel embedder, sequence encoders, generators, discriminators, CA refinement.

Entry point: :func:`build_model` (``ssuper_lib.models.ssuper``).
"""

from .sequence import kl_normal, reparameterize
from .ssuper import (
    SSuperGAN,
    SSuperGlobalGAN,
    SSuperModel,
    SSuperVAE,
    SSuperVAECA,
    build_model,
    count_parameters,
    parameter_table,
)

__all__ = [
    "SSuperModel",
    "SSuperVAE",
    "SSuperGAN",
    "SSuperGlobalGAN",
    "SSuperVAECA",
    "build_model",
    "count_parameters",
    "parameter_table",
    "reparameterize",
    "kl_normal",
]
