"""Detection plots and notebook 02's viewer: a panel with its kept / removed boxes, the box-count line, the
ipywidgets viewer and the precision / recall curves over confidence thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..data.comics import Annotations, Box, natural_key
from .filters import filter_panel_boxes

__all__ = ["plot_panel_detections", "count_text", "detection_viewer", "plot_detection_evaluation"]

_REMOVED_STYLE = {"conf": ("tab:orange", ":"), "nms": ("tab:purple", "--"), "size": ("tab:red", "-.")}


def plot_panel_detections(ax, image, boxes: list[Box], conf_thold: float = 0.9, nms_iou: float = 0.2, face_thold: int = 32,
                          title: str = "") -> tuple[list[Box], list[tuple[Box, str]]]:
    """Draw a panel with its kept boxes (green, with score) and removed boxes (dashed, coloured by the stage
    that removed them). Returns ``(kept, removed)`` as :func:`filter_panel_boxes`."""
    from matplotlib.patches import Rectangle

    kept, removed = filter_panel_boxes(boxes, conf_thold, nms_iou, face_thold)
    ax.imshow(image)
    for b, why in removed:
        colour, ls = _REMOVED_STYLE[why]
        ax.add_patch(Rectangle((b.x1, b.y1), b.width, b.height, fill=False, ec=colour, ls=ls, lw=1.5))
        ax.text(b.x1, b.y2, f"{why} {b.conf:.2f}", color=colour, fontsize=7, va="top")
    for b in kept:
        ax.add_patch(Rectangle((b.x1, b.y1), b.width, b.height, fill=False, ec="lime", lw=2))
        ax.text(b.x1, b.y1, f"{b.conf:.2f}", color="lime", fontsize=8, va="bottom",
                bbox=dict(fc="black", alpha=0.5, pad=1, lw=0))
    ax.set_title(title or f"kept {len(kept)} / removed {len(removed)}", fontsize=9)
    ax.axis("off")
    return kept, removed


def count_text(kept: list, removed: list[tuple[Box, str]]) -> str:
    """"kept: 3 boxes, removed: 2 boxes (conf 1, nms 1, size 0)" - the viewer's count line."""
    by = {k: sum(1 for _, w in removed if w == k) for k in ("conf", "nms", "size")}
    return (f"kept: {len(kept)} boxes, removed: {len(removed)} boxes "
            f"(conf {by['conf']}, nms {by['nms']}, size {by['size']})")


def detection_viewer(panel_root: str | Path, ann: Annotations, keys: Sequence[str] | None = None, index: int = 0,
                     conf_thold: float = 0.9, nms_iou: float = 0.2, face_thold: int = 32):
    """ipywidgets viewer: a panel slider, confidence and NMS IoU sliders, the panel with kept / removed boxes, and a
    count line (HTML widget with CSS class ``box-count``) that updates with the sliders.

    ``keys``: panels to browse (default: every annotated panel, most boxes first). Returns the widget box; its
    ``.controls`` dict holds the sliders, ``.count`` the HTML widget, ``.panel_keys`` the panels and
    ``.render()`` redraws.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display
    from PIL import Image

    panel_root = Path(panel_root)
    keys = list(keys) if keys is not None else sorted(ann.boxes, key=lambda k: (-len(ann.boxes[k]), natural_key(k)))
    if not keys:
        raise ValueError("no annotated panels to show")
    panel = widgets.IntSlider(value=min(index, len(keys) - 1), min=0, max=len(keys) - 1, description="panel",
                              continuous_update=False)
    conf = widgets.FloatSlider(value=conf_thold, min=0.0, max=1.0, step=0.01, description="min conf", readout_format=".2f")
    nms_s = widgets.FloatSlider(value=nms_iou, min=0.0, max=1.0, step=0.05, description="NMS IoU", readout_format=".2f")
    size_s = widgets.IntSlider(value=face_thold, min=0, max=128, step=4, description="min side")
    count = widgets.HTML(value="", description="boxes")
    count.add_class("box-count")
    out = widgets.Output()

    def render(*_):
        key = keys[panel.value]
        with Image.open(panel_root / key) as im:
            img = im.convert("RGB")
        kept, removed = filter_panel_boxes(ann.boxes.get(key, []), conf.value, nms_s.value, size_s.value)
        count.value = f"<span class='box-count'>{key}: {count_text(kept, removed)}</span>"
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 5))
            plot_panel_detections(ax, img, ann.boxes.get(key, []), conf.value, nms_s.value, size_s.value, title=key)
            display(fig)
            plt.close(fig)

    for w in (panel, conf, nms_s, size_s):
        w.observe(render, names="value")
    box = widgets.VBox([widgets.HBox([panel, conf]), widgets.HBox([nms_s, size_s]), count, out])
    box.controls = {"panel": panel, "conf": conf, "nms": nms_s, "size": size_s}
    box.count = count
    box.render = render
    box.panel_keys = keys
    render()
    return box


def plot_detection_evaluation(df) -> "plt.Figure":  # noqa: F821
    """Precision / recall / AP@0.5 against the confidence threshold, and the precision-recall points."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for col, style in (("precision", "o-"), ("recall", "s-"), ("ap50", "^-")):
        a.plot(df["conf_thold"], df[col], style, ms=3, label=col)
    if "configured" in df:
        for t in df.loc[df["configured"].astype(bool), "conf_thold"]:
            a.axvline(t, color="grey", ls="--", lw=1)
    a.set_xlabel("confidence threshold")
    a.set_ylim(0, 1.02)
    a.legend(loc="lower left")
    a.set_title(f"filtered detections (NMS {df['nms_iou'].iloc[0]}, min side {df['face_thold'].iloc[0]})", fontsize=9)
    b.plot(df["recall"], df["precision"], "o-", ms=3)
    for _, r in df.iloc[:: max(1, len(df) // 6)].iterrows():
        b.annotate(f"{r['conf_thold']:.2f}", (r["recall"], r["precision"]), fontsize=7)
    b.set_xlabel("recall")
    b.set_ylabel("precision")
    b.set_title("precision vs recall over thresholds (IoU 0.5)", fontsize=9)
    fig.tight_layout()
    return fig
