"""Training: ``python -m ssuper_lib.train CONFIG [overrides]`` (or under ``torchrun``).

:func:`train` (:mod:`.loop`) runs one of the :mod:`.objectives` with the :mod:`.engine` (process group,
precision), the :mod:`.data` of the run, its :mod:`.state` (checkpoints, exact resume) and its
:mod:`.monitor` (metrics, sample sheets, validation); :mod:`.losses` holds the loss functions.
"""

from ..config import resolve_device
from ..runs import CHECKPOINT_VERSION, find_checkpoint, load_checkpoint, load_run, make_run_dir, read_metrics
from . import losses
from .cli import main
from .data import ResumableSampler, data_overrides
from .engine import _amp_dtype, _Dist
from .loop import RunResult, train
from .monitor import FixedSamples, ShuffledContext, validation_error
from .objectives import OBJECTIVES, CAObjective, ExemplarObjective, GANObjective, NonFiniteLossError, Objective, VAEObjective
from .state import TrainState

__all__ = [
    "CHECKPOINT_VERSION",
    "RunResult",
    "NonFiniteLossError",
    "train",
    "load_run",
    "load_checkpoint",
    "find_checkpoint",
    "make_run_dir",
    "resolve_device",
    "read_metrics",
    "data_overrides",
    "Objective",
    "VAEObjective",
    "GANObjective",
    "CAObjective",
    "ExemplarObjective",
    "OBJECTIVES",
    "ResumableSampler",
    "FixedSamples",
    "ShuffledContext",
    "TrainState",
    "validation_error",
    "losses",
    "main",
]
