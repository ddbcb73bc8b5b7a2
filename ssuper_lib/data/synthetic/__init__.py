"""Synthetic comics in the COMICS layout: ``python -m ssuper_lib.data.synthetic --out D``."""

from .generator import *  # noqa: F401,F403
