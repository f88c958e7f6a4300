"""Every supported image input -> one RGB uint8 array, with clear, typed errors.

Accepted inputs
---------------
- ``str`` / ``os.PathLike``: a path to an encoded image file (JPEG, PNG, BMP, WebP, TIFF, ...).
- ``bytes`` / ``bytearray`` / ``memoryview``: encoded image data.
- ``numpy.ndarray``: ``(H, W)`` grayscale, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``.
  Colour arrays are **BGR by default**, as OpenCV decodes them; pass ``color="rgb"`` for
  RGB(A) arrays (PIL, scikit-image, matplotlib). dtypes: ``uint8``; ``uint16`` (scaled by
  1/257); ``float32``/``float64`` with values in [0, 1] (scikit-image's convention).
- ``PIL.Image.Image``: any mode (RGB, L, RGBA, CMYK, I;16, P, ...).

Encoded data is decoded with Pillow: EXIF orientation is applied, truncated files are refused
(not silently padded), the header size is checked against ``max_pixels`` before any pixel is
decoded, and alpha is dropped (not composited). The caller's object is never modified: the
result is always a new C-contiguous array.
"""

from __future__ import annotations

import io as _io
import os
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import ImageDecodeError, ImageNotFoundError, InvalidArgumentError, InvalidImageError

#: File extensions (lower case) read as images everywhere: the gate's folders, the training
#: sets, the folder protocol of ``fq.eval`` and the Ray inputs.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff",
                              ".ppm", ".pgm", ".gif"})

#: Largest image (in pixels) decoded from a file or bytes; larger headers are refused as
#: likely decompression bombs. 100 megapixels is above any current camera sensor's
#: default output; pass ``max_pixels`` to change it.
MAX_PIXELS = 100_000_000

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]

_COLORS = ("bgr", "rgb")


