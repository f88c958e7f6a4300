"""The fiqa command line: JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fiqa_sdk import __version__
from fiqa_sdk.cli import main

from conftest import graded_crops  # noqa: E402


def test_assess_sample(capsys):
    assert main(["assess"]) == 0
    rec = json.loads(capsys.readouterr().out.strip())
    assert rec["path"] == "sample:astronaut" and rec["reason"] is None and rec["accepted"] is True
    assert rec["score"] > 0 and len(rec["bbox"]) == 4


def test_assess_mixed_files(tmp_path, capsys):
    from PIL import Image
    from skimage.data import astronaut

    good = tmp_path / "face.jpg"
    Image.fromarray(astronaut()).save(good)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64)).save(blank)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    rc = main(["assess", str(good), str(blank), str(text), str(tmp_path / "missing.jpg"),
               "--threshold", "1e9"])
    out, err = capsys.readouterr()
    recs = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["reason"] for r in recs] == ["below_threshold", "no_face", "decode_error", "not_found"]
    assert recs[0]["score"] is not None and recs[0]["accepted"] is False
    assert rc == 3
    assert err.count("\n") == 2 and "missing.jpg" in err and "Traceback" not in err


def test_filter_exits_3_when_a_file_is_unreadable(tmp_path, capsys):
    import csv

    from PIL import Image
    from skimage.data import astronaut

    Image.fromarray(astronaut()).save(tmp_path / "a_face.jpg")
    Image.new("RGB", (64, 64)).save(tmp_path / "b_blank.png")
    (tmp_path / "c_broken.jpg").write_text("not an image")
    out = tmp_path / "result.csv"
    rc = main(["filter", str(tmp_path), "--discard", "0.0", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 3
    with out.open() as fh:  # the CSV is still complete
        rows = list(csv.DictReader(fh))
    assert [r["reason"] for r in rows] == ["", "no_face", "decode_error"]
    assert [r["kept"] for r in rows] == ["True", "False", "False"]
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "c_broken.jpg" in lines[0] and "b_blank" not in err
    assert lines[1].startswith("fiqa filter: kept 1 of 3 images") and "1 could not be read" in lines[1]
    assert "Traceback" not in err
    # no_face alone is not a failure
    (tmp_path / "c_broken.jpg").unlink()
    assert main(["filter", str(tmp_path), "--discard", "0.0", "--no-progress"]) == 0


def test_unknown_backend_is_one_line_error(capsys):
    assert main(["assess", "--detector", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fiqa: error: unknown detector 'nope'") and err.count("\n") == 1


def test_list_and_version(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("retinaface", "mtcnn", "dlib", "scrfd", "arcface", "flip-consistency"):
        assert name in out
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_console_entry_point_installed():
    r = subprocess.run([sys.executable, "-m", "fiqa_sdk.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and __version__ in r.stdout
    r = subprocess.run([sys.executable, "-m", "fiqa_sdk.cli", "assess", "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr


# -- usage errors name the sub-command --------------------------------------------------------
@pytest.mark.parametrize("argv, prog", [
    (["assess", "--bogus"], "fiqa assess"),
    (["filter", ".", "--discard", "0.2", "--bogus"], "fiqa filter"),
    (["list", "extra"], "fiqa list"),
    (["export", "onnx", "--scorer", "ediffiqa", "--out", "x.onnx", "--bogus"], "fiqa export onnx"),
])
def test_unknown_option_prints_the_subcommand_usage(argv, prog, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {prog} ") and f"{prog}: error: unrecognized arguments:" in err
    assert "Traceback" not in err


def test_bench_suites_unknown_option_prints_their_usage(capsys):
    from fiqa_bench.cli import main as bench_main

    with pytest.raises(SystemExit) as e:
        bench_main(["templates", "--out", "x", "--bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fiqa-bench templates ") and "unrecognized arguments: --bogus" in err


def test_fiqa_bench_points_to_the_research_harness(capsys):
    """``fiqa bench ...`` moved to ``fiqa-bench ...``: the old command line gets the new one."""
    assert main(["bench", "quality", "--suite", "dev", "--out", "x"]) == 1
    err = capsys.readouterr().err
    assert "fiqa-bench quality --suite dev --out x" in err and "Traceback" not in err
    assert main(["bench"]) == 1
    assert "fiqa-bench quality | templates" in capsys.readouterr().err


def test_unknown_option_subprocess_shows_assess_usage():
    r = subprocess.run([sys.executable, "-m", "fiqa_sdk.cli", "assess", "--bogus"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("usage: fiqa assess ")
    assert "--face-policy" in r.stderr and "Traceback" not in r.stderr


# -- device -------------------------------------------------------------------------------------
def test_cuda_without_cuda_onnxruntime_is_one_line(monkeypatch, capsys):
    import onnxruntime

    import fiqa_sdk as fq

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert main(["assess", "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fiqa: error: device='cuda'") and err.count("\n") == 1
    assert "fiqa-sdk[gpu]" in err and "Traceback" not in err
    # the library raises the typed error, still a RuntimeError for older handlers
    with pytest.raises(fq.DeviceUnavailableError, match="CUDA") as exc:
        fq.QualityGate(device="cuda")
    assert isinstance(exc.value, RuntimeError) and isinstance(exc.value, fq.FiqaError)


# -- fiqa export onnx ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_regressor(tmp_path_factory):
    """An eDifFIQA regressor distilled for one epoch on degraded crops of the sample face
    (labels = -severity), as in tests/test_ediffiqa.py's ``trained`` fixture but smaller."""
    import numpy as np
    import torch

    import fiqa_sdk as fq
    from fiqa_sdk.cli import sample_image
    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.train.distill import DistillConfig, distill

    img = sample_image()
    face = fq.create_detector("retinaface").detect(img)[0]
    crops = graded_crops(img, face, 12, period=6, jitter=2.0, blur=0.6)
    arcface = fq.create_embedder("arcface")
    e = arcface.embed_raw(crops)
    ef = arcface.embed_raw(np.ascontiguousarray(crops[:, :, ::-1]))
    cfg = DistillConfig(method="ediffiqa", epochs=1, batch_size=6, val_fraction=0.0, min_count=1,
                        p=0.5)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = distill(crops, np.arange(12) // 6, -(np.arange(12) % 6).astype(float), e, ef,
                          load_mobilefacenet(), tmp_path_factory.mktemp("tiny_ediffiqa"), cfg,
                          meta={"backbone": {"arch": "mobilefacenet", "base": "w600k_mbf.onnx"}})
    finally:
        torch.set_num_threads(old)
    return summary["weights"]


