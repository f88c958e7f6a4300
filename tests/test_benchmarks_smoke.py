"""Smoke tests of the DifFIQA acceptance check and the runtime breakdown (tiny inputs, a tiny
random UNet and a random eDifFIQA-free head: no trained weights needed)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fiqa_sdk.diffusion.unet import UNet

REPO = Path(__file__).resolve().parents[1]
from conftest import MICRO_UNET as MICRO  # noqa: E402
from conftest import fake_lfw as make_fake_lfw  # noqa: E402
from conftest import graded_crops  # noqa: E402


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def micro_weights(tmp_path_factory):
    from fiqa_sdk.train.ddpm import export_weights

    torch.manual_seed(0)
    return export_weights(UNet("tiny", **MICRO), tmp_path_factory.mktemp("w") / "unet.safetensors")


@pytest.fixture(scope="module")
def free_head(tmp_path_factory):
    """An ``ediffiqa-free`` regressor with a random head (the backbone is ArcFace's own)."""
    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.quality.ediffiqa import QualityRegressor, save_regressor

    torch.manual_seed(0)
    model = QualityRegressor(load_mobilefacenet(), head="mlp")
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    path = tmp_path_factory.mktemp("r") / "ediffiqa_free_mbf.safetensors"
    return save_regressor(model, path, {"method": "ediffiqa-free", "backbone": {
        "arch": "mobilefacenet", "base": "w600k_mbf.onnx"}}, base_state=base)


@pytest.fixture(scope="module")
def crops(astronaut, astronaut_face) -> np.ndarray:
    return graded_crops(astronaut, astronaut_face, 4, jitter=3.0)


@pytest.fixture(scope="module")
def fake_lfw(astronaut, tmp_path_factory) -> Path:
    """An LFW-shaped folder (``images/<identity>/<file>.jpg``) of astronaut JPEGs."""
    return make_fake_lfw(tmp_path_factory.mktemp("lfw"), astronaut, 3)


from conftest import bench_results, load_script, quick_run  # noqa: E402


def _load_script(name: str):
    return load_script(name, "_bench_")


# -- acceptance -----------------------------------------------------------------------------
def test_psnr_and_degradations(crops):
    from fiqa_bench import diffiqa_checks as dc

    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] += 1  # MSE 1 -> 20 log10(255) dB
    np.testing.assert_allclose(dc.psnr(a, b), [dc.PSNR_MAX, 20 * math.log10(255)])
    copies = dc.degrade_copies(crops, seed=0)
    assert list(copies) == list(dc.DEGRADATIONS)
    for img in copies.values():
        assert img.shape == crops.shape and img.dtype == np.uint8
        assert 10 < dc.psnr(img, crops).mean() < 40  # really degraded, still a face
    np.testing.assert_array_equal(dc.degrade_copies(crops, seed=0)["noise"], copies["noise"])


class _Oracle(torch.nn.Module):
    """A "denoiser" that knows the clean faces (batch order = face order, one copy each)."""

    def __init__(self, clean: np.ndarray) -> None:
        super().__init__()
        from fiqa_sdk.train.ddpm import to_model_range

        self.register_buffer("clean", to_model_range(clean))

    def forward(self, x, t):
        return self.clean[: len(x)].to(x.dtype)


def test_denoiser_psnr_with_an_oracle(crops, arcface):
    from fiqa_bench import diffiqa_checks as dc

    rows = dc.denoiser_psnr(_Oracle(crops[:2]), crops[:2], ts=(5,), embedder=arcface)
    for r in rows:  # the sampler returns the oracle's x0: exact restoration
        assert r["psnr_restored_mean"] == dc.PSNR_MAX and r["frac_improved"] == 1.0
        assert 38 < r["psnr_noisy_mean"] < 44  # std 0.018 in [-1, 1]: ~2.3 grey levels
    assert [r["unet_passes"] for r in rows] == [6, 1]