def load_image(img: ImageInput, color: str = "bgr", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Convert any supported image input to an RGB ``uint8`` array of shape ``(H, W, 3)``.

    Parameters
    ----------
    img : path, bytes, ndarray or PIL.Image
        The image (see the module docstring for the accepted forms).
    color : {"bgr", "rgb"}
        Channel order of a 3- or 4-channel ndarray input. Ignored for other inputs, whose
        colour order is known.
    max_pixels : int
        Refuse encoded images whose header declares more pixels than this.

    Returns
    -------
    ndarray, shape (H, W, 3), dtype uint8, RGB, C-contiguous; never a view of ``img``.

    Raises
    ------
    InvalidArgumentError
        ``color`` is not "bgr" or "rgb" (a ``ValueError``).
    ImageDecodeError
        Missing, unreadable, empty, truncated or non-image files/bytes.
    InvalidImageError
        Arrays of a wrong type, dtype, shape, zero size or non-finite values; oversized images.

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk import load_image
    >>> bgr = np.zeros((4, 6, 3), np.uint8)
    >>> bgr[..., 0] = 255  # blue in OpenCV's order
    >>> rgb = load_image(bgr)
    >>> rgb.shape, rgb[0, 0].tolist()
    ((4, 6, 3), [0, 0, 255])
    >>> load_image(np.full((4, 6), 0.5)).dtype  # grayscale float in [0, 1]
    dtype('uint8')
    >>> img = load_image("face.jpg")  # doctest: +SKIP
    """
    if color not in _COLORS:
        raise InvalidArgumentError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if isinstance(img, np.ndarray):
        return _from_array(img, color)
    if isinstance(img, (str, os.PathLike)):
        return _from_bytes(_read_file(img), max_pixels, source=str(img))
    if isinstance(img, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(img), max_pixels, source="<bytes>")
    if _is_pil(img):
        return _from_pil(img, source="<PIL image>")
    raise InvalidImageError(
        f"unsupported image input of type {type(img).__name__}: expected a path, encoded "
        "bytes, a numpy array or a PIL image"
    )


def describe(img: ImageInput) -> str:
    """Short human-readable name of an input, for reports and error messages."""
    if isinstance(img, (str, os.PathLike)):
        return str(img)
    if isinstance(img, np.ndarray):
        return f"<array {img.shape} {img.dtype}>"
    if isinstance(img, (bytes, bytearray, memoryview)):
        return f"<{len(img)} bytes>"
    return f"<{type(img).__name__}>"


def _read_file(path: str | os.PathLike) -> bytes:
    p = Path(path)
    try:
        if p.is_dir():
            raise ImageDecodeError(f"{p} is a directory, not an image file")
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageNotFoundError(f"image file not found: {p}") from None
    except PermissionError:
        raise ImageDecodeError(f"image file not readable (permission denied): {p}") from None
    except OSError as exc:
        raise ImageDecodeError(f"cannot read image file {p}: {exc.strerror or exc}") from None
    except ImageDecodeError:
        raise
    except ValueError as exc:  # e.g. an embedded NUL byte in the path
        raise ImageDecodeError(f"invalid image file path {str(p)!r}: {exc}") from None
    return data


def _is_pil(img: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a hard dependency
        return False
    return isinstance(img, Image.Image)


def _from_bytes(data: bytes, max_pixels: int, source: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise ImageDecodeError(f"{source}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # we apply our own size limit below; Pillow's warning would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            pil = Image.open(_io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{source}: not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"{source}: refused, image too large ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on corrupt headers
        raise ImageDecodeError(f"{source}: cannot decode image header ({exc})") from None
    w, h = pil.size
    if w <= 0 or h <= 0:
        raise InvalidImageError(f"{source}: image header declares size {w}x{h}")
    if w * h > max_pixels:
        raise InvalidImageError(
            f"{source}: refused, {w}x{h} = {w * h} pixels exceeds max_pixels={max_pixels} "
            "(possible decompression bomb; pass a larger max_pixels if this image is genuine)"
        )
    try:
        pil.load()
    except Exception as exc:  # noqa: BLE001 - truncated data raises OSError, others vary
        raise ImageDecodeError(f"{source}: corrupt or truncated image data ({exc})") from None
    return _from_pil(pil, source)


def _from_pil(pil: Any, source: str) -> np.ndarray:
    from PIL import ImageOps

    w, h = pil.size
    if w <= 0 or h <= 0:
        raise InvalidImageError(f"{source}: empty image ({w}x{h})")
    try:
        pil = ImageOps.exif_transpose(pil)  # returns a copy; the caller's image is untouched
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the pixels
        pass
    mode = pil.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(pil)
        if mode == "I" and arr.max(initial=0) <= 255:
            gray = arr.astype(np.uint8)
        else:
            gray = (arr.astype(np.float32) / 257.0 + 0.5).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        return _from_array(np.asarray(pil, dtype=np.float32), "rgb")
    if mode != "RGB":
        # RGBA/LA/PA drop alpha; CMYK/YCbCr/P/L/1 are converted by Pillow's colour maths.
        pil = pil.convert("RGB")
    return np.array(pil, dtype=np.uint8, copy=True, order="C")


def _from_array(arr: np.ndarray, color: str) -> np.ndarray:
    if arr.size == 0 or 0 in arr.shape:
        raise InvalidImageError(f"empty image array of shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        channels = 1
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        channels = arr.shape[2]
    else:
        raise InvalidImageError(
            f"image array has shape {arr.shape}; expected (H, W), (H, W, 1), (H, W, 3) or "
            "(H, W, 4). For a batch, pass a list of images."
        )
    arr8 = _to_uint8(arr)
    if channels == 1:
        out = np.repeat(arr8[..., None], 3, axis=2)
    else:
        rgb = arr8[..., :3]
        out = rgb[..., ::-1] if color == "bgr" else rgb
    # always a fresh buffer: a view would let later in-place work reach the caller's array
    return np.array(out, dtype=np.uint8, copy=True, order="C")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    dt = arr.dtype
    if dt == np.uint8:
        return arr
    if dt == np.uint16:
        return (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if dt in (np.float16, np.float32, np.float64):
        if not np.isfinite(arr).all():
            raise InvalidImageError("image array contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidImageError(
                f"float image array must have values in [0, 1] (got [{lo:.3g}, {hi:.3g}]); "
                "for 0-255 data convert with arr.astype(np.uint8)"
            )
        return (arr.astype(np.float32) * 255.0 + 0.5).astype(np.uint8)
    raise InvalidImageError(
        f"unsupported image dtype {dt}; expected uint8, uint16 or float in [0, 1]"
    )


def sample_image() -> np.ndarray:
    """The bundled sample face: scikit-image's ``astronaut`` (Eileen Collins, NASA, public
    domain), a ``(512, 512, 3)`` uint8 **RGB** array (pass ``color="rgb"`` to the gate).

    ``fiqa assess`` with no image scores it; ``fiqa export onnx`` checks the exported graph on it.

    Examples
    --------
    >>> from fiqa_sdk.io import sample_image
    >>> img = sample_image()
    >>> img.shape, img.dtype
    ((512, 512, 3), dtype('uint8'))
    """
    from skimage.data import astronaut

    return astronaut()
