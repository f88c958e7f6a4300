"""dlib (HOG / MMOD-CNN detector, ResNet embedder) and SCRFD backends on real images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from fiqa_sdk.align import ARCFACE_TEMPLATE, align_face, estimate_transform
from fiqa_sdk.errors import InvalidImageError, MissingDependencyError

LFW = Path(os.environ.get("FIQA_LFW") or Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw")


def _has_dlib() -> bool:
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return True


needs_dlib = pytest.mark.skipif(not _has_dlib(), reason="dlib not installed (pip install 'fiqa-sdk[dlib]')")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # 512x512 RGB, one face (Eileen Collins)


@pytest.fixture(scope="module")
def hog():
    pytest.importorskip("dlib")
    from fiqa_sdk.detect.dlib import DlibDetector

    # upsample=0: the face is ~90 px, and at the default upsample=1 HOG also fires weakly
    # (raw SVM margin 0.12) on the round mission patch on her sleeve (see test_hog_default_upsample)
    return DlibDetector("hog", upsample=0)


@pytest.fixture(scope="module")
def cnn_fast():
    pytest.importorskip("dlib")
    from fiqa_sdk.detect.dlib import DlibDetector

    return DlibDetector("cnn", upsample=0)  # ~2 s on the 512x512 astronaut (8 s at upsample=1)


@pytest.fixture(scope="module")
def scrfd():
    from fiqa_sdk.detect.scrfd import SCRFDDetector

    return SCRFDDetector()


@pytest.fixture(scope="module")
def dlib_embedder():
    pytest.importorskip("dlib")
    from fiqa_sdk.embed.dlib import DlibEmbedder

    return DlibEmbedder()


DETECTORS = ["hog", "cnn_fast", "scrfd"]


def check_face(face) -> None:
    lmk = face.landmarks
    le, re, nose, ml, mr = lmk
    assert le[0] < re[0], "left eye must have the smaller x"
    assert ml[0] < mr[0], "left mouth corner must have the smaller x"
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1]), "eyes above nose above mouth"
    assert 0.0 <= face.det_score <= 1.0
    x1, y1, x2, y2 = face.bbox
    assert x1 < x2 and y1 < y2
    assert (lmk[:, 0] > x1 - 5).all() and (lmk[:, 0] < x2 + 5).all()
    assert (lmk[:, 1] > y1 - 5).all() and (lmk[:, 1] < y2 + 5).all()
    assert face.landmarks.dtype == np.float32 and face.bbox.dtype == np.float32
    # a similarity to the ArcFace template fits these five points well
    M = estimate_transform(face)
    mapped = lmk.astype(np.float64) @ M[:, :2].T + M[:, 2]
    assert np.abs(mapped - ARCFACE_TEMPLATE).max() < 8.0


@pytest.mark.parametrize("name", DETECTORS)
def test_one_face_on_astronaut(name, request, astronaut):
    det = request.getfixturevalue(name)
    faces = det.detect(astronaut)
    assert len(faces) == 1, faces
    face = faces[0]
    check_face(face)
    assert 150 < face.center[0] < 300 and 60 < face.center[1] < 200  # her face, not the patch
    crop = align_face(astronaut, face)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8


@pytest.mark.parametrize("name", DETECTORS)
def test_no_face_on_blank_or_noise(name, request):
    det = request.getfixturevalue(name)
    rng = np.random.default_rng(0)
    images = [
        np.zeros((160, 200, 3), np.uint8),
        np.full((160, 200, 3), 255, np.uint8),
        rng.integers(0, 256, (160, 200, 3), dtype=np.uint8),
    ]
    for img in images:
        assert det.detect(img) == []


@pytest.mark.parametrize("name", DETECTORS)
def test_input_never_modified(name, request, astronaut):
    det = request.getfixturevalue(name)
    crop = astronaut[:320, 64:384]  # the face only, to keep the CNN quick
    img = crop.copy()
    ref = img.copy()
    img.setflags(write=False)  # a write attempt would raise
    assert len(det.detect(img)) == 1
    assert np.array_equal(img, ref)
    # non-contiguous views work too and give the mirrored face
    flipped = det.detect(crop[:, ::-1])
    assert len(flipped) == 1
    check_face(flipped[0])


@pytest.mark.parametrize("name", DETECTORS)
def test_rejects_undecoded_input(name, request):
    det = request.getfixturevalue(name)
    with pytest.raises(ValueError, match="uint8 RGB"):
        det.detect(np.zeros((64, 64), np.uint8))


@needs_dlib
def test_hog_default_upsample(hog, astronaut):
    from fiqa_sdk.detect.dlib import DlibDetector
    from fiqa_sdk.detect.nms import box_iou

    det = DlibDetector()  # upsample=1
    faces = det.detect(astronaut)
    assert len(faces) >= 1
    assert faces == sorted(faces, key=lambda f: -f.det_score)
    ref = hog.detect(astronaut)[0]
    assert box_iou(faces[0].bbox, ref.bbox[None])[0] > 0.5
    check_face(faces[0])
    # a stricter threshold keeps only the real face
    det.adjust_threshold = 0.5
    strict = det.detect(astronaut)
    assert len(strict) == 1 and strict[0].det_score > 0.5


@needs_dlib
def test_dlib_score_mapping():
    from fiqa_sdk.detect.dlib import squash_score

    assert squash_score(0.0) == 0.5
    assert 0.0 <= squash_score(-800.0) < squash_score(-1.0) < 0.5 < squash_score(1.0) < squash_score(800.0) <= 1.0
    assert abs(squash_score(1.0) - 1 / (1 + np.exp(-2.0))) < 1e-12


@pytest.mark.slow
@needs_dlib
def test_cnn_default_upsample(astronaut, request):
    if "slow" not in (request.config.option.markexpr or "") and not os.environ.get("FIQA_SLOW"):
        pytest.skip("slow (~8 s on 2 cores): run with -m slow or FIQA_SLOW=1")
    from fiqa_sdk.detect.dlib import DlibDetector

    faces = DlibDetector("cnn").detect(astronaut)  # upsample=1: ~8 s on 2 CPU cores
    assert len(faces) == 1
    check_face(faces[0])


def test_dlib_argument_checks():
    pytest.importorskip("dlib")
    from fiqa_sdk.detect.dlib import DlibDetector

    with pytest.raises(ValueError, match="model"):
        DlibDetector("mmod")
    with pytest.raises(ValueError, match="landmarks"):
        DlibDetector(landmarks="5")
    with pytest.raises(ValueError, match="upsample"):
        DlibDetector(upsample=-1)


def test_missing_dlib_names_the_extra(monkeypatch):
    from fiqa_sdk.detect.dlib import DlibDetector
    from fiqa_sdk.embed.dlib import DlibEmbedder

    monkeypatch.setitem(sys.modules, "dlib", None)  # makes "import dlib" raise ImportError
    for cls in (DlibDetector, DlibEmbedder):
        with pytest.raises(MissingDependencyError, match=r"pip install 'fiqa-sdk\[dlib\]'"):
            cls()


def test_scrfd_keeps_aspect_ratio(scrfd, astronaut):
    # a tall and a wide canvas around the same image: same landmarks in image coordinates
    ref = scrfd.detect(astronaut)[0]
    for pad in (((0, 400), (0, 0), (0, 0)), ((0, 0), (0, 300), (0, 0))):
        faces = scrfd.detect(np.pad(astronaut, pad))
        assert len(faces) == 1
        assert np.abs(faces[0].landmarks - ref.landmarks).max() < 4.0
    from fiqa_sdk.detect.scrfd import SCRFDDetector

    small = SCRFDDetector(det_size=320).detect(astronaut)
    assert len(small) == 1 and np.abs(small[0].landmarks - ref.landmarks).max() < 6.0


def test_scrfd_argument_checks():
    from fiqa_sdk.detect.scrfd import SCRFDDetector, anchor_centers

    with pytest.raises(ValueError, match="multiples of 32"):
        SCRFDDetector(det_size=600)
    with pytest.raises(ValueError, match="score_threshold"):
        SCRFDDetector(score_threshold=1.5)
    c = anchor_centers(2, 3, 8)
    assert c.shape == (12, 2)
    # row-major over the map, the two anchors of one location adjacent
    assert c[:6].tolist() == [[0, 0], [0, 0], [8, 0], [8, 0], [16, 0], [16, 0]]


def test_registry_creates_backends():
    pytest.importorskip("dlib")
    from fiqa_sdk import create_detector, create_embedder
    from fiqa_sdk.detect.dlib import DlibDetector
    from fiqa_sdk.detect.scrfd import SCRFDDetector
    from fiqa_sdk.embed.dlib import DlibEmbedder

    assert isinstance(create_detector("dlib", upsample=0), DlibDetector)
    assert isinstance(create_detector("scrfd", det_size=320), SCRFDDetector)
    assert isinstance(create_embedder("dlib"), DlibEmbedder)


@needs_dlib
def test_dlib_embedder_contract(dlib_embedder):
    from fiqa_sdk.embed.dlib import DLIB_CHIP_TEMPLATE

    e = dlib_embedder
    assert (e.name, e.dim, e.input_size) == ("dlib", 128, 150)
    tpl = e.template
    assert tpl.shape == (5, 2) and np.array_equal(tpl, DLIB_CHIP_TEMPLATE)
    assert ((tpl > 0) & (tpl < 150)).all()
    assert tpl[0, 0] < tpl[1, 0] and tpl[3, 0] < tpl[4, 0]
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    ref = chips.copy()
    raw = e.embed_raw(chips)
    assert raw.shape == (2, 128) and raw.dtype == np.float32 and np.isfinite(raw).all()
    assert np.array_equal(chips, ref)
    emb = e.embed(chips[0])
    assert emb.shape == (1, 128)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.allclose(emb[0], raw[0] / np.linalg.norm(raw[0]), atol=1e-5)
    with pytest.raises(InvalidImageError, match="150x150"):
        e.embed(np.zeros((1, 112, 112, 3), np.uint8))


@pytest.mark.lfw
@needs_dlib
def test_dlib_embedder_same_person_higher(hog, dlib_embedder):
    images = LFW / "images"
    if not images.is_dir():
        pytest.skip(f"LFW not found at {LFW} (set FIQA_LFW)")
    from fiqa_sdk.io import load_image

    paths = [
        "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
        "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
        "Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
        "AJ_Cook/AJ_Cook_0001.jpg",
    ]
    chips = []
    for p in paths:
        img = load_image(images / p)
        faces = hog.detect(img)
        assert faces, p
        face = max(faces, key=lambda f: f.area)
        chips.append(align_face(img, face, dlib_embedder.input_size, dst=dlib_embedder.template))
    emb = dlib_embedder.embed(np.stack(chips))
    sim = emb @ emb.T
    same = sim[0, 1]
    different = max(sim[0, 2], sim[0, 3], sim[1, 2], sim[1, 3])
    assert same > 0.93  # measured 0.973
    assert same > different + 0.05  # measured: different people at most 0.885
