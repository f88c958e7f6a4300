"""Landmarks, embeddings and quality scores for a list of image files, cached on disk.

Each result is one file per (model, image list): ``faces-<detector>-<key>.npz``,
``emb-<detector>-<embedder>-<key>.npy``, ``quality-<detector>-<scorer>-<key>.npy``. Next to it a
``<same name>.rows.npz`` index records the image paths, the model's key and, per image, the
inputs the value depends on (the landmarks, box and detector score it was computed from). A new
image list reuses every row that another cached list of the same model computed for the same
image from the same inputs, so results are in effect cached per (model, image): LFW pairs.txt's
7,701 images are a subset of the all-vs-all 13,233 and are not recomputed, and re-running a
benchmark with a new quality scorer reuses the detections and embeddings.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..align import align_face
from ..detect import Detector, select_faces
from ..embed import Embedder
from .._paths import default_cache_dir  # noqa: F401 (re-exported)
from ..errors import EvaluationError, FiqaError
from ..io import load_image


def cache_key(*parts: object) -> str:
    return hashlib.sha1(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def paths_key(paths: Sequence[str | Path]) -> str:
    return cache_key(*[str(p) for p in paths])


def _progress(it, enabled: bool, desc: str, total: int, unit: str = "img"):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, unit=unit, mininterval=2.0)


# --------------------------------------------------------------------------------------------
# Row-level reuse across image lists
# --------------------------------------------------------------------------------------------


def _index_path(cache: Path) -> Path:
    return cache.with_name(cache.name.rsplit(".", 1)[0] + ".rows.npz")


def _tmp_path(path: Path, ext: str) -> Path:
    """A temporary name next to ``path``, unique to this process and call (ends in ``ext``, so
    numpy adds nothing), so that processes writing the same cache file (parallel runs over
    one ``FIQA_CACHE``) never rename each other's half-written files."""
    return path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{ext}")


def _write_index(cache: Path, paths: Sequence[str], model_key: str, cond: np.ndarray) -> None:
    """Record which image each row of ``cache`` is and what it was computed from."""
    idx = _index_path(cache)
    tmp = _tmp_path(idx, ".npz")
    np.savez(tmp, paths=np.asarray(paths, dtype=np.str_), model_key=np.asarray(model_key),
             cond=np.asarray(cond, dtype=np.float32).reshape(len(paths), -1))
    os.replace(tmp, idx)


def _save(cache: Path, paths: Sequence[str], model_key: str, cond: np.ndarray, **arrays) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    if cache.suffix == ".npz":
        tmp = _tmp_path(cache, ".npz")
        np.savez(tmp, **arrays)
    else:
        tmp = _tmp_path(cache, ".npy")
        (value,) = arrays.values()
        np.save(tmp, value)
    os.replace(tmp, cache)
    _write_index(cache, paths, model_key, cond)


def _reusable_rows(cache: Path, model_key: str, paths: Sequence[str], cond: np.ndarray):
    """Rows of other cached image lists of the same model that can be copied into ``cache``.

    Only lists written with the same file-name prefix and the same ``model_key`` count, and a
    row is taken only when it is the same image path with bitwise equal ``cond`` (the inputs it
    was computed from). Returns ``[(source file, source rows, destination rows), ...]``.
    """
    want = {p: i for i, p in enumerate(paths)}
    cond = np.asarray(cond, dtype=np.float32).reshape(len(paths), -1)
    filled = np.zeros(len(paths), dtype=bool)
    prefix = cache.name[: cache.name.rindex("-") + 1]
    out = []
    for idx in sorted(cache.parent.glob(glob_escape(prefix) + "*.rows.npz")):
        src = idx.with_name(idx.name[: -len(".rows.npz")] + cache.suffix)
        if src == cache or not src.is_file():
            continue
        try:
            z = np.load(idx)
            if str(z["model_key"]) != model_key:
                continue
            src_paths, src_cond = z["paths"], z["cond"]
        except (OSError, ValueError, KeyError):
            continue  # a foreign or damaged file: ignore it
        if src_cond.shape[1:] != cond.shape[1:]:
            continue
        pos = np.array([want.get(str(p), -1) for p in src_paths], dtype=np.int64)
        rows = np.flatnonzero(pos >= 0)
        rows = rows[~filled[pos[rows]]]
        if rows.size:
            same = (src_cond[rows] == cond[pos[rows]]).all(axis=1)
            rows = rows[same]
        if rows.size:
            out.append((src, rows, pos[rows]))
            filled[pos[rows]] = True
        if filled.all():
            break
    return out


