"""The ordered input list of a job: folder trees (local or URI), lists of paths, CSV /
Parquet tables of paths; its fingerprint."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from ..errors import GateError
from ..gate import IMAGE_EXTENSIONS, list_image_files
from .storage import TABLE_SUFFIXES, _fs, _pa, _uri_prefix, is_uri


# -- inputs ------------------------------------------------------------------------------------
def list_images(root: str | os.PathLike) -> list[str]:
    """Every image file (by extension, case-insensitive) under ``root``, recursively, hidden
    files and folders (``.name``) skipped, sorted by path components: the order of
    ``gate.filter(root, recursive=True)``.

    ``root``: a local folder (listed with :func:`fiqa_sdk.gate.list_image_files`) or a URI
    (``s3://bucket/prefix``, ``gs://...``, ``file:///...``) listed through ``pyarrow.fs``.
    Local results are ``str(Path(root) / relative)``; URIs keep their scheme.
    """
    if is_uri(root):
        pa = _pa()
        fs, base = _fs(root)
        try:
            infos = fs.get_file_info(pa.fs.FileSelector(base, recursive=True))
        except (FileNotFoundError, OSError) as exc:
            raise GateError(f"cannot list {root}: {exc}") from None
        prefix = _uri_prefix(str(root), base)
        found = [i.path for i in infos if i.type == pa.fs.FileType.File
                 and PurePosixPath(i.path).suffix.lower() in IMAGE_EXTENSIONS
                 and not any(part.startswith(".") for part in
                             PurePosixPath(i.path[len(base):].lstrip("/")).parts)]
        return [prefix + p for p in sorted(found, key=lambda p: PurePosixPath(p).parts)]
    return [str(p) for p in list_image_files(root, recursive=True)]


def _read_table_inputs(path: str, path_column: str, identity_column: str | None
                       ) -> tuple[list[str], list[str] | None]:
    pa = _pa()
    fs, inner = _fs(path)
    cols = [path_column] + ([identity_column] if identity_column else [])
    try:
        if inner.lower().endswith(".csv"):
            import pyarrow.csv as pcsv

            with fs.open_input_stream(inner) as fh:
                table = pcsv.read_csv(fh, convert_options=pcsv.ConvertOptions(
                    include_columns=cols, column_types={c: pa.string() for c in cols}))
        else:
            table = pa.parquet.read_table(inner, columns=cols, filesystem=fs)
    except (KeyError, pa.ArrowInvalid) as exc:
        raise GateError(f"{path}: cannot read columns {cols}: {exc}") from None
    except (FileNotFoundError, OSError) as exc:
        raise GateError(f"cannot read {path}: {exc}") from None
    paths = [None if p is None else str(p) for p in table.column(path_column).to_pylist()]
    if any(p is None or p == "" for p in paths):
        raise GateError(f"{path}: column {path_column!r} has empty values")
    if not is_uri(path):  # relative paths are relative to the table's folder
        base = Path(path).parent
        paths = [p if is_uri(p) or os.path.isabs(p) else str(base / p) for p in paths]
    ids = None
    if identity_column:
        ids = ["" if v is None else str(v) for v in table.column(identity_column).to_pylist()]
    return paths, ids


def resolve_inputs(inputs: Any, path_column: str = "path", identity_column: str | None = None
                   ) -> tuple[list[str], list[str] | None]:
    """``(paths, identities)``: the ordered input list of :func:`ray_filter`.

    ``inputs``: a folder (recursive, :func:`list_images`), a CSV or Parquet file (extension
    ``.csv`` / ``.parquet`` / ``.pq``) with a ``path_column`` (relative paths are relative to the
    file's folder) and optionally an ``identity_column``, or a list of paths / URIs (kept in its
    order). ``identities`` is None without ``identity_column``.
    """
    if isinstance(inputs, (str, os.PathLike)):
        s = str(inputs)
        if s.lower().endswith(TABLE_SUFFIXES):
            return _read_table_inputs(s, path_column, identity_column)
        if identity_column:
            raise GateError("identity_column applies to a CSV or Parquet input list")
        if is_uri(s) or Path(s).is_dir():
            return list_images(s), None
        raise GateError(f"{s} is neither a folder nor a .csv / .parquet list of paths (wrap a "
                        "single image in a list)")
    if identity_column:
        raise GateError("identity_column applies to a CSV or Parquet input list")
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        raise GateError("ray_filter() takes paths (a folder, a list, a CSV / Parquet file) or a "
                        "Ray Dataset, not image bytes")
    try:
        items = list(inputs)
    except TypeError:
        raise GateError(f"ray_filter() needs a folder, a list of paths, a CSV / Parquet file or "
                        f"a Ray Dataset, got {type(inputs).__name__}") from None
    bad = [type(p).__name__ for p in items if not isinstance(p, (str, os.PathLike))]
    if bad:
        raise GateError(f"ray_filter() takes a list of paths (str or os.PathLike), got a "
                        f"{bad[0]} in the list")
    return [str(p) for p in items], None


def _fingerprint(paths: Sequence[str], identities: Sequence[str] | None) -> str:
    h = hashlib.sha256()
    for i, p in enumerate(paths):
        h.update(p.encode("utf-8", "surrogateescape"))
        h.update(b"\t" + (identities[i].encode() if identities is not None else b"") + b"\n")
    return h.hexdigest()

