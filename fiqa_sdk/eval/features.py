"""Landmarks and embeddings for a list of image files, cached on disk.

Detection is done once per (detector, image list); embeddings once per (detector, embedder,
image list). Re-running a benchmark with a new quality scorer reuses both.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..align import align_face
from ..detect import Detector, select_faces
from ..embed import Embedder
from ..errors import FiqaError
from ..io import load_image


def default_cache_dir() -> Path:
    """``$FIQA_CACHE`` if set, else ``~/.cache/fiqa-sdk``."""
    env = os.environ.get("FIQA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "fiqa-sdk"


def _key(*parts: object) -> str:
    return hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def _paths_key(paths: Sequence[str | Path]) -> str:
    return _key(*[str(p) for p in paths])


def _progress(it, enabled: bool, desc: str, total: int):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, unit="img", mininterval=2.0)


@dataclass
class FaceSet:
    """One selected face per image (``found`` False where none was detected or decoding failed)."""

    paths: list[str]
    found: np.ndarray  # (N,) bool
    bbox: np.ndarray  # (N, 4) float32, NaN where not found
    landmarks: np.ndarray  # (N, 5, 2) float32, NaN where not found
    det_score: np.ndarray  # (N,) float32, NaN where not found
    detector: str

    @property
    def detection_rate(self) -> float:
        return float(self.found.mean()) if len(self.found) else float("nan")

    def fallback_landmarks(self) -> np.ndarray:
        """Median landmarks of the found faces, for images whose detection failed.

        Fine for aligned-ish sets of one image size such as LFW (faces centred by the set's
        makers); the count of images that needed it is ``(~found).sum()``.
        """
        if not self.found.any():
            raise FiqaError("no face found in any image; cannot build fallback landmarks")
        return np.median(self.landmarks[self.found], axis=0)


def detect_all(paths: Sequence[str | Path], detector: Detector, policy: str = "largest",
               cache_dir: str | Path | None = None, progress: bool = False) -> FaceSet:
    """Detect and select one face per image (cached when ``cache_dir`` is given)."""
    paths = [str(p) for p in paths]
    cache = None
    if cache_dir is not None:
        key = _key(repr(vars_of(detector)), policy, _paths_key(paths))
        cache = Path(cache_dir) / f"faces-{detector.name}-{key}.npz"
        if cache.is_file():
            z = np.load(cache)
            return FaceSet(paths, z["found"], z["bbox"], z["landmarks"], z["det_score"], detector.name)
    n = len(paths)
    found = np.zeros(n, bool)
    bbox = np.full((n, 4), np.nan, np.float32)
    lmk = np.full((n, 5, 2), np.nan, np.float32)
    score = np.full(n, np.nan, np.float32)
    for i, p in enumerate(_progress(paths, progress, f"detect ({detector.name})", n)):
        try:
            img = load_image(p)
        except FiqaError:
            continue
        faces = select_faces(detector.detect(img), policy, img.shape)
        if faces:
            f = faces[0]
            found[i], bbox[i], lmk[i], score[i] = True, f.bbox, f.landmarks, f.det_score
    fs = FaceSet(paths, found, bbox, lmk, score, detector.name)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, found=found, bbox=bbox, landmarks=lmk, det_score=score)
        os.replace(tmp, cache)
    return fs


def vars_of(obj: object) -> dict:
    """Plain-valued attributes of a backend, for cache keys."""
    return {k: v for k, v in sorted(vars(obj).items())
            if isinstance(v, (int, float, str, bool, tuple)) and not k.startswith("_")}


def embed_all(faces: FaceSet, embedder: Embedder, fallback: bool = True,
              cache_dir: str | Path | None = None, batch_size: int = 64,
              progress: bool = False) -> np.ndarray:
    """Embeddings ``(N, D)`` of the faces of ``faces`` (NaN rows where no face and no fallback).

    With ``fallback=True``, images without a detected face are aligned with
    :meth:`FaceSet.fallback_landmarks` (the usual practice on LFW, so every pair gets a score).
    """
    cache = None
    if cache_dir is not None:
        lmk_key = hashlib.sha1(np.nan_to_num(faces.landmarks).tobytes()).hexdigest()
        key = _key(repr(vars_of(embedder)), fallback, _paths_key(faces.paths), lmk_key)
        cache = Path(cache_dir) / f"emb-{faces.detector}-{embedder.name}-{key}.npy"
        if cache.is_file():
            return np.load(cache)
    n = len(faces.paths)
    lmk = faces.landmarks.copy()
    use = faces.found.copy()
    if fallback and not use.all():
        lmk[~use] = faces.fallback_landmarks()
        use[:] = True
    out = None
    idx = np.flatnonzero(use)
    for start in _progress(range(0, len(idx), batch_size), progress, f"embed ({embedder.name})",
                           (len(idx) + batch_size - 1) // batch_size):
        chunk = idx[start : start + batch_size]
        crops, ok = [], []
        for i in chunk:
            try:
                img = load_image(faces.paths[i])
            except FiqaError:
                continue
            crops.append(align_face(img, lmk[i], embedder.input_size, embedder.template))
            ok.append(i)
        if not crops:
            continue
        e = embedder.embed(np.stack(crops))
        if out is None:
            out = np.full((n, e.shape[1]), np.nan, np.float32)
        out[ok] = e
    if out is None:
        out = np.full((n, max(embedder.dim, 1)), np.nan, np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, out)
        os.replace(tmp, cache)
    return out