def test_export_onnx_with_parity(tiny_regressor, tmp_path, capsys):
    out = tmp_path / "sub" / "ediffiqa.onnx"
    rc = main(["export", "onnx", "--scorer", "ediffiqa", "--weights", str(tiny_regressor),
               "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["onnx"] == str(out) and out.is_file()
    assert 0.0 <= rec["max_abs_diff"] <= 1e-4
    assert rec["inputs"] == {"input": ["n", 3, 112, 112]}
    assert rec["outputs"] == {"quality": ["n"], "embedding": ["n", 512]}


def test_export_onnx_library_function(tiny_regressor, tmp_path):
    """What `fiqa export onnx` runs, called from Python: the file, the parity and the record."""
    from fiqa_sdk.export import EXPORT_TOLERANCE, export_regressor_onnx

    out = tmp_path / "lib" / "ediffiqa.onnx"
    res = export_regressor_onnx("ediffiqa", out, weights=tiny_regressor)
    assert res.passed and res.onnx == out and out.is_file() and res.sidecar is None
    assert res.precision == "fp32" and res.tolerance == EXPORT_TOLERANCE
    assert res.as_dict()["outputs"] == {"quality": ["n"], "embedding": ["n", 512]}


def test_export_onnx_int8(tiny_regressor, tmp_path, capsys):
    """--int8: the int8 graph, its sidecar (sha256 of the file, calibration) and the one JSON
    line (the quantizer's own prints kept off stdout); --calibration* only with --int8."""
    import numpy as np

    import fiqa_sdk as fq
    from fiqa_sdk._weights import sha256_file
    from fiqa_sdk.cli import sample_image

    img = sample_image()
    face = fq.create_detector("retinaface").detect(img)[0]
    calib = tmp_path / "faces.npy"
    np.save(calib, np.concatenate([graded_crops(img, face, 10, period=5), graded_crops(
        img, face, 10, period=5)[:, :, ::-1]]))
    out = tmp_path / "tiny.int8.onnx"
    rc = main(["export", "onnx", "--scorer", "ediffiqa", "--weights", str(tiny_regressor),
               "--int8", "--calibration", str(calib), "--calibration-count", "16",
               "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rec = json.loads(captured.out.strip().splitlines()[-1])
    assert rec["precision"] == "int8" and rec["calibration_crops"] == 16
    assert 0 < rec["max_abs_diff"] <= rec["tolerance"] == 0.1
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["sha256"] == sha256_file(out) == rec["sha256"] and side["file"] == out.name
    assert side["calibration"]["file"] == f"{tmp_path.name}/faces.npy"
    assert side["calibration"]["selection"] == "16 evenly spaced"
    assert captured.out.count("\n") == 1  # the quantizer printed nothing to stdout
    assert main(["export", "onnx", "--scorer", "ediffiqa", "--calibration", str(calib),
                 "--out", str(out)]) == 1  # --calibration without --int8
    assert main(["export", "onnx", "--scorer", "ediffiqa", "--calibration-count", "3",
                 "--out", str(out)]) == 1


def test_export_onnx_parity_failure_exits_1(tiny_regressor, tmp_path, capsys, monkeypatch):
    from fiqa_sdk.quality import ediffiqa

    orig = ediffiqa.OnnxRegressorScorer._score
    monkeypatch.setattr(ediffiqa.OnnxRegressorScorer, "_score",
                        lambda self, a, f: orig(self, a, f) + 1e-3)
    rc = main(["export", "onnx", "--scorer", "ediffiqa", "--weights", str(tiny_regressor),
               "--out", str(tmp_path / "bad.onnx")])
    out, err = capsys.readouterr()
    assert rc == 1
    assert json.loads(out)["max_abs_diff"] > 1e-4
    assert err.startswith("fiqa: error: ONNX parity check failed") and err.count("\n") == 1


def test_export_onnx_without_weights_is_one_line(tmp_path, capsys, monkeypatch):
    from fiqa_sdk.quality import ediffiqa

    monkeypatch.setitem(ediffiqa.SHIPPED, "diffiqa-r", tmp_path / "absent.safetensors")
    out = tmp_path / "r.onnx"
    assert main(["export", "onnx", "--scorer", "diffiqa-r", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fiqa: error: diffiqa-r's weights are not shipped")
    assert err.count("\n") == 1 and not out.exists()
    assert main(["export", "onnx", "--scorer", "ediffiqa", "--weights",
                 str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:  # not an exportable scorer: usage error
        main(["export", "onnx", "--scorer", "diffiqa", "--out", str(out)])
    assert e.value.code == 2
