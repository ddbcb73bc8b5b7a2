"""Procedural synthetic comics in the COMICS / Golden Age on-disk layout (docs/design.md 3).

The real COMICS panels (120 GB) and the detector weights are not part of the kit, so this module
writes a stand-in dataset with exactly the real layout (docs/original.md 3.1 and 4.4)::

    <root>/panels/<series>/<page>_<panel>.jpg   JPEG panels, sizes drawn around the real statistics
    <root>/annotations/<series>.txt             detector-style lines "<series>/<page>_<panel>.jpg x1 y1 x2 y2 conf"
    <root>/ground_truth.csv                     true face boxes and character ids (evaluation only)
    <root>/manifest.json                        generator version, seed, counts, cast attributes

Why it is a useful testbed for the paper's claim: every series has a recurring cast of 2-4 characters
whose identity (skin tone, hair colour and style, eye colour, face shape, shirt colour, accessories) is
drawn in large, bold blocks in every panel, and a scene keeps the same characters over several
consecutive panels. The panels before a masked face therefore really do predict it, and the gain of
context over no context can be measured (docs/design.md 7).

The annotation files simulate a real detector's raw output (before SSuperGAN's own filtering): every
true face detected with a jittered box and high confidence (a few missed), overlapping duplicates that
NMS at IoU 0.2 removes, low-confidence false positives that the 0.9 threshold removes, and a rare
high-confidence false positive. ``ground_truth.csv`` keeps the true boxes.

Determinism: each series is drawn from its own random stream seeded by ``(seed, series)``, so the
output is byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..comics import Box, natural_key, write_annotation_file
from .cast import _make_cast
from .detector import _detections, _detections_calibrated
from .realism import PRESETS, REALISM_STREAM, Realism, realism_block, realism_preset, series_draws
from .story import JPEG_QUALITY, _Story
from .draw import _render_panel
from .panels import DEFAULT_PANELS_PER_SERIES, PANEL_RANGE, PANEL_SIZE, _int_box, _new_scene, _panel_size

__all__ = ["GENERATOR_VERSION", "generate", "main"]

GENERATOR_VERSION = "1.0"


def _generate_series(job: tuple[str, int, int, int | None, Realism, int]) -> dict:
    """Write one series (panels + annotation file); returns its ground truth, cast and counts."""
    out, seed, s, n_panels, realism, n_series = job
    rng = np.random.default_rng([seed, s])
    cast = _make_cast(rng, s)
    if n_panels is None:
        n_panels = int(rng.integers(DEFAULT_PANELS_PER_SERIES[0], DEFAULT_PANELS_PER_SERIES[1] + 1))
    folder = Path(out) / "panels" / str(s)
    folder.mkdir(parents=True, exist_ok=True)
    counts = {"detection": 0, "duplicate": 0, "false_positive_low": 0, "false_positive_high": 0, "missed": 0}
    story = _Story(realism, np.random.default_rng([seed, s, REALISM_STREAM]), s, cast,
                   series_draws(realism, seed, n_series, s))
    gt_rows: list[list] = []
    ann_rows: list[tuple[str, Box]] = []
    page, panel_in_page, page_len = 0, 0, int(rng.integers(3, 9))
    scene, scene_left = None, 0
    faceless = 0
    for _ in range(n_panels):
        if scene_left == 0:
            scene = _new_scene(rng, cast)
            scene_left = scene["length"]
            story.new_scene()
        scene_left -= 1
        W, H = _panel_size(rng)
        k = int(rng.choice([0, 1, 2, 3], p=[0.07, 0.5, 0.33, 0.10]))
        members = list(scene["members"])
        chosen = [members[int(i)] for i in rng.permutation(len(members))[: min(k, len(members))]]
        others = [i for i in range(len(cast)) if i not in chosen]
        while len(chosen) < k and others:  # a guest from the rest of the cast
            chosen.append(others.pop(int(rng.integers(len(others)))))
        chars, real = story.panel([cast[i] for i in chosen], W, H)
        img, placed = _render_panel(rng, W, H, scene, chars, real)
        img, quality = story.printed(img)
        name = f"{page}_{panel_in_page}.jpg"
        key = f"{s}/{name}"
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        (folder / name).write_bytes(buf.getvalue())
        true_boxes = [_int_box(b, W, H) for b, _ in placed]
        if not placed:
            faceless += 1
        for tb, (_, ch) in zip(true_boxes, placed):
            gt_rows.append([key, *tb, ch["id"], str(s)])
        if realism.detector == "calibrated":
            boxes = _detections_calibrated(story.rr, true_boxes, W, H, counts, realism,
                                           *story.detector_hints(true_boxes, W, H, placed, real))
        else:
            boxes = _detections(rng, true_boxes, W, H, counts)
        story.count_panel(true_boxes, W, H, placed, real, boxes)
        ann_rows.extend((key, box) for box in boxes)
        panel_in_page += 1
        if panel_in_page == page_len:
            page, panel_in_page, page_len = page + 1, 0, int(rng.integers(3, 9))
            story.new_page()
    write_annotation_file(Path(out) / "annotations" / f"{s}.txt", ann_rows)
    return {
        "series": str(s),
        "cast": cast,
        "n_panels": n_panels,
        "n_pages": page + (1 if panel_in_page else 0),
        "n_faces": len(gt_rows),
        "n_faceless_panels": faceless,
        "annotation_lines": counts,
        "gt_rows": gt_rows,
        "realism": story.counter.to_dict(),
        "detection": story.detection,
    }


_OWNED = ("panels", "annotations", "ground_truth.csv", "manifest.json")
# Preprocessing outputs derived from a previous dataset; stale once the panels are regenerated.
_DERIVED = ("sequences.json", "faces", "faces_margin", "split.json")


def generate(
    out: str | Path,
    n_series: int = 40,
    seed: int = 0,
    panels_per_series: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    realism: str | Realism = "clean",
) -> dict:
    """Write a synthetic COMICS-layout dataset to ``out`` and return its manifest.

    ``panels_per_series`` fixes the panel count of every series; by default each series draws it from
    ``DEFAULT_PANELS_PER_SERIES`` (120-150, so 40 series give > 5,000 panels). ``workers`` processes
    share the series (default: all cores); the output does not depend on it. An existing dataset in
    ``out`` is an error unless ``overwrite=True``, which replaces it and removes stale preprocessing
    outputs (sequences.json, faces/, faces_margin/, split.json). ``realism``: a preset name (``clean``,
    ``real``, ``hard``) or a :class:`~.realism.Realism`; ``clean`` writes today's data byte for byte, the others
    add a ``realism`` block (knobs and measured rates) to the manifest.
    """
    realism = realism_preset(realism)
    out = Path(out)
    if n_series < 1:
        raise ValueError(f"n_series must be >= 1, got {n_series}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if panels_per_series is not None and panels_per_series < 1:
        raise ValueError(f"panels_per_series must be >= 1 or None, got {panels_per_series}")
    _clear_out(out, overwrite)
    jobs = [(str(out), int(seed), s, panels_per_series, realism, n_series) for s in range(n_series)]
    results = _run_series(jobs, n_series, workers, progress)
    _write_ground_truth(out, results)
    manifest = _manifest(results, seed, panels_per_series)
    if not realism.is_clean:
        manifest["realism"] = realism_block(realism, [r["realism"] for r in results], _detection_rates(results))
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest


def _clear_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing dataset in ``out`` unless ``overwrite``; then remove it and its derived outputs."""
    existing = [n for n in _OWNED if (out / n).exists()]
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a dataset ({', '.join(existing)}); pass overwrite=True (CLI: --overwrite) "
                "to replace it, or choose another --out"
            )
        for n in _OWNED + _DERIVED:
            p = out / n
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / "panels").mkdir(exist_ok=True)
    (out / "annotations").mkdir(exist_ok=True)


