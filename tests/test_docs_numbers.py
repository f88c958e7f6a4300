"""Experiments (fiqa_bench/experiments/) added so that numbers in README.md and docs/ come from a
committed command: lfw_all_threshold, ddpm_checks, prelu_rewrites, onnx_export_checks,
teacher_flip_spearman, dlib_vs_retinaface, and the options ``lfw_verification
--errors-vs-policy`` and ``unet_pass_size --freeze``. Each test runs the experiment's real code
on small inputs (temporary caches) and checks properties its numbers rest on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import MICRO_UNET  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


from conftest import bench_results, load_script, quick_run  # noqa: E402


def _load_script(name: str):
    return load_script(name, "_docs_numbers_")


def _unit(rng, n, d=16):
    e = rng.standard_normal((n, d)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


# -- lfw_all_threshold.py ----------------------------------------------------------------------
def test_threshold_cost_matches_brute_force_and_traces_the_block():
    from fiqa_sdk.eval import threshold_at_fmr

    mod = _load_script("lfw_all_threshold")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(60), 5)
    emb = _unit(rng, len(labels))
    cost = mod.threshold_cost(emb, labels, fmr=1e-2, block_size=64, repeats=1)
    iu = np.triu_indices(len(labels), 1)
    nonmated = (emb @ emb.T)[iu][labels[iu[0]] != labels[iu[1]]]
    ref = threshold_at_fmr(nonmated, 1e-2)
    assert cost["n_nonmated"] == len(nonmated)
    assert cost["threshold"] == pytest.approx(ref.threshold, abs=1e-6)
    assert cost["fmr_achieved"] <= 1e-2
    # one block of similarities (64 probes x up to 300 columns, float32) is allocated at least
    assert cost["peak_mib"] * 2**20 >= 64 * (len(labels) - 5) * 4
    assert cost["seconds"] > 0


def test_failing_breakdown_counts():
    mod = _load_script("lfw_all_threshold")
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    pairs = np.array([[0, 1], [0, 2], [1, 2], [3, 4], [5, 6]])
    scores = np.array([0.1, 0.2, 0.9, 0.1, 0.9])  # threshold 0.5: pairs 0, 1, 3 fail
    b = mod.failing_breakdown(pairs, scores, 0.5, labels)
    assert b["failing_mated_pairs"] == 3 and b["n_mated"] == 5
    assert b["failing_identities"] == 2  # identities 0 and 1
    assert b["failing_images"] == 5  # images 0, 1, 2, 3, 4
    assert b["max_failing_pairs_of_one_image"] == 2 and b["worst_image_index"] == 0
    none = mod.failing_breakdown(pairs, scores, 0.0, labels)
    assert none["failing_mated_pairs"] == 0 and none["failing_images"] == 0


@pytest.mark.lfw
def test_lfw_all_threshold_quick(lfw_root):
    run = quick_run("lfw_all_threshold")  # $FIQA_LFW, the session's cache
    assert run.exit_code == 0
    r = run.results
    n = r["images"]
    assert 250 < n <= 400
    assert 0 < r["n_nonmated"] < n * (n - 1) // 2
    assert -1 < r["threshold"] < 1 and r["peak_mib"] > 0
    assert 0 <= r["failing_images"] <= 2 * r["failing_mated_pairs"]


# -- ddpm_checks.py ----------------------------------------------------------------------------
def test_ddpm_identity_loss_degradations_and_residual_start():
    """On the ``--quick`` run (24 synthetic faces, validation batches of 8, both mix_T, 8 PSNR
    faces, 1 step each of the residual and the plain UNet)."""
    mod = _load_script("ddpm_checks")
    run = quick_run("ddpm_checks")
    assert run.exit_code == 0
    r = run.results
    assert r["n_faces"] == 24 and r["faces"] == "synthetic (--quick)" and r["val_size"] == 8
    ident = {int(m): v for m, v in r["identity_val_loss"].items()}
    assert sorted(ident) == sorted(mod.QUICK["mix_t"]) == [100, 1000]
    for v in ident.values():
        assert v["max_abs_diff_from_mse_x_t_x"] < 1e-7  # EMA of the fresh residual UNet = identity
        losses = [v[k] for k in ("t0", "t4", "t19", "t49", "t99")]
        assert all(a < b for a, b in zip(losses, losses[1:]))  # more noise, larger loss
        assert v["mean"] == pytest.approx(np.mean(losses))
    # t = 0 has no degradation mixed in with either mix_T; t = 99 is fully degraded at mix_T 100
    assert ident[100]["t0"] == pytest.approx(ident[1000]["t0"], rel=1e-6)
    assert ident[100]["t99"] > ident[1000]["t99"]
    deg = r["degradation_psnr_db"]
    assert deg["faces"] == 8
    for k in ("degrade", "degrade_train"):
        assert 5 < deg[k]["q25"] <= deg[k]["median"] <= deg[k]["q75"] < 60
    res, plain = r["smoke"]
    assert (res["residual"], plain["residual"]) == (True, False)
    assert res["steps"] == plain["steps"] == 1
    # the residual UNet starts near the identity, the plain one far from it
    assert res["val"]["mean"] < 2 * ident[1000]["mean"] < plain["val"]["mean"]


# -- prelu_rewrites.py -------------------------------------------------------------------------
def test_prelu_rewrites_are_the_same_function(tmp_path):
    import io

    import onnx
    import onnxruntime as ort
    import torch
    from torch import nn

    mod = _load_script("prelu_rewrites")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.PReLU(8), nn.Conv2d(8, 8, 1),
                        nn.PReLU(8)).eval()
    with torch.no_grad():
        net[1].weight.uniform_(-0.5, 0.9)
        net[3].weight.uniform_(0.0, 0.5)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), buf, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          opset_version=17, do_constant_folding=False, dynamo=False)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    for form in ("max", "relu-min"):
        m = onnx.load_from_string(buf.getvalue())
        assert mod.rewrite_prelu(m, form) == 2
        assert not any(n.op_type == "PRelu" for n in m.graph.node)
        onnx.checker.check_model(m)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        y = ort.InferenceSession(m.SerializeToString(), so,
                                 providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(y, ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        mod.rewrite_prelu(onnx.load_from_string(buf.getvalue()), "nope")


def test_prelu_rewrites_quick():
    mod = _load_script("prelu_rewrites")
    run = quick_run("prelu_rewrites")
    assert run.exit_code == 0
    r = run.results
    assert set(r["ms_per_face"]) == set(mod.VARIANTS)
    assert all(v > 0 for v in r["ms_per_face"].values())
    assert all(v < 1e-4 for v in r["max_abs_diff_vs_torch"].values())  # same function
    c = r["op_counts"]
    assert c["plain"]["PRelu"] >= 30  # the MobileFaceNet's PReLUs
    assert c["blocked"]["PRelu"] == c["max"]["PRelu"] == c["relu-min"]["PRelu"] == 0
    assert c["max"]["Max"] == c["plain"]["PRelu"] == c["relu-min"]["Min"]
    assert c["blocked"]["Conv"] == c["plain"]["Conv"] + c["plain"]["PRelu"]


# -- onnx_export_checks.py ---------------------------------------------------------------------
def test_onnx_export_checks_quick():
    run = quick_run("onnx_export_checks")
    assert run.exit_code == 0
    assert run.env_after["FIQA_CACHE"] == str(run.cache)  # restored
    r = run.results
    s = r["setup"]
    assert len(s["cache_files"]) == 1 and s["cache_files"][0].endswith(".onnx")
    assert s["onnxruntime_empty_cache_s"] > s["onnxruntime_cached_s"] > 0  # export vs load
    f = r["constant_folding"]
    assert f["folding_off"]["embedding_max_abs_diff"] < 1e-4  # the shipped export is faithful
    assert f["folding_off"]["quality_max_abs_diff"] < 1e-4
    assert np.isfinite(f["folding_on"]["embedding_max_abs_diff"])


# -- teacher_flip_spearman.py ------------------------------------------------------------------
def test_teacher_flip_spearman_quick():
    mod = _load_script("teacher_flip_spearman")
    run = quick_run("teacher_flip_spearman")
    assert run.exit_code == 0
    r = run.results
    assert r["n"] == mod.QUICK["n"] == 8 and r["teacher"] == {"method": "diffiqa", "t": 5, "n": 1, "flip": True,
                                             "seed": 0}
    assert set(r["spearman_with_teacher"]) == {"flip-consistency", "embedding-norm"}
    assert all(-1 <= v <= 1 for v in r["spearman_with_teacher"].values())


# -- dlib_vs_retinaface.py ---------------------------------------------------------------------
def test_landmark_offsets():
    mod = _load_script("dlib_vs_retinaface")
    a = np.zeros((4, 5, 2))
    b = a.copy()
    b[:, :, 0] += 3
    b[:, :, 1] += 4  # every landmark 5 px away
    b[1, 0] += 100  # one far landmark in image 1
    both = np.array([True, True, True, False])
    off = mod.landmark_offsets(a, b, both)
    assert off["images"] == 3
    assert off["pooled"]["median"] == pytest.approx(5.0)
    assert off["per_image_mean"]["median"] == pytest.approx(5.0)
    assert off["per_image_mean"]["p90"] > 5.0
    assert off["per_landmark_median"] == pytest.approx([5.0] * 5)


def test_failing_pairs_with_no_face_images():
    from types import SimpleNamespace

    mod = _load_script("dlib_vs_retinaface")
    rng = np.random.default_rng(1)
    ids = np.repeat(np.arange(40), 3)
    iu = np.array(np.triu_indices(len(ids), 1)).T
    same = ids[iu[:, 0]] == ids[iu[:, 1]]
    proto = SimpleNamespace(mated_pairs=iu[same], nonmated_pairs=iu[~same])  # as pairs.txt has
    emb = _unit(rng, len(ids), 32)
    for k in range(40):  # identities cluster...
        emb[3 * k : 3 * k + 3] = emb[3 * k] + 0.05 * _unit(rng, 3, 32)
    emb[7] = -emb[6]  # ...except image 7, far from its identity
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    no_face = np.zeros(len(ids), bool)
    no_face[7] = True
    r = mod.failing(emb, proto, 1e-2, no_face)
    assert r["failing_mated_pairs"] == 2  # (6, 7) and (7, 8)
    assert r["failing_with_a_no_face_image"] == 2 and r["no_face_images"] == 1
    assert r["fnmr0"] == pytest.approx(2 / r["n_mated"])


# -- lfw_verification.py --errors-vs-policy ----------------------------------------------------
def test_kfold_errors_match_kfold_accuracy_and_box_iou():
    from fiqa_sdk.eval.verification import kfold_accuracy

    mod = _load_script("lfw_verification")
    rng = np.random.default_rng(2)
    folds = np.repeat(np.arange(5), 40)
    mated = np.tile(np.r_[np.ones(20, bool), np.zeros(20, bool)], 5)
    sims = np.where(mated, 0.6, 0.2) + rng.normal(0, 0.2, len(mated))
    err = mod.kfold_errors(sims, mated, folds)
    acc = kfold_accuracy(sims, mated, folds)
    per_fold = np.bincount(folds[err], minlength=5)
    np.testing.assert_allclose(1 - per_fold / 40, acc.fold_accuracies)
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [np.nan] * 4])
    np.testing.assert_allclose(mod.box_iou(a, b), [1.0, 50 / 150, 0.0])


# -- unet_pass_size.py --freeze ----------------------------------------------------------------
def test_unet_freeze_gives_the_same_output():
    import torch

    from fiqa_sdk.diffusion.unet import UNet, unet_config

    mod = _load_script("unet_pass_size")
    torch.manual_seed(0)
    model = UNet(unet_config("tiny", **MICRO_UNET)).eval().requires_grad_(False)
    x, t = mod.inputs(4)
    fm = mod.frozen(model, x, t)
    with torch.inference_mode():
        np.testing.assert_allclose(fm(x, t).numpy(), model(x, t).numpy(), atol=1e-5, rtol=0)


# -- regressor_backends.py --bound-only --------------------------------------------------------
def test_regressor_backends_bound_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIQA_CACHE", str(tmp_path / "cache"))
    mod = _load_script("regressor_backends")
    out = tmp_path / "bound.json"
    assert mod.main(["--bound-only", "--out", str(out)]) == 0
    b = bench_results(out)["bound"]
    # the shipped ediffiqa (seed ensemble): 487.4 M MACs, quoted in the docs (one regressor: 441.0 M)
    assert 487e6 < b["macs_per_face"] < 488e6
    assert b["gflop_per_face"] == pytest.approx(2 * b["macs_per_face"] / 1e9)
    for t in (1, 2):
        assert b[f"sgemm_gflops_{t}_threads"] > 0
        assert b[f"faces_per_s_at_sgemm_rate_{t}_threads"] == pytest.approx(
            b[f"sgemm_gflops_{t}_threads"] / b["gflop_per_face"])
    assert "GFLOP/face; sgemm" in capsys.readouterr().out
    assert not (tmp_path / "cache").exists()  # no faces, no models written
