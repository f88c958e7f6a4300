"""Result types shared by every stage of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

#: Why an image (a face of it) was not accepted, as in :attr:`QualityReport.reason`.
Reason = Literal["no_face", "not_found", "decode_error", "invalid_input", "alignment_error",
                 "below_threshold", "discarded"]
#: Every :data:`Reason`, in that order.
REASONS: tuple[str, ...] = get_args(Reason)

#: Names of the five landmarks, in the order used everywhere in fiqa-sdk (the ArcFace order).
#: "left" and "right" are as seen in the image: the left eye is the one with the smaller x.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in image pixel coordinates.

    Attributes
    ----------
    bbox : ndarray, shape (4,), float32
        ``(x1, y1, x2, y2)``; may extend past the image border.
    landmarks : ndarray, shape (5, 2), float32
        ``(x, y)`` of left eye, right eye, nose tip, left mouth corner, right mouth corner
        (ArcFace order, left/right as seen in the image).
    det_score : float
        Detector confidence; its scale depends on the detector (all backends give [0, 1]
        except ``dlib``'s HOG, whose SVM margin is mapped through a logistic).
    """

    bbox: np.ndarray
    landmarks: np.ndarray
    det_score: float
    detector: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        bbox = np.asarray(self.bbox, dtype=np.float32).reshape(4)
        lmk = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        bbox.setflags(write=False)
        lmk.setflags(write=False)
        object.__setattr__(self, "bbox", bbox)
        object.__setattr__(self, "landmarks", lmk)
        object.__setattr__(self, "det_score", float(self.det_score))

    # insightface's FaceAnalysis calls the landmarks ``kps``; keep that name working.
    @property
    def kps(self) -> np.ndarray:
        return self.landmarks

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return (float(self.bbox[0] + self.bbox[2]) / 2, float(self.bbox[1] + self.bbox[3]) / 2)

    @property
    def inter_eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    def to_dict(self) -> dict:
        """JSON-friendly representation (plain floats and lists)."""
        return {
            "bbox": [round(float(v), 2) for v in self.bbox],
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "det_score": round(self.det_score, 5),
            "detector": self.detector,
        }

    def __repr__(self) -> str:
        x1, y1, x2, y2 = (round(float(v), 1) for v in self.bbox)
        return f"Face(bbox=({x1}, {y1}, {x2}, {y2}), det_score={self.det_score:.3f}, detector={self.detector!r})"


@dataclass
class QualityReport:
    """What :meth:`fiqa_sdk.QualityGate.assess` made of one image (one face of it).

    Attributes
    ----------
    score : float or None
        Quality score, higher = better; None when no face could be scored.
    accepted : bool
        A face was scored and passes the gate's threshold (True when there is no threshold).
    reason : Reason or None
        None when accepted, else a short machine-readable string (:data:`Reason`):
        ``"no_face"``, ``"not_found"``, ``"decode_error"``, ``"invalid_input"``,
        ``"alignment_error"``, ``"below_threshold"`` or (in :meth:`~fiqa_sdk.QualityGate.filter`
        with ``discard=``) ``"discarded"``.
    face : Face or None
        The scored face (bbox, landmarks, detector confidence).
    aligned : ndarray (112, 112, 3) uint8 RGB or None
        The ArcFace-template crop that was scored. ``filter`` drops it unless
        ``keep_crops=True``, to keep memory bounded on large batches.
    embedding : ndarray float32 or None
        L2-normalised face-recognition embedding; None when the gate has ``embedder=None``
        or no face was found.
    message : str or None
        Human-readable detail of a failure.
    n_faces : int
        How many faces the detector found in the image (0 when none, or the image could not
        be read).
    ambiguous : bool
        Another face of the image is a plausible subject too (similar size, confident
        detection; :func:`fiqa_sdk.detect.ambiguous_subject`): the gate picked one of several
        people. An application that must be sure whose face it scored rejects such images.

    Examples
    --------
    >>> from fiqa_sdk import QualityReport
    >>> r = QualityReport(reason="no_face", message="no face detected")
    >>> r.ok, r.accepted, r.score
    (False, False, None)
    >>> r = gate.assess("face.jpg")  # doctest: +SKIP
    >>> if not r.accepted:  # doctest: +SKIP
    ...     print(r.reason, r.message)
    """

    score: float | None = None
    accepted: bool = False
    reason: Reason | None = None
    face: Face | None = None
    aligned: np.ndarray | None = None
    embedding: np.ndarray | None = None
    message: str | None = None
    n_faces: int = 0
    ambiguous: bool = False

    @property
    def ok(self) -> bool:
        """True when a face was scored (whatever the threshold decided)."""
        return self.score is not None


@dataclass
class FilterResult:
    """Outcome of :meth:`fiqa_sdk.QualityGate.filter`.

    ``kept`` holds input indices in input order; ``rejected`` holds ``(index, reason)`` pairs in
    input order; ``reports`` one :class:`QualityReport` per input; ``threshold`` the quality cut
    that was applied (see :func:`fiqa_sdk.policy.discard_lowest` for the discard edge cases).
    ``sources`` names the inputs (file paths for a directory batch, else a short description).
    """

    kept: list[int]
    rejected: list[tuple[int, str]]
    reports: list[QualityReport]
    threshold: float
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.reports)


@dataclass
class Template:
    """A quality-aware fusion of several images of one person (:meth:`QualityGate.template`).

    Attributes
    ----------
    embedding : ndarray, float32
        L2-normalised fused embedding.
    weights : ndarray, float64
        Summing to 1, aligned with ``used``.
    used : list of int
        The input indices that contributed (for a video, indices of the sampled frames).
    method : str
        How it was fused (``"quality_weighted"``, ``"mean"``, ``"best"``, ``"top_k"``).
    scores : ndarray or None
        The quality scores of ``used``.
    skipped : list of (int, str)
        The inputs that could not take part, as ``(index, reason)`` pairs (an unreadable
        file, no face, ...).

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk import Template
    >>> t = Template(embedding=np.array([1.0, 0.0], np.float32), weights=np.array([0.5, 0.5]),
    ...              used=[0, 2], method="mean", skipped=[(1, "no_face")])
    >>> t.used, t.skipped
    ([0, 2], [(1, 'no_face')])
    >>> tpl = gate.template(["a.jpg", "b.jpg"])  # doctest: +SKIP
    >>> gate.compare(tpl, "probe.jpg")  # doctest: +SKIP
    """

    embedding: np.ndarray
    weights: np.ndarray
    used: list[int]
    method: str = "quality_weighted"
    scores: np.ndarray | None = None
    skipped: list[tuple[int, str]] = field(default_factory=list)
