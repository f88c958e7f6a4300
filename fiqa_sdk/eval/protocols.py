"""Evaluation protocols over face image folders (LFW layout: ``images/<Name>/<Name>_NNNN.jpg``).

- :func:`read_lfw_pairs`: LFW's pairs.txt, 3,000 mated + 3,000 non-mated pairs in ten folds
  (:class:`PairsProtocol`).
- :func:`lfw_all_vs_all`, :func:`folder_protocol`, :func:`csv_protocol`: every mated pair of a
  set of identity-labelled images and every non-mated pair (implicit, scored blockwise by
  :mod:`fiqa_sdk.eval.evaluate`) or a seeded uniform sample of them (:class:`IdentityProtocol`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._paths import lfw_root
from ..errors import EvaluationError, FiqaError


def default_lfw_root() -> Path:
    """``$FIQA_LFW`` (:class:`~fiqa_sdk.errors.DataLocationError` when it is not set)."""
    return lfw_root()


@dataclass(frozen=True)
class PairsProtocol:
    """Image pairs with mated (same identity) labels and fold indices.

    ``paths`` lists every distinct image; ``pairs`` is ``(P, 2)`` indices into ``paths``.
    """

    paths: list[Path]
    pairs: np.ndarray  # (P, 2) int64
    mated: np.ndarray  # (P,) bool
    folds: np.ndarray  # (P,) int64, fold index of each pair

    @property
    def mated_pairs(self) -> np.ndarray:
        """``(M, 2)`` index pairs of the mated pairs."""
        return self.pairs[self.mated]

    @property
    def nonmated_pairs(self) -> np.ndarray:
        """``(K, 2)`` index pairs of the non-mated pairs."""
        return self.pairs[~self.mated]


#: Pairs per fold and kind of the benchmarks' ``--quick`` modes (200 pairs of pairs.txt).
QUICK_PAIRS_PER_FOLD = 10


def pairs_subset(protocol: PairsProtocol, per_fold: int) -> PairsProtocol:
    """The first ``per_fold`` mated and the first ``per_fold`` non-mated pairs of every fold,
    with only the images they use (so 10-fold accuracy stays defined on a small subset; the
    ``--quick`` modes of the benchmarks)."""
    per_fold = int(per_fold)
    if per_fold < 1:
        raise EvaluationError(f"pairs per fold must be >= 1, got {per_fold}")
    keep = np.zeros(len(protocol.pairs), dtype=bool)
    for f in np.unique(protocol.folds):
        for mated in (True, False):
            rows = np.flatnonzero((protocol.folds == f) & (protocol.mated == mated))
            keep[rows[:per_fold]] = True
    pairs = protocol.pairs[keep]
    used = np.unique(pairs)
    remap = np.full(len(protocol.paths), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return PairsProtocol(paths=[protocol.paths[i] for i in used], pairs=remap[pairs],
                         mated=protocol.mated[keep], folds=protocol.folds[keep])


def lfw_image_path(root: Path, name: str, index: int) -> Path:
    return root / "images" / name / f"{name}_{index:04d}.jpg"


def read_lfw_pairs(root: str | Path | None = None, pairs_file: str = "pairs.txt") -> PairsProtocol:
    """The LFW 6,000-pair verification protocol.

    ``pairs.txt``: a header (pair count per class, or "folds count" as in the original file),
    then the mated pairs ``Name i j`` and the non-mated pairs ``NameA i NameB j``. LFW's ten
    folds are ten consecutive blocks of each class (the file lists both classes in the same
    fold order), so pair k of a class of n pairs belongs to fold ``k * 10 // n``.
    """
    root = Path(root) if root is not None else default_lfw_root()
    path = root / pairs_file
    if not path.is_file():
        raise FiqaError(f"LFW pairs file not found: {path} (set FIQA_LFW or pass root=)")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    body = lines[1:]
    mated_rows = [r for r in body if len(r) == 3]
    non_rows = [r for r in body if len(r) == 4]
    if len(mated_rows) + len(non_rows) != len(body):
        raise FiqaError(f"{path}: lines must have 3 (mated) or 4 (non-mated) fields")
    index: dict[Path, int] = {}

    def idx(p: Path) -> int:
        return index.setdefault(p, len(index))

    pairs, mated, folds = [], [], []
    for rows, is_mated in ((mated_rows, True), (non_rows, False)):
        n = len(rows)
        for k, r in enumerate(rows):
            if is_mated:
                a, b = lfw_image_path(root, r[0], int(r[1])), lfw_image_path(root, r[0], int(r[2]))
            else:
                a, b = lfw_image_path(root, r[0], int(r[1])), lfw_image_path(root, r[2], int(r[3]))
            pairs.append((idx(a), idx(b)))
            mated.append(is_mated)
            folds.append(k * 10 // n)
    return PairsProtocol(
        paths=list(index), pairs=np.asarray(pairs, dtype=np.int64),
        mated=np.asarray(mated, dtype=bool), folds=np.asarray(folds, dtype=np.int64),
    )


# --------------------------------------------------------------------------------------------
# Identity protocols: every mated pair, and every (or a seeded sample of) non-mated pair
# --------------------------------------------------------------------------------------------

#: File name endings read as images by :func:`folder_protocol` (case-insensitive).
from ..io import IMAGE_EXTENSIONS  # noqa: E402 - the one set of image extensions

IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS))


@dataclass(frozen=True)
class IdentityProtocol:
    """All-vs-all comparisons of images labelled with identities.

    ``mated_pairs`` holds every unordered pair of distinct images of one identity, ``(i, j)``
    with ``i < j`` (indices into ``paths``). Non-mated pairs are either *all* unordered pairs of
    images of different identities, kept implicit (``nonmated_pairs is None``: there are
    ``n_nonmated_total`` of them, ~87.3M on LFW, scored blockwise by the benchmark), or a seeded
    uniform sample of ``n_nonmated`` distinct pairs, ``(K, 2)`` with ``i < j``, sorted.
    """

    paths: list[Path]
    labels: np.ndarray  # (N,) int64 index into ``identities``
    identities: list[str]
    mated_pairs: np.ndarray  # (M, 2) int64, i < j
    nonmated_pairs: np.ndarray | None  # (K, 2) int64 sample, or None for all
    n_nonmated_total: int
    seed: int | None = None  # the sampling seed, None when all non-mated pairs are used

    @property
    def n_mated(self) -> int:
        return int(len(self.mated_pairs))

    @property
    def n_nonmated(self) -> int:
        """Non-mated pairs the protocol uses: the sample size, or all of them."""
        if self.nonmated_pairs is None:
            return self.n_nonmated_total
        return int(len(self.nonmated_pairs))

    @property
    def nonmated_sampled(self) -> bool:
        return self.nonmated_pairs is not None


def same_label_pairs(labels: np.ndarray) -> np.ndarray:
    """Every unordered same-label pair ``(i, j)``, ``i < j``, ordered by ``i`` then ``j``."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = []
    for s, c in zip(starts[counts > 1], counts[counts > 1]):
        members = np.sort(order[s : s + c])
        a, b = np.triu_indices(c, k=1)
        out.append(np.stack([members[a], members[b]], axis=1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(out).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def sample_nonmated_pairs(labels, n: int, seed: int = 0) -> np.ndarray:
    """A uniform random set of ``n`` distinct non-mated pairs, without listing all of them.

    Draws image index pairs uniformly, keeps those of different identities, de-duplicates
    (as unordered pairs), and repeats until ``n`` distinct pairs are found; a uniform subset of
    exactly ``n`` of them is returned (every ``n``-subset of the non-mated pairs is equally
    likely). Memory is linear in ``n``, never in the number of all non-mated pairs.

    Returns:
        ``(n, 2)`` int64, ``i < j``, sorted by ``i`` then ``j``; deterministic for a seed.

    Raises:
        EvaluationError: ``n`` not a positive integer or larger than the number of non-mated
            pairs.
    """
    from ..errors import EvaluationError

    labels = np.asarray(labels)
    nn = len(labels)
    total = nonmated_count(labels)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise EvaluationError(
            f"the number of non-mated pairs to sample must be a positive integer, got {n!r}")
    n = int(n)
    if n > total:
        raise EvaluationError(f"cannot sample {n} non-mated pairs: there are only {total}")
    rng = np.random.default_rng(seed)
    codes = np.zeros(0, dtype=np.int64)
    while codes.size < n:
        # Draw enough that the expected number of new pairs covers what is missing.
        new_rate = max((total - codes.size) / total, 1e-6)
        draws = int((n - codes.size) / new_rate * 1.05) + 1024
        i = rng.integers(0, nn, draws)
        j = rng.integers(0, nn, draws)
        keep = labels[i] != labels[j]  # also drops i == j
        a, b = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
        codes = _sorted_unique(np.concatenate([codes, a * nn + b]))
    if codes.size > n:
        codes = np.sort(rng.choice(codes, size=n, replace=False))
    return np.stack([codes // nn, codes % nn], axis=1)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    # np.sort + neighbour compare: np.unique is ~40x slower on 10M int64 in numpy 2.4 (hashing).
    x = np.sort(x)
    if x.size < 2:
        return x
    keep = np.empty(x.size, dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def nonmated_count(labels) -> int:
    """Number of unordered pairs of images with different labels."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1].astype(np.int64)
    n = int(counts.sum())
    return n * (n - 1) // 2 - int((counts * (counts - 1) // 2).sum())


def identity_protocol(paths, identities, max_nonmated: int | None = None, seed: int = 0,
                      source: str = "the protocol") -> IdentityProtocol:
    """An :class:`IdentityProtocol` from parallel lists of image paths and identity names.

    Raises:
        EvaluationError: no images, lengths differ, duplicate paths, no mated pair (every
            identity has a single image) or no non-mated pair (a single identity).
    """
    from ..errors import EvaluationError

    paths = [Path(p) for p in paths]
    identities = [str(x) for x in identities]
    if len(paths) != len(identities):
        raise EvaluationError(f"{source}: {len(paths)} paths but {len(identities)} identity labels")
    if not paths:
        raise EvaluationError(f"{source}: no images")
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise EvaluationError(f"{source}: image listed more than once: {dup}")
    names, labels = np.unique(np.asarray(identities, dtype=object).astype(str), return_inverse=True)
    labels = labels.astype(np.int64).reshape(-1)
    mated = same_label_pairs(labels)
    if len(mated) == 0:
        raise EvaluationError(
            f"{source}: no mated pairs (every identity has a single image); need an identity "
            "with at least two images"
        )
    if len(names) < 2:
        raise EvaluationError(f"{source}: a single identity ({names[0]!r}), so no non-mated pairs")
    total = nonmated_count(labels)
    nonmated = None
    if max_nonmated is not None:
        if isinstance(max_nonmated, bool) or not isinstance(max_nonmated, (int, np.integer)) \
                or max_nonmated < 1:
            raise EvaluationError(f"max_nonmated must be a positive integer, got {max_nonmated!r}")
        if max_nonmated < total:
            nonmated = sample_nonmated_pairs(labels, int(max_nonmated), seed)
    return IdentityProtocol(
        paths=paths, labels=labels, identities=[str(x) for x in names], mated_pairs=mated,
        nonmated_pairs=nonmated, n_nonmated_total=total,
        seed=None if nonmated is None else int(seed),
    )


def folder_protocol(root: str | Path, max_nonmated: int | None = None,
                    seed: int = 0) -> IdentityProtocol:
    """All-vs-all protocol over a folder of identity subfolders (``root/<identity>/<image>``).

    Images are the files ending in one of :data:`IMAGE_SUFFIXES`; identities and files are taken
    in sorted name order. Hidden entries are skipped. ``max_nonmated``: use a seeded uniform
    sample of that many distinct non-mated pairs instead of all of them (ignored when it is not
    smaller than the number of non-mated pairs).
    """
    from ..errors import EvaluationError

    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"identity folder not found: {root}")
    paths, ids = [], []
    subdirs = [e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
    for d in sorted(subdirs, key=lambda e: e.name):
        for f in sorted(os.scandir(d.path), key=lambda e: e.name):
            name = f.name
            if f.is_file() and not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                paths.append(root / d.name / f.name)
                ids.append(d.name)
    if not paths:
        raise EvaluationError(
            f"{root}: no images in identity subfolders (expected {root}/<identity>/<image>.jpg)"
        )
    return identity_protocol(paths, ids, max_nonmated, seed, source=str(root))


def lfw_all_vs_all(root: str | Path | None = None, max_nonmated: int | None = None,
                   seed: int = 0) -> IdentityProtocol:
    """LFW all-vs-all from the identity folders ``root/images/<Name>/``: 13,233 images, 242,257
    mated pairs and 87,307,271 non-mated pairs (all, or a seeded sample of ``max_nonmated``)."""
    root = Path(root) if root is not None else default_lfw_root()
    if not (root / "images").is_dir():
        from ..errors import EvaluationError

        raise EvaluationError(
            f"LFW images folder not found: {root / 'images'} (set FIQA_LFW or pass root=)")
    return folder_protocol(root / "images", max_nonmated, seed)


def csv_protocol(csv_path: str | Path, image_root: str | Path | None = None,
                 max_nonmated: int | None = None, seed: int = 0) -> IdentityProtocol:
    """All-vs-all protocol from a CSV with (at least) the columns ``file`` and ``identity``.

    ``file`` is relative to ``image_root`` (default: the CSV's folder) or absolute. Other
    columns are ignored. Missing image files are an error (listing the first few).
    """
    import csv

    from ..errors import EvaluationError

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise EvaluationError(f"CSV file not found: {csv_path}")
    image_root = Path(image_root) if image_root is not None else csv_path.parent
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("file", "identity") if c not in cols]
        if missing:
            raise EvaluationError(
                f"{csv_path}: missing column(s) {missing}; the header must name 'file' and "
                f"'identity' (found {cols})"
            )
        reader.fieldnames = cols
        paths, ids = [], []
        for lineno, row in enumerate(reader, start=2):
            f, ident = (row.get("file") or "").strip(), (row.get("identity") or "").strip()
            if not f or not ident:
                raise EvaluationError(f"{csv_path}:{lineno}: empty 'file' or 'identity'")
            paths.append(image_root / f)
            ids.append(ident)
    absent = [p for p in paths if not p.is_file()]
    if absent:
        shown = ", ".join(str(p) for p in absent[:3])
        raise EvaluationError(
            f"{csv_path}: {len(absent)} image file(s) not found (relative to {image_root}): {shown}"
            + (" ..." if len(absent) > 3 else "")
        )
    return identity_protocol(paths, ids, max_nonmated, seed, source=str(csv_path))
