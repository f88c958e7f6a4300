"""Experiments that produce numbers quoted in the docs: ``fiqa-bench run color_order``
(docs/faq.md, "BGR or RGB?") and the onnxruntime profiler mode of ``fiqa-bench run
regressor_backends`` (docs/benchmarks.md, "eDifFIQA throughput"). Each runs the experiment's real
code path (fiqa_bench/experiments/) on small inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import graded_crops  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


from conftest import bench_results, load_script, quick_run  # noqa: E402


def _load_script(name: str):
    return load_script(name, "_docs_")


def test_color_order(tmp_path, monkeypatch, capsys):
    """The FAQ's example: the astronaut read as BGR is still found, but the ArcFace embedding
    moves (cosine well below 1) and both scorers score it lower."""
    monkeypatch.setenv("FIQA_CACHE", str(tmp_path / "cache"))
    mod = _load_script("color_order")
    out = tmp_path / "color.json"
    assert mod.main(["--scorers", "embedding-norm", "ediffiqa", "--out", str(out)]) == 0
    res = bench_results(out)
    rows = {r["scorer"]: r for r in res["rows"]}
    assert set(rows) == {"embedding-norm", "ediffiqa"}
    for r in rows.values():
        assert r["as_bgr"] < r["rgb"]  # swapped colours cost quality
        assert r["det_score_rgb"] > 0.99 and r["det_score_as_bgr"] > 0.99  # the face is found
    assert 0.9 < res["embedding_cosine"] < 0.99
    # the values quoted in docs/faq.md and README (the gate's recorded astronaut score)
    assert rows["embedding-norm"]["rgb"] == pytest.approx(22.52, abs=0.01)
    assert rows["embedding-norm"]["as_bgr"] == pytest.approx(22.27, abs=0.01)
    assert rows["ediffiqa"]["rgb"] == pytest.approx(0.409936, abs=5e-4)
    assert res["embedding_cosine"] == pytest.approx(0.959, abs=0.002)
    printed = capsys.readouterr().out
    assert "| embedding-norm | 22.52" in printed and "cosine of the two ArcFace embeddings" in printed
    # --quick: embedding-norm only, the same embeddings
    run = quick_run("color_order")
    assert run.exit_code == 0
    q = run.results
    assert [r["scorer"] for r in q["rows"]] == ["embedding-norm"]
    assert q["embedding_cosine"] == pytest.approx(res["embedding_cosine"], abs=1e-6)


def test_regressor_backends_profile(astronaut, astronaut_face, tmp_path, monkeypatch, capsys):
    """``--profile``: per-op-type kernel times of the plain and the blocked-PReLU export of the
    shipped ediffiqa. The plain graph runs 46 PRelu kernels (34 + 6 per extra ensemble tail),
    the rewrite none (a 1x1 depthwise Conv + Relu + Add each); the MAC count of the ONNX graph equals the torch module's."""
    monkeypatch.setenv("FIQA_CACHE", str(tmp_path / "cache"))
    faces = tmp_path / "faces.npy"
    np.save(faces, graded_crops(astronaut, astronaut_face, 8, period=4))
    mod = _load_script("regressor_backends")
    out = tmp_path / "profile.json"
    assert mod.main(["--profile", "--faces", str(faces), "--batches", "4", "--rounds", "2",
                     "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    res = bench_results(out)
    assert res["batch"] == 4 and res["runs"] == 2
    src = res["source_op_counts"]
    # the shipped ediffiqa is a 3-seed ensemble: one regressor's 34 PReLUs + 6 in each extra tail
    prelus = 34 + 2 * 6
    assert src["plain"]["PRelu"] == prelus and "PRelu" not in src["blocked-PReLU"]
    assert src["blocked-PReLU"]["Relu"] == prelus
    assert src["blocked-PReLU"]["Conv"] == src["plain"]["Conv"] + prelus
    # the scorer's export also splits block 1 (64 groups of 2 channels) into 2 depthwise convs
    assert src["fp32-shipped"]["Conv"] == src["blocked-PReLU"]["Conv"] + 1
    assert src["fp32-shipped"]["Gather"] == 1
    assert "int8-shipped" in res["profiles"]
    plain, blocked = res["profiles"]["plain"], res["profiles"]["blocked-PReLU"]
    assert plain["runs"] == blocked["runs"] == 2  # the warm-up run is left out
    assert plain["nodes_as_run"]["PRelu"] == prelus and plain["ms_per_face"]["PRelu"] > 0
    assert "PRelu" not in blocked["ms_per_face"]
    for p in (plain, blocked):
        assert p["ms_per_face"]["Conv"] > 0
        assert p["total_ms_per_face"] == pytest.approx(sum(p["ms_per_face"].values()))
        assert p["slowest_nodes"] and set(p["slowest_nodes"]) <= set(p["node_op"])

    def reorders(p):
        return sum(p["nodes_as_run"].get(k, 0) for k in ("ReorderInput", "ReorderOutput"))

    assert reorders(blocked) <= reorders(plain)  # the rewrite stays in the blocked layout
    # MACs of the ONNX graph's Conv / Gemm nodes = the torch hook count of the bound
    import torch

    from fiqa_sdk.quality.ediffiqa import load_regressor, shipped_weights

    model, _ = load_regressor(shipped_weights("ediffiqa"))
    model.eval()
    with torch.inference_mode():
        bound = mod.roofline(model)
    assert res["macs_per_face"] == bound["macs_per_face"]
    printed = capsys.readouterr().out
    assert "| PRelu |" in printed and "MACs of the source graph" in printed


def test_unet_pass_size_quick(tmp_path, monkeypatch, capsys):
    """``--quick --onnx --profile``: a per-sample time per pass size and runtime, the ONNX
    export gives torch's output, and the profiler splits the pass into convolutions and the
    elementwise / normalisation ops."""
    monkeypatch.setenv("FIQA_CACHE", str(tmp_path / "cache"))
    mod = _load_script("unet_pass_size")
    out = tmp_path / "unet.json"
    assert mod.main(["--quick", "--threads", "1", "--onnx", "--profile", "--work",
                     str(tmp_path / "onnx"), "--out", str(out)]) == 0
    res = bench_results(out)
    assert res["threads"] == 1 and res["samples"] == 8 and res["rounds"] == 2
    assert set(res["ms_per_sample"]) == {f"{rt}, pass of {b}" for rt in ("torch", "onnxruntime")
                                         for b in (4, 8)}
    assert all(v > 0 for v in res["ms_per_sample"].values())
    assert res["onnx_max_abs_diff"] < 1e-4
    prof = res["profile"]
    assert prof["pass_size"] == 4 and 0 < prof["elementwise_share"] < 1
    assert any("convolution" in k for k in prof["top_ms"])
    assert any("group_norm" in k for k in prof["top_ms"])
    assert "| torch, pass of 8 |" in capsys.readouterr().out


def test_lfw_xq_stats_quick(lfw_root):
    """``--quick``: the lfw-xq build time of 10 images (into a temporary folder that is removed
    again) and the RetinaFace inter-eye distance of 100 pairs.txt images (cached in the run's
    own cache), near the 42 px that lfw-xq takes as LFW's nominal distance."""
    run = quick_run("lfw_xq_stats")
    assert run.exit_code == 0
    res = run.results
    assert res["build"]["images"] == 10 and res["build"]["ms_per_image"] > 0
    eye = res["inter_eye"]
    assert eye["images"] == 100 and eye["with_face"] == 100
    assert eye["q1_px"] <= eye["median_px"] <= eye["q3_px"]
    assert 38 < eye["median_px"] < 48
    # built in a temporary folder that is removed again, not in the cache
    assert not list(run.tmp.glob("lfw-xq*")) and not list(run.cache.glob("lfw-xq*"))
    assert (run.cache / "lfw").is_dir()  # landmarks cached with the other benchmarks
    assert "inter-eye distance, 100 of 100" in run.stdout
