"""The seed's FaceDetector RetinaFace (BBTNet) in the kit: key layout, strict loading, equality with the original,
the "no person" rule and a resumable detection run that preprocessing reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bbtnet_helpers import REFERENCE_CONF, REFERENCE_NMS, REFERENCE_SIZE, reference_image, seeded_state_dict
from ssuper_lib.data.comics import read_annotation_file
from ssuper_lib.detect.bbtnet import BBTNet, BBTNetDetector, load_bbtnet, normalize_panel, postprocess, prior_boxes

FIXTURE = Path(__file__).parent / "fixtures" / "bbtnet_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(0)
    m = BBTNet("resnet50")
    m.load_state_dict(seeded_state_dict(m.state_dict()))
    return m.eval()




@pytest.mark.parametrize("backbone", ["resnet50", "resnet152"])
def test_key_layout_is_the_originals(backbone, reference):
    """Every key name and its order are those of the original ``RetinaFace(backbone).state_dict()``."""
    keys = list(BBTNet(backbone).state_dict())
    assert keys == [str(k) for k in reference[f"{backbone}_keys"]]


def test_checkpoint_in_the_original_layout_loads_strictly(tmp_path, r50):
    path = tmp_path / "final_mixed_r50.pth"
    torch.save(r50.state_dict(), path)  # a plain state_dict, as FaceDetector's save_model
    model = load_bbtnet(path)
    assert model.backbone_name == "resnet50" and not model.training
    for k, v in r50.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_key_mismatch_names_the_file_and_the_keys(tmp_path, r50):
    state = dict(r50.state_dict())
    state.pop("fpn.lateral_outs.3.conv.weight")
    state["heads2.2.layers.0.weight"] = torch.zeros(1)
    path = tmp_path / "wrong_keys.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        load_bbtnet(path)
    msg = str(err.value)
    assert "wrong_keys.pth" in msg and "fpn.lateral_outs.3.conv.weight" in msg and "heads2.2.layers.0.weight" in msg

    bad = dict(r50.state_dict())
    bad["heads2.0.layers.0.weight"] = torch.zeros(3, 256, 1, 1)
    torch.save(bad, path)
    with pytest.raises(ValueError, match="heads2.0.layers.0.weight"):
        load_bbtnet(path)


def test_priors_follow_the_grid_order():
    w, h = REFERENCE_SIZE
    p = prior_boxes(w, h)
    n = sum(3 * -(-w // s) * -(-h // s) for s in (4, 8, 16, 32, 64))
    assert p.shape == (n, 4)
    # first level: row 0, columns 0 and 1, anchors 16 / 20.16 / 25.40
    assert torch.allclose(p[:4], torch.tensor([[2, 2, 16, 16], [2, 2, 20.16, 20.16], [2, 2, 25.4, 25.4], [6, 2, 16, 16.0]]))
    # second row of the first level starts after ceil(W / 4) columns * 3 anchors
    assert torch.allclose(p[3 * -(-w // 4)], torch.tensor([2.0, 6.0, 16.0, 16.0]))


@pytest.mark.parametrize("backbone", ["resnet50", "resnet152"])
def test_equal_to_the_original_implementation(backbone, reference, r50, one_thread):
    """Fixed seeded weights + fixed image: raw scores and boxes, and the extraction's filtered boxes, equal the
    numbers the original FaceDetector code produced (tests/fixtures/bbtnet_reference.npz) to 1e-4."""
    if backbone == "resnet50":
        model = r50
    else:
        model = BBTNet(backbone)
        model.load_state_dict(seeded_state_dict(model.state_dict()))
        model.eval()
    img = reference_image()
    with torch.inference_mode():
        logits, offsets = model(normalize_panel(img)[None])
    w, h = REFERENCE_SIZE
    from ssuper_lib.detect.bbtnet import decode_boxes

    scores = torch.softmax(logits[0], -1)[:, 1].numpy()
    boxes = decode_boxes(offsets[0], prior_boxes(w, h)).numpy()
    assert np.abs(scores - reference[f"{backbone}_raw_scores"]).max() < 1e-4
    assert np.abs(boxes - reference[f"{backbone}_raw_boxes"]).max() < 1e-4

    det = BBTNetDetector(model=model, device="cpu", conf_thold=REFERENCE_CONF, nms_thold=REFERENCE_NMS, top_k=None)
    (d,) = det.detect([Image.fromarray(img)])
    ref_boxes, ref_scores = reference[f"{backbone}_boxes"], reference[f"{backbone}_scores"]
    assert d.boxes.shape == ref_boxes.shape, (len(d), len(ref_scores))
    assert np.abs(d.scores - ref_scores).max() < 1e-4
    assert np.abs(d.boxes - ref_boxes).max() < 1e-4
    assert np.array_equal(np.floor(d.boxes).astype(np.int64), reference[f"{backbone}_int_boxes"])


def test_no_person_rule_and_top_k():
    priors = prior_boxes(64, 64)
    p = len(priors)
    offsets = torch.zeros(p, 4)
    logits = torch.zeros(p, 2)
    logits[:, 0] = 3.0  # every score = sigmoid(-3) = 0.047 <= 0.08
    boxes, scores, empty = postprocess(logits, offsets, priors, conf_thold=0.01)
    assert empty and len(scores) == 0
    logits[:, 0] = 2.0  # 0.119 > 0.08: not a "no person" panel, boxes above conf are returned
    boxes, scores, empty = postprocess(logits, offsets, priors, conf_thold=0.01, nms_thold=1.0, top_k=7)
    assert not empty and len(scores) == 7


def _small_synthetic_panels(src: Path, dst: Path, n_series: int = 2, per_series: int = 4) -> Path:
    """The first panels of the first synthetic series, downscaled to at most 128 px (keeps the CPU run short)."""
    series = sorted(p.name for p in (src / "panels").iterdir())[:n_series]
    for s in series:
        (dst / s).mkdir(parents=True)
        for f in sorted((src / "panels" / s).iterdir())[:per_series]:
            with Image.open(f) as im:
                im = im.convert("RGB")
                im.thumbnail((128, 128))
                im.save(dst / s / f.name, quality=95)
    return dst


def test_cli_detection_run_is_resumable_and_preprocessing_reads_it(tmp_path, tiny_synthetic, r50, one_thread):
    from ssuper_lib.config import DataConfig
    from ssuper_lib.detect import main
    from ssuper_lib.preprocess import run_preprocessing

    panels = _small_synthetic_panels(tiny_synthetic, tmp_path / "panels")
    ckpt = tmp_path / "final_mixed_r50.pth"
    torch.save(r50.state_dict(), ckpt)
    out = tmp_path / "annotations"
    args = ["--panels", str(panels), "--out", str(out), "--detector", "bbtnet", "--checkpoint", str(ckpt),
            "--bbtnet-conf", "0.5", "--no-progress"]
    assert main(args) == 0
    files = sorted(out.glob("*.txt"))
    assert [f.stem for f in files] == sorted(p.name for p in panels.iterdir())
    ann = read_annotation_file(files[0])
    assert ann.n_boxes > 0 and all(b.conf > 0.5 for bs in ann.boxes.values() for b in bs)

    first = files[0].read_text()
    files[1].unlink()  # as if the run had been killed before the second series
    stamp = files[0].stat().st_mtime_ns
    assert main(args) == 0
    assert files[1].is_file() and files[0].stat().st_mtime_ns == stamp and files[0].read_text() == first

    cfg = DataConfig(panel_path=str(panels), annot_path=str(out), sequence_path=str(tmp_path / "seq.json"),
                     faces_path=str(tmp_path / "faces"), ground_truth_path=None, conf_thold=0.5, face_thold=8,
                     split="series_fraction", train_test_ratio=0.5)
    rep = run_preprocessing(cfg, progress=False, write_faces=False, workers=1)
    assert rep.annotation_files == 2 and rep.boxes_read == sum(read_annotation_file(f).n_boxes for f in files)
    assert rep.after_size > 0


def test_notebook_preview_draws_the_detections(tmp_path, tiny_synthetic, r50, one_thread):
    """The helper behind notebook 02's BBTNet section: boxes per panel and a figure with one axis per panel."""
    import matplotlib

    matplotlib.use("Agg")
    from ssuper_lib.detect.bbtnet import bbtnet_preview

    panels = _small_synthetic_panels(tiny_synthetic, tmp_path / "panels", n_series=1, per_series=2)
    keys = sorted(f"{p.parent.name}/{p.name}" for p in panels.glob("*/*.jpg"))
    det = BBTNetDetector(model=r50, device="cpu", conf_thold=0.5)
    fig, boxes = bbtnet_preview(det, panels, keys, conf_thold=0.5, face_thold=0)
    assert list(boxes) == keys and len(fig.axes) == 2
    direct = det.detect([Image.open(panels / k) for k in keys])
    assert [len(b) for b in boxes.values()] == [len(d) for d in direct]


