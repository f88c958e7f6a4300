"""The fiqa command line: JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fiqa_sdk import __version__
from fiqa_sdk.cli import main


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
    assert [r["reason"] for r in recs] == ["below_threshold", "no_face", "decode_error", "decode_error"]
    assert recs[0]["score"] is not None and recs[0]["accepted"] is False
    assert rc == 3
    assert err.count("\n") == 2 and "missing.jpg" in err and "Traceback" not in err


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