def test_acceptance_structure(crops, micro_weights, free_head):
    from fiqa_bench import diffiqa_checks as dc

    res = dc.run_acceptance(weights=micro_weights, crops=crops, psnr_faces=2, quality_faces=3,
                            ts=(5, 50), n=1, regressors={"ediffiqa-free": str(free_head)},
                            threads=1)
    json.dumps(res)  # JSON-able
    assert [(r["t"], r["mode"]) for r in res["psnr"]] == [(5, "ddim"), (5, "one-step"),
                                                          (50, "ddim"), (50, "one-step")]
    for r in res["psnr"]:
        for k in ("psnr_noisy_mean", "psnr_noisy_median", "psnr_restored_mean",
                  "psnr_restored_median"):
            assert math.isfinite(r[k]) and 0 < r[k] <= dc.PSNR_MAX
        assert 0.0 <= r["frac_improved"] <= 1.0
    by_t = {(r["t"], r["mode"]): r for r in res["psnr"]}
    # the same x_t for the chain and the one-step restoration; more noise at t = 50
    assert by_t[5, "ddim"]["psnr_noisy_mean"] == by_t[5, "one-step"]["psnr_noisy_mean"]
    assert by_t[50, "ddim"]["psnr_noisy_mean"] < by_t[5, "ddim"]["psnr_noisy_mean"] - 5
    assert [r["scorer"] for r in res["quality"]] == ["diffiqa", "embedding-norm",
                                                     "flip-consistency", "ediffiqa-free"]
    for r in res["quality"]:
        assert set(r["frac_lower"]) == set(dc.DEGRADATIONS)
        assert all(0.0 <= v <= 1.0 for v in r["frac_lower"].values())
    assert set(res["acceptance"]["pass"]) == set(dc.DEGRADATIONS)
    assert res["diffiqa"]["n"] == 1 and res["diffiqa"]["unet_passes_per_face"] == 2 * 6
    assert res["machine"]["torch_threads"] == 1
    table = dc.markdown(res)
    assert "| 50 | one-step | 1 |" in table and "| ediffiqa-free |" in table


def test_aligned_lfw_faces(lfw_root, tmp_path):
    from fiqa_bench.diffiqa_checks import aligned_lfw_faces

    crops, files = aligned_lfw_faces(2, seed=0, lfw_root=lfw_root, cache_dir=tmp_path)
    assert crops.shape == (2, 112, 112, 3) and crops.dtype == np.uint8
    assert len(files) == 2 and all(Path(f).is_file() for f in files)
    again, files2 = aligned_lfw_faces(2, seed=0, lfw_root=lfw_root, cache_dir=tmp_path)  # cached
    np.testing.assert_array_equal(again, crops)
    assert files2 == files


def test_acceptance_script_quick(fake_lfw, micro_weights, tmp_path, capsys):
    mod = _load_script("diffiqa_acceptance")
    out = tmp_path / "acc.json"
    assert mod.main(["--weights", str(micro_weights), "--lfw", str(fake_lfw), "--cache",
                     str(tmp_path / "c"), "--faces", "2", "--ts", "5", "--n", "1",
                     "--baselines", "embedding-norm", "--out", str(out)]) == 0
    res = bench_results(out)
    assert res["benchmark"] == "diffiqa-acceptance" and len(res["files"]) == 2
    assert "Acceptance (diffiqa)" in capsys.readouterr().out


# -- runtime --------------------------------------------------------------------------------
def test_diffiqa_staged_matches_scorer(crops, micro_weights, arcface):
    import fiqa_sdk as fq
    from fiqa_bench.runtime import StageTimer, diffiqa_staged

    for fast in (False, True):
        sc = fq.create_scorer("diffiqa", weights=micro_weights, embedder=arcface, n=2, fast=fast,
                              batch_size=4)  # 1 face per chunk: the chunking is exercised
        tm = StageTimer()
        np.testing.assert_allclose(diffiqa_staged(sc, crops[:2], tm), sc.score(crops[:2]),
                                   atol=1e-6)
        assert set(tm.seconds) == {"forward", "backward", "quality"}
        assert all(v > 0 for v in tm.seconds.values())
        assert "perturb" not in vars(sc)  # the temporary override is gone


