"""The scripts in examples/ run offline with their defaults and print what they claim.

Each example runs with HOME, FIQA_CACHE and TMPDIR in pytest's tmp_path, on the bundled sample
face or inputs it generates itself: ``--help`` of every example and the sample run of assess.py
in a fresh process (as a user runs them), the others in the test process (``run_example``).
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Captured, graded_crops, in_process  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = ["assess.py", "filter_folder.py", "enrolment.py", "video_best_frame.py",
           "custom_embedder.py", "calibrate_threshold.py", "train_own_ediffiqa.py"]
FLOAT = r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"


#: ONNX graphs that an earlier example exported into its $FIQA_CACHE/onnx (named by the
#: model's tensor digest, so valid for any example), put into each later example's fresh cache:
#: the first example that builds the default gate exports its graphs, the others start from
#: them as a user's second run does (about 1.5 s less each).
_GRAPHS = Path(os.environ["FIQA_CACHE"]).parent / "examples-onnx"


def run_example(name: str, tmp_path: Path, *args: str, expect_rc: int = 0,
                fresh_process: bool = False) -> str:
    """Run ``examples/NAME ARGS`` with HOME, FIQA_CACHE and TMPDIR in ``tmp_path`` and return
    its stdout (its exit code must be ``expect_rc``, its stderr free of tracebacks).

    ``fresh_process=True``: in a subprocess, exactly as a user runs it. Otherwise in this
    process, as ``python NAME`` runs it (``runpy``, ``__name__ == "__main__"``, ``sys.argv``,
    working folder ``tmp_path``; the environment, working folder, ``sys.argv``, temporary
    folder and torch / OpenCV threads are restored after it), so that the examples share the
    imported libraries and loaded models instead of paying ~3 s of start-up each; the
    ``--help`` and sample runs below check every example in a fresh process."""
    env = {"HOME": str(tmp_path / "home"), "FIQA_CACHE": str(tmp_path / "cache"),
           "TMPDIR": str(tmp_path)}
    (tmp_path / "home").mkdir(exist_ok=True)
    graphs = tmp_path / "cache" / "onnx"
    graphs.mkdir(parents=True, exist_ok=True)
    for g in _GRAPHS.glob("*.onnx"):
        shutil.copyfile(g, graphs / g.name)
    if fresh_process:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=tmp_path,
            env={**os.environ, **env, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
            capture_output=True, text=True, timeout=300)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    else:
        code, stdout, stderr = _run_in_process(EXAMPLES / name, list(map(str, args)), tmp_path, env)
    _GRAPHS.mkdir(exist_ok=True)
    for g in graphs.glob("*.onnx"):
        if not (_GRAPHS / g.name).is_file():
            shutil.copyfile(g, _GRAPHS / f".{g.name}.tmp")
            os.replace(_GRAPHS / f".{g.name}.tmp", _GRAPHS / g.name)
    assert code == expect_rc, f"{name} exited {code}:\n{stdout}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    return stdout


def _run_in_process(script: Path, argv: list[str], cwd: Path, env: dict) -> tuple[int, str, str]:
    """``python SCRIPT ARGV`` in this process (:func:`conftest.in_process`): (exit code,
    stdout, stderr). An exception the script does not handle propagates (the test fails with
    its traceback)."""
    import runpy

    cap = Captured()
    code = 0
    with in_process(cap, env, cwd, None, argv=[str(script), *argv]):  # tempdir from $TMPDIR
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as e:
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, cap.stdout.getvalue(), cap.stderr.getvalue()


def grab(pattern: str, text: str) -> list[str]:
    m = re.search(pattern, text, re.MULTILINE)
    assert m, f"{pattern!r} not found in:\n{text}"
    return list(m.groups())


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_example_has_docstring_and_help(name, tmp_path):
    src = (EXAMPLES / name).read_text()
    doc = ast.get_docstring(ast.parse(src))
    assert doc and "Run::" in doc and f"examples/{name}" in doc
    code_lines = [ln for ln in src.splitlines() if "import" in ln and "fiqa_sdk" in ln]
    assert code_lines == ["import fiqa_sdk as fq"], code_lines  # public names only: fq.*
    out = run_example(name, tmp_path, "--help", fresh_process=True)
    assert "usage:" in out


def test_assess_sample(tmp_path):
    out = run_example("assess.py", tmp_path, fresh_process=True)  # the README's first run
    score, accepted, reason, x1, y1, x2, y2 = grab(
        rf"^sample:astronaut  score={FLOAT}  accepted=(\w+)  reason=(\w+)  "
        rf"bbox=\({FLOAT}, {FLOAT}, {FLOAT}, {FLOAT}\)", out)
    assert math.isfinite(float(score)) and accepted == "True" and reason == "None"
    # the astronaut's face: centre near (225, 117) in the 512x512 photo, about 100 px wide
    cx, cy = (float(x1) + float(x2)) / 2, (float(y1) + float(y2)) / 2
    assert abs(cx - 225) < 25 and abs(cy - 117) < 25 and 60 < float(x2) - float(x1) < 160


def test_assess_files_reasons_and_crops(tmp_path):
    from PIL import Image
    from skimage.data import astronaut

    Image.fromarray(astronaut()).save(tmp_path / "face.jpg")
    Image.new("RGB", (64, 64), (128, 128, 128)).save(tmp_path / "blank.png")
    out = run_example("assess.py", tmp_path, "face.jpg", "blank.png", "missing.jpg",
                      "--threshold", "1e9", "--save-crops", "crops", expect_rc=3)
    reasons = dict(re.findall(r"^(\S+)  score=\S+  accepted=False  reason=(\w+)", out, re.M))
    assert reasons == {"face.jpg": "below_threshold", "blank.png": "no_face",
                       "missing.jpg": "not_found"}
    crop = Image.open(tmp_path / "crops" / "face.png")
    assert crop.size == (112, 112) and crop.mode == "RGB"


def test_filter_folder_demo_csv(tmp_path):
    out = run_example("filter_folder.py", tmp_path, "--out", tmp_path / "result.csv")
    (folder,) = grab(r"^demo folder: (.+)$", out)
    files = sorted(p for p in Path(folder).iterdir())
    with open(tmp_path / "result.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "score", "kept", "reason"]
    assert [r["path"] for r in rows] == [str(p) for p in files]  # one row per file, sorted
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["06_no_face.png"]["reason"] == "no_face"
    assert by_name["07_not_an_image.jpg"]["reason"] == "decode_error"
    assert by_name["06_no_face.png"]["score"] == "" and by_name["06_no_face.png"]["kept"] == "False"
    scored = [r for r in rows if r["score"]]
    assert len(scored) == 5
    # discard=0.2 of 5 scored images rejects floor(1.0) = 1: the lowest-scored one
    discarded = [r for r in rows if r["reason"] == "discarded"]
    assert len(discarded) == 1
    assert float(discarded[0]["score"]) == min(float(r["score"]) for r in scored)
    # ... one of the badly degraded copies, not the sharp or the mildly blurred one
    assert Path(discarded[0]["path"]).name in {"03_noisy.jpg", "04_lowres.jpg", "05_blur_heavy.jpg"}
    assert all(r["kept"] == "True" and r["reason"] == "" for r in scored if r is not discarded[0])
    assert "kept 4 of 7 images" in out


def test_enrolment_quality_weighted_vs_mean(tmp_path):
    out = run_example("enrolment.py", tmp_path)
    weights = [float(w) for w in re.findall(rf"weight={FLOAT}", out)]
    assert len(weights) == 5 and abs(sum(weights) - 1) < 0.01
    assert weights[0] == max(weights)  # the one good image gets the largest weight
    sims = {m: float(v) for m, v in
            re.findall(rf"^similarity probe vs (\w+) template: {FLOAT}$", out, re.M)}
    assert set(sims) == {"quality_weighted", "mean", "best"}
    assert all(-1 <= v <= 1 for v in sims.values())
    # the demo set is one good image and four badly degraded ones: weighting must help
    assert sims["quality_weighted"] > sims["mean"] + 0.05


def test_video_best_frame_demo(tmp_path):
    out = run_example("video_best_frame.py", tmp_path, "--out-dir", tmp_path / "frames",
                      "--top", "2")
    frames = re.findall(rf"^  frame +(\d+)  score= *{FLOAT}  weight={FLOAT}$", out, re.M)
    assert [int(f) for f, _, _ in frames] == [0, 5, 10, 15, 20, 25]  # every 5th of 30 frames
    assert abs(sum(float(w) for _, _, w in frames) - 1) < 0.01
    (best,) = grab(r"^best frame: (\d+) ", out)
    assert best == "20"  # the clip is sharpest and brightest at frame 20
    assert (tmp_path / "frames" / "frame_00020.jpg").is_file()
    assert len(list((tmp_path / "frames").glob("frame_*.jpg"))) == 2
    (qw,) = grab(rf"^similarity probe vs quality_weighted template: {FLOAT}$", out)
    (mean,) = grab(rf"^similarity probe vs mean template: {FLOAT}$", out)
    assert float(qw) > float(mean)


@pytest.mark.parametrize("kind,dim", [
    ("torch", 128),
    pytest.param("numpy", 256, marks=pytest.mark.slow),  # same wrapper as "torch": keep CI short
    ("subclass", 128),
])
def test_custom_embedder_and_scorer(kind, dim, tmp_path):
    out = run_example("custom_embedder.py", tmp_path, "--embedder", kind)
    assert "scorer: ContrastScorer(name='contrast')" in out
    assert f"embedding shape=({dim},) norm=1.000" in out
    s_gate, = grab(rf"^assess sharp: score={FLOAT}", out)
    s_direct, = grab(rf"^scorer on the aligned crop directly: {FLOAT}", out)
    assert s_gate == s_direct
    # discard=0.25 of 4 images: the low-contrast copy (lowest RMS contrast) goes
    assert re.search(r"^filter low contrast +score=\S+ kept=False reason=discarded$", out, re.M)
    assert len(re.findall(r"kept=True reason=None", out)) == 3
    assert "refused: cannot save a gate built from objects" in out


def test_calibrate_save_load_apply(tmp_path):
    cfg = tmp_path / "gate.json"
    out = run_example("calibrate_threshold.py", tmp_path, "--config", cfg)
    (thr,) = grab(rf"^calibrated threshold \(discard=0.2\): {FLOAT}$", out)
    saved = json.loads(cfg.read_text())
    assert saved["format"] == "fiqa-quality-gate"
    assert saved["threshold"] == pytest.approx(float(thr), abs=1e-6)
    scorer, loaded = grab(rf"^loaded gate: scorer (\S+), threshold {FLOAT}$", out)
    assert scorer == saved["scorer"] and loaded == thr
    # 0.2-quantile of 10 reference scores (linear interpolation): 2 of them lie below it
    assert "reference images below it: 2 of 10" in out
    decisions = dict(re.findall(r"^assess (.+?) +score=\S+  accepted=\w+  reason=(\w+)$", out,
                                re.M))
    assert decisions == {"sharp": "None", "heavy blur": "below_threshold", "no face": "no_face"}
    assert "filter: kept ['sharp']" in out


def test_train_own_ediffiqa_demo(tmp_path):
    """The whole recipe on the generated demo set (40 faces, 5 pretend identities): aligned,
    pseudo-labelled, trained; the weights load back into a gate that scores the images."""
    out = run_example("train_own_ediffiqa.py", tmp_path, "--out", tmp_path / "run")
    aligned, n_id, used = map(int, grab(
        r"^faces aligned: (\d+) of (\d+) identities, trained on: (\d+)", out))
    assert (aligned, n_id) == (40, 5) and 0 < used <= aligned
    loss0, loss1 = map(float, grab(rf"^loss: epoch 1 {FLOAT} -> epoch 10 {FLOAT}", out))
    assert math.isfinite(loss0) and loss1 < loss0  # training lowers the loss
    weights = tmp_path / "run" / "ediffiqa" / "ediffiqa_mbf.safetensors"
    assert weights.is_file() and weights.with_suffix(".json").is_file()
    scores = [float(s) for s in re.findall(rf"^  \S+\.jpg  score={FLOAT}  reason=None$", out, re.M)]
    assert len(scores) == 6 and all(math.isfinite(s) for s in scores)
    assert len(set(scores)) > 1  # a trained head, not a constant


def test_train_own_ediffiqa_user_folder(astronaut, astronaut_face, tmp_path):
    """--data: a user-shaped folder (one sub-folder per person; aligned 112x112 crops as .png
    and .jpg, one whole photo, a stray text file) through 1 epoch with a 1-repeat teacher."""
    import cv2

    data = tmp_path / "my_faces"
    for i, person in enumerate(["alice", "bob", "carol"]):
        (data / person).mkdir(parents=True)
        crops = graded_crops(astronaut, astronaut_face, 3, period=3, jitter=2.0, seed=i)
        for j, crop in enumerate(crops):
            ext = ".png" if i == 1 else ".jpg"
            cv2.imwrite(str(data / person / f"{j}{ext}"), crop[:, :, ::-1])
    cv2.imwrite(str(data / "carol" / "photo.JPG"), astronaut[:, :, ::-1])  # detect + align
    (data / "bob" / "notes.txt").write_text("not an image")
    out = run_example("train_own_ediffiqa.py", tmp_path, "--data", data, "--out", tmp_path / "run",
                      "--epochs", "1", "--teacher-n", "1", "--threads", "1")
    assert grab(r"^faces aligned: (\d+) of (\d+) identities", out) == ["10", "3"]
    (root,) = grab(r"^aligned faces: (.+)$", out)
    with open(Path(root) / "index.csv", newline="") as fh:
        ids = {r["file"]: int(r["identity"]) for r in csv.DictReader(fh)}
    assert ids["alice/0.jpg"] == 0 and ids["bob/2.png"] == 1 and ids["carol/photo.JPG"] == 2
    weights = tmp_path / "run" / "ediffiqa" / "ediffiqa_mbf.safetensors"
    assert weights.is_file()
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert (meta["data"]["faces"], meta["data"]["identities"]) == (10, 3)
    assert [h["epoch"] for h in meta["history"]] == [1]
    assert math.isfinite(meta["history"][0]["loss"])
    scores = [float(s) for s in re.findall(rf"^  \S+  score={FLOAT}  reason=None$", out, re.M)]
    assert len(scores) == 6 and all(math.isfinite(s) for s in scores)
    # the same --out with changed data: a new layout, not the stale cached faces of the first
    shutil.rmtree(data / "carol")
    out = run_example("train_own_ediffiqa.py", tmp_path, "--data", data, "--out", tmp_path / "run",
                      "--epochs", "1", "--teacher-n", "1", "--threads", "1")
    assert grab(r"^faces aligned: (\d+) of (\d+) identities", out) == ["6", "2"]
    assert grab(r"^aligned faces: (.+)$", out) != [root]


def test_train_own_ediffiqa_bad_data(tmp_path):
    (tmp_path / "empty").mkdir()
    run_example("train_own_ediffiqa.py", tmp_path, "--data", tmp_path / "empty", expect_rc=1)
