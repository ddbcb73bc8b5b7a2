"""Progress of long steps: a ``tqdm`` bar, or plain text lines at a modest rate for logs and ``make demo``.

With ``$SSUPER_PROGRESS_EVERY`` set to a number of seconds (``make demo`` sets 15), every bar of the kit
(training steps, feature caching, evaluation) prints instead one line on stdout at most that often, plus
one when it starts and one when it ends::

    train demo_plain_ssupergan: step 450/3000 (15%), 7.1 step/s (57 samples/s), 1m03s elapsed, ETA 6m00s, recon ...

Unset (the default), a bar is ``tqdm.auto``'s: a widget in a notebook, a redrawn line in a terminal.
:func:`note` prints a stage line in line mode only. Text lines suit a log file of a cluster job too:
``SSUPER_PROGRESS_EVERY=60 python -m ssuper_lib.train ...``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

from tqdm.std import tqdm as _std_tqdm

__all__ = ["ENV_PROGRESS_EVERY", "line_interval", "progress_bar", "note", "format_seconds"]

ENV_PROGRESS_EVERY = "SSUPER_PROGRESS_EVERY"


def line_interval() -> float | None:
    """Seconds between progress lines (``$SSUPER_PROGRESS_EVERY``), or None: bars as usual."""
    text = os.environ.get(ENV_PROGRESS_EVERY, "").strip()
    try:
        every = float(text) if text else None
    except ValueError:
        return None
    return every if every is not None and every > 0 else None


def format_seconds(s: float | None) -> str:
    """``42s``, ``6m05s``, ``1h02m``; ``?`` when unknown."""
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def note(text: str) -> None:
    """One stage line on stdout, in line mode only (``$SSUPER_PROGRESS_EVERY`` set)."""
    if line_interval() is not None:
        print(text, flush=True)


class _Discard:
    """tqdm's own file: the lines are printed by :meth:`_LineBar.display`, tqdm's bar redraws go nowhere."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class _LineBar(_std_tqdm):
    """A tqdm that prints whole lines (start, then at most every ``mininterval`` seconds, end) to stdout."""

    def __init__(self, *args, samples_per_step: int | None = None, **kwargs):
        self._samples_per_step = samples_per_step
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        # tqdm calls this at the start, at most every mininterval seconds, and once from close() (msg "" when
        # the bar does not stay): every call is a line
        d = self.format_dict
        n, total, unit, elapsed = d["n"], d["total"], d["unit"], d["elapsed"]
        parts = [f"{d['prefix'] or 'progress'}: {unit} {n}" + (f"/{total} ({100 * n / total:.0f}%)" if total else "")]
        rate = (n - self.initial) / elapsed if elapsed > 0 and n > self.initial else None
        if rate:
            speed = f"{rate:.3g} {unit}/s" if rate < 100 else f"{rate:.0f} {unit}/s"
            if self._samples_per_step:
                speed += f" ({rate * self._samples_per_step:.0f} samples/s)"
            parts.append(speed)
        if total is not None and n >= total:
            parts.append(f"done in {format_seconds(elapsed)}")
        elif total and rate:
            parts.append(f"{format_seconds(elapsed)} elapsed, ETA {format_seconds((total - n) / rate)}")
        elif n > self.initial:
            parts.append(f"{format_seconds(elapsed)} elapsed")
        if d.get("postfix"):  # last: the losses of a training bar
            parts.append(str(d["postfix"]).replace("=", " ").replace(",", ""))
        print(", ".join(parts), file=sys.stdout, flush=True)
        return True


def progress_bar(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, disable: bool = False,
                 unit: str = "it", samples_per_step: int | None = None, **kwargs: Any):
    """A progress bar over ``iterable`` (or updated by hand): ``tqdm.auto``'s, or text lines every
    ``$SSUPER_PROGRESS_EVERY`` seconds (see the module). ``samples_per_step`` adds samples/s to the lines."""
    every = line_interval()
    if every is None or disable:
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, disable=disable, unit=unit, **kwargs)
    for key in ("dynamic_ncols", "mininterval", "miniters"):
        kwargs.pop(key, None)
    # miniters=1: the clock is read at every update (no adaptive skipping, no monitor thread printing lines)
    return _LineBar(iterable, desc=desc, total=total, unit=unit, mininterval=every, miniters=1,
                    samples_per_step=samples_per_step, file=_Discard(), **kwargs)
