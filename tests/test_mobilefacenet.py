"""The torch MobileFaceNet against the w600k_mbf ONNX it is ported from, on real faces."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import fiqa_sdk as fq
from fiqa_sdk.errors import WeightsError
from fiqa_sdk.nets import MobileFaceNet, faces_to_tensor, load_mobilefacenet

# measured on astronaut + 20 LFW faces: 1 - cos <= 1.2e-7, max |raw diff| 5.2e-6 (|raw| <= 4.8)
MIN_COS = 0.99999
RAW_ATOL = 1e-4


@pytest.fixture(scope="module")
def mbf() -> MobileFaceNet:
    return load_mobilefacenet()


@pytest.fixture(scope="module")
def aligner():
    return fq.FacePipeline("retinaface", embedder=None, face_policy="central")


@pytest.fixture(scope="module")
def astronaut_faces(astronaut, aligner) -> np.ndarray:
    """Her aligned face, mirrored, and darkened: (3, 112, 112, 3) uint8 RGB."""
    (r,) = aligner.process(astronaut, color="rgb")
    assert r.ok
    face = r.aligned
    return np.stack([face, face[:, ::-1], (face * 0.4).astype(np.uint8)])


def _torch_raw(model: MobileFaceNet, faces: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(faces_to_tensor(faces)).numpy()


def _check_parity(model, arcface, faces):
    raw = _torch_raw(model, faces)
    assert raw.shape == (len(faces), 512) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, arcface.embed_raw(faces), atol=RAW_ATOL, rtol=0)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    cos = np.sum(unit * arcface.embed(faces), axis=1)
    assert cos.min() >= MIN_COS, cos
    return unit


def test_parity_astronaut(mbf, arcface, astronaut_faces):
    assert not mbf.training  # loaded in eval mode: the final BatchNorm1d uses running stats
    _check_parity(mbf, arcface, astronaut_faces)


@pytest.mark.lfw
def test_parity_lfw_and_identity_ranking(mbf, arcface, aligner, lfw_root):
    people = ["Aaron_Peirsol", "Angelina_Jolie", "Abdullah_Gul", "Adam_Sandler"]
    paths = [lfw_root / "images" / p / f"{p}_{i:04d}.jpg" for p in people for i in (1, 2)]
    faces = []
    for p in paths:
        (r,) = aligner.process(p)
        assert r.ok, p
        faces.append(r.aligned)
    unit = _check_parity(mbf, arcface, np.stack(faces))
    sim = unit @ unit.T
    same = np.array([sim[2 * k, 2 * k + 1] for k in range(len(people))])
    ident = np.repeat(np.arange(len(people)), 2)
    different = sim[ident[:, None] != ident[None, :]]
    assert same.min() > different.max(), (same, different.max())


def test_train_mode_normalises_with_batch_statistics(astronaut_faces):
    """Why parity needs eval mode: in train mode the head's BatchNorm1d uses the batch's
    statistics (and updates its running ones)."""
    model = load_mobilefacenet()
    x = faces_to_tensor(astronaut_faces)
    with torch.no_grad():
        ref = model(x)
        before = model.head.bn.running_mean.clone()
        batch = model.train()(x)
    assert torch.nn.functional.cosine_similarity(batch, ref).min() < 0.999
    assert not torch.equal(model.head.bn.running_mean, before)


def test_cut_points_compose(mbf, astronaut_faces):
    x = faces_to_tensor(astronaut_faces)
    with torch.inference_mode():
        full = mbf(x)
        for cut, shape in [(0, (3, 112, 112)), (2, (128, 56, 56)), (7, (128, 28, 28)),
                           (14, (256, 14, 14)), (19, (64, 7, 7)), (20, (512,))]:
            h = mbf.forward_until(x, cut)
            assert h.shape[1:] == shape
            torch.testing.assert_close(mbf.forward_from(h, cut), full, rtol=0, atol=1e-6)
            stem, tail = mbf.split(cut)
            torch.testing.assert_close(tail(stem(x)), full, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="cut"):
        mbf.forward_until(x, 21)


def test_gradient_reaches_only_the_last_layers(astronaut_faces):
    """Fine-tune the last 10 parameter tensors from cached frozen-stem activations: the
    gradient reaches exactly those, and a few steps pull the face toward a target embedding."""
    torch.manual_seed(0)
    model = load_mobilefacenet()
    model.requires_grad_(False)
    trainable = model.last_parameters(10)
    for p in trainable:
        p.requires_grad_(True)
    cut = model.cut_for_last_parameters(10)
    assert cut == 17 and len(list(model.parameters())) == 136
    x = faces_to_tensor(astronaut_faces[:1])
    target = torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    with torch.no_grad():
        h = model.forward_until(x, cut)  # what the trainer caches
    opt = torch.optim.SGD(trainable, lr=0.05)
    losses = []
    for _ in range(3):
        loss = 1 - torch.nn.functional.cosine_similarity(model.forward_from(h, cut), target).mean()
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    grads = {id(p): p.grad for p in model.parameters()}
    assert all(grads[id(p)] is not None and grads[id(p)].abs().sum() > 0 for p in trainable)
    assert sum(g is not None for g in grads.values()) == 10
    assert losses[-1] < losses[0] - 0.01, losses


def test_loader_refuses_wrong_files(tmp_path):
    from onnx import helper, load, save

    from fiqa_sdk.detect.scrfd import default_model_path as scrfd_path
    from fiqa_sdk.embed.arcface import default_model_path

    with pytest.raises(WeightsError, match="not found"):
        load_mobilefacenet(tmp_path / "missing.onnx")
    bad = tmp_path / "w600k_mbf.onnx"  # a known name with the wrong content
    bad.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="sha256"):
        load_mobilefacenet(bad)
    with pytest.raises(WeightsError, match="not a readable ONNX"):
        load_mobilefacenet(bad, verify=False)
    other = tmp_path / "detector.onnx"  # a valid ONNX, but a face detector
    shutil.copy(scrfd_path(), other)
    with pytest.raises(WeightsError, match="not the w600k_mbf MobileFaceNet graph"):
        load_mobilefacenet(other)
    model = load(str(default_model_path()))
    conv = next(n for n in model.graph.node if n.name == "Conv_6")
    conv.attribute.remove(next(a for a in conv.attribute if a.name == "strides"))
    conv.attribute.append(helper.make_attribute("strides", [1, 1]))
    tampered = tmp_path / "tampered.onnx"
    save(model, str(tampered))
    with pytest.raises(WeightsError, match="Conv_6.*strides"):
        load_mobilefacenet(tampered, verify=False)
