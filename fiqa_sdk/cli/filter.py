"""``fiqa filter DIR``: keep or reject the images of a folder by face quality
(:func:`fiqa_sdk.batch.filter_folder`; ``--engine ray``:
:func:`fiqa_sdk.distributed.ray_filter`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InvalidArgumentError
from .common import EXIT_OK, EXIT_SOME_FAILED, progress_flag

NAME = "filter"
HELP = "keep/reject the images of a folder by face quality"
HEAVY = False
#: Options that only ``--engine ray`` takes: (flag, attribute).
RAY_ONLY = (("--address", "address"), ("--num-actors", "num_actors"),
            ("--threads-per-actor", "threads_per_actor"), ("--shard-size", "shard_size"),
            ("--work-dir", "work_dir"), ("--identity-column", "identity_column"),
            ("--embeddings", "embeddings"), ("--overwrite", "overwrite"))


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..batch import FILTER_COLUMNS
    from ..detect.base import DEFAULT_FACE_POLICY, FACE_POLICIES

    f = subparsers.add_parser(NAME, help=HELP,
                              description="Score the face in every image of DIR and reject the "
                                          "lowest --discard fraction (or those below "
                                          "--threshold); images without a scorable face are "
                                          "always rejected.")
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
    return f


def _gate(args: argparse.Namespace) -> dict:
    return {"detector": args.detector, "embedder": "arcface", "scorer": args.scorer,
            "face_policy": args.face_policy, "device": args.device,
            "batch_size": args.batch_size}


def run(args: argparse.Namespace) -> int:
    if (args.discard is None) == (args.threshold is None):
        raise InvalidArgumentError("give exactly one of --discard F and --threshold Q")
    if args.engine == "ray":
        return _run_ray(args)
    ray_only = [flag for flag, attr in RAY_ONLY
                if getattr(args, attr) is not None and getattr(args, attr) is not False]
    if ray_only:
        raise InvalidArgumentError(f"{', '.join(ray_only)} need --engine ray")
    from ..batch import filter_folder, prepare_output

    if args.out and Path(args.dir).is_dir():  # the error names the option
        prepare_output(args.out, name="--out")
    res = filter_folder(args.dir, args.out or None, discard=args.discard, threshold=args.threshold,
                        recursive=args.recursive, gate=_gate(args), progress=progress_flag(args))
    if args.json:
        for row in res.rows:
            print(json.dumps(row), flush=True)
    for path, message in res.unreadable:
        print(f"fiqa: {path}: {message}", file=sys.stderr)
    bad = len(res.unreadable)
    print(f"fiqa filter: kept {res.kept} of {res.images} images (quality cut {res.threshold:.6g})"
          + (f"; {bad} could not be read" if bad else "")
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    return EXIT_SOME_FAILED if bad else EXIT_OK


def _run_ray(args: argparse.Namespace) -> int:
    """``--engine ray``: :func:`~fiqa_sdk.distributed.ray_filter`, then its summary."""
    from ..distributed import (DEFAULT_SHARD_SIZE, DEFAULT_THREADS_PER_ACTOR, ray_filter,
                               unreadable_rows)
    from ..gate import QualityGate

    if not args.out:
        raise InvalidArgumentError("--engine ray needs --out FILE.parquet")
    if args.json:
        raise InvalidArgumentError("--json is not available with --engine ray: read the Parquet "
                                   "file")
    cfg = QualityGate(**_gate(args)).config()  # the actors build their own gates from cfg
    res = ray_filter(
        args.dir, args.out, gate=cfg, discard=args.discard, threshold=args.threshold,
        num_actors=args.num_actors,
        threads_per_actor=(DEFAULT_THREADS_PER_ACTOR if args.threads_per_actor is None
                           else args.threads_per_actor or None),
        shard_size=args.shard_size or DEFAULT_SHARD_SIZE, embeddings=args.embeddings,
        identity_column=args.identity_column, address=args.address, work_dir=args.work_dir,
        overwrite=args.overwrite, progress=args.progress, device=args.device)
    bad = 0
    for path, message in unreadable_rows(res.out):
        bad += 1
        print(f"fiqa: {path}: {message}", file=sys.stderr)
    for line in res.summary().splitlines():
        print(f"fiqa filter: {line}", file=sys.stderr)
    print(f"fiqa filter: kept {res.kept} of {res.images} images (quality cut "
          f"{res.threshold:.6g})" + (f"; {bad} could not be read" if bad else "")
          + f"; wrote {res.out}", file=sys.stderr)
    return EXIT_SOME_FAILED if bad else EXIT_OK
