"""The command line of training: ``python -m ssuper_lib.train CONFIG [overrides]`` (or under ``torchrun``)."""

from __future__ import annotations

import argparse
import sys

from ..config import ConfigError, load_config
from ..data.comics import DataFileError
from ..storage import CheckpointError
from .loop import train
from .objectives import NonFiniteLossError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ssuper_lib.train",
        description="Train an SSuperGAN variant (single process, or under torchrun for several GPUs/processes).",
    )
    parser.add_argument("config", help="YAML config, e.g. configs/models/demo_plain_ssupergan.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=100 train.resume=auto")
    parser.add_argument("--run-dir", default=None, help="write into this run directory instead of a new one")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(cfg, run_dir=args.run_dir, progress=not args.no_progress)
    except (NonFiniteLossError, ConfigError, CheckpointError, DataFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line naming the file or setting, no traceback
        return 1
    if result.run_dir is not None:
        print(f"finished {result.step} steps; run directory {result.run_dir}")
    return 0
