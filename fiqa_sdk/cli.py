"""The ``fiqa`` command line (docs/cli.md documents every option).

    fiqa assess [IMG ...]         one JSON line per image (no IMG: the bundled sample face)
    fiqa filter DIR (--discard F | --threshold Q) [--out result.csv] [--json]
                                  keep/reject each image of a folder by face quality
                                  (--engine ray --out result.parquet: on Ray Data, resumable)
    fiqa list                     registered detectors, embedders and scorers
    fiqa bench quality ...        EDC / pAUC of quality scorers on LFW or an identity folder / CSV
                                  (--weights SCORER=PATH for trained models)
    fiqa bench templates ...      TAR of template methods (mean, best, quality-weighted, top-k)
    fiqa bench alignment ...      EDC / pAUC of quality scorers under other detectors and landmark
                                  jitter (--quick: a one-minute smoke run)
    fiqa bench runtime ...        per-face runtime of the pipeline stages, DifFIQA, regressors
    fiqa train ddpm ...           train the DifFIQA denoiser (resumable; --t-max, --init-from)
    fiqa train labels ...         DifFIQA pseudo-labels of the training faces (cached, shardable)
    fiqa train ediffiqa ...       distill eDifFIQA (MobileFaceNet + MLP head)
    fiqa train ediffiqa-free ...  eDifFIQA head on the frozen ArcFace embedding
    fiqa train diffiqa-r ...      DifFIQA(R): MobileFaceNet + linear head on the raw labels
    fiqa export onnx --scorer NAME [--weights PATH] --out FILE.onnx
                                  export a distilled regressor to ONNX and check its parity
                                  (--int8 --calibration FACES.npy: a static int8 graph)
    fiqa --version

Exit codes: 0 success; 1 an error (one line ``fiqa: error: ...`` on stderr, no traceback: a
missing file, a bad value, missing weights, an unavailable device, a missing optional
backend); 2 usage (an unknown option or a missing argument: the sub-command's usage is
printed); 3 ``assess`` / ``filter``: at least one image could not be read (its output is still
complete); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ._version import __version__
from .errors import FiqaError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3
#: Report reasons meaning "the image itself could not be read" (exit code 3 of assess / filter).
_UNREADABLE = ("not_found", "decode_error", "invalid_input")
#: Largest |ONNX - torch| quality difference ``fiqa export onnx`` accepts.
EXPORT_TOLERANCE = 1e-4
#: ... with ``--int8``: a sanity bound that catches a broken graph, not a fidelity measure (the
#: shipped int8 ediffiqa differs from fp32 by up to ~0.06 on held-out faces; docs/benchmarks.md).
INT8_EXPORT_TOLERANCE = 0.1


def sample_image():
    """The bundled sample face: scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain)."""
    from skimage.data import astronaut

    return astronaut()


def _cmd_assess(args: argparse.Namespace) -> int:
    import numpy as np

    from .gate import QualityGate

    kw = {"scorer": args.scorer} if args.scorer else {}
    opts = {k: v for k, v in (("backend", args.scorer_backend), ("threads", args.scorer_threads),
                              ("precision", args.scorer_precision)) if v is not None}
    if opts:
        kw["scorer_options"] = opts
    gate = QualityGate(detector=args.detector, face_policy=args.face_policy, device=args.device,
                       threshold=args.threshold, **kw)
    inputs = [(p, p) for p in args.images] or [("sample:astronaut", sample_image())]
    failed = 0
    for label, img in inputs:
        color = "rgb" if isinstance(img, np.ndarray) else "bgr"
        reps = gate.assess(img, color=color, faces="all" if args.face_policy == "all" else None)
        for r in reps if isinstance(reps, list) else [reps]:
            rec = {"path": label, "score": None if r.score is None else round(float(r.score), 6),
                   "accepted": bool(r.accepted), "reason": r.reason}
            if r.face is not None:
                rec.update(bbox=[round(float(v), 1) for v in r.face.bbox],
                           det_score=round(r.face.det_score, 4))
            rec.update(n_faces=r.n_faces, ambiguous=r.ambiguous)
            if r.reason in _UNREADABLE:
                failed += 1
                print(f"fiqa: {label}: {r.message}", file=sys.stderr)
            print(json.dumps(rec), flush=True)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _prepare_out(path: str):
    """The ``--out`` file: its folder created now, and checked writable before any work, so
    that a long run never ends in an error about where to write."""
    import os
    from pathlib import Path

    from .errors import GateError

    out = Path(path)
    if out.is_dir():
        raise GateError(f"--out must be a file, but {out} is a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.with_name(f".{out.name}.{os.getpid()}.probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise GateError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    return out


def _cmd_filter(args: argparse.Namespace) -> int:
    import csv
    import warnings
    from pathlib import Path

    from .errors import FolderWarning, GateError
    from .gate import QualityGate, list_image_files

    if (args.discard is None) == (args.threshold is None):
        raise GateError("give exactly one of --discard F and --threshold Q")
    if args.engine == "ray":
        return _filter_ray(args)
    ray_only = [o for o, v in (("--address", args.address), ("--num-actors", args.num_actors),
                               ("--threads-per-actor", args.threads_per_actor),
                               ("--shard-size", args.shard_size), ("--work-dir", args.work_dir),
                               ("--identity-column", args.identity_column),
                               ("--embeddings", args.embeddings or None),
                               ("--overwrite", args.overwrite or None)) if v is not None]
    if ray_only:
        raise GateError(f"{', '.join(ray_only)} need --engine ray")
    folder = Path(args.dir)
    if not folder.is_dir():
        raise GateError(f"not a directory: {folder}")
    out = _prepare_out(args.out) if args.out else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FolderWarning)
        files = list_image_files(folder, recursive=args.recursive)
    if not files:
        hint = next((str(w.message) for w in caught if issubclass(w.category, FolderWarning)),
                    None)
        raise GateError(f"no image files in {folder}" + (
            "; it has sub-folders: use --recursive to include their images" if hint else ""))
    gate = QualityGate(detector=args.detector, embedder="arcface", scorer=args.scorer,
                       face_policy=args.face_policy, device=args.device,
                       batch_size=args.batch_size)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    res = gate.filter(folder, discard=args.discard, threshold=args.threshold, progress=progress,
                      recursive=args.recursive)
    rows = []
    for path, r in zip(res.sources, res.reports):
        rows.append({"path": path, "score": None if r.score is None else round(r.score, 6),
                     "kept": bool(r.accepted), "reason": r.reason or "",
                     "n_faces": r.n_faces, "ambiguous": bool(r.ambiguous)})
    if out is not None:
        with out.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=FILTER_COLUMNS)
            w.writeheader()
            for row in rows:
                w.writerow({**row, "score": "" if row["score"] is None else row["score"]})
    if args.json:
        for row in rows:
            print(json.dumps({**row, "reason": row["reason"] or None}), flush=True)
    unreadable = [(path, r) for path, r in zip(res.sources, res.reports)
                  if r.reason in _UNREADABLE]
    for path, r in unreadable:
        print(f"fiqa: {path}: {r.message or r.reason}", file=sys.stderr)
    print(f"fiqa filter: kept {len(res.kept)} of {len(res.reports)} images "
          f"(quality cut {res.threshold:.6g})"
          + (f"; {len(unreadable)} could not be read" if unreadable else "")
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    return EXIT_SOME_FAILED if unreadable else EXIT_OK


def _filter_ray(args: argparse.Namespace) -> int:
    """``fiqa filter --engine ray``: fiqa_sdk.distributed.ray_filter, then a summary."""
    from .distributed import DEFAULT_SHARD_SIZE, DEFAULT_THREADS_PER_ACTOR, ray_filter
    from .errors import GateError
    from .gate import QualityGate

    if not args.out:
        raise GateError("--engine ray needs --out FILE.parquet")
    if args.json:
        raise GateError("--json is not available with --engine ray: read the Parquet file")
    gate = QualityGate(detector=args.detector, embedder="arcface", scorer=args.scorer,
                       face_policy=args.face_policy, device=args.device,
                       batch_size=args.batch_size)
    cfg = gate.config()
    del gate  # the actors build their own gates from cfg
    res = ray_filter(
        args.dir, args.out, gate=cfg, discard=args.discard, threshold=args.threshold,
        num_actors=args.num_actors,
        threads_per_actor=(DEFAULT_THREADS_PER_ACTOR if args.threads_per_actor is None
                           else args.threads_per_actor or None),
        shard_size=args.shard_size or DEFAULT_SHARD_SIZE, embeddings=args.embeddings,
        identity_column=args.identity_column, address=args.address, work_dir=args.work_dir,
        overwrite=args.overwrite, progress=args.progress, device=args.device)
    unreadable = 0
    import pyarrow.parquet as pq

    from .distributed.storage import _fs

    fs, inner = _fs(res.out)
    with fs.open_input_file(inner) as fh:
        for b in pq.ParquetFile(fh).iter_batches(columns=["path", "reason", "message"]):
            for path, reason, msg in zip(*(b.column(i).to_pylist() for i in range(3))):
                if reason in _UNREADABLE:
                    unreadable += 1
                    print(f"fiqa: {path}: {msg or reason}", file=sys.stderr)
    for line in res.summary().splitlines():
        print(f"fiqa filter: {line}", file=sys.stderr)
    print(f"fiqa filter: kept {res.kept} of {res.images} images (quality cut "
          f"{res.threshold:.6g})" + (f"; {unreadable} could not be read" if unreadable else "")
          + f"; wrote {res.out}", file=sys.stderr)
    return EXIT_SOME_FAILED if unreadable else EXIT_OK


#: Columns of ``fiqa filter --out``'s CSV, in order.
FILTER_COLUMNS = ["path", "score", "kept", "reason", "n_faces", "ambiguous"]


def _cmd_list(args: argparse.Namespace) -> int:
    from .detect import DETECTORS
    from .embed import EMBEDDERS
    from .quality import SCORERS

    for title, reg in (("detectors", DETECTORS), ("embedders", EMBEDDERS), ("scorers", SCORERS)):
        print(f"{title}:")
        for name, doc in reg.describe().items():
            print(f"  {name:<18} {doc}")
    return EXIT_OK


def _cmd_bench_quality(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ._deps import require
    from .errors import EvaluationError
    from .eval import bench, protocols

    weights = {}
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise EvaluationError(f"--weights takes SCORER=PATH, got {item!r}")
        weights[name] = path
    params = bench.parse_scorer_params(args.scorer_param)
    if args.suite is not None or args.teacher_check:
        return _bench_dev_suite(args, weights, params)
    if args.sets is not None:
        raise EvaluationError("--sets applies to --suite dev only")
    if args.scorers is None:
        args.scorers = list(bench.BASELINE_SCORERS)
    if args.protocol is None:
        args.protocol = "lfw-pairs"
    shard = None
    if args.shard is not None:
        i, sep, k = args.shard.partition("/")
        if not (sep and i.isdigit() and k.isdigit() and 0 <= int(i) < int(k)):
            raise EvaluationError(f"--shard takes I/K with 0 <= I < K, got {args.shard!r}")
        shard = (int(i), int(k))
    if args.max_nonmated is not None and args.protocol in ("lfw-pairs", "lfw-xq-pairs"):
        raise EvaluationError("--max-nonmated applies to all-vs-all protocols (lfw-all, folder, "
                              "csv), not to lfw-pairs")
    if args.protocol in ("folder", "csv") and not args.data:
        raise EvaluationError(f"--protocol {args.protocol} needs --data "
                              + ("DIR (identity subfolders)" if args.protocol == "folder"
                                 else "FILE.csv (columns file, identity)"))
    if args.protocol.startswith("lfw") and args.data:
        raise EvaluationError("--data is for --protocol folder/csv; use --lfw for LFW")
    if args.image_root and args.protocol != "csv":
        raise EvaluationError("--image-root applies to --protocol csv only")
    if args.quick and args.protocol not in ("lfw-pairs", "lfw-xq-pairs"):
        raise EvaluationError("--quick applies to --protocol lfw-pairs and lfw-xq-pairs only")
    if not 0.0 < args.plot_max_discard <= 1.0:
        raise EvaluationError(f"--plot-max-discard must be in (0, 1], got {args.plot_max_discard}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out must be a folder, but {out} is a file")
    if not args.no_plot:
        require("matplotlib", "plot")  # fail now, not after an hour of scoring
    progress = sys.stderr.isatty() if args.progress is None else args.progress

    def log(msg: str) -> None:
        print(f"fiqa bench: {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    from .eval.features import default_cache_dir

    lfw = args.lfw
    if args.protocol.startswith("lfw-xq"):
        from .eval.xq import build_lfw_xq

        # the degraded copy of LFW lives in the cache, never beside the data or in the repo
        lfw = build_lfw_xq(args.lfw or protocols.default_lfw_root(), default_cache_dir(),
                           progress=progress)
        log(f"lfw-xq images in {lfw}")
    if args.protocol in ("lfw-pairs", "lfw-xq-pairs"):
        proto = protocols.read_lfw_pairs(lfw)
        if args.quick:  # the first 10 + 10 pairs of each fold, as the other --quick benchmarks
            proto = protocols.pairs_subset(proto, protocols.QUICK_PAIRS_PER_FOLD)
    elif args.protocol in ("lfw-all", "lfw-xq"):
        proto = protocols.lfw_all_vs_all(lfw, args.max_nonmated, args.seed)
    elif args.protocol == "folder":
        proto = protocols.folder_protocol(args.data, args.max_nonmated, args.seed)
    else:
        proto = protocols.csv_protocol(args.data, args.image_root, args.max_nonmated, args.seed)
    log(f"protocol {args.protocol}: {len(proto.paths)} images, "
        f"{len(proto.mated_pairs)} mated pairs")
    cache = args.cache
    if cache is None:
        cache = default_cache_dir() / ("lfw" if args.protocol.startswith("lfw") else "bench")
    result = bench.run_quality_bench(
        proto, scorers=args.scorers, eval_embedder=args.eval_embedder,
        quality_embedder=args.quality_embedder, detector=args.detector,
        face_policy=args.face_policy, fmr=args.fmr, limits=args.limits, cache_dir=cache,
        device=args.device, block_size=args.block_size, progress=progress,
        protocol_name=args.protocol, log=log, weights=weights, scorer_params=params,
        shard=shard, bootstrap=args.bootstrap, bootstrap_seed=args.bootstrap_seed,
    )
    if result is None:
        log(f"shard {args.shard} scored and cached ({time.perf_counter() - t0:.0f} s)")
        return 0
    result.meta["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    result.meta["quick"] = bool(args.quick)
    import shlex

    result.meta["command"] = "fiqa " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])
    js, cs = bench.write_table(result, out)
    written = [js, cs]
    if not args.no_plot:
        written.append(bench.plot_edc(result, out / "edc.png", max_discard=args.plot_max_discard))
    print(bench.markdown_table(result))
    log("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def _bench_dev_suite(args: argparse.Namespace, weights: dict, params: dict) -> int:
    """``fiqa bench quality --suite dev`` (and ``--teacher-check``): see fiqa_sdk.eval.devsuite."""
    import shlex
    import time
    from pathlib import Path

    from .errors import EvaluationError
    from .eval import devsuite

    if args.protocol is not None or args.data or args.image_root or args.max_nonmated \
            or args.shard:
        raise EvaluationError("--suite dev / --teacher-check take no --protocol, --data, "
                              "--image-root, --max-nonmated or --shard")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out must be a folder, but {out} is a file")
    progress = sys.stderr.isatty() if args.progress is None else args.progress

    def log(msg: str) -> None:
        print(f"fiqa bench dev: {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    command = "fiqa " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])
    cache = Path(args.cache) if args.cache else None
    boot = 1000 if args.bootstrap == 0 else args.bootstrap
    if args.teacher_check:
        from .eval import teacher_check

        result = teacher_check.run_teacher_check(
            args.lfw, weights=weights.get("diffiqa"), params=params.get("diffiqa", {}),
            quick=args.quick, boot=boot, seed=args.bootstrap_seed, cache_dir=cache,
            limits=args.limits, fmr=args.fmr, log=log, progress=progress)
    else:
        scorers = args.scorers or list(devsuite.DEV_SCORERS)
        result = devsuite.run_dev_suite(
            args.lfw, scorers=scorers, sets=args.sets, quick=args.quick, boot=boot,
            seed=args.bootstrap_seed, cache_dir=cache, weights=weights, scorer_params=params,
            limits=args.limits, fmr=args.fmr, log=log, progress=progress)
    result["command"] = command
    result["seconds_total"] = round(time.perf_counter() - t0, 1)
    written = devsuite.write_outputs(result, out)
    print(devsuite.markdown(result["summary"]))
    log("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def _cmd_bench_templates(args: argparse.Namespace) -> int:
    import shlex
    import time
    from pathlib import Path

    from .errors import EvaluationError
    from .eval import templates as tb
    from .eval.features import default_cache_dir
    from .gate import default_scorer_name

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out must be a folder, but {out} is a file")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    identities = args.identities
    max_templates = args.max_templates
    if args.quick and identities is None:
        identities = tb.QUICK_IDENTITIES
    if max_templates is None:
        max_templates = tb.QUICK_MAX_TEMPLATES if args.quick else tb.DEFAULT_MAX_TEMPLATES
    if max_templates == 0:
        max_templates = None

    def log(msg: str) -> None:
        print(f"fiqa bench templates: {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    scorer = args.scorer or default_scorer_name()
    cache_root = Path(args.cache) if args.cache else default_cache_dir()
    records = []
    for name in args.datasets:
        path_map = None
        if name == "lfw":
            data, cache = tb.lfw_images(args.lfw), cache_root / "lfw"
        elif name == "lfw-xq":
            from .eval.protocols import default_lfw_root
            from .eval.xq import build_lfw_xq

            lfw_root = Path(args.lfw) if args.lfw else default_lfw_root()
            data, cache = tb.lfw_images(lfw_root), cache_root / "lfw"
            data = tb.LabelledImages("lfw-xq", data.paths, data.labels, data.identities)

            def path_map(paths, _src=lfw_root / "images"):
                rel = [p.relative_to(_src).as_posix() for p in paths]
                root = build_lfw_xq(_src.parent, default_cache_dir(), relpaths=rel,
                                    progress=progress)
                return [root / "images" / r for r in rel]
        else:
            data, cache = tb.celeba_images(args.celeba), cache_root / "bench"
        records.append(tb.run_template_bench(
            data, k=args.k, methods=args.methods, scorer=scorer, fars=args.far, seed=args.seed,
            min_templates=args.min_templates, max_templates=max_templates,
            identities=identities, top_k=args.top_k, detector=args.detector,
            face_policy=args.face_policy, cache_dir=cache, path_map=path_map,
            progress=progress, log=log))
    result = {
        "benchmark": "templates",
        "command": "fiqa " + shlex.join(getattr(args, "argv", None) or sys.argv[1:]),
        "quick": bool(args.quick),
        "scorer": scorer,
        "seconds": round(time.perf_counter() - t0, 1),
        "datasets": records,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "templates.json").write_text(json.dumps(result, indent=2) + "\n")
    table = tb.markdown_table(records)
    (out / "templates.md").write_text(table + "\n")
    print(table)
    for d in records:
        for c in d["quality_weighted_vs_mean"] or []:
            if not c["at_least_as_good"]:
                log(f"{d['dataset']}: quality_weighted TAR {c['tar_quality_weighted']:.4f} < "
                    f"mean {c['tar_mean']:.4f} at FAR {c['far']:g}")
    log(f"wrote {out / 'templates.json'}, {out / 'templates.md'}")
    return EXIT_OK


def _cmd_bench_alignment(args: argparse.Namespace) -> int:
    import shlex
    import time
    from pathlib import Path

    from ._deps import require
    from .errors import EvaluationError
    from .eval import alignment as al
    from .eval.features import default_cache_dir
    from .eval.protocols import QUICK_PAIRS_PER_FOLD, pairs_subset, read_lfw_pairs

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out must be a folder, but {out} is a file")
    detectors = args.detectors or list(al.QUICK_DETECTORS if args.quick else al.DETECTORS)
    jitter = args.jitter if args.jitter is not None else \
        list(al.QUICK_JITTER if args.quick else al.DEFAULT_JITTER)
    scorers = args.scorers or list(al.QUICK_SCORERS if args.quick else al.DEFAULT_SCORERS)
    per_fold = args.pairs_per_fold if args.pairs_per_fold is not None else \
        (QUICK_PAIRS_PER_FOLD if args.quick else None)
    al.conditions(detectors, jitter)  # bad values fail before the protocol is read
    if not args.no_plot:
        require("matplotlib", "plot")  # fail now, not after hours of scoring
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    command = "fiqa " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])

    def log(msg: str) -> None:
        print(f"fiqa bench alignment: {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    proto, name = read_lfw_pairs(args.lfw), "lfw-pairs"
    if per_fold is not None:
        proto = pairs_subset(proto, per_fold)
        name += f" (first {per_fold} mated + {per_fold} non-mated pairs of each fold)"
    log(f"LFW pairs: {len(proto.pairs)} pairs, {len(proto.paths)} images")

    def save(result: al.AlignmentBenchResult, complete: bool = False) -> str:
        # written after every condition, so that a long run that is stopped keeps what finished
        result.meta.update(command=command, quick=bool(args.quick), complete=complete,
                           seconds_total=round(time.perf_counter() - t0, 1))
        table = al.markdown_table(result)
        out.mkdir(parents=True, exist_ok=True)
        (out / "alignment.json").write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        (out / "alignment.md").write_text(f"`{command}`\n\n{table}\n")
        return table

    result = al.run_alignment_bench(
        proto, detectors=detectors, jitter=jitter, scorers=scorers, seed=args.seed,
        cache_dir=args.cache or default_cache_dir() / "lfw", progress=progress, log=log,
        on_condition=save, protocol_name=name)
    print(save(result, complete=True))
    written = [out / "alignment.json", out / "alignment.md"]
    if not args.no_plot:
        written.append(al.plot_alignment(result, out / "alignment.png"))
    log(f"wrote {', '.join(str(w) for w in written)} ({time.perf_counter() - t0:.0f} s)")
    return EXIT_OK


#: Scorers ``fiqa export onnx`` can export (the distilled regressors).
EXPORT_SCORERS = ("ediffiqa", "ediffiqa-free", "diffiqa-r")


def _onnx_signature(args) -> dict:
    """``{name: shape}`` of onnxruntime inputs or outputs (symbolic dimensions by name)."""
    return {a.name: [d if isinstance(d, int) else str(d) for d in a.shape] for a in args}


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from .errors import GateError, InvalidArgumentError
    from .pipeline import FacePipeline
    from .quality import create_scorer
    from .quality.ediffiqa import OnnxRegressorScorer, export_onnx

    out = Path(args.out)
    if out.is_dir():
        raise InvalidArgumentError(f"--out must be a file, but {out} is a folder")
    if args.int8 != (args.calibration is not None):
        raise InvalidArgumentError("--int8 and --calibration FACES.npy go together")
    if args.calibration_count is not None and not args.int8:
        raise InvalidArgumentError("--calibration-count needs --int8")
    kw = {"weights": args.weights} if args.weights else {}
    # the torch model: the reference the exported graph is checked against
    scorer = create_scorer(args.scorer, backend="torch", **kw)  # WeightsError without weights
    extra: dict = {}
    if args.int8:
        extra = _export_int8(scorer, out, args.calibration, args.calibration_count)
    else:
        export_onnx(scorer, out)
    # parity on the bundled sample face, detected and aligned like the gate does, plus its mirror
    res = FacePipeline(embedder=None).process(sample_image(), color="rgb")[0]
    if not res.ok:  # pragma: no cover - the sample face is always found
        raise GateError(f"parity check: no face in the sample image ({res.reason})")
    crops = np.stack([res.aligned, np.ascontiguousarray(res.aligned[:, ::-1])])
    ref = scorer.score(crops)
    onnx = OnnxRegressorScorer(out, name=f"{args.scorer}-onnx")
    got = onnx.score(crops)
    diff = float(np.max(np.abs(got - ref)))
    tol = INT8_EXPORT_TOLERANCE if args.int8 else EXPORT_TOLERANCE
    print(json.dumps({
        "onnx": str(out), "scorer": args.scorer, "precision": "int8" if args.int8 else "fp32",
        "max_abs_diff": diff, "tolerance": tol,
        "inputs": _onnx_signature(onnx.session.get_inputs()),
        "outputs": _onnx_signature(onnx.session.get_outputs()), **extra,
    }), flush=True)
    if not diff <= tol:
        print(f"fiqa: error: ONNX parity check failed: max |onnx - torch| quality {diff:.3g} > "
              f"{tol:g} on the sample face ({out} was written)", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _export_int8(scorer, out, calibration: str, count: int | None) -> dict:
    """Quantize ``scorer``'s regressor to ``out`` (:func:`~fiqa_sdk.quality.regressor_onnx.
    quantize_int8`) and write the sidecar ``out.json`` (sha256, source weights digest, recipe,
    calibration); the sidecar's fields, for the JSON line."""
    import hashlib

    from pathlib import Path

    import numpy as np
    import onnxruntime

    from ._weights import sha256_file
    from .quality import regressor_onnx as ro

    crops = ro.calibration_crops(calibration, count)
    ro.quantize_int8(ro.export_bytes(scorer.model), crops, out)
    everything = np.load(calibration, mmap_mode="r")
    held = everything[ro.held_out_indices(len(everything), count)]
    selection = "every 4th face of the calibration file from index 1, not calibrated on"
    if len(held) >= 2:
        fidelity = {**ro.int8_fidelity(scorer.model, out, held), "selection": selection}
    else:  # too few faces left over: no fidelity, so precision="auto" never picks this graph
        fidelity = {"spearman": None, "max_abs": None, "faces": len(held), "selection": selection}
    side = {"file": out.name, "sha256": sha256_file(out), "scorer": scorer.name,
            "source_tensor_digest": ro.tensor_digest(scorer.model),
            "source_weights_sha256": scorer.weights_sha256, "int8_version": ro.INT8_VERSION,
            "recipe": ro.INT8_RECIPE, "graph_version": ro.GRAPH_VERSION, "opset": ro.OPSET,
            "calibration": {"file": "/".join(Path(calibration).parts[-2:]), "crops": len(crops),
                            "selection": "all" if count is None else f"{count} evenly spaced",
                            "sha256": hashlib.sha256(crops.tobytes()).hexdigest()},
            "fidelity": fidelity, "onnxruntime": onnxruntime.__version__}
    out.with_suffix(".json").write_text(json.dumps(side, indent=2) + "\n")
    return {"sidecar": str(out.with_suffix(".json")), "sha256": side["sha256"],
            "calibration_crops": len(crops), "fidelity": fidelity}


#: Sub-commands whose parsers import the evaluation and training code: built only when the
#: command line names one, so that ``fiqa --help``, ``assess`` and ``filter`` start fast.
_HEAVY_COMMANDS = {
    "bench": "benchmarks (EDC / pAUC of quality scorers)",
    "train": "train models (the DifFIQA denoiser, the regressors)",
    "export": "export a model to another runtime (ONNX)",
}


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The ``fiqa`` parser; ``full=False`` lists the commands of :data:`_HEAVY_COMMANDS`
    without their options (enough for ``fiqa --help`` and the light commands)."""
    from .detect.base import DEFAULT_FACE_POLICY, FACE_POLICIES

    ap = argparse.ArgumentParser(prog="fiqa", description="Face image quality assessment, offline.")
    ap.add_argument("--version", action="version", version=f"fiqa-sdk {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser("assess", help="score the face in each image (JSON lines)")
    a.add_argument("images", nargs="*", help="image files (none: the bundled sample face)")
    a.add_argument("--detector", default="retinaface")
    a.add_argument("--scorer", default=None, help="quality scorer (default: the gate's default)")
    a.add_argument("--scorer-backend", default=None, choices=["auto", "torch", "onnxruntime"],
                   help="run a regressor scorer (ediffiqa, diffiqa-r, ediffiqa-free) on its own "
                        "with this backend instead of the gate's joint embedding + quality pass")
    a.add_argument("--scorer-threads", type=int, default=None, metavar="K",
                   help="threads of a regressor scorer (see RegressorScorer)")
    a.add_argument("--scorer-precision", default=None, choices=["auto", "fp32", "int8"],
                   help="precision of a regressor scorer run on its own (int8: the shipped "
                        "int8 graph, onnxruntime only)")
    a.add_argument("--face-policy", default=DEFAULT_FACE_POLICY, choices=list(FACE_POLICIES),
                   help="which face of a multi-face image (default %(default)s: the photo's "
                        "subject)")
    a.add_argument("--threshold", type=float, default=None, help="accept scores >= this")
    a.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    a.set_defaults(func=_cmd_assess)

    f = sub.add_parser("filter", help="keep/reject the images of a folder by face quality",
                       description="Score the face in every image of DIR and reject the lowest "
                                   "--discard fraction (or those below --threshold); images "
                                   "without a scorable face are always rejected.")
    f.add_argument("dir", metavar="DIR", help="folder of images")
    f.add_argument("--recursive", action="store_true",
                   help="include the images of DIR's sub-folders (default: only those directly "
                        "in DIR)")
    f.add_argument("--discard", type=float, default=None, metavar="F",
                   help="reject the floor(F * n_scored) lowest-quality images")
    f.add_argument("--threshold", type=float, default=None, metavar="Q",
                   help="reject images scoring below Q (instead of --discard)")
    f.add_argument("--out", default=None,
                   help="CSV file (columns " + ", ".join(FILTER_COLUMNS) + "); its folder is "
                        "created. With --engine ray: a Parquet file (these columns and more)")
    f.add_argument("--json", action="store_true", help="print one JSON line per image")
    f.add_argument("--detector", default="retinaface")
    f.add_argument("--scorer", default=None, help="quality scorer (default: the gate's default)")
    f.add_argument("--face-policy", default=DEFAULT_FACE_POLICY, choices=list(FACE_POLICIES),
                   help="which face of a multi-face image (default %(default)s)")
    f.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    r = f.add_argument_group(
        "--engine ray", "score on a Ray cluster with Ray Data (the ray extra; docs/distributed.md)")
    r.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: one process (default); ray: Ray Data actors, resumable, DIR "
                        "recursive (or a CSV / Parquet list of paths, or a URI), --out Parquet")
    r.add_argument("--address", default=None,
                   help="Ray cluster to join: auto, ray://HOST:10001 (default: a local instance)")
    r.add_argument("--num-actors", type=int, default=None, metavar="N",
                   help="actors, each with one gate (default: the cluster's CPUs / "
                        "--threads-per-actor)")
    r.add_argument("--threads-per-actor", type=int, default=None, metavar="T",
                   help="intra-op threads and CPUs per actor (default 1; 0: the libraries' "
                        "defaults)")
    r.add_argument("--shard-size", type=int, default=None, metavar="K",
                   help="images per shard file, the unit of resumption (default 512)")
    r.add_argument("--work-dir", default=None,
                   help="manifest and shard files (default OUT.parts; shared by all workers)")
    r.add_argument("--identity-column", default=None,
                   help="with a CSV / Parquet DIR: a column copied to the output")
    r.add_argument("--embeddings", action="store_true",
                   help="also write each face's embedding (~2 KB per face)")
    r.add_argument("--overwrite", action="store_true",
                   help="discard a work dir left by another gate or input list")
    f.set_defaults(func=_cmd_filter)

    ls = sub.add_parser("list", help="list registered detectors, embedders and scorers")
    ls.set_defaults(func=_cmd_list)
    if not full:
        for name, text in _HEAVY_COMMANDS.items():
            sub.add_parser(name, help=text)
        return ap

    b = sub.add_parser("bench", help=_HEAVY_COMMANDS["bench"])
    bsub = b.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    q = bsub.add_parser(
        "quality", help="ISO/IEC 29794-1 EDC and pAUC of quality scorers on a protocol",
        description="Run quality scorers on a verification protocol; write OUT/quality.json, "
                    "OUT/quality.csv and OUT/edc.png. Detections, embeddings and quality scores "
                    "are cached ($FIQA_CACHE or --cache).")
    from .eval.bench import BASELINE_SCORERS, DEFAULT_LIMITS
    from .eval.protocols import QUICK_PAIRS_PER_FOLD

    q.add_argument("--suite", default=None, choices=["dev"],
                   help="dev: the hard-data development benchmark (lfw-xq all-vs-all with "
                        "ArcFace and dlib, clean gallery vs occluded / pose-warped probe with "
                        "ArcFace, clean LFW as an easy reference; joint identity "
                        "bootstrap; docs/benchmarks.md 'Dev benchmark'). Default scorers: every "
                        "shipped regressor and baseline")
    q.add_argument("--sets", nargs="+", default=None, metavar="SET",
                   help="--suite dev: these sets (default all but occ-cross-dlib)")
    q.add_argument("--teacher-check", action="store_true",
                   help="score a DifFIQA denoiser (--weights diffiqa=PATH, --scorer-param "
                        "diffiqa.KEY=VALUE) on the teacher subset of the dev suite: pAUC of eq. 7 "
                        "and of its restored-only and noisy-only terms (training/README.md)")
    q.add_argument("--protocol", default=None,
                   choices=["lfw-pairs", "lfw-all", "lfw-xq-pairs", "lfw-xq", "folder", "csv"],
                   help="lfw-pairs: pairs.txt (6,000 pairs); lfw-all: all-vs-all from the LFW "
                        "identity folders; lfw-xq / lfw-xq-pairs: the same on the "
                        "cross-quality copy of LFW (built once in the cache, see docs/benchmarks.md); "
                        "folder: DIR/<identity>/<image>; csv: columns file, identity (default lfw-pairs)")
    q.add_argument("--scorers", nargs="+", default=None,
                   help=f"quality scorers (default: the baselines {list(BASELINE_SCORERS)}; "
                        "with --suite dev also the shipped regressors)")
    q.add_argument("--weights", nargs="+", default=[], metavar="SCORER=PATH",
                   help="weights for scorers with trained models (diffiqa, ediffiqa, "
                        "ediffiqa-free, diffiqa-r) instead of the shipped ones")
    q.add_argument("--scorer-param", nargs="+", default=[], metavar="SCORER.KEY=VALUE",
                   help="keyword arguments of the scorers, e.g. diffiqa.n=1 diffiqa.fast=true "
                        "(values parsed as JSON where they can be)")
    q.add_argument("--shard", default=None, metavar="I/K",
                   help="only compute (and cache) the quality scores of every K-th image from "
                        "the I-th, then exit: run K such processes in parallel, then once "
                        "without --shard to assemble the scores and compute the EDC")
    q.add_argument("--eval-embedder", default="arcface",
                   help="FR model of the comparison scores (default arcface)")
    q.add_argument("--quality-embedder", default="arcface",
                   help="FR model inside the scorers that use one (default arcface); equal to "
                        "--eval-embedder: same-model, else cross-model")
    q.add_argument("--detector", default="retinaface")
    q.add_argument("--face-policy", default="central",
                   choices=[p for p in FACE_POLICIES if p != "all"],
                   help="which face is the subject (default central, as in the documented LFW "
                        "tables; the gate's default is subject)")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--lfw", default=None, help="LFW root with images/ and pairs.txt "
                   "(default $FIQA_LFW)")
    q.add_argument("--data", default=None, help="--protocol folder: the identity folder; "
                   "--protocol csv: the CSV file")
    q.add_argument("--image-root", default=None,
                   help="--protocol csv: folder the file column is relative to "
                        "(default: the CSV's)")
    q.add_argument("--max-nonmated", type=int, default=None, metavar="N",
                   help="all-vs-all: a seeded uniform sample of N non-mated pairs instead of all")
    q.add_argument("--seed", type=int, default=0, help="seed of the non-mated sample (default 0)")
    q.add_argument("--fmr", type=float, default=1e-3, help="FMR of the threshold (default 1e-3)")
    q.add_argument("--limits", type=float, nargs="+", default=list(DEFAULT_LIMITS),
                   help="pAUC discard limits (default 0.2 0.3)")
    q.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="also the standard error and 95%% interval of each normalized pAUC over B "
                        "identity redraws of the mated pairs (e.g. 1000; default 0: off), and "
                        "each scorer's paired difference from the best in quality.json")
    q.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the redraws (default 0)")
    q.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE/lfw or /bench)")
    q.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    q.add_argument("--block-size", type=int, default=1024,
                   help="probe images per matrix product when scoring all non-mated pairs")
    q.add_argument("--plot-max-discard", type=float, default=0.5,
                   help="x-axis end of the EDC plot (default 0.5)")
    q.add_argument("--no-plot", action="store_true", help="skip edc.png")
    q.add_argument("--quick", action="store_true",
                   help=f"smoke run: only the first {QUICK_PAIRS_PER_FOLD} mated and "
                        f"{QUICK_PAIRS_PER_FOLD} non-mated pairs of each pairs.txt fold (200 pairs; "
                        "its pAUCs are too coarse to rank scorers)")
    q.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal)")
    q.set_defaults(func=_cmd_bench_quality)

    from .eval.templates import (DATASETS, DEFAULT_FARS, METHODS, QUICK_IDENTITIES,
                                 QUICK_MAX_TEMPLATES)

    t = bsub.add_parser(
        "templates", help="verification between templates of k images (mean, best, "
                          "quality-weighted, top-k)",
        description="Seeded disjoint templates of k images per identity on LFW / lfw-xq / the "
                    "celeba-subset; TAR at fixed FARs for each template method; writes "
                    "OUT/templates.json and OUT/templates.md. Features are cached ($FIQA_CACHE "
                    "or --cache).")
    t.add_argument("--datasets", nargs="+", default=["lfw", "celeba"], choices=list(DATASETS),
                   help="default: lfw celeba (lfw-xq: the cross-quality copy of LFW, same "
                        "templates as lfw)")
    t.add_argument("--k", type=int, default=5, help="images per template (default 5)")
    t.add_argument("--methods", nargs="+", default=list(METHODS),
                   help="template methods (default %(default)s; also quality_weighted@C: "
                        "temperature C x the std of the template's scores)")
    t.add_argument("--scorer", default=None,
                   help="quality scorer (default: the gate's default scorer)")
    t.add_argument("--far", type=float, nargs="+", default=list(DEFAULT_FARS),
                   help="target FARs (default 1e-3 1e-4)")
    t.add_argument("--seed", type=int, default=0, help="template sampling seed (default 0)")
    t.add_argument("--min-templates", type=int, default=2,
                   help="identities need >= this many disjoint templates (default 2)")
    t.add_argument("--max-templates", type=int, default=None,
                   help="at most this many templates per identity (default 10, --quick 3; "
                        "0 = no cap)")
    t.add_argument("--identities", type=int, default=None,
                   help="a seeded subset of this many eligible identities per dataset")
    t.add_argument("--top-k", type=int, default=3, help="k of the top_k method (default 3)")
    t.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK_IDENTITIES} identities, at most "
                        f"{QUICK_MAX_TEMPLATES} templates each (about a minute cold)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--lfw", default=None, help="LFW root (default $FIQA_LFW)")
    t.add_argument("--celeba", default=None,
                   help="celeba-subset root (default $FIQA_CELEBA)")
    t.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE)")
    t.add_argument("--detector", default="retinaface")
    t.add_argument("--face-policy", default="central",
                   choices=[p for p in FACE_POLICIES if p != "all"])
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: when stderr is a terminal)")
    t.set_defaults(func=_cmd_bench_templates)
    from .eval import alignment as _al

    al = bsub.add_parser(
        "alignment", help="sensitivity of quality scorers to the face alignment (detectors, "
                          "landmark jitter)",
        description="LFW pairs.txt under several alignment conditions: faces detected and "
                    "aligned by each of --detectors, and the RetinaFace landmarks moved by "
                    "seeded uniform noise of +-k pixels (original image) per coordinate for "
                    "each k of --jitter. Per condition: ArcFace 10-fold accuracy and, per "
                    "scorer, the normalized pAUC@0.2/0.3 of the FNMR-EDC at FMR 1e-3 with its "
                    "change against RetinaFace without jitter. Writes OUT/alignment.json and "
                    "OUT/alignment.md (after every condition); features are cached "
                    "($FIQA_CACHE/lfw or --cache).")
    al.add_argument("--detectors", nargs="+", default=None, metavar="NAME",
                    help=f"detector conditions (default {' '.join(_al.DETECTORS)}; --quick: "
                         f"{' '.join(_al.QUICK_DETECTORS)})")
    ks = {q: " ".join(f"{k:g}" for k in v) for q, v in ((False, _al.DEFAULT_JITTER),
                                                       (True, _al.QUICK_JITTER))}
    al.add_argument("--jitter", type=float, nargs="+", default=None, metavar="K",
                    help="landmark jitter magnitudes in pixels of the original image, on the "
                         f"RetinaFace landmarks (default {ks[False]}; --quick: {ks[True]}; 0 is "
                         "the reference, always run)")
    al.add_argument("--scorers", nargs="+", default=None, metavar="NAME",
                    help="quality scorers (default: the baselines, ediffiqa, diffiqa-r, "
                         f"ediffiqa-free; --quick: {' '.join(_al.QUICK_SCORERS)})")
    al.add_argument("--seed", type=int, default=0, help="seed of the landmark jitter (default 0)")
    al.add_argument("--pairs-per-fold", type=int, default=None, metavar="N",
                    help="only the first N mated and N non-mated pairs of each fold (default "
                         f"all 300; --quick: {QUICK_PAIRS_PER_FOLD})")
    al.add_argument("--quick", action="store_true",
                    help="smoke run: the --quick defaults above (about a minute of CPU time "
                         "from a cold cache)")
    al.add_argument("--out", required=True, help="output folder")
    al.add_argument("--lfw", default=None,
                    help="LFW root (default $FIQA_LFW)")
    al.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE/lfw)")
    al.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bars on stderr (default: when stderr is a terminal)")
    al.add_argument("--no-plot", action="store_true",
                    help="skip OUT/alignment.png (pAUC@0.3 per scorer and condition)")
    al.set_defaults(func=_cmd_bench_alignment)
    from .eval.runtime import add_cli_parser as _add_bench_runtime

    _add_bench_runtime(bsub)  # fiqa bench runtime
    from .train.cli import add_train_parser

    add_train_parser(sub)

    e = sub.add_parser("export", help=_HEAVY_COMMANDS["export"])
    esub = e.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    o = esub.add_parser(
        "onnx", help="export a distilled regressor (ediffiqa, ediffiqa-free, diffiqa-r) to ONNX",
        description="Write the regressor as ONNX (input 'input' (N, 3, 112, 112) float32 RGB in "
                    "[-1, 1]; outputs 'quality' (N,) and 'embedding' (N, D)), then score the "
                    "bundled sample face and its mirror with onnxruntime and with torch and print "
                    "one JSON line (onnx, scorer, max_abs_diff, tolerance, inputs, outputs). "
                    f"Exits 1 when the difference exceeds {EXPORT_TOLERANCE:g}.")
    o.add_argument("--scorer", required=True, choices=list(EXPORT_SCORERS),
                   help="the regressor to export")
    o.add_argument("--weights", default=None, metavar="PATH",
                   help="regressor .safetensors with its .json sidecar (default: the shipped "
                        "weights of --scorer)")
    o.add_argument("--out", required=True, metavar="FILE.onnx", help="ONNX file to write")
    o.add_argument("--int8", action="store_true",
                   help="write a static int8 graph (QDQ; for precision='int8') and its sidecar "
                        "FILE.json; needs --calibration")
    o.add_argument("--calibration", default=None, metavar="FACES.npy",
                   help="aligned (N, 112, 112, 3) uint8 RGB crops to calibrate the int8 "
                        "activations on (e.g. a training cache's faces.npy; never the test set)")
    o.add_argument("--calibration-count", type=int, default=None, metavar="N",
                   help="use N crops evenly spaced over --calibration (default all)")
    o.set_defaults(func=_cmd_export_onnx)
    return ap


def _deepest_parser(parser: argparse.ArgumentParser,
                    args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub-)parser of the command line's innermost sub-command, e.g. ``fiqa bench
    quality``'s, so that a usage error prints that command's usage."""
    while True:
        for action in parser._actions:  # noqa: SLF001 - argparse has no public walk
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                name = getattr(args, action.dest, None)
                if name in action.choices:
                    parser = action.choices[name]
                    break
        else:
            return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(full=command in _HEAVY_COMMANDS)
    # parse_args would report a sub-command's unknown option with the top-level usage
    args, extra = parser.parse_known_args(argv)
    if extra:
        _deepest_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except FiqaError as exc:
        print(f"fiqa: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("fiqa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
