"""Score and filter millions of face images on a Ray cluster (Ray Data), resumably.

Needs the ``ray`` extra (``pip install 'fiqa-sdk[ray]'``); Ray is imported only when a function
of this module runs, never when ``fiqa_sdk`` is imported. docs/distributed.md explains the
design; in short:

- the inputs (a folder tree, a list of paths, a CSV / Parquet file of paths) become one ordered
  list, cut into shards of ``shard_size`` consecutive images;
- one Ray Data ``map_batches`` stage with a callable class (an actor pool: one
  :class:`~fiqa_sdk.QualityGate` per actor, its models loaded once) scores one shard per call
  and writes it as one Parquet file (temporary name, then an atomic rename);
- a manifest records the gate configuration and a fingerprint of the input list, so a rerun
  with the same output path scores only the shards that have no valid file yet, and refuses
  (:class:`~fiqa_sdk.OutputConflictError`) outputs of another gate or input list;
- the driver then reads the score column of every shard, applies ``discard=`` with
  :func:`fiqa_sdk.policy.discard_lowest` (the rule of :meth:`~fiqa_sdk.QualityGate.filter`) or
  ``threshold=`` with :func:`~fiqa_sdk.policy.apply_threshold`, and streams the shards into the
  final Parquet file, one shard at a time.

Every actor scores with ``gate.filter`` itself, so the scores are those of the single-process
gate built from the same :meth:`~fiqa_sdk.QualityGate.config`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Sequence

from .errors import FiqaError, GateError, MissingDependencyError, OutputConflictError
from .gate import IMAGE_EXTENSIONS, QualityGate, list_image_files
from .policy import apply_threshold, check_fraction, check_threshold, discard_lowest

#: Images per shard: the unit of work of one actor call and of resumption (a killed job loses
#: at most the shards in flight). 512 LFW-sized images take ~10 s on one CPU thread.
DEFAULT_SHARD_SIZE = 512
#: Intra-op threads of each actor (onnxruntime sessions, torch, OpenCV). One per actor and one
#: actor per core is the fastest layout measured on CPUs (docs/distributed.md).
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


# -- the gate of a worker ----------------------------------------------------------------------
def gate_config(gate: Any = None) -> dict:
    """The configuration the actors build their gate from: ``gate.config()`` of a
    :class:`~fiqa_sdk.QualityGate`, a dict of that form, a gate file written by
    :meth:`~fiqa_sdk.QualityGate.save`, or None for the default ``QualityGate()``."""
    if gate is None:
        g = QualityGate()
        cfg = g.config()
        del g
        return cfg
    if isinstance(gate, QualityGate):
        return gate.config()
    if isinstance(gate, dict):
        return dict(gate)
    if isinstance(gate, (str, os.PathLike)):
        return QualityGate.load(gate).config()  # validates the file (and its weights)
    raise GateError(f"gate must be a QualityGate, its config() dict, a gate file or None, got "
                    f"{type(gate).__name__}")


def _scoring_config(cfg: dict) -> dict:
    """What decides the scores: the config without the threshold (applied later) and the
    package version string (the weights checksum stands for the model)."""
    return {k: v for k, v in cfg.items() if k not in ("threshold", "fiqa_sdk_version")}


def _set_threads(threads: int | None) -> None:
    if not threads:
        return
    os.environ[_THREADS_ENV] = str(int(threads))  # before the gate opens its sessions
    os.environ["OMP_NUM_THREADS"] = str(int(threads))
    try:
        import torch

        torch.set_num_threads(int(threads))
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        import cv2

        cv2.setNumThreads(int(threads))
    except ImportError:  # pragma: no cover
        pass


def build_gate(config: dict, device: str = "cpu") -> QualityGate:
    """A :class:`~fiqa_sdk.QualityGate` from ``config`` through :meth:`QualityGate.load` (every
    field ``save`` writes is honoured); raises :class:`~fiqa_sdk.GateError` when this
    installation builds a different gate (e.g. other scorer weights on a cluster node)."""
    with tempfile.TemporaryDirectory(prefix="fiqa-gate-") as tmp:
        p = Path(tmp) / "gate.json"
        p.write_text(json.dumps({**config, "threshold": None}))
        gate = QualityGate.load(p, device=device)
    want, got = _scoring_config({**config}), _scoring_config(gate.config())
    if want != got:
        raise GateError(f"this worker builds a different gate from the configuration: asked "
                        f"{want}, got {got} (another fiqa-sdk version or weights on this node?)")
    return gate


# -- rows --------------------------------------------------------------------------------------
def _schema(identities: bool, embeddings: bool, final: bool = False):
    pa = _pa()
    f32 = pa.list_(pa.float32())
    fields = [("index", pa.int64()), ("path", pa.string())]
    if identities:
        fields.append(("identity", pa.string()))
    fields.append(("score", pa.float64()))
    if final:
        fields.append(("kept", pa.bool_()))
    fields += [("reason", pa.string()), ("n_faces", pa.int32()), ("ambiguous", pa.bool_()),
               ("message", pa.string()), ("det_score", pa.float32()), ("bbox", f32),
               ("landmarks", f32)]
    if embeddings:
        fields.append(("embedding", f32))
    if final:
        fields = [f for f in fields if f[0] != "index"]
    return pa.schema(fields)


def _rows_table(rows: list[dict], identities: bool, embeddings: bool):
    pa = _pa()
    schema = _schema(identities, embeddings)
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type)
                     for f in schema}, schema=schema)


class FaceQualityScorer:
    """Ray Data callable class: one :class:`~fiqa_sdk.QualityGate` per actor, one result row
    per image.

    Use it in your own pipeline as
    ``ds.map_batches(FaceQualityScorer, fn_constructor_kwargs={"config": gate.config()},
    batch_format="pyarrow", concurrency=N, num_cpus=threads)``; :func:`score_dataset` does
    exactly that.

    Parameters
    ----------
    config : dict
        :meth:`QualityGate.config` of the gate to score with (see :func:`gate_config`).
    threads : int or None
        Intra-op threads of this actor (onnxruntime sessions, torch, OpenCV); None leaves the
        libraries' defaults (one thread per core each).
    device : {"cpu", "cuda", "auto"}
    embeddings : bool
        Add an ``embedding`` column (L2-normalised float32 list; ~2 KB per face).
    bytes_column, path_column : str
        Input columns: encoded image bytes (used when present) and the image path or name
        (read from disk or ``pyarrow.fs`` when there is no bytes column).

    Each batch (a ``pyarrow.Table`` or a dict of columns) gives a ``pyarrow.Table`` with
    ``path`` (when the input has one), ``score`` (float64, null when unscored), ``reason``
    (null when scored, else ``"no_face"``, ``"not_found"``, ``"decode_error"``,
    ``"invalid_input"``, ``"alignment_error"``), ``n_faces``, ``ambiguous``, ``message``, ``det_score``, ``bbox`` ``[x1, y1, x2, y2]``,
    ``landmarks`` ``[x0, y0, ..., x4, y4]`` (ArcFace order) and optionally ``embedding``. Images
    are scored with ``gate.filter`` (one face per image, as there).
    """

    def __init__(self, config: dict, threads: int | None = DEFAULT_THREADS_PER_ACTOR,
                 device: str = "cpu", embeddings: bool = False, bytes_column: str = "bytes",
                 path_column: str = "path", _skip: Any = None) -> None:
        _set_threads(threads)
        self.gate = build_gate(config, device=device)
        self.embeddings = bool(embeddings)
        self.bytes_column, self.path_column = bytes_column, path_column
        self._filesystems: dict[str, Any] = {}
        # ray_filter on a Dataset: paths already in the shards of an interrupted run
        self._skip = frozenset(_skip) if _skip else frozenset()

    def _read(self, path: str):
        """Encoded bytes of a URI (``pyarrow.fs``; one file system per scheme and bucket), or
        the local path itself (read by the gate, with its own messages)."""
        if not is_uri(path):
            return path
        scheme, rest = path.split("://", 1)
        key = f"{scheme}://{rest.split('/', 1)[0]}"
        if scheme in ("s3", "gs", "gcs") and key in self._filesystems:
            fs, inner = self._filesystems[key], rest  # their paths are bucket/key
        else:
            fs, inner = _fs(path)
            self._filesystems[key] = fs
        with fs.open_input_stream(inner) as fh:
            return fh.read()

    def score_items(self, items: list, names: list[str]) -> list[dict]:
        """Result rows (dicts) of ``items`` (paths, URIs or encoded bytes) named ``names``."""
        rows: list[dict] = [{} for _ in items]
        todo, where = [], []
        for i, (item, name) in enumerate(zip(items, names)):
            if isinstance(item, str) and is_uri(item):
                try:
                    item = self._read(item)
                except FileNotFoundError:
                    rows[i] = {"path": name, "reason": "not_found",
                               "message": f"image file not found: {name}", "n_faces": 0,
                               "ambiguous": False}
                    continue
                except Exception as exc:  # noqa: BLE001 - any read failure is a row's reason
                    rows[i] = {"path": name, "reason": "decode_error",
                               "message": f"cannot read {name}: {exc}", "n_faces": 0,
                               "ambiguous": False}
                    continue
            todo.append(item)
            where.append(i)
        if todo:
            # threshold=-inf: every scored face is "kept"; the real decision comes later, over
            # the whole table (discard= needs every score)
            res = self.gate.filter(todo, threshold=-math.inf)
            for i, rep in zip(where, res.reports):
                rows[i] = self._row(names[i], rep)
        return rows

    def _row(self, name: str, rep) -> dict:
        scored = rep.score is not None
        face = rep.face
        row = {"path": name, "score": float(rep.score) if scored else None,
               "reason": None if scored else rep.reason,
               "message": None if scored else rep.message,
               "n_faces": getattr(rep, "n_faces", None),
               "ambiguous": getattr(rep, "ambiguous", None)}
        if face is not None:
            row.update(det_score=float(face.det_score), bbox=face.bbox.tolist(),
                       landmarks=face.landmarks.reshape(-1).tolist())
        if self.embeddings and rep.embedding is not None and scored:
            row["embedding"] = rep.embedding.astype("float32").tolist()
        return row

    def __call__(self, batch: Any):
        pa = _pa()
        cols = batch if isinstance(batch, dict) else {n: batch.column(n).to_pylist()
                                                      for n in batch.column_names}
        names = cols.get(self.path_column)
        if self.bytes_column in cols:
            items = [bytes(b) for b in cols[self.bytes_column]]
        elif names is not None:
            items = [str(p) for p in names]
        else:
            raise GateError(f"FaceQualityScorer needs a {self.bytes_column!r} or a "
                            f"{self.path_column!r} column; got {sorted(cols)}")
        has_names = names is not None
        names = [str(n) for n in names] if has_names else [f"<row {i}>" for i in range(len(items))]
        todo = [i for i, n in enumerate(names) if n not in self._skip]
        rows = [{"path": n, "reason": _SKIPPED} for n in names]
        for i, r in zip(todo, self.score_items([items[i] for i in todo],
                                               [names[i] for i in todo])):
            rows[i] = r
        schema = _schema(False, self.embeddings)
        schema = pa.schema([f for f in schema if f.name != "index"
                            and (has_names or f.name != "path")])
        return pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type)
                         for f in schema}, schema=schema)


#: reason of a row FaceQualityScorer did not score (its path is in ``_skip``)
_SKIPPED = "__already_scored__"


class _InjectedFailure(FiqaError, RuntimeError):
    """Raised by the test hook ``_fail_after`` (an interrupted job, for the resume tests)."""


class _ShardWorker(FaceQualityScorer):
    """One shard per call: read its rows of ``inputs.parquet``, score, write the shard file
    atomically, return its rows (without embeddings) for the driver's progress count."""

    def __init__(self, config: dict, work_dir: str, digest: str, identities: bool,
                 threads: int | None, device: str, embeddings: bool,
                 fail_after: int | None = None) -> None:
        super().__init__(config, threads=threads, device=device, embeddings=embeddings)
        self.work_dir, self.digest, self.identities = work_dir, digest, identities
        self.fs, self.base = _fs(work_dir)
        self.fail_after, self.done = fail_after, 0

    def __call__(self, batch: Any):
        pa = _pa()
        shards = batch.column("shard").to_pylist() if not isinstance(batch, dict) \
            else [int(s) for s in batch["shard"]]
        out = []
        for s in shards:
            if self.fail_after is not None and self.done >= self.fail_after:
                raise _InjectedFailure(f"test hook: stopping after {self.done} shards")
            with self.fs.open_input_file(_join(self.base, "inputs.parquet")) as fh:
                part = pa.parquet.ParquetFile(fh).read_row_group(int(s))
            paths = part.column("path").to_pylist()
            rows = self.score_items(list(paths), paths)
            for r, idx in zip(rows, part.column("index").to_pylist()):
                r["index"] = idx
            if self.identities:
                for r, ident in zip(rows, part.column("identity").to_pylist()):
                    r["identity"] = ident
            table = _rows_table(rows, self.identities, self.embeddings)
            table = table.replace_schema_metadata({_META_KEY: json.dumps(
                {"shard": int(s), "manifest": self.digest}).encode()})
            sink = pa.BufferOutputStream()
            pa.parquet.write_table(table, sink)
            _write_atomic(self.fs, _shard_path(self.base, int(s)), sink.getvalue().to_pybytes())
            self.done += 1
            out.append(table.drop_columns(["embedding"]) if self.embeddings else table)
        return pa.concat_tables(out) if out else _rows_table([], self.identities, False)


