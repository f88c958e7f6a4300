"""``fiqa-bench quality | templates | alignment | runtime``: the evaluation suites of the
research harness (EDC / pAUC of quality scorers on a protocol or on the hard-data dev suite,
template methods, alignment sensitivity, runtime), each written to an output folder.

They were ``fiqa-bench ...`` sub-commands of the SDK's command line before the SDK and its
research harness were split (docs/api.md, "Migration"); the options are unchanged. Each calls
one library function: :func:`fiqa_sdk.eval.evaluate_scorers` (quality), or the suites of this
package (:mod:`.devsuite`, :mod:`.teacher_check`, :mod:`.templates`, :mod:`.alignment`,
:mod:`.runtime`), and writes their results with :mod:`.report`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence

from fiqa_sdk.cli.common import progress_flag
from fiqa_sdk.errors import FiqaError, InvalidArgumentError

#: The suites, in the order ``fiqa-bench --help`` lists them.
SUITES = ("quality", "templates", "alignment", "runtime")

PROG = "fiqa-bench"

EXIT_OK, EXIT_ERROR = 0, 1


def command_line(args: argparse.Namespace) -> str:
    """The command line as typed (``fiqa-bench quality ...``), recorded in the outputs."""
    return f"{PROG} " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])


def logger(prefix: str):
    """A function printing ``prefix: message`` lines on stderr (progress of a long command)."""

    def log(msg: str) -> None:
        print(f"{prefix}: {msg}", file=sys.stderr, flush=True)

    return log


def _run_quality(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from fiqa_sdk.eval import evaluate as bench, protocols

    from . import report

    weights = {}
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InvalidArgumentError(f"--weights takes SCORER=PATH, got {item!r}")
        weights[name] = path
    params = bench.parse_scorer_params(args.scorer_param)
    if args.suite is not None or args.teacher_check:
        return _run_dev_suite(args, weights, params)
    if args.sets is not None:
        raise InvalidArgumentError("--sets applies to --suite dev only")
    if args.scorers is None:
        args.scorers = list(bench.BASELINE_SCORERS)
    if args.protocol is None:
        args.protocol = "lfw-pairs"
    shard = None
    if args.shard is not None:
        i, sep, k = args.shard.partition("/")
        if not (sep and i.isdigit() and k.isdigit() and 0 <= int(i) < int(k)):
            raise InvalidArgumentError(f"--shard takes I/K with 0 <= I < K, got {args.shard!r}")
        shard = (int(i), int(k))
    if args.max_nonmated is not None and args.protocol in ("lfw-pairs", "lfw-xq-pairs"):
        raise InvalidArgumentError("--max-nonmated applies to all-vs-all protocols (lfw-all, "
                                   "folder, csv), not to lfw-pairs")
    if args.protocol in ("folder", "csv") and not args.data:
        raise InvalidArgumentError(f"--protocol {args.protocol} needs --data "
                                   + ("DIR (identity subfolders)" if args.protocol == "folder"
                                      else "FILE.csv (columns file, identity)"))
    if args.protocol.startswith("lfw") and args.data:
        raise InvalidArgumentError("--data is for --protocol folder/csv; use --lfw for LFW")
    if args.image_root and args.protocol != "csv":
        raise InvalidArgumentError("--image-root applies to --protocol csv only")
    if args.quick and args.protocol not in ("lfw-pairs", "lfw-xq-pairs"):
        raise InvalidArgumentError("--quick applies to --protocol lfw-pairs and lfw-xq-pairs "
                                   "only")
    if not 0.0 < args.plot_max_discard <= 1.0:
        raise InvalidArgumentError(f"--plot-max-discard must be in (0, 1], got "
                                   f"{args.plot_max_discard}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"--out must be a folder, but {out} is a file")
    if not args.no_plot:
        report.require_matplotlib()  # fail now, not after an hour of scoring
    progress = progress_flag(args)
    log = logger(PROG)

    t0 = time.perf_counter()
    from fiqa_sdk.eval.features import default_cache_dir

    lfw = args.lfw
    if args.protocol.startswith("lfw-xq"):
        from .xq import build_lfw_xq

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
    result = bench.evaluate_scorers(
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
    result.meta["command"] = command_line(args)
    js, cs = report.write_table(result, out)
    written = [js, cs]
    if not args.no_plot:
        written.append(report.plot_edc(result, out / "edc.png", max_discard=args.plot_max_discard))
    print(report.markdown_table(result))
    log("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def _run_dev_suite(args: argparse.Namespace, weights: dict, params: dict) -> int:
    """``fiqa-bench quality --suite dev`` (and ``--teacher-check``): see fiqa_bench.devsuite."""
    import time
    from pathlib import Path

    from . import devsuite

    if args.protocol is not None or args.data or args.image_root or args.max_nonmated \
            or args.shard:
        raise InvalidArgumentError("--suite dev / --teacher-check take no --protocol, --data, "
                                   "--image-root, --max-nonmated or --shard")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"--out must be a folder, but {out} is a file")
    progress = progress_flag(args)
    log = logger(f"{PROG} dev")

    t0 = time.perf_counter()
    command = command_line(args)
    cache = Path(args.cache) if args.cache else None
    boot = 1000 if args.bootstrap == 0 else args.bootstrap
    if args.teacher_check:
        from . import teacher_check

        result = teacher_check.run_teacher_check(
            args.lfw, weights=weights.get("diffiqa"), params=params.get("diffiqa", {}),
            quick=args.quick, boot=boot, seed=args.bootstrap_seed, cache_dir=cache,
            limits=args.limits, fmr=args.fmr, log=log, progress=progress,
            students=args.scorers or ())
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


def _run_templates(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from . import templates as tb
    from fiqa_sdk.eval.features import default_cache_dir
    from fiqa_sdk.gate import default_scorer_name

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"--out must be a folder, but {out} is a file")
    progress = progress_flag(args)
    identities = args.identities
    max_templates = args.max_templates
    if args.quick and identities is None:
        identities = tb.QUICK_IDENTITIES
    if max_templates is None:
        max_templates = tb.QUICK_MAX_TEMPLATES if args.quick else tb.DEFAULT_MAX_TEMPLATES
    if max_templates == 0:
        max_templates = None
    log = logger(f"{PROG} templates")

    t0 = time.perf_counter()
    scorer = args.scorer or default_scorer_name()
    cache_root = Path(args.cache) if args.cache else default_cache_dir()
    records = []
    for name in args.datasets:
        path_map = None
        if name == "lfw":
            data, cache = tb.lfw_images(args.lfw), cache_root / "lfw"
        elif name == "lfw-xq":
            from fiqa_sdk.eval.protocols import default_lfw_root
            from .xq import build_lfw_xq

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
        "command": command_line(args),
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


def _run_alignment(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from . import alignment as al
    from .report import require_matplotlib
    from fiqa_sdk.eval.features import default_cache_dir
    from fiqa_sdk.eval.protocols import QUICK_PAIRS_PER_FOLD, pairs_subset, read_lfw_pairs

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"--out must be a folder, but {out} is a file")
    detectors = args.detectors or list(al.QUICK_DETECTORS if args.quick else al.DETECTORS)
    jitter = args.jitter if args.jitter is not None else \
        list(al.QUICK_JITTER if args.quick else al.DEFAULT_JITTER)
    scorers = args.scorers or list(al.QUICK_SCORERS if args.quick else al.DEFAULT_SCORERS)
    per_fold = args.pairs_per_fold if args.pairs_per_fold is not None else \
        (QUICK_PAIRS_PER_FOLD if args.quick else None)
    al.conditions(detectors, jitter)  # bad values fail before the protocol is read
    if not args.no_plot:
        require_matplotlib()  # fail now, not after hours of scoring
    progress = progress_flag(args)
    command = command_line(args)
    log = logger(f"{PROG} alignment")

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


def run(args: argparse.Namespace) -> int:
    """Run the suite the parsed command line names; returns the exit code."""
    runners = {"quality": _run_quality, "templates": _run_templates,
               "alignment": _run_alignment}
    if args.bench_command in runners:
        return runners[args.bench_command](args)
    return args.func(args)  # fiqa-bench runtime: .runtime's runner


def main(argv: Sequence[str] | None = None) -> int:
    """``fiqa-bench SUITE [options]``: parse, run, and return the exit code, as ``fiqa``'s: 0
    success; 1 an error, a bad option value included (one ``fiqa-bench: error: ...`` line, no
    traceback); 2 usage (argparse: an unknown option, a missing argument)."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=PROG, description="Evaluation suites of fiqa-sdk.")
    suites = add_suite_parsers(parser.add_subparsers(dest="bench_command", metavar="SUITE",
                                                     required=True))
    # parse_args would report a suite's unknown option with the top-level usage
    args, extra = parser.parse_known_args(words)
    if extra:
        suites[args.bench_command].error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = words
    try:
        return run(args)
    except FiqaError as exc:  # InvalidArgumentError included, as in ``fiqa``
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def add_suite_parsers(bsub) -> dict[str, argparse.ArgumentParser]:
    """Add the parsers of :data:`SUITES` to the sub-parsers ``bsub``; returns them by name."""
    from fiqa_sdk.detect.base import FACE_POLICIES

    q = bsub.add_parser(
        "quality", help="ISO/IEC 29794-1 EDC and pAUC of quality scorers on a protocol",
        description="Run quality scorers on a verification protocol; write OUT/quality.json, "
                    "OUT/quality.csv and OUT/edc.png. Detections, embeddings and quality scores "
                    "are cached ($FIQA_CACHE or --cache).")
    from fiqa_sdk.eval.evaluate import BASELINE_SCORERS, DEFAULT_LIMITS
    from fiqa_sdk.eval.protocols import QUICK_PAIRS_PER_FOLD

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

    from .templates import (DATASETS, DEFAULT_FARS, METHODS, QUICK_IDENTITIES,
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
    from . import alignment as _al

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
    from .runtime import add_cli_parser as add_runtime_parser

    add_runtime_parser(bsub)  # fiqa-bench runtime
    return dict(bsub.choices)
