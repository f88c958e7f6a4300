"""ArcFace 5-point alignment."""

from __future__ import annotations

import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk.align import ARCFACE_TEMPLATE, estimate_transform, jitter_landmarks, warp
from fiqa_sdk.errors import AlignmentError


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def test_transform_recovers_known_similarity():
    # landmarks = template rotated by 20 degrees, scaled 2.5x and shifted
    a = np.deg2rad(20)
    r = 2.5 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    src = ARCFACE_TEMPLATE @ r.T + [130.0, 40.0]
    m = estimate_transform(src)
    np.testing.assert_allclose(_apply(m, src), ARCFACE_TEMPLATE, atol=1e-6)


def test_transform_is_least_squares_not_exact():
    rng = np.random.default_rng(0)
    src = ARCFACE_TEMPLATE * 2 + 50 + rng.normal(0, 1.5, (5, 2))
    m = estimate_transform(src)
    resid = np.linalg.norm(_apply(m, src) - ARCFACE_TEMPLATE, axis=1)
    # a similarity cannot fit noisy points exactly, but the fit is close and not anchored on one point
    assert 0 < resid.max() < 3 and resid.min() > 1e-6


def test_template_scaling_and_custom_destination():
    src = ARCFACE_TEMPLATE * 3
    m = estimate_transform(src, size=224)
    np.testing.assert_allclose(_apply(m, src), ARCFACE_TEMPLATE * 2, atol=1e-6)
    dst = ARCFACE_TEMPLATE + 10
    m = estimate_transform(src, size=150, dst=dst)
    np.testing.assert_allclose(_apply(m, src), dst, atol=1e-6)


def test_warp_moves_pixels_where_the_transform_says():
    img = np.zeros((300, 300, 3), np.uint8)
    src = ARCFACE_TEMPLATE * 2 + [60, 40]
    for x, y in src.round().astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = [255, 0, 0]
    crop = fq.align_face(img, src)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE.round().astype(int):
        assert crop[y, x, 0] > 100 and crop[y, x, 2] == 0  # red stays red: channel order kept


def test_degenerate_and_bad_landmarks():
    with pytest.raises(AlignmentError):
        estimate_transform(np.full((5, 2), 10.0))
    with pytest.raises(AlignmentError):
        estimate_transform(np.full((5, 2), np.nan))
    with pytest.raises(ValueError):
        estimate_transform(np.zeros((4, 2)))
    with pytest.raises(ValueError):
        warp(np.zeros((10, 10), np.uint8), np.eye(2, 3))


def test_jitter_is_bounded_and_seeded():
    a = jitter_landmarks(ARCFACE_TEMPLATE, 4, rng=1)
    b = jitter_landmarks(ARCFACE_TEMPLATE, 4, rng=1)
    np.testing.assert_array_equal(a, b)
    d = np.abs(a - ARCFACE_TEMPLATE)
    assert d.max() <= 4 and d.max() > 1
    np.testing.assert_array_equal(jitter_landmarks(ARCFACE_TEMPLATE, 0, rng=3), ARCFACE_TEMPLATE)


def test_align_faces_empty_and_input_untouched(astronaut, retinaface):
    faces = retinaface.detect(astronaut)
    out = fq.align_faces(astronaut, faces)
    assert out.shape == (len(faces), 112, 112, 3)
    assert fq.align_faces(astronaut, []).shape == (0, 112, 112, 3)