def _shard_path(base: str, s: int) -> str:
    return _join(base, "shards", f"shard-{s:06d}.parquet")


# -- the job -----------------------------------------------------------------------------------
@dataclass
class RayFilterResult:
    """Outcome of :func:`ray_filter`: counts and timing; the per-image table is in ``out``.

    ``images``: rows of the table (one per input); ``scored``: images with a scored face;
    ``kept``; ``rejected``: count per reason (``"discarded"`` / ``"below_threshold"``,
    ``"no_face"``, ``"decode_error"``, ...); ``threshold``: the applied quality cut (as
    :attr:`FilterResult.threshold <fiqa_sdk.FilterResult>`); ``shards`` / ``shards_scored``: all
    shards and those scored by this call (the others were already on disk); ``scored_images``:
    images in the shards scored by this call; ``seconds``: the whole call; ``scoring_seconds``:
    the Ray stage; ``images_per_s``: ``scored_images / scoring_seconds``.
    """

    out: str
    work_dir: str
    images: int
    scored: int
    kept: int
    rejected: dict[str, int]
    threshold: float
    shards: int
    shards_scored: int
    scored_images: int
    seconds: float
    scoring_seconds: float
    images_per_s: float
    num_actors: int = 0
    config: dict = field(default_factory=dict)

    def summary(self) -> str:
        """The multi-line summary ``fiqa filter --engine ray`` prints."""
        rej = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        return (f"images {self.images}, with a scored face {self.scored}, kept {self.kept} "
                f"(quality cut {self.threshold:.6g})\n"
                f"rejected: {rej}\n"
                f"scored now {self.scored_images} images in {self.shards_scored} of "
                f"{self.shards} shards with {self.num_actors} actor(s): "
                f"{self.scoring_seconds:.1f} s, {self.images_per_s:.1f} images/s; "
                f"total {self.seconds:.1f} s")


