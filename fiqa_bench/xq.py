"""``lfw-xq``: a cross-quality LFW (in the spirit of XQLFW), built from LFW by a fixed,
versioned, deterministic degradation distribution.

Every LFW image is, decided **from its relative file name only** (``"Name/Name_0001.jpg"``),
either left as it is (probability :data:`P_DEGRADE` = 0.5 of being degraded) or degraded by a
realistic capture chain of random strength. The random source of an image is a numpy
``Generator(PCG64(seed))`` with ``seed`` = the first 16 bytes (big-endian) of
``sha256("lfw-xq/<XQ_VERSION>/<relative path>")``: no Python ``hash()``, no global state, so the
same file gets the same degradation in every run and on every machine.

Distribution of version ``v1`` (a degraded image; the components are applied in this order,
each with its probability, strengths uniform over the ranges; see :data:`XQ_SPEC`):

==============  ===========  ===============================================================
component       probability  strength
==============  ===========  ===============================================================
exposure        0.3          gain of ``2**ev`` in (approximately) linear light (sRGB as gamma
                             2.2), ``ev`` uniform in [-2, +1.5] stops (under- or over-exposure,
                             clipped highlights)
blur            0.6          Gaussian (half of the blurred images), ``sigma`` uniform in
                             [0.5, 3.0] px, or linear motion blur, length uniform in [3, 15] px,
                             angle uniform in [0, 180) degrees (at the 250x250 resolution)
resolution      1.0          down-scaling so that the inter-eye distance becomes ``d`` uniform
                             in [10, 40] px, from the nominal LFW deep-funneled inter-eye
                             distance :data:`NOMINAL_EYE_DIST` = 42 px (scale ``d / 42``), with
                             Pillow box / bilinear / bicubic (uniform), then back up to the
                             original size with nearest / bilinear / bicubic (uniform)
noise           0.5          additive Gaussian sensor noise at the low resolution, ``sigma``
                             uniform in [2, 20] (of 255); per-channel (colour) or luminance-only
                             (grey) noise, 50/50
jpeg            0.6          JPEG at the low resolution, quality uniform in {10, ..., 40}
                             (Pillow, 4:2:0 chroma subsampling)
==============  ===========  ===============================================================

(The order: exposure and optical blur happen before the sensor samples, noise at the sensor
resolution, compression of the small image, and the up-scaling by whoever displays it.)

**Severity** of an image, in [0, 1]: the mean over the five components of their normalised
strengths, a component not applied counting 0: exposure ``-ev / 2`` (under) or ``ev / 1.5``
(over); blur ``(sigma - 0.5) / 2.5`` or ``(length - 3) / 12``; resolution ``(40 - d) / 30``;
noise ``(sigma - 2) / 18``; JPEG ``(40 - q) / 30``. A clean image has severity 0.

**Storage.** :func:`build_lfw_xq` writes every image, degraded or not, as a JPEG of quality 95
(4:4:4, Pillow) under the original name, so the folder has LFW's layout
(``images/<Name>/<Name>_NNNN.jpg`` + ``pairs.txt``) and
:func:`~fiqa_sdk.eval.protocols.read_lfw_pairs` and
:func:`~fiqa_sdk.eval.protocols.lfw_all_vs_all` work on it unchanged. The clean half is
re-encoded the same way, so the final encoding does not tell the two halves apart.

**Determinism.** Blur and noise are computed in numpy float64 with kernels built with Python's
``math``; exposure is a 256-entry lookup table; resizing and JPEG use Pillow's fixed-point code
paths. The pinned checksums of ``tests/test_xq.py`` hold for a given numpy (PCG64 stream),
Pillow and libjpeg(-turbo); ``params.csv`` records every drawn parameter, so the set can be
re-derived even if one of these changes its output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from fiqa_sdk.errors import FiqaError

XQ_VERSION = "v1"

#: Probability that an image is degraded (else it is left as it is).
P_DEGRADE = 0.5
#: Nominal inter-eye distance of an LFW deep-funneled 250x250 image, pixels; the down-scaling
#: factor is ``d / 42`` for every image. (RetinaFace eye landmarks of the 7,701 pairs.txt
#: images: median 43.2 px, quartiles 40.9-45.3 px, 5-95 % 36.7-48.8 px.)
NOMINAL_EYE_DIST = 42.0
#: Quality of the final JPEG every image (degraded or not) is stored with.
FINAL_JPEG_QUALITY = 95

#: The distribution (probabilities and ranges); stored in the build manifest.
XQ_SPEC: dict[str, Any] = {
    "version": XQ_VERSION,
    "p_degrade": P_DEGRADE,
    "nominal_eye_dist_px": NOMINAL_EYE_DIST,
    "exposure": {"p": 0.3, "ev": [-2.0, 1.5]},
    "blur": {"p": 0.6, "p_motion": 0.5, "gaussian_sigma": [0.5, 3.0],
             "motion_length": [3.0, 15.0], "motion_angle_deg": [0.0, 180.0]},
    "resolution": {"p": 1.0, "eye_dist_px": [10.0, 40.0],
                   "down_interp": ["box", "bilinear", "bicubic"],
                   "up_interp": ["nearest", "bilinear", "bicubic"]},
    "noise": {"p": 0.5, "sigma": [2.0, 20.0], "p_grey": 0.5},
    "jpeg": {"p": 0.6, "quality": [10, 40], "subsampling": "4:2:0"},
    "final_jpeg": {"quality": FINAL_JPEG_QUALITY, "subsampling": "4:4:4"},
}

_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
             "bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}

#: Columns of ``params.csv`` (after ``file``).
PARAM_FIELDS = ("degraded", "severity", "exposure_ev", "blur", "blur_sigma", "motion_length",
                "motion_angle", "eye_dist_px", "scale", "down_interp", "up_interp",
                "noise_sigma", "noise_mode", "jpeg_quality")


def _relpath(relpath: str | Path) -> str:
    rel = Path(relpath).as_posix()
    parts = rel.split("/")
    if len(parts) < 2 or not parts[-1]:
        raise FiqaError(f"lfw-xq: expected a relative path 'Name/Name_NNNN.jpg', got {relpath!r}")
    return "/".join(parts[-2:])


def xq_seed(relpath: str | Path) -> int:
    """The 128-bit seed of an image: sha256 of ``"lfw-xq/<version>/<Name/Name_NNNN.jpg>"``."""
    digest = hashlib.sha256(f"lfw-xq/{XQ_VERSION}/{_relpath(relpath)}".encode()).digest()
    return int.from_bytes(digest[:16], "big")


def _rng(relpath: str | Path) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(xq_seed(relpath)))


def _uniform(rng: np.random.Generator, lo_hi) -> float:
    lo, hi = lo_hi
    return float(lo + (hi - lo) * rng.random())


def xq_params(relpath: str | Path) -> dict[str, Any]:
    """The degradation parameters of one image, from its relative path only (no image I/O).

    Returns the keys of :data:`PARAM_FIELDS`; parameters of a component not applied are
    ``None``. All parameters are drawn in a fixed order whether or not their component is
    applied, so the stream does not depend on earlier outcomes.
    """
    rng = _rng(relpath)
    p: dict[str, Any] = dict.fromkeys(PARAM_FIELDS)
    p["degraded"] = bool(rng.random() < P_DEGRADE)
    if not p["degraded"]:
        p["severity"] = 0.0
        p["blur"] = "none"
        return p
    s = XQ_SPEC
    # fixed draw order: exposure, blur, resolution, noise, jpeg
    use_exp = rng.random() < s["exposure"]["p"]
    ev = _uniform(rng, s["exposure"]["ev"])
    use_blur = rng.random() < s["blur"]["p"]
    motion = rng.random() < s["blur"]["p_motion"]
    sigma = _uniform(rng, s["blur"]["gaussian_sigma"])
    length = _uniform(rng, s["blur"]["motion_length"])
    angle = _uniform(rng, s["blur"]["motion_angle_deg"])
    use_res = rng.random() < s["resolution"]["p"]
    eye = _uniform(rng, s["resolution"]["eye_dist_px"])
    down = s["resolution"]["down_interp"][int(rng.integers(0, 3))]
    up = s["resolution"]["up_interp"][int(rng.integers(0, 3))]
    use_noise = rng.random() < s["noise"]["p"]
    nsigma = _uniform(rng, s["noise"]["sigma"])
    grey = rng.random() < s["noise"]["p_grey"]
    use_jpeg = rng.random() < s["jpeg"]["p"]
    qlo, qhi = s["jpeg"]["quality"]
    quality = int(rng.integers(qlo, qhi + 1))

    strengths = []
    if use_exp:
        p["exposure_ev"] = ev
        strengths.append(-ev / -s["exposure"]["ev"][0] if ev < 0 else ev / s["exposure"]["ev"][1])
    else:
        strengths.append(0.0)
    if use_blur and motion:
        p["blur"], p["motion_length"], p["motion_angle"] = "motion", length, angle
        lo, hi = s["blur"]["motion_length"]
        strengths.append((length - lo) / (hi - lo))
    elif use_blur:
        p["blur"], p["blur_sigma"] = "gaussian", sigma
        lo, hi = s["blur"]["gaussian_sigma"]
        strengths.append((sigma - lo) / (hi - lo))
    else:
        p["blur"] = "none"
        strengths.append(0.0)
    if use_res:
        p["eye_dist_px"], p["scale"] = eye, eye / NOMINAL_EYE_DIST
        p["down_interp"], p["up_interp"] = down, up
        lo, hi = s["resolution"]["eye_dist_px"]
        strengths.append((hi - eye) / (hi - lo))
    else:
        strengths.append(0.0)
    if use_noise:
        p["noise_sigma"], p["noise_mode"] = nsigma, "grey" if grey else "colour"
        lo, hi = s["noise"]["sigma"]
        strengths.append((nsigma - lo) / (hi - lo))
    else:
        strengths.append(0.0)
    if use_jpeg:
        p["jpeg_quality"] = quality
        strengths.append((qhi - quality) / (qhi - qlo))
    else:
        strengths.append(0.0)
    p["severity"] = float(sum(strengths) / len(strengths))
    return p


# ---------------------------------------------------------------------------------------------
# The operations (deterministic: float64 numpy with math-built kernels, Pillow fixed point)
# ---------------------------------------------------------------------------------------------

def _exposure(img: np.ndarray, ev: float) -> np.ndarray:
    gain = 2.0 ** ev
    lut = np.array([min(255, max(0, int(math.floor(
        255.0 * min(1.0, ((i / 255.0) ** 2.2) * gain) ** (1 / 2.2) + 0.5)))) for i in range(256)],
        dtype=np.uint8)
    return lut[img]


def _gaussian_taps(sigma: float) -> list[float]:
    r = int(math.ceil(3 * sigma))
    w = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-r, r + 1)]
    t = math.fsum(w)
    return [x / t for x in w]


def _motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A line of ``length`` px at ``angle_deg``, centred, bilinearly splatted, sums to 1."""
    r = int(math.ceil(length / 2)) + 1
    k = [[0.0] * (2 * r + 1) for _ in range(2 * r + 1)]
    n = 4 * int(math.ceil(length)) + 1
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    for i in range(n):
        t = (i / (n - 1) - 0.5) * length
        x, y = r + t * c, r - t * s
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= y0 + dy <= 2 * r and 0 <= x0 + dx <= 2 * r:
                    k[y0 + dy][x0 + dx] += wx * wy
    arr = np.array(k, dtype=np.float64)
    return arr / math.fsum(arr.ravel().tolist())