def glob_escape(text: str) -> str:
    """``text`` with the glob metacharacters ``*?[`` escaped."""
    import glob

    return glob.escape(text)


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
    """Detect and select one face per image (cached when ``cache_dir`` is given; rows of other
    cached image lists with the same detector and policy are reused)."""
    paths = [str(p) for p in paths]
    n = len(paths)
    found = np.zeros(n, bool)
    bbox = np.full((n, 4), np.nan, np.float32)
    lmk = np.full((n, 5, 2), np.nan, np.float32)
    score = np.full(n, np.nan, np.float32)
    todo = np.ones(n, dtype=bool)
    cache = None
    model_key = cache_key(repr(vars_of(detector)), policy)
    no_cond = np.zeros((n, 0), np.float32)
    if cache_dir is not None:
        key = cache_key(repr(vars_of(detector)), policy, paths_key(paths))
        cache = Path(cache_dir) / f"faces-{detector.name}-{key}.npz"
        if cache.is_file():
            z = np.load(cache)
            if not _index_path(cache).is_file():
                _write_index(cache, paths, model_key, no_cond)
            return FaceSet(paths, z["found"], z["bbox"], z["landmarks"], z["det_score"], detector.name)
        if cache.parent.is_dir():
            for src, rows, dst in _reusable_rows(cache, model_key, paths, no_cond):
                z = np.load(src)
                found[dst], bbox[dst] = z["found"][rows], z["bbox"][rows]
                lmk[dst], score[dst] = z["landmarks"][rows], z["det_score"][rows]
                todo[dst] = False
    todo_idx = np.flatnonzero(todo)
    unreadable = 0
    for i in _progress(todo_idx, progress, f"detect ({detector.name})", len(todo_idx)):
        p = paths[i]
        try:
            img = load_image(p)
        except FiqaError:
            unreadable += 1
            continue
        faces = select_faces(detector.detect(img), policy, img.shape)
        if faces:
            f = faces[0]
            found[i], bbox[i], lmk[i], score[i] = True, f.bbox, f.landmarks, f.det_score
    fs = FaceSet(paths, found, bbox, lmk, score, detector.name)
    # An unreadable image (missing, not yet written, corrupt) is not a "no face" result worth
    # remembering: caching it would hide the image from every later run that can read it.
    if cache is not None and not unreadable:
        _save(cache, paths, model_key, no_cond, found=found, bbox=bbox, landmarks=lmk,
              det_score=score)
    return fs


def used_faces(faces: FaceSet, fallback: bool):
    """(use, landmarks, bbox, det_score) after the fallback for images without a face."""
    use = faces.found.copy()
    lmk = faces.landmarks.copy()
    bbox = faces.bbox.copy()
    det = faces.det_score.copy()
    if fallback and not use.all():
        lmk[~use] = faces.fallback_landmarks()
        bbox[~use] = np.median(faces.bbox[faces.found], axis=0)
        det[~use] = 0.0
        use[:] = True
    return use, lmk, bbox, det


def vars_of(obj: object) -> dict:
    """Plain-valued attributes of a backend, for cache keys."""
    return {k: v for k, v in sorted(vars(obj).items())
            if isinstance(v, (int, float, str, bool, tuple)) and not k.startswith("_")}


def aligned_crops(paths: Sequence[str], lmk: np.ndarray, rows: np.ndarray, size: int = 112,
                   dst: np.ndarray | None = None) -> tuple[list[np.ndarray], list[int]]:
    """Crops of ``rows`` aligned from cached landmarks; unreadable images are skipped."""
    crops, ok = [], []
    for i in rows:
        try:
            img = load_image(paths[i])
        except FiqaError:
            continue
        crops.append(align_face(img, lmk[i], size, dst))
        ok.append(int(i))
    return crops, ok