def test_batched_panels_give_the_per_panel_results(r50, one_thread):
    """Panels of equal size share a forward pass; each still gets its own boxes, in input order."""
    img = reference_image()
    other = np.ascontiguousarray(img[:64, :90][:, ::-1])
    images = [Image.fromarray(img), Image.fromarray(other), Image.fromarray(255 - img)]
    det = BBTNetDetector(model=r50, device="cpu", conf_thold=REFERENCE_CONF, batch_size=2)
    batched = det.detect(images)
    single = [det.detect([im])[0] for im in images]
    for b, s in zip(batched, single):
        assert b.boxes.shape == s.boxes.shape
        np.testing.assert_allclose(b.boxes, s.boxes, atol=1e-4)
        np.testing.assert_allclose(b.scores, s.scores, atol=1e-5)
    assert len(batched[0]) != len(batched[1]) or not np.allclose(batched[0].scores[:1], batched[1].scores[:1])


def test_cli_lists_no_person_panels(tmp_path, tiny_synthetic, r50, one_thread):
    """Panels whose best score is <= 0.08 get no boxes and are listed in no_person_frames.txt (the original's log)."""
    from ssuper_lib.detect import main

    panels = _small_synthetic_panels(tiny_synthetic, tmp_path / "panels", n_series=1, per_series=2)
    state = dict(r50.state_dict())
    for lvl in range(5):  # background logit +10 for every anchor: face scores ~ 5e-5
        b = state[f"heads2.0.layers.{lvl}.bias"].clone()
        b[0::2] = 10.0
        state[f"heads2.0.layers.{lvl}.bias"] = b
    ckpt = tmp_path / "background_only.pth"
    torch.save(state, ckpt)
    out = tmp_path / "annotations"
    assert main(["--panels", str(panels), "--out", str(out), "--detector", "bbtnet", "--checkpoint", str(ckpt),
                 "--bbtnet-conf", "0.0", "--conf-floor", "0.0", "--no-progress"]) == 0
    listed = (out / "no_person_frames.txt").read_text().split()
    assert sorted(Path(p).name for p in listed) == sorted(p.name for p in panels.glob("*/*.jpg"))
    assert all(read_annotation_file(f).n_boxes == 0 for f in out.glob("*.txt") if f.name != "no_person_frames.txt")
    from ssuper_lib.data.comics import read_annotations

    ann = read_annotations(out)  # the log beside the series files is not read as one of them
    assert ann.files_read == 1 and not ann.malformed


