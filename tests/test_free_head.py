"""``ediffiqa-free`` v2: the norm-residual head (fiqa_sdk.train.free_head)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fiqa_sdk as fq
from conftest import graded_crops
from fiqa_sdk.quality.ediffiqa import NormResidualHead, make_head

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_norm_residual_head_starts_as_the_norm():
    torch.manual_seed(0)
    head = make_head("norm-mlp", 16, 8)
    assert isinstance(head, NormResidualHead)
    e = torch.randn(50, 16) * torch.rand(50, 1) * 10
    q = head(e).squeeze(-1)
    np.testing.assert_allclose(q.detach().numpy(), torch.log(e.norm(dim=1)).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="norm-mlp"):
        make_head("nope")


def test_train_head_keeps_the_norm_when_labels_are_the_norm():
    from fiqa_sdk.train.free_head import train_head

    rng = np.random.default_rng(0)
    n = 400
    d = rng.normal(size=(2 * n, 512)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    norms = rng.uniform(5, 30, 2 * n).astype(np.float32)
    e = d * norms[:, None]
    feats = {"ids": np.repeat(np.arange(n // 10), 10), "emb_orig": e[:n], "emb_deg": e[n:],
             "label_orig": np.log(norms[:n]), "label_deg": np.log(norms[n:])}
    head, hist, stats = train_head(feats, epochs=3)
    assert hist[-1]["val_spearman"] > 0.99 and hist[-1]["val_spearman_norm"] > 0.99
    assert stats["label_std"] > 0


def test_norm_mlp_regressor_round_trip_and_onnxruntime(tmp_path, astronaut, astronaut_face):
    """A saved norm-mlp regressor loads, scores like the embedding norm at init (same ranking),
    and the onnxruntime backend agrees with torch."""
    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.quality.ediffiqa import QualityRegressor, save_regressor

    model = QualityRegressor(load_mobilefacenet(), head="norm-mlp", hidden=32)
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    path = save_regressor(model, tmp_path / "ediffiqa_free_mbf.safetensors",
                          {"method": "ediffiqa-free", "head": {"dim": 512, "hidden": 32},
                           "backbone": {"arch": "mobilefacenet", "base": "w600k_mbf.onnx"}},
                          base_state=base)
    crops = graded_crops(astronaut, astronaut_face, 4, jitter=3.0)
    s = fq.create_scorer("ediffiqa-free", weights=path)
    q = s.score(crops)
    norm = fq.create_scorer("embedding-norm").score(crops)
    np.testing.assert_allclose(q, np.log(norm), atol=2e-3)
    o = fq.create_scorer("ediffiqa-free", weights=path, backend="onnxruntime", threads=1)
    np.testing.assert_allclose(o.score(crops), q, atol=1e-3)
