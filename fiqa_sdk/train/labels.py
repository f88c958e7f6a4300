"""Pseudo-labels for the distilled regressors: DifFIQA scores, class centres, label optimization.

eDifFIQA (Babnik et al., T-BIOM 2024, section 3.6) distils DifFIQA into a one-pass regressor:

1. :func:`pseudo_labels` scores every aligned training face with a DifFIQA teacher and caches
   the raw scores on disk, keyed by the teacher's identity (denoiser sha256, ``t``, ``n``,
   seed, eta, fast mode, flip, FR model) and a fingerprint of the faces. The work is split in
   fixed chunks written one file each, so a run can be stopped, resumed in a later session, or
   shared between processes (``shard=(i, k)``).
2. :func:`minmax` scales the raw scores to [0, 1].
3. :func:`class_centres`: per identity, the mean target-FR embedding of its faces among the
   top ``p`` (20 %) labels of the whole set (eq. 8). An identity with fewer than
   ``min_count`` such faces gets no centre (the official code uses 10 on ~2M images; with
   ~20 faces per identity the top 20 % hold ~4 per identity, see the model card).
4. :func:`optimize_labels`: ``q_o = clamp(q - eps * (1 - cos(e_x, centre)), 0, 1)`` (the
   official code's form of eq. 11), ``eps = 0.5``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InvalidArgumentError

LABELS_VERSION = 1
CHUNK = 64  # faces per chunk file


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` through a temporary file and a rename: readers never see a partial file."""
    path = Path(path)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
    return path


def faces_fingerprint(faces: np.ndarray) -> str:
    """sha256 of an ``(N, 112, 112, 3)`` uint8 array's shape and bytes (hex, 16 chars)."""
    h = hashlib.sha256(repr(tuple(faces.shape)).encode())
    step = 512
    for i in range(0, len(faces), step):
        h.update(np.ascontiguousarray(faces[i : i + step]).tobytes())
    return h.hexdigest()[:16]


def teacher_identity(scorer) -> dict:
    """What makes a :class:`~fiqa_sdk.quality.diffiqa.DifFIQAScorer`'s scores what they are."""
    meta = getattr(scorer, "meta", {}) or {}
    return {
        "method": "diffiqa",
        # the sidecar's sha256 when loaded from a file, else a digest of the module's tensors
        "weights_sha256": meta.get("sha256") or getattr(scorer, "weights_sha256", None),
        "t": scorer.t, "n": scorer.n, "seed": scorer.seed, "eta": scorer.eta,
        "fast": scorer.fast, "flip": scorer.flip,
        "embedder": getattr(scorer.embedder, "name", type(scorer.embedder).__name__),
        "labels_version": LABELS_VERSION,
    }


def label_dir(root: str | os.PathLike, teacher: dict, fingerprint: str) -> Path:
    """``root/<hash of teacher + data>``: where one teacher's labels of one face set live."""
    key = json.dumps({"teacher": teacher, "faces": fingerprint}, sort_keys=True)
    return Path(root) / hashlib.sha256(key.encode()).hexdigest()[:16]


def pseudo_labels(faces: np.ndarray, scorer, cache_dir: str | os.PathLike,
                  shard: tuple[int, int] = (0, 1), max_minutes: float | None = None,
                  log: Callable[[str], None] | None = None) -> tuple[np.ndarray, Path]:
    """Raw DifFIQA scores of ``faces`` (``(N, 112, 112, 3)`` uint8 RGB), cached and resumable.

    Chunks of :data:`CHUNK` faces are scored in order; this process takes the chunks
    ``c`` with ``c % k == i`` for ``shard=(i, k)``. Returns ``(scores, folder)``: scores is
    ``(N,)`` float64 with NaN where a chunk is not done yet (another shard, or stopped by
    ``max_minutes``); the folder holds ``meta.json`` and one ``chunk_<start>.npy`` per chunk.
    """
    log = log or (lambda msg: None)
    i, k = (int(shard[0]), int(shard[1]))
    if not (k >= 1 and 0 <= i < k):
        raise InvalidArgumentError(f"shard must be (i, k) with 0 <= i < k, got {shard}")
    teacher = teacher_identity(scorer)
    fp = faces_fingerprint(faces)
    out = label_dir(cache_dir, teacher, fp)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"teacher": teacher, "faces": fp, "n_faces": int(len(faces)), "chunk": CHUNK}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    starts = list(range(0, len(faces), CHUNK))
    t0 = time.time()
    done_here = 0
    for c, s in enumerate(starts):
        if c % k != i:
            continue
        path = out / f"chunk_{s:07d}.npy"
        if path.is_file():
            continue
        if max_minutes is not None and time.time() - t0 > 60 * max_minutes:
            log(f"stopped after {done_here} faces (max_minutes)")
            break
        q = scorer.score(np.asarray(faces[s : s + CHUNK]))
        save_npy(path, q.astype(np.float64))
        done_here += len(q)
        rate = (time.time() - t0) / done_here
        log(f"labels {s + len(q)}/{len(faces)} ({rate:.2f} s/face)")
    return read_labels(out, len(faces)), out