def _run_series(jobs: list[tuple], n_series: int, workers: int | None, progress: bool) -> list[dict]:
    """Every series' result, in natural series order, from ``workers`` processes (or this one)."""
    workers = min(n_series, workers if workers is not None else (os.cpu_count() or 1))
    results: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_series, desc="synthetic series", unit="series")
    if workers <= 1:
        for job in jobs:
            results.append(_generate_series(job))
            if bar is not None:
                bar.update(1)
    else:
        with get_context("fork" if sys.platform.startswith("linux") else "spawn").Pool(workers) as pool:
            for r in pool.imap(_generate_series, jobs, chunksize=1):
                results.append(r)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    results.sort(key=lambda r: natural_key(r["series"]))
    return results


def _write_ground_truth(out: Path, results: list[dict]) -> None:
    with open(out / "ground_truth.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["panel", "x1", "y1", "x2", "y2", "character", "series"])
        for r in results:
            w.writerows(r["gt_rows"])


def _manifest(results: list[dict], seed: int, panels_per_series: int | None) -> dict:
    """The manifest: generator version, seed, layout, counts, settings and every series' cast."""
    kinds = ("detection", "duplicate", "false_positive_low", "false_positive_high")
    lines = {k: sum(r["annotation_lines"][k] for r in results) for k in kinds}
    return {
        "generator": "ssuper_lib.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "panels_per_series": panels_per_series,
        "layout": {
            "panels": "panels/<series>/<page>_<panel>.jpg",
            "annotations": "annotations/<series>.txt (<series>/<page>_<panel>.jpg x1 y1 x2 y2 conf)",
            "ground_truth": "ground_truth.csv (panel,x1,y1,x2,y2,character,series)",
        },
        "counts": {
            "series": len(results),
            "panels": sum(r["n_panels"] for r in results),
            "pages": sum(r["n_pages"] for r in results),
            "faces": sum(r["n_faces"] for r in results),
            "faceless_panels": sum(r["n_faceless_panels"] for r in results),
            "characters": sum(len(r["cast"]) for r in results),
            "missed_faces": sum(r["annotation_lines"]["missed"] for r in results),
            "annotation_lines": {**lines, "total": sum(lines.values())},
        },
        "settings": {
            "panel_size": PANEL_SIZE,
            "panel_range": list(PANEL_RANGE),
            "jpeg_quality": JPEG_QUALITY,
            "face_side_px": [24, 200],
        },
        "series": {
            r["series"]: {
                "n_panels": r["n_panels"],
                "n_pages": r["n_pages"],
                "n_faces": r["n_faces"],
                "annotation_lines": r["annotation_lines"],
                "cast": r["cast"],
            }
            for r in results
        },
    }


def _detection_rates(results: list[dict]) -> dict:
    """Recall and precision at IoU 0.5 of the annotation files after the 0.9 threshold and NMS 0.2."""
    tp = sum(r["detection"]["true_positives"] for r in results)
    kept = sum(r["detection"]["kept"] for r in results)
    faces = sum(r["detection"]["faces"] for r in results)
    return {"recall": round(tp / faces, 4) if faces else 0.0, "precision": round(tp / kept, 4) if kept else 0.0,
            "iou": 0.5, "conf_thold": 0.9, "nms_iou": 0.2, "true_positives": tp, "kept": kept, "faces": faces}


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m ssuper_lib.data.synthetic --out data/synthetic --series 40 --seed 0``."""
    ap = argparse.ArgumentParser(prog="ssuper-synth", description="Write a synthetic COMICS-layout dataset.")
    ap.add_argument("--out", default="data/synthetic", help="output root (relative paths: to the current directory)")
    ap.add_argument("--series", type=int, default=40, help="number of series (folders 0..N-1)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed -> byte-identical output)")
    ap.add_argument("--panels-per-series", type=int, default=None, help="fixed panels per series (default: 120-150 drawn)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    ap.add_argument("--realism", choices=sorted(PRESETS), default="clean",
                    help="realism preset (docs/data.md): clean = flat colours, near-perfect detector (the default); "
                         "real = costume changes, look-alikes, turned heads, close-ups, occlusion, extras, greyscale "
                         "series, print effects and a calibrated detector; hard = more of each")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        m = generate(args.out, args.series, args.seed, args.panels_per_series, args.workers, args.overwrite,
                     progress=True, realism=args.realism)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    c = m["counts"]
    print(
        f"wrote {c['panels']} panels in {c['series']} series, {c['faces']} faces, "
        f"{c['annotation_lines']['total']} annotation lines to {args.out} in {dt:.1f} s "
        f"({c['panels'] / dt:.0f} panels/s)"
    )
    if "realism" in m:
        r = m["realism"]
        rates = ", ".join(f"{k.replace('_rate', '')} {r[k]:.2f}" for k in r if k.endswith("_rate"))
        print(f"realism {args.realism}: {rates}; detector recall {r['detector']['recall']:.2f}, "
              f"precision {r['detector']['precision']:.2f} (IoU 0.5, conf 0.9, NMS 0.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
