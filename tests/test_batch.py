"""The library side of ``fiqa assess`` / ``fiqa filter`` / ``fiqa export onnx``:
fiqa_sdk.batch, fiqa_sdk.export and fiqa_sdk.distributed.unreadable_rows, without the CLI."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk.batch import (FILTER_COLUMNS, SAMPLE_LABEL, assess_images, filter_folder,
                            prepare_output)


@pytest.fixture(scope="module")
def gate():
    return fq.QualityGate()


@pytest.fixture
def folder(tmp_path, astronaut):
    from PIL import Image

    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(astronaut).save(d / "a_face.jpg")
    Image.new("RGB", (64, 64)).save(d / "b_blank.png")
    (d / "c_broken.jpg").write_text("not an image")
    return d


def test_sample_image_is_the_astronaut(astronaut):
    from fiqa_sdk.io import sample_image

    np.testing.assert_array_equal(sample_image(), astronaut)


def test_assess_images_default_is_the_sample_face(gate, astronaut):
    got = list(assess_images(gate=gate))
    assert len(got) == 1 and got[0].path == SAMPLE_LABEL and not got[0].unreadable
    rec = got[0].record()
    assert rec["accepted"] is True and rec["reason"] is None and len(rec["bbox"]) == 4
    assert rec["score"] == pytest.approx(gate.assess(astronaut, color="rgb").score, abs=1e-6)
    assert list(rec) == ["path", "score", "accepted", "reason", "bbox", "det_score", "n_faces",
                         "ambiguous"]


def test_assess_images_paths_pairs_and_failures(gate, folder, astronaut):
    items = [folder / "a_face.jpg", ("arr", astronaut), str(folder / "c_broken.jpg"),
             str(folder / "missing.jpg"), folder / "b_blank.png"]
    got = list(assess_images(items, gate))
    assert [g.path for g in got] == [str(folder / "a_face.jpg"), "arr",
                                     str(folder / "c_broken.jpg"), str(folder / "missing.jpg"),
                                     str(folder / "b_blank.png")]
    assert [g.report.reason for g in got] == [None, None, "decode_error", "not_found", "no_face"]
    assert [g.unreadable for g in got] == [False, False, True, True, False]
    assert "bbox" not in got[2].record() and got[3].record()["n_faces"] == 0
    # a dict of gate options; every face of the photo
    faces = list(assess_images([("arr", astronaut)], {"threshold": 1e9}, all_faces=True))
    assert faces and all(f.report.reason == "below_threshold" for f in faces)


def test_filter_folder_writes_the_csv(gate, folder, tmp_path):
    out = tmp_path / "new" / "r.csv"
    res = filter_folder(folder, out, discard=0.0, gate=gate)
    assert (res.kept, res.images, res.out) == (1, 3, out)
    assert [r["reason"] for r in res.rows] == [None, "no_face", "decode_error"]
    assert res.unreadable == [(str(folder / "c_broken.jpg"), res.result.reports[2].message)]
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == FILTER_COLUMNS
    assert [r["kept"] for r in rows] == ["True", "False", "False"]
    assert [r["reason"] for r in rows] == ["", "no_face", "decode_error"]
    assert rows[1]["score"] == "" and float(rows[0]["score"]) == res.rows[0]["score"]


def test_filter_folder_errors(folder, tmp_path):
    with pytest.raises(fq.GateError, match="exactly one"):
        filter_folder(folder)
    with pytest.raises(fq.GateError, match="not a directory"):
        filter_folder(tmp_path / "nope", discard=0.1)
    nested = tmp_path / "nested"
    (nested / "sub").mkdir(parents=True)
    (nested / "sub" / "x.jpg").write_bytes(b"x")
    with pytest.raises(fq.GateError, match="recursive=True"):
        filter_folder(nested, discard=0.1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(fq.GateError, match="cannot write out"):
        filter_folder(folder, blocker / "r.csv", discard=0.1)  # before any gate is built


def test_prepare_output(tmp_path):
    out = prepare_output(tmp_path / "a" / "b" / "r.csv", name="--out")
    assert out.parent.is_dir() and not list(out.parent.iterdir())  # the probe is gone
    with pytest.raises(fq.GateError, match="--out must be a file"):
        prepare_output(tmp_path, name="--out")


def test_unreadable_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from fiqa_sdk.distributed import unreadable_rows

    out = tmp_path / "r.parquet"
    pq.write_table(pa.table({"path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
                             "reason": [None, "decode_error", "no_face", "not_found"],
                             "message": [None, "b.jpg: broken", "no face", None]}), out)
    assert list(unreadable_rows(out)) == [("b.jpg", "b.jpg: broken"), ("d.jpg", "not_found")]


def test_export_argument_errors(tmp_path):
    from fiqa_sdk.export import export_regressor_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(fq.InvalidArgumentError, match="only the regressors"):
            export_regressor_onnx("diffiqa", tmp_path / "x.onnx")
        with pytest.raises(fq.InvalidArgumentError, match="must be a file"):
            export_regressor_onnx("ediffiqa", tmp_path)
        with pytest.raises(fq.InvalidArgumentError, match="go together"):
            export_regressor_onnx("ediffiqa", tmp_path / "x.onnx", int8=True)
        with pytest.raises(fq.InvalidArgumentError, match="needs int8"):
            export_regressor_onnx("ediffiqa", tmp_path / "x.onnx", calibration_count=3)
    assert not (tmp_path / "x.onnx").exists()
