"""Paper figures from saved artifacts: the functions behind notebook 06 (and the figures of 01-05).

"Compute once, plot many times": notebooks 01-05 write their numbers to ``data_stats/`` and ``runs/``;
this module only reads those artifacts and draws. Everything goes through :func:`ssuper_lib.viz.save_figure`
(fixed dpi, no metadata), so the same artifacts always give byte-identical PNG files.

The reconstruction grids mirror the original README's ``res1.png`` / ``res2.png`` (docs/original.md 7): per
sequence Panel 1, Panel 2, Panel 3 (masked, as the model sees it) and Original (true face); then per model
Global Recon (G(mu) pasted into panel 3) and Recon (G(mu) at 64x64). The generated faces come from
``runs/<run>/eval/recon_examples.npz``, written once by :func:`export_recon_examples` (notebook 05).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .config import resolve_path
from .data import stats
from .data.datasets import PanelSequenceDataset, match_ground_truth
from .detect import plot_detection_evaluation
from .evaluate import (counts_line, generate_faces, model_label, plot_context_gain, plot_results_table, results_table,
                       training_faces)
from .evaluate import baselines as B
from .models.discriminator import paste_faces
from .models.summary import PART_NAMES
from .preprocess.exemplars import candidate_characters, exemplar_fields, load_or_build_exemplars
from .runs import eval_cache_dir, load_run, read_metrics
from .viz import save_figure

__all__ = [
    "export_recon_examples",
    "load_recon_examples",
    "plot_recon_grid",
    "export_baseline_examples",
    "plot_exemplar_attention",
    "plot_parameter_breakdown",
    "plot_training_curves",
    "regenerate_all",
]

RECON_FILE = "recon_examples.npz"


def _u8(x) -> np.ndarray:
    """[-1, 1] tensor/array (..., 3, H, W) -> uint8 (..., H, W, 3)."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float32)
    a = np.clip((a + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.moveaxis(a, -3, -1)


def export_recon_examples(run_dir: str | Path, n: int = 6, seed: int = 0, overwrite: bool = False) -> Path:
    """Generate G(mu) for ``n`` fixed test sequences of a run and save them as uint8 arrays.

    The sequences are chosen from the test split by ``seed`` alone, so every run on the same data shows
    the same sequences. Returns ``runs/<run>/eval/recon_examples.npz`` (kept when present, unless ``overwrite``).
    """
    run_dir = Path(run_dir)
    out_path = run_dir / "eval" / RECON_FILE
    if out_path.is_file() and not overwrite:
        return out_path
    cfg, model = load_run(run_dir)
    ds = PanelSequenceDataset.from_config(cfg.data, "test")
    if len(ds) == 0:
        raise ValueError(f"{run_dir}: the test split of {cfg.data.sequence_path} is empty")
    idx = _example_indices(len(ds), n, seed)
    items = [ds[int(i)] for i in idx]
    panels = torch.stack([it["panels"] for it in items])  # (n, 3, 3, H, W), chronological
    coords = torch.stack([it["mask_coords"] for it in items])  # (n, 4)
    masks = torch.stack([it["mask"] for it in items])
    extra, arrays = None, {}
    if cfg.model.variant == "ssuper_exemplar":
        ex = load_or_build_exemplars(cfg.data, ds.samples, cfg.model.exemplar_k, cfg.model.exemplar_ctx_size)
        extra = exemplar_fields(ex, torch.as_tensor(idx))
        arrays = {"cand_face": ex.cand_face[torch.as_tensor(idx)].permute(0, 1, 3, 4, 2).numpy(),
                  "cand_valid": ex.cand_valid[torch.as_tensor(idx)].numpy()}
    with torch.no_grad():
        mpos = cfg.data.masked_index  # index of the masked panel
        out = generate_faces(model, panels, masks, coords, extra=extra, masked_pos=mpos)
        recon = out["face"].clamp(-1, 1)  # (n, 3, 64, 64)
        pasted = paste_faces(panels[:, mpos], recon, coords)  # (n, 3, H, W)
    if "attn" in out:
        arrays["attn"] = out["attn"].numpy()  # (n, 1 + C): slot 0 = null candidate
    path = run_dir / "eval" / RECON_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        panels=_u8(panels),
        face=_u8(torch.stack([it["face"] for it in items])),
        recon=_u8(recon),
        pasted=_u8(pasted),
        indices=idx,
        series=np.array([it["series"] for it in items]),
        label=np.array(model_label(cfg)),
        run=np.array(run_dir.name),
        **arrays,
    )
    tmp.replace(path)
    return path


def _example_indices(n_total: int, n: int, seed: int) -> np.ndarray:
    """The fixed test sequences of the reconstruction figures: chosen by ``seed`` alone."""
    return np.sort(np.random.default_rng(seed).choice(n_total, size=min(n, n_total), replace=False))


def export_baseline_examples(cfg, out_dir: str | Path = "runs/baselines", n: int = 6, seed: int = 0) -> Path:
    """The baselines' faces (:mod:`ssuper_lib.evaluate.baselines`) on the same fixed test sequences as
    :func:`export_recon_examples`, one ``<out_dir>/<name>/eval/recon_examples.npz`` each; returns ``out_dir``."""
    out_dir = resolve_path(out_dir)
    ds = PanelSequenceDataset.from_config(cfg.data, "test")
    idx = _example_indices(len(ds), n, seed)
    items = [ds[int(i)] for i in idx]
    panels = torch.stack([it["panels"] for it in items])
    coords = torch.stack([it["mask_coords"] for it in items])
    ex = load_or_build_exemplars(cfg.data, ds.samples, cfg.model.exemplar_k, cfg.model.exemplar_ctx_size).subset(idx)
    cache = eval_cache_dir(cfg)
    mean = B.mean_training_face(training_faces(PanelSequenceDataset.from_config(cfg.data, "train"), cache))
    samples = [ds.samples[int(i)] for i in idx]
    gt = cfg.data.ground_truth_path
    kw: dict = {"seed": seed}
    names = [k for k in B.BASELINES if k != "oracle_context_face"]
    if gt and resolve_path(gt).is_file():
        kw.update(cand_chars=candidate_characters(ex, samples, resolve_path(gt)),
                  target_chars=[g["target_character"] for g in match_ground_truth(samples, resolve_path(gt))])
        names.append("oracle_context_face")
    for name in names:
        faces = B.baseline_faces(name, ex, mean, **kw).clamp(-1, 1)
        path = out_dir / name / "eval" / RECON_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, panels=_u8(panels), face=_u8(torch.stack([it["face"] for it in items])),
                            recon=_u8(faces), pasted=_u8(paste_faces(panels[:, -1], faces, coords)), indices=idx,
                            series=np.array([it["series"] for it in items]), label=np.array(B.BASELINES[name]),
                            run=np.array(name), baseline=np.array(True))
        tmp.replace(path)
    return out_dir