def _manifest(cfg: dict, paths: Sequence[str], identities, shard_size: int,
              embeddings: bool) -> dict:
    n = len(paths)
    return {"format": _MANIFEST_FORMAT, "version": _MANIFEST_VERSION,
            "gate": _scoring_config(cfg), "images": n,
            "inputs_sha256": _fingerprint(paths, identities),
            "identities": identities is not None, "shard_size": int(shard_size),
            "shards": (n + shard_size - 1) // shard_size, "embeddings": bool(embeddings)}


def _digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def _conflict(old: dict, new: dict) -> str | None:
    if old.get("format") != _MANIFEST_FORMAT or old.get("version") != _MANIFEST_VERSION:
        return "it is not a fiqa ray_filter output of this version"
    if old.get("gate") != new["gate"]:
        return f"it was scored with another gate configuration ({old.get('gate')})"
    if (old.get("inputs_sha256"), old.get("identities")) != (new["inputs_sha256"],
                                                           new["identities"]):
        return (f"it was made for another input list ({old.get('images')} images, sha256 "
                f"{str(old.get('inputs_sha256'))[:12]}...; now {new['images']} images, "
                f"{new['inputs_sha256'][:12]}...)")
    for k in ("shard_size", "embeddings"):
        if old.get(k) != new[k]:
            return f"its {k} is {old.get(k)!r}, this call's {new[k]!r}"
    return None


def _prepare_work_dir(fs, base: str, manifest: dict, paths, identities, overwrite: bool,
                      where: str) -> None:
    pa = _pa()
    mpath = _join(base, "manifest.json")
    if _exists(fs, mpath):
        with fs.open_input_stream(mpath) as fh:
            try:
                old = json.loads(fh.read())
            except ValueError:
                old = {}
        why = _conflict(old, manifest)
        if why is None and _exists(fs, _join(base, "inputs.parquet")):
            _remove_stale_temporaries(fs, _join(base, "shards"))
            return  # resume
        if why is not None and not overwrite:
            raise OutputConflictError(f"{where} holds results that do not match this job: {why}; "
                                      "rerun with overwrite=True (--overwrite) to discard them, "
                                      "or choose another output path")
    _clear_work_dir(fs, base, where)
    s = manifest["shard_size"]
    cols = {"index": pa.array(range(len(paths)), type=pa.int64()),
            "path": pa.array(list(paths), type=pa.string())}
    if identities is not None:
        cols["identity"] = pa.array(list(identities), type=pa.string())
    sink = pa.BufferOutputStream()
    # one row group per shard: a worker reads exactly its shard's rows
    pa.parquet.write_table(pa.table(cols), sink, row_group_size=s)
    _write_atomic(fs, _join(base, "inputs.parquet"), sink.getvalue().to_pybytes())
    _write_atomic(fs, mpath, (json.dumps(manifest, indent=2) + "\n").encode())


def _clear_work_dir(fs, base: str, where: str) -> None:
    """Empty ``base`` for a new job and create ``base/shards``; refuses a non-empty folder
    that is not a work folder of this module (never delete a folder given by mistake)."""
    pa = _pa()
    info = fs.get_file_info(base)
    if info.type == pa.fs.FileType.File:
        raise OutputConflictError(f"the work folder {where} is a file")
    if info.type == pa.fs.FileType.Directory:
        entries = fs.get_file_info(pa.fs.FileSelector(base))
        if entries:
            mine = False
            if _exists(fs, _join(base, "manifest.json")):
                with fs.open_input_stream(_join(base, "manifest.json")) as fh:
                    try:
                        mine = json.loads(fh.read()).get("format") == _MANIFEST_FORMAT
                    except (ValueError, AttributeError):
                        mine = False
            if not mine:
                raise OutputConflictError(
                    f"the work folder {where} is not empty and holds no fiqa ray_filter "
                    "manifest: give an empty or new work_dir (--work-dir)")
            fs.delete_dir_contents(base)
    fs.create_dir(_join(base, "shards"), recursive=True)


def _remove_stale_temporaries(fs, shards_dir: str) -> None:
    """Temporary shard files of a killed run (one job per output at a time)."""
    pa = _pa()
    try:
        infos = fs.get_file_info(pa.fs.FileSelector(shards_dir, allow_not_found=True))
    except OSError:
        return
    for i in infos:
        if ".parquet.tmp-" in i.base_name:
            try:
                fs.delete_file(i.path)
            except OSError:
                pass


def _shard_ok(fs, base: str, s: int, expected_rows: int, digest: str) -> bool:
    pa = _pa()
    p = _shard_path(base, s)
    try:
        with fs.open_input_file(p) as fh:
            md = pa.parquet.ParquetFile(fh).metadata
            meta = json.loads((md.metadata or {}).get(_META_KEY, b"{}"))
            return (md.num_rows == expected_rows and meta.get("shard") == s
                    and meta.get("manifest") == digest)
    except (FileNotFoundError, OSError, ValueError, pa.ArrowInvalid):
        return False


def _init_ray(address: str | None, num_cpus: int | None):
    ray = _require_ray()
    if ray.is_initialized():
        return ray
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if address:
        kw["address"] = address
    else:
        if num_cpus:
            kw["num_cpus"] = int(num_cpus)
        # a local instance's workers import this very fiqa_sdk (a checkout, not only an install)
        root = str(Path(__file__).resolve().parents[1])
        pp = os.environ.get("PYTHONPATH", "")
        if root not in pp.split(os.pathsep):
            kw["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(
                [root] + ([pp] if pp else []))}}
    ray.init(**kw)
    return ray


