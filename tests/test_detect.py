"""Detectors, box filtering, resumable/sharded detection runs and detection evaluation."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssuper_lib.data.comics import Annotations, Box, read_annotation_file, write_annotation_file
from ssuper_lib.detect import (
    AnimeFaceDetector,
    AnnotationFileDetector,
    Detection,
    Detector,
    FilterReport,
    TorchvisionDetector,
    confidence_sweep,
    evaluate_detections,
    filter_annotations,
    filter_boxes,
    run_detector,
    shard_series,
)

REPO = Path(__file__).resolve().parent.parent


def _panels(root: Path, n_series: int = 3, per_series: int = 3, size=(96, 80)) -> Path:
    rng = np.random.default_rng(0)
    for s in range(n_series):
        d = root / "panels" / str(s)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_series):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"0_{i}.jpg")
    return root / "panels"


class _FakeDetector:
    """Deterministic detector: one box per image, sized from the image; counts calls."""

    needs_pixels = True

    def __init__(self):
        self.calls = 0

    def detect(self, images):
        self.calls += len(images)
        out = []
        for im in images:
            w, h = im.size
            out.append(Detection([[1.7, 2.2, w / 2, h / 2], [0, 0, 5, 5]], [0.95, 0.01]))
        return out


def test_filter_stages_counts_and_reasons():
    boxes = np.array([
        [0, 0, 50, 50],     # kept
        [2, 2, 52, 52],     # NMS duplicate of the first (lower score)
        [100, 100, 120, 120],  # too small (max side 20 < 32)
        [200, 200, 260, 260],  # low confidence
        [300, 300, 340, 330],  # kept: max side 40 >= 32 although height 30
    ], np.float32)
    scores = np.array([0.99, 0.95, 0.97, 0.5, 0.91], np.float32)
    rep = FilterReport()
    keep, removed = filter_boxes(boxes, scores, 0.9, 0.2, 32, rep)
    assert keep.tolist() == [0, 4]
    assert removed.tolist() == [0, 2, 3, 1, 0]
    assert (rep.boxes_in, rep.after_conf, rep.after_nms, rep.after_size) == (5, 4, 3, 2)
    # a looser NMS keeps the duplicate
    keep2, _ = filter_boxes(boxes, scores, 0.9, 0.99, 32)
    assert keep2.tolist() == [0, 1, 4]


def test_filter_annotations_drops_empty_panels():
    ann = Annotations(boxes={"0/0_0.jpg": [Box(0, 0, 40, 40, 0.5)], "0/0_1.jpg": [Box(0, 0, 40, 40, 0.95)]})
    kept, rep = filter_annotations(ann)
    assert list(kept) == ["0/0_1.jpg"] and rep.panels == 2 and rep.panels_with_faces == 1


def test_annotation_file_detector_reads_original_format(tmp_path):
    panels = _panels(tmp_path, n_series=2, per_series=2)
    annot = tmp_path / "annot"
    annot.mkdir()
    # hand-written lines in the original format (docs/original.md 3.1), one blank line, one malformed
    (annot / "0.txt").write_text("0/0_0.jpg 3 4 40 50 0.987\n\n0/0_0.jpg 10 10 60 70 0.55\n0/0_1.jpg 1 2 3\n")
    det = AnnotationFileDetector(annot)
    assert isinstance(det, Detector)
    paths = [panels / "0" / "0_0.jpg", panels / "0" / "0_1.jpg", panels / "1" / "0_0.jpg"]
    out = det.detect(paths)
    assert out[0].boxes.tolist() == [[3, 4, 40, 50], [10, 10, 60, 70]]
    assert np.allclose(out[0].scores, [0.987, 0.55])
    assert len(out[1]) == 0 and len(out[2]) == 0  # malformed line skipped, missing series file -> no boxes
    # also works on PIL images opened from files, and through run_detector (a faithful re-write)
    with Image.open(paths[0]) as im:
        assert det.detect([im])[0].boxes.shape == (2, 4)
    rep = run_detector(det, panels, tmp_path / "rewritten", progress=False, conf_floor=0.0)
    again = read_annotation_file(tmp_path / "rewritten" / "0.txt")
    assert [b.as_list() for b in again.boxes["0/0_0.jpg"]] == [[3, 4, 40, 50], [10, 10, 60, 70]]
    assert rep.series_written == ["0", "1"]


def test_animeface_detector_well_formed_output():
    pytest.importorskip("animeface")
    det = AnimeFaceDetector()
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (120, 100, 3), dtype=np.uint8))
    gray = Image.new("L", (64, 64), 128)
    out = det.detect([img, gray])
    assert len(out) == 2
    for d in out:
        assert d.boxes.dtype == np.float32 and d.boxes.ndim == 2 and d.boxes.shape[1] == 4
        assert d.scores.shape == (len(d.boxes),)
        if len(d):
            assert np.all(d.boxes[:, 2] > d.boxes[:, 0]) and np.all(d.boxes[:, 3] > d.boxes[:, 1])


@pytest.fixture
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: threads only add contention on a shared machine
    yield
    torch.set_num_threads(n)


def test_torchvision_detector_from_a_checkpoint_the_test_saves(tmp_path, one_thread):
    import torch
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=3)
    # make the classifier confident in class 2 ("face") for every proposal, so the output is not empty
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.zero_()
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 0.0, 8.0]))
    ckpt = tmp_path / "face_rcnn.pt"
    torch.save({"model": model.state_dict(), "arch": "fasterrcnn_mobilenet_v3_large_fpn"}, ckpt)

    det = TorchvisionDetector(ckpt, face_label=2, batch_size=2)
    assert det.num_classes == 3  # inferred from the weights
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (128, 160, 3), dtype=np.uint8)) for _ in range(3)]
    out = det.detect(imgs)  # batches of 2 + 1
    assert len(out) == 3
    assert sum(len(d) for d in out) > 0
    for d in out:
        assert d.boxes.shape == (len(d.scores), 4) and np.all(d.scores >= 0.05) and np.all(d.scores <= 1)
        assert np.all(d.boxes[:, 2] >= d.boxes[:, 0]) and np.all(d.boxes[:, 2] <= 160)
    # the non-face class gives nothing
    det.face_label = 1
    assert sum(len(d) for d in det.detect(imgs[:1])) == 0
    # a bare state dict needs the architecture; a wrong class count is a clear error
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(ValueError, match="arch"):
        TorchvisionDetector(bare)
    with pytest.raises(ValueError, match="do not fit"):
        TorchvisionDetector(bare, arch="fasterrcnn_mobilenet_v3_large_fpn", num_classes=5)


def test_corrupt_panel_is_skipped_and_reported(tmp_path):
    panels = _panels(tmp_path, n_series=1, per_series=3)
    (panels / "0" / "0_1.jpg").write_bytes(b"not a jpeg at all")
    good = (panels / "0" / "0_2.jpg").read_bytes()
    (panels / "0" / "0_2.jpg").write_bytes(good[: len(good) // 3])  # truncated
    det = _FakeDetector()
    rep = run_detector(det, panels, tmp_path / "out", progress=False)
    assert len(rep.corrupt) == 2
    assert any("0/0_1.jpg" in c for c in rep.corrupt) and any("0/0_2.jpg" in c for c in rep.corrupt)
    assert rep.panels == 1 and rep.series_written == ["0"]
    lines = (tmp_path / "out" / "0.txt").read_text().splitlines()
    assert lines == ["0/0_0.jpg 1 2 48 40 0.9500"]  # floored corners; the 0.01 box is under conf_floor
    assert "2 unreadable panels" in str(rep)


def test_resume_skips_finished_series_and_shards_partition(tmp_path):
    panels = _panels(tmp_path, n_series=5, per_series=2)
    out = tmp_path / "out"
    # shards split the series list without overlap
    parts = [shard_series([str(i) for i in range(5)], f"{i}/2") for i in range(2)]
    assert parts == [["0", "2", "4"], ["1", "3"]]
    rep0 = run_detector(_FakeDetector(), panels, out, shard="0/2", progress=False)
    assert rep0.series_written == ["0", "2", "4"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.txt")}
    time.sleep(0.02)
    det = _FakeDetector()
    rep = run_detector(det, panels, out, progress=False)  # the whole list: only 1 and 3 remain
    assert rep.series_skipped == ["0", "2", "4"] and rep.series_written == ["1", "3"]
    assert det.calls == 4
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in mtimes.items())
    assert not list(out.glob("*.tmp"))


def test_killed_run_resumes(tmp_path):
    """Kill a detection subprocess mid-run; the rerun redoes nothing that was finished."""
    panels = _panels(tmp_path, n_series=6, per_series=2)
    out = tmp_path / "out"
    script = tmp_path / "slow.py"
    script.write_text(
        "import sys, time\n"
        "from ssuper_lib.detect import Detection, run_detector\n"
        "class Slow:\n"
        "    needs_pixels = True\n"
        "    def detect(self, images):\n"
        "        time.sleep(0.4)\n"
        "        return [Detection([[0, 0, 40, 40]], [0.99]) for _ in images]\n"
        f"run_detector(Slow(), {str(panels)!r}, {str(out)!r}, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("*.txt"))) < 2:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done = sorted(p.name for p in out.glob("*.txt"))
    assert 2 <= len(done) < 6, f"the run was not interrupted mid-way: {done}"
    mtimes = {n: (out / n).stat().st_mtime_ns for n in done}
    for n in done:  # every file present is complete (atomic writes)
        assert len((out / n).read_text().splitlines()) == 2
    det = _FakeDetector()
    rep = run_detector(det, panels, out, progress=False)
    assert sorted(f"{s}.txt" for s in rep.series_skipped) == done
    assert len(rep.series_written) == 6 - len(done)
    assert det.calls == 2 * (6 - len(done))
    assert all((out / n).stat().st_mtime_ns == t for n, t in mtimes.items())
    assert len(list(out.glob("*.txt"))) == 6


def test_cli_runs_annotation_detector(tmp_path):
    panels = _panels(tmp_path, n_series=2, per_series=1)
    annot = tmp_path / "annot"
    write_annotation_file(annot / "1.txt", [("1/0_0.jpg", Box(1, 1, 40, 40, 0.93))])
    res = subprocess.run([sys.executable, "-m", "ssuper_lib.detect", "--panels", str(panels), "--out", str(tmp_path / "o"),
                          "--detector", "annotations", "--annotations", str(annot), "--shard", "1/2", "--no-progress"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "shard 1/2" in res.stdout
    assert (tmp_path / "o" / "1.txt").read_text().startswith("1/0_0.jpg 1 1 40 40 0.93")
    assert not (tmp_path / "o" / "0.txt").exists()


def test_evaluation_precision_recall_ap():
    gt = {"0/0_0.jpg": np.array([[0, 0, 50, 50], [100, 100, 150, 150]], float)}
    dets = {"0/0_0.jpg": [Box(1, 1, 50, 50, 0.99), Box(2, 2, 51, 51, 0.95), Box(300, 300, 340, 340, 0.97)]}
    ev = evaluate_detections(dets, gt)
    assert (ev["tp"], ev["fp"], ev["fn"]) == (1, 2, 1)
    assert ev["precision"] == pytest.approx(1 / 3) and ev["recall"] == pytest.approx(0.5)
    assert ev["ap50"] == pytest.approx(0.5)  # precision 1 up to recall 0.5
    perfect = evaluate_detections({"0/0_0.jpg": [Box(0, 0, 50, 50, 0.9), Box(100, 100, 150, 150, 0.8)]}, gt)
    assert perfect["ap50"] == pytest.approx(1.0) and perfect["precision"] == 1.0
    ann = Annotations(boxes=dets)
    sweep = confidence_sweep(ann, gt, thresholds=[0.0, 0.96, 0.98])
    assert sweep["after_conf"].tolist() == [3, 2, 1]
    assert sweep["precision"].tolist()[-1] == 1.0


def test_viewer_count_follows_the_sliders(tmp_path):
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    from ssuper_lib.detect import detection_viewer

    panels = _panels(tmp_path, n_series=1, per_series=1, size=(200, 160))
    ann = Annotations(boxes={"0/0_0.jpg": [Box(0, 0, 50, 50, 0.99), Box(2, 2, 52, 52, 0.95),
                                           Box(100, 60, 150, 110, 0.92), Box(120, 100, 130, 110, 0.97)]})
    v = detection_viewer(panels, ann)
    assert "box-count" in v.count._dom_classes
    assert "kept: 2 boxes, removed: 2 boxes (conf 0, nms 1, size 1)" in v.count.value
    v.controls["conf"].value = 0.93  # drops the 0.92 box
    assert "kept: 1 boxes" in v.count.value and "conf 1" in v.count.value
    v.controls["nms"].value = 1.0  # NMS off: the 0.95 duplicate comes back
    assert "kept: 2 boxes" in v.count.value