def _convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation of an (H, W, C) float64 image with a small kernel, reflect borders,
    as a fixed-order sum of shifted copies (deterministic)."""
    kh, kw = kernel.shape
    ry, rx = kh // 2, kw // 2
    pad = np.pad(x, ((ry, ry), (rx, rx), (0, 0)), mode="reflect")
    h, w = x.shape[:2]
    out = np.zeros_like(x)
    for i in range(kh):
        for j in range(kw):
            wgt = float(kernel[i, j])
            if wgt != 0.0:
                out += wgt * pad[i : i + h, j : j + w]
    return out


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    taps = np.array(_gaussian_taps(sigma), dtype=np.float64)
    x = _convolve(x, taps[None, :])
    return _convolve(x, taps[:, None])


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _resize(img: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize(size, resample=_RESAMPLE[method]))


def _jpeg_bytes(img: np.ndarray, quality: int, subsampling: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality), subsampling=subsampling,
                              optimize=False, progressive=False)
    return buf.getvalue()


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    data = _jpeg_bytes(img, quality, subsampling=2)  # 4:2:0
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def apply_xq(img: np.ndarray, params: dict[str, Any], relpath: str | Path) -> np.ndarray:
    """Apply the degradation described by ``params`` (from :func:`xq_params`) to an RGB uint8
    image; ``relpath`` seeds the noise field. A clean image is returned as a copy."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise FiqaError(
            f"lfw-xq: expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    if not params["degraded"]:
        return img.copy()
    h, w = img.shape[:2]
    x = img
    if params["exposure_ev"] is not None:
        x = _exposure(x, params["exposure_ev"])
    if params["blur"] == "gaussian":
        x = _to_u8(_gaussian_blur(x.astype(np.float64), params["blur_sigma"]))
    elif params["blur"] == "motion":
        k = _motion_kernel(params["motion_length"], params["motion_angle"])
        x = _to_u8(_convolve(x.astype(np.float64), k))
    if params["scale"] is not None:
        size = (max(8, int(round(w * params["scale"]))), max(8, int(round(h * params["scale"]))))
        x = _resize(x, size, params["down_interp"])
    if params["noise_sigma"] is not None:
        # The noise field's own stream: sha256-seeded like the parameters, with a suffix.
        nrng = np.random.Generator(np.random.PCG64(xq_seed(relpath) ^ 0x6E6F697365))
        shape = x.shape[:2] + ((1,) if params["noise_mode"] == "grey" else (3,))
        noise = nrng.standard_normal(shape) * params["noise_sigma"]
        x = _to_u8(x.astype(np.float64) + noise)
    if params["jpeg_quality"] is not None:
        x = _jpeg(x, params["jpeg_quality"])
    if x.shape[:2] != (h, w):
        x = _resize(x, (w, h), params["up_interp"])
    return np.ascontiguousarray(x, dtype=np.uint8)