def _iter_shards(fs, base: str, n_shards: int, columns: list[str] | None = None) -> Iterator:
    pa = _pa()
    for s in range(n_shards):
        with fs.open_input_file(_shard_path(base, s)) as fh:
            yield s, pa.parquet.read_table(fh, columns=columns)


def _decide(fs, base: str, n_shards: int, shard_size: int, n: int, discard, threshold):
    """``(keep_of_shard, cut)``: a function giving the keep-mask of shard ``s``, and the cut."""
    if discard is not None:
        scores: list = []
        for _, t in _iter_shards(fs, base, n_shards, ["score"]):
            scores.extend(t.column("score").to_pylist())
        if len(scores) != n:
            raise GateError(f"the shards hold {len(scores)} rows for {n} inputs")
        keep, cut = discard_lowest(scores, discard)
        del scores
        return (lambda s, _t: keep[s * shard_size:(s + 1) * shard_size]), cut
    return (lambda s, t: apply_threshold(t.column("score").to_pylist(), threshold)), \
        float(threshold)


def _write_final(fs, base: str, out: str, n_shards: int, shard_size: int, n: int, discard,
                 threshold, identities: bool, embeddings: bool, meta: dict):
    """Stream the shards into ``out`` (one row group per shard) with ``kept`` and the final
    ``reason``; returns ``(cut, counts)``."""
    pa = _pa()
    import pyarrow.compute as pc
    keep_of, cut = _decide(fs, base, n_shards, shard_size, n, discard, threshold)
    why = "discarded" if discard is not None else "below_threshold"
    schema = _schema(identities, embeddings, final=True)
    schema = schema.with_metadata({_META_KEY: json.dumps({**meta, "threshold": cut}).encode()})
    ofs, opath = _fs(out)
    tmp = f"{opath}.tmp-{uuid.uuid4().hex}"
    counts = collections.Counter()
    scored = kept_n = rows = 0
    try:
        with ofs.open_output_stream(tmp) as sink:
            with pa.parquet.ParquetWriter(sink, schema) as writer:
                for s, t in _iter_shards(fs, base, n_shards):
                    keep = keep_of(s, t)
                    score = t.column("score")
                    has = pc.invert(pc.is_null(score)).to_pylist()
                    old = t.column("reason").to_pylist()
                    reason = [None if k else (why if h else r) for k, h, r in zip(keep, has, old)]
                    cols = {f.name: (pa.array(keep, pa.bool_()) if f.name == "kept" else
                                     pa.array(reason, pa.string()) if f.name == "reason" else
                                     t.column(f.name)) for f in schema}
                    writer.write_table(pa.table(cols, schema=schema))
                    counts.update(r for r in reason if r is not None)
                    scored += sum(has)
                    kept_n += sum(keep)
                    rows += t.num_rows
        if rows != n:
            raise GateError(f"the shards hold {rows} rows for {n} inputs")
        ofs.move(tmp, opath)
    finally:
        if _exists(ofs, tmp):
            ofs.delete_file(tmp)
    return cut, dict(counts), scored, kept_n


