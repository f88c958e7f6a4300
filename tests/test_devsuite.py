"""The hard-data dev suite (``fiqa-bench quality --suite dev``), lfw-occ and the teacher check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fiqa_sdk.errors import EvaluationError, FiqaError
from fiqa_bench import devsuite
from fiqa_sdk.eval import threshold_at_fmr
from fiqa_sdk.eval.bootstrap import bootstrap_pauc
from fiqa_bench.devsuite_images import dev_relpaths
from fiqa_bench.occ import apply_occ, build_lfw_occ, occ_params


def _fake_tree(root: Path, counts: dict[str, int]) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, k in counts.items():
        d = root / "images" / name
        d.mkdir(parents=True)
        for i in range(1, k + 1):
            Image.fromarray(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8)).save(
                d / f"{name}_{i:04d}.jpg")
    return root


def test_dev_relpaths_rule_and_cap(tmp_path):
    root = _fake_tree(tmp_path, {"A": 20, "B": 4, "C": 3, "D": 1})
    rels = dev_relpaths(root)
    names = [r.split("/")[0] for r in rels]
    assert names.count("A") == 15 and names.count("B") == 4 and "C" not in names
    assert rels == sorted(rels) and rels == dev_relpaths(root)  # deterministic
    quick = dev_relpaths(root, quick=True)
    assert set(quick) <= set(rels) and len(quick) == 8
    with pytest.raises(EvaluationError):
        dev_relpaths(tmp_path / "missing")


def test_dev_relpaths_needs_a_root(monkeypatch):
    monkeypatch.delenv("FIQA_LFW", raising=False)
    with pytest.raises(EvaluationError, match="FIQA_LFW"):
        dev_relpaths(None)


def test_occ_params_deterministic_and_every_probe_changed():
    rels = [f"P{i}/P{i}_0001.jpg" for i in range(300)]
    ps = [occ_params(r) for r in rels]
    assert ps == [occ_params(r) for r in rels]
    assert all(p["occluder"] or p["pose"] for p in ps)
    kinds = {p["occluder"] for p in ps}
    assert {"sunglasses", "mask", "hand", "cap"} <= kinds
    assert 0.5 < np.mean([p["pose"] for p in ps]) < 0.7
    assert all(15 <= abs(p["yaw_deg"]) <= 40 for p in ps)


def test_apply_occ_changes_the_face_region(astronaut):
    import cv2

    img = cv2.resize(astronaut, (250, 250))
    for rel in ["a/a_0001.jpg", "b/b_0002.jpg", "c/c_0003.jpg"]:
        out = apply_occ(img, occ_params(rel))
        assert out.shape == img.shape and out.dtype == np.uint8
        diff = np.abs(out.astype(int) - img.astype(int)).mean(axis=2)
        assert diff[90:200, 75:175].mean() > 5  # the face region changed
        assert np.array_equal(out, apply_occ(img, occ_params(rel)))


def test_build_lfw_occ_idempotent(tmp_path):
    root = _fake_tree(tmp_path / "lfw", {"A": 2})
    rels = ["A/A_0001.jpg", "A/A_0002.jpg"]
    out = build_lfw_occ(root, tmp_path / "cache", rels)
    files = sorted(p.name for p in (out / "images" / "A").iterdir())
    assert files == ["A_0001.jpg", "A_0002.jpg"]
    man = json.loads((out / "manifest.json").read_text())
    before = (out / "images" / "A" / "A_0001.jpg").stat().st_mtime_ns
    build_lfw_occ(root, tmp_path / "cache", rels)
    assert (out / "images" / "A" / "A_0001.jpg").stat().st_mtime_ns == before
    assert man["n_images"] == 2 and (out / "params.csv").is_file()
    with pytest.raises(FiqaError):
        build_lfw_occ(tmp_path / "nolfw", tmp_path / "cache", rels)


def _unit(n, d, rng):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_threshold_cross_nonmated_equals_brute_force():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(30), 4)
    g, p = _unit(120, 8, rng), _unit(120, 8, rng)
    thr, k = devsuite.threshold_cross_nonmated(g, p, labels, labels, 1e-2, block_size=17)
    sims = (g @ p.T)[labels[:, None] != labels[None, :]]
    ref = threshold_at_fmr(sims.astype(np.float64), 1e-2)
    assert k == sims.size == 120 * 120 - 30 * 16
    assert thr.threshold == pytest.approx(ref.threshold, abs=1e-6)
    assert thr.fmr_achieved == pytest.approx(ref.fmr_achieved)


def test_cross_mated_pairs_excludes_same_photo():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pairs = devsuite.cross_mated_pairs(labels)
    assert len(pairs) == 2 * (3 + 1)
    assert (pairs[:, 0] != pairs[:, 1]).all() and (labels[pairs[:, 0]] == labels[pairs[:, 1]]).all()
    assert {tuple(x) for x in pairs} == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1), (3, 4), (4, 3)}


def _set(name, hard, rng, n_ids=40, per=5, shift=0.0):
    from fiqa_sdk.eval import FMRThreshold
    from fiqa_sdk.eval.protocols import same_label_pairs

    labels = np.repeat(np.arange(n_ids), per)
    mated = same_label_pairs(labels)
    qa = rng.normal(size=len(labels))
    scores = 0.4 + 0.2 * (qa[mated].min(1)) + rng.normal(0, 0.2, len(mated)) + shift
    qualities = {"embedding-norm": qa[mated], "random": rng.normal(size=(len(mated), 2))}
    spec = devsuite.DevSet(name, "all", "xq", "arcface", hard)
    return devsuite.SetData(spec, scores, labels[mated[:, 0]], qualities, FMRThreshold(0.3, 1e-3),
                            1000, len(labels))


def test_joint_bootstrap_single_set_equals_bootstrap_pauc():
    rng = np.random.default_rng(2)
    sd = _set("s", True, rng)
    names = ["embedding-norm", "random"]
    draws = devsuite.joint_bootstrap([sd], names, (0.2, 0.3), 50, seed=3)
    ref = bootstrap_pauc(sd.mated_scores, sd.qualities, sd.pair_ids, sd.threshold, (0.2, 0.3),
                         50, seed=3)
    np.testing.assert_allclose(draws[:, 0], ref.draws)


def test_summarize_pooled_is_mean_of_sets_and_verdict():
    rng = np.random.default_rng(4)
    data = [_set("a", True, rng), _set("b", True, rng, shift=0.05), _set("ref", False, rng)]
    s = devsuite.summarize(data, ["embedding-norm", "random"], (0.2, 0.3), 100, seed=0)
    a, b = (next(r for r in st["rows"] if r["scorer"] == "random") for st in s["sets"][:2])
    pooled = next(r for r in s["pooled"]["rows"] if r["scorer"] == "random")
    assert s["pooled"]["sets"] == ["a", "b"]
    assert pooled["pauc_norm_0.3"] == pytest.approx((a["pauc_norm_0.3"] + b["pauc_norm_0.3"]) / 2)
    assert pooled["diff_vs_ref_0.3"] == pytest.approx(
        (a["diff_vs_ref_0.3"] + b["diff_vs_ref_0.3"]) / 2)
    # the pooled paired SE is below the larger per-set one (two sets average out)
    assert 0 < pooled["diff_se_0.3"] < max(a["diff_se_0.3"], b["diff_se_0.3"])
    v = s["verdict"]
    assert v["best"] == "embedding-norm"  # random cannot beat a quality that drives the scores
    assert v["scorers"]["random"]["pooled_lower_by_2se"] is False
    md = devsuite.markdown(s)
    assert "**pooled" in md and "| random |" in md and "SE)" in md


def test_cli_suite_rejects_protocol_options(tmp_path, capsys):
    from fiqa_bench.cli import main as bench_main

    assert bench_main(["quality", "--suite", "dev", "--protocol", "lfw-all", "--out",
                 str(tmp_path / "o")]) != 0
    assert "take no --protocol" in capsys.readouterr().err
    assert bench_main(["quality", "--sets", "xq-arcface", "--out", str(tmp_path / "o")]) != 0
    assert "--sets applies to --suite dev only" in capsys.readouterr().err
    with pytest.raises(EvaluationError, match="unknown dev set"):
        devsuite.prepare_sets(tmp_path, ["nope"], [])


def test_cli_suite_dev_quick_on_lfw(lfw_root, tmp_path, capsys):
    """``fiqa-bench quality --suite dev --quick`` on real LFW: 12 identities x 4 images in each
    pool, the ArcFace sets (real detector, embedder, lfw-xq and lfw-occ images)."""
    from fiqa_bench.cli import main as bench_main

    out = tmp_path / "dev"
    argv = ["quality", "--suite", "dev", "--quick", "--lfw", str(lfw_root),
            "--sets", "xq-arcface", "occ-cross-arcface", "clean-arcface",
            "--scorers", "embedding-norm", "sharpness", "random", "--bootstrap", "100",
            "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-progress"]
    assert bench_main(argv) == 0
    table = capsys.readouterr().out
    rec = json.loads((out / "quality.json").read_text())
    assert rec["quick"] is True and rec["command"] == "fiqa-bench " + " ".join(argv)
    sets = {s["set"]: s for s in rec["summary"]["sets"]}
    assert set(sets) == {"xq-arcface", "occ-cross-arcface", "clean-arcface"}
    assert sets["xq-arcface"]["n_mated"] == 12 * 6 and sets["occ-cross-arcface"]["n_mated"] == 144
    assert rec["images_per_pool"] == {"clean": 48, "occ": 48, "xq": 48} and rec["identities"] == 12
    # the occluded / turned probes fail more often than the clean images
    assert sets["occ-cross-arcface"]["n_failing"] > sets["clean-arcface"]["n_failing"]
    assert rec["summary"]["pooled"]["sets"] == ["xq-arcface", "occ-cross-arcface"]
    assert (out / "quality.csv").is_file() and "**pooled" in (out / "quality.md").read_text()
    assert "| embedding-norm |" in table


@pytest.mark.slow
def test_teacher_check_quick_on_lfw(lfw_root, tmp_path):
    """``--teacher-check --quick``: the shipped denoiser in fast mode; eq. 7 = mean of terms."""
    from fiqa_bench.teacher_check import run_teacher_check

    res = run_teacher_check(lfw_root, params={"fast": True}, quick=True, boot=50,
                            cache_dir=tmp_path)
    names = {r["scorer"] for r in res["summary"]["sets"][0]["rows"]}
    assert names == {"diffiqa-eq7", "diffiqa-restored", "diffiqa-noisy", "embedding-norm"}
    assert set(res["summary"]["restored_minus_noisy"]) == {"xq-arcface", "occ-cross-arcface",
                                                           "pooled"}
    # students: more scorers on the same faces and redraws
    res = run_teacher_check(lfw_root, params={"fast": True}, quick=True, boot=50,
                            cache_dir=tmp_path, students=["det-score", "embedding-norm"])
    names = {r["scorer"] for r in res["summary"]["sets"][0]["rows"]}
    assert names == {"diffiqa-eq7", "diffiqa-restored", "diffiqa-noisy", "embedding-norm",
                     "det-score"}


def test_diffiqa_terms_mean_is_the_score(astronaut, astronaut_face, arcface):
    import fiqa_sdk as fq
    from fiqa_sdk.align import align_face
    from fiqa_sdk.diffusion.unet import UNet

    from conftest import MICRO_UNET

    sc = fq.create_scorer("diffiqa", weights=UNet("tiny", **MICRO_UNET), fast=True, n=1,
                          embedder=arcface)
    crop = align_face(astronaut, astronaut_face.landmarks, 112)
    crops = np.stack([crop, crop[:, ::-1]])
    terms = sc.terms(crops)
    assert set(terms) == set(sc.TERMS)
    np.testing.assert_allclose(np.mean(list(terms.values()), axis=0), sc.score(crops), atol=1e-6)
