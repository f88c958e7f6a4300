"""Template benchmark (`fiqa-bench templates`): sampling, TAR maths, and a quick run on LFW."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk import policy
from fiqa_bench import templates as tb
from fiqa_sdk.eval.features import default_cache_dir
from fiqa_sdk.gate import QualityGate, default_scorer_name


def test_sample_templates_disjoint_and_seeded():
    labels = np.repeat(np.arange(6), [3, 10, 12, 25, 9, 30])  # ids 0 and 4: < 2 x 5 images
    s = tb.sample_templates(labels, k=5, seed=3, max_templates=4)
    assert s.members.shape[1] == 5
    flat = s.members.ravel()
    assert len(np.unique(flat)) == flat.size  # disjoint: no image in two templates
    assert np.all(labels[s.members] == s.labels[:, None])  # one identity per template
    per_id = Counter(s.labels.tolist())
    assert per_id == {1: 2, 2: 2, 3: 4, 5: 4}  # min(n // 5, 4); ids 0 and 4 excluded
    again = tb.sample_templates(labels, k=5, seed=3, max_templates=4)
    assert np.array_equal(s.members, again.members)
    other = tb.sample_templates(labels, k=5, seed=4, max_templates=4)
    assert not np.array_equal(s.members, other.members)
    sub = tb.sample_templates(labels, k=5, seed=0, identities=2)
    assert sub.identities_used == 2 and len(set(sub.labels.tolist())) == 2
    with pytest.raises(fq.EvaluationError):
        tb.sample_templates(np.repeat(np.arange(3), [10, 3, 4]), k=5)  # one eligible identity


def test_tar_at_far_known_answer():
    nonmated = np.arange(10_000, dtype=float) / 10_000  # 0.0000 ... 0.9999
    mated = np.array([0.5, 0.9985, 0.9995, 1.0, 2.0])
    r = tb.tar_at_far(mated, nonmated, 1e-3)
    # 10 false accepts allowed: the threshold is just above the 11th highest score (0.9989)
    assert r["false_accepts_allowed"] == 10 and r["far_achieved"] == pytest.approx(1e-3)
    assert r["threshold"] == pytest.approx(0.9989) and r["threshold"] > 0.9989
    assert r["false_rejects"] == 2 and r["tar"] == pytest.approx(3 / 5) and not r["coarse"]
    r4 = tb.tar_at_far(mated, nonmated, 1e-4)
    assert r4["false_accepts_allowed"] == 1 and r4["coarse"]
    r5 = tb.tar_at_far(mated, nonmated, 1e-5)
    assert r5["tar"] is None and "too few" in r5["note"]


def test_fuse_all_matches_policy_and_skips_unscored():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(7, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    q = np.array([1.0, 3.0, np.nan, 2.0, 0.5, np.nan, np.nan])
    emb[5] = np.nan
    members = np.array([[0, 1, 2, 3], [4, 5, 6, 2]])
    e, ok, wmax = tb.fuse_all(members, q, emb, "quality_weighted")
    assert ok.tolist() == [True, True]
    _, w, ref = policy.fuse_template(q[[0, 1, 3]], emb[[0, 1, 3]], "quality_weighted")
    assert np.array_equal(e[0], ref) and wmax[0] == w.max()
    assert np.allclose(e[1], emb[4])  # the only usable image of the second template
    eb, _, _ = tb.fuse_all(members, q, emb, "best")
    assert np.allclose(eb[0], emb[1], atol=1e-6)
    # T = c x std: c -> 0 approaches best, c -> inf approaches mean
    hot, _, _ = tb.fuse_all(members, q, emb, "quality_weighted@1000")
    mean, _, _ = tb.fuse_all(members, q, emb, "mean")
    assert np.allclose(hot[0], mean[0], atol=1e-3)
    with pytest.raises(fq.EvaluationError):
        tb.fuse_all(members, q, emb, "median")


@pytest.mark.lfw
def test_quick_bench_lfw(lfw_root, tmp_path, capsys):
    """`fiqa-bench templates --quick` on LFW: a real run, cross-checked against the gate."""
    from fiqa_bench.cli import main as bench_main

    out = tmp_path / "tb"
    assert bench_main(["templates", "--quick", "--datasets", "lfw", "--lfw", str(lfw_root),
                 "--out", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    res = json.loads((out / "templates.json").read_text())
    assert res["quick"] is True and res["scorer"] == default_scorer_name()
    (d,) = res["datasets"]
    assert d["dataset"] == "lfw" and d["k"] == 5 and d["max_templates"] == tb.QUICK_MAX_TEMPLATES
    assert d["identities"] == tb.QUICK_IDENTITIES and d["images_no_face"] == 0
    # pair counts follow from the templates per identity
    data = tb.lfw_images(lfw_root)
    s = tb.sample_templates(data.labels, 5, 0, 2, tb.QUICK_MAX_TEMPLATES, tb.QUICK_IDENTITIES)
    t = np.bincount(s.labels)
    t = t[t > 0]
    assert d["templates"] == len(s.labels)
    assert d["n_mated"] == int((t * (t - 1) // 2).sum())
    assert d["n_nonmated"] == len(s.labels) * (len(s.labels) - 1) // 2 - d["n_mated"]
    assert [r["method"] for r in d["results"]] == list(tb.METHODS)
    for r in d["results"]:
        a = r["at"][0]
        assert a["far"] == 1e-3 and 0.0 <= a["tar"] <= 1.0 and a["n_mated"] == d["n_mated"]
        assert r["mated_score_mean"] > r["nonmated_score_mean"] + 0.3
        assert r["at"][1]["tar"] is None  # K < 1e4: no TAR at FAR 1e-4
        top = r["top_nonmated"]  # the highest non-mated scores, different identities each
        assert len(top) == min(tb.TOP_NONMATED, d["n_nonmated"])
        scores = [x["score"] for x in top]
        assert scores == sorted(scores, reverse=True)
        assert all(len(set(x["identities"])) == 2 for x in top)
        assert r["at"][0]["threshold"] <= scores[0]  # at most FAR x K accepts above it
    by = {r["method"]: r for r in d["results"]}
    assert by["mean"]["mean_max_weight"] == pytest.approx(0.2)
    assert by["best"]["mean_max_weight"] == 1.0
    assert 0.2 < by["quality_weighted"]["mean_max_weight"] < 1.0
    assert (out / "templates.md").read_text().strip() == table.strip()
    assert table.count("| lfw |") == len(tb.METHODS)

    # one code path: the bench's template equals gate.template on the same five images
    tf = tb.template_features(data, 5, None, 0, 2, tb.QUICK_MAX_TEMPLATES, tb.QUICK_IDENTITIES,
                              cache_dir=default_cache_dir() / "lfw")
    gate = QualityGate(face_policy="central")
    paths = [tf.paths[i] for i in tf.members[0]]
    for method in ("quality_weighted", "mean", "best", "top_k"):
        e, _, _ = tb.fuse_all(tf.members[:1], tf.quality, tf.embeddings, method)
        tpl = gate.template(paths, method=method)
        assert np.allclose(tpl.embedding, e[0], atol=1e-5), method

    # --scorer is honoured; "mean" does not depend on the scorer
    out2 = tmp_path / "tb2"
    assert bench_main(["templates", "--quick", "--datasets", "lfw", "--lfw", str(lfw_root),
                 "--scorer", "sharpness", "--methods", "mean", "best", "--out", str(out2),
                 "--no-progress"]) == 0
    (d2,) = json.loads((out2 / "templates.json").read_text())["datasets"]
    assert d2["scorer"] == "sharpness"
    by2 = {r["method"]: r for r in d2["results"]}
    assert by2["mean"]["at"] == by["mean"]["at"]
    assert by2["mean"]["mated_score_mean"] == by["mean"]["mated_score_mean"]


def test_cli_bench_templates_errors(tmp_path, capsys):
    from fiqa_bench.cli import main as bench_main

    f = tmp_path / "file"
    f.write_text("x")
    assert bench_main(["templates", "--out", str(f)]) == 1
    assert bench_main(["templates", "--out", str(tmp_path / "o"), "--datasets", "lfw",
                 "--lfw", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("fiqa-bench: error:") == 2
