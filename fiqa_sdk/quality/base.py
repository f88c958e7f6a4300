"""The quality-scorer role: aligned ArcFace crops in, one quality score per face out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from ..align import as_face_batch
from ..errors import InvalidArgumentError
from ..types import Face


class Scorer(ABC):
    """Base class of face image quality scorers (higher score = better quality).

    :meth:`score` takes aligned crops ``(N, 112, 112, 3)`` uint8 RGB (a single crop is a batch
    of one) and returns ``(N,)`` float64. Scorers that judge detection metadata rather than
    pixels (detector confidence, face size) set ``needs_faces = True`` and read ``faces``.
    """

    name: str = "scorer"
    needs_faces: bool = False

    def score(self, aligned: np.ndarray, faces: Sequence[Face] | None = None) -> np.ndarray:
        aligned = as_face_batch(aligned)
        if self.needs_faces:
            if faces is None or len(faces) != len(aligned):
                got = "none" if faces is None else len(faces)
                raise InvalidArgumentError(
                    f"scorer {self.name!r} reads the detections: it needs faces= with one Face "
                    f"per aligned crop ({len(aligned)} crops, faces: {got})")
        out = np.asarray(self._score(aligned, faces), dtype=np.float64).reshape(len(aligned))
        return out

    @abstractmethod
    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        """Scores of a validated ``(N, 112, 112, 3)`` uint8 batch."""

    def __call__(self, aligned: np.ndarray, faces: Sequence[Face] | None = None) -> np.ndarray:
        return self.score(aligned, faces)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def model_digest(model, meta: dict | None = None) -> str:
    """Identity of a scorer's weights for cache keys: the sidecar's sha256 when there is one,
    else a sha256 of the module's tensors (16 hex chars)."""
    if meta and meta.get("sha256"):
        return str(meta["sha256"])[:16]
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

