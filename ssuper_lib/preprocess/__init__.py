"""Preprocessing: ``python -m ssuper_lib.preprocess``: detections -> sequences, face crops, split."""

from .sequences import *  # noqa: F401,F403
