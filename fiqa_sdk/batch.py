"""Batch jobs over image files: assess a list of images, filter a folder into a CSV table.

What ``fiqa assess`` and ``fiqa filter`` do, as library functions: :func:`assess_images` yields
one :class:`AssessedImage` per face (its :meth:`~AssessedImage.record` is the JSON line of
``fiqa assess``), :func:`filter_folder` scores a folder with
:meth:`QualityGate.filter <fiqa_sdk.QualityGate.filter>` and writes the table of
``fiqa filter --out`` (columns :data:`FILTER_COLUMNS`). Neither raises for an unreadable image:
its row carries the reason, and :data:`UNREADABLE_REASONS` tells such rows apart.

Importing this module imports no model code; the gate is built when a function runs.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from .errors import FolderWarning, GateError

if TYPE_CHECKING:  # pragma: no cover
    from .gate import QualityGate
    from .types import FilterResult, QualityReport

#: Report reasons meaning "the image itself could not be read" (exit code 3 of ``fiqa assess``
#: and ``fiqa filter``), as opposed to a readable image without a usable face.
UNREADABLE_REASONS = ("not_found", "decode_error", "invalid_input")

#: Columns of :func:`filter_folder`'s CSV (``fiqa filter --out``), in order.
FILTER_COLUMNS = ["path", "score", "kept", "reason", "n_faces", "ambiguous"]

#: Label of the bundled sample face in :func:`assess_images` records (``fiqa assess``).
SAMPLE_LABEL = "sample:astronaut"


def _gate(gate: QualityGate | Mapping[str, Any] | None) -> QualityGate:
    """``gate`` itself, a gate built from a dict of :class:`~fiqa_sdk.QualityGate` keyword
    arguments, or the default gate."""
    from .gate import QualityGate

    if isinstance(gate, QualityGate):
        return gate
    return QualityGate(**dict(gate or {}))


# -- assess --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AssessedImage:
    """One face (or one failed image) of :func:`assess_images`: the image's label and the
    gate's :class:`~fiqa_sdk.QualityReport`."""

    path: str
    report: QualityReport

    @property
    def unreadable(self) -> bool:
        """True when the image itself could not be read (see :data:`UNREADABLE_REASONS`)."""
        return self.report.reason in UNREADABLE_REASONS

    def record(self) -> dict:
        """The JSON-able record ``fiqa assess`` prints: ``path``, ``score`` (6 decimals),
        ``accepted``, ``reason``, ``bbox`` and ``det_score`` when a face was found,
        ``n_faces``, ``ambiguous``."""
        r = self.report
        rec: dict = {"path": self.path,
                     "score": None if r.score is None else round(float(r.score), 6),
                     "accepted": bool(r.accepted), "reason": r.reason}
        if r.face is not None:
            rec.update(bbox=[round(float(v), 1) for v in r.face.bbox],
                       det_score=round(r.face.det_score, 4))
        rec.update(n_faces=r.n_faces, ambiguous=r.ambiguous)
        return rec


def assess_images(images: Iterable[Any] | None = None,
                  gate: QualityGate | Mapping[str, Any] | None = None, *,
                  all_faces: bool = False, color: str = "rgb") -> Iterator[AssessedImage]:
    """Assess each image with a :class:`~fiqa_sdk.QualityGate`, lazily, one result per face.

    Parameters
    ----------
    images : iterable or None
        Image file paths (labelled by the path as given), or ``(label, image)`` pairs whose
        image is anything :meth:`QualityGate.assess <fiqa_sdk.QualityGate.assess>` takes.
        None or empty: the bundled sample face (:func:`fiqa_sdk.io.sample_image`), labelled
        :data:`SAMPLE_LABEL`.
    gate : QualityGate, dict or None
        The gate, or the keyword arguments of one (``{"scorer": "diffiqa-r", "threshold":
        0.5}``); None: ``QualityGate()``. The gate is built before the first image is read, so
        a bad option fails at once.
    all_faces : bool
        One result per detected face (``faces="all"``), as with ``face_policy="all"``.
    color : {"rgb", "bgr"}
        Channel order of array images (files carry their own).

    Yields
    ------
    AssessedImage
        In input order. An unreadable image or a missing face is a result with its
        ``reason`` (``"not_found"``, ``"decode_error"``, ``"no_face"``, ...), never an error.

    Examples
    --------
    >>> from fiqa_sdk.batch import assess_images
    >>> [a.record()["accepted"] for a in assess_images()]  # the sample face
    [True]
    >>> for a in assess_images(["photo.jpg", "missing.jpg"], {"threshold": 0.3}):
    ...     print(a.path, a.report.reason, a.unreadable)  # doctest: +SKIP
    photo.jpg None False
    missing.jpg not_found True
    """
    import numpy as np

    g = _gate(gate)
    items = list(images) if images is not None else []
    if not items:
        from .io import sample_image

        items = [(SAMPLE_LABEL, sample_image())]
    for item in items:
        label, img = item if isinstance(item, tuple) else (str(item), item)
        reps = g.assess(img, color=color if isinstance(img, np.ndarray) else "bgr",
                        faces="all" if all_faces or g.face_policy == "all" else None)
        for r in reps if isinstance(reps, list) else [reps]:
            yield AssessedImage(str(label), r)


