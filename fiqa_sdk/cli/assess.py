"""``fiqa assess [IMG ...]``: one JSON line per face (:func:`fiqa_sdk.batch.assess_images`)."""

from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_OK, EXIT_SOME_FAILED

NAME = "assess"
HELP = "score the face in each image (JSON lines)"
HEAVY = False


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..detect.base import DEFAULT_FACE_POLICY, FACE_POLICIES

    a = subparsers.add_parser(NAME, help=HELP)
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
    return a


def run(args: argparse.Namespace) -> int:
    from ..batch import assess_images

    gate: dict = {"detector": args.detector, "face_policy": args.face_policy,
                  "device": args.device, "threshold": args.threshold}
    if args.scorer:
        gate["scorer"] = args.scorer
    opts = {k: v for k, v in (("backend", args.scorer_backend), ("threads", args.scorer_threads),
                              ("precision", args.scorer_precision)) if v is not None}
    if opts:
        gate["scorer_options"] = opts
    failed = 0
    for item in assess_images(args.images, gate):
        if item.unreadable:
            failed += 1
            print(f"fiqa: {item.path}: {item.report.message}", file=sys.stderr)
        print(json.dumps(item.record()), flush=True)
    return EXIT_SOME_FAILED if failed else EXIT_OK
