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
    from fiqa_sdk.train.api import load_backbone_factory

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
    from fiqa_sdk.train.api import ModuleEmbedder, load_backbone_factory
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


# -- insightface-format ONNX backbones (OnnxGraphModule) ------------------------------------
def _tiny_onnx(path, op="PRelu"):
    """A small FR-shaped ONNX graph: Conv (asymmetric pads) -> BN -> PRelu -> MaxPool -> Conv ->
    GlobalAveragePool -> Flatten -> Gemm, (N, 3, 112, 112) -> (N, 16)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)

    def init(name, *shape, scale=0.2):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("c1.w", 8, 3, 3, 3), init("c1.b", 8), init("bn.s", 8), init("bn.b", 8),
             init("bn.m", 8), numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "bn.v"),
             numpy_helper.from_array(rng.uniform(0.05, 0.4, (8, 1, 1)).astype(np.float32), "pr.a"),
             init("c2.w", 8, 1, 3, 3), init("fc.w", 16, 8), init("fc.b", 16)]
    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["h1"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[0, 0, 1, 1]),
        helper.make_node("BatchNormalization", ["h1", "bn.s", "bn.b", "bn.m", "bn.v"], ["h2"]),
        helper.make_node(op, ["h2", "pr.a"] if op == "PRelu" else ["h2"], ["h3"]),
        helper.make_node("MaxPool", ["h3"], ["h4"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["h4", "c2.w"], ["h5"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         group=8),
        helper.make_node("GlobalAveragePool", ["h5"], ["h6"]),
        helper.make_node("Flatten", ["h6"], ["h7"], axis=1),
        helper.make_node("Gemm", ["h7", "fc.w", "fc.b"], ["emb"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_fr", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["n", 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_graph_module_equals_onnxruntime(tmp_path):
    import onnxruntime as ort

    from fiqa_sdk.nets.onnx_graph import OnnxGraphModule

    path = _tiny_onnx(tmp_path / "tiny.onnx")
    m = OnnxGraphModule(path).eval()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 112, 112)).astype(np.float32)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(x)).numpy(), ref, atol=1e-4)
    # trainable: every float weight gets a gradient; BN statistics are buffers, not parameters
    m.train()
    m(torch.from_numpy(x)).square().sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    assert {n for n, _ in m.named_buffers()} == {"w_bn_m", "w_bn_v"}
    with pytest.raises(WeightsError, match="Softplus"):
        OnnxGraphModule(_tiny_onnx(tmp_path / "bad.onnx", op="Softplus"))
    with pytest.raises(WeightsError, match="not found"):
        OnnxGraphModule(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="not a readable ONNX model"):
        OnnxGraphModule(tmp_path / "junk.onnx")


def test_onnx_graph_module_runs_the_shipped_arcface(astronaut, astronaut_face, arcface):
    """The insightface w600k_mbf graph as a torch module gives ArcFace's embeddings."""
    from conftest import graded_crops
    from fiqa_sdk.embed.arcface import default_model_path
    from fiqa_sdk.train.api import ModuleEmbedder, load_backbone_factory

    crops = graded_crops(astronaut, astronaut_face, 4, period=2, jitter=3.0)
    m = load_backbone_factory(str(default_model_path()))
    e = ModuleEmbedder(m, "onnx").embed_raw(crops)
    ref = arcface.embed_raw(crops)
    cos = np.sum(e * ref, 1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-4)
    with pytest.raises(InvalidArgumentError, match="not found"):
        load_backbone_factory("/nonexistent/model.onnx")


def test_distill_on_an_onnx_backbone_and_load_it_back(tmp_path):
    from fiqa_sdk.nets.onnx_graph import OnnxGraphModule
    from fiqa_sdk.quality.base import model_digest
    from fiqa_sdk.quality.ediffiqa import RegressorScorer
    from fiqa_sdk.train.api import ModuleEmbedder, load_backbone_factory
    from fiqa_sdk.train.distill import DistillConfig, distill

    path = _tiny_onnx(tmp_path / "tiny.onnx")
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, (12, 112, 112, 3), dtype=np.uint8)
    backbone = load_backbone_factory(str(path))
    digest = model_digest(backbone)
    emb = ModuleEmbedder(backbone, f"custom-{digest}")
    e, ef = emb.embed_raw(faces), emb.embed_raw(np.ascontiguousarray(faces[:, :, ::-1]))
    meta = {"backbone": {"arch": "custom", "factory": str(path), "base_digest": digest}}
    cfg = DistillConfig(epochs=1, batch_size=6, val_fraction=0.0, min_count=1, p=0.5)
    summary = distill(faces, np.arange(12) // 3, rng.random(12), e, ef, backbone, tmp_path / "r",
                      cfg, meta=meta)
    scorer = RegressorScorer(summary["weights"], backbone=OnnxGraphModule(path))
    q = scorer.score(faces[:3])
    assert q.shape == (3,) and np.isfinite(q).all()
