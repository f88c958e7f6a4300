"""eDifFIQA / DifFIQA(R): label maths, pseudo-label cache, distillation, weights, ONNX export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fiqa_sdk as fq
from fiqa_sdk.diffusion.unet import UNet
from fiqa_sdk.errors import WeightsError
from fiqa_sdk.train.labels import (
    centre_cosines,
    class_centres,
    minmax,
    optimize_labels,
    pseudo_labels,
    read_labels,
)

from conftest import MICRO_UNET as MICRO  # noqa: E402
from conftest import graded_crops  # noqa: E402


pytestmark = pytest.mark.usefixtures("torch_one_thread")


# -- label maths (hand-worked) ------------------------------------------------------------
def test_optimize_labels_hand_worked():
    q = np.array([0.9, 0.5, 0.2, 0.7])
    cos = np.array([1.0, 0.6, 0.0, np.nan])
    # 0.9 - 0.5 * 0 = 0.9; 0.5 - 0.5 * 0.4 = 0.3; 0.2 - 0.5 * 1 = -0.3 -> 0; no centre -> NaN
    out = optimize_labels(q, cos, eps=0.5)
    np.testing.assert_allclose(out[:3], [0.9, 0.3, 0.0])
    assert np.isnan(out[3])
    np.testing.assert_allclose(optimize_labels(q[:3], cos[:3], eps=0.0), q[:3])
    # a face far from its centre (cos -1) with eps 1 loses 2: clamped at 0
    assert optimize_labels(np.array([1.0]), np.array([-1.0]), eps=1.0)[0] == 0.0


def test_class_centres_hand_worked():
    emb = np.array([[1, 0], [0, 1], [1, 1], [3, 0], [0, 5], [2, 2]], float)
    ids = np.array([0, 0, 0, 1, 1, 1])
    q = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.6])
    # top p = 0.5 -> ceil(3) faces: rows 0 (0.9), 1 (0.8), 3 (0.7)
    c = class_centres(emb, ids, q, p=0.5, min_count=1)
    np.testing.assert_allclose(c[0], [0.5, 0.5])
    np.testing.assert_allclose(c[1], [3.0, 0.0])
    # identity 1 has a single top face: no centre with min_count 2
    assert set(class_centres(emb, ids, q, p=0.5, min_count=2)) == {0}
    cos = centre_cosines(emb, ids, class_centres(emb, ids, q, p=0.5, min_count=2))
    np.testing.assert_allclose(cos[:3], [np.sqrt(0.5), np.sqrt(0.5), 1.0])
    assert np.isnan(cos[3:]).all()
    with pytest.raises(ValueError):
        class_centres(emb, ids[:3], q)


def test_minmax():
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(minmax(np.array([1.0, 1.0])), [0.5, 0.5])


# -- data: real faces -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def crops(astronaut, astronaut_face) -> np.ndarray:
    """24 aligned crops of a real face with graded degradations (severity k % 6: blur, noise,
    downscaling)."""
    return graded_crops(astronaut, astronaut_face, 24, period=6, jitter=2.0, blur=0.6)


class CountingScorer(fq.Scorer):
    name = "counting"

    def __init__(self):
        self.calls = 0
        self.t, self.n, self.seed, self.eta, self.fast, self.flip = 5, 1, 0, 1.0, True, True
        self.embedder, self.meta = type("E", (), {"name": "none"})(), {"sha256": "x"}

    def _score(self, aligned, faces):
        self.calls += 1
        return aligned.reshape(len(aligned), -1).mean(1)


def test_pseudo_labels_cache_resume_and_shards(crops, tmp_path, monkeypatch):
    from fiqa_sdk.train import labels as L

    monkeypatch.setattr(L, "CHUNK", 5)
    s = CountingScorer()
    q0, folder0 = pseudo_labels(crops, s, tmp_path, shard=(0, 2))
    assert np.isfinite(q0).sum() == 14 and s.calls == 3  # chunks 0, 2, 4: 5 + 5 + 4 faces
    q1, folder1 = pseudo_labels(crops, s, tmp_path, shard=(1, 2))
    assert folder0 == folder1 and s.calls == 5
    np.testing.assert_allclose(q1, crops.reshape(24, -1).mean(1))
    calls = s.calls
    q2, _ = pseudo_labels(crops, s, tmp_path)  # everything cached: no new work
    assert s.calls == calls
    np.testing.assert_array_equal(q2, q1)
    np.testing.assert_array_equal(read_labels(folder0, 24), q1)
    meta = json.loads((folder0 / "meta.json").read_text())
    assert meta["teacher"]["n"] == 1 and meta["n_faces"] == 24
    s.n = 2  # another teacher: another folder
    _, folder2 = pseudo_labels(crops[:5], s, tmp_path)
    assert folder2 != folder0
    with pytest.raises(ValueError):
        pseudo_labels(crops, s, tmp_path, shard=(2, 2))


def test_pseudo_labels_with_a_real_diffiqa_teacher(crops, tmp_path, arcface):
    torch.manual_seed(0)
    unet = UNet("tiny", **MICRO)
    teacher = fq.create_scorer("diffiqa", weights=unet, embedder=arcface, fast=True, n=1)
    q, folder = pseudo_labels(crops[:6], teacher, tmp_path)
    assert q.shape == (6,) and np.isfinite(q).all() and (q <= 1).all()
    np.testing.assert_allclose(q, teacher.score(crops[:6]), atol=1e-6)


def test_held_out_verification_equals_the_edc_toolkit():
    """The model-selection EDC over validation identities is the toolkit's EDC of the same
    all-vs-all comparisons (brute force), and a quality that sees the failures ranks best."""
    from fiqa_sdk.eval import edc
    from fiqa_sdk.train.distill import HeldOutVerification

    rng = np.random.default_rng(3)
    ids = np.repeat(np.arange(12), 5)
    centres = rng.normal(size=(12, 16))
    noise = rng.uniform(0.1, 1.2, size=len(ids))  # per-face noise
    emb = centres[ids] + noise[:, None] * rng.normal(size=(len(ids), 16))
    hv = HeldOutVerification(emb, ids, fmr=0.01)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    i, j = np.triu_indices(len(ids), 1)
    same = ids[i] == ids[j]
    sims = np.einsum("ij,ij->i", e[i].astype(np.float32), e[j].astype(np.float32))
    quality = -noise
    ref = edc(sims[same], sims[~same], np.stack([quality[i[same]], quality[j[same]]], 1), fmr=0.01)
    assert hv.fnmr0 == pytest.approx(ref.fnmr0) and 0 < hv.fnmr0 < 1
    got = hv.pauc(quality)
    assert got["pauc_0.2"] == pytest.approx(ref.pauc(0.2, normalized=True))
    assert got["pauc_0.3"] == pytest.approx(ref.pauc(0.3, normalized=True))
    # an oracle quality (each face's worst mated score) discards the failing pairs first
    oracle = np.full(len(ids), np.inf)
    np.minimum.at(oracle, i[same], sims[same])
    np.minimum.at(oracle, j[same], sims[same])
    assert hv.pauc(oracle)["pauc_0.2"] < hv.pauc(rng.random(len(ids)))["pauc_0.2"]
    with pytest.raises(ValueError, match="mated"):
        HeldOutVerification(emb[::5], ids[::5])


# -- distillation -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(crops, tmp_path_factory, arcface):
    """A short eDifFIQA run on the degraded crops, labels = -severity (a learnable target)."""
    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.train.distill import DistillConfig, distill

    labels = -(np.arange(24) % 6).astype(float)
    ids = np.arange(24) // 6  # 4 "identities" of 6 crops
    e = arcface.embed_raw(crops)
    ef = arcface.embed_raw(np.ascontiguousarray(crops[:, :, ::-1]))
    out = tmp_path_factory.mktemp("ediffiqa")
    cfg = DistillConfig(method="ediffiqa", epochs=12, batch_size=8, val_fraction=0.0, min_count=1,
                        p=0.5)
    meta = {"backbone": {"arch": "mobilefacenet", "base": "w600k_mbf.onnx"}}
    summary = distill(crops, ids, labels, e, ef, load_mobilefacenet(), out, cfg, meta=meta)
    return summary, crops


def test_distillation_lowers_the_loss(trained):
    summary, _ = trained
    losses = [h["loss"] for h in summary["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    assert summary["labels"]["centres"] == 4


def test_exported_regressor_loads_and_reproduces(trained, tmp_path):
    summary, crops = trained
    path = summary["weights"]
    s = fq.create_scorer("ediffiqa", weights=path)
    q = s.score(crops)
    assert q.shape == (24,) and np.isfinite(q).all()
    # learned the ranking of the training target: severity 0 above severity 5 on average
    sev = np.arange(24) % 6
    assert q[sev == 0].mean() > q[sev == 5].mean()
    # the backbone stays an FR model: consistent with ArcFace on clean crops
    meta = json.loads(open(path.replace(".safetensors", ".json")).read())
    assert meta["method"] == "ediffiqa" and meta["backbone"]["stored_tensors"] > 0
    # scores are deterministic and batch-independent
    np.testing.assert_allclose(s.score(crops[:3]), q[:3], atol=1e-5)


def test_regressor_weights_checksum(trained, tmp_path):
    import shutil

    summary, _ = trained
    src = summary["weights"]
    dst = tmp_path / "w.safetensors"
    shutil.copy(src, dst)
    shutil.copy(src.replace(".safetensors", ".json"), tmp_path / "w.json")
    data = bytearray(dst.read_bytes())
    data[-1] ^= 0xFF
    dst.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        fq.create_scorer("ediffiqa", weights=dst)
    (tmp_path / "w.json").unlink()
    with pytest.raises(WeightsError, match="sidecar"):
        fq.create_scorer("ediffiqa", weights=dst)
    with pytest.raises(WeightsError, match="not found"):
        fq.create_scorer("diffiqa-r", weights=tmp_path / "missing.safetensors")


def test_onnx_export_parity(trained, tmp_path):
    from fiqa_sdk.quality.ediffiqa import OnnxRegressorScorer, export_onnx

    summary, crops = trained
    s = fq.create_scorer("ediffiqa", weights=summary["weights"])
    path = export_onnx(s, tmp_path / "ediffiqa.onnx")
    o = OnnxRegressorScorer(path)
    np.testing.assert_allclose(o.score(crops), s.score(crops), atol=1e-4)


@pytest.fixture(scope="module")
def trained_seed1(crops, tmp_path_factory, arcface) -> str:
    """A second, shorter eDifFIQA run of the same kind with another seed (an ensemble member)."""
    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.train.distill import DistillConfig, distill

    labels = -(np.arange(24) % 6).astype(float)
    e = arcface.embed_raw(crops)
    ef = arcface.embed_raw(np.ascontiguousarray(crops[:, :, ::-1]))
    cfg = DistillConfig(method="ediffiqa", epochs=3, batch_size=8, val_fraction=0.0, min_count=1,
                        p=0.5, seed=1)
    summary = distill(crops, np.arange(24) // 6, labels, e, ef, load_mobilefacenet(),
                      tmp_path_factory.mktemp("ediffiqa-s1"), cfg,
                      meta={"backbone": {"arch": "mobilefacenet", "base": "w600k_mbf.onnx"}})
    return summary["weights"]


def test_seed_ensemble_is_the_mean_of_its_members(trained, trained_seed1, tmp_path):
    from fiqa_sdk.errors import InvalidArgumentError
    from fiqa_sdk.quality.ediffiqa import (
        OnnxRegressorScorer,
        RegressorEnsemble,
        RegressorScorer,
        export_onnx,
        save_ensemble,
    )

    summary, crops = trained
    members = [summary["weights"], trained_seed1]
    path = save_ensemble(members, tmp_path / "ens.safetensors")
    meta = json.loads((tmp_path / "ens.json").read_text())
    assert meta["ensemble"] == {"members": 2, "cut": 15, "combine": "mean", "seeds": [0, 1]}
    assert [m["source"]["file"] for m in meta["members"]] == ["ediffiqa_mbf.safetensors"] * 2
    ens = fq.create_scorer("ediffiqa", weights=path)
    assert isinstance(ens.model, RegressorEnsemble) and ens.members == 2
    assert not ens.frozen_backbone
    single = [fq.create_scorer("ediffiqa", weights=m) for m in members]
    assert single[0].members == 1
    before = crops.copy()
    q = ens.score(crops)
    np.testing.assert_array_equal(crops, before)
    parts = np.stack([s.score(crops) for s in single], -1)
    assert np.abs(parts[:, 0] - parts[:, 1]).max() > 1e-3  # the seeds differ ...
    np.testing.assert_allclose(q, parts.mean(-1), atol=1e-5)  # ... and the ensemble averages them
    with torch.no_grad():
        x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 127.5
        np.testing.assert_allclose(ens.model.member_qualities(x).numpy(), parts, atol=1e-5)
    # built from the member files without writing one: the same module
    built = RegressorScorer(RegressorEnsemble.from_files(members), name="built")
    np.testing.assert_allclose(built.score(crops), q, atol=1e-6)
    with pytest.raises(InvalidArgumentError, match="already an ensemble"):
        RegressorEnsemble.from_files([path, members[0]])
    # one stem pass for all members (the research harness's shared stem), the same scores
    from fiqa_bench.stem import SharedStem, StemRegressorScorer

    shared = StemRegressorScorer(path, SharedStem(cut=15), name="ens-stem")
    np.testing.assert_allclose(shared.score(crops), q, atol=1e-5)
    with pytest.raises(InvalidArgumentError, match="cut 15"):
        StemRegressorScorer(path, SharedStem(cut=16))
    # ONNX export of the whole ensemble (the members' tails in one graph)
    o = OnnxRegressorScorer(export_onnx(ens, tmp_path / "ens.onnx"))
    np.testing.assert_allclose(o.score(crops), q, atol=1e-4)
    ort = RegressorScorer(path, backend="onnxruntime", name="ens-ort")
    np.testing.assert_allclose(ort.score(crops), q, atol=1e-4)
    # the file is sha256-checked like one regressor's
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        fq.create_scorer("ediffiqa", weights=path)


def test_seed_ensemble_refuses_what_it_cannot_combine(trained, trained_seed1, free_weights,
                                                      tmp_path):
    from fiqa_sdk.errors import InvalidArgumentError
    from fiqa_sdk.quality.ediffiqa import RegressorEnsemble, load_regressor, save_ensemble

    summary, _ = trained
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        save_ensemble([summary["weights"]], tmp_path / "one.safetensors")
    with pytest.raises(InvalidArgumentError, match="method"):
        save_ensemble([summary["weights"], free_weights], tmp_path / "mixed.safetensors")
    ens = save_ensemble([summary["weights"], trained_seed1], tmp_path / "ens.safetensors")
    with pytest.raises(InvalidArgumentError, match="already an ensemble"):
        save_ensemble([ens, trained_seed1], tmp_path / "nested.safetensors")
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        RegressorEnsemble([load_regressor(trained_seed1)[0]], cut=15)
    # members whose stems differ cannot share one
    a, b = load_regressor(summary["weights"])[0], load_regressor(trained_seed1)[0]
    with torch.no_grad():
        b.backbone.blocks[0].conv.weight.add_(0.01)
    with pytest.raises(WeightsError, match="stem"):
        RegressorEnsemble([a, b], cut=15)
    # tensors of no member
    from safetensors.torch import load_file, save_file

    side = tmp_path / "ens.json"
    meta = json.loads(side.read_text())
    state = load_file(str(ens))
    state["members.7.head.0.bias"] = torch.zeros(3)
    save_file(state, str(tmp_path / "extra.safetensors"))
    (tmp_path / "extra.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="no member"):
        fq.create_scorer("ediffiqa", weights=tmp_path / "extra.safetensors", verify=False)
    # a sidecar that does not list its members
    meta["members"] = meta["members"][:1]
    side.write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="members"):
        fq.create_scorer("ediffiqa", weights=ens)


def test_train_ensemble_command(trained, trained_seed1, tmp_path, capsys):
    from fiqa_sdk.cli import main

    summary, crops = trained
    assert main(["train", "ensemble", summary["weights"], trained_seed1, "--out",
                 str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weights"] == str(tmp_path / "ediffiqa_mbf_x2.safetensors")
    assert out["members"] == 2 and out["seeds"] == [0, 1]
    assert fq.create_scorer("ediffiqa", weights=out["weights"]).members == 2
    assert main(["train", "ensemble", summary["weights"], "--out", str(tmp_path)]) == 1
    assert "at least 2" in capsys.readouterr().err


def test_split_seed_fixes_the_held_out_identities(crops, arcface, tmp_path, monkeypatch):
    """``split_seed`` alone draws the held-out identities (default: the training seed), so runs
    with other training seeds and one split seed hold out the same faces."""
    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.train import distill as D

    ids = np.arange(24) // 6
    masks = {s: D.split_identities(ids, 0.5, s) for s in range(6)}
    assert len({m.tobytes() for m in masks.values()}) > 1  # seeds draw different identities
    seen = []
    orig = D.split_identities
    monkeypatch.setattr(D, "split_identities", lambda i, f, s: seen.append(s) or orig(i, f, s))
    e = arcface.embed_raw(crops)
    ef = arcface.embed_raw(np.ascontiguousarray(crops[:, :, ::-1]))
    for seed, split in ((1, 0), (1, None)):
        cfg = D.DistillConfig(method="diffiqa-r", epochs=1, batch_size=8, val_fraction=0.5,
                              min_count=1, p=0.5, seed=seed, split_seed=split)
        out = D.distill(crops, ids, -(np.arange(24) % 6).astype(float), e, ef,
                        load_mobilefacenet(), tmp_path / f"{seed}-{split}", cfg,
                        meta={"backbone": {"arch": "mobilefacenet", "base": "w600k_mbf.onnx"}})
        meta = json.loads(open(out["weights"].replace(".safetensors", ".json")).read())
        assert meta["config"]["split_seed"] == split
    assert seen == [0, 1]


def test_ensemble_held_out_needs_one_split():
    from conftest import load_script

    mod = load_script("ensemble_held_out")
    same = [{"config": {"seed": 0}}, {"config": {"seed": 1, "split_seed": 0}}]
    assert mod.held_out_split(same) == (0, 0.1)
    from fiqa_sdk.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="different identities"):
        mod.held_out_split([{"config": {"seed": 0}}, {"config": {"seed": 1}}])
    assert mod.main(["--member", "only-one.safetensors"]) != 0  # "give at least two --member"


@pytest.fixture(scope="module")
def free_weights(crops, tmp_path_factory, arcface) -> str:
    """A short ediffiqa-free run (head only) on the degraded crops, labels = -severity."""
    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.train.distill import DistillConfig, distill

    labels = -(np.arange(24) % 6).astype(float)
    e = arcface.embed_raw(crops)
    ef = arcface.embed_raw(np.ascontiguousarray(crops[:, :, ::-1]))
    cfg = DistillConfig(method="ediffiqa-free", epochs=3, batch_size=8, val_fraction=0.0,
                        min_count=1, p=0.5)
    summary = distill(crops, np.arange(24) // 6, labels, e, ef, load_mobilefacenet(),
                      tmp_path_factory.mktemp("free"), cfg,
                      meta={"backbone": {"arch": "mobilefacenet", "base": "w600k_mbf.onnx"}},
                      raw_target=True)
    return summary["weights"]


def test_free_variant_scores_from_embeddings(crops, free_weights, arcface):
    s = fq.create_scorer("ediffiqa-free", weights=free_weights)
    assert json.loads(open(free_weights.replace(".safetensors", ".json")).read())["backbone"][
        "stored_tensors"] == 0  # the backbone is ArcFace itself: nothing of it is stored
    # the head on ArcFace's own raw embeddings equals the full forward pass
    e = arcface.embed_raw(crops)
    np.testing.assert_allclose(s.score_embeddings(e), s.score(crops), atol=1e-4)


def test_regressors_without_shipped_weights_say_so(monkeypatch, tmp_path):
    from fiqa_sdk.quality import ediffiqa

    monkeypatch.setitem(ediffiqa.SHIPPED, "diffiqa-r", tmp_path / "absent.safetensors")
    with pytest.raises(WeightsError, match="fiqa train diffiqa-r"):
        fq.create_scorer("diffiqa-r")


def test_shared_stem_gives_the_same_scores(trained, tmp_path):
    from fiqa_bench.stem import SharedStem, StemRegressorScorer
    from fiqa_sdk.errors import InvalidArgumentError

    summary, crops = trained
    plain = fq.create_scorer("ediffiqa", weights=summary["weights"])
    stem = SharedStem(cut=15)
    a = StemRegressorScorer(summary["weights"], stem, name="a")
    b = StemRegressorScorer(summary["weights"], stem, name="b")
    np.testing.assert_allclose(a.score(crops), plain.score(crops), atol=1e-5)
    np.testing.assert_allclose(b.score(crops), plain.score(crops), atol=1e-5)
    assert a.name == "a" and a.weights_sha256 == plain.weights_sha256
    with pytest.raises(InvalidArgumentError, match="differ"):
        StemRegressorScorer(summary["weights"], SharedStem(cut=17))
    with pytest.raises(InvalidArgumentError, match="shared stem runs the torch model"):
        StemRegressorScorer(summary["weights"], stem, backend="onnxruntime")


def test_gate_reads_quality_from_its_own_embedding(free_weights, astronaut):
    """ediffiqa-free in a gate with the arcface embedder: same scores, no second backbone pass."""
    scorer = fq.create_scorer("ediffiqa-free", weights=free_weights)
    gate = fq.QualityGate(scorer=scorer)
    assert gate._quality_from_embedding
    calls = []
    orig = scorer._score
    scorer._score = lambda *a: calls.append(1) or orig(*a)
    r = gate.assess(astronaut, color="rgb")
    assert not calls  # scored from the embedding, the backbone did not run again
    assert r.score == pytest.approx(float(orig(r.aligned[None], None)[0]), abs=1e-4)
    # a fine-tuned backbone cannot read the base model's embedding
    other = fq.QualityGate(scorer="embedding-norm")
    assert not other._quality_from_embedding


@pytest.mark.parametrize("name, expected", [
    ("ediffiqa", (0.409936, 0.357258)),
    ("diffiqa-r", (0.902806, 0.880866)),
    ("ediffiqa-free", (0.027179, -0.297197)),  # v3 (v2: 0.289866, -0.031372)
])
def test_shipped_regressors_reproduce_recorded_scores(name, expected, astronaut):
    """Shipped weights load (sha256-checked) and give the scores recorded when they shipped:
    the astronaut's aligned crop and its mirror."""
    from fiqa_sdk.align import align_face
    from fiqa_sdk.quality.ediffiqa import shipped_weights

    assert shipped_weights(name) is not None
    face = fq.create_detector("retinaface").detect(astronaut)[0]
    crop = align_face(astronaut, face)
    s = fq.create_scorer(name, backend="torch")
    np.testing.assert_allclose(s.score(np.stack([crop, crop[:, ::-1]])), expected, atol=5e-4)


def test_gate_default_is_a_shipped_regressor():
    from fiqa_sdk.gate import DEFAULT_SCORER, default_scorer_name

    assert DEFAULT_SCORER == "diffiqa-r+norm"  # chosen on the dev benchmark (docs/benchmarks.md)
    assert default_scorer_name() == DEFAULT_SCORER
    assert fq.QualityGate().scorer.name == DEFAULT_SCORER
