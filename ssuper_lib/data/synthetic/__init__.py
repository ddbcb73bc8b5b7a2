"""Synthetic comics in the COMICS layout: ``python -m ssuper_lib.data.synthetic --out D``."""

from .cast import CAST_PALETTES
from .generator import GENERATOR_VERSION, generate, main

__all__ = ["GENERATOR_VERSION", "generate", "main", "CAST_PALETTES"]
