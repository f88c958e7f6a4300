"""Alignment-sensitivity benchmark (``fiqa-bench alignment``, fiqa_bench/alignment.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fiqa_bench.cli import main as bench_main
from fiqa_sdk.errors import EvaluationError
from fiqa_bench import alignment as al
from fiqa_sdk.eval.evaluate import edc_at_threshold
from fiqa_sdk.eval import FMRThreshold
from fiqa_sdk.eval.features import FaceSet
from fiqa_sdk.eval.protocols import QUICK_PAIRS_PER_FOLD, pairs_subset, read_lfw_pairs
from fiqa_sdk.eval.verification import VerificationResult


def _faces(n: int = 6, missing: tuple[int, ...] = (2,)) -> FaceSet:
    rng = np.random.default_rng(1)
    lmk = (np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])
           + rng.uniform(60, 80, size=(n, 1, 2))).astype(np.float32)
    found = np.ones(n, dtype=bool)
    found[list(missing)] = False
    lmk[~found] = np.nan
    bbox = np.where(found[:, None], np.array([60, 60, 190, 200], np.float32), np.nan)
    score = np.where(found, 0.99, np.nan).astype(np.float32)
    paths = [f"/data/lfw/images/Person_{i}/Person_{i}_0001.jpg" for i in range(n)]
    return FaceSet(paths, found, bbox.astype(np.float32), lmk, score, "retinaface")


# --------------------------------------------------------------------------------------------
# Landmark jitter
# --------------------------------------------------------------------------------------------


def test_jitter_is_seeded_bounded_and_leaves_the_input_alone():
    faces = _faces()
    before = faces.landmarks.copy()
    a = al.jitter_faces(faces, 4.0, seed=0)
    b = al.jitter_faces(faces, 4.0, seed=0)
    c = al.jitter_faces(faces, 4.0, seed=1)
    np.testing.assert_array_equal(faces.landmarks, before)  # input not modified
    assert a.landmarks is not faces.landmarks and a.landmarks.dtype == np.float32
    np.testing.assert_array_equal(a.landmarks, b.landmarks)  # same seed: same noise
    found = faces.found
    d = a.landmarks[found] - before[found]
    assert np.abs(d).max() <= 4.0 + 1e-4  # within [-k, k] (float32 rounding)
    assert np.abs(d).max() > 2.0 and (d != 0).all()  # every coordinate moves, and visibly
    assert abs(float(d.mean())) < 1.0  # centred
    assert not np.array_equal(a.landmarks[found], c.landmarks[found])  # another seed
    assert np.isnan(a.landmarks[~found]).all()  # no face: nothing to jitter
    # boxes, scores and flags are copies of the input
    np.testing.assert_array_equal(a.found, faces.found)
    np.testing.assert_array_equal(a.det_score, faces.det_score)
    assert a.bbox is not faces.bbox and a.paths == faces.paths


def test_jitter_is_per_image_and_nested_across_k():
    faces = _faces()
    k2 = al.jitter_faces(faces, 2.0, seed=3).landmarks - faces.landmarks
    k6 = al.jitter_faces(faces, 6.0, seed=3).landmarks - faces.landmarks
    found = faces.found
    np.testing.assert_allclose(k6[found], 3 * k2[found], atol=1e-3)  # same direction, k-times
    # the noise of an image does not depend on its position in the list or on the others
    rev = FaceSet(faces.paths[::-1], faces.found[::-1], faces.bbox[::-1], faces.landmarks[::-1],
                  faces.det_score[::-1], faces.detector)
    np.testing.assert_array_equal(al.jitter_faces(rev, 2.0, seed=3).landmarks[::-1],
                                  al.jitter_faces(faces, 2.0, seed=3).landmarks)
    np.testing.assert_array_equal(al.jitter_faces(faces, 0.0).landmarks, faces.landmarks)


@pytest.mark.parametrize("k", [-1.0, float("nan"), float("inf")])
def test_jitter_rejects_bad_magnitudes(k):
    with pytest.raises(EvaluationError, match="jitter"):
        al.jitter_faces(_faces(), k)


# --------------------------------------------------------------------------------------------
# Conditions, subsets, summary
# --------------------------------------------------------------------------------------------


def test_conditions_reference_first_and_zero_is_the_reference():
    conds = al.conditions(["mtcnn", "retinaface"], [0, 2, 4])
    assert [c.name for c in conds] == ["retinaface", "mtcnn", "retinaface ±2px",
                                       "retinaface ±4px"]
    assert conds[0].is_reference and not any(c.is_reference for c in conds[1:])
    assert [c.name for c in al.conditions([], [4])] == ["retinaface", "retinaface ±4px"]
    for dets, ks, msg in ((["dlib", "dlib"], [0], "twice"), (["dlib"], [2, 2.0], "twice"),
                          (["dlib"], [-2], ">= 0"), ([], [], "no conditions")):
        with pytest.raises(EvaluationError, match=msg):
            al.conditions(dets, ks)


def test_pairs_subset_keeps_every_fold(lfw_root):
    proto = read_lfw_pairs(lfw_root)
    sub = pairs_subset(proto, 3)
    assert len(sub.pairs) == 60 and sub.mated.sum() == 30
    assert sorted(np.unique(sub.folds)) == list(range(10))
    assert len(sub.paths) == len(np.unique(sub.pairs)) and sub.pairs.max() == len(sub.paths) - 1
    # the same images as the original pairs (the first 3 mated pairs of fold 0 come first)
    first = np.flatnonzero(proto.mated & (proto.folds == 0))[:3]
    assert [sub.paths[i] for i in sub.pairs[0]] == [proto.paths[i] for i in proto.pairs[first[0]]]
    with pytest.raises(EvaluationError):
        pairs_subset(proto, 0)


def _condition(cond: al.Condition, quality: dict[str, np.ndarray], mated: np.ndarray,
               fnmr0: float) -> al.ConditionResult:
    thr = FMRThreshold(0.5, 1e-3)
    edcs = {s: edc_at_threshold(mated, q, thr, 1e-3, 1000) for s, q in quality.items()}
    ver = VerificationResult(0.99, 0.01, np.full(10, 0.99), np.zeros(10))
    return al.ConditionResult(cond, 100, 0, ver, 0.5, 1e-3, fnmr0, edcs, (0.2, 0.3), {})


def test_summary_deltas_and_table():
    rng = np.random.default_rng(0)
    mated = np.where(np.arange(100) < 20, 0.2, 0.9)  # 20 failing mated pairs
    good = np.stack([mated, mated], axis=1) + rng.uniform(0, 0.01, (100, 2))  # ranks failures low
    noise = rng.uniform(0, 1, (100, 2))
    res = al.AlignmentBenchResult(meta={"fmr_target": 1e-3}, conditions=[
        _condition(al.Condition("retinaface"), {"good": good, "random": noise}, mated, 0.2),
        _condition(al.Condition("dlib"), {"good": noise, "random": noise}, mated, 0.2),
        _condition(al.Condition("retinaface", 4.0), {"good": good, "random": noise}, mated, 0.2),
    ])
    ref, dlib, jit = res.conditions
    assert ref.pauc("good", 0.3) < 0.4 < dlib.pauc("good", 0.3)  # failures ranked lowest
    assert res.delta("good", 0.3, dlib) == pytest.approx(
        dlib.pauc("good", 0.3) - ref.pauc("good", 0.3))
    assert res.delta("good", 0.3, jit) == pytest.approx(0.0)
    summ = res.summary()
    assert summ["good"]["mean_pauc_norm_0.3_detectors"] == pytest.approx(
        (ref.pauc("good", 0.3) + dlib.pauc("good", 0.3)) / 2)  # jitter rows are not detectors
    assert summ["good"]["max_delta_0.3"] == pytest.approx(res.delta("good", 0.3, dlib))
    assert summ["random"]["mean_delta_0.2"] == pytest.approx(0.0)
    assert summ["good"]["mean_delta_0.3_detectors"] == pytest.approx(res.delta("good", 0.3, dlib))
    assert summ["good"]["mean_delta_0.3_jitter"] == pytest.approx(0.0)
    assert summ["good"]["mean_delta_0.3"] == pytest.approx(res.delta("good", 0.3, dlib) / 2)
    d = res.as_dict()
    assert d["conditions"][1]["scorers"]["good"]["delta_pauc_norm_0.3"] == pytest.approx(
        res.delta("good", 0.3, dlib))
    assert d["conditions"][0]["scorers"]["good"]["pauc_0.3"] == pytest.approx(
        ref.edc["good"].pauc(0.3))  # the raw area too
    json.dumps(d)  # plain JSON
    table = al.markdown_table(res)
    assert "| retinaface ±4px |" in table and "Normalized pAUC@0.3" in table
    assert "(+0.000)" in table and "mean over 2 detector(s)" in table
    assert "| mean Δ, detectors | mean Δ, jitter |" in table


def test_plot_alignment_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    mated = np.where(np.arange(100) < 20, 0.2, 0.9)
    q = np.stack([mated, mated], axis=1)
    res = al.AlignmentBenchResult(meta={"fmr_target": 1e-3}, conditions=[
        _condition(al.Condition("retinaface"), {"good": q}, mated, 0.2),
        _condition(al.Condition("retinaface", 2.0), {"good": q}, mated, 0.2)])
    path = al.plot_alignment(res, tmp_path / "sub" / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


# --------------------------------------------------------------------------------------------
# Real faces: jittered landmarks get their own embeddings and cache entries
# --------------------------------------------------------------------------------------------


def test_jittered_faces_are_embedded_and_cached_separately(lfw_root, retinaface, arcface,
                                                           tmp_path):
    from fiqa_sdk.eval.features import detect_all, embed_all

    proto = pairs_subset(read_lfw_pairs(lfw_root), 1)  # 20 pairs, every fold
    paths = proto.paths[:16]
    faces = detect_all(paths, retinaface, policy="central", cache_dir=tmp_path)
    assert faces.found.all()
    ref = embed_all(faces, arcface, cache_dir=tmp_path)
    jit = embed_all(al.jitter_faces(faces, 6.0), arcface, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("emb-*.npy"))) == 2  # one cache entry per set of landmarks
    cos = np.einsum("ij,ij->i", ref, jit)
    assert (cos < 0.9999).all() and (cos > 0.5).all()  # moved, but the same face
    again = embed_all(al.jitter_faces(faces, 6.0), arcface, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, jit)  # the seeded jitter hits its cache entry
    assert len(list(tmp_path.glob("emb-*.npy"))) == 2


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, msg", [
    (["--jitter", "-2"], ">= 0"),
    (["--jitter", "2", "2"], "twice"),
    (["--detectors", "dlib", "dlib"], "twice"),
    (["--detectors", "no-such-detector", "--jitter", "0"], "no-such-detector"),
    (["--pairs-per-fold", "0"], "pairs per fold"),
])
def test_cli_argument_errors(argv, msg, tmp_path, capsys, lfw_root):
    rc = bench_main(["alignment", "--out", str(tmp_path / "out"), "--lfw", str(lfw_root),
               "--cache", str(tmp_path / "cache"), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 1 and msg in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("fiqa-bench: error:")
    assert not (tmp_path / "out").exists()


def test_cli_out_is_a_file_and_missing_lfw(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert bench_main(["alignment", "--out", str(f), "--no-progress"]) == 1
    assert "--out must be a folder" in capsys.readouterr().err
    rc = bench_main(["alignment", "--out", str(tmp_path / "o"), "--lfw", str(tmp_path),
               "--no-progress"])
    assert rc == 1 and "pairs file not found" in capsys.readouterr().err


def test_cli_unknown_scorer(tmp_path, capsys, lfw_root):
    rc = bench_main(["alignment", "--quick", "--scorers", "no-such-scorer", "--out",
               str(tmp_path / "out"), "--lfw", str(lfw_root), "--cache", str(tmp_path / "c"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "no-such-scorer" in err and "Traceback" not in err


def test_cli_quick_on_lfw(lfw_root, lfw_quick_cache, tmp_path, capsys):
    """The CI smoke test of the benchmark (about a minute of CPU from a cold cache)."""
    out, cache = tmp_path / "out", lfw_quick_cache
    argv = ["alignment", "--quick", "--out", str(out), "--lfw", str(lfw_root),
            "--cache", str(cache), "--no-progress"]
    assert bench_main(argv) == 0
    stdout = capsys.readouterr().out
    rec = json.loads((out / "alignment.json").read_text())
    assert rec["command"] == "fiqa-bench " + " ".join(argv) and rec["complete"] and rec["quick"]
    assert rec["n_mated"] == rec["n_nonmated"] == 10 * QUICK_PAIRS_PER_FOLD
    names = [c["condition"] for c in rec["conditions"]]
    assert names == ["retinaface", "retinaface ±4px"]
    for c in rec["conditions"]:
        assert c["accuracy"] > 0.95 and c["no_face"] == 0
        assert sorted(c["scorers"]) == sorted(al.QUICK_SCORERS)
    assert rec["conditions"][0]["jitter_px"] is None and rec["conditions"][1]["jitter_px"] == 4
    assert set(rec["summary"]) == set(al.QUICK_SCORERS)
    assert len(list((cache).glob("emb-*.npy"))) == 2  # the jitter has its own embeddings
    table = (out / "alignment.md").read_text()
    assert "| retinaface ±4px |" in stdout and "| retinaface ±4px |" in table
    assert rec["command"] in table
    assert (out / "alignment.png").stat().st_size > 5000
