"""The default gate and CLI as a new user meets them: fast path, the photo's subject, no traps."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk.cli import main

from conftest import LFW_ROOT

pytestmark = pytest.mark.filterwarnings("error::fiqa_sdk.errors.ColorOrderWarning")


@pytest.fixture(scope="module")
def gate():
    return fq.QualityGate()


@pytest.fixture(scope="module")
def lfw_files():
    if not (LFW_ROOT / "images").is_dir():
        pytest.skip("needs ../shared/data/lfw")
    names = ["Aaron_Peirsol", "Abdullah_Gul", "Ai_Sugiyama", "Al_Gore"]
    files = [sorted((LFW_ROOT / "images" / n).glob("*.jpg"))[0] for n in names]
    assert all(f.is_file() for f in files)
    return files


# -- the fast path ---------------------------------------------------------------------------

def test_default_gate_uses_the_joint_pass(gate, astronaut):
    """One onnxruntime pass gives the embedding and the quality: the same numbers as the
    embedder and the scorer's torch model run apart."""
    assert gate.scorer.name == fq.gate.DEFAULT_SCORER
    assert gate.face_policy == "subject"
    assert gate.joint
    rep = gate.assess(astronaut, color="rgb")
    ref = fq.create_scorer(gate.scorer.name, backend="torch").score(rep.aligned[None])[0]
    assert rep.score == pytest.approx(ref, abs=1e-4)
    raw = gate.pipeline.embedder.embed_raw(rep.aligned[None])[0]
    np.testing.assert_allclose(rep.embedding, raw / np.linalg.norm(raw), atol=1e-5)


def test_backend_options_turn_the_joint_pass_off(astronaut):
    g = fq.QualityGate(scorer_options={"backend": "torch"})
    assert not g.joint and g.scorer.backend == "torch"
    ref = fq.QualityGate().assess(astronaut, color="rgb").score
    assert g.assess(astronaut, color="rgb").score == pytest.approx(ref, abs=1e-4)


def test_scorer_backend_auto(monkeypatch):
    from fiqa_sdk import cpu as _cpu

    for forced, want in (("1", "int8"), ("0", "fp32")):
        monkeypatch.setenv("FIQA_INT8", forced)
        _cpu.has_int8_dot.cache_clear()
        sc = fq.create_scorer("ediffiqa")
        assert (sc.backend, sc.precision) == ("onnxruntime", want)
        assert sc.threads == _cpu.usable_cpus()
    _cpu.has_int8_dot.cache_clear()
    # int8 is chosen only for weights whose int8 graph records its fidelity
    monkeypatch.setenv("FIQA_INT8", "1")
    assert fq.create_scorer("ediffiqa-free").precision == "fp32"
    # the user's choice wins
    sc = fq.create_scorer("ediffiqa", backend="onnxruntime", precision="fp32", threads=1)
    assert (sc.backend, sc.precision, sc.threads) == ("onnxruntime", "fp32", 1)
    assert fq.create_scorer("ediffiqa", backend="torch").backend == "torch"
    _cpu.has_int8_dot.cache_clear()


def test_int8_sidecar_records_fidelity():
    from fiqa_sdk.quality import regressor_onnx as ro

    sc = fq.create_scorer("ediffiqa", backend="torch")
    meta = ro.shipped_int8_meta(sc.model)
    assert meta is not None and meta["fidelity"]["faces"] >= 1000
    assert meta["fidelity"]["spearman"] >= ro.MIN_INT8_SPEARMAN


