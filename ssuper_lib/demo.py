"""The full demo pipeline behind ``make demo``: synthetic comics -> notebooks 01..06 -> figures and tables.

Each notebook is executed headlessly with papermill; its executed copy lands in
``runs/executed_notebooks/`` (the committed notebooks stay without outputs). Re-running reuses what is
already there (the synthetic data set, finished training runs) unless ``--fresh`` is given.

    python -m ssuper_lib.demo                 # what `make demo` runs
    python -m ssuper_lib.demo --fresh         # regenerate data and retrain
    python -m ssuper_lib.demo --only 05 06    # re-run some notebooks
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

from .config import REPO_ROOT, load_config
from .progress import ENV_PROGRESS_EVERY, format_seconds
from .runs import latest_run, seed_run_name

__all__ = ["DEMO_CONFIGS", "IPC_KERNEL_MANAGER", "run_demo", "main"]

# Kernels talk to papermill over local IPC sockets, not TCP: nothing listens on a port, and ipykernel has no
# reason to warn that "the kernel is running over TCP without encryption".
IPC_KERNEL_MANAGER = "ssuper_lib.demo.IPCKernelManager"


def _ipc_manager_class():
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        """A kernel manager whose kernels use the ``ipc`` transport (Unix domain sockets).

        Each kernel's socket files get a name of their own (``kernel-ipc-<pid>-<random>-N`` in the working
        directory): jupyter_client's default ``kernel-ipc-N`` takes the first N without a file, which two
        processes starting kernels in one directory at once (``pytest -n``, or ``make demo`` beside
        ``make test``) can both pick."""

        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", f"kernel-ipc-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            super().__init__(**kwargs)

    return IPCKernelManager


def __getattr__(name: str):  # the class is built on first use: importing jupyter_client is not free
    if name == "IPCKernelManager":
        cls = _ipc_manager_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)

NOTEBOOKS = REPO_ROOT / "notebooks"
EXECUTED = REPO_ROOT / "runs" / "executed_notebooks"
DATA_ROOT = "data/synthetic"
# The demo trains these variants (notebook 04 once per config and training seed); notebook 05 evaluates them
# all beside the baselines. Exemplar-SSuperGAN is the variant beyond the original (docs/exemplar.md).
DEMO_CONFIGS = (
    "configs/models/demo_plain_ssupergan.yaml",
    "configs/models/demo_bilstm_ssupergan.yaml",
    "configs/models/demo_plain_ssupervae.yaml",
    "configs/models/demo_plain_ssuper_exemplar.yaml",
)


# --------------------------------------------------------------------------------------------------
# What the terminal shows while a notebook runs: a line per code cell, the cells' printed lines (the kit's
# progress lines among them, every PROGRESS_EVERY seconds in long steps), and a "still running" line after
# HEARTBEAT quiet seconds. Warnings (the kernels' stderr) and displayed tables and figures stay in the
# executed notebooks.
# --------------------------------------------------------------------------------------------------

PROGRESS_EVERY = 15  # seconds between the progress lines of training, feature caching and evaluation
HEARTBEAT = 25  # a "still running" line when nothing was printed for this long
_WIDTH = 160  # longer printed lines are cut


def _section(cells: list, index: int) -> str:
    """The last markdown heading above cell ``index`` (its first line of code when there is none)."""
    for cell in reversed(cells[:index]):
        if cell.cell_type == "markdown":
            heads = [ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("#")]
            if heads:
                return heads[-1]
    lines = [ln for ln in cells[index].source.splitlines() if ln.strip()]
    return lines[0][:60] if lines else ""


class _Narrator:
    """The demo's live lines for the notebook running now (one at a time)."""

    def __init__(self):
        self.label, self.cell, self.t_cell = "", "", 0.0
        self.last = time.monotonic()
        self.buffer = ""
        self.lock = threading.Lock()
        threading.Thread(target=self._heartbeat, daemon=True).start()

    def say(self, line: str) -> None:
        with self.lock:
            print(line[:_WIDTH], flush=True)
            self.last = time.monotonic()

    def start(self, label: str) -> None:
        self.label, self.cell = label, ""

    def cell_start(self, cells: list, index: int) -> None:
        code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
        if index not in code:
            return
        self.cell = f"{self.label} cell {code.index(index) + 1}/{len(code)}"
        self.t_cell = time.monotonic()
        tags = cells[index].metadata.get("tags", [])
        self.say(f"  {self.cell} · " + ("parameters" if "injected-parameters" in tags else _section(cells, index)))

    def stop(self) -> None:
        self.write("\n")
        self.cell = ""

    # papermill's stdout_file: the cells' printed lines, indented
    def write(self, text: str) -> None:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            line = line.split("\r")[-1].rstrip()
            if line:
                self.say("      " + line)

    def flush(self) -> None:
        pass

    def _heartbeat(self) -> None:
        while True:
            time.sleep(1.0)
            if self.cell and time.monotonic() - self.last >= HEARTBEAT:
                self.say(f"      ... still running: {self.cell}, {format_seconds(time.monotonic() - self.t_cell)} "
                         "in this cell")


_NARRATOR: _Narrator | None = None


def _narrator() -> _Narrator:
    global _NARRATOR
    if _NARRATOR is None:
        _NARRATOR = _Narrator()
    return _NARRATOR


