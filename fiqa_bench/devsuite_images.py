"""Images of the hard-data development benchmark (``fiqa-bench quality --suite dev``).

The dev suite's sets all draw on one fixed, documented subset of LFW, :func:`dev_relpaths`:
the identities with at least :data:`DEV_MIN_IMAGES` images, at most :data:`DEV_MAX_PER_ID` of
each (chosen by the sha256 of ``"fiqa-dev/v1/<Name/Name_NNNN.jpg>"``, smallest first: no
random state, the same on every machine). With LFW deep-funneled that is 610 identities and
4,578 images (19,809 mated pairs all-vs-all). The cap keeps a few people (George W. Bush has
530 images) from carrying most mated pairs, and keeps the suite affordable on a CPU.

``--quick`` uses :data:`QUICK_IDENTITIES` identities of that subset (the first in sha256 order
of ``"fiqa-dev/v1/quick/<Name>"``) with at most :data:`QUICK_PER_ID` images each.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fiqa_sdk.errors import EvaluationError

DEV_VERSION = "v1"
DEV_MIN_IMAGES = 4
DEV_MAX_PER_ID = 15
QUICK_IDENTITIES = 12
QUICK_PER_ID = 4
#: The teacher check's subset (``fiqa-bench quality --teacher-check``): identities in sha256
#: order of ``"fiqa-dev/v1/teacher/<Name>"``, at most this many images each.
TEACHER_IDENTITIES = 40
TEACHER_PER_ID = 5
#: The ``clean`` and ``occ`` pools of the full dev suite (the cross-quality sets and the clean
#: reference) use the first this-many images of each identity (in the sha256 order above):
#: 3,174 images, 13,814 gallery x probe mated pairs.
CROSS_PER_ID = 6


def _order_key(rel: str) -> str:
    return _h(f"fiqa-dev/{DEV_VERSION}/{rel}")


def first_per_identity(rels: list[str], k: int) -> list[str]:
    """The first ``k`` images of each identity of ``rels`` in the subset's sha256 order."""
    by_id: dict[str, list[str]] = {}
    for r in sorted(rels, key=_order_key):
        by_id.setdefault(r.split("/")[0], []).append(r)
    return sorted(x for v in by_id.values() for x in v[:k])


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def lfw_images_root(lfw_root: str | Path | None) -> Path:
    """``lfw_root/images`` from an argument or ``$FIQA_LFW`` (no default beside the code)."""
    root = lfw_root if lfw_root is not None else os.environ.get("FIQA_LFW")
    if not root:
        raise EvaluationError("the dev suite needs LFW: pass --lfw DIR or set FIQA_LFW")
    images = Path(root).resolve() / "images"  # absolute: feature-cache rows are keyed by path
    if not images.is_dir():
        raise EvaluationError(f"LFW images folder not found: {images} (--lfw / FIQA_LFW)")
    return images


def dev_relpaths(lfw_root: str | Path | None = None, quick: bool = False,
                 subset: str | None = None) -> list[str]:
    """The dev subset as sorted relative paths ``"Name/Name_NNNN.jpg"`` (see the module doc).

    ``subset``: None / ``"dev"`` (the whole dev subset), ``"quick"`` (same as ``quick=True``),
    ``"teacher"`` (the teacher check's :data:`TEACHER_IDENTITIES` x :data:`TEACHER_PER_ID`) or
    ``"teacher-quick"`` (its first :data:`QUICK_IDENTITIES` identities, :data:`QUICK_PER_ID`
    images each)."""
    subset = subset or ("quick" if quick else "dev")
    if subset not in ("dev", "quick", "teacher", "teacher-quick"):
        raise EvaluationError(f"unknown dev subset {subset!r}")
    images = lfw_images_root(lfw_root)
    by_id: dict[str, list[str]] = {}
    for d in sorted(os.scandir(images), key=lambda e: e.name):
        if not d.is_dir() or d.name.startswith("."):
            continue
        files = [f.name for f in os.scandir(d.path)
                 if f.is_file() and f.name.lower().endswith(".jpg") and not f.name.startswith(".")]
        if len(files) >= DEV_MIN_IMAGES:
            rels = sorted((f"{d.name}/{f}" for f in files), key=_order_key)
            by_id[d.name] = rels[:DEV_MAX_PER_ID]
    if not by_id:
        raise EvaluationError(f"{images}: no identity with {DEV_MIN_IMAGES} or more images")
    if subset == "quick":
        names = sorted(by_id, key=lambda n: _h(f"fiqa-dev/{DEV_VERSION}/quick/{n}"))
        by_id = {n: by_id[n][:QUICK_PER_ID] for n in names[:QUICK_IDENTITIES]}
    elif subset.startswith("teacher"):
        k, m = (QUICK_IDENTITIES, QUICK_PER_ID) if subset == "teacher-quick" else (
            TEACHER_IDENTITIES, TEACHER_PER_ID)
        names = sorted(by_id, key=lambda n: _h(f"fiqa-dev/{DEV_VERSION}/teacher/{n}"))
        by_id = {n: by_id[n][:m] for n in names[:k]}
    return sorted(r for rels in by_id.values() for r in rels)
