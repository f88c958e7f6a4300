"""Constants, lazy imports of Ray / pyarrow, and file-system helpers (local paths and
URIs through ``pyarrow.fs``) shared by the modules of :mod:`fiqa_sdk.distributed`."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from ..errors import GateError, MissingDependencyError

#: Images per shard: the unit of work of one actor call and of resumption (a killed job loses
#: at most the shards in flight). A multiple of the gate's default batch_size (32), so that the
#: actors' batches are those of gate.filter over the whole list.
DEFAULT_SHARD_SIZE = 512
#: Intra-op threads of each actor (onnxruntime sessions, torch, OpenCV): one thread per actor
#: and one actor per core (docs/distributed.md, "Threads and actors").
DEFAULT_THREADS_PER_ACTOR = 1
#: Tables read as an input list (``path`` column, optional identity column).
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")

_MANIFEST_FORMAT = "fiqa-ray-filter"
_MANIFEST_VERSION = 1
#: what the workers' onnxruntime sessions read for their default thread count (fiqa_sdk._onnx)
_THREADS_ENV = "FIQA_NUM_THREADS"
_META_KEY = b"fiqa"


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] part of the extra
    except ImportError as exc:
        raise MissingDependencyError(
            "fiqa_sdk.distributed needs Ray Data, which is not installed; install it with: "
            "pip install 'fiqa-sdk[ray]'") from exc
    return ray


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.fs  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "fiqa_sdk.distributed needs pyarrow (part of Ray Data), which is not installed; "
            "install it with: pip install 'fiqa-sdk[ray]'") from exc
    return pa


# -- file systems ------------------------------------------------------------------------------
def is_uri(path: Any) -> bool:
    """True for ``scheme://...`` strings (``s3://``, ``gs://``, ``file://``, ...)."""
    return isinstance(path, str) and "://" in path


def _fs(path: str | os.PathLike):
    """``(filesystem, path inside it)`` for a local path or a URI (``pyarrow.fs``)."""
    pa = _pa()
    if is_uri(path):
        try:
            return pa.fs.FileSystem.from_uri(str(path))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad URIs
            raise GateError(f"cannot open {path}: {exc}") from None
    return pa.fs.LocalFileSystem(), str(Path(path).absolute())


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _uri_prefix(uri: str, inner: str) -> str:
    """The part of ``uri`` before the file system's own path ``inner``: ``s3://`` for
    ``s3://bucket/dir`` (path ``bucket/dir``), ``file://`` for ``file:///tmp/x``,
    ``hdfs://host:8020`` for ``hdfs://host:8020/data``."""
    at = uri.find(inner.rstrip("/"), uri.index("://") + 3 if inner.startswith("/") else 0)
    return uri[:at] if at > 0 else uri.split("://", 1)[0] + "://"


def _write_atomic(fs, path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(tmp) as fh:
        fh.write(data)
    fs.move(tmp, path)  # a rename on local disks; an object store publishes whole objects


def _exists(fs, path: str) -> bool:
    pa = _pa()
    return fs.get_file_info(path).type != pa.fs.FileType.NotFound


def _shard_path(base: str, s: int) -> str:
    return _join(base, "shards", f"shard-{s:06d}.parquet")


def _is_dataset(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("ray.data")

