"""Evaluation protocols (LFW pairs / all-vs-all, identity folders, CSV), the blockwise threshold,
quality-score caching and the ``fiqa-bench quality`` command."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fiqa_sdk.align import ARCFACE_TEMPLATE
from fiqa_bench.cli import main as bench_main
from fiqa_sdk.errors import EvaluationError
from fiqa_sdk.eval import edc, threshold_at_fmr
from fiqa_sdk.eval.evaluate import edc_at_threshold, threshold_all_nonmated
from fiqa_sdk.eval.features import FaceSet, score_all
from fiqa_sdk.eval.protocols import (
    QUICK_PAIRS_PER_FOLD,
    csv_protocol,
    folder_protocol,
    lfw_all_vs_all,
    nonmated_count,
    pairs_subset,
    read_lfw_pairs,
    sample_nonmated_pairs,
)

# A: 3 images, B: 2, C: 1, D: 4 -> 10 images; mated = 3 + 1 + 0 + 6 = 10;
# non-mated = C(10, 2) - 10 = 35.
LAYOUT = {"A": 3, "B": 2, "C": 1, "D": 4}


def make_folder(root: Path, layout=LAYOUT) -> Path:
    for name, n in layout.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{name}_{i + 1:04d}.jpg").write_bytes(b"x")  # never decoded
    return root


def brute_force(labels):
    mated, non = set(), set()
    for i, j in itertools.combinations(range(len(labels)), 2):
        (mated if labels[i] == labels[j] else non).add((i, j))
    return mated, non


# ---------------------------------------------------------------------------------------------
# Protocol builders
# ---------------------------------------------------------------------------------------------


def test_folder_protocol_counts_by_hand(tmp_path):
    root = make_folder(tmp_path / "ids")
    (root / "A" / "notes.txt").write_text("not an image")
    (root / "A" / ".hidden.jpg").write_bytes(b"x")
    (root / ".trash").mkdir()
    (root / ".trash" / "x.jpg").write_bytes(b"x")
    p = folder_protocol(root)
    assert len(p.paths) == 10 and p.identities == ["A", "B", "C", "D"]
    assert p.n_mated == 10 and p.n_nonmated == 35 == p.n_nonmated_total
    assert p.nonmated_pairs is None and not p.nonmated_sampled
    # images are in sorted order: A1 A2 A3 B1 B2 C1 D1 D2 D3 D4
    assert [x.name for x in p.paths[:4]] == ["A_0001.jpg", "A_0002.jpg", "A_0003.jpg", "B_0001.jpg"]
    assert p.labels.tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]
    expected = {(0, 1), (0, 2), (1, 2), (3, 4), (6, 7), (6, 8), (6, 9), (7, 8), (7, 9), (8, 9)}
    assert {tuple(x) for x in p.mated_pairs.tolist()} == expected
    mated, non = brute_force(p.labels)
    assert mated == expected and len(non) == 35 == nonmated_count(p.labels)


def test_sampled_nonmated_pairs_seeded_distinct_nonmated(tmp_path):
    p = folder_protocol(make_folder(tmp_path / "ids"), max_nonmated=20, seed=3)
    nm = p.nonmated_pairs
    assert p.nonmated_sampled and p.seed == 3 and nm.shape == (20, 2) and p.n_nonmated == 20
    assert p.n_nonmated_total == 35
    assert (nm[:, 0] < nm[:, 1]).all()
    assert (p.labels[nm[:, 0]] != p.labels[nm[:, 1]]).all()
    assert len({tuple(x) for x in nm.tolist()}) == 20  # no duplicates
    assert (np.lexsort((nm[:, 1], nm[:, 0])) == np.arange(20)).all()  # sorted
    again = folder_protocol(tmp_path / "ids", max_nonmated=20, seed=3).nonmated_pairs
    other = folder_protocol(tmp_path / "ids", max_nonmated=20, seed=4).nonmated_pairs
    assert np.array_equal(nm, again) and not np.array_equal(nm, other)
    # as many as (or more than) exist: all of them, implicitly
    assert folder_protocol(tmp_path / "ids", max_nonmated=35).nonmated_pairs is None
    assert folder_protocol(tmp_path / "ids", max_nonmated=10**9).nonmated_pairs is None


def test_sample_nonmated_pairs_all_and_uniform():
    labels = np.repeat(np.arange(4), [3, 2, 1, 4])
    _, non = brute_force(labels)
    every = sample_nonmated_pairs(labels, 35, seed=0)  # the whole set, no duplicates
    assert {tuple(x) for x in every.tolist()} == non
    counts = dict.fromkeys(non, 0)
    for seed in range(1500):
        for pair in sample_nonmated_pairs(labels, 7, seed).tolist():
            counts[tuple(pair)] += 1
    expected = 1500 * 7 / 35  # 300 per pair when uniform
    assert min(counts.values()) > 0.75 * expected and max(counts.values()) < 1.25 * expected
    with pytest.raises(EvaluationError, match="only 35"):
        sample_nonmated_pairs(labels, 36)
    with pytest.raises(EvaluationError, match="positive integer"):
        sample_nonmated_pairs(labels, 0)


def test_csv_protocol(tmp_path):
    make_folder(tmp_path / "imgs")
    rows = [(f"{n}/{n}_{i + 1:04d}.jpg", n) for n, c in LAYOUT.items() for i in range(c)]
    f = tmp_path / "list.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "identity", "extra"])
        w.writerows([(a, b, "z") for a, b in rows])
    p = csv_protocol(f, tmp_path / "imgs")
    assert len(p.paths) == 10 and p.n_mated == 10 and p.n_nonmated == 35
    assert p.paths[0] == tmp_path / "imgs" / "A" / "A_0001.jpg"
    s = csv_protocol(f, tmp_path / "imgs", max_nonmated=5, seed=1)
    assert s.nonmated_pairs.shape == (5, 2)
    # relative to the CSV's folder by default
    g = tmp_path / "imgs" / "list.csv"
    shutil.copy(f, g)
    assert csv_protocol(g).n_mated == 10


@pytest.mark.parametrize("content, match", [
    ("path,identity\na.jpg,A\n", "missing column"),
    ("file,identity\nA/A_0001.jpg,A\nnope.jpg,B\n", "not found"),
    ("file,identity\nA/A_0001.jpg,A\nA/A_0001.jpg,A\n", "more than once"),
    ("file,identity\nA/A_0001.jpg,\n", "empty"),
    ("file,identity\nA/A_0001.jpg,A\nB/B_0001.jpg,B\n", "no mated pairs"),
    ("file,identity\nA/A_0001.jpg,A\nA/A_0002.jpg,A\n", "single identity"),
    ("file,identity\n", "no images"),
])
def test_csv_protocol_errors(tmp_path, content, match):
    make_folder(tmp_path)
    (tmp_path / "l.csv").write_text(content)
    with pytest.raises(EvaluationError, match=match):
        csv_protocol(tmp_path / "l.csv")


def test_protocol_errors(tmp_path):
    with pytest.raises(EvaluationError, match="not found"):
        folder_protocol(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="no images"):
        folder_protocol(tmp_path / "empty")
    with pytest.raises(EvaluationError, match="no mated pairs"):
        folder_protocol(make_folder(tmp_path / "single", {"A": 1, "B": 1}))
    with pytest.raises(EvaluationError, match="single identity"):
        folder_protocol(make_folder(tmp_path / "one", {"A": 3}))
    with pytest.raises(EvaluationError, match="positive integer"):
        folder_protocol(make_folder(tmp_path / "ok"), max_nonmated=0)
    with pytest.raises(EvaluationError, match="csv"):
        csv_protocol(tmp_path / "nope.csv")
    with pytest.raises(EvaluationError, match="LFW images folder"):
        lfw_all_vs_all(tmp_path)


def test_lfw_all_vs_all_counts(lfw_root):
    p = lfw_all_vs_all(lfw_root)  # ~1 s: folder listing only
    assert len(p.paths) == 13233 and len(p.identities) == 5749
    assert p.n_mated == 242257 and p.n_nonmated_total == 87307271 == 13233 * 13232 // 2 - 242257
    m = p.mated_pairs
    assert (p.labels[m[:, 0]] == p.labels[m[:, 1]]).all() and (m[:, 0] < m[:, 1]).all()
    pairs = read_lfw_pairs(lfw_root)
    assert len(pairs.mated_pairs) == 3000 and len(pairs.nonmated_pairs) == 3000
    assert set(map(str, pairs.paths)) <= set(map(str, p.paths))  # same path strings


# ---------------------------------------------------------------------------------------------
# Threshold over all non-mated pairs, EDC at a fixed threshold
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_blockwise_threshold_equals_full_threshold(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(60, 300))
    # small integer vectors: exact dot products in float32, and many tied scores
    emb = rng.integers(-3, 4, size=(n, 6)).astype(np.float32)
    labels = rng.integers(0, max(2, n // 4), n)
    iu = np.triu_indices(n, 1)
    non = (emb.astype(np.float64) @ emb.T.astype(np.float64))[iu][labels[iu[0]] != labels[iu[1]]]
    for fmr in (1e-3, 0.01, 0.2):
        ref = threshold_at_fmr(non, fmr)
        for block in (1, 5, 64, 10_000):
            got, k = threshold_all_nonmated(emb, labels, fmr, block_size=block)
            assert k == non.size and got == ref


def test_edc_at_threshold_matches_edc():
    rng = np.random.default_rng(0)
    mated, non = rng.normal(0.6, 0.2, 500), rng.normal(0.0, 0.2, 4000)
    q = rng.integers(0, 20, size=(500, 2)).astype(float)
    ref = edc(mated, non, q, fmr=1e-2)
    got = edc_at_threshold(mated, q, threshold_at_fmr(non, 1e-2), 1e-2, non.size)
    assert np.array_equal(got.fnmr, ref.fnmr, equal_nan=True)
    assert np.array_equal(got.discard_fractions, ref.discard_fractions)
    assert got.threshold == ref.threshold and got.n_nonmated == 4000
    assert got.pauc(0.2, normalized=True) == ref.pauc(0.2, normalized=True)


# ---------------------------------------------------------------------------------------------
# Quality scores: aligned crops, Face objects, cache
# ---------------------------------------------------------------------------------------------


def test_score_all_caches_and_uses_faces(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (140, 140, 3), dtype=np.uint8))
        paths.append(str(p))
    lmk = np.repeat((ARCFACE_TEMPLATE + 14)[None].astype(np.float32), 5, axis=0)
    lmk[:, :, 0] *= np.linspace(0.8, 1.2, 5)[:, None].astype(np.float32)  # varied eye distance
    found = np.array([True, True, True, True, False])
    bbox = np.tile(np.array([10, 10, 130, 130], np.float32), (5, 1))
    det = np.array([0.9, 0.8, 0.7, 0.95, np.nan], np.float32)
    lmk[~found], bbox[~found] = np.nan, np.nan
    fs = FaceSet(paths, found, bbox, lmk, det, "fake")
    import fiqa_sdk as fq

    scorers = [fq.create_scorer(n) for n in ("random", "det-score", "inter-eye", "sharpness")]
    t: dict = {}
    q = score_all(fs, scorers, cache_dir=tmp_path / "c", timings=t)
    assert all(x.shape == (5,) and np.isfinite(x).all() for x in q)
    assert np.allclose(q[1], [0.9, 0.8, 0.7, 0.95, 0.0])  # det_score 0 for the fallback face
    assert np.argmax(q[2][:4]) == 3 and np.argmin(q[2][:4]) == 0
    assert len(list((tmp_path / "c").glob("quality-fake-*.npy"))) == 4
    t2: dict = {}
    q2 = score_all(fs, scorers, cache_dir=tmp_path / "c", timings=t2)
    assert all(np.array_equal(a, b) for a, b in zip(q, q2)) and set(t2.values()) == {0.0}
    # another seed is another cache entry with other scores
    (r1,) = score_all(fs, [fq.create_scorer("random", seed=1)], cache_dir=tmp_path / "c")
    assert not np.array_equal(r1, q[0])
    q3 = score_all(fs, scorers[:1], fallback=False)
    assert np.isnan(q3[0][4]) and np.isfinite(q3[0][:4]).all()


class CountingDetector:
    """A stand-in detector: one fixed face per image, counting its calls."""

    name = "counting"

    def __init__(self):
        self._calls = 0

    def detect(self, image):
        from fiqa_sdk.types import Face

        self._calls += 1
        return [Face([10, 10, 130, 130], ARCFACE_TEMPLATE + 14, float(image.mean()) / 255)]


class CountingEmbedder:
    name = "counting-emb"
    input_size = 112
    template = ARCFACE_TEMPLATE

    def __init__(self):
        self._seen = 0

    def embed(self, crops):
        self._seen += len(crops)
        return crops.reshape(len(crops), -1)[:, :8].astype(np.float32) + 1.0


def test_rows_are_reused_across_image_lists(tmp_path):
    """Per-(model, image) caching: a second list that overlaps the first recomputes only the
    new images, for detections, embeddings and quality scores alike."""
    import cv2

    import fiqa_sdk as fq
    from fiqa_sdk.eval.features import detect_all, embed_all

    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (140, 140, 3), dtype=np.uint8))
        paths.append(str(p))
    cache = tmp_path / "cache"
    det, emb = CountingDetector(), CountingEmbedder()
    scorer = fq.create_scorer("sharpness")
    first, second = paths[:5], paths[3:]  # overlap: images 3 and 4
    f1 = detect_all(first, det, cache_dir=cache)
    e1 = embed_all(f1, emb, cache_dir=cache)
    (q1,) = score_all(f1, [scorer], cache_dir=cache)
    assert det._calls == 5 and emb._seen == 5
    f2 = detect_all(second, det, cache_dir=cache)
    e2 = embed_all(f2, emb, cache_dir=cache)
    t: dict = {}
    (q2,) = score_all(f2, [scorer], cache_dir=cache, timings=t)
    assert det._calls == 5 + 3 and emb._seen == 5 + 3  # only images 5, 6, 7 are new
    assert np.array_equal(f2.landmarks[:2], f1.landmarks[3:])
    assert np.array_equal(e2[:2], e1[3:]) and np.array_equal(q2[:2], q1[3:])
    # the reused rows equal a fresh computation
    (fresh,) = score_all(f2, [scorer])
    assert np.array_equal(fresh, q2)
    # exact hits compute nothing
    detect_all(second, det, cache_dir=cache)
    embed_all(f2, emb, cache_dir=cache)
    assert det._calls == 8 and emb._seen == 8


class CountingScorer:
    """A stand-in scorer: the crop mean, counting the crops it scores."""

    name = "counting-q"

    def __init__(self, fail_after=None):
        self._seen = 0
        self._fail_after = fail_after  # private: not part of the cache key

    def score(self, crops):
        if self._fail_after is not None and self._seen >= self._fail_after:
            raise KeyboardInterrupt  # the process is stopped
        self._seen += len(crops)
        return crops.reshape(len(crops), -1).mean(axis=1).astype(np.float64)


def _random_faceset(tmp_path, n):
    import cv2

    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (140, 140, 3), dtype=np.uint8))
        paths.append(str(p))
    lmk = np.repeat((ARCFACE_TEMPLATE + 14)[None].astype(np.float32), n, axis=0)
    bbox = np.tile(np.array([10, 10, 130, 130], np.float32), (n, 1))
    return FaceSet(paths, np.ones(n, bool), bbox, lmk, np.full(n, 0.9, np.float32), "fake")


def test_score_all_shards_fill_the_cache_for_a_final_call(tmp_path):
    """Disjoint shards (``rows``) write partial files only; a call without ``rows`` computes
    nothing more, equals a fresh run, and removes the partial files."""
    fs = _random_faceset(tmp_path, 7)
    cache = tmp_path / "cache"
    sc = CountingScorer()
    (a,) = score_all(fs, [sc], cache_dir=cache, rows=[0, 2, 4, 6], batch_size=2)
    assert sc._seen == 4 and np.isfinite(a[[0, 2, 4, 6]]).all() and np.isnan(a[[1, 3, 5]]).all()
    (b,) = score_all(fs, [sc], cache_dir=cache, rows=np.array([1, 3, 5]), batch_size=2)
    assert sc._seen == 7
    parts = sorted(x.name for x in cache.glob("*~part-*.npy"))
    assert len(parts) == 2 and not [x for x in cache.glob("*.npy") if "~part-" not in x.name]
    (full,) = score_all(fs, [sc], cache_dir=cache)
    assert sc._seen == 7  # assembled from the shards
    (fresh,) = score_all(fs, [CountingScorer()])
    assert np.array_equal(full, fresh)
    assert not list(cache.glob("*~part-*"))  # the complete file replaced them
    with pytest.raises(ValueError, match="rows"):
        score_all(fs, [sc], cache_dir=cache, rows=[7])


def test_score_all_checkpoints_resume_after_an_interruption(tmp_path):
    """With ``checkpoint_s=0`` every batch is saved; a run killed mid-way resumes from there."""
    fs = _random_faceset(tmp_path, 6)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):  # stopped after two batches
        score_all(fs, [CountingScorer(fail_after=4)], cache_dir=cache, batch_size=2,
                  checkpoint_s=0.0)
    assert len(list(cache.glob("*~part-all.npy"))) == 1
    sc = CountingScorer()
    (q,) = score_all(fs, [sc], cache_dir=cache, batch_size=2, checkpoint_s=0.0)
    assert sc._seen == 2  # only the last batch was left
    (fresh,) = score_all(fs, [CountingScorer()])
    assert np.array_equal(q, fresh) and not list(cache.glob("*~part-*"))


def test_parse_scorer_params():
    from fiqa_sdk.eval.evaluate import make_scorers, parse_scorer_params

    got = parse_scorer_params(["diffiqa.n=1", "diffiqa.fast=true", "random.seed=3",
                               "x.name=abc", "ediffiqa-free.batch_size=8"])
    assert got == {"diffiqa": {"n": 1, "fast": True}, "random": {"seed": 3},
                   "x": {"name": "abc"}, "ediffiqa-free": {"batch_size": 8}}
    for bad in ("n=1", "diffiqa.n", ".n=1", "diffiqa.=1", "diffiqa.1x=2"):
        with pytest.raises(EvaluationError, match="SCORER.KEY=VALUE"):
            parse_scorer_params([bad])
    (r,) = make_scorers(["random"], None, params={"random": {"seed": 3}})
    assert r.seed == 3
    with pytest.raises(EvaluationError, match="parameters given for scorer"):
        make_scorers(["random"], None, params={"sharpness": {"x": 1}})
    with pytest.raises(EvaluationError, match="cannot create scorer"):
        make_scorers(["random"], None, params={"random": {"no_such_option": 1}})


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def test_cli_bench_quality_user_errors(tmp_path, capsys):
    out = str(tmp_path / "o")
    cases = [
        (["--protocol", "lfw-pairs", "--max-nonmated", "10"], "--max-nonmated"),
        (["--protocol", "folder"], "--data"),
        (["--protocol", "folder", "--data", str(tmp_path / "nope")], "not found"),
        (["--protocol", "lfw-pairs", "--lfw", str(tmp_path / "nope")], "pairs file not found"),
        (["--protocol", "lfw-all", "--image-root", "x"], "--image-root"),
        (["--protocol", "lfw-all", "--quick"], "--quick"),
        (["--protocol", "folder", "--data", str(make_folder(tmp_path / "f")), "--scorers",
          "random", "random"], "twice"),
        (["--protocol", "folder", "--data", str(tmp_path / "f"), "--scorers", "nope"], "nope"),
        (["--protocol", "folder", "--data", str(tmp_path / "f"), "--limits", "0"], "limits"),
        (["--protocol", "folder", "--data", str(tmp_path / "f"), "--shard", "2/2"], "--shard"),
        (["--protocol", "folder", "--data", str(tmp_path / "f"), "--shard", "a"], "--shard"),
        (["--protocol", "folder", "--data", str(tmp_path / "f"), "--scorer-param", "n=1"],
         "SCORER.KEY=VALUE"),
        (["--protocol", "folder", "--data", str(tmp_path / "f"), "--scorers", "random",
          "--scorer-param", "random.bogus=1"], "cannot create scorer"),
        (["--protocol", "folder", "--data", str(tmp_path / "f"), "--bootstrap", "1"], "bootstrap"),
    ]
    for extra, match in cases:
        rc = bench_main(["quality", "--out", out, *extra])
        err = capsys.readouterr().err
        assert rc == 1, (extra, err)
        assert match in err and "Traceback" not in err and err.strip().splitlines()[-1].startswith(
            "fiqa-bench: error:"), (extra, err)


@pytest.fixture(scope="module")
def lfw_mini(tmp_path_factory, lfw_root):
    """A tiny LFW-like folder: the first 3 identities with >= 3 images (3 each), 1 singleton,
    and a mislabelled "identity" of two different people (a mated pair that fails, so that
    FNMR_0 > 0); and a pairs.txt over them. 12 images, 10 mated and 56 non-mated pairs."""
    src = lfw_root / "images"
    names = sorted(os.listdir(src))
    multi = [n for n in names if len(os.listdir(src / n)) >= 3][:5]
    single = next(n for n in names if len(os.listdir(src / n)) == 1)
    root = tmp_path_factory.mktemp("lfw-mini")
    for n, k in [(m, 3) for m in multi[:3]] + [(single, 1)]:
        (root / "images" / n).mkdir(parents=True)
        for i in range(1, k + 1):
            shutil.copy(src / n / f"{n}_{i:04d}.jpg", root / "images" / n)
    (root / "images" / "Mixed_Up").mkdir()
    for i, n in enumerate(multi[3:], start=1):
        shutil.copy(src / n / f"{n}_0001.jpg",
                    root / "images" / "Mixed_Up" / f"Mixed_Up_{i:04d}.jpg")
    a, b, c = multi[:3]
    lines = ["2", f"{a}\t1\t2", f"{b}\t1\t3", f"{a}\t1\t{b}\t1", f"{c}\t2\t{single}\t1"]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def test_cli_bench_quality_smoke(lfw_mini, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    rc = bench_main(["quality", "--protocol", "lfw-all", "--lfw", str(lfw_mini),
               "--scorers", "random", "det-score", "inter-eye", "sharpness", "embedding-norm",
               "flip-consistency", "--out", str(out), "--cache", str(tmp_path / "cache"),
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "| random |" in captured.out
    res = json.loads((out / "quality.json").read_text())
    assert res["images"] == 12 and res["n_mated"] == 10 and res["n_nonmated"] == 56
    assert res["nonmated"] == "all" and res["eval_embedder"] == "arcface"
    rows = {r["scorer"]: r for r in res["results"]}
    assert set(rows) == {"random", "det-score", "inter-eye", "sharpness", "embedding-norm",
                         "flip-consistency"}
    assert rows["flip-consistency"]["setting"] == "same-model"
    assert rows["random"]["setting"] == "model-free"
    r = rows["random"]
    assert r["n_mated"] == 10 and r["fnmr0"] >= 0.1  # the mislabelled pair fails
    for key in ("pauc_norm_0.2", "pauc_norm_0.3", "pauc_0.2", "pauc_0.3"):
        assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] >= 0
    with open(out / "quality.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 6 and {"pauc_norm_0.2", "pauc_norm_0.3", "pauc_0.2", "pauc_0.3",
                                "fnmr0", "threshold", "n_mated", "n_nonmated"} <= set(table[0])
    png = (out / "edc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    # the pairs protocol over the same images reuses nothing it should not, and a sample
    out2 = tmp_path / "out2"
    rc = bench_main(["quality", "--protocol", "lfw-pairs", "--lfw", str(lfw_mini), "--scorers",
               "random", "sharpness", "--out", str(out2), "--cache", str(tmp_path / "cache"),
               "--no-plot", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    res2 = json.loads((out2 / "quality.json").read_text())
    assert res2["n_mated"] == 2 and res2["n_nonmated"] == 2 and not (out2 / "edc.png").exists()
    assert res2["nonmated"] == "listed pairs"

    # shards fill the quality cache in parallel; the final run assembles them
    cache3 = tmp_path / "cache3"
    base = ["quality", "--protocol", "lfw-all", "--lfw", str(lfw_mini), "--scorers",
            "random", "--scorer-param", "random.seed=5", "--cache", str(cache3), "--no-plot",
            "--no-progress"]
    for shard in ("0/2", "1/2"):
        assert bench_main([*base, "--out", str(tmp_path / "s"), "--shard", shard]) == 0
    assert not (tmp_path / "s" / "quality.json").exists()
    assert len(list(cache3.glob("quality-*-random-*~part-*.npy"))) == 2
    assert bench_main([*base, "--out", str(tmp_path / "o3")]) == 0
    res3 = json.loads((tmp_path / "o3" / "quality.json").read_text())
    assert res3["scorer_params"] == {"random": {"seed": 5}}
    assert not list(cache3.glob("*~part-*"))
    capsys.readouterr()

    # --bootstrap: identity redraws give each row an SE and interval, and the paired
    # differences from the best scorer; the pAUCs themselves are unchanged
    out4 = tmp_path / "out4"
    rc = bench_main(["quality", "--protocol", "lfw-all", "--lfw", str(lfw_mini), "--scorers",
               "random", "embedding-norm", "--bootstrap", "50", "--out", str(out4), "--cache",
               str(tmp_path / "cache"), "--no-plot", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "SE@0.2 (bootstrap)" in captured.out
    res4 = json.loads((out4 / "quality.json").read_text())
    boot = res4["bootstrap"]
    assert boot["redraws"] == 50 and boot["groups"] == 4 and boot["unit"] == "identity"
    assert boot["undefined_redraws"] > 0  # redraws without the mislabelled identity
    for lim in ("0.2", "0.3"):
        best = boot["vs_best"][lim]["best"]
        assert [d["a"] for d in boot["vs_best"][lim]["differences"]] == \
            [n for n in ("random", "embedding-norm") if n != best]
    for r in res4["results"]:
        assert r["pauc_norm_0.2"] == rows[r["scorer"]]["pauc_norm_0.2"]
        assert r["pauc_norm_0.2_se"] >= 0
        assert r["pauc_norm_0.2_ci_low"] <= r["pauc_norm_0.2_ci_high"]
    with open(out4 / "quality.csv") as fh:
        assert "pauc_norm_0.3_se" in next(csv.DictReader(fh))
    # no failing mated pair in the pairs protocol: said, not an error
    rc = bench_main(["quality", "--protocol", "lfw-pairs", "--lfw", str(lfw_mini), "--scorers",
               "random", "--bootstrap", "20", "--out", str(tmp_path / "out5"), "--cache",
               str(tmp_path / "cache"), "--no-plot", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    res5 = json.loads((tmp_path / "out5" / "quality.json").read_text())
    assert "no mated pair fails" in res5["bootstrap"]["skipped"] or res5["results"][0]["fnmr0"] > 0


def test_cli_bench_quality_without_matplotlib_names_the_extra(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rc = bench_main(["quality", "--protocol", "folder", "--data",
               str(make_folder(tmp_path / "f")), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "fiqa-sdk[plot]" in err and "Traceback" not in err


def test_cli_bench_quality_bad_quality_embedder(tmp_path, capsys):
    pytest.importorskip("dlib")
    rc = bench_main(["quality", "--protocol", "folder", "--data",
               str(make_folder(tmp_path / "f")), "--out", str(tmp_path / "o"),
               "--scorers", "flip-consistency", "--quality-embedder", "dlib", "--no-plot"])
    err = capsys.readouterr().err
    assert rc == 1 and "flip-consistency" in err and "112x112" in err


def test_cli_bench_quality_lfw_xq(lfw_mini, tmp_path, capsys):
    """--protocol lfw-xq builds the degraded copy in the cache (not beside the data) and runs."""
    from fiqa_sdk.eval.features import default_cache_dir
    from fiqa_bench.xq import lfw_xq_root

    out = tmp_path / "xq"
    rc = bench_main(["quality", "--protocol", "lfw-xq", "--lfw", str(lfw_mini), "--scorers",
               "random", "sharpness", "--out", str(out), "--cache", str(tmp_path / "cache"),
               "--no-plot", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "quality.json").read_text())
    assert res["images"] == 12 and res["n_mated"] == 10
    root = lfw_xq_root(default_cache_dir())
    assert (root / "params.csv").is_file() and not (lfw_mini / "params.csv").exists()
    rc = bench_main(["quality", "--protocol", "lfw-xq-pairs", "--lfw", str(lfw_mini),
               "--scorers", "random", "--out", str(tmp_path / "xqp"), "--cache",
               str(tmp_path / "cache"), "--no-plot", "--no-progress"])
    assert rc == 0, capsys.readouterr().err


def test_cli_bench_quality_quick_on_lfw(lfw_root, lfw_quick_cache, tmp_path, capsys):
    """``fiqa-bench quality --quick``: the 200 pairs.txt pairs the other ``--quick`` benchmarks
    use (detections and embeddings shared through ``lfw_quick_cache``), real scorers."""
    out = tmp_path / "out"
    argv = ["quality", "--quick", "--scorers", "det-score", "inter-eye", "embedding-norm",
            "--out", str(out), "--lfw", str(lfw_root), "--cache", str(lfw_quick_cache),
            "--no-progress", "--no-plot"]
    assert bench_main(argv) == 0
    table = capsys.readouterr().out
    rec = json.loads((out / "quality.json").read_text())
    assert rec["quick"] is True and rec["command"] == "fiqa-bench " + " ".join(argv)
    assert rec["n_mated"] == rec["n_nonmated"] == 10 * QUICK_PAIRS_PER_FOLD
    assert [r["scorer"] for r in rec["results"]] == ["det-score", "inter-eye", "embedding-norm"]
    assert rec["images"] == len(pairs_subset(read_lfw_pairs(lfw_root), QUICK_PAIRS_PER_FOLD).paths)
    assert "| embedding-norm |" in table


def test_cache_writes_use_private_temporary_names(tmp_path, monkeypatch):
    """Two processes finishing the same cache file at once must not rename each other's
    temporary file (it happened with two `fiqa-bench quality` runs over one FIQA_CACHE)."""
    import os

    from fiqa_sdk.eval import features

    renamed = []
    real_replace = os.replace

    def spy(src, dst):
        renamed.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(features.os, "replace", spy)
    cache = tmp_path / "quality-x-random-0123.npy"
    for _ in range(2):
        features._save(cache, ["a.jpg", "b.jpg"], "key", np.zeros((2, 1)), q=np.arange(2.0))
    tmps = [src for src, _ in renamed]
    assert len(tmps) == 4 and len(set(tmps)) == 4  # data + row index, twice: all distinct
    assert all(f".{os.getpid()}-" in t.name and t.parent == tmp_path for t in tmps)
    assert [d.name for _, d in renamed[:2]] == [cache.name, "quality-x-random-0123.rows.npz"]
    np.testing.assert_array_equal(np.load(cache), [0.0, 1.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([cache.name,
                                                                  "quality-x-random-0123.rows.npz"])
