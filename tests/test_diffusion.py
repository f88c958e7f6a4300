"""DifFIQA's diffusion parts: schedule, sampler, UNet, degradations, training, scorer."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fiqa_sdk.diffusion.degrade import degrade, degrade_batch
from fiqa_sdk.diffusion.schedule import (
    Schedule,
    cosine_alpha_bar,
    degradation_weight,
    stochastic_steps,
    time_pairs,
)
from fiqa_sdk.diffusion.unet import PRESETS, UNet, count_parameters
from fiqa_sdk.errors import WeightsError

from conftest import MICRO_UNET as MICRO  # noqa: E402
from conftest import graded_crops  # noqa: E402


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def faces(astronaut, astronaut_face) -> np.ndarray:
    """Four aligned crops of a real face: the astronaut, with slightly jittered landmarks."""
    return graded_crops(astronaut, astronaut_face, 4, jitter=3.0)


# -- schedule ---------------------------------------------------------------------------
def test_cosine_schedule_values():
    ab = cosine_alpha_bar(1000)
    assert ab.shape == (1000,)
    assert np.all(np.diff(ab) < 0)
    assert 0.9999 < ab[0] < 1.0
    assert ab[-1] < 1e-6
    f = lambda u: math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for i in (0, 4, 99, 499, 900):  # no beta clipping there: alpha_bar[i] = f(i + 1) / f(0)
        assert ab[i] == pytest.approx(f(i + 1) / f(0), rel=1e-9)
    assert degradation_weight(0) == 0.0
    assert degradation_weight(1000) == pytest.approx(1.0)
    assert degradation_weight(100) == pytest.approx(math.sin(0.05 * math.pi))


def test_q_sample_statistics():
    sched = Schedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((64, 3, 32, 32), 0.5)
    noise = torch.randn(x0.shape, generator=g)
    for t in (5, 500):
        xt = sched.q_sample(x0, t, noise)
        ab = sched.alpha_bar64[t]
        assert xt.mean().item() == pytest.approx(math.sqrt(ab) * 0.5, abs=0.01)
        assert xt.std().item() == pytest.approx(math.sqrt(1 - ab), rel=0.02)
    # per-sample t
    t = torch.tensor([0, 999])
    xt = sched.q_sample(x0[:2], t, noise[:2])
    assert xt[0].std() < 0.01 and xt[1].std() > 0.9


def test_time_pairs_official():
    assert time_pairs(5) == [(4, 3), (3, 2), (2, 1), (1, 0), (0, 0), (0, -1)]
    assert stochastic_steps(5) == 4 and stochastic_steps(5, eta=0.0) == 0
    for t in range(1, 40):  # the official linspace construction, truncated toward zero
        times = list(reversed(torch.linspace(-1, t - 1, steps=t + 2).int().tolist()))
        assert time_pairs(t) == list(zip(times[:-1], times[1:]))
    with pytest.raises(ValueError):
        time_pairs(0)


def test_ddim_with_perfect_predictor_recovers_x0():
    sched = Schedule()
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand((2, 3, 16, 16), generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    oracle = lambda x, t: x0  # noqa: E731
    for t in (1, 5, 20):
        xt = sched.q_sample(x0, t, eps)
        out = sched.restore(oracle, xt, t, eta=1.0)
        assert torch.allclose(out, x0, atol=1e-6)
    # deterministic step (eta = 0): the next sample is exactly x0 noised to t_next with eps
    xt = sched.q_sample(x0, 10, eps)
    nxt = sched.ddim_step(xt, x0, 10, 7, eta=0.0)
    assert torch.allclose(nxt, sched.q_sample(x0, 7, eps), atol=1e-5)
    assert torch.allclose(sched.eps_from_x0(xt, 10, x0), eps, atol=1e-3)
    with pytest.raises(ValueError, match="noise"):
        sched.ddim_step(xt, x0, 10, 7, eta=1.0)


# -- UNet ---------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_unet_presets_shapes(preset):
    torch.manual_seed(0)
    model = UNet(preset).eval()
    n = count_parameters(model)
    assert {"tiny": (0.5e6, 1.5e6), "small": (2e6, 6e6), "base": (8e6, 16e6)}[preset][0] < n
    assert n < {"tiny": (0.5e6, 1.5e6), "small": (2e6, 6e6), "base": (8e6, 16e6)}[preset][1]
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 112, 112), torch.tensor([3]))
    assert y.shape == (1, 3, 112, 112) and torch.isfinite(y).all()


def test_unet_time_conditioning():
    torch.manual_seed(0)
    model = UNet("tiny", **MICRO).eval()
    for p in model.parameters():  # zero-initialised output convs would hide t
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        assert not torch.allclose(model(x, torch.tensor([0])), model(x, torch.tensor([90])))


# -- degradations -------------------------------------------------------------------------
def test_degrade_is_seeded_and_degrades(faces):
    from skimage.metrics import peak_signal_noise_ratio

    x = faces[0]
    a, b = degrade(x, 7), degrade(x, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == x.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, degrade(x, 8))
    psnr = [peak_signal_noise_ratio(x, degrade(x, s)) for s in range(12)]
    assert np.median(psnr) < 30 and max(psnr) < 40
    f = degrade(x.astype(np.float32) / 255, 3)
    assert f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
    batch = degrade_batch(faces, 0)
    assert batch.shape == faces.shape and np.array_equal(batch, degrade_batch(faces, 0))


# -- training -----------------------------------------------------------------------------
def _cfg(**kw):
    from fiqa_sdk.train.ddpm import TrainConfig

    base = dict(preset="tiny", unet=MICRO, steps=1000, batch_size=4, checkpoint_every=10**6,
                val_size=4, val_t=(0, 20, 60), ema_start=10**6, log_every=10**6)
    return TrainConfig(**{**base, **kw})


def test_training_lowers_loss(faces, tmp_path):
    from fiqa_sdk.train.ddpm import DDPMTrainer

    tr = DDPMTrainer(faces, tmp_path, _cfg(lr=2e-3))
    before = tr.validate()["mean"]
    losses = [tr.train_step()[0] for _ in range(10)]
    after = tr.validate()["mean"]
    assert after < 0.5 * before, (before, after, losses)
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


def test_checkpoint_resume_is_exact(faces, tmp_path):
    from fiqa_sdk.train.ddpm import DDPMTrainer, train_ddpm

    small = dict(batch_size=2, ema_start=1, ema_every=1, checkpoint_every=2, val_size=1, val_t=(10,))
    cfg = _cfg(steps=4, **small)
    straight = train_ddpm(faces, tmp_path / "a", cfg)
    assert straight["step"] == 4
    tr = DDPMTrainer(faces, tmp_path / "b", _cfg(steps=2, **small))
    tr.run()
    resumed = train_ddpm(faces, tmp_path / "b", cfg, resume=True)
    assert resumed["step"] == 4
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for key in ("model", "ema"):
        for name, v in a[key].items():
            assert torch.equal(v, b[key][name]), (key, name)
    la = (tmp_path / "a" / "loss.csv").read_text().splitlines()
    lb = (tmp_path / "b" / "loss.csv").read_text().splitlines()
    assert [r.split(",")[:2] for r in la] == [r.split(",")[:2] for r in lb] and len(la) == 5
    meta = json.loads((tmp_path / "a" / "diffiqa_unet.json").read_text())
    assert meta["steps"] == 4 and meta["complete"] and len(meta["sha256"]) == 64
    with pytest.raises(FileExistsError):
        train_ddpm(faces, tmp_path / "a", cfg)


# -- the scorer ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def micro_weights(tmp_path_factory):
    from fiqa_sdk.train.ddpm import export_weights

    torch.manual_seed(0)
    return export_weights(UNet("tiny", **MICRO), tmp_path_factory.mktemp("w") / "unet.safetensors")


def test_diffiqa_scorer_deterministic_and_batch_independent(faces, micro_weights, arcface):
    import fiqa_sdk as fq

    s = fq.create_scorer("diffiqa", weights=micro_weights, embedder=arcface, n=2, batch_size=4)
    assert s.unet_passes_per_face == 4 * 6
    q = s.score(faces[:3])
    assert q.shape == (3,) and q.dtype == np.float64
    assert np.all((-1 <= q) & (q <= 1))
    again = fq.create_scorer("diffiqa", weights=micro_weights, embedder=arcface, n=2, batch_size=16)
    np.testing.assert_allclose(again.score(faces[[2, 0, 1]]), q[[2, 0, 1]], atol=1e-5)
    np.testing.assert_allclose(s.score(faces[1]), q[1:2], atol=1e-5)  # alone, another chunking
    assert s.unet_batch == 8  # the CPU default
    for ub in (1, 3, 64):  # 4 copies per chunk split into passes of 1, 3 + 1, 4: same scores
        sub = fq.create_scorer("diffiqa", weights=micro_weights, embedder=arcface, n=2,
                               batch_size=4, unet_batch=ub)
        np.testing.assert_allclose(sub.score(faces[:3]), q, atol=1e-5)
    with pytest.raises(ValueError, match="unet_batch"):
        fq.create_scorer("diffiqa", weights=micro_weights, embedder=arcface, unet_batch=0)
    from fiqa_sdk.eval.features import scorer_key  # runtime knobs share one bench cache

    assert scorer_key(sub) == scorer_key(s) != scorer_key(other_n := fq.create_scorer(
        "diffiqa", weights=micro_weights, embedder=arcface, n=3))
    assert other_n.n == 3
    other = fq.create_scorer("diffiqa", weights=micro_weights, embedder=arcface, n=2, seed=1)
    assert abs(other.score(faces[0])[0] - q[0]) > 1e-6
    # at t = 5 the noisy copies are nearly the input (noise std ~0.018 of the [-1, 1] range)
    x_t, x_hat = s.perturb(faces[:1])
    assert x_t.shape == x_hat.shape == (1, 4, 112, 112, 3)
    assert np.abs(x_t[0, 0].astype(int) - faces[0]).mean() < 3
    assert np.abs(x_t[0, 2].astype(int) - faces[0, :, ::-1]).mean() < 3


def test_diffiqa_fast_mode(faces, micro_weights, arcface):
    import fiqa_sdk as fq

    s = fq.create_scorer("diffiqa", weights=micro_weights, embedder=arcface, fast=True)
    assert s.n == 2 and s.unet_passes_per_face == 4
    q = s.score(faces[:2])
    assert q.shape == (2,) and np.all(np.abs(q) <= 1)
    np.testing.assert_allclose(s.score(faces[:2]), q, atol=1e-6)


def test_diffiqa_weights_errors(micro_weights, tmp_path, monkeypatch):
    import fiqa_sdk as fq
    from fiqa_sdk.quality import diffiqa

    monkeypatch.setattr(diffiqa, "DEFAULT_WEIGHTS", tmp_path / "diffiqa_unet.safetensors")
    with pytest.raises(WeightsError, match="not trained/shipped yet.*weights="):
        fq.create_scorer("diffiqa")
    with pytest.raises(WeightsError, match="not found"):
        fq.create_scorer("diffiqa", weights=tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(micro_weights.read_bytes())
    with pytest.raises(WeightsError, match="sidecar"):
        fq.create_scorer("diffiqa", weights=bad)
    meta = json.loads(micro_weights.with_suffix(".json").read_text())
    bad.with_suffix(".json").write_text(json.dumps({**meta, "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="sha256"):
        fq.create_scorer("diffiqa", weights=bad)
    assert "diffiqa" in fq.list_scorers()


def test_shipped_denoiser_reproduces_recorded_scores(faces, arcface):
    """The shipped weights load (sha256-checked) and give the scores recorded when they shipped
    (astronaut crop, seed 0); a different model or sampler changes these in the 3rd decimal."""
    import fiqa_sdk as fq
    from fiqa_sdk.quality.diffiqa import DEFAULT_WEIGHTS

    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert meta["parameters"] == 843267 and meta["training_stages"][-1]["t_max"] == 10
    full = fq.create_scorer("diffiqa", n=2, seed=0, embedder=arcface)
    fast = fq.create_scorer("diffiqa", fast=True, seed=0, embedder=arcface)
    assert full.score(faces[0])[0] == pytest.approx(0.977998, abs=5e-4)
    assert fast.score(faces[0])[0] == pytest.approx(0.979057, abs=5e-4)