def test_cli_help_imports_no_model_code():
    code = ("import sys, contextlib, io\nfrom fiqa_sdk.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'cv2', 'onnxruntime', 'fiqa_sdk.gate') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the photo's subject -----------------------------------------------------------------------

def _group_photo(files, sizes, xs, canvas=(300, 760)):
    """A real-face 'group photo': LFW photos scaled to ``sizes`` and pasted at ``xs`` (BGR)."""
    import cv2

    out = np.full((*canvas, 3), 90, np.uint8)
    for f, s, x in zip(files, sizes, xs):
        img = cv2.resize(cv2.imread(str(f)), (s, s), interpolation=cv2.INTER_AREA)
        y = (canvas[0] - s) // 2
        out[y : y + s, x : x + s] = img
    return out


def test_subject_not_the_largest_face_at_the_edge(gate, lfw_files):
    # the subject in the middle, a bigger face cut at the edge of the frame
    photo = _group_photo(lfw_files[:2], [250, 300], [255, 560], canvas=(300, 860))
    all_faces = gate.assess(photo, color="bgr", faces="all")
    assert len(all_faces) >= 2
    rep = gate.assess(photo, color="bgr")
    largest = fq.QualityGate(face_policy="largest").assess(photo, color="bgr")
    cx = lambda r: (r.face.bbox[0] + r.face.bbox[2]) / 2  # noqa: E731
    assert 255 < cx(rep) < 505  # the central photo's face
    assert cx(largest) > 560  # 'largest' takes the edge face
    assert rep.n_faces == len(all_faces) and rep.ambiguous


def test_group_photo_gives_its_main_face(gate, lfw_files):
    photo = _group_photo(lfw_files, [150, 150, 240, 150], [10, 165, 320, 600])
    rep = gate.assess(photo, color="bgr")
    assert rep.accepted and 320 < (rep.face.bbox[0] + rep.face.bbox[2]) / 2 < 560
    assert rep.n_faces == 4 and not rep.ambiguous  # the others are much smaller
    assert len(gate.assess(photo, color="bgr", faces="all")) == 4


def test_single_face_is_not_ambiguous(gate, astronaut):
    rep = gate.assess(astronaut, color="rgb")
    assert rep.n_faces == 1 and not rep.ambiguous


# -- traps of a fresh install -----------------------------------------------------------------

def test_missing_file_is_not_found(gate, tmp_path):
    rep = gate.assess(tmp_path / "nope.jpg")
    assert rep.reason == "not_found" and rep.reason in fq.REASONS
    with pytest.raises(fq.ImageNotFoundError):
        fq.load_image(tmp_path / "nope.jpg")


def test_template_reports_what_it_skipped(gate, astronaut, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    tpl = gate.template([astronaut, tmp_path / "missing.jpg", bad, astronaut], color="rgb")
    assert tpl.used == [0, 3]
    assert tpl.skipped == [(1, "not_found"), (2, "decode_error")]
    with pytest.raises(fq.GateError, match="not_found"):
        gate.template([tmp_path / "missing.jpg"])


def test_color_order_warning(gate, astronaut):
    with pytest.warns(fq.ColorOrderWarning, match="color='rgb'"):
        bgr_read = gate.assess(astronaut)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb_read = gate.assess(astronaut, color="rgb")
    # the README sample: RGB read as RGB scores higher than read as BGR
    assert rgb_read.score > bgr_read.score


def test_recursive_folders(gate, lfw_files, tmp_path):
    import shutil

    for i, f in enumerate(lfw_files[:3]):
        (tmp_path / f"person{i}").mkdir()
        shutil.copy(f, tmp_path / f"person{i}" / f.name)
    with pytest.warns(fq.FolderWarning, match="recursive=True"):
        assert fq.gate.list_image_files(tmp_path) == []
    res = gate.filter(tmp_path, discard=0.0, recursive=True)
    assert len(res.reports) == 3 and res.kept == [0, 1, 2]
    assert [Path(s).parent.name for s in res.sources] == ["person0", "person1", "person2"]


def test_cli_filter_folder_of_folders(lfw_files, tmp_path, capsys):
    import shutil

    for i, f in enumerate(lfw_files[:2]):
        (tmp_path / f"p{i}").mkdir()
        shutil.copy(f, tmp_path / f"p{i}" / f.name)
    assert main(["filter", str(tmp_path), "--discard", "0.5"]) == 1
    assert "--recursive" in capsys.readouterr().err
    out = tmp_path / "new" / "dir" / "r.csv"
    assert main(["filter", str(tmp_path), "--discard", "0.5", "--recursive", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["kept"] for r in rows] == ["True", "False"] or [r["kept"] for r in rows] == ["False", "True"]
    assert set(rows[0]) == {"path", "score", "kept", "reason", "n_faces", "ambiguous"}


def test_cli_filter_unwritable_out_fails_before_work(lfw_files, tmp_path, capsys):
    import shutil

    shutil.copy(lfw_files[0], tmp_path / "a.jpg")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["filter", str(tmp_path), "--discard", "0.1", "--out", str(blocker / "r.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fiqa: error: cannot write --out") and "Traceback" not in err


def test_cli_assess_missing_file_exit_3(tmp_path, capsys):
    assert main(["assess", str(tmp_path / "missing.jpg")]) == 3
    rec = json.loads(capsys.readouterr().out)
    assert rec["reason"] == "not_found" and rec["n_faces"] == 0


def test_cli_assess_sample_matches_python(gate, astronaut, capsys):
    assert main(["assess"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["score"] == pytest.approx(gate.assess(astronaut, color="rgb").score, abs=1e-6)
    assert rec["n_faces"] == 1 and rec["ambiguous"] is False


def _documented_threshold_commands() -> list[list[str]]:
    import re
    import shlex

    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    block = text.split("### Thresholds in each scorer's units", 1)[1].split("```bash", 1)[1]
    block = block.split("```", 1)[0]
    cmds = [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]
    assert all(c[:2] == ["fiqa", "assess"] and "--threshold" in c for c in cmds)
    default = __import__("fiqa_sdk").gate.DEFAULT_SCORER
    assert re.search(rf"fiqa assess --threshold \S+ +# {re.escape(default)} \(the default scorer\)", block)
    return cmds


def test_documented_thresholds(capsys, tmp_path, astronaut):
    """Every threshold example of docs/cli.md accepts the sample face in its scorer's units;
    the default scorer's rejects the same face blurred (sigma 8)."""
    import cv2

    cmds = _documented_threshold_commands()
    scorers = {c[c.index("--scorer") + 1] if "--scorer" in c else fq.gate.DEFAULT_SCORER
               for c in cmds}
    assert scorers == set(fq.list_scorers()) - {"random", "diffiqa"}
    blurred = tmp_path / "blurred.png"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(np.ascontiguousarray(astronaut[..., ::-1]),
                                               (0, 0), 8))
    for cmd in cmds:
        assert main(cmd[1:]) == 0
        rec = json.loads(capsys.readouterr().out)
        assert rec["accepted"] is True, (cmd, rec)
        if "--scorer" not in cmd:
            assert main([*cmd[1:], str(blurred)]) == 0
            rec = json.loads(capsys.readouterr().out)
            assert rec["accepted"] is False and rec["reason"] == "below_threshold", rec


def test_docs_name_one_default_scorer():
    """Every page that names the default scorer names the one in fiqa_sdk.gate."""
    import re

    repo = Path(__file__).resolve().parents[1]
    pages = [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]
    pat = re.compile(r"default scorer(?: is)?[^`\n]{0,12}\(?`\"?([a-z0-9+-]+)\"?`")
    found = {}
    for page in pages:
        for m in pat.finditer(page.read_text()):
            found.setdefault(m.group(1), []).append(page.name)
    assert found, "no page names the default scorer"
    assert set(found) == {fq.gate.DEFAULT_SCORER}, found
