"""Result types shared by every stage of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
