"""5-point similarity alignment to the ArcFace 112x112 template.

The transform is the least-squares similarity (rotation, uniform scale, translation; Umeyama)
mapping the five detected landmarks onto :data:`ARCFACE_TEMPLATE`, as in insightface's
``face_align.norm_crop``. It is exposed separately (:func:`estimate_transform`) so that
benchmarks can perturb landmarks (:func:`jitter_landmarks`) and re-warp.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from .errors import AlignmentError, InvalidArgumentError, InvalidImageError
from .types import Face

#: Destination of (left eye, right eye, nose tip, left mouth corner, right mouth corner) in a
#: 112x112 crop: the template of insightface's ArcFace models.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_SIZE = 112


def template(size: int = ARCFACE_SIZE) -> np.ndarray:
    """The ArcFace landmark template scaled to a ``size`` x ``size`` crop, shape (5, 2)."""
    if size <= 0:
        raise InvalidArgumentError(f"size must be positive, got {size}")
    return ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)


def _as_landmarks(landmarks: Face | np.ndarray | Sequence) -> np.ndarray:
    lmk = landmarks.landmarks if isinstance(landmarks, Face) else landmarks
    lmk = np.asarray(lmk, dtype=np.float64)
    if lmk.shape != (5, 2):
        raise InvalidArgumentError(f"landmarks must have shape (5, 2), got {lmk.shape}")
    if not np.isfinite(lmk).all():
        raise AlignmentError("landmarks contain NaN or infinite values")
    return lmk


def estimate_transform(
    landmarks: Face | np.ndarray, size: int = ARCFACE_SIZE, dst: np.ndarray | None = None
) -> np.ndarray:
    """Least-squares similarity transform from image landmarks to the template.

    Parameters
    ----------
    landmarks : Face or array, shape (5, 2)
        Image coordinates in ArcFace order.
    size : int
        Output crop side; the template is scaled by ``size / 112``.
    dst : array, shape (5, 2), optional
        Another destination template in crop pixels (an embedder with its own crop geometry,
        e.g. dlib's 150x150 chip); ``size`` is then only the crop side.

    Returns
    -------
    ndarray, shape (2, 3), float64
        Affine matrix ``M`` such that ``M @ [x, y, 1]`` is the crop coordinate of ``(x, y)``.
    """
    from skimage.transform import SimilarityTransform

    src = _as_landmarks(landmarks)
    spread = np.ptp(src, axis=0).max()
    if spread < 1e-3:
        raise AlignmentError("landmarks are degenerate (all at one point); cannot align")
    dst = template(size) if dst is None else np.asarray(dst, dtype=np.float64).reshape(5, 2)
    tform = SimilarityTransform.from_estimate(src, dst)
    if not tform:  # skimage returns a falsy FailedEstimation on degenerate input
        raise AlignmentError(f"similarity estimation failed: {tform}")
    return np.asarray(tform.params[:2], dtype=np.float64)


def warp(image: np.ndarray, matrix: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """Apply a (2, 3) transform to ``image``; returns a ``size`` x ``size`` crop.

    Bilinear interpolation, black outside the image (as insightface's ``norm_crop``). Channel
    order is preserved: RGB in, RGB out.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.dtype != np.uint8:
        raise InvalidImageError("image must be an (H, W, C) uint8 array; use fiqa_sdk.io.load_image first")
    return cv2.warpAffine(
        image, np.asarray(matrix, dtype=np.float64), (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


def align_face(
    image: np.ndarray,
    landmarks: Face | np.ndarray,
    size: int = ARCFACE_SIZE,
    dst: np.ndarray | None = None,
) -> np.ndarray:
    """Aligned ``size`` x ``size`` x 3 uint8 crop of one face (same channel order as ``image``).

    A least-squares similarity transform (:func:`estimate_transform`) from the five landmarks
    to the ArcFace template scaled to ``size``, then a bilinear warp, black outside the image.

    Parameters
    ----------
    image : ndarray, shape (H, W, C), uint8
        The decoded image (e.g. from :func:`fiqa_sdk.load_image`).
    landmarks : Face or array, shape (5, 2)
        Image coordinates in ArcFace order.
    size : int
        Output crop side; the template is scaled by ``size / 112``.
    dst : array, shape (5, 2), optional
        Another destination template in crop pixels (see :func:`estimate_transform`).

    Returns
    -------
    ndarray, shape (size, size, C), uint8

    Raises
    ------
    AlignmentError
        Degenerate landmarks (all at one point, NaN or infinite).
    InvalidArgumentError
        Landmarks not of shape (5, 2), or a non-positive ``size``.
    InvalidImageError
        ``image`` is not an (H, W, C) uint8 array.

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk.align import ARCFACE_TEMPLATE, align_face
    >>> image = np.zeros((200, 200, 3), np.uint8)
    >>> align_face(image, ARCFACE_TEMPLATE + 40).shape
    (112, 112, 3)
    >>> align_face(image, ARCFACE_TEMPLATE + 40, size=224).shape
    (224, 224, 3)
    """
    return warp(image, estimate_transform(landmarks, size, dst), size)


def align_faces(
    image: np.ndarray,
    faces: Iterable[Face | np.ndarray],
    size: int = ARCFACE_SIZE,
    dst: np.ndarray | None = None,
) -> np.ndarray:
    """Aligned crops of several faces of one image, shape ``(N, size, size, 3)`` uint8.

    Parameters
    ----------
    image : ndarray, shape (H, W, 3), uint8
        The decoded image.
    faces : iterable of Face or (5, 2) arrays
        The faces' landmarks (see :func:`align_face`).
    size : int
        Output crop side.
    dst : array, shape (5, 2), optional
        Another destination template in crop pixels.

    Returns
    -------
    ndarray, shape (N, size, size, 3), uint8
        ``(0, size, size, 3)`` for no face.

    Raises
    ------
    AlignmentError
        Degenerate landmarks of any face.

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk.align import ARCFACE_TEMPLATE, align_faces
    >>> image = np.zeros((200, 200, 3), np.uint8)
    >>> align_faces(image, [ARCFACE_TEMPLATE, ARCFACE_TEMPLATE + 50]).shape
    (2, 112, 112, 3)
    >>> align_faces(image, []).shape
    (0, 112, 112, 3)
    """
    crops = [align_face(image, f, size, dst) for f in faces]
    if not crops:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack(crops)


def jitter_landmarks(
    landmarks: Face | np.ndarray, k: float, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Landmarks moved independently by uniform noise in [-k, k] pixels on each coordinate.

    Used by the alignment-sensitivity benchmark (eDifFIQA paper, section 5.4).
    """
    rng = np.random.default_rng(rng)
    lmk = _as_landmarks(landmarks)
    return lmk + rng.uniform(-k, k, size=lmk.shape)


def as_face_batch(faces: np.ndarray, size: int | None = ARCFACE_SIZE) -> np.ndarray:
    """Validate aligned crops: ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 -> ``(N, H, W, 3)``.

    ``size`` (if not None) is the required crop side. Raises :class:`InvalidImageError`.
    """
    from .errors import InvalidImageError

    if not isinstance(faces, np.ndarray):
        raise InvalidImageError(
            f"aligned faces must be a numpy array, got {type(faces).__name__}"
        )
    if faces.ndim == 3:
        faces = faces[None]
    if faces.ndim != 4 or faces.shape[-1] != 3:
        raise InvalidImageError(
            f"aligned faces must have shape (N, H, W, 3) or (H, W, 3), got {faces.shape}"
        )
    if faces.dtype != np.uint8:
        raise InvalidImageError(f"aligned faces must be uint8 RGB, got dtype {faces.dtype}")
    if size is not None and faces.shape[1:3] != (size, size):
        raise InvalidImageError(
            f"aligned faces must be {size}x{size} (fiqa_sdk.align.align_face), got "
            f"{faces.shape[1]}x{faces.shape[2]}"
        )
    return faces
