"""Face detection: ``python -m ssuper_lib.detect``."""

from .run import *  # noqa: F401,F403
