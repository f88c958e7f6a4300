"""Aligned training faces: detect + align a folder of photos once, cache one uint8 array.

Two layouts of a training set are read (:func:`list_training_images`):

- ``root/identities.csv`` (columns ``file``, ``identity``: an integer) with the images in
  ``root/images/`` -- the layout of celeba-subset (``$FIQA_CELEBA``);
- one sub-folder per identity, ``root/<identity>/<image>`` (the extensions of
  :data:`fiqa_sdk.io.IMAGE_EXTENSIONS`, as the gate reads, any case; other files are ignored), identities numbered in sorted folder-name order.

The cache is ``<cache>/<name>/faces.npy`` (``(N, 112, 112, 3)`` uint8 RGB, ArcFace template)
plus ``index.csv`` (``row,file,identity,det_score``) and ``skipped.csv`` (``file,reason``).
The cache folder is ``$FIQA_CACHE`` (or ``~/.cache/fiqa-sdk``) unless one is passed; it is never
inside the repository or the shared data folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .._paths import cache_root, celeba_root  # noqa: F401 (cache_root re-exported)
from ..errors import ConsistencyError, InvalidArgumentError

from ..io import IMAGE_EXTENSIONS  # noqa: E402 - the one set of image extensions

IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS))


def __getattr__(name: str):
    """``DEFAULT_CELEBA``: the default training set, ``$FIQA_CELEBA`` read when asked for
    (:class:`~fiqa_sdk.errors.DataLocationError` when it is not set)."""
    if name == "DEFAULT_CELEBA":
        return celeba_root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class AlignedFaces:
    """A cached set of aligned faces.

    ``faces``: ``(N, 112, 112, 3)`` uint8 RGB (memory-mapped); ``files``, ``identities`` and
    ``det_scores`` have length N; ``skipped`` counts the source images without a usable face.
    """

    faces: np.ndarray
    files: list[str]
    identities: np.ndarray
    det_scores: np.ndarray
    skipped: int
    path: Path

    def __len__(self) -> int:
        return len(self.faces)


def _read_identities(root: Path) -> list[tuple[str, int]]:
    with open(root / "identities.csv", newline="") as f:
        return [(row["file"], int(row["identity"])) for row in csv.DictReader(f)]


def list_training_images(root: str | os.PathLike) -> tuple[list[tuple[str, Path, int]], str]:
    """The images of a training set and its cache name.

    Returns ``[(file, path, identity), ...]`` and the name of its aligned-face cache folder.
    ``file`` is the image's name in ``identities.csv``, or ``<identity folder>/<image>`` for the
    sub-folder layout. The sub-folder layout's cache name carries a digest of the file list
    (names, sizes, modification times), so changed data is aligned again and unchanged data
    reuses its cache.

    Raises :class:`~fiqa_sdk.errors.InvalidArgumentError` when ``root`` is not a folder, looks
    like LFW (the evaluation set), or holds neither layout.
    """
    from ..errors import InvalidArgumentError

    root = Path(root).expanduser()
    if "lfw" in root.name.lower():
        raise InvalidArgumentError(f"{root} looks like LFW, the evaluation set: never train on it")
    if not root.is_dir():
        raise InvalidArgumentError(f"training data {root} is not a folder")
    if (root / "identities.csv").is_file():
        rows = [(f, root / "images" / f, ident) for f, ident in _read_identities(root)]
        return rows, f"{root.name}-aligned"
    people = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows = [(f"{person.name}/{img.name}", img, ident) for ident, person in enumerate(people)
            for img in sorted(person.iterdir())
            if img.is_file() and img.suffix.lower() in IMAGE_SUFFIXES]
    if not rows:
        raise InvalidArgumentError(
            f"{root} is not a training set: expected identities.csv + images/, or one sub-folder "
            f"of face images ({' '.join(IMAGE_SUFFIXES)}) per identity")
    digest = hashlib.sha256()
    for file, path, _ in rows:
        st = path.stat()
        digest.update(f"{file}/{st.st_size}/{st.st_mtime_ns}\n".encode())
    return rows, f"{root.name}-{digest.hexdigest()[:12]}-aligned"


def subset_folder(root: str | os.PathLike, dest: str | os.PathLike, identities: int, faces: int,
                  among: np.ndarray | None = None, min_identities: int | None = None) -> Path:
    """A small training set: copies of ``faces`` images each of the first ``identities``
    identities of ``root`` (sorted by label; ``among``: a boolean mask over
    :func:`list_training_images`'s rows to choose from) that have at least ``faces`` images,
    written as one sub-folder per identity to ``dest/<root name>-subset``. Copies keep the
    modification times, so the same subset gets the same aligned-face cache.

    Raises :class:`~fiqa_sdk.errors.InvalidArgumentError` when fewer than ``min_identities``
    (default ``identities``) qualify."""
    import shutil

    from ..errors import InvalidArgumentError

    rows, _ = list_training_images(root)
    ids = np.array([ident for _, _, ident in rows])
    pool = ids if among is None else ids[np.asarray(among, bool)]
    uniq, counts = np.unique(pool, return_counts=True)
    chosen = [int(i) for i in uniq[counts >= faces][:identities]]
    need = identities if min_identities is None else min_identities
    if len(chosen) < need:
        raise InvalidArgumentError(f"fewer than {need} identities of {root} have {faces} images")
    folder = Path(dest) / f"{Path(root).name}-subset"
    for ident in chosen:
        person = folder / f"{ident:06d}"
        person.mkdir(parents=True, exist_ok=True)
        for _, path, _ in [r for r in rows if r[2] == ident][:faces]:
            shutil.copy2(path, person / path.name)
    return folder


def load_aligned(path: str | os.PathLike) -> AlignedFaces:
    """Open a cache folder written by :func:`build_aligned_cache`."""
    path = Path(path)
    faces = np.load(path / "faces.npy", mmap_mode="r")
    files, ids, scores = [], [], []
    with open(path / "index.csv", newline="") as f:
        for row in csv.DictReader(f):
            files.append(row["file"])
            ids.append(int(row["identity"]))
            scores.append(float(row["det_score"]))
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else {}
    if len(files) != len(faces):
        raise ConsistencyError(f"cache {path} is inconsistent: {len(faces)} faces, {len(files)} index rows")
    return AlignedFaces(faces, files, np.asarray(ids, np.int64), np.asarray(scores, np.float32),
                        int(meta.get("skipped", 0)), path)


def build_aligned_cache(
    root: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    name: str | None = None,
    detector: str = "retinaface",
    face_policy: str = "largest",
    limit: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> AlignedFaces:
    """Detect and align every image of the training set ``root``; cache the crops.

    ``root`` is either layout of :func:`list_training_images` (default ``$FIQA_CELEBA``;
    :class:`~fiqa_sdk.errors.DataLocationError` when neither is given). Uses the project's own
    :class:`~fiqa_sdk.pipeline.FacePipeline` (detector -> ArcFace 5-point alignment, no
    embedder). Images with no detected face (or a degenerate alignment, or that cannot be
    decoded) are skipped, with the reason in ``skipped.csv``. An existing complete cache is
    reused unless ``overwrite``. The cache sub-folder is ``name`` (default: the name
    :func:`list_training_images` gives, ``<root folder name>-aligned`` for ``identities.csv``;
    with ``limit``, ``...-first<limit>-aligned``).
    """
    from ..pipeline import FacePipeline

    root = celeba_root(root)
    listed, default_name = list_training_images(root)
    if limit is not None and name is None:  # a truncated set never poses as the whole one
        default_name = default_name.replace("-aligned", f"-first{int(limit)}-aligned")
    out = cache_root(cache) / (name or default_name)
    if (out / "faces.npy").is_file() and (out / "index.csv").is_file() and not overwrite:
        return load_aligned(out)
    out.mkdir(parents=True, exist_ok=True)
    if limit is not None:
        listed = listed[: int(limit)]
    pipe = FacePipeline(detector=detector, embedder=None, face_policy=face_policy)
    crops, index, skipped = [], [], []
    t0 = time.time()
    paths = [path for _, path, _ in listed]
    for k, (res, (file, _, ident)) in enumerate(zip(pipe.process_batch(paths), listed)):
        r = res[0]
        if r.ok:
            crops.append(r.aligned)
            index.append((file, ident, r.face.det_score))
        else:
            skipped.append((file, r.reason))
        if progress is not None:
            progress(k + 1, len(listed))
    faces = np.stack(crops) if crops else np.zeros((0, 112, 112, 3), np.uint8)
    tmp = out / "faces.tmp.npy"
    np.save(tmp, faces)
    with open(out / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "file", "identity", "det_score"])
        for i, (file, ident, score) in enumerate(index):
            w.writerow([i, file, ident, f"{score:.4f}"])
    with open(out / "skipped.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "reason"])
        w.writerows(skipped)
    (out / "meta.json").write_text(json.dumps({
        "source": str(root), "detector": detector, "face_policy": face_policy,
        "images": len(listed), "aligned": len(index), "skipped": len(skipped),
        "seconds": round(time.time() - t0, 1),
    }, indent=2))
    os.replace(tmp, out / "faces.npy")  # last: a complete faces.npy marks a complete cache
    return load_aligned(out)


#: version of :func:`degraded_copies`' recipe (part of its cache folder name)
DEGRADED_VERSION = 1


def degraded_copies(aligned: AlignedFaces, copies: int = 1, seed: int = 1,
                    progress: Callable[[int, int], None] | None = None) -> AlignedFaces:
    """``copies`` synthetically degraded versions of every aligned face, cached next to them.

    Copy ``j`` of face ``x`` is ``(1 - a) x + a d(x)``: ``d`` one random BSRGAN-style chain of
    :func:`fiqa_sdk.diffusion.degrade.degrade` (blur, down-sampling, Gaussian / Poisson noise,
    JPEG), ``a ~ U(0, 1)`` per copy -- the mix of DifFIQA's extended training (eq. 6) with a
    random weight, so the copies span the whole range from barely touched to strongly
    degraded. They widen the quality range of a small, mostly high-quality training set for the
    distilled regressors (``train_ediffiqa(..., degraded_copies=k)``); identities are the
    originals'. Deterministic for the same faces, ``copies`` and ``seed``.

    Written once to ``<aligned.path>/degraded-k<copies>-s<seed>-v<DEGRADED_VERSION>/`` (the
    :func:`load_aligned` layout; ``index.csv`` files are ``<file>#deg<j>``, ``mix.npy`` holds
    the weights ``a``) and reused. The faces passed are not modified.
    """
    from ..diffusion.degrade import degrade_batch

    copies, seed = int(copies), int(seed)
    if copies < 1:
        raise InvalidArgumentError(f"copies must be >= 1, got {copies}")
    out = Path(aligned.path) / f"degraded-k{copies}-s{seed}-v{DEGRADED_VERSION}"
    if (out / "faces.npy").is_file() and (out / "index.csv").is_file():
        return load_aligned(out)
    out.mkdir(parents=True, exist_ok=True)
    n, step = len(aligned), 256
    faces = np.empty((copies * n,) + tuple(aligned.faces.shape[1:]), np.uint8)
    mixes = []
    t0 = time.time()
    for j in range(copies):  # copy j: seed + j (chunks of 256 faces, one generator each)
        mix = np.random.default_rng([seed + j, 99]).uniform(0, 1, n)
        mixes.append(mix)
        for s in range(0, n, step):
            x = np.asarray(aligned.faces[s : s + step])
            d = degrade_batch(x, np.random.default_rng([seed + j, s])).astype(np.float32)
            a = mix[s : s + len(x), None, None, None]
            faces[j * n + s : j * n + s + len(x)] = np.rint((1 - a) * x + a * d).clip(0, 255)
            if progress is not None:
                progress(j * n + s + len(x), copies * n)
    mix = np.concatenate(mixes)
    # every file through a private temporary name and a rename: shards of `fiqa train labels`
    # may build the same copies at the same time (identical bytes; the last rename wins)
    part = f".{os.getpid()}.tmp"
    np.save(out / f"mix{part}.npy", mix)
    with open(out / f"index{part}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "file", "identity", "det_score"])
        for k in range(copies * n):
            i = k % n
            w.writerow([k, f"{aligned.files[i]}#deg{k // n}", int(aligned.identities[i]),
                        f"{float(aligned.det_scores[i]):.4f}"])
    (out / f"meta{part}.json").write_text(json.dumps({
        "source": str(aligned.path), "copies": copies, "seed": seed,
        "recipe": f"(1 - a) x + a degrade(x), a ~ U(0, 1); v{DEGRADED_VERSION}",
        "aligned": copies * n, "skipped": 0, "seconds": round(time.time() - t0, 1),
    }, indent=2))
    np.save(out / f"faces{part}.npy", faces)
    for name in ("mix.npy", "index.csv", "meta.json", "faces.npy"):  # faces.npy last: complete
        stem, ext = name.split(".")
        os.replace(out / f"{stem}{part}.{ext}", out / name)
    return load_aligned(out)
