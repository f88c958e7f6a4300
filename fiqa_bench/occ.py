"""``lfw-occ``: occluded and pose-warped probe copies of LFW images (dev suite, cross-quality).

Every image gets a **probe copy** (the originals are the high-quality gallery of the dev
suite's cross-quality sets). The degradation of an image is decided from its relative file name
only: numpy ``Generator(PCG64(seed))`` with ``seed`` = the first 16 bytes of
``sha256("lfw-occ/<OCC_VERSION>/<Name/Name_NNNN.jpg>")``, parameters drawn in a fixed order
whether or not their component is applied (as :mod:`fiqa_bench.xq`).

Geometry: LFW deep-funneled faces sit at nearly the same place in the 250x250 image. The
occluders are placed relative to :data:`NOMINAL_LANDMARKS` (median RetinaFace landmarks of
LFW deep-funneled: eyes at (104, 113) and (146, 112), nose (126, 138), mouth corners (108, 156)
and (143, 156)), jittered by a few pixels.

Distribution ``v1`` (components in this order):

==============  ===========  ===============================================================
component       probability  what
==============  ===========  ===============================================================
occlusion       0.7          one of (uniformly): **sunglasses** (two dark ellipses over the
                             eyes, 15-21 x 10-14 px half-axes, and a bridge; near-black or
                             tinted, opacity 0.85-1), **mask** (a face mask from just below
                             the eyes, 14-24 px above the nose tip, to below the chin,
                             light blue / white / black, with a soft vertical shading),
                             **hand** (a skin-toned ellipse of half-axes 30-55 x 40-70 px over
                             the lower or a lateral part of the face), **cap** (a cap over the
                             head down to 2-12 px above the eyes, 62-74 px to each side of
                             the nose, with a brim shadow)
pose            0.6          yaw-like re-projection: the image is mapped onto a vertical
                             cylinder of radius 60-75 px around the face's axis and turned by
                             15-40 degrees (left or right), so one half of the face is
                             compressed and partly self-occluded, the other stretched
resolution      0.4          down-scaling to an inter-eye distance of 14-40 px (bilinear) and
                             back up (bicubic)
jpeg            0.4          JPEG quality 20-60 at the low resolution (Pillow, 4:2:0)
==============  ===========  ===============================================================

An image with neither an occlusion nor a pose warp drawn gets the occlusion anyway (every
probe is occluded or turned). The occluder is drawn on the frontal face, then the pose warp
turns face and occluder together. Severity is not defined; ``params.csv`` lists every drawn
parameter. Stored as JPEG quality 95 (4:4:4) under the original name in
``<cache>/lfw-occ-v1/images/`` with a ``manifest.json`` of sha256 checksums.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from fiqa_sdk.errors import FiqaError

from .xq import atomic_write, write_set_index

OCC_VERSION = "v1"
FINAL_JPEG_QUALITY = 95
#: Median RetinaFace landmarks of LFW deep-funneled (x, y): eyes, nose, mouth corners.
NOMINAL_LANDMARKS = ((104.0, 113.0), (146.0, 112.0), (126.0, 138.0), (108.0, 156.0),
                     (143.0, 156.0))
NOMINAL_EYE_DIST = 42.0
OCCLUDERS = ("sunglasses", "mask", "hand", "cap")
OCC_SPEC = {
    "version": OCC_VERSION,
    "occlusion": {"p": 0.7, "kinds": list(OCCLUDERS)},
    "pose": {"p": 0.6, "yaw_deg": [15, 40], "radius_px": [60, 75]},
    "resolution": {"p": 0.4, "eye_dist_px": [14, 40]},
    "jpeg": {"p": 0.4, "quality": [20, 60]},
    "final_jpeg_quality": FINAL_JPEG_QUALITY,
}
PARAM_FIELDS = ("occluder", "occ_dx", "occ_dy", "occ_a", "occ_b", "occ_opacity", "occ_r",
                "occ_g", "occ_bl", "pose", "yaw_deg", "radius_px", "eye_dist_px", "jpeg_quality")


def _relpath(relpath: str | Path) -> str:
    parts = Path(relpath).as_posix().split("/")
    if len(parts) < 2 or not parts[-1]:
        raise FiqaError(f"lfw-occ: expected a relative path 'Name/Name_NNNN.jpg', got {relpath!r}")
    return "/".join(parts[-2:])


def _rng(relpath: str | Path) -> np.random.Generator:
    d = hashlib.sha256(f"lfw-occ/{OCC_VERSION}/{_relpath(relpath)}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(d[:16], "big")))


def occ_params(relpath: str | Path) -> dict[str, Any]:
    """The degradation parameters of one image, from its relative path only."""
    rng = _rng(relpath)
    u = rng.random(12)  # fixed draw order
    occ = u[0] < 0.7
    kind = OCCLUDERS[min(int(u[1] * 4), 3)]
    pose = u[2] < 0.6
    if not occ and not pose:
        occ = True
    sign = 1.0 if u[3] < 0.5 else -1.0
    p: dict[str, Any] = {
        "occluder": kind if occ else "",
        "occ_dx": float(-6 + 12 * u[4]), "occ_dy": float(-4 + 8 * u[5]),
        "occ_a": float(u[6]), "occ_b": float(u[7]),
        "occ_opacity": float(0.85 + 0.15 * u[8]),
        "pose": bool(pose),
        "yaw_deg": float(sign * (15 + 25 * u[9])),
        "radius_px": float(60 + 15 * u[10]),
    }
    col = rng.random(3)
    p["occ_r"], p["occ_g"], p["occ_bl"] = (float(c) for c in col)
    v = rng.random(4)
    p["eye_dist_px"] = float(14 + 26 * v[1]) if v[0] < 0.4 else 0.0
    p["jpeg_quality"] = int(20 + min(int(v[3] * 41), 40)) if v[2] < 0.4 else 0
    return p


def _ellipse_mask(h: int, w: int, cx: float, cy: float, ax: float, ay: float,
                  soft: float = 1.5) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return np.clip((1.0 - r) * min(ax, ay) / soft + 0.5, 0.0, 1.0)


def _occlude(x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    h, w = x.shape[:2]
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = NOMINAL_LANDMARKS
    dx, dy, a, b, op = p["occ_dx"], p["occ_dy"], p["occ_a"], p["occ_b"], p["occ_opacity"]
    cr, cg, cb = p["occ_r"], p["occ_g"], p["occ_bl"]
    kind = p["occluder"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "sunglasses":
        ax_, ay_ = 15 + 6 * a, 10 + 4 * b
        m = np.maximum(_ellipse_mask(h, w, lx + dx, ly + dy, ax_, ay_),
                       _ellipse_mask(h, w, rx + dx, ry + dy, ax_, ay_))
        bridge = ((np.abs(yy - (ly + dy - 2)) < 2) & (xx > lx + dx) & (xx < rx + dx)).astype(float)
        m = np.maximum(m, bridge)
        colour = np.array([20 + 40 * cr, 20 + 40 * cg, 20 + 40 * cb])[None, None]
        shade = 1.0 + 0.25 * np.exp(-((xx - lx - dx + 5) ** 2 + (yy - ly - dy + 4) ** 2) / 18)
        fill = colour * shade[..., None]
    elif kind == "mask":
        top = ny - 14 - 10 * a + dy
        bottom = mly + 40 + 10 * b
        half = 52 + 8 * b
        cx = nx + dx
        # a rounded trapezoid: narrower at the top, rounded at the chin
        t = np.clip((yy - top) / (bottom - top), 0, 1)
        width = half * (0.85 + 0.15 * np.sin(np.pi * np.minimum(t * 1.6, 1)))
        inside = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= width * (1 - 0.35 * t ** 4))
        m = inside.astype(float)
        m = np.clip(m, 0, 1)
        palette = [np.array([150, 190, 220]), np.array([235, 235, 235]), np.array([35, 35, 40])]
        base = palette[min(int(cr * 3), 2)] + 15 * (cg - 0.5)
        shade = 0.85 + 0.15 * np.cos(np.clip((yy - top) / (bottom - top), 0, 1) * np.pi)
        shade = shade * (1 - 0.25 * ((xx - cx) / (half + 1)) ** 2)
        fill = base[None, None] * shade[..., None]
    elif kind == "hand":
        # lower face (mouth/chin) or one side of the face
        if a < 0.5:
            cx, cy = (mlx + mrx) / 2 + 30 * (b - 0.5) + dx, mly + 10 + dy
        else:
            side = -1 if b < 0.5 else 1
            cx, cy = nx + side * (38 + 10 * b) + dx, ny + dy
        m = _ellipse_mask(h, w, cx, cy, 30 + 25 * a, 40 + 30 * b, soft=3.0)
        skin = np.array([225, 180, 150]) * (0.55 + 0.45 * cr) + np.array([0, 10, 15]) * cg
        shade = 0.85 + 0.15 * np.clip(1 - ((xx - cx) ** 2 + (yy - cy) ** 2) / 4000, 0, 1)
        fill = skin[None, None] * shade[..., None]
    elif kind == "cap":
        half = 62 + 12 * b
        edge = (ly + ry) / 2 - 2 - 10 * a + dy + 10 * ((xx - nx - dx) / half) ** 2
        m = np.clip(edge - yy + 0.5, 0, 1) * np.clip(half - np.abs(xx - nx - dx) + 0.5, 0, 1)
        colour = np.array([25 + 90 * cr, 25 + 90 * cg, 25 + 90 * cb])
        fill = np.broadcast_to(colour[None, None], x.shape).astype(np.float64)
        shadow = np.clip(1 - (yy - edge) / 10, 0, 1) * (yy > edge) * (np.abs(xx - nx - dx) < half)
        x = x * (1 - 0.45 * shadow[..., None])
    else:
        return x
    m = (m * op)[..., None]
    return x * (1 - m) + np.clip(fill, 0, 255) * m


def _yaw(x: np.ndarray, yaw_deg: float, radius: float) -> np.ndarray:
    """Turn the image on a vertical cylinder around the face axis by ``yaw_deg`` (bilinear)."""
    h, w = x.shape[:2]
    cx = NOMINAL_LANDMARKS[2][0]
    th = math.radians(yaw_deg)
    xo = np.arange(w, dtype=np.float64) - cx
    u = xo / radius
    inside = np.abs(u) < 1
    xs = np.empty(w)
    phi = np.arcsin(np.clip(u, -1, 1)) - th
    xs[inside] = radius * np.sin(np.clip(phi[inside], -np.pi / 2, np.pi / 2))
    # outside the cylinder: shifted so that the mapping is continuous at its edges
    edge_r, edge_l = radius * math.sin(np.pi / 2 - th), radius * math.sin(-np.pi / 2 - th)
    xs[(~inside) & (xo > 0)] = xo[(~inside) & (xo > 0)] - radius + edge_r
    xs[(~inside) & (xo < 0)] = xo[(~inside) & (xo < 0)] + radius + edge_l
    src = np.clip(xs + cx, 0, w - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, w - 1)
    f = (src - i0)[None, :, None]
    return x[:, i0] * (1 - f) + x[:, i1] * f


def apply_occ(img: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Apply the drawn degradation to an RGB uint8 image (returns uint8)."""
    x = img.astype(np.float64)
    if params["occluder"]:
        x = _occlude(x, params)
    if params["pose"]:
        x = _yaw(x, params["yaw_deg"], params["radius_px"])
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    d = params["eye_dist_px"]
    q = params["jpeg_quality"]
    if d or q:
        im = Image.fromarray(out)
        if d:
            s = d / NOMINAL_EYE_DIST
            im = im.resize((max(8, round(w * s)), max(8, round(h * s))), Image.Resampling.BILINEAR)
        if q:
            import io

            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=int(q), subsampling=2)
            im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        if d:
            im = im.resize((w, h), Image.Resampling.BICUBIC)
        out = np.asarray(im)
    return out


