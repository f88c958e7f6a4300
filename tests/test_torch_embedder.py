"""One way to run a torch FR module on aligned crops (fiqa_sdk.embed.base.run_torch_module) and
one [-1, 1] normalisation per rounding (fiqa_sdk._preprocess): every wrapper gives the same
numbers as the formula it replaced. A tiny random module, no model or data is read."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fiqa_sdk._preprocess import insightface_blob, to_blob, to_model_range  # noqa: E402
from fiqa_sdk.embed import CallableEmbedder, TorchModuleEmbedder, create_embedder  # noqa: E402
from fiqa_sdk.embed.base import run_torch_module  # noqa: E402
from fiqa_sdk.errors import InvalidTypeError  # noqa: E402


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Dropout(0.5),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 6))


@pytest.fixture
def crops():
    return np.random.default_rng(1).integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)


def test_run_torch_module_is_the_arcface_convention(crops):
    net = _net().eval()
    with torch.no_grad():
        ref = net((torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 127.5)
        ref_flip = net(to_model_range(crops[:, :, ::-1]))
    got = run_torch_module(net, crops, batch_size=2)
    assert got.dtype == torch.float32 and got.shape == (5, 6)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    assert torch.equal(run_torch_module(net, crops, batch_size=2, flip=True),
                       run_torch_module(net, np.ascontiguousarray(crops[:, :, ::-1]), batch_size=2))
    torch.testing.assert_close(run_torch_module(net, crops, flip=True), ref_flip, rtol=0, atol=1e-5)
    assert net.training is False


def test_wrappers_agree_and_only_the_module_embedder_sets_eval(crops):
    from fiqa_sdk.train.api import ModuleEmbedder

    net = _net().eval()
    ref = run_torch_module(net, crops).numpy()
    for emb in (TorchModuleEmbedder(_net().train(), "t", batch_size=3),
                ModuleEmbedder(_net().train(), "m")):
        np.testing.assert_array_equal(emb.embed_raw(crops), ref)
        assert emb.module.training is False and emb.dim == 6
    wrapped = _net().eval()
    ce = create_embedder(wrapped)
    assert isinstance(ce, CallableEmbedder)
    np.testing.assert_array_equal(ce.embed_raw(crops), ref)
    wrapped.train()  # CallableEmbedder leaves the user's module in its mode
    ce.embed_raw(crops[:1])
    assert wrapped.training is True
    assert TorchModuleEmbedder(net).embed_raw(crops[:0]).shape == (0, 0)
    with pytest.raises(InvalidTypeError):
        TorchModuleEmbedder(lambda x: x)


def test_the_two_roundings(crops):
    old = np.ascontiguousarray(((crops.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2))
    new = insightface_blob(crops)
    assert new.dtype == np.float32 and new.flags.c_contiguous
    np.testing.assert_array_equal(new, old)  # ArcFaceEmbedder's input, bit for bit
    np.testing.assert_array_equal(to_blob(crops), to_model_range(crops).numpy())
    np.testing.assert_allclose(new, to_blob(crops), rtol=0, atol=1e-7)


def test_faces_to_tensor_is_unchanged(crops):
    from fiqa_sdk.nets.mobilefacenet import faces_to_tensor

    old = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    new = faces_to_tensor(crops)
    assert torch.equal(new, old) and new.stride() == old.stride()
