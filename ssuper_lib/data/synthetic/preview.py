"""A strip of panels per realism preset, for notebook 01 (the same series and seed at every preset)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .generator import generate
from .realism import PRESETS

__all__ = ["realism_strips"]


def realism_strips(seed: int = 0, n_panels: int = 6, presets=tuple(PRESETS), height: int = 200):
    """A matplotlib figure: one row of ``n_panels`` consecutive panels per preset (one generated series each,
    written to a temporary folder), the row titled with the preset's measured factors."""
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(len(presets), 1, figsize=(2.2 * n_panels, 2.6 * len(presets)), squeeze=False)
    with tempfile.TemporaryDirectory(prefix="realism_strip_") as tmp:
        for ax, name in zip(axes[:, 0], presets):
            m = generate(Path(tmp) / name, n_series=1, seed=seed, panels_per_series=n_panels, workers=1, realism=name)
            folder = Path(tmp) / name / "panels" / "0"
            ims = []
            for p in sorted(folder.glob("*.jpg"), key=lambda p: tuple(int(v) for v in p.stem.split("_"))):
                with Image.open(p) as im:
                    ims.append(im.convert("RGB").resize((max(1, round(im.width * height / im.height)), height)))
            strip = Image.new("RGB", (sum(i.width for i in ims) + 6 * (len(ims) - 1), height), "white")
            x = 0
            for im in ims:
                strip.paste(im, (x, 0))
                x += im.width + 6
            ax.imshow(strip)
            ax.set_axis_off()
            r = m.get("realism")
            note = "flat colours, frontal faces, near-perfect detector" if r is None else (
                f"turned {r['non_frontal_rate']:.0%}, close-ups {r['closeup_rate']:.0%}, occluded {r['occluded_rate']:.0%}, "
                f"extras in {r['extra_face_panel_rate']:.0%} of panels, print effects"
                + (", greyscale" if r["greyscale_series_rate"] else ""))
            ax.set_title(f"--realism {name}: {note}", fontsize=9, loc="left")
    fig.tight_layout()
    return fig
