"""A corpus of bad and unusual inputs through QualityGate.filter / assess, all in one batch.

Every file is generated here in ``tmp_path`` from scikit-image's astronaut (a real face photo)
and coffee (no face). Bad items must come back in ``res.rejected`` with their specific reason;
unusual but valid encodings of the face (16-bit PNG, grayscale, RGBA, CMYK JPEG, EXIF-rotated,
uint16 / float / RGBA / grayscale arrays, a PIL image) must be scored; nothing raises and the
caller's arrays are not modified. Property-based tests (hypothesis) feed arbitrary arrays and
arguments.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import fiqa_sdk as fq
from fiqa_sdk.gate import QualityGate

#: Every reason a report may carry (docs/pipeline.md, "Gate reference").
REASONS = {"no_face", "not_found", "decode_error", "invalid_input", "alignment_error", "below_threshold",
           "discarded"}


@pytest.fixture(scope="module")
def gate():
    return QualityGate()  # defaults: retinaface, arcface, the default scorer, CPU


def _enc(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_header_bomb(w: int, h: int) -> bytes:
    """A valid 1-bit grayscale PNG header declaring w x h, with a little zlib data: decoding it
    would need w * h pixels; only the header must be read."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    rows = zlib.compress(b"\x00" * ((w // 8 + 1) * 16), 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _exif_rotated_jpeg(rgb: np.ndarray) -> bytes:
    """The face stored rotated by 90 degrees counter-clockwise, with EXIF orientation 6
    ("rotate 90 CW to display"): a viewer that honours EXIF shows it upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1)))
    return _enc(stored, "JPEG", quality=92, exif=exif.tobytes())


@pytest.fixture(scope="module")
def corpus(astronaut, tmp_path_factory):
    """(name, item, expected) with expected a reason string, or None for "scored"."""
    from skimage.data import coffee

    rgb = np.asarray(astronaut)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    jpg = _enc(Image.fromarray(rgb), "JPEG", quality=92)
    return [
        # good faces
        ("good_bgr_array", bgr, None),
        ("good_jpeg_bytes", jpg, None),
        ("good_pil", Image.fromarray(rgb), None),
        # unusual but valid encodings of the same face: scored, not rejected
        ("png_16bit", _enc(Image.fromarray(gray.astype(np.uint16) * 257), "PNG"), None),
        ("png_gray", _enc(Image.fromarray(gray), "PNG"), None),
        ("png_rgba", _enc(Image.fromarray(np.dstack([rgb, np.full(gray.shape, 90, np.uint8)])),
                          "PNG"), None),
        ("jpeg_cmyk", _enc(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=92), None),
        ("jpeg_exif_rotated", _exif_rotated_jpeg(rgb), None),
        ("array_gray", gray.copy(), None),
        ("array_bgra", np.dstack([bgr, np.full(gray.shape, 255, np.uint8)]), None),
        ("array_uint16", bgr.astype(np.uint16) * 257, None),
        ("array_float01", bgr.astype(np.float32) / 255.0, None),
        # broken encodings
        ("jpeg_truncated", jpg[: len(jpg) // 2], "decode_error"),
        ("zero_bytes", b"", "decode_error"),
        ("text_bytes", b"this is not an image\n", "decode_error"),
        ("missing_file", "/nonexistent/dir/face.jpg", "not_found"),
        ("path_with_nul", "/nonexistent/a\x00b.jpg", "decode_error"),
        ("a_directory", tmp_path_factory.mktemp("dir_item"), "decode_error"),
        # decompression-bomb guards: Pillow's own limit (400 Mpx) and fiqa's max_pixels (108 Mpx)
        ("png_20000x20000", _png_header_bomb(20000, 20000), "invalid_input"),
        ("png_12000x9000", _png_header_bomb(12000, 9000), "invalid_input"),
        # decodable, but no face
        ("png_1x1", _enc(Image.new("RGB", (1, 1), (120, 120, 120)), "PNG"), "no_face"),
        ("jpeg_faceless", _enc(Image.fromarray(coffee()), "JPEG"), "no_face"),
        ("array_blank", np.zeros((64, 64, 3), np.uint8), "no_face"),
        # bad arrays and objects
        ("array_zero_size", np.zeros((0, 10, 3), np.uint8), "invalid_input"),
        ("array_nan", np.full((64, 64, 3), np.nan, np.float32), "invalid_input"),
        ("array_inf", np.full((64, 64, 3), np.inf), "invalid_input"),
        ("array_float_0_255", bgr.astype(np.float64), "invalid_input"),
        ("array_5x5x7", np.zeros((5, 5, 7), np.uint8), "invalid_input"),
        ("array_4d", np.zeros((2, 64, 64, 3), np.uint8), "invalid_input"),
        ("array_1d", np.zeros(100, np.uint8), "invalid_input"),
        ("array_0d", np.array(3, np.uint8), "invalid_input"),
        ("array_int64", np.zeros((64, 64, 3), np.int64), "invalid_input"),
        ("array_bool", np.ones((64, 64, 3), bool), "invalid_input"),
        ("array_complex", np.zeros((64, 64, 3), np.complex64), "invalid_input"),
        ("array_object", np.full((8, 8, 3), None, dtype=object), "invalid_input"),
        ("none", None, "invalid_input"),
        ("int", 42, "invalid_input"),
        ("dict", {"image": "x"}, "invalid_input"),
    ]


def test_corpus_one_filter_call(gate, corpus, astronaut):
    items = [x for _, x, _ in corpus]
    before = [x.copy() if isinstance(x, np.ndarray) else None for x in items]
    res = gate.filter(items, discard=0.0)  # nothing is discarded for quality: only bad items go
    assert len(res.reports) == len(corpus)
    rejected = dict(res.rejected)
    for i, (name, _, expected) in enumerate(corpus):
        r = res.reports[i]
        if expected is None:
            assert i in res.kept, (name, r.reason, r.message)
            assert isinstance(r.score, float) and np.isfinite(r.score), name
            assert r.accepted and r.reason is None and r.embedding is not None, name
        else:
            assert rejected.get(i) == expected, (name, r.reason, r.message)
            assert r.score is None and not r.accepted and r.reason == expected, name
            assert isinstance(r.message, str) and r.message, name  # a human-readable detail
    assert sorted(res.kept + [i for i, _ in res.rejected]) == list(range(len(corpus)))
    # the caller's arrays are untouched (values, and the read-only fixture stays read-only)
    for name_x, b in zip(corpus, before):
        if b is not None:
            assert np.array_equal(name_x[1], b, equal_nan=b.dtype.kind in "fc"), name_x[0]
    assert not astronaut.flags.writeable
    # the unusual encodings score like the original face: within a tenth of the distance, in
    # the scorer's own units, between the original and a clearly worse copy (blur sigma 8 px)
    import cv2

    ref = res.reports[0].score
    worse = gate.assess(cv2.GaussianBlur(astronaut, (0, 0), 8), color="rgb").score
    assert worse < ref
    for i, (name, _, expected) in enumerate(corpus):
        if expected is None:
            assert abs(res.reports[i].score - ref) < 0.1 * (ref - worse), name


def test_exif_rotation_applied(gate, astronaut):
    """The EXIF-rotated JPEG is found upright: same box as the upright face, eyes level."""
    up = gate.assess(astronaut, color="rgb")
    rot = gate.assess(_exif_rotated_jpeg(np.asarray(astronaut)))
    assert rot.score is not None and rot.reason is None
    assert np.abs(rot.face.bbox - up.face.bbox).max() < 6.0
    assert np.abs(rot.face.landmarks - up.face.landmarks).max() < 6.0
    (lx, ly), (rx, ry) = rot.face.landmarks[:2]
    assert abs(ly - ry) < 0.3 * abs(rx - lx)  # eyes level: the image was turned upright
    # without the tag the same pixels are a sideways face (eyes one above the other)
    raw = Image.open(io.BytesIO(_exif_rotated_jpeg(np.asarray(astronaut))))
    sideways = gate.assess(np.asarray(raw.convert("RGB")), color="rgb")
    if sideways.face is not None:
        (lx, ly), (rx, ry) = sideways.face.landmarks[:2]
        assert abs(ly - ry) > abs(rx - lx)


def test_corpus_through_directory(gate, corpus, tmp_path):
    """The file-shaped part of the corpus written to a folder: same reasons, by file name."""
    expected = {}
    for name, x, why in corpus:
        if isinstance(x, bytes):
            ext = ".png" if name.startswith("png") else ".jpg"
            (tmp_path / f"{name}{ext}").write_bytes(x)
            expected[f"{name}{ext}"] = why
    (tmp_path / "text_as.jpg").write_text("plain text with an image extension\n")
    expected["text_as.jpg"] = "decode_error"
    (tmp_path / "subdir.jpg").mkdir()  # a folder with an image name is not a file: not listed
    (tmp_path / "notes.txt").write_text("not an image extension: ignored")
    res = gate.filter(tmp_path, discard=0.0)
    names = [s.rsplit("/", 1)[-1] for s in res.sources]
    assert sorted(names) == sorted(expected) and names == sorted(names)
    for i, n in enumerate(names):
        assert res.reports[i].reason == expected[n], (n, res.reports[i].message)
        assert (i in res.kept) == (expected[n] is None), n


# -- property-based ----------------------------------------------------------------------------

_DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64,
           np.bool_, np.complex64]


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40))
    return draw(hnp.arrays(dtype, shape))


def _check_report(r):
    assert isinstance(r, fq.QualityReport)
    if r.score is None:
        assert r.accepted is False and r.reason in REASONS and r.message
    else:
        assert isinstance(r.score, float) and np.isfinite(r.score)
        assert r.reason in (None, "below_threshold")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arr=arrays(), color=st.sampled_from(["bgr", "rgb"]))
def test_property_assess_arbitrary_arrays(gate, arr, color):
    before = arr.copy()
    r = gate.assess(arr, color=color)
    _check_report(r)
    assert np.array_equal(arr, before, equal_nan=arr.dtype.kind in "fc")


_ITEMS = st.one_of(arrays(), st.binary(max_size=64), st.none(), st.integers(),
                   st.text(max_size=8).map(lambda s: "/nonexistent/" + s))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(_ITEMS, max_size=6),
       discard=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2),
                         st.sampled_from([0.0, 0.5, 1.0]), st.text(max_size=3), st.none()),
       threshold=st.one_of(st.none(), st.floats(allow_nan=True), st.text(max_size=3)),
       color=st.sampled_from(["bgr", "rgb", "BGR", "hsv"]))
def test_property_filter_arbitrary(gate, items, discard, threshold, color):
    """Either a well-formed FilterResult, or a typed FiqaError for an argument mistake."""
    try:
        res = gate.filter(items, discard=discard, threshold=threshold, color=color)
    except fq.FiqaError as exc:
        assert isinstance(exc, fq.GateError), type(exc)
        return
    # only valid arguments get here
    assert color in ("bgr", "rgb") and (discard is None) != (threshold is None)
    assert len(res.reports) == len(items)
    rej = dict(res.rejected)
    assert set(res.kept).isdisjoint(rej) and sorted(res.kept + list(rej)) == list(range(len(items)))
    for i, r in enumerate(res.reports):
        _check_report(r)
        if i in rej:
            assert rej[i] == r.reason and r.reason in REASONS and not r.accepted
        else:
            assert r.accepted and r.score is not None


@pytest.mark.parametrize("kwargs", [
    {"discard": 0.2, "threshold": 1.0}, {}, {"discard": -0.1}, {"discard": 1.5},
    {"discard": float("nan")}, {"discard": "0.2"}, {"discard": True}, {"threshold": "x"},
    {"threshold": float("nan")}, {"discard": 0.2, "color": "hsv"},
])
def test_argument_mistakes_are_typed(gate, kwargs):
    with pytest.raises(fq.GateError):
        gate.filter([np.zeros((8, 8, 3), np.uint8)], **kwargs)


def test_batch_argument_mistakes_are_typed(gate, astronaut, tmp_path):
    for bad in (np.asarray(astronaut), b"bytes", 42, str(tmp_path / "nope")):
        with pytest.raises(fq.GateError):
            gate.filter(bad, discard=0.1)
    with pytest.raises(fq.GateError):
        gate.assess(astronaut, color="hsv")
    with pytest.raises(fq.GateError):
        QualityGate(threshold="high")


def test_other_argument_mistakes_are_typed_value_errors(astronaut):
    """Still ValueErrors (``except ValueError`` keeps working), and FiqaErrors."""
    from fiqa_sdk.detect import select_faces

    with pytest.raises(fq.GateError):
        QualityGate(face_policy="biggest")
    with pytest.raises(fq.GateError):
        QualityGate(face_policy=None)
    for call in (lambda: fq.FacePipeline(embedder=None, face_policy="biggest"),
                 lambda: select_faces([], "biggest"),
                 lambda: fq.load_image(astronaut, color="hsv"),
                 lambda: fq.create_scorer("det-score").score(np.zeros((2, 112, 112, 3), np.uint8)),
                 lambda: fq.create_scorer("inter-eye").score(np.zeros((2, 112, 112, 3), np.uint8),
                                                             faces=[None])):
        with pytest.raises(fq.InvalidArgumentError) as exc:
            call()
        assert isinstance(exc.value, ValueError) and isinstance(exc.value, fq.FiqaError)
