"""fiqa_sdk.distributed: ray_filter / `fiqa filter --engine ray` on a local Ray instance.

A real pipeline on a small real folder (LFW images in identity subfolders plus broken files:
a truncated JPEG, a zero-byte file, a text file named .jpg, an image without a face): one
Parquet row per input, reasons for the bad items, and scores / kept sets equal to
``QualityGate.filter`` on the same inputs. Resumption: a job stopped after some shards (a test
hook, and a subprocess killed with SIGKILL) and rerun gives the uninterrupted run's table.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk import distributed as fd

REPO = Path(__file__).resolve().parents[1]
#: a small shard size so that the folder below makes several shards (resumption needs them)
SHARD = 3
DISCARD = 0.4
BAD = {"A/notes.jpg": "decode_error", "B/truncated.jpg": "decode_error",
       "zero.jpg": "decode_error", "noface.png": "no_face"}


# -- without Ray -------------------------------------------------------------------------------
def test_importing_fiqa_sdk_does_not_import_ray():
    code = ("import sys, fiqa_sdk, fiqa_sdk.distributed, fiqa_sdk.cli; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    pp = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pp}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


def test_missing_extra_raises_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now raises ImportError
    with pytest.raises(fq.MissingDependencyError, match=r"fiqa-sdk\[ray\]"):
        fd.ray_filter([str(tmp_path / "x.jpg")], tmp_path / "out.parquet", discard=0.1)


def test_list_images_is_recursive_and_ordered_like_gate_filter(tmp_path):
    from fiqa_sdk.gate import list_image_files

    for rel in ("b.jpg", "a.PNG", "a-c/x.jpg", "a/z.jpg", "a/y/w.jpeg", "notes.txt", "c.gif",
                ".hidden/h.jpg", "a/.h.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    got = fd.list_images(tmp_path)
    rel = [str(Path(p).relative_to(tmp_path)) for p in got]
    # components sorted as pathlib sorts them: "a" (and its subfolders) before "a-c" and "a.PNG";
    # hidden files and folders skipped, as gate.filter(folder, recursive=True) does
    assert rel == ["a/y/w.jpeg", "a/z.jpg", "a-c/x.jpg", "a.PNG", "b.jpg", "c.gif"]
    assert [str(p) for p in list_image_files(tmp_path, recursive=True)] == got
    flat = [p for p in got if Path(p).parent == tmp_path]
    assert flat == [str(p) for p in list_image_files(tmp_path)]
    uri = fd.list_images(tmp_path.as_uri())  # the pyarrow.fs path (s3://, gs://, file://)
    assert uri == [Path(p).as_uri() for p in got]


def test_table_inputs(tmp_path):
    (tmp_path / "l.csv").write_text("path,person\nimg/a.jpg,ann\n/abs/b.jpg,bob\n")
    paths, ids = fd.resolve_inputs(tmp_path / "l.csv", identity_column="person")
    assert paths == [str(tmp_path / "img" / "a.jpg"), "/abs/b.jpg"] and ids == ["ann", "bob"]
    with pytest.raises(fq.GateError, match="cannot read columns"):
        fd.resolve_inputs(tmp_path / "l.csv", path_column="file")
    with pytest.raises(fq.GateError, match="neither a folder"):
        fd.resolve_inputs(tmp_path / "l.jpg")
    with pytest.raises(fq.GateError, match="list of paths"):
        fd.resolve_inputs([b"\xff\xd8"])


# -- a local Ray instance ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(lfw_root, tmp_path_factory) -> Path:
    """5 LFW images of 3 people in subfolders and at the top, plus the broken files of BAD."""
    import cv2

    d = tmp_path_factory.mktemp("faces")
    src = lfw_root / "images"
    for sub, name in (("A", "AJ_Cook_0001"), ("B", "Aaron_Eckhart_0001"),
                      ("", "Abel_Pacheco_0001"), ("", "Abel_Pacheco_0002"),
                      ("B", "Aaron_Peirsol_0001")):
        (d / sub).mkdir(exist_ok=True)
        shutil.copy(src / name.rsplit("_", 1)[0] / f"{name}.jpg", d / sub / f"{name}.jpg")
    data = (src / "AJ_Lamas" / "AJ_Lamas_0001.jpg").read_bytes()
    (d / "B" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (d / "zero.jpg").write_bytes(b"")
    (d / "A" / "notes.jpg").write_text("not an image\n")
    (d / "readme.txt").write_text("not listed: not an image extension\n")
    noise = np.random.default_rng(0).integers(90, 140, (120, 160, 3)).astype(np.uint8)
    cv2.imwrite(str(d / "noface.png"), noise)
    return d


@pytest.fixture(scope="module")
def gate():
    # whatever the default gate is, the Ray path follows its config; batch_size = shard size:
    # the actors' batches are then those of gate.filter over the whole list
    return fq.QualityGate(batch_size=SHARD)


@pytest.fixture(scope="module")
def reference(gate, folder):
    """QualityGate.filter on the same ordered inputs, single process."""
    return gate.filter(fd.list_images(folder), discard=DISCARD)


@pytest.fixture(scope="module")
def uninterrupted(ray_local, gate, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "result.parquet"
    res = fd.ray_filter(folder, out, gate=gate, discard=DISCARD, shard_size=SHARD, num_actors=2)
    return res, out, _read(out)  # the table as written (a later test rewrites the file)


def _read(out):
    import pyarrow.parquet as pq

    return pq.read_table(out)


def test_ray_filter_matches_gate_filter(uninterrupted, reference, folder):
    res, out, t = uninterrupted
    paths = fd.list_images(folder)
    n = len(paths)
    assert n == 9 and res.images == t.num_rows == n  # one row per input, never fewer
    assert t.column_names[:4] == ["path", "score", "kept", "reason"]
    assert t.column("path").to_pylist() == paths == reference.sources
    assert res.shards == res.shards_scored == math.ceil(n / SHARD) and res.num_actors == 2
    score = t.column("score").to_pylist()
    ref = [r.score for r in reference.reports]
    assert [s is None for s in score] == [s is None for s in ref]
    np.testing.assert_allclose([s for s in score if s is not None],
                               [s for s in ref if s is not None], rtol=0, atol=1e-6)
    kept = t.column("kept").to_pylist()
    assert [i for i, k in enumerate(kept) if k] == reference.kept
    assert list(zip(t.column("reason").to_pylist(), kept)) == \
        [(r.reason, r.accepted) for r in reference.reports]
    assert res.threshold == pytest.approx(reference.threshold, abs=1e-5)
    by_name = dict(zip((str(Path(p).relative_to(folder)) for p in paths),
                       t.column("reason").to_pylist()))
    for rel, why in BAD.items():
        assert by_name[rel] == why
    n_scored = n - len(BAD)
    assert res.scored == n_scored and res.kept == n_scored - math.floor(DISCARD * n_scored)
    assert res.rejected == {"decode_error": 3, "no_face": 1,
                            "discarded": math.floor(DISCARD * n_scored)}
    rows = t.to_pylist()
    assert t.column_names[4:6] == ["n_faces", "ambiguous"]  # the rest of fiqa filter's CSV
    assert [(r["n_faces"], r["ambiguous"]) for r in rows] == \
        [(rep.n_faces, rep.ambiguous) for rep in reference.reports]
    for r, rep in zip(rows, reference.reports):
        if r["score"] is None and r["reason"] == "decode_error":
            assert r["det_score"] is None and r["bbox"] is None and r["message"]
        if r["score"] is not None:
            assert r["det_score"] == pytest.approx(rep.face.det_score, abs=1e-4)
            np.testing.assert_allclose(r["bbox"], rep.face.bbox, atol=1e-3)
            np.testing.assert_allclose(np.reshape(r["landmarks"], (5, 2)), rep.face.landmarks,
                                       atol=1e-3)
    assert "embedding" not in t.column_names


def test_threshold_rerun_reuses_the_shards(uninterrupted, gate, folder, ray_local):
    res, out, table = uninterrupted
    scores = sorted(s for s in table.column("score").to_pylist() if s is not None)
    thr = (scores[1] + scores[2]) / 2  # two scored faces fall below it
    again = fd.ray_filter(folder, out, gate=gate, threshold=thr, shard_size=SHARD, num_actors=2)
    assert again.shards_scored == 0 and again.scored_images == 0  # only the decision pass
    ref = gate.filter(fd.list_images(folder), threshold=thr)
    t = _read(out)
    assert [i for i, k in enumerate(t.column("kept").to_pylist()) if k] == ref.kept
    assert t.column("reason").to_pylist() == [r.reason for r in ref.reports]
    assert again.rejected["below_threshold"] == 2 and again.threshold == thr
    # back to the discard decision: the same table as the first run
    fd.ray_filter(folder, out, gate=gate, discard=DISCARD, shard_size=SHARD)
    assert _read(out).equals(table)  # rebuilt from the same shards, unchanged


def test_conflicting_output_is_refused(uninterrupted, gate, folder, tmp_path):
    res, out, _ = uninterrupted
    with pytest.raises(fq.OutputConflictError, match="another input list"):
        fd.ray_filter(fd.list_images(folder)[:4], out, gate=gate, discard=DISCARD,
                      shard_size=SHARD)
    cfg = {**gate.config(), "face_policy": "central"}
    with pytest.raises(fq.OutputConflictError, match="another gate configuration"):
        fd.ray_filter(folder, out, gate=cfg, discard=DISCARD, shard_size=SHARD)
    with pytest.raises(fq.OutputConflictError, match="shard_size"):
        fd.ray_filter(folder, out, gate=gate, discard=DISCARD, shard_size=SHARD + 1)
    (tmp_path / "mine.txt").write_text("a folder of the user's\n")
    with pytest.raises(fq.OutputConflictError, match="not empty"):
        fd.ray_filter(folder, out, gate=gate, discard=DISCARD, work_dir=tmp_path, overwrite=True)
    assert (tmp_path / "mine.txt").exists()  # never deleted
    with pytest.raises(fq.GateError, match="exactly one"):
        fd.ray_filter(folder, out, gate=gate, discard=0.1, threshold=0.2)
    with pytest.raises(fq.GateError, match="is a folder"):
        fd.ray_filter(folder, tmp_path, gate=gate, discard=0.1)


def test_cli_engine_ray(ray_local, folder, tmp_path, capsys):
    """`fiqa filter DIR --engine ray` with a CSV list of paths plus identities, and --embeddings;
    exit code 3 (some images could not be read), a Parquet row per input, the summary."""
    from fiqa_sdk.cli import main

    paths = fd.list_images(folder)[:5]  # A/AJ_Cook, A/notes, Abel_Pacheco x 2, B/Aaron_Eckhart
    # the first two and a missing file as URIs: read by the actors through pyarrow.fs
    paths = [Path(p).as_uri() for p in paths[:2]] + paths[2:] + [(folder / "gone.jpg").as_uri()]
    lst = tmp_path / "list.csv"
    lst.write_text("path,person\n" + "".join(f"{p},{Path(p).parent.name}\n" for p in paths))
    out = tmp_path / "r.parquet"
    rc = main(["filter", str(lst), "--engine", "ray", "--discard", "0.25", "--out", str(out),
               "--identity-column", "person", "--embeddings", "--num-actors", "1",
               "--shard-size", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 3, err
    t = _read(out)
    assert t.column("path").to_pylist() == paths
    assert t.column("identity").to_pylist() == [Path(p).parent.name for p in paths]
    emb = t.column("embedding").to_pylist()
    for s, e in zip(t.column("score").to_pylist(), emb):
        assert (e is None) == (s is None)
        if e is not None:
            assert len(e) == 512 and abs(np.linalg.norm(e) - 1) < 1e-4
    assert "notes.jpg: <bytes>: not a recognised image format" in err
    assert "gone.jpg: image file not found" in err
    assert "fiqa filter: images 6, with a scored face 4, kept 3" in err
    assert "images/s" in err and "rejected: decode_error 1, discarded 1, not_found 1" in err
    assert t.column("reason").to_pylist()[-1] == "not_found"
    assert t.column("reason").to_pylist()[:2] == ["discarded", "decode_error"]  # AJ_Cook: lowest
    assert main(["filter", str(lst), "--discard", "0.2", "--shard-size", "4"]) == 1
    assert "need --engine ray" in capsys.readouterr().err


# -- resumption --------------------------------------------------------------------------------
def _shards(out: Path) -> list[Path]:
    return sorted((Path(str(out) + ".parts") / "shards").glob("shard-*.parquet"))


@pytest.mark.slow
def test_resume_after_a_failure_gives_the_same_table(uninterrupted, gate, folder, tmp_path):
    out = tmp_path / "result.parquet"
    with pytest.raises(Exception, match="stopping after 2 shards"):
        fd.ray_filter(folder, out, gate=gate, discard=DISCARD, shard_size=SHARD, num_actors=1,
                      _fail_after=2)
    assert len(_shards(out)) == 2 and not out.exists()
    res = fd.ray_filter(folder, out, gate=gate, discard=DISCARD, shard_size=SHARD, num_actors=1)
    assert res.shards_scored == res.shards - 2 and res.scored_images == res.images - 2 * SHARD
    assert _read(out).equals(uninterrupted[2])  # identical: no row lost or duplicated


@pytest.mark.slow
def test_resume_after_sigkill_of_the_driver(folder, tmp_path):
    """The CLI in a subprocess (its own Ray instance), killed with SIGKILL once a shard file
    exists, then run again to the end: the table of an uninterrupted CLI run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("RAY_ADDRESS", None)

    def cli(out):
        return [sys.executable, "-m", "fiqa_sdk.cli", "filter", str(folder), "--engine", "ray",
                "--discard", str(DISCARD), "--out", str(out), "--shard-size", str(SHARD),
                "--num-actors", "1", "--no-progress"]

    full = tmp_path / "full.parquet"
    proc = subprocess.run(cli(full), env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 3, proc.stderr
    out = tmp_path / "killed.parquet"
    cmd = cli(out)
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not _shards(out) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _shards(out) and proc.poll() is None, "no shard written before the deadline"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    written = len(_shards(out))
    assert 1 <= written and not out.exists()
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr  # some images cannot be read
    # a worker of the killed job may still finish the shard it was writing: count on the rerun
    m = re.search(r"scored now \d+ images in (\d+) of 3 shards", proc.stderr)
    assert m and int(m.group(1)) <= 3 - written, proc.stderr[-500:]
    assert not list((Path(str(out) + ".parts") / "shards").glob("*.tmp-*"))
    assert _read(out).equals(_read(full))


@pytest.mark.slow
def test_dataset_input_resumes_and_matches_the_paths_run(uninterrupted, gate, folder, tmp_path):
    """A Ray Dataset of image bytes (read_binary_files): stopped after one shard, rerun; one row
    per image in the Dataset's order, the same scores and decisions as the run on the paths."""
    import ray

    ds = ray.data.read_binary_files(fd.list_images(folder), include_paths=True)
    out = tmp_path / "ds.parquet"
    with pytest.raises(Exception, match="stopping after 1 shards"):
        fd.ray_filter(ds, out, gate=gate, discard=DISCARD, shard_size=SHARD, num_actors=1,
                      _fail_after=1)
    assert len(_shards(out)) == 1 and not out.exists()
    res = fd.ray_filter(ds, out, gate=gate, discard=DISCARD, shard_size=SHARD, num_actors=1)
    assert (res.images, res.shards, res.shards_scored) == (9, 3, 2)
    assert res.scored_images == 9 - SHARD
    got = {r["path"]: r for r in _read(out).to_pylist()}
    want = {r["path"]: r for r in uninterrupted[2].to_pylist()}
    assert sorted(got) == sorted(want)  # one row per image, none lost or duplicated
    for p, r in want.items():
        assert (got[p]["kept"], got[p]["reason"]) == (r["kept"], r["reason"]), p
        assert (got[p]["score"] is None) == (r["score"] is None)
        if r["score"] is not None:
            assert got[p]["score"] == pytest.approx(r["score"], abs=1e-5)
    with pytest.raises(fq.OutputConflictError, match="another input list"):
        fd.ray_filter(fd.list_images(folder), out, gate=gate, discard=DISCARD, shard_size=SHARD)