def load_recon_examples(run_dir: str | Path) -> dict[str, np.ndarray]:
    path = Path(run_dir) / "eval" / RECON_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run notebook 05 (export_recon_examples) for this run first")
    with np.load(path) as z:
        out = {k: z[k] for k in z.files}
    out["baseline"] = bool(out.get("baseline", False))
    return out


def plot_recon_grid(examples: Sequence[dict[str, np.ndarray]], max_rows: int = 6) -> plt.Figure:
    """res1/res2-style grid: Panel 1 | Panel 2 | Panel 3 | Original | per model: Global Recon | Recon."""
    if not examples:
        raise ValueError("no reconstruction examples to draw")
    ref = examples[0]
    for ex in examples[1:]:
        if not np.array_equal(ex["indices"], ref["indices"]):
            raise ValueError("runs were exported on different test sequences; export them with the same seed")
    rows = min(max_rows, len(ref["indices"]))
    models = [ex for ex in examples if not bool(ex.get("baseline", False))]
    bases = [ex for ex in examples if bool(ex.get("baseline", False))]
    cols = 4 + 2 * len(models) + len(bases)
    fig, axes = plt.subplots(rows, cols, figsize=(1.55 * cols, 1.6 * rows + 0.4), squeeze=False)
    titles = ["Panel 1", "Panel 2", "Panel 3", "Original"]
    for ex in models:
        titles += [f"{_wrap(str(ex['label']))}\nGlobal Recon", f"{_wrap(str(ex['label']))}\nRecon"]
    titles += [_wrap(str(ex["label"])) for ex in bases]
    for r in range(rows):
        images = [ref["panels"][r, 0], ref["panels"][r, 1], ref["panels"][r, 2], ref["face"][r]]
        for ex in models:
            images += [ex["pasted"][r], ex["recon"][r]]
        images += [ex["recon"][r] for ex in bases]
        for c, img in enumerate(images):
            ax = axes[r, c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
        axes[r, 0].set_ylabel(f"series {ref['series'][r]}", fontsize=7)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int = 18) -> str:
    return "\n".join(textwrap.wrap(text.replace("Baseline: ", ""), width)) or text