# -- filter --------------------------------------------------------------------------------------
def prepare_output(path: str | os.PathLike, name: str = "out") -> Path:
    """Create the folder of the output file ``path`` and check that it can be written, so that
    a long run never ends in an error about where to write.

    ``name`` is the argument's name in the error messages (the CLI passes ``"--out"``).
    Raises :class:`~fiqa_sdk.GateError` when ``path`` is a folder or cannot be written.

    Examples
    --------
    >>> from fiqa_sdk.batch import prepare_output
    >>> prepare_output("runs/new/result.csv")  # doctest: +SKIP
    PosixPath('runs/new/result.csv')
    """
    out = Path(path)
    if out.is_dir():
        raise GateError(f"{name} must be a file, but {out} is a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.with_name(f".{out.name}.{os.getpid()}.probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise GateError(f"cannot write {name} {out}: {exc.strerror or exc}") from None
    return out


@dataclass
class FolderFilterResult:
    """Outcome of :func:`filter_folder`.

    ``rows``: one dict per image, in the order of ``result.sources``, with the keys of
    :data:`FILTER_COLUMNS` (``score`` rounded to 6 decimals or None, ``reason`` None when kept);
    ``result``: the gate's :class:`~fiqa_sdk.FilterResult`; ``out``: the CSV written, if any.
    """

    folder: Path
    rows: list[dict]
    result: FilterResult
    out: Path | None = None
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    """``(path, message)`` of the images that could not be read."""

    @property
    def kept(self) -> int:
        """Number of images kept."""
        return len(self.result.kept)

    @property
    def images(self) -> int:
        """Number of images in the folder."""
        return len(self.result.reports)

    @property
    def threshold(self) -> float:
        """The applied quality cut (:attr:`FilterResult.threshold <fiqa_sdk.FilterResult>`)."""
        return self.result.threshold


def write_filter_csv(rows: Iterable[Mapping[str, Any]], out: str | os.PathLike) -> Path:
    """Write :func:`filter_folder` rows as CSV (columns :data:`FILTER_COLUMNS`; a missing
    score and the reason of a kept image as empty cells). Returns the path."""
    out = Path(out)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FILTER_COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({**row, "score": "" if row["score"] is None else row["score"],
                        "reason": row["reason"] or ""})
    return out


def filter_folder(folder: str | os.PathLike, out: str | os.PathLike | None = None, *,
                  discard: float | None = None, threshold: float | None = None,
                  recursive: bool = False, gate: QualityGate | Mapping[str, Any] | None = None,
                  progress: bool = False) -> FolderFilterResult:
    """Keep or reject every image of a folder by face quality, and optionally write the table
    as CSV.

    Parameters
    ----------
    folder : path
        The folder; its image files directly in it, or with ``recursive=True`` those of its
        sub-folders too (sorted by path).
    out : path or None
        CSV file to write (columns :data:`FILTER_COLUMNS`); its folder is created, and it is
        checked writable before any image is scored.
    discard, threshold : float or None
        Exactly one: reject the ``floor(discard * n_scored)`` lowest-quality images, or those
        scoring below ``threshold`` (the rules of :meth:`QualityGate.filter
        <fiqa_sdk.QualityGate.filter>`; images without a scorable face are always rejected).
    recursive : bool
        Include the images of sub-folders.
    gate : QualityGate, dict or None
        The gate, or the keyword arguments of one; None: ``QualityGate()``. Built after the
        folder and ``out`` are checked.
    progress : bool
        A progress bar on stderr.

    Returns
    -------
    FolderFilterResult
        The rows (also those of unreadable images: never an error), the gate's result and the
        ``(path, message)`` of the images that could not be read.

    Raises
    ------
    GateError
        Both or neither of ``discard`` and ``threshold``; ``folder`` is not a folder or holds no
        image file; ``out`` cannot be written.

    Examples
    --------
    >>> from fiqa_sdk.batch import filter_folder
    >>> res = filter_folder("photos/", "runs/photos.csv", discard=0.1)  # doctest: +SKIP
    >>> f"kept {res.kept} of {res.images}", res.rows[0]["kept"]  # doctest: +SKIP
    ('kept 9 of 10', True)
    """
    from .gate import list_image_files

    if (discard is None) == (threshold is None):
        raise GateError("give exactly one of discard= and threshold=")
    d = Path(folder)
    if not d.is_dir():
        raise GateError(f"not a directory: {d}")
    dest = prepare_output(out) if out is not None else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FolderWarning)
        files = list_image_files(d, recursive=recursive)
    if not files:
        subfolders = any(issubclass(w.category, FolderWarning) for w in caught)
        raise GateError(f"no image files in {d}" + (
            "; it has sub-folders: pass recursive=True (fiqa: --recursive) to include their "
            "images"
            if subfolders else ""))
    res = _gate(gate).filter(d, discard=discard, threshold=threshold, progress=progress,
                             recursive=recursive)
    rows = [{"path": path, "score": None if r.score is None else round(r.score, 6),
             "kept": bool(r.accepted), "reason": r.reason, "n_faces": r.n_faces,
             "ambiguous": bool(r.ambiguous)} for path, r in zip(res.sources, res.reports)]
    if dest is not None:
        write_filter_csv(rows, dest)
    unreadable = [(path, r.message or r.reason) for path, r in zip(res.sources, res.reports)
                  if r.reason in UNREADABLE_REASONS]
    return FolderFilterResult(d, rows, res, dest, unreadable)
