"""The detector role: an RGB image in, :class:`~fiqa_sdk.types.Face` objects out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..errors import InvalidArgumentError
from ..io import ImageInput, load_image
from ..types import Face

#: Multi-face policies understood by :func:`select_faces`.
FACE_POLICIES = ("largest", "central", "confidence", "all")


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
        raise ValueError(
            f"detect() takes an (H, W, 3) uint8 RGB array, got {desc}; "
            "call the detector itself (detector(img)) to decode other inputs"
        )
    return image


def sort_faces(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: -f.det_score)


def select_faces(
    faces: list[Face], policy: str = "largest", image_shape: tuple[int, ...] | None = None
) -> list[Face]:
    """Apply a multi-face policy.

    - ``"largest"``: the face with the largest bounding-box area (the subject of most photos).
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
        raise InvalidArgumentError("policy 'central' needs image_shape")
    cy, cx = image_shape[0] / 2, image_shape[1] / 2
    return [min(faces, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)]