def test_runtime_structure(fake_lfw, micro_weights, free_head, monkeypatch):
    from fiqa_bench import runtime as rt
    from fiqa_sdk.gate import QualityGate

    filtered = []
    real_filter = QualityGate.filter

    def filter_spy(self, batch, **kw):
        filtered.append(len(batch))
        return real_filter(self, batch, **kw)

    monkeypatch.setattr(QualityGate, "filter", filter_spy)
    res = rt.run_runtime_bench(weights=micro_weights, regressors={"ediffiqa-free": str(free_head)},
                               images=2, repeats=1, gate_images=1, n=1, fast_n=1, threads=1,
                               lfw_root=fake_lfw)
    json.dumps(res)
    assert res["images"] == 2 and len(res["runs_seconds"]) == 1 and len(res["files"]) == 2
    assert all(res["pipeline"][f"{s}_ms"] > 0 for s in rt.PIPELINE_STAGES)
    rows = {r["scorer"]: r for r in res["scorers"]}
    assert list(rows) == ["diffiqa", "diffiqa-fast", "embedding-norm", "flip-consistency",
                          "ediffiqa-free", "ediffiqa-free (head)"]
    assert set(rows["diffiqa"]["stages_ms"]) == set(rt.DIFFIQA_STAGES)
    assert rows["diffiqa"]["unet_passes_per_face"] == 2 * 6
    assert rows["diffiqa-fast"]["unet_passes_per_face"] == 2
    assert set(rows["ediffiqa-free (head)"]["stages_ms"]) == {"head"}
    for r in rows.values():
        assert all(v > 0 for v in r["stages_ms"].values())
        assert r["scorer_ms"] > 0 and r["end_to_end_ms"] > r["scorer_ms"] and r["faces_per_s"] > 0
        if r["scorer"] != "ediffiqa-free (head)":
            assert r["gate_ms"] > 0
    assert "gate_ms" not in rows["ediffiqa-free (head)"]
    assert set(filtered) == {1}  # the gate sees gate_images images (warm-up and the run)
    ratios = {r["scorer"]: r for r in res["ratios"]}
    assert ratios["diffiqa"]["speedup_vs_diffiqa"] == pytest.approx(1.0)
    assert all(r["speedup_vs_diffiqa"] > 0 for r in ratios.values())
    assert res["machine"]["onnx_threads"] == 1 and "loadavg_end" in res["machine"]
    assert torch.get_num_threads() == 1  # restored (the fixture's setting)
    table = rt.markdown(res)
    assert "| diffiqa: backward |" in table and "speed-up vs DifFIQA" in table


def test_runtime_int8_rows(fake_lfw, micro_weights, free_head):
    """``regressor_backends`` with onnxruntime-int8: a row where an int8 graph ships (the
    shipped ediffiqa), none for a regressor without one; unknown backends are refused."""
    from fiqa_bench import runtime as rt
    from fiqa_sdk.quality.ediffiqa import shipped_weights

    regs = {"ediffiqa": str(shipped_weights("ediffiqa")), "ediffiqa-free": str(free_head)}
    res = rt.run_runtime_bench(weights=micro_weights, regressors=regs, images=1, repeats=1,
                               gate=False, n=1, fast_n=1, threads=1, lfw_root=fake_lfw,
                               regressor_backends=("torch", "onnxruntime-int8"))
    names = {r["scorer"] for r in res["scorers"]}
    assert {"ediffiqa", "ediffiqa@onnxruntime-int8", "ediffiqa-free"} <= names
    assert "ediffiqa-free@onnxruntime-int8" not in names
    from fiqa_sdk.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="regressor backends"):
        rt.run_runtime_bench(weights=micro_weights, regressors=regs, images=1, repeats=1,
                             gate=False, n=1, fast_n=1, threads=1, lfw_root=fake_lfw,
                             regressor_backends=("tvm",))


def test_runtime_cli_and_script(fake_lfw, micro_weights, tmp_path, capsys):
    from fiqa_bench.cli import main as bench_main

    args = ["--weights", str(micro_weights), "--lfw", str(fake_lfw), "--images", "1",
            "--repeats", "1", "--n", "1", "--fast-n", "1", "--threads", "1", "--no-gate"]
    # --quick: its sizes, where the options above do not give them (test_runtime_quick_mode)
    assert bench_main(["runtime", "--quick", *args, "--out", str(tmp_path / "cli")]) == 0
    res = json.loads((tmp_path / "cli" / "runtime.json").read_text())
    assert res["command"].startswith("fiqa-bench runtime") and res["gate_images"] == 0
    assert res["quick"] is True and res["images"] == 1
    assert (tmp_path / "cli" / "runtime.md").read_text().startswith("1 LFW images")
    mod = _load_script("runtime")
    assert mod.main([*args, "--out", str(tmp_path / "rt.json")]) == 0
    assert bench_results(tmp_path / "rt.json")["benchmark"] == "runtime"
    assert "speed-up vs DifFIQA" in capsys.readouterr().out
    assert bench_main(["runtime", "--regressor", "bogus=x", "--out", str(tmp_path)]) == 1


