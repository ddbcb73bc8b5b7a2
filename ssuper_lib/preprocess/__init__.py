"""Preprocessing: ``python -m ssuper_lib.preprocess``.

* :mod:`~ssuper_lib.preprocess.sequences`: detector boxes -> filtered faces -> sequences of panels, face
  crops and the series split;
* :mod:`~ssuper_lib.preprocess.exemplars`: the faces detected in each sample's context panels, with their
  surroundings (cached crops for the exemplar model and baselines).
"""

from .sequences import *  # noqa: F401,F403
from .exemplars import *  # noqa: F401,F403
