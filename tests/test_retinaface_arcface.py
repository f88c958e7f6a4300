"""RetinaFace detection and ArcFace embeddings on real faces."""

from __future__ import annotations

import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk.align import ARCFACE_TEMPLATE, estimate_transform
from fiqa_sdk.errors import InvalidImageError, WeightsError


def _check_face_geometry(face, image_shape):
    lm = face.landmarks
    assert lm.shape == (5, 2)
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # left before right, in image x
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])  # eyes, nose, mouth
    x1, y1, x2, y2 = face.bbox
    assert (lm[:, 0] > x1).all() and (lm[:, 0] < x2).all() and (lm[:, 1] > y1).all() and (lm[:, 1] < y2).all()
    m = estimate_transform(face)
    mapped = lm @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - ARCFACE_TEMPLATE).max() < 8


def test_retinaface_astronaut(astronaut, retinaface):
    faces = retinaface.detect(astronaut)
    assert len(faces) == 1
    f = faces[0]
    assert f.det_score > 0.95 and f.detector == "retinaface"
    _check_face_geometry(f, astronaut.shape)
    assert 80 < f.width < 120  # her face is about 100 px wide in the 512x512 photo


def test_retinaface_any_input_form_and_scaling(astronaut, retinaface):
    # BGR array through __call__, a 2x upscaled copy: same face, coordinates in source pixels
    import cv2

    f0 = retinaface.detect(astronaut)[0]
    f1 = retinaface(astronaut[..., ::-1])[0]
    np.testing.assert_allclose(f1.landmarks, f0.landmarks, atol=1e-3)
    big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    det = fq.create_detector("retinaface", max_size=512)  # forces a downscale inside detect
    f2 = det.detect(big)[0]
    np.testing.assert_allclose(f2.landmarks / 3, f0.landmarks, atol=2.5)


def test_retinaface_no_face_and_tiny_images(retinaface):
    rng = np.random.default_rng(0)
    assert retinaface.detect(np.zeros((200, 200, 3), np.uint8)) == []
    assert retinaface.detect(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []
    assert retinaface.detect(np.zeros((1, 1, 3), np.uint8)) == []
    assert retinaface.detect(np.zeros((10, 7, 3), np.uint8)) == []


def test_retinaface_input_not_modified(astronaut, retinaface):
    img = astronaut.copy()
    retinaface.detect(img)
    np.testing.assert_array_equal(img, astronaut)


def test_detect_rejects_undecoded_input(retinaface):
    with pytest.raises(ValueError, match="uint8 RGB"):
        retinaface.detect(np.zeros((10, 10), np.uint8))


def test_multi_face_policies():
    from fiqa_sdk.detect import select_faces

    small_centre = fq.Face([90, 90, 110, 110], np.tile([100.0, 100.0], (5, 1)), 0.99)
    big_corner = fq.Face([0, 0, 60, 60], np.tile([30.0, 30.0], (5, 1)), 0.80)
    faces = [small_centre, big_corner]
    assert select_faces(faces, "largest") == [big_corner]
    assert select_faces(faces, "central", (200, 200, 3)) == [small_centre]
    assert select_faces(faces, "confidence") == [small_centre]
    assert select_faces(faces, "all") == [small_centre, big_corner]
    assert select_faces([], "largest") == []
    with pytest.raises(ValueError):
        select_faces(faces, "biggest")


def test_arcface_embeddings(astronaut, retinaface, arcface):
    crop = fq.align_face(astronaut, retinaface.detect(astronaut)[0])
    e = arcface.embed(crop)
    assert e.shape == (1, 512) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    batch = np.stack([crop, crop[:, ::-1], np.zeros_like(crop)])
    eb = arcface.embed(batch)
    np.testing.assert_allclose(eb[0], e[0], atol=1e-5)  # batching does not change results
    assert eb[0] @ eb[1] > 0.8  # a mirror image is the same person
    assert eb[0] @ eb[2] < 0.3  # a black square is not
    with pytest.raises(InvalidImageError):
        arcface.embed(np.zeros((2, 100, 100, 3), np.uint8))
    with pytest.raises(InvalidImageError):
        arcface.embed(np.zeros((112, 112, 3), np.float32))


def test_arcface_fast_prelu_is_the_same_function(astronaut, retinaface, arcface):
    """The PReLU rewrite (CPU default) changes the speed, not the embedding."""
    onnx = pytest.importorskip("onnx")
    from fiqa_sdk._onnx import rewrite_blocked_prelu, rewrite_grouped_conv, rewritten_bytes
    from fiqa_sdk.embed.arcface import default_model_path

    assert arcface.fast_prelu
    plain = fq.create_embedder("arcface", fast_prelu=False)
    assert not plain.fast_prelu
    face = fq.align_face(astronaut, retinaface.detect(astronaut)[0])
    crops = np.stack([face, face[:, ::-1], np.full_like(face, 128)])
    np.testing.assert_allclose(arcface.embed_raw(crops), plain.embed_raw(crops), atol=2e-5)
    rewritten = onnx.load_from_string(rewritten_bytes(default_model_path(), rewrite_blocked_prelu,
                                                      rewrite_grouped_conv))
    ops = [n.op_type for n in rewritten.graph.node]
    original = [n.op_type for n in onnx.load(str(default_model_path())).graph.node]
    assert "PRelu" not in ops and original.count("PRelu") > 0
    assert ops.count("Relu") == original.count("Relu") + original.count("PRelu")
    # block 1's conv (64 groups of 2 channels) as two depthwise convs + a channel swap
    assert ops.count("Gather") == original.count("Gather") + 1
    assert ops.count("Conv") == original.count("Conv") + original.count("PRelu") + 1


def test_arcface_bad_weights_file_refused(tmp_path):
    bad = tmp_path / "w600k_mbf.onnx"  # a known name with the wrong content
    bad.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="sha256"):
        fq.create_embedder("arcface", model_path=bad)
    with pytest.raises(WeightsError, match="not found"):
        fq.create_embedder("arcface", model_path=tmp_path / "missing.onnx", verify=False)


def test_custom_embedders(astronaut, retinaface, arcface):
    import torch

    crop = fq.align_face(astronaut, retinaface.detect(astronaut)[0])
    mean_colour = fq.create_embedder(lambda x: x.reshape(len(x), -1, 3).mean(axis=1), name="mean")
    e = mean_colour.embed(np.stack([crop, crop]))
    assert e.shape == (2, 3)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-6)

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 112 * 112, 16))
    te = fq.create_embedder(net, name="tiny-torch")
    assert te.embed(crop).shape == (1, 16)
    with pytest.raises(TypeError):
        fq.create_embedder(3.5)
