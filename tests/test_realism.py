"""The realism presets of the synthetic comics: clean is today's data, each knob does what it says, seeds repeat."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import PIL
import pandas as pd
import pytest
from PIL import Image

from ssuper_lib.data.synthetic import generate, main
from ssuper_lib.data.synthetic.realism import PRESETS, Realism

FIXTURE = Path(__file__).parent / "fixtures" / "clean_generator_digest.json"
RATE_KEYS = ("costume_change_rate", "lookalike_series_rate", "non_frontal_rate", "occluded_rate",
             "extra_face_panel_rate", "greyscale_series_rate")


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _data_digest(root: Path) -> dict[str, str]:
    """Digests of everything but the manifest (whose realism block names the knobs)."""
    return {k: v for k, v in _digest(root).items() if k != "manifest.json"}


def test_clean_is_the_generator_of_before(tmp_path):
    """``realism="clean"`` (the default) writes the files the generator wrote before the realism factors:
    the text files byte for byte; the JPEG panels byte for byte under the Pillow that recorded the fixture
    (another libjpeg may encode the same pixels differently: then the decoded panels agree)."""
    ref = json.loads(FIXTURE.read_text())
    root = tmp_path / "clean"
    generate(root, n_series=3, seed=5, panels_per_series=10, workers=1)
    got = _digest(root)
    assert sorted(got) == sorted(ref["sha256"])
    for name, h in ref["sha256"].items():
        if not name.endswith(".jpg") or PIL.__version__ == ref["pillow"]:
            assert got[name] == h, f"{name} differs from the clean generator's"
        else:
            with Image.open(root / name) as im:
                mean = np.asarray(im.convert("RGB"), np.float64).mean((0, 1))
            assert np.abs(mean - ref["panel_mean_rgb"][name]).max() < 1.0, name
    assert "realism" not in json.loads((root / "manifest.json").read_text())


def test_knob_at_rate_zero_changes_nothing(tmp_path):
    """A non-clean setting whose factors are all off (only the calibrated detector's unused parameters
    moved) writes the clean data; its manifest block measures the clean world."""
    generate(tmp_path / "a", n_series=3, seed=1, panels_per_series=12, workers=1)
    m = generate(tmp_path / "b", n_series=3, seed=1, panels_per_series=12, workers=1,
                 realism=Realism(detector_miss_rate=0.5, detector_false_positives=1.0))
    assert _data_digest(tmp_path / "a") == _data_digest(tmp_path / "b")
    block = m["realism"]
    assert all(block[k] == 0.0 for k in RATE_KEYS)
    assert block["detector"]["recall"] > 0.9 and block["detector"]["precision"] > 0.9


@pytest.fixture(scope="module")
def clean_block(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("clean_block")
    return generate(root, n_series=4, seed=2, panels_per_series=24, workers=1,
                    realism=Realism(detector_miss_rate=0.5))["realism"]


KNOBS = {
    "costume_change_rate": (Realism(costume_change_rate=1.0), "costume_change_rate"),
    "lookalike_series_rate": (Realism(lookalike_series_rate=1.0), "lookalike_series_rate"),
    "non_frontal_rate": (Realism(non_frontal_rate=1.0), "non_frontal_rate"),
    "closeup_rate": (Realism(closeup_rate=0.5), "closeup_rate"),
    "longshot_rate": (Realism(longshot_rate=0.5), "longshot_rate"),
    "occluded_rate": (Realism(occluded_rate=1.0), "occluded_rate"),
    "extra_face_panel_rate": (Realism(extra_face_panel_rate=0.6), "extra_face_panel_rate"),
    "greyscale_series_rate": (Realism(greyscale_series_rate=0.5), "greyscale_series_rate"),
}


@pytest.mark.parametrize("knob", sorted(KNOBS))
def test_each_knob_changes_what_it_claims_and_nothing_else(tmp_path, knob, clean_block):
    realism, key = KNOBS[knob]
    m = generate(tmp_path / knob, n_series=4, seed=2, panels_per_series=24, workers=1, realism=realism)
    block = m["realism"]
    assert block[key] > clean_block[key] + 0.05, (knob, block[key], clean_block[key])
    for other in RATE_KEYS:
        if other != key:
            assert block[other] == clean_block[other] == 0.0, (knob, other, block[other])
    assert block["jpeg_quality"] == [] or block["jpeg_quality"] is None  # no print effects
    assert block["detector"]["recall"] > 0.9  # the simple detector stays
    gt = pd.read_csv(tmp_path / knob / "ground_truth.csv", dtype={"character": str})
    if knob == "extra_face_panel_rate":
        assert gt["character"].isna().sum() == block["counts"]["extra_faces"] > 0  # extras: no cast member
    else:
        assert gt["character"].notna().all()
    if knob == "greyscale_series_rate":
        grey = [s for s in range(4) if _is_grey(tmp_path / knob / "panels" / str(s))]
        assert len(grey) == 2  # exactly round(0.5 * 4) series


def _is_grey(folder: Path) -> bool:
    greys = []
    for p in sorted(folder.glob("*.jpg"))[:3]:
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"), np.int16)
        greys.append(np.abs(a - a.mean(2, keepdims=True)).max() <= 12)  # JPEG chroma noise only
    return all(greys)


def test_lookalikes_share_skin_hair_face_and_shirt(tmp_path):
    m = generate(tmp_path / "l", n_series=3, seed=4, panels_per_series=6, workers=1,
                 realism=Realism(lookalike_series_rate=1.0))
    for info in m["series"].values():
        a, b = info["cast"][0], info["cast"][1]
        assert [a[k] for k in ("skin", "hair_colour", "face_shape", "shirt")] == \
            [b[k] for k in ("skin", "hair_colour", "face_shape", "shirt")]
        assert a["hair_style"] != b["hair_style"] and a["eye_colour"] != b["eye_colour"]


def test_print_effects_and_calibrated_detector(tmp_path):
    m = generate(tmp_path / "p", n_series=4, seed=3, panels_per_series=30, workers=1,
                 realism=Realism(print_effects=True, detector="calibrated"))
    block = m["realism"]
    lo, hi = block["jpeg_quality"]
    assert 60 <= lo < hi <= 90
    det = block["detector"]
    assert 0.65 <= det["recall"] <= 0.9 and 0.7 <= det["precision"] <= 0.95, det
    assert m["counts"]["annotation_lines"]["false_positive_high"] > 0


def test_real_preset_meets_its_rates(tmp_path):
    """The ``real`` preset on a small data set: every factor on, rates near their settings."""
    m = generate(tmp_path / "r", n_series=10, seed=0, panels_per_series=40, workers=2, realism="real")
    block, want = m["realism"], PRESETS["real"]
    for key in RATE_KEYS + ("closeup_rate", "longshot_rate"):
        assert block[key] >= 0.6 * getattr(want, key), (key, block[key])
    assert block["lookalike_series_rate"] == 0.3 and block["greyscale_series_rate"] == 0.2  # round(rate * 10) / 10
    assert 0.7 <= block["detector"]["recall"] <= 0.88 and 0.75 <= block["detector"]["precision"] <= 0.92


def test_realism_is_deterministic_and_independent_of_workers(tmp_path):
    hard = replace(PRESETS["hard"])
    generate(tmp_path / "a", n_series=3, seed=9, panels_per_series=10, workers=1, realism=hard)
    generate(tmp_path / "b", n_series=3, seed=9, panels_per_series=10, workers=2, realism="hard")
    generate(tmp_path / "c", n_series=3, seed=10, panels_per_series=10, workers=1, realism="hard")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _data_digest(tmp_path / "a") != _data_digest(tmp_path / "c")


def test_cli_realism_preset(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "d"), "--series", "2", "--panels-per-series", "6", "--seed", "1",
                 "--realism", "real", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "realism real:" in out and "detector recall" in out
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["realism"]["settings"]["detector"] == "calibrated"
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "e"), "--realism", "pristine"])


def test_bad_realism_values_are_refused():
    with pytest.raises(ValueError, match="costume_change_rate"):
        Realism(costume_change_rate=1.5)
    with pytest.raises(ValueError, match="detector"):
        Realism(detector="perfect")
    with pytest.raises(ValueError, match="unknown realism preset"):
        generate("/nonexistent-never-written", n_series=1, realism="pristine")
