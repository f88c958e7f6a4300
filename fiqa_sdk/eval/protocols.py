"""Evaluation protocols over face image folders (LFW layout: ``images/<Name>/<Name>_NNNN.jpg``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FiqaError


def default_lfw_root() -> Path:
    """``$FIQA_LFW`` if set, else ``../shared/data/lfw`` beside the repository (development)."""
    env = os.environ.get("FIQA_LFW")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "lfw"


@dataclass(frozen=True)
class PairsProtocol:
    """Image pairs with mated (same identity) labels and fold indices.

    ``paths`` lists every distinct image; ``pairs`` is ``(P, 2)`` indices into ``paths``.
    """

    paths: list[Path]
    pairs: np.ndarray  # (P, 2) int64
    mated: np.ndarray  # (P,) bool
    folds: np.ndarray  # (P,) int64, fold index of each pair


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
