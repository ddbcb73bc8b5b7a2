"""Evaluation: ``python -m ssuper_lib.evaluate RUN_DIR ...``."""

from .suite import *  # noqa: F401,F403
from .suite import __all__ as _suite_all

__all__ = list(_suite_all)