def embed_all(faces: FaceSet, embedder: Embedder, fallback: bool = True,
              cache_dir: str | Path | None = None, batch_size: int = 64,
              progress: bool = False) -> np.ndarray:
    """Embeddings ``(N, D)`` of the faces of ``faces`` (NaN rows where no face and no fallback).

    With ``fallback=True``, images without a detected face are aligned with
    :meth:`FaceSet.fallback_landmarks` (the usual practice on LFW, so every pair gets a score).
    Cached when ``cache_dir`` is given; rows of other cached image lists embedded by the same
    model from the same landmarks are reused.
    """
    n = len(faces.paths)
    use, lmk, _, _ = used_faces(faces, fallback)
    cond = np.where(use[:, None], lmk.reshape(n, 10), np.nan)
    model_key = cache_key("emb", repr(vars_of(embedder)))
    cache = None
    out = None
    todo = use.copy()
    if cache_dir is not None:
        lmk_key = hashlib.sha1(np.nan_to_num(faces.landmarks).tobytes()).hexdigest()
        key = cache_key(repr(vars_of(embedder)), fallback, paths_key(faces.paths), lmk_key)
        cache = Path(cache_dir) / f"emb-{faces.detector}-{embedder.name}-{key}.npy"
        if cache.is_file():
            out = np.load(cache)
            if not _index_path(cache).is_file():
                _write_index(cache, faces.paths, model_key, cond)
            return out
        if cache.parent.is_dir():
            for src, rows, dst in _reusable_rows(cache, model_key, faces.paths, cond):
                e = np.load(src, mmap_mode="r")[rows]
                ok = np.isfinite(e).all(axis=1) & use[dst]
                if out is None:
                    out = np.full((n, e.shape[1]), np.nan, np.float32)
                if out.shape[1] != e.shape[1]:
                    continue
                out[dst[ok]] = e[ok]
                todo[dst[ok]] = False
    idx = np.flatnonzero(todo)
    for start in _progress(range(0, len(idx), batch_size), progress, f"embed ({embedder.name})",
                           (len(idx) + batch_size - 1) // batch_size, unit="batch"):
        crops, ok = aligned_crops(faces.paths, lmk, idx[start : start + batch_size],
                                   embedder.input_size, embedder.template)
        if not crops:
            continue
        e = embedder.embed(np.stack(crops))
        if out is None:
            out = np.full((n, e.shape[1]), np.nan, np.float32)
        out[ok] = e
    if out is None:
        out = np.full((n, max(embedder.dim, 1)), np.nan, np.float32)
    if cache is not None:
        _save(cache, faces.paths, model_key, cond, emb=out)
    return out


# --------------------------------------------------------------------------------------------
# Quality scores
# --------------------------------------------------------------------------------------------

# knobs that do not change the scores (fast_prelu: the same ArcFace function, equal to ~3e-6)
_RUNTIME_ATTRS = {"batch_size", "unet_batch", "threads", "device", "verify", "fast_prelu"}


def scorer_key(scorer: object) -> str:
    """Cache key of a scorer: its name, plain parameters (e.g. ``seed``) and, for scorers built
    on an FR model, the embedder's name and parameters. Runtime knobs (batch size, threads,
    device) are left out. A scorer whose *code* changes needs a fresh cache (new name or
    ``FIQA_CACHE``)."""
    parts: list[object] = [getattr(scorer, "name", type(scorer).__name__), type(scorer).__name__]
    parts.append(repr({k: v for k, v in vars_of(scorer).items() if k not in _RUNTIME_ATTRS}))
    for attr, value in sorted(vars(scorer).items()):
        if isinstance(value, Embedder):
            parts.append((attr, value.name, repr({k: v for k, v in vars_of(value).items()
                                                  if k not in _RUNTIME_ATTRS})))
    return cache_key(*parts)


def face_objects(faces: FaceSet, indices: Sequence[int], fallback: bool = True) -> list:
    """:class:`~fiqa_sdk.types.Face` objects rebuilt from the cached detections.

    Images without a detected face get (with ``fallback``) the fallback landmarks, the median
    bounding box of the found faces and ``det_score = 0.0`` (the detector found nothing).
    Returns ``None`` entries where there is no face and no fallback.
    """
    from ..types import Face

    out = []
    fb = None
    for i in indices:
        if faces.found[i]:
            out.append(Face(faces.bbox[i], faces.landmarks[i], float(faces.det_score[i]),
                            faces.detector))
        elif fallback:
            if fb is None:
                fb = (np.median(faces.bbox[faces.found], axis=0), faces.fallback_landmarks())
            out.append(Face(fb[0], fb[1], 0.0, faces.detector))
        else:
            out.append(None)
    return out


def score_all(faces: FaceSet, scorers: Sequence, fallback: bool = True,
              cache_dir: str | Path | None = None, batch_size: int = 64,
              progress: bool = False, timings: dict | None = None,
              rows: Sequence[int] | np.ndarray | None = None,
              checkpoint_s: float | None = 300.0) -> list[np.ndarray]:
    """Quality scores ``(N,)`` float64 of every image for each scorer (cached when ``cache_dir``).

    Scores are computed on the ArcFace 112x112 crops aligned from the cached landmarks
    (:func:`fiqa_sdk.align.align_face`); scorers with ``needs_faces`` get :func:`face_objects`.
    With ``fallback=True`` images without a detected face use the fallback landmarks (as
    :func:`embed_all`); otherwise, and for images that cannot be decoded, the score is NaN.
    Each image is decoded and aligned once for all scorers that still need it. The cache key is
    (scorer name + parameters, detector, image list, detections, fallback); rows of other cached
    image lists scored by the same scorer from the same face (landmarks, box, detector score)
    are reused. ``timings``, if given, receives the seconds each scorer spent scoring.

    Long runs (DifFIQA on 13k images) are resumable and can be split across processes: with a
    cache, the rows finished so far are saved every ``checkpoint_s`` seconds to a *partial* file
    (``...~part-<tag>.npy``, same row-reuse index), which any later call reuses; the partial file
    is removed once the complete cache file is written. ``rows`` restricts the scoring to those
    image indices (a shard; the other entries are NaN) and only ever writes a partial file, so
    ``k`` processes given disjoint ``rows`` fill the cache in parallel and a final call without
    ``rows`` only assembles them.
    """
    n = len(faces.paths)
    use, lmk, bbox, det = used_faces(faces, fallback)
    cond = np.concatenate([lmk.reshape(n, 10), bbox, det[:, None]], axis=1)
    cond[~use] = np.nan
    subset = None
    if rows is not None:
        subset = np.zeros(n, dtype=bool)
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        if r.size and (r.min() < 0 or r.max() >= n):
            raise EvaluationError(f"rows must be image indices in [0, {n}), got {r.min()}..{r.max()}")
        subset[r] = True
    results: list[np.ndarray | None] = [None] * len(scorers)
    caches: list[Path | None] = [None] * len(scorers)
    partials: list[Path | None] = [None] * len(scorers)
    keys = [cache_key("quality", scorer_key(sc)) for sc in scorers]
    todo_rows: dict[int, np.ndarray] = {}
    spent = [0.0] * len(scorers)
    if cache_dir is not None:
        det_key = hashlib.sha1(np.nan_to_num(faces.landmarks).tobytes()
                               + np.nan_to_num(faces.bbox).tobytes()
                               + np.nan_to_num(faces.det_score).tobytes()).hexdigest()
        tag = "all" if subset is None else cache_key(*np.flatnonzero(subset).tolist())[:8]
        for s, scorer in enumerate(scorers):
            key = cache_key(scorer_key(scorer), fallback, paths_key(faces.paths), det_key)
            caches[s] = Path(cache_dir) / f"quality-{faces.detector}-{scorer.name}-{key}.npy"
            partials[s] = caches[s].with_name(f"{caches[s].stem}~part-{tag}.npy")
            if caches[s].is_file():
                results[s] = np.load(caches[s])
                if not _index_path(caches[s]).is_file():
                    _write_index(caches[s], faces.paths, keys[s], cond)
    for s in range(len(scorers)):
        if results[s] is not None:
            continue
        q = np.full(n, np.nan)
        need = use.copy() if subset is None else use & subset
        if caches[s] is not None and caches[s].parent.is_dir():
            for src, src_rows, dst in _reusable_rows(caches[s], keys[s], faces.paths, cond):
                v = np.load(src, mmap_mode="r")[src_rows]
                ok = np.isfinite(v) & use[dst]
                q[dst[ok]] = v[ok]
                need[dst[ok]] = False
        results[s] = q
        todo_rows[s] = need

    def save_partial(s: int) -> None:
        done = np.flatnonzero(np.isfinite(results[s]))  # type: ignore[arg-type]
        if partials[s] is not None and done.size:
            _save(partials[s], [faces.paths[i] for i in done], keys[s], cond[done],
                  q=results[s][done])  # type: ignore[index]

    if timings is not None:
        for scorer in scorers:
            timings[scorer.name] = 0.0
    if todo_rows:
        any_need = np.logical_or.reduce(list(todo_rows.values()))
        idx = np.flatnonzero(any_need)
        names = ",".join(scorers[s].name for s in todo_rows)
        last_save = time.perf_counter()
        for start in _progress(range(0, len(idx), batch_size), progress, f"quality ({names})",
                               (len(idx) + batch_size - 1) // batch_size, unit="batch"):
            crops, ok = aligned_crops(faces.paths, lmk, idx[start : start + batch_size])
            if not crops:
                continue
            batch = np.stack(crops)
            ok_arr = np.asarray(ok)
            for s, need in todo_rows.items():
                sel = need[ok_arr]
                if not sel.any():
                    continue
                sel_rows = ok_arr[sel]
                t0 = time.perf_counter()
                if getattr(scorers[s], "needs_faces", False):
                    results[s][sel_rows] = scorers[s].score(batch[sel],
                                                            face_objects(faces, sel_rows, fallback))
                else:
                    results[s][sel_rows] = scorers[s].score(batch[sel])
                spent[s] += time.perf_counter() - t0
            if checkpoint_s is not None and time.perf_counter() - last_save >= checkpoint_s:
                for s in todo_rows:
                    save_partial(s)
                last_save = time.perf_counter()
        for s in todo_rows:
            if timings is not None:
                timings[scorers[s].name] = spent[s]
            if caches[s] is None:
                continue
            if subset is None:
                _save(caches[s], faces.paths, keys[s], cond, q=results[s])
                for part in caches[s].parent.glob(glob_escape(caches[s].stem) + "~part-*"):
                    part.unlink(missing_ok=True)  # assembled into the complete file
            else:
                save_partial(s)
    return results  # type: ignore[return-value]