def lfw_occ_root(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / f"lfw-occ-{OCC_VERSION}"


def build_lfw_occ(lfw_root: str | Path, cache_dir: str | Path,
                  relpaths: Iterable[str]) -> Path:
    """Write the probe copies of ``relpaths`` (``"Name/Name_NNNN.jpg"``) under
    :func:`lfw_occ_root` ``(cache_dir)``; idempotent (files whose checksum matches the manifest
    are kept). Returns the root (``<root>/images/<Name>/<file>``)."""
    import io

    src = Path(lfw_root) / "images"
    if not src.is_dir():
        raise FiqaError(f"lfw-occ: LFW images folder not found: {src}")
    out = lfw_occ_root(cache_dir)
    man_path = out / "manifest.json"
    files: dict[str, str] = {}
    if man_path.is_file():
        man = json.loads(man_path.read_text())
        if man.get("spec") != json.loads(json.dumps(OCC_SPEC)):
            raise FiqaError(f"lfw-occ: {man_path} was built with another distribution; "
                            f"delete {out} or use another cache folder")
        files = dict(man.get("files", {}))
    rels = sorted({_relpath(r) for r in relpaths})
    changed = False
    for rel in rels:
        dst = out / "images" / rel
        if dst.is_file() and rel in files and \
                hashlib.sha256(dst.read_bytes()).hexdigest() == files[rel]:
            continue
        img = np.asarray(Image.open(src / rel).convert("RGB"))
        buf = io.BytesIO()
        Image.fromarray(apply_occ(img, occ_params(rel))).save(
            buf, format="JPEG", quality=FINAL_JPEG_QUALITY, subsampling=0)
        data = buf.getvalue()
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dst, data)
        files[rel] = hashlib.sha256(data).hexdigest()
        changed = True
    if changed or not man_path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        write_set_index(out, files, lambda rel: map(occ_params(rel).get, PARAM_FIELDS),
                        PARAM_FIELDS, {"version": OCC_VERSION, "spec": OCC_SPEC})
    return out