def plot_exemplar_attention(example: dict[str, np.ndarray], max_rows: int = 6) -> plt.Figure:
    """Attention over the context faces for a few test sequences of an Exemplar-SSuperGAN run: the masked
    panel, the true face, every candidate face of p1/p2 with its attention weight (the chosen one framed),
    the null candidate's weight, and the generated face."""
    if "attn" not in example:
        raise ValueError(f"{example.get('run')}: no attention in these examples (not an Exemplar-SSuperGAN run)")
    attn, cands, valid = example["attn"], example["cand_face"], example["cand_valid"]
    rows = min(max_rows, len(attn))
    C = cands.shape[1]
    cols = 3 + C + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols, 1.35 * rows + 0.5), squeeze=False)
    for r in range(rows):
        pick = int(np.argmax(attn[r])) - 1  # -1 = null
        tiles = [(example["panels"][r, 2], "masked panel"), (example["face"][r], "true face")]
        for c in range(C):
            tiles.append((cands[r, c] if valid[r, c] else None, f"{attn[r, c + 1]:.2f}" if valid[r, c] else "-"))
        tiles.append((None, f"null {attn[r, 0]:.2f}"))
        tiles.append((example["recon"][r], "generated"))
        for c, (img, title) in enumerate(tiles):
            ax = axes[r, c]
            if img is not None:
                ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
            if 2 <= c < 2 + C and c - 2 == pick:
                for sp in ax.spines.values():
                    sp.set_edgecolor("red")
                    sp.set_linewidth(2.5)
    fig.suptitle(f"{example['label']}: attention over the context faces (red: chosen exemplar)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_parameter_breakdown(summary: pd.DataFrame) -> plt.Figure:
    """Stacked horizontal bars of parameters per part for each variant (``data_stats/model_params.csv``)."""
    parts = [p for p in PART_NAMES if p in summary and summary[p].fillna(0).sum() > 0]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    left = pd.Series(0.0, index=summary.index)
    colors = plt.get_cmap("tab10")
    for i, part in enumerate(parts):
        values = summary[part].fillna(0) / 1e6
        ax.barh(summary["model"], values, left=left, label=part, color=colors(i))
        left += values
    for y, total in enumerate(summary["total"] / 1e6):
        ax.text(total + 1, y, f"{total:.1f}M", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("parameters (millions)")
    ax.set_title("Parameter breakdown of the nine SSuperGAN variants")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_xlim(0, float(left.max()) * 1.15)
    return fig


def plot_training_curves(run_dirs: Sequence[str | Path], keys: Sequence[str] = ("recon", "kl", "d_local", "g_adv")) -> plt.Figure:
    """One panel per loss, one line per run (from each run's ``metrics.jsonl``)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3.0), squeeze=False)
    for run in run_dirs:
        records = read_metrics(run)
        steps = [r["step"] for r in records]
        for ax, key in zip(axes[0], keys):
            if any(key in r for r in records):
                ax.plot(steps, [r.get(key, np.nan) for r in records], lw=1.2, label=Path(run).name)
    for ax, key in zip(axes[0], keys):
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def regenerate_all(
    stats_dir: str | Path = "data_stats",
    figures_dir: str | Path = "figures",
    run_dirs: Sequence[str | Path] = (),
    conf_thold: float = 0.9,
    face_thold: int = 32,
    baselines_dir: str | Path | None = "runs/baselines",
) -> list[Path]:
    """Redraw every figure from artifacts; returns the written paths. Missing artifacts raise with the
    notebook that makes them."""
    sd, fd = resolve_path(stats_dir), resolve_path(figures_dir)

    def need(name: str, notebook: str) -> Path:
        p = sd / name
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: run notebook {notebook} first")
        return p

    written: list[Path] = []

    def save(fig: plt.Figure, name: str) -> None:
        written.extend(save_figure(fig, name, out_dir=fd))
        plt.close(fig)

    # series names are folder names: keep them strings ("0", "12"), as the scan wrote them
    panels = pd.read_csv(need("panels.csv", "01"), dtype={"series": str, "file": str, "error": str})
    panels["readable"] = panels["readable"].astype(bool)
    summary = json.loads(need("panels_summary.json", "01").read_text())
    faces = pd.read_csv(need("faces.csv", "01"), dtype={"series": str, "panel": str})
    save(stats.plot_panel_sizes(panels, summary), "06_panel_sizes")
    save(stats.plot_width_vs_height(panels), "06_width_vs_height")
    save(stats.plot_faces_per_panel(faces, panels, conf_thold), "06_faces_per_panel")
    save(stats.plot_face_sizes(faces, conf_thold, face_thold), "06_face_sizes")
    save(stats.plot_confidences(faces, conf_thold), "06_confidences")
    save(plot_detection_evaluation(pd.read_csv(need("detections.csv", "02"))), "06_detection_eval")
    save(plot_parameter_breakdown(pd.read_csv(need("model_params.csv", "03"))), "06_parameter_breakdown")
    runs = [resolve_path(r) for r in run_dirs]
    if runs:
        save(plot_training_curves(runs), "06_training_curves")
    results = pd.read_csv(need("results.csv", "05"))
    rows = [r for r in results.to_dict("records") if r.get("kind") != "seed run"]  # per-seed rows: CSV only
    save(plot_results_table(results_table(rows), counts_line(rows)), "06_results_table")
    save(plot_context_gain(rows), "06_context_gain")
    if runs:
        examples = [load_recon_examples(r) for r in runs]
        bdir = resolve_path(baselines_dir) if baselines_dir else None
        if bdir is not None and bdir.is_dir():
            examples += [load_recon_examples(bdir / name) for name in B.BASELINES if (bdir / name / "eval" / RECON_FILE).is_file()]
        save(plot_recon_grid(examples), "06_reconstructions")
        for ex in examples:
            if "attn" in ex:
                save(plot_exemplar_attention(ex), "06_exemplar_attention")
                break
    return written