def ray_filter(inputs: Any, out: str | os.PathLike, *, gate: Any = None,
               discard: float | None = None, threshold: float | None = None,
               num_actors: int | None = None,
               threads_per_actor: int | None = DEFAULT_THREADS_PER_ACTOR,
               shard_size: int = DEFAULT_SHARD_SIZE, embeddings: bool = False,
               path_column: str = "path", identity_column: str | None = None,
               address: str | None = None, work_dir: str | os.PathLike | None = None,
               overwrite: bool = False, progress: bool | None = None, device: str = "cpu",
               _fail_after: int | None = None) -> RayFilterResult:
    """Score every input image on Ray Data and write one Parquet row per input to ``out``.

    Parameters
    ----------
    inputs : folder, list of paths, CSV / Parquet file, or Ray Dataset
        See :func:`resolve_inputs`: a folder tree (recursive), a list of paths or URIs, or a
        table with a ``path_column`` (and ``identity_column``, copied to the output). A Ray
        Dataset needs a ``bytes`` column and a unique ``path_column``; its rows come back to
        the driver in the Dataset's order, and a rerun needs the same Dataset.
    out : str or path
        The final Parquet file (a local path or a URI). Columns: ``path``, (``identity``),
        ``score``, ``kept``, ``reason``, ``n_faces``, ``ambiguous``, ``message``, ``det_score``, ``bbox``, ``landmarks``,
        (``embedding``); row ``i`` is input ``i``.
    gate : QualityGate, dict, gate file or None
        The gate to score with (see :func:`gate_config`); None: ``QualityGate()``. The actors
        build their own gate from its configuration, so it must be made of registry names.
    discard, threshold : float
        Exactly one, or neither when the gate has a threshold: the rule of
        :meth:`QualityGate.filter`, applied once to the whole table (``discard=f`` rejects the
        ``floor(f * n_scored)`` lowest scores, the earlier input first on ties).
    num_actors : int or None
        Actors (gates) in the pool; None: the cluster's CPUs // ``threads_per_actor``.
    threads_per_actor : int or None
        Intra-op threads per actor and the CPUs each actor reserves (None: 1 CPU reserved,
        the libraries' default threads).
    shard_size : int
        Images per shard (the unit of work and of resumption).
    embeddings : bool
        Also write each face's embedding (float32 list, ~2 KB per face).
    address : str or None
        ``ray.init(address=...)`` when Ray is not initialised yet: ``"auto"`` (a running
        cluster), ``"ray://host:10001"``; None starts a local instance.
    work_dir : str or None
        Manifest and shard files (default ``out + ".parts"``); must be reachable by every
        worker (a shared file system or an object-store URI on a cluster).
    overwrite : bool
        Discard a ``work_dir`` written by another gate configuration or input list instead of
        raising :class:`~fiqa_sdk.OutputConflictError`.
    progress : bool or None
        Ray Data's progress bars (None: when stderr is a terminal).

    A call that finds some shards already written (an interrupted run) scores only the others;
    the final table equals that of an uninterrupted run. The driver holds the input path list
    and, for ``discard=``, one score per image; never images or embeddings.

    Raises
    ------
    GateError
        Bad arguments or unreadable input lists.
    OutputConflictError
        ``work_dir`` holds another job's shards and ``overwrite`` is False.
    MissingDependencyError
        Ray Data is not installed (the ``ray`` extra).
    """
    t_start = time.perf_counter()
    _require_ray()
    if discard is not None and threshold is not None:
        raise GateError("give exactly one of discard= and threshold=, not both")
    cfg = gate_config(gate)
    if discard is None and threshold is None:
        if cfg.get("threshold") is None:
            raise GateError("give exactly one of discard= and threshold= (the gate has no "
                            "threshold; see calibrate())")
        threshold = cfg["threshold"]
    if discard is not None:
        discard = check_fraction(discard)
    else:
        threshold = check_threshold(threshold)
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise GateError(f"shard_size must be an int >= 1, got {shard_size!r}")
    if num_actors is not None and (isinstance(num_actors, bool) or int(num_actors) < 1):
        raise GateError(f"num_actors must be >= 1, got {num_actors!r}")
    if threads_per_actor is not None and (isinstance(threads_per_actor, bool)
                                          or int(threads_per_actor) < 1):
        raise GateError(f"threads_per_actor must be None or >= 1, got {threads_per_actor!r}")
    out = str(out)
    if not is_uri(out) and Path(out).is_dir():
        raise GateError(f"out must be a Parquet file path, but {out} is a folder")
    if _is_dataset(inputs):
        if identity_column:
            raise GateError("identity_column applies to a CSV or Parquet input list")
        return _ray_filter_dataset(
            inputs, out, cfg, discard=discard, threshold=threshold, num_actors=num_actors,
            threads_per_actor=threads_per_actor, shard_size=shard_size, embeddings=embeddings,
            path_column=path_column, address=address, work_dir=work_dir, overwrite=overwrite,
            progress=progress, device=device, fail_after=_fail_after, t_start=t_start)
    paths, identities = resolve_inputs(inputs, path_column, identity_column)
    if not paths:
        raise GateError(f"no image found in {inputs}")
    n = len(paths)
    wd = str(work_dir) if work_dir is not None else out + ".parts"
    fs, base = _fs(wd)
    manifest = _manifest(cfg, paths, identities, shard_size, embeddings)
    digest = _digest(manifest)
    _prepare_work_dir(fs, base, manifest, paths, identities, overwrite, wd)
    del paths, identities  # the workers read inputs.parquet
    n_shards = manifest["shards"]

    def rows_of(s: int) -> int:
        return min(shard_size, n - s * shard_size)

    pending = [s for s in range(n_shards) if not _shard_ok(fs, base, s, rows_of(s), digest)]
    scoring_s, actors, scored_images = 0.0, 0, 0
    if pending:
        ray = _init_ray(address, None)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = sys.stderr.isatty() if progress is None else bool(progress)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        tpa = int(threads_per_actor) if threads_per_actor else 1
        actors = int(num_actors) if num_actors else max(1, cpus // tpa)
        actors = min(actors, len(pending))
        t0 = time.perf_counter()
        ds = ray.data.from_items([{"shard": int(s)} for s in pending],
                                 override_num_blocks=len(pending))
        res = ds.map_batches(
            _ShardWorker, batch_size=1, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            num_cpus=tpa,
            fn_constructor_kwargs=dict(config=cfg, work_dir=wd, digest=digest,
                                       identities=manifest["identities"],
                                       threads=threads_per_actor, device=device,
                                       embeddings=embeddings, fail_after=_fail_after))
        for batch in res.iter_batches(batch_size=None, batch_format="pyarrow"):
            scored_images += batch.num_rows  # rows only: images and embeddings stay in shards
        scoring_s = time.perf_counter() - t0
        missing = [s for s in pending if not _shard_ok(fs, base, s, rows_of(s), digest)]
        if missing:
            raise GateError(f"{len(missing)} shards were not written (first: {missing[0]}); "
                            "rerun to finish them")
    meta = {"format": _MANIFEST_FORMAT, "gate": cfg, "images": n, "discard": discard,
            "manifest": digest}
    cut, counts, scored, kept = _write_final(fs, base, out, n_shards, shard_size, n, discard,
                                             threshold, manifest["identities"], embeddings, meta)
    total = time.perf_counter() - t_start
    return RayFilterResult(
        out=out, work_dir=wd, images=n, scored=scored, kept=kept, rejected=counts,
        threshold=cut, shards=n_shards, shards_scored=len(pending), scored_images=scored_images,
        seconds=round(total, 3), scoring_seconds=round(scoring_s, 3),
        images_per_s=round(scored_images / scoring_s, 2) if scoring_s > 0 else 0.0,
        num_actors=actors, config=cfg)


def _ray_filter_dataset(ds, out: str, cfg: dict, *, discard, threshold, num_actors,
                        threads_per_actor, shard_size: int, embeddings: bool, path_column: str,
                        address, work_dir, overwrite: bool, progress, device: str,
                        fail_after: int | None, t_start: float) -> RayFilterResult:
    """ray_filter on a Ray Dataset with ``bytes`` and ``path`` columns: the rows come back to
    the driver in the Dataset's order (``preserve_order``) and the driver writes the shards; a
    rerun skips (without scoring) the rows whose path is in the shards already written, which
    must be the Dataset's first rows (the same Dataset, unique paths)."""
    pa = _pa()
    ray = _require_ray()
    if path_column not in ds.columns():
        raise GateError(f"ray_filter() on a Ray Dataset needs a {path_column!r} column (a "
                        "unique name per image, e.g. read_binary_files(..., include_paths=True)); "
                        f"it has {ds.columns()}")
    wd = str(work_dir) if work_dir is not None else out + ".parts"
    fs, base = _fs(wd)
    manifest = {"format": _MANIFEST_FORMAT, "version": _MANIFEST_VERSION,
                "gate": _scoring_config(cfg), "input": "ray.data.Dataset", "images": None,
                "inputs_sha256": None, "identities": False, "shard_size": int(shard_size),
                "embeddings": bool(embeddings)}
    digest = _digest(manifest)
    mpath, cpath = _join(base, "manifest.json"), _join(base, "complete.json")
    fresh = True
    if _exists(fs, mpath):
        with fs.open_input_stream(mpath) as fh:
            try:
                old = json.loads(fh.read())
            except ValueError:
                old = {}
        why = None if old == manifest else (_conflict(old, {**manifest, "images": None}) or
                                            "it was written for another kind of input")
        if why is not None and not overwrite:
            raise OutputConflictError(f"{wd} holds results that do not match this job: {why}; "
                                      "rerun with overwrite=True (--overwrite) to discard them, "
                                      "or choose another output path")
        fresh = why is not None
    if fresh:
        _clear_work_dir(fs, base, wd)
        _write_atomic(fs, mpath, (json.dumps(manifest, indent=2) + "\n").encode())
    _remove_stale_temporaries(fs, _join(base, "shards"))
    scoring_s, actors, scored_images, done = 0.0, 0, 0, 0
    if _exists(fs, cpath):
        with fs.open_input_stream(cpath) as fh:
            n = int(json.loads(fh.read())["images"])
        n_shards, pending = (n + shard_size - 1) // shard_size, 0
    else:
        while _shard_ok(fs, base, done, shard_size, digest):
            done += 1  # the full shards of the Dataset's first rows
        for i in fs.get_file_info(pa.fs.FileSelector(_join(base, "shards"))):
            if i.base_name.startswith("shard-") and int(i.base_name[6:12]) >= done:
                fs.delete_file(i.path)  # a short last shard, or any after a gap
        done_paths: list[str] = []
        for _, t in _iter_shards(fs, base, done, ["path"]):
            done_paths.extend(t.column("path").to_pylist())
        ray = _init_ray(address, None)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = sys.stderr.isatty() if progress is None else bool(progress)
        ctx.execution_options.preserve_order = True  # the shards follow the Dataset's order
        tpa = int(threads_per_actor) if threads_per_actor else 1
        actors = int(num_actors) if num_actors else max(
            1, int(ray.cluster_resources().get("CPU", 1)) // tpa)
        t0 = time.perf_counter()
        res = ds.map_batches(
            FaceQualityScorer, batch_size=min(64, shard_size), batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=tpa,
            fn_constructor_kwargs=dict(config=cfg, threads=threads_per_actor, device=device,
                                       embeddings=embeddings, path_column=path_column,
                                       _skip=done_paths or None))
        pos, shard, buf = 0, done, []
        buffered = 0
        schema = _schema(False, embeddings)

        def flush(rows_table) -> None:
            nonlocal shard
            if fail_after is not None and shard - done >= fail_after:
                raise _InjectedFailure(f"test hook: stopping after {shard - done} shards")
            t = rows_table.replace_schema_metadata({_META_KEY: json.dumps(
                {"shard": shard, "manifest": digest}).encode()})
            sink = pa.BufferOutputStream()
            pa.parquet.write_table(t, sink)
            _write_atomic(fs, _shard_path(base, shard), sink.getvalue().to_pybytes())
            shard += 1

        for batch in res.iter_batches(batch_size=None, batch_format="pyarrow"):
            paths = batch.column("path").to_pylist()
            skipped = [r == _SKIPPED for r in batch.column("reason").to_pylist()]
            keep_rows = []
            for j, (p, sk) in enumerate(zip(paths, skipped)):
                if pos < len(done_paths):
                    if not sk or p != done_paths[pos]:
                        raise OutputConflictError(
                            f"{wd}: row {pos} of the Dataset is {p!r}, but the interrupted run "
                            f"wrote {done_paths[pos]!r} there: give the same Dataset (same rows, "
                            "same order), or overwrite=True")
                elif sk:
                    raise OutputConflictError(f"{wd}: path {p!r} appears twice in the Dataset; "
                                              "ray_filter on a Dataset needs unique paths")
                else:
                    keep_rows.append(j)
                pos += 1
            if not keep_rows:
                continue
            t = batch.take(pa.array(keep_rows, type=pa.int64()))
            start = pos - len(keep_rows)
            cols = {"index": pa.array(range(start, pos), type=pa.int64())}
            cols.update({f.name: (t.column(f.name).cast(f.type) if f.name in t.column_names
                                  else pa.nulls(t.num_rows, f.type))
                         for f in schema if f.name != "index"})
            buf.append(pa.table(cols, schema=schema))
            buffered += t.num_rows
            scored_images += t.num_rows
            while buffered >= shard_size:
                whole = pa.concat_tables(buf)
                flush(whole.slice(0, shard_size))
                rest = whole.slice(shard_size)
                buf, buffered = ([rest] if rest.num_rows else []), rest.num_rows
        if pos < len(done_paths):
            raise OutputConflictError(f"{wd}: the Dataset has {pos} rows, fewer than the "
                                      f"{len(done_paths)} the interrupted run wrote")
        if buffered:
            flush(pa.concat_tables(buf))
        scoring_s = time.perf_counter() - t0
        n = pos
        if n == 0:
            raise GateError("the Dataset has no rows")
        n_shards, pending = shard, shard - done
        _write_atomic(fs, cpath, json.dumps({"images": n}).encode())
    meta = {"format": _MANIFEST_FORMAT, "gate": cfg, "images": n, "discard": discard,
            "manifest": digest}
    cut, counts, scored, kept = _write_final(fs, base, out, n_shards, shard_size, n, discard,
                                             threshold, False, embeddings, meta)
    return RayFilterResult(
        out=out, work_dir=wd, images=n, scored=scored, kept=kept, rejected=counts,
        threshold=cut, shards=n_shards, shards_scored=pending, scored_images=scored_images,
        seconds=round(time.perf_counter() - t_start, 3), scoring_seconds=round(scoring_s, 3),
        images_per_s=round(scored_images / scoring_s, 2) if scoring_s > 0 else 0.0,
        num_actors=actors, config=cfg)


def _is_dataset(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("ray.data")


def score_dataset(ds: Any, gate: Any = None, *, num_actors: int | None = None,
                  threads_per_actor: int | None = DEFAULT_THREADS_PER_ACTOR,
                  embeddings: bool = False, bytes_column: str = "bytes",
                  path_column: str = "path", batch_size: int = 64, device: str = "cpu"):
    """A lazy Ray Dataset of result rows (see :class:`FaceQualityScorer`) for ``ds``, a Ray
    Dataset with an image-bytes column (e.g. ``ray.data.read_binary_files(uri,
    include_paths=True)``: columns ``bytes`` and ``path``) or a path column.

    One row per input row; write it with ``.write_parquet(...)`` or consume it. The discard
    decision needs every score: apply :func:`fiqa_sdk.policy.discard_lowest` to the score
    column, or use :func:`ray_filter`, which also decides and resumes.
    """
    ray = _require_ray()
    if not _is_dataset(ds):
        raise GateError(f"score_dataset() takes a Ray Dataset, got {type(ds).__name__}")
    if int(batch_size) < 1:
        raise GateError(f"batch_size must be >= 1, got {batch_size}")
    cfg = gate_config(gate)
    tpa = int(threads_per_actor) if threads_per_actor else 1
    actors = int(num_actors) if num_actors else max(
        1, int(ray.cluster_resources().get("CPU", 1)) // tpa)
    return ds.map_batches(
        FaceQualityScorer, batch_size=int(batch_size), batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=tpa,
        fn_constructor_kwargs=dict(config=cfg, threads=threads_per_actor, device=device,
                                   embeddings=embeddings, bytes_column=bytes_column,
                                   path_column=path_column))
