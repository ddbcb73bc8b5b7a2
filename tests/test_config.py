"""Config loading: typos, wrong types and out-of-range values are errors naming the file and the key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from ssuper_lib.config import ConfigError, DataConfig, load_config, resolve_path

REPO = Path(__file__).resolve().parent.parent
DATA_CONFIGS = [REPO / "configs" / "data" / "synthetic.yaml", REPO / "configs" / "data" / "golden_age.yaml"]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_unknown_key_names_file_and_key(tmp_path):
    p = _write(tmp_path, "typo.yaml", "data:\n  panel_pth: x\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert str(p) in msg and "panel_pth" in msg, msg
    assert "panel_path" in msg, "the error should list the valid keys so the typo is easy to fix"


def test_unknown_top_level_section(tmp_path):
    p = _write(tmp_path, "sec.yaml", "dataa:\n  seed: 1\n")
    with pytest.raises(ConfigError, match="dataa"):
        load_config(p)


@pytest.mark.parametrize(
    "text, key",
    [
        ("data:\n  face_size: sixty-four\n", "data.face_size"),
        ("data:\n  augment: 1\n", "data.augment"),
        ("data:\n  panel_size: 96\n", "data.panel_size"),
        ("train:\n  lr: fast\n", "train.lr"),
    ],
)
def test_wrong_type_names_file_and_key(tmp_path, text, key):
    p = _write(tmp_path, "wrong.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert str(p) in msg and key in msg and "expected" in msg, msg


@pytest.mark.parametrize(
    "text, key",
    [
        ("data:\n  conf_thold: 1.5\n", "data.conf_thold"),
        ("data:\n  train_test_ratio: -0.1\n", "data.train_test_ratio"),
        ("data:\n  panel_size: [8, 8]\n", "data.panel_size"),
        ("data:\n  split: random\n", "data.split"),
    ],
)
def test_out_of_range_names_file_and_key(tmp_path, text, key):
    p = _write(tmp_path, "range.yaml", text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert str(p) in msg and key in msg, msg


def test_int_accepted_for_float_and_values_loaded(tmp_path):
    p = _write(tmp_path, "ok.yaml", "data:\n  mask_val: 0\n  conf_thold: 0.85\n")
    cfg = load_config(p)
    assert cfg.data.mask_val == 0.0 and isinstance(cfg.data.mask_val, float)
    assert cfg.data.conf_thold == 0.85


def test_include_merges_then_file_wins(tmp_path):
    _write(tmp_path, "base.yaml", "data:\n  face_size: 32\n  conf_thold: 0.8\nseed: 3\n")
    (tmp_path / "sub").mkdir()
    p = _write(tmp_path / "sub", "exp.yaml", "include: [../base.yaml]\ndata:\n  conf_thold: 0.95\n")
    cfg = load_config(p)
    assert cfg.data.face_size == 32, "included value kept"
    assert cfg.data.conf_thold == 0.95, "the including file overrides the included one"
    assert cfg.seed == 3


def test_error_in_included_file_names_key_and_loaded_file(tmp_path):
    _write(tmp_path, "base.yaml", "data:\n  bogus_key: 1\n")
    p = _write(tmp_path, "exp.yaml", "include: [base.yaml]\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "data.bogus_key" in msg and str(p) in msg, msg
    assert str(tmp_path / "base.yaml") in msg, "the file that holds the bad key is named"


def test_missing_include_is_an_error(tmp_path):
    p = _write(tmp_path, "exp.yaml", "include: [nowhere.yaml]\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_config(p)


def test_dotted_overrides(tmp_path):
    p = _write(tmp_path, "exp.yaml", "data:\n  face_size: 32\n")
    cfg = load_config(p, ["data.face_size=48", "train.batch_size=8", "data.panel_size=[96,96]", "name=x"])
    assert cfg.data.face_size == 48 and cfg.train.batch_size == 8
    assert cfg.data.panel_size == [96, 96] and cfg.name == "x"
    cfg = load_config(p, {"data.conf_thold": 0.5})
    assert cfg.data.conf_thold == 0.5


def test_bad_override_names_key(tmp_path):
    p = _write(tmp_path, "exp.yaml", "data:\n  face_size: 32\n")
    with pytest.raises(ConfigError, match="data.fce_size|fce_size"):
        load_config(p, ["data.fce_size=1"])
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(p, ["train.batch_size=0"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(p, ["train.batch_size"])


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize("path", DATA_CONFIGS, ids=lambda p: p.name)
def test_shipped_data_configs_load_and_document_every_key(path):
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    keys = {f.name for f in dataclasses.fields(DataConfig)}
    assert set(raw["data"]) == keys, f"{path.name}: keys differ from DataConfig: {set(raw['data']) ^ keys}"
    # one comment per key
    for line in path.read_text().splitlines():
        m = re.match(r"^  (\w+):", line)
        if m:
            assert "#" in line.split(":", 1)[1], f"{path.name}: key {m.group(1)} has no comment"
    assert cfg.data.face_size == 64


def test_golden_age_mirrors_original_values():
    d = load_config(DATA_CONFIGS[1]).data
    assert d.panel_path == "/datasets/COMICS/raw_panel_images/"
    assert d.sequence_path.endswith("seq_panels_faces_conf_90.json")
    assert (d.split, d.max_series, d.train_test_ratio) == ("series_threshold", 3958, 0.95)
    assert (d.conf_thold, d.face_thold, d.window_size, d.mask_val) == (0.9, 32, 3, 1.0)
    assert d.panel_size == [300, 300]


def test_synthetic_paths_resolve_under_repo():
    d = load_config(DATA_CONFIGS[0]).data
    assert resolve_path(d.panel_path) == REPO / "data" / "synthetic" / "panels"
    assert resolve_path("/abs/x") == Path("/abs/x")
    assert (d.split, d.train_test_ratio) == ("series_fraction", 0.8)
