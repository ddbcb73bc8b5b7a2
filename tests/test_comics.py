"""COMICS / Golden Age IO in the original on-disk formats (docs/original.md 3.1)."""

from __future__ import annotations

import json

import pytest

from ssuper_lib.data.comics import (
    Box,
    SequenceSample,
    iter_panel_paths,
    list_panels,
    list_series,
    natural_key,
    parse_panel_name,
    read_annotation_file,
    read_annotations,
    read_sequences,
    write_annotation_file,
    write_sequences,
)

# Hand-made detector file in the original format: "<series>/<page>_<panel>.jpg x1 y1 x2 y2 conf".
ORIGINAL_ANNOTATIONS = """\
593/29_6.jpg 183 51 281 149 0.9973
593/29_6.jpg 20 300 60 345 0.5512

593/30_0.jpg 10 12 110 120 0.91
593/30_1.jpg 5 5 40 40 0.95
"""

# Hand-made sequence JSON in the original format (the notebook example of docs/original.md 3.1).
ORIGINAL_SEQUENCES = {
    "1": [
        ["593/29_6.jpg", "593/30_0.jpg", "593/30_1.jpg"],
        [[[29, 0, 532, 503], [183, 51, 281, 149]], [[0, 0, 400, 400], [10, 12, 110, 120]], [[0, 0, 300, 300], [5, 5, 40, 40]]],
    ],
    "0": [
        ["7/2_9.jpg", "7/2_10.jpg", "7/3_0.jpg"],
        [[[0, 10, 450, 460], [100, 120, 164, 184]], [[5, 0, 405, 400], [40, 40, 90, 90]], [[0, 0, 500, 500], [200, 210, 296, 306]]],
    ],
}


def test_natural_sort_orders_numbers_numerically():
    names = ["2_10.jpg", "10_0.jpg", "2_9.jpg", "2_1.jpg", "1_0.jpg"]
    assert sorted(names, key=natural_key) == ["1_0.jpg", "2_1.jpg", "2_9.jpg", "2_10.jpg", "10_0.jpg"]
    assert sorted(["10", "9", "100", "0"], key=natural_key) == ["0", "9", "10", "100"]


def test_listing_is_natural_and_skips_non_images(tmp_path):
    for s in ("10", "2", "0"):
        (tmp_path / s).mkdir()
    for name in ("1_10.jpg", "1_2.jpg", "0_0.jpg", "notes.txt"):
        (tmp_path / "2" / name).write_bytes(b"x")
    (tmp_path / "stray.jpg").write_bytes(b"x")  # files at the root are not series
    assert list_series(tmp_path) == ["0", "2", "10"]
    assert list_panels(tmp_path, "2") == ["0_0.jpg", "1_2.jpg", "1_10.jpg"]
    assert [k for k, _ in iter_panel_paths(tmp_path)] == ["2/0_0.jpg", "2/1_2.jpg", "2/1_10.jpg"]
    assert parse_panel_name("593/30_1.jpg") == (30, 1)
    with pytest.raises(FileNotFoundError, match="panel_path"):
        list_series(tmp_path / "missing")


def test_read_original_annotation_file(tmp_path):
    p = tmp_path / "593.txt"
    p.write_text(ORIGINAL_ANNOTATIONS)
    ann = read_annotation_file(p)
    assert ann.malformed == []
    assert list(ann.boxes) == ["593/29_6.jpg", "593/30_0.jpg", "593/30_1.jpg"]
    assert ann.boxes["593/29_6.jpg"] == [Box(183, 51, 281, 149, 0.9973), Box(20, 300, 60, 345, 0.5512)]
    assert ann.boxes["593/30_0.jpg"][0].as_list() == [10, 12, 110, 120]  # x1 y1 x2 y2 order
    assert ann.n_boxes == 4


def test_annotation_round_trip(tmp_path):
    src = tmp_path / "593.txt"
    src.write_text(ORIGINAL_ANNOTATIONS)
    ann = read_annotation_file(src)
    out = tmp_path / "out" / "593.txt"
    write_annotation_file(out, [(k, b) for k, boxes in ann.boxes.items() for b in boxes])
    again = read_annotation_file(out)
    assert again.boxes == ann.boxes and again.malformed == []
    # the written lines are in the original format
    assert out.read_text().splitlines()[0] == "593/29_6.jpg 183 51 281 149 0.9973"
    assert not list(out.parent.glob("*.tmp")), "atomic write leaves no temp file"


def test_malformed_lines_reported_with_file_and_line(tmp_path):
    p = tmp_path / "12.txt"
    p.write_text(
        "12/0_0.jpg 1 2 30 40 0.99\n"  # line 1 ok
        "\n"  # line 2 blank: ignored
        "12/0_1.jpg 1 2 30\n"  # line 3 too few fields
        "12/0_2.jpg a b c d 0.9\n"  # line 4 not numbers
        "   \n"  # line 5 blank
        "12/0_3.jpg 50 2 30 40 0.9\n"  # line 6 empty box
        "12/0_4.jpg 5 6 70 80 0.97\n"  # line 7 ok
    )
    ann = read_annotation_file(p)
    assert sorted(ann.boxes) == ["12/0_0.jpg", "12/0_4.jpg"]
    assert [m.line_no for m in ann.malformed] == [3, 4, 6]
    assert all(m.path == str(p) for m in ann.malformed)
    text = str(ann.malformed[0])
    assert f"{p}:3" in text and "12/0_1.jpg" in text
    assert "3 malformed" in ann.report() and f"{p}:4" in ann.report()


def test_read_annotations_over_folder(tmp_path):
    (tmp_path / "10.txt").write_text("10/0_0.jpg 1 1 20 20 0.95\n")
    (tmp_path / "2.txt").write_text("2/0_0.jpg 1 1 20 20 0.95\nbroken line\n")
    ann = read_annotations(tmp_path)
    assert ann.files_read == 2 and ann.n_boxes == 2 and len(ann.malformed) == 1
    only = read_annotations(tmp_path, series=["2", "99"])  # missing series files are skipped
    assert list(only.boxes) == ["2/0_0.jpg"]


def test_sequence_json_original_format_round_trip(tmp_path):
    src = tmp_path / "seq_panels_faces_conf_90.json"
    src.write_text(json.dumps(ORIGINAL_SEQUENCES))
    samples = read_sequences(src)
    # keys are read in natural order "0", "1"
    assert samples[0].panels == ["7/2_9.jpg", "7/2_10.jpg", "7/3_0.jpg"]
    assert samples[1].series == "593"
    assert samples[1].crops[0] == [29, 0, 532, 503] and samples[1].faces[0] == [183, 51, 281, 149]
    assert samples[1].faces[-1] == [5, 5, 40, 40]  # the target (masked) face is the last one
    out = tmp_path / "again.json"
    write_sequences(out, samples)
    data = json.loads(out.read_text())
    assert data == {"0": ORIGINAL_SEQUENCES["0"], "1": ORIGINAL_SEQUENCES["1"]}
    assert read_sequences(out) == samples


def test_bad_sequence_sample_names_file_and_sample(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"0": [["1/0_0.jpg"], [[1, 2, 3]]]}))
    with pytest.raises(ValueError, match="bad.json sample 0"):
        read_sequences(p)
    with pytest.raises(FileNotFoundError, match="preprocessing"):
        read_sequences(tmp_path / "absent.json")
    assert SequenceSample(["a/0_0.jpg"] * 3, [[0, 0, 1, 1]] * 3, [[0, 0, 1, 1]] * 3).series == "a"
