"""Training: ``python -m ssuper_lib.train CONFIG [overrides]`` (or under ``torchrun``)."""

from ..runs import find_checkpoint, load_checkpoint, load_run, make_run_dir, read_metrics
from .loop import *  # noqa: F401,F403
from .loop import __all__ as _loop_all

__all__ = list(_loop_all)
