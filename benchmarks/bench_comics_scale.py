"""Preprocessing at the size of the real COMICS data set: 3,958 series, 1.23 M panels.

    python benchmarks/bench_comics_scale.py                  # generate once, then 10%, 50%, 100%
    python benchmarks/bench_comics_scale.py --scales 0.1     # one scale only
    python benchmarks/bench_comics_scale.py --root /big/disk/comics_scale   # keep the generated tree

**The data.** ``generate_comics_scale`` writes the real layout at full scale: ``panels/<series>/<page>_<panel>.jpg``
for 3,958 series (panel counts drawn around the real mean of ~311 per series, 1,230,000 in total, pages of
4-8 panels) and detector-style ``annotations/<series>.txt``. The 1.23 M panel files are hard links to a pool
of 48 real synthetic JPEG panels (sizes around the real statistics), so the directory listing and every
image-header read is real while the disk holds only the pool. The annotation lines imitate the detector
(docs/original.md 4.1; docs/design.md 3): ~55% of panels hold 1-3 faces with confidences 0.9-1.0, each face has a
30% chance of a jittered duplicate (removed by NMS) and a 20% chance of a low-confidence false positive
(removed by the 0.9 threshold); some faces are smaller than the 32 px size rule.

**The stages** (what ``ssuper_lib.preprocess.run_preprocessing`` does, face crops excluded: they are a
separate, parallel, I/O-bound job): reading + filtering the annotations; listing the panels on disk and
reading the image sizes of the panels with faces (headers only); building the sequences and writing the
sequence JSON; the series split (``split.json``, train/test samples). Each scale (the first 10%, 50%,
100% of the series) runs in a fresh process, which reports the seconds of each stage
(``PreprocessReport.stage_seconds``), its CPU seconds (``time.process_time``: what the run costs, whatever
else shares the machine) and its peak RSS (``ru_maxrss``). The page cache is warm (the tree was
just written or read; by default the tree lives on tmpfs, ``/dev/shm``, where creating 1.23 M links takes
~40 s instead of ~30 min on a VM disk); on a cold network disk the listing and header reads take longer.

Writes ``data_stats/bench_comics_scale.csv`` and prints the table. Target: the 100% run in
<= 2 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CSV = REPO / "data_stats" / "bench_comics_scale.csv"

N_SERIES = 3958
N_PANELS = 1_230_000
POOL = 48


def _panel_counts(rng: np.random.Generator) -> np.ndarray:
    """Panels per series: around the real mean (~311), summing exactly to N_PANELS."""
    counts = np.maximum(rng.normal(N_PANELS / N_SERIES, 90, N_SERIES), 30).astype(np.int64)
    diff = N_PANELS - int(counts.sum())
    np.add.at(counts, rng.integers(0, N_SERIES, abs(diff)), int(np.sign(diff)))  # spread the rounding error
    return counts


def generate_comics_scale(root: Path, seed: int = 0, progress: bool = True) -> dict:
    """Write the full-scale tree under ``root`` (see the module docstring); returns a small manifest."""
    from PIL import Image

    from ssuper_lib.data.synthetic import generate

    t0 = time.perf_counter()
    pool_root = root / "pool"
    generate(pool_root, n_series=2, seed=seed, panels_per_series=POOL // 2)
    pool = sorted((pool_root / "panels").glob("*/*.jpg"))[:POOL]
    sizes = []
    for p in pool:
        with Image.open(p) as im:
            sizes.append(im.size)
    rng = np.random.default_rng(seed)
    counts = _panel_counts(rng)
    panels_dir, annot_dir = root / "panels", root / "annotations"
    annot_dir.mkdir(parents=True, exist_ok=True)
    n_lines = 0
    for s, n in enumerate(counts):
        d = panels_dir / str(s)
        d.mkdir(parents=True, exist_ok=True)
        lines = []
        page, k = 0, 0
        per_page = int(rng.integers(4, 9))
        which = rng.integers(0, len(pool), n)
        n_faces = rng.choice(4, n, p=[0.45, 0.35, 0.15, 0.05])
        for i in range(n):
            if k == per_page:
                page, k, per_page = page + 1, 0, int(rng.integers(4, 9))
            name = f"{page}_{k}.jpg"
            k += 1
            os.link(pool[which[i]], d / name)
            w, h = sizes[which[i]]
            for _ in range(n_faces[i]):
                side = int(rng.integers(24, max(25, min(w, h) // 2)))
                x1, y1 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
                lines.append(f"{s}/{name} {x1} {y1} {x1 + side} {y1 + side} {rng.uniform(0.9, 1.0):.4f}\n")
                if rng.random() < 0.3:  # a jittered duplicate: NMS removes it
                    j = int(side * 0.05) + 1
                    dx, dy = int(rng.integers(-j, j + 1)), int(rng.integers(-j, j + 1))
                    lines.append(f"{s}/{name} {max(0, x1 + dx)} {max(0, y1 + dy)} {min(w, x1 + side + dx)} "
                                 f"{min(h, y1 + side + dy)} {rng.uniform(0.9, 0.99):.4f}\n")
                if rng.random() < 0.2:  # a low-confidence false positive: the threshold removes it
                    fx, fy = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 30))
                    lines.append(f"{s}/{name} {fx} {fy} {fx + 30} {fy + 30} {rng.uniform(0.3, 0.9):.4f}\n")
        (annot_dir / f"{s}.txt").write_text("".join(lines))
        n_lines += len(lines)
        if progress and s % 500 == 0:
            print(f"  generated {s}/{N_SERIES} series ({time.perf_counter() - t0:.0f} s)", flush=True)
    manifest = {"series": N_SERIES, "panels": int(counts.sum()), "annotation_lines": n_lines, "pool": len(pool),
                "seconds": round(time.perf_counter() - t0, 1)}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def scale_root(root: Path, frac: float) -> Path:
    """A root holding the first ``frac`` of the series (symbolic links to the full tree's folders and files)."""
    n = max(1, round(N_SERIES * frac))
    if n == N_SERIES:
        return root
    sub = root / f"scale_{int(round(frac * 100))}"
    if (sub / "done").is_file():
        return sub
    shutil.rmtree(sub, ignore_errors=True)
    (sub / "panels").mkdir(parents=True)
    (sub / "annotations").mkdir(parents=True)
    for s in range(n):
        os.symlink(root / "panels" / str(s), sub / "panels" / str(s))
        os.symlink(root / "annotations" / f"{s}.txt", sub / "annotations" / f"{s}.txt")
    (sub / "done").write_text("")
    return sub


def run_one(root: Path, out: Path) -> dict:
    """Preprocess ``root`` (no face crops) in this process; stage seconds, counts and peak RSS."""
    from ssuper_lib.config import DataConfig
    from ssuper_lib.preprocess import run_preprocessing

    cfg = DataConfig(panel_path=str(root / "panels"), annot_path=str(root / "annotations"),
                     sequence_path=str(out / "sequences.json"), faces_path=str(out / "faces"), ground_truth_path=None)
    t0, c0 = time.perf_counter(), time.process_time()
    rep = run_preprocessing(cfg, progress=False, write_faces=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "stages": {k: round(v, 2) for k, v in rep.stage_seconds.items()},
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "series": rep.series, "panels": rep.panels_total, "boxes": rep.boxes_read, "panels_with_faces": rep.panels_with_faces,
            "samples": rep.samples, "train_samples": rep.train_samples, "test_samples": rep.test_samples,
            "json_mb": round((out / "sequences.json").stat().st_size / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=None, help="where to generate (or reuse) the tree; default: a temporary folder")
    p.add_argument("--scales", nargs="*", type=float, default=[0.1, 0.5, 1.0])
    p.add_argument("--quick", action="store_true", help="10% only")
    p.add_argument("--run-one", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)  # child process
    a = p.parse_args(argv)
    if a.run_one:
        print(json.dumps(run_one(Path(a.run_one[0]), Path(a.run_one[1]))))
        return 0
    scales = [0.1] if a.quick else a.scales
    tmp = None
    if a.root:
        root = Path(a.root)
    else:
        # tmpfs when there is one: 1.23 M hard links cost ~1 ms each on a VM's ext4 disk, ~30 us in RAM
        shm = Path("/dev/shm")
        tmp = tempfile.mkdtemp(prefix="bench_comics_scale_", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None)
        root = Path(tmp) / "comics"
    try:
        if (root / "manifest.json").is_file():
            manifest = json.loads((root / "manifest.json").read_text())
            print(f"reusing {root}: {manifest}")
        else:
            print(f"generating {N_SERIES} series / {N_PANELS} panels under {root} ...", flush=True)
            manifest = generate_comics_scale(root)
            print(f"generated: {manifest}", flush=True)
        rows = []
        host = f"{platform.node()} ({os.cpu_count()} CPUs)"
        for frac in scales:
            sub = scale_root(root, frac)
            out = root / f"out_{int(round(frac * 100))}"
            shutil.rmtree(out, ignore_errors=True)
            load = os.getloadavg()[0]
            res = subprocess.run([sys.executable, __file__, "--run-one", str(sub), str(out)], capture_output=True, text=True,
                                 cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            if res.returncode:
                print(res.stdout, res.stderr, file=sys.stderr)
                return res.returncode
            r = json.loads(res.stdout.strip().splitlines()[-1])
            row = {"scale": frac, **{k: v for k, v in r.items() if k != "stages"},
                   **{f"{k}_s": v for k, v in r["stages"].items()}, "load1": round(load, 1), "host": host}
            rows.append(row)
            print(f"{int(frac * 100)}%: {r['series']} series, {r['panels']} panels, {r['boxes']} boxes -> {r['samples']} samples "
                  f"in {r['seconds']} s wall, {r['cpu_seconds']} s CPU ({r['stages']}), peak RSS {r['peak_rss_gb']} GiB", flush=True)
        df = pd.DataFrame(rows)
        if CSV.is_file():
            old = pd.read_csv(CSV)
            df = pd.concat([old[~old["scale"].isin(df["scale"])], df], ignore_index=True).sort_values("scale")
        df.to_csv(CSV, index=False)
        with pd.option_context("display.width", 250, "display.max_columns", None):
            print(df.to_string(index=False))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