# --------------------------------------------------------------------------------------------------
# Fine-tuning (optional demo): the original's training objective on the synthetic ground truth
# --------------------------------------------------------------------------------------------------


def test_loss_is_zero_for_the_encoded_targets_and_ohem_counts():
    from ssuper_lib.detect.finetune import bbtnet_loss
    from ssuper_lib.detect.bbtnet import decode_boxes

    priors = prior_boxes(64, 64)
    p = len(priors)
    gt = torch.tensor([[10.0, 12.0, 30.0, 33.0]])
    offsets = torch.zeros(1, p, 4, requires_grad=True)
    logits = torch.zeros(1, p, 2)
    loss, parts = bbtnet_loss(logits, offsets, priors, [gt])
    n_pos = parts["positives"]
    assert n_pos > 0
    # with equal logits every CE term is ln 2: positives + 3 x positives hardest negatives, divided by positives
    assert parts["cls"] == pytest.approx(4 * np.log(2), rel=1e-5)
    loss.backward()
    # offsets that decode exactly to the true box have zero box loss
    from torchvision.ops import box_iou

    from ssuper_lib.detect.finetune import _xyxy

    pos = torch.nonzero(box_iou(gt, _xyxy(priors))[0] >= 0.5).flatten()
    target = offsets.detach().clone()
    pr = priors[pos]
    c = (gt[:, :2] + gt[:, 2:]) / 2
    wh = gt[:, 2:] - gt[:, :2]
    target[0, pos] = torch.cat([(c - pr[:, :2]) / (0.1 * pr[:, 2:]), torch.log(wh / pr[:, 2:]) / 0.2], 1)
    assert torch.allclose(decode_boxes(target[0, pos], pr), gt.expand(len(pos), 4), atol=1e-4)
    _, parts = bbtnet_loss(logits, target, priors, [gt])
    assert parts["box"] == pytest.approx(0.0, abs=1e-8)
    _, none = bbtnet_loss(logits, target, priors, [torch.zeros(0, 4)])
    assert none["positives"] == 0


def test_finetune_smoke_and_comparison_with_the_simulated_detector(tiny_synthetic, one_thread):
    from ssuper_lib.detect.finetune import GroundTruthPanels, compare_detectors, finetune_bbtnet

    data = GroundTruthPanels(tiny_synthetic, ["0", "1", "2"], size=96)
    x, b = data.item(0, flip=True)
    assert x.shape == (3, 96, 96) and b.shape[1] == 4 and float(x.min()) >= -1 and (b[:, 2] > b[:, 0]).all()
    res = finetune_bbtnet(data, steps=2, batch_size=2, progress=False)
    assert len(res.history) == 2 and all(np.isfinite(h["loss"]) for h in res.history)
    table = compare_detectors(tiny_synthetic, ["3"], res.model, size=96, thresholds=(0.5,))
    assert set(table["detector"]) == {"fine-tuned BBTNet (Lite0)", "simulated detector (annotation files)"}
    assert {"precision", "recall", "ap50"} <= set(table.columns)


def test_a_finetuned_lite_model_saves_and_loads_by_its_keys(tmp_path):
    model = BBTNet("efficientnet-lite0", pretrained_backbone=False)
    path = tmp_path / "lite.pth"
    torch.save(model.state_dict(), path)
    again = load_bbtnet(path)
    assert again.backbone_name == "efficientnet-lite0" and again.input_norm == "unit"
