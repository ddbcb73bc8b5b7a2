"""TensorBoard event files of a run (rank 0 only): ``<run>/tensorboard/``; view with ``tensorboard --logdir runs``.

``train.tensorboard`` (``auto``: on when the ``tensorboard`` package is installed) turns them on. What goes in:

* every number of every ``metrics.jsonl`` record, as the scalar ``<kind>/<key>`` at the record's step
  (``train/recon``, ``train/samples_per_s``, ``eval/fixed_val_recon_mse``, ``val/val_context_gain``, ...);
* the sample sheets, as the images ``samples/prior`` and ``samples/recon``;
* the resolved config (tag ``config``) and the ``start`` / ``resume`` records (``run/start``, ``run/resume``)
  as text.

A resumed run adds an event file with ``purge_step`` one past the restored step: TensorBoard hides whatever
a killed run wrote after its checkpoint (as ``metrics.jsonl`` drops those lines), and the curves go on
without a duplicated step.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..config import ConfigError, ExperimentConfig, config_to_dict

__all__ = ["TB_DIR", "TensorBoardLog", "tensorboard_enabled", "open_tensorboard"]

TB_DIR = "tensorboard"  # <run>/tensorboard/
_TEXT_KINDS = ("start", "resume")  # records written as text, not as curves


def tensorboard_enabled(setting: bool | str) -> bool:
    """Whether ``train.tensorboard`` = ``setting`` writes event files; true without the package is an error."""
    available = importlib.util.find_spec("tensorboard") is not None
    if setting == "auto":
        return available
    if setting is True and not available:
        raise ConfigError("train.tensorboard=true but the tensorboard package is not installed: "
                          "pip install tensorboard (or the kit's extra: pip install -e '.[tensorboard]'), "
                          "or set train.tensorboard=false")
    return bool(setting)


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def _as_text_block(text: str) -> str:
    """Text shown verbatim by TensorBoard's markdown text view (indented code block)."""
    return "\n".join("    " + line for line in text.splitlines())


class TensorBoardLog:
    """A ``SummaryWriter`` on ``<run_dir>/tensorboard`` fed with the records of :class:`.monitor.MetricsLog`."""

    def __init__(self, run_dir: Path, step: int, config_text: str = ""):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TB_DIR), purge_step=step + 1 if step > 0 else None,
                                    flush_secs=30)
        if config_text:
            self.writer.add_text("config", _as_text_block(config_text), step)

    def record(self, record: dict[str, Any]) -> None:
        """One ``metrics.jsonl`` record: its numbers as ``<kind>/<key>`` scalars (start / resume: text)."""
        kind, step = record.get("kind", "train"), int(record.get("step", 0))
        if kind in _TEXT_KINDS:
            self.writer.add_text(f"run/{kind}", _as_text_block(json.dumps(record, indent=1, default=str)), step)
            return
        for key, value in record.items():
            if key not in ("kind", "step") and _scalar(value):
                self.writer.add_scalar(f"{kind}/{key}", value, step)

    def images(self, step: int, paths: Sequence[str | Path]) -> None:
        """Sample sheets ``<name>_<step>.png`` as the images ``samples/<name>``."""
        import numpy as np
        from PIL import Image

        for path in paths:
            path = Path(path)
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
            self.writer.add_image(f"samples/{path.stem.rsplit('_', 1)[0]}", arr, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tensorboard(cfg: ExperimentConfig, run_dir: Path, step: int) -> TensorBoardLog | None:
    """The run's :class:`TensorBoardLog` from ``step`` on (call on rank 0), or None when ``train.tensorboard`` is off."""
    if not tensorboard_enabled(cfg.train.tensorboard):
        return None
    return TensorBoardLog(run_dir, step, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