def read_labels(folder: str | os.PathLike, n: int) -> np.ndarray:
    """Assemble the chunk files of a label folder: ``(n,)`` float64, NaN where missing."""
    folder = Path(folder)
    q = np.full(n, np.nan)
    for p in folder.glob("chunk_*.npy"):
        if p.name.endswith(".tmp.npy"):
            continue
        s = int(p.stem.split("_")[1])
        v = np.load(p)
        q[s : s + len(v)] = v
    return q


def minmax(q: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (min -> 0, max -> 1); a constant array maps to 0.5."""
    q = np.asarray(q, np.float64)
    lo, hi = np.min(q), np.max(q)
    if hi - lo < 1e-12:
        return np.full_like(q, 0.5)
    return (q - lo) / (hi - lo)


def class_centres(emb: np.ndarray, ids: np.ndarray, q: np.ndarray, p: float = 0.2,
                  min_count: int = 3) -> dict[int, np.ndarray]:
    """Per-identity mean embedding over the faces among the top ``p`` fraction of labels.

    ``emb``: ``(N, D)`` target-FR embeddings (L2-normalised or not); ``ids``: ``(N,)`` identity
    labels; ``q``: ``(N,)`` quality labels. The top set is the ``ceil(p * N)`` highest labels
    of the whole set (ties by index). Identities with fewer than ``min_count`` faces in it get
    no centre. Returns ``{identity: (D,) float64 centre}``.
    """
    emb, ids, q = np.asarray(emb, np.float64), np.asarray(ids), np.asarray(q, np.float64)
    if not (len(emb) == len(ids) == len(q)):
        raise InvalidArgumentError(f"emb, ids and q must have the same length, got {len(emb)}, {len(ids)}, {len(q)}")
    if not 0 < p <= 1:
        raise InvalidArgumentError(f"p must be in (0, 1], got {p}")
    n_top = int(np.ceil(p * len(q)))
    top = np.argsort(-q, kind="stable")[:n_top]
    centres = {}
    for ident in np.unique(ids[top]):
        rows = top[ids[top] == ident]
        if len(rows) >= min_count:
            centres[int(ident)] = emb[rows].mean(0)
    return centres


def centre_cosines(emb: np.ndarray, ids: np.ndarray, centres: dict[int, np.ndarray]) -> np.ndarray:
    """``cos(e_x, centre_id(x))`` per face; NaN for faces whose identity has no centre."""
    emb = np.asarray(emb, np.float64)
    out = np.full(len(emb), np.nan)
    for i, (e, ident) in enumerate(zip(emb, np.asarray(ids))):
        c = centres.get(int(ident))
        if c is not None:
            out[i] = float(e @ c / max(np.linalg.norm(e) * np.linalg.norm(c), 1e-12))
    return out


def optimize_labels(q: np.ndarray, cos: np.ndarray, eps: float = 0.5) -> np.ndarray:
    """eDifFIQA label optimization: ``clamp(q - eps * (1 - cos), 0, 1)``.

    ``q``: labels in [0, 1]; ``cos``: cosine of each face's embedding with its class centre
    (:func:`centre_cosines`). NaN cosines (no centre) stay NaN in the output.
    """
    q, cos = np.asarray(q, np.float64), np.asarray(cos, np.float64)
    return np.clip(q - float(eps) * (1.0 - cos), 0.0, 1.0)


def target_embeddings(faces: np.ndarray, embedder, cache_dir: str | os.PathLike | None = None,
                      raw: bool = True, log: Callable[[str], None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of ``faces`` and of their mirrors by the target FR model, cached.

    Returns ``(emb, emb_flip)``, each ``(N, D)`` float32, raw (un-normalised) when ``raw``.
    With ``cache_dir``, they are stored as ``emb_<name>_<fingerprint>.npy`` (and ``_flip``).
    """
    name = getattr(embedder, "name", type(embedder).__name__).replace(":", "_").replace("/", "_")
    paths = None
    if cache_dir is not None:
        fp = faces_fingerprint(faces)
        kind = "raw" if raw else "unit"
        paths = [Path(cache_dir) / f"emb_{name}_{kind}_{fp}{s}.npy" for s in ("", "_flip")]
        if all(p.is_file() for p in paths):
            return np.load(paths[0]), np.load(paths[1])
    fn = embedder.embed_raw if raw else embedder.embed
    outs: list[list[np.ndarray]] = [[], []]
    t0 = time.time()
    for s in range(0, len(faces), 256):
        chunk = np.asarray(faces[s : s + 256])
        outs[0].append(fn(chunk))
        outs[1].append(fn(np.ascontiguousarray(chunk[:, :, ::-1])))
        if log is not None:
            log(f"target embeddings {s + len(chunk)}/{len(faces)} ({time.time() - t0:.0f} s)")
    emb, emb_f = (np.concatenate(o).astype(np.float32) for o in outs)
    if paths is not None:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        for p, a in zip(paths, (emb, emb_f)):
            save_npy(p, a)
    return emb, emb_f
