"""The detector role: an RGB image in, :class:`~fiqa_sdk.types.Face` objects out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..errors import InvalidArgumentError
from ..io import ImageInput, load_image
from ..types import Face

#: Multi-face policies understood by :func:`select_faces`.
FACE_POLICIES = ("subject", "largest", "central", "confidence", "all")
#: The default policy of the gate, the pipeline and the CLI.
DEFAULT_FACE_POLICY = "subject"
#: Weight of the squared centre offset against the box area in :func:`subject_scores`
#: (insightface's ``FaceAnalysis`` uses 2.0 for the same ranking).
CENTRE_WEIGHT = 2.0
#: A second face makes the choice ambiguous (:func:`ambiguous_subject`) when its box is at least
#: this fraction of the chosen face's area ...
AMBIGUOUS_AREA_RATIO = 0.5
#: ... and the detector is at least this confident in it.
AMBIGUOUS_MIN_SCORE = 0.5


class Detector(ABC):
    """Base class of face detectors.

    Subclasses implement :meth:`detect` on an RGB uint8 array and return faces sorted by
    ``det_score`` (highest first), each with five landmarks in ArcFace order.
    """

    name: str = "detector"

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in ``image`` (``(H, W, 3)`` uint8 RGB), sorted by confidence."""

    def __call__(self, img: ImageInput, color: str = "bgr") -> list[Face]:
        """Decode any supported input (see :func:`fiqa_sdk.io.load_image`) and detect."""
        return self.detect(load_image(img, color=color))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Detectors receive decoded images; refuse anything else with a clear message."""
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
            and image.dtype == np.uint8 and image.shape[0] > 0 and image.shape[1] > 0):
        desc = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InvalidArgumentError(
            f"detect() takes an (H, W, 3) uint8 RGB array, got {desc}; "
            "call the detector itself (detector(img)) to decode other inputs"
        )
    return image


def sort_faces(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: -f.det_score)


def subject_scores(faces: list[Face], image_shape: tuple[int, ...]) -> np.ndarray:
    """How likely each face is the photo's subject: ``det_score * area - CENTRE_WEIGHT *
    offset**2``, with ``area`` the box area and ``offset`` the distance (pixels) from the box
    centre to the image centre.

    The ranking of insightface's ``FaceAnalysis`` (area minus twice the squared centre offset),
    with the area weighted by the detector's confidence so that a large but doubtful detection
    does not win. ``image_shape``: ``(H, W, ...)`` of the image.
    """
    cy, cx = image_shape[0] / 2, image_shape[1] / 2
    return np.array([f.det_score * f.area - CENTRE_WEIGHT * ((f.center[0] - cx) ** 2
                                                              + (f.center[1] - cy) ** 2)
                     for f in faces], dtype=np.float64)


def ambiguous_subject(chosen: Face, faces: list[Face]) -> bool:
    """Whether another face of ``faces`` is a plausible subject too: its box is at least
    :data:`AMBIGUOUS_AREA_RATIO` of ``chosen``'s area and its ``det_score`` at least
    :data:`AMBIGUOUS_MIN_SCORE` (e.g. two people side by side, a group photo)."""
    return any(f is not chosen and f.area >= AMBIGUOUS_AREA_RATIO * chosen.area
               and f.det_score >= AMBIGUOUS_MIN_SCORE for f in faces)


def select_faces(
    faces: list[Face], policy: str = DEFAULT_FACE_POLICY,
    image_shape: tuple[int, ...] | None = None
) -> list[Face]:
    """Apply a multi-face policy.

    - ``"subject"`` (default): the photo's subject, ranked by size, closeness to the image
      centre and detector confidence together (:func:`subject_scores`; needs ``image_shape``).
    - ``"largest"``: the face with the largest bounding-box area.
    - ``"central"``: the face whose box centre is nearest the image centre (needs ``image_shape``).
    - ``"confidence"``: the face with the highest ``det_score``.
    - ``"all"``: every face, by confidence.

    Returns a list of zero or one face (all for ``"all"``).
    """
    if policy not in FACE_POLICIES:
        raise InvalidArgumentError(f"unknown face policy {policy!r}; choose one of {FACE_POLICIES}")
    if not faces:
        return []
    if policy == "all":
        return sort_faces(faces)
    if policy == "confidence":
        return [max(faces, key=lambda f: f.det_score)]
    if policy == "largest":
        return [max(faces, key=lambda f: (f.area, f.det_score))]
    if image_shape is None:
        raise InvalidArgumentError(f"policy {policy!r} needs image_shape")
    if policy == "subject":
        return [faces[int(np.argmax(subject_scores(faces, image_shape)))]]
    cy, cx = image_shape[0] / 2, image_shape[1] / 2
    return [min(faces, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)]
