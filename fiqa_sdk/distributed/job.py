"""The resumable job: manifest and shards in the work folder, the Ray Data run, the
decision pass and the final Parquet file."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from .._paths import import_root
from ..errors import GateError, OutputConflictError
from ..policy import apply_threshold, check_fraction, check_threshold, discard_lowest
from .inputs import _fingerprint, resolve_inputs
from .storage import (DEFAULT_SHARD_SIZE, DEFAULT_THREADS_PER_ACTOR, _MANIFEST_FORMAT,
                      _MANIFEST_VERSION, _META_KEY, _exists, _fs, _is_dataset, _join, _pa,
                      _require_ray, _shard_path, _write_atomic, is_uri)
from .worker import (_SKIPPED, FaceQualityScorer, _InjectedFailure, _schema, _scoring_config,
                     _ShardWorker, gate_config)


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


def _read_manifest(fs, path: str) -> dict:
    """The JSON object in ``path``; ``{}`` when the file is not valid JSON or not an object
    (a damaged or foreign manifest, never ours)."""
    with fs.open_input_stream(path) as fh:
        try:
            obj = json.loads(fh.read())
        except ValueError:
            return {}
    return obj if isinstance(obj, dict) else {}


def _prepare_work_dir(fs, base: str, manifest: dict, paths, identities, overwrite: bool,
                      where: str) -> None:
    pa = _pa()
    mpath = _join(base, "manifest.json")
    if _exists(fs, mpath):
        old = _read_manifest(fs, mpath)
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
                mine = _read_manifest(fs, _join(base, "manifest.json")).get("format") == \
                    _MANIFEST_FORMAT
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
        root = str(import_root())
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
        old = _read_manifest(fs, mpath)
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


