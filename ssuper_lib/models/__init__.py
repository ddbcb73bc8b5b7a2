"""SSuperGAN networks: panel embedder, sequence encoders, generators, discriminators, CA refinement.

Entry point: :func:`build_model` (``ssuper_lib.models.build``); parameter tables and shapes in
``ssuper_lib.models.summary``.
"""

from .build import ORIGINAL_VARIANTS, VARIANTS, build_model, register_variant
from .exemplar import SSuperExemplar
from .sequence import kl_normal, reparameterize
from .ssuper import SEQ_LEN, SSuperGAN, SSuperGlobalGAN, SSuperModel, SSuperVAE, SSuperVAECA
from .summary import PART_NAMES, count_parameters, parameter_summary, parameter_table, shape_trace

__all__ = [
    "SSuperModel",
    "SSuperVAE",
    "SSuperGAN",
    "SSuperGlobalGAN",
    "SSuperVAECA",
    "SSuperExemplar",
    "SEQ_LEN",
    "VARIANTS",
    "ORIGINAL_VARIANTS",
    "register_variant",
    "build_model",
    "count_parameters",
    "parameter_table",
    "parameter_summary",
    "shape_trace",
    "PART_NAMES",
    "reparameterize",
    "kl_normal",
]
