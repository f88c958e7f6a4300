"""Every input form becomes RGB uint8; every bad input gets its typed error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from fiqa_sdk import ImageDecodeError, InvalidImageError, load_image
from fiqa_sdk.io import MAX_PIXELS


def _encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def test_array_bgr_default_and_rgb(rgb):
    bgr = rgb[..., ::-1].copy()
    np.testing.assert_array_equal(load_image(bgr), rgb)
    np.testing.assert_array_equal(load_image(rgb, color="rgb"), rgb)


def test_array_result_is_fresh_contiguous_copy(rgb):
    out = load_image(rgb, color="rgb")
    assert out.flags.c_contiguous and out.dtype == np.uint8
    assert not np.shares_memory(out, rgb)
    out[:] = 0
    assert rgb.any()


def test_caller_array_not_modified(rgb):
    before = rgb.copy()
    load_image(rgb)
    load_image(rgb[:, ::-1])  # negative strides
    np.testing.assert_array_equal(rgb, before)


def test_grayscale_and_single_channel(rgb):
    g = rgb[..., 0]
    for arr in (g, g[..., None]):
        out = load_image(arr)
        assert out.shape == (40, 60, 3)
        np.testing.assert_array_equal(out[..., 0], g)
        np.testing.assert_array_equal(out[..., 2], g)


def test_rgba_drops_alpha(rgb):
    rgba = np.concatenate([rgb, np.full((40, 60, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(load_image(rgba, color="rgb"), rgb)
    np.testing.assert_array_equal(load_image(rgba[..., [2, 1, 0, 3]]), rgb)


def test_float_and_uint16_arrays(rgb):
    f = rgb.astype(np.float64) / 255.0
    np.testing.assert_array_equal(load_image(f, color="rgb"), rgb)
    u16 = rgb.astype(np.uint16) * 257
    np.testing.assert_array_equal(load_image(u16, color="rgb"), rgb)


@pytest.mark.parametrize("bad", [
    np.zeros((0, 10, 3), np.uint8),
    np.zeros((10, 0), np.uint8),
    np.zeros((10, 10, 2), np.uint8),
    np.zeros((2, 10, 10, 3), np.uint8),
    np.zeros((10,), np.uint8),
    np.zeros((10, 10, 3), np.int64),
    np.zeros((10, 10, 3), bool),
    np.full((10, 10, 3), np.nan, np.float32),
    np.full((10, 10, 3), 2.0, np.float32),
])
def test_bad_arrays_raise_invalid_image(bad):
    with pytest.raises(InvalidImageError):
        load_image(bad)


@pytest.mark.parametrize("bad", [None, 3, [1, 2, 3], {"a": 1}])
def test_bad_types(bad):
    with pytest.raises(InvalidImageError, match="unsupported image input"):
        load_image(bad)


def test_bad_color_argument(rgb):
    with pytest.raises(ValueError, match="color"):
        load_image(rgb, color="hsv")
    # typed: a FiqaError too, and not mistaken for a bad image
    import fiqa_sdk as fq

    with pytest.raises(fq.InvalidArgumentError, match="color") as exc:
        load_image(b"not even decoded", color="RGB")
    assert isinstance(exc.value, fq.FiqaError) and not isinstance(exc.value, InvalidImageError)


def test_encoded_bytes_and_path(rgb, tmp_path):
    data = _encode(rgb, "PNG")
    np.testing.assert_array_equal(load_image(data), rgb)
    np.testing.assert_array_equal(load_image(bytearray(data)), rgb)
    p = tmp_path / "x.png"
    p.write_bytes(data)
    np.testing.assert_array_equal(load_image(p), rgb)
    np.testing.assert_array_equal(load_image(str(p)), rgb)


def test_pil_input_any_mode(rgb):
    pil = Image.fromarray(rgb)
    np.testing.assert_array_equal(load_image(pil), rgb)
    assert load_image(pil.convert("L")).shape == (40, 60, 3)
    assert load_image(pil.convert("CMYK")).shape == (40, 60, 3)
    assert load_image(pil.convert("P")).shape == (40, 60, 3)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageDecodeError, match="not found"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageDecodeError, match="directory"):
        load_image(tmp_path)


def test_empty_text_and_truncated(rgb, tmp_path):
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        load_image(b"hello, this is text, not an image")
    big = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    jpg = _encode(big, "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
        load_image(jpg[: len(jpg) // 2])
    png = _encode(big, "PNG")
    with pytest.raises(ImageDecodeError):
        load_image(png[: len(png) // 2])


def test_sixteen_bit_png_and_cmyk_jpeg(rgb):
    g16 = (rgb[..., 0].astype(np.uint16) * 257)
    out = load_image(_encode(g16, "PNG"))
    np.testing.assert_array_equal(out[..., 1], rgb[..., 0])
    cmyk = Image.fromarray(rgb).convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG", quality=95)
    out = load_image(buf.getvalue())
    assert out.shape == (40, 60, 3)
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 20


def test_exif_rotation_is_applied():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    pil = Image.fromarray(arr)
    exif = pil.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", exif=exif, quality=95)
    out = load_image(buf.getvalue())
    assert out.shape == (40, 20, 3)  # displayed upright: portrait
    assert out[:15].mean() > 200 and out[25:].mean() < 50  # the white half is now on top


def test_decompression_bomb_refused_before_decoding():
    # a PNG header declaring 20000 x 20000 pixels of one colour compresses to a few KB
    big = Image.new("L", (20000, 20000))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    with pytest.raises(InvalidImageError, match="max_pixels|too large"):
        load_image(buf.getvalue())
    with pytest.raises(InvalidImageError, match="max_pixels"):
        load_image(_encode(np.zeros((50, 50, 3), np.uint8), "PNG"), max_pixels=100)
    assert MAX_PIXELS >= 50_000_000


def test_one_by_one_image():
    out = load_image(_encode(np.full((1, 1, 3), 9, np.uint8), "PNG"))
    assert out.shape == (1, 1, 3) and out[0, 0, 0] == 9


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([np.uint8, np.uint16, np.float32, np.int32, np.float64, bool]).flatmap(
           lambda dt: arrays(dtype=dt, shape=st.tuples(st.integers(0, 6), st.integers(0, 6),
                                                       st.sampled_from([1, 2, 3, 4, 5])))
           | arrays(dtype=dt, shape=st.tuples(st.integers(0, 6), st.integers(0, 6)))),
       st.sampled_from(["bgr", "rgb"]))
def test_property_arrays_either_convert_or_raise_typed(arr, color):
    before = arr.copy()
    try:
        out = load_image(arr, color=color)
    except InvalidImageError:
        pass
    else:
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert out.shape[:2] == arr.shape[:2]
        assert out.flags.c_contiguous and not np.shares_memory(out, arr)
    np.testing.assert_array_equal(arr, before)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_property_random_bytes_never_crash_untyped(data):
    try:
        out = load_image(data)
    except (ImageDecodeError, InvalidImageError):
        return
    assert out.dtype == np.uint8 and out.ndim == 3
