"""The ``mtcnn`` detector (pure-torch cascade on facenet-pytorch's weights)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("torch")
if importlib.util.find_spec("facenet_pytorch") is None:
    pytest.skip("facenet-pytorch (weights of the mtcnn detector) is not installed",
                allow_module_level=True)

from fiqa_sdk.align import ARCFACE_TEMPLATE, align_face, estimate_transform  # noqa: E402
from fiqa_sdk.detect import create_detector  # noqa: E402
from fiqa_sdk.errors import MissingDependencyError  # noqa: E402
from fiqa_sdk.types import Face  # noqa: E402


@pytest.fixture(scope="module")
def detector():
    import torch

    # One intra-op thread: MTCNN's tensors are small, and on a shared CPU several threads make
    # it many times slower. ``threads`` is process-wide, so restore torch's setting afterwards.
    before = torch.get_num_threads()
    try:
        det = create_detector("mtcnn", threads=1)
        assert torch.get_num_threads() == 1
        yield det
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def astronaut():
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()  # 512x512 RGB, one face


@pytest.fixture(scope="module")
def astronaut_faces(detector, astronaut):
    return detector.detect(astronaut)


def test_one_face_on_astronaut(astronaut_faces):
    assert len(astronaut_faces) == 1
    face = astronaut_faces[0]
    assert isinstance(face, Face)
    assert face.detector == "mtcnn"
    assert 0.9 < face.det_score <= 1.0
    assert face.bbox.shape == (4,) and face.landmarks.shape == (5, 2)
    x1, y1, x2, y2 = face.bbox
    # the face is in the upper middle of the picture, roughly 90 x 110 px
    assert 150 < x1 < x2 < 300 and 30 < y1 < y2 < 200
    assert 60 < face.width < 130 and 80 < face.height < 150


def test_landmarks_arcface_order(astronaut_faces):
    face = astronaut_faces[0]
    le, re, nose, ml, mr = face.landmarks
    assert le[0] < re[0] and ml[0] < mr[0]          # "left" = smaller x in the image
    assert le[0] < nose[0] < re[0]
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])  # eyes above nose above mouth
    x1, y1, x2, y2 = face.bbox
    assert np.all((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2))
    assert np.all((face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2))


def test_alignment_matches_arcface_template(detector, astronaut, astronaut_faces):
    face = astronaut_faces[0]
    # the landmarks, mapped by the alignment transform, land on the ArcFace template
    m = estimate_transform(face)
    mapped = np.c_[face.landmarks, np.ones(5)] @ m.T
    err = np.linalg.norm(mapped - ARCFACE_TEMPLATE, axis=1)
    assert err[:2].max() < 6.0, err  # eyes
    assert err.max() < 10.0, err     # nose and mouth (MTCNN's geometry differs a little)
    # and the aligned crop really shows the face there: detect again inside the 112x112 crop
    crop = align_face(astronaut, face)
    assert crop.shape == (112, 112, 3)
    again = detector.detect(crop)
    assert len(again) >= 1 and again[0].det_score > 0.9
    err = np.linalg.norm(again[0].landmarks - ARCFACE_TEMPLATE, axis=1)
    assert err[:2].max() < 6.0, err
    assert err.max() < 10.0, err


def test_two_faces_sorted(detector, astronaut, astronaut_faces):
    x1, y1, x2, y2 = (int(v) for v in astronaut_faces[0].bbox)
    crop = astronaut[max(y1 - 30, 0):y2 + 30, max(x1 - 30, 0):x2 + 30]
    h, w = crop.shape[:2]
    canvas = np.full((h + 20, 2 * w + 60, 3), 128, np.uint8)
    canvas[10:10 + h, 10:10 + w] = crop
    canvas[10:10 + h, 50 + w:50 + 2 * w] = crop[:, ::-1]  # mirrored copy
    faces = detector.detect(canvas)
    assert len(faces) == 2
    assert faces[0].det_score >= faces[1].det_score
    centres = sorted(f.center[0] for f in faces)
    assert centres[0] < 10 + w < centres[1]
    for f in faces:  # the mirrored face's landmarks are still in image-left/right order
        assert f.landmarks[0, 0] < f.landmarks[1, 0]
        assert f.landmarks[3, 0] < f.landmarks[4, 0]


@pytest.mark.parametrize("kind", ["zeros", "noise"])
def test_no_face(detector, kind):
    if kind == "zeros":
        img = np.zeros((200, 200, 3), np.uint8)
    else:
        img = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    assert detector.detect(img) == []


@pytest.mark.parametrize("shape", [(1, 1, 3), (10, 10, 3), (12, 400, 3), (30, 30, 3)])
def test_tiny_images(detector, shape):
    assert detector.detect(np.zeros(shape, np.uint8)) == []


def test_input_unchanged_and_deterministic(detector, astronaut, astronaut_faces):
    img = astronaut.copy()
    img.setflags(write=False)  # read-only input works too
    before = img.copy()
    a, b = astronaut_faces, detector.detect(img)
    np.testing.assert_array_equal(img, before)
    np.testing.assert_array_equal(astronaut, before)  # the fixture's detection left it alone
    assert len(a) == len(b) == 1
    np.testing.assert_array_equal(a[0].bbox, b[0].bbox)
    np.testing.assert_array_equal(a[0].landmarks, b[0].landmarks)
    assert a[0].det_score == b[0].det_score


def test_rejects_non_rgb(detector):
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((50, 50, 3), np.float32))


def test_bad_arguments():
    with pytest.raises(ValueError):
        create_detector("mtcnn", device="tpu")
    with pytest.raises(ValueError):
        create_detector("mtcnn", factor=1.2)
    with pytest.raises(ValueError):
        create_detector("mtcnn", thresholds=(0.6, 0.7))


def test_missing_package_message(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "facenet_pytorch" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    hint = r"pip install --no-deps facenet-pytorch==2\.6\.0"
    with pytest.raises(MissingDependencyError, match=hint):
        create_detector("mtcnn")
