"""Distilling on a user-supplied FR backbone (``fiqa train ediffiqa --backbone MODULE:FACTORY``):
the factory spec, the target embeddings from the module itself, and loading the result back."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from fiqa_sdk.errors import InvalidArgumentError, WeightsError

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FACTORY = textwrap.dedent('''
    import torch
    from torch import nn

    class TinyFR(nn.Module):
        """(N, 3, 112, 112) in [-1, 1] -> (N, 16) raw embeddings."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 5, stride=4)
            self.fc = nn.Linear(8 * 27 * 27, 16)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    def make():
        torch.manual_seed(7)  # "trained weights": the same module on every call
        return TinyFR()

    def not_a_module():
        return 42
''')


@pytest.fixture(scope="module")
def factory_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "my_backbone.py"
    path.write_text(FACTORY)
    return path


def test_factory_spec_forms_and_errors(factory_file, monkeypatch):
    from fiqa_sdk.train.cli import load_backbone_factory

    a = load_backbone_factory(f"{factory_file}:make")
    monkeypatch.syspath_prepend(str(factory_file.parent))
    b = load_backbone_factory("my_backbone:make")
    assert isinstance(a, torch.nn.Module) and not a.training
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    for spec, match in [("my_backbone", "MODULE:FACTORY"), (":make", "MODULE:FACTORY"),
                        ("no_such_module_xyz:make", "cannot import"),
                        (f"{factory_file.parent / 'nope.py'}:make", "not found"),
                        ("my_backbone:missing", "no callable"),
                        ("my_backbone:not_a_module", "not a torch module")]:
        with pytest.raises(InvalidArgumentError, match=match):
            load_backbone_factory(spec)


def test_distill_on_a_custom_backbone_and_load_it_back(factory_file, tmp_path):
    from fiqa_sdk.quality.base import model_digest
    from fiqa_sdk.quality.ediffiqa import RegressorScorer, load_regressor
    from fiqa_sdk.train.cli import ModuleEmbedder, load_backbone_factory
    from fiqa_sdk.train.distill import DistillConfig, distill

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (16, 112, 112, 3), dtype=np.uint8)
    ids = np.arange(16) // 4
    labels = rng.random(16)
    backbone = load_backbone_factory(f"{factory_file}:make")
    digest = model_digest(backbone)
    emb = ModuleEmbedder(backbone, f"custom-{digest}")
    e = emb.embed_raw(faces)
    ef = emb.embed_raw(np.ascontiguousarray(faces[:, :, ::-1]))
    assert e.shape == (16, 16) and not np.allclose(e, ef)
    with torch.no_grad():  # the target embeddings are the module's own raw outputs
        ref = backbone(torch.from_numpy((faces.astype(np.float32) - 127.5) / 127.5)
                       .permute(0, 3, 1, 2))
    np.testing.assert_allclose(e, ref.numpy(), atol=1e-5)
    meta = {"backbone": {"arch": "custom", "factory": f"{factory_file}:make",
                         "base_digest": digest}, "target_model": "custom:my_backbone"}
    cfg = DistillConfig(epochs=2, batch_size=8, val_fraction=0.0, min_count=1, p=0.5)
    summary = distill(faces, ids, labels, e, ef, backbone, tmp_path, cfg, meta=meta)
    path = summary["weights"]

    with pytest.raises(WeightsError, match="pass that module as backbone="):
        load_regressor(path)
    with pytest.raises(WeightsError, match="not the one these weights were distilled from"):
        load_regressor(path, backbone=torch.nn.Sequential(torch.nn.Linear(2, 2)))
    scorer = RegressorScorer(path, backbone=load_backbone_factory(f"{factory_file}:make"))
    assert scorer.fr_model == "custom:my_backbone"
    q = scorer.score(faces[:4])
    again = RegressorScorer(path, backbone=load_backbone_factory(f"{factory_file}:make"))
    np.testing.assert_array_equal(q, again.score(faces[:4]))
    assert q.shape == (4,) and np.isfinite(q).all()
    # the trained backbone differs from the base (fine-tuned whole: it has no split())
    assert not torch.equal(scorer.model.backbone.fc.weight, load_backbone_factory(
        f"{factory_file}:make").fc.weight)
    with pytest.raises(WeightsError, match="do not pass backbone="):
        RegressorScorer(None, backbone=backbone)