def test_runtime_quick_mode():
    """``--quick`` of the breakdown benchmark: its sizes (the run of the smoke test,
    ``fiqa-bench run runtime --quick``: the shipped denoiser, LFW; ``fiqa-bench runtime``
    parses the same options, test_runtime_cli_and_script)."""
    from fiqa_bench import runtime as rt

    run = quick_run("runtime")
    assert run.exit_code == 0
    res = run.results
    assert res["quick"] is True and res["images"] == rt.QUICK_IMAGES
    assert res["repeats"] == rt.QUICK_REPEATS and res["gate_images"] == rt.QUICK_GATE_IMAGES
    rows = {r["scorer"]: r for r in res["scorers"]}
    # t = 5 chain steps + the restoring pass, for each of n copies and of their mirrors
    assert rows["diffiqa"]["unet_passes_per_face"] == 2 * 6 * rt.QUICK_N
    assert rows["diffiqa"]["gate_ms"] > 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_regressors_lfw_quick(lfw_root):
    """``fiqa-bench run regressors_lfw --quick``: the shipped regressors and three baselines on
    200 real LFW pairs, end to end (detection, alignment, embeddings, EDC)."""
    run = quick_run("regressors_lfw")  # $FIQA_LFW, the session's cache ($FIQA_CACHE/lfw)
    assert run.exit_code == 0
    res = run.results["lfw-pairs-arcface"]
    assert res["n_mated"] == 100 and res["n_nonmated"] == 100
    rows = {r["scorer"]: r for r in res["results"]}
    assert set(rows) == {"ediffiqa", "diffiqa-r", "ediffiqa-free", "random", "inter-eye",
                         "embedding-norm"}
    assert rows["ediffiqa"]["setting"] == "same-model"
    for r in rows.values():
        assert math.isfinite(r["fnmr0"]) and r["n_mated"] == 100
    assert "| ediffiqa |" in run.stdout


# -- DifFIQA settings / eq. 7 terms ---------------------------------------------------------
def test_diffiqa_settings_terms_match_the_scorer(crops, micro_weights, arcface):
    """The per-term decomposition of the diffiqa_settings experiment gives back the scorer's own
    eq. 7 quality (and flip-consistency's cosine) for the chain and the one-step mode."""
    import fiqa_sdk as fq

    mod = _load_script("diffiqa_settings")
    assert mod.parse_setting("fast:20:2") == ("fast", 20, 2)
    for bad in ("slow:5:1", "chain:0:1", "chain:5:0", "chain:5"):
        with pytest.raises(ValueError):
            mod.parse_setting(bad)
    flip = fq.create_scorer("flip-consistency", embedder=arcface).score(crops)
    for fast in (False, True):
        sc = fq.create_scorer("diffiqa", weights=micro_weights, embedder=arcface, t=3, n=2,
                              fast=fast, batch_size=8)
        cos = mod.term_cosines(sc, crops, chunk=3)
        q = mod.combine(cos)
        assert set(q) == set(mod.TERMS)
        np.testing.assert_allclose(q["eq7"], sc.score(crops), atol=1e-5)
        np.testing.assert_allclose(q["flip"], flip, atol=1e-5)
        np.testing.assert_allclose(q["no-flip"], (cos["t"] + cos["hat"]) / 2)


def test_regressors_lfw_ensemble(astronaut, astronaut_face, tmp_path):
    """``--ensemble NAME=A,B``: a ``RegressorEnsemble`` of the members (the shipped code path)
    scoring their mean, cached under a key of its members' weights; bad member lists are usage
    errors (an ensemble file as a member among them)."""
    regressors_lfw = load_script("regressors_lfw")

    import fiqa_sdk as fq
    from fiqa_sdk.errors import InvalidArgumentError
    from fiqa_sdk.eval.features import scorer_key
    from fiqa_bench.stem import SharedStem, StemRegressorScorer

    crops = np.asarray(graded_crops(astronaut, astronaut_face, 6, seed=3))
    a, b = fq.create_scorer("diffiqa-r"), fq.create_scorer("ediffiqa-free")
    for stem in (None, SharedStem(15)):
        ens = regressors_lfw.ensemble_scorer("mean2", [a, b], stem)
        np.testing.assert_allclose(ens.score(crops), (a.score(crops) + b.score(crops)) / 2,
                                   atol=1e-5)
        assert ens.name == "mean2" and ens.members == 2 and ens.fr_model == a.fr_model
        assert isinstance(ens, StemRegressorScorer) == (stem is not None)
    assert scorer_key(ens) != scorer_key(regressors_lfw.ensemble_scorer("mean2", [a, a]))
    with pytest.raises(InvalidArgumentError):  # the shipped ediffiqa is itself an ensemble
        regressors_lfw.ensemble_scorer("x", [fq.create_scorer("ediffiqa"), a])
    for bad in ("x=ediffiqa", "x=ediffiqa,nope", "ediffiqa,diffiqa-r", "x=ediffiqa,diffiqa-r"):
        rc = regressors_lfw.main([
            "--ensemble", bad, "--out", str(tmp_path / "o"), "--protocols", "lfw-pairs",
            "--regressor", f"ediffiqa={fq.quality.ediffiqa.shipped_weights('ediffiqa')}",
            "--regressor", f"diffiqa-r={fq.quality.ediffiqa.shipped_weights('diffiqa-r')}"])
        assert rc == 2  # a usage error