def degrade_xq(img: np.ndarray, relpath: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``lfw-xq`` version of one image: ``(degraded uint8 RGB image, parameters)``.

    The parameters (and whether the image is degraded at all) depend only on ``relpath``,
    e.g. ``"Aaron_Eckhart/Aaron_Eckhart_0001.jpg"`` (only its last two components are used).
    The returned image is before the final quality-95 storage JPEG of :func:`build_lfw_xq`.
    """
    params = xq_params(relpath)
    return apply_xq(img, params, relpath), params


# ---------------------------------------------------------------------------------------------
# Building the folder
# ---------------------------------------------------------------------------------------------

def lfw_xq_root(cache_dir: str | Path) -> Path:
    """Where :func:`build_lfw_xq` puts the set: ``cache_dir / "lfw-xq-<XQ_VERSION>"``."""
    return Path(cache_dir) / f"lfw-xq-{XQ_VERSION}"


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(round(v, 6))
    return str(v)


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``path`` (text as UTF-8) through a temporary file beside it and a rename, so that a
    reader never sees half a file and an interrupted build leaves the old one."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_set_index(out: Path, files: dict[str, str], row: Any, fields: tuple[str, ...],
                    manifest: dict[str, Any]) -> None:
    """``out/params.csv`` (``file`` and ``fields``, one row per file: ``row(relpath)``) and
    ``out/manifest.json`` (``manifest`` plus ``n_images`` and each file's sha256) of a derived
    copy of LFW (lfw-xq, lfw-occ), each written with :func:`atomic_write`."""
    buf = io.StringIO(newline="")
    wr = csv.writer(buf)
    wr.writerow(("file",) + tuple(fields))
    for rel in sorted(files):
        wr.writerow([rel] + list(row(rel)))
    atomic_write(out / "params.csv", buf.getvalue())
    atomic_write(out / "manifest.json", json.dumps(
        {**manifest, "n_images": len(files), "files": dict(sorted(files.items()))}, indent=1))


def build_lfw_xq(lfw_root: str | Path, cache_dir: str | Path, relpaths: Iterable[str] | None = None,
                 progress: bool = False) -> Path:
    """Build (or complete) ``lfw-xq`` from an LFW folder and return its root.

    ``lfw_root`` has LFW's layout (``images/<Name>/<Name>_NNNN.jpg``, optionally
    ``pairs.txt``); ``relpaths`` restricts the build to some images (``"Name/Name_NNNN.jpg"``),
    default all. Writes under :func:`lfw_xq_root` ``(cache_dir)``:

    - ``images/<Name>/<Name>_NNNN.jpg``: every image, degraded or not, as JPEG quality 95;
    - ``pairs.txt``: a copy of the source's (the file names are unchanged);
    - ``params.csv``: ``file`` + :data:`PARAM_FIELDS`, one row per image, sorted;
    - ``manifest.json``: version, the distribution :data:`XQ_SPEC`, sha256 of every image.

    Idempotent: an image whose file exists with the checksum recorded in the manifest is not
    recomputed; one missing, unrecorded or altered is (re)written. A manifest of another
    distribution is an error (delete the folder or use another ``cache_dir``).

    Raises:
        FiqaError: no ``images`` folder, output inside ``lfw_root``, manifest mismatch.
    """
    src = Path(lfw_root)
    if not (src / "images").is_dir():
        raise FiqaError(f"lfw-xq: LFW images folder not found: {src / 'images'}")
    out = lfw_xq_root(cache_dir)
    if out.resolve().is_relative_to(src.resolve()):
        raise FiqaError(f"lfw-xq: refusing to write inside the source LFW folder ({out})")
    manifest_path = out / "manifest.json"
    files: dict[str, str] = {}
    if manifest_path.is_file():
        man = json.loads(manifest_path.read_text())
        if man.get("version") != XQ_VERSION or man.get("spec") != json.loads(json.dumps(XQ_SPEC)):
            raise FiqaError(
                f"lfw-xq: {manifest_path} was built with another distribution "
                f"({man.get('version')!r}); delete {out} or use another cache_dir")
        files = dict(man.get("files", {}))
    if relpaths is None:
        rels = sorted(f"{d.name}/{f.name}" for d in (src / "images").iterdir()
                      if d.is_dir() and not d.name.startswith(".")
                      for f in d.iterdir() if f.is_file() and f.suffix.lower() == ".jpg"
                      and not f.name.startswith("."))
    else:
        rels = sorted({_relpath(r) for r in relpaths})
    if not rels:
        raise FiqaError(f"lfw-xq: no images under {src / 'images'}")
    (out / "images").mkdir(parents=True, exist_ok=True)
    it = rels
    if progress:
        try:
            from tqdm import tqdm

            it = tqdm(rels, desc="lfw-xq", unit="img")
        except ImportError:  # pragma: no cover
            pass
    for rel in it:
        dst = out / "images" / rel
        if dst.is_file() and files.get(rel) == _sha256_file(dst):
            continue
        img = np.asarray(Image.open(src / "images" / rel).convert("RGB"))
        deg, _ = degrade_xq(img, rel)
        data = _jpeg_bytes(deg, FINAL_JPEG_QUALITY, subsampling=0)  # 4:4:4
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dst, data)
        files[rel] = hashlib.sha256(data).hexdigest()
    if (src / "pairs.txt").is_file():
        shutil.copyfile(src / "pairs.txt", out / "pairs.txt")
    write_set_index(out, files, lambda rel: [_fmt(v) for v in map(xq_params(rel).get, PARAM_FIELDS)],
                    PARAM_FIELDS, {"version": XQ_VERSION, "spec": XQ_SPEC, "source": str(src)})
    return out


def read_xq_params(root: str | Path) -> dict[str, dict[str, str]]:
    """``params.csv`` of a built set: ``{relative path: {column: value string}}``."""
    path = Path(root) / "params.csv"
    if not path.is_file():
        raise FiqaError(f"lfw-xq: {path} not found (build the set with build_lfw_xq)")
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}
