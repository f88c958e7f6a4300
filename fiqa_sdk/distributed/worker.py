"""The Ray Data stage: the callable class holding one gate per actor, and its rows."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import FiqaError, GateError
from ..gate import QualityGate
from .storage import (DEFAULT_THREADS_PER_ACTOR, _META_KEY, _THREADS_ENV, _fs, _is_dataset, _join,
                      _pa, _require_ray, _shard_path, _write_atomic, is_uri)


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