def _register_engine() -> str:
    """papermill's nbclient engine, telling :class:`_Narrator` when each cell starts; returns its name."""
    from papermill.engines import NBClientEngine, papermill_engines

    class DemoEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            start = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                if cell_index is not None:
                    _narrator().cell_start(nb_man.nb.cells, cell_index)
                return start(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(DEMO_ENGINE, DemoEngine)
    return DEMO_ENGINE


DEMO_ENGINE = "ssuper-demo"


def _notebook(prefix: str) -> Path:
    found = sorted(NOTEBOOKS.glob(f"{prefix}_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebook notebooks/{prefix}_*.ipynb")
    return found[0]


def _execute(prefix: str, parameters: dict, tag: str = "") -> float:
    """Run one notebook with the subset of ``parameters`` its parameters cell declares; returns seconds."""
    import papermill as pm

    src = _notebook(prefix)
    declared = pm.inspect_notebook(str(src))
    params = {k: v for k, v in parameters.items() if k in declared}
    EXECUTED.mkdir(parents=True, exist_ok=True)
    out = EXECUTED / (src.stem + (f"-{tag}" if tag else "") + ".ipynb")
    label = src.name + (f" [{tag}]" if tag else "")
    print(f"\n=== {label}  {params}", flush=True)
    t0 = time.perf_counter()
    narrator = _narrator()
    narrator.start(src.name[:2] + (f" [{tag}]" if tag else ""))
    try:
        pm.execute_notebook(
            str(src), str(out), parameters=params, kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False,
            kernel_manager_class=IPC_KERNEL_MANAGER, engine_name=_register_engine(), stdout_file=narrator,
        )
    finally:
        narrator.stop()
    dt = time.perf_counter() - t0
    shown = out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out
    print(f"=== {label} done in {format_seconds(dt)} (executed copy: {shown})", flush=True)
    return dt


def _finished_run(config: str, seed: int = 0) -> Path | None:
    """The newest run of ``config`` and training ``seed`` that finished (``done.json``: max steps or early stop), or None."""
    cfg = load_config(config)
    run = latest_run(seed_run_name(cfg.name, seed), "runs")
    if run is None:
        return None
    return run if (run / "done.json").is_file() else None


def run_demo(fresh: bool = False, only: list[str] | None = None, seed: int = 0, seeds: int = 1) -> dict[str, float]:
    """Run the pipeline; returns seconds per step. ``seeds``: training seeds per demo model (0 .. seeds-1)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault(ENV_PROGRESS_EVERY, str(PROGRESS_EVERY))  # the kernels inherit it: progress lines
    if fresh:
        for p in (REPO_ROOT / DATA_ROOT, REPO_ROOT / "runs"):
            shutil.rmtree(p, ignore_errors=True)
    common = {"data_root": DATA_ROOT, "smoke": False, "seed": seed, "reuse": not fresh}
    steps = only or ["01", "02", "03", "04", "05", "06"]
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    for step in steps:
        if step == "04":
            for train_seed in range(seeds):
                for cfg in DEMO_CONFIGS:
                    name = Path(cfg).stem + (f"_seed{train_seed}" if train_seed else "")
                    done = _finished_run(cfg, train_seed) if not fresh else None
                    if done is not None:
                        print(f"\n=== 04_training [{name}]: reusing finished run {done.relative_to(REPO_ROOT)} (FRESH=1 retrains)")
                        continue
                    # the exact-resume section extends only the first run by 100 steps (the rest: 0, a reload)
                    resume = 100 if (train_seed, cfg) == (0, DEMO_CONFIGS[0]) else 0
                    times[f"04:{name}"] = _execute("04", {**common, "config": cfg, "seed": train_seed,
                                                          "resume_steps": resume}, tag=name)
        elif step == "05":
            times["05"] = _execute("05", {**common, "configs": list(DEMO_CONFIGS), "train_seeds": seeds})
        else:
            times[step] = _execute(step, common)
    times["total"] = time.perf_counter() - t_all
    _summary(times)
    return times


def _summary(times: dict[str, float]) -> None:
    """Times per step, the headline results, then where everything is (the last lines)."""
    print("\n" + "=" * 72)
    print("SSuperGAN kit demo finished")
    for k, v in times.items():
        print(f"  {k:<36s} {format_seconds(v):>8s}")
    results = REPO_ROOT / "data_stats" / "results.md"
    if results.is_file():  # the headline table: the part above "Every column"
        print("\nResults (data_stats/results.md):\n" + results.read_text().split("\nEvery column")[0].rstrip())
    figs = sorted((REPO_ROOT / "figures").glob("*.png"))
    runs = sorted(p for p in (REPO_ROOT / "runs").glob("[0-9]*-*") if p.is_dir())
    print("\nWhere things are:")
    print("  results      data_stats/results.md (headline table, then every column), data_stats/results.csv (raw values)")
    print(f"  figures      figures/ ({len(figs)} PNG files; notebook 06 regenerates them from saved artifacts)")
    print(f"  runs         runs/ ({len(runs)} runs: metrics.jsonl, samples/, checkpoints/); tensorboard --logdir runs")
    print(f"  notebooks    {EXECUTED.relative_to(REPO_ROOT)}/ (the executed copies, with every output)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fresh", action="store_true", help="delete data/synthetic and runs/ first")
    ap.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (e.g. 05 06)")
    ap.add_argument("--seed", type=int, default=0, help="evaluation seed")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per demo model (docs/results.md uses 3)")
    args = ap.parse_args(argv)
    try:
        run_demo(fresh=args.fresh, only=args.only, seed=args.seed, seeds=args.seeds)
    except Exception as exc:  # papermill errors carry the failing cell's traceback
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
