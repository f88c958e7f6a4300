"""Simple quality baselines: the floor every learned scorer must beat.

- ``random``: a pseudo-random score per crop (seeded hash of its pixels): the EDC floor.
- ``det-score``: the detector's confidence.
- ``inter-eye``: inter-eye distance in source pixels (a face-size / resolution proxy).
- ``sharpness``: variance of the Laplacian of the grey crop (no-reference focus measure).
- ``embedding-norm``: norm of the un-normalised FR embedding (MagFace-style intuition; ArcFace
  norms correlate with recognisability).
- ``flip-consistency``: cosine between the embeddings of the crop and its mirror image.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import cv2
import numpy as np

from ..embed import Embedder, create_embedder
from ..errors import InvalidArgumentError
from ..types import Face
from .base import Scorer


class RandomScorer(Scorer):
    """Uniform [0, 1) score, a deterministic function of the crop's pixels and ``seed``."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        out = np.empty(len(aligned))
        for i, crop in enumerate(aligned):
            h = hashlib.blake2b(crop.tobytes(), digest_size=8, key=self.seed.to_bytes(8, "little", signed=True))
            out[i] = int.from_bytes(h.digest(), "little") / 2.0**64
        return out


class DetScoreScorer(Scorer):
    """The detector's confidence for the face."""

    name = "det-score"
    needs_faces = True

    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        return np.array([f.det_score for f in faces])


class InterEyeScorer(Scorer):
    """Inter-eye distance in the source image, in pixels."""

    name = "inter-eye"
    needs_faces = True

    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        return np.array([f.inter_eye_distance for f in faces])


class FaceAreaScorer(Scorer):
    """Area of the detector's bounding box in the source image, in square pixels."""

    name = "face-area"
    needs_faces = True

    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        return np.array([f.area for f in faces])


class SharpnessScorer(Scorer):
    """Variance of the Laplacian over the central face region of the grey crop."""

    name = "sharpness"

    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        out = np.empty(len(aligned))
        for i, crop in enumerate(aligned):
            grey = cv2.cvtColor(crop[16:104, 16:96], cv2.COLOR_RGB2GRAY)  # skip black borders
            out[i] = cv2.Laplacian(grey, cv2.CV_64F).var()
        return out


class _EmbedderScorer(Scorer):
    def __init__(self, embedder: Any = "arcface", **kwargs: Any) -> None:
        self.embedder: Embedder = create_embedder(embedder, **kwargs)
        if self.embedder.input_size != 112:
            raise InvalidArgumentError(f"{self.name} needs an embedder of 112x112 ArcFace crops")


class EmbeddingNormScorer(_EmbedderScorer):
    """Norm of the FR model's embedding before L2 normalisation."""

    name = "embedding-norm"

    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        return np.linalg.norm(self.embedder.embed_raw(aligned), axis=1)


class FlipConsistencyScorer(_EmbedderScorer):
    """Cosine similarity of the embeddings of the crop and its horizontal mirror."""

    name = "flip-consistency"

    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        e = self.embedder.embed(np.concatenate([aligned, aligned[:, :, ::-1]]))
        n = len(aligned)
        return np.einsum("ij,ij->i", e[:n], e[n:])
