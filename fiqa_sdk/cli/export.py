"""``fiqa export onnx``: a distilled regressor as ONNX, fp32 or int8, with its parity check
(:func:`fiqa_sdk.export.export_regressor_onnx`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InvalidArgumentError
from .common import EXIT_ERROR, EXIT_OK

NAME = "export"
HELP = "export a model to another runtime (ONNX)"
HEAVY = True


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..export import EXPORT_SCORERS, EXPORT_TOLERANCE

    e = subparsers.add_parser(NAME, help=HELP)
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
    return e


def run(args: argparse.Namespace) -> int:
    from ..export import export_regressor_onnx

    out = Path(args.out)
    if out.is_dir():
        raise InvalidArgumentError(f"--out must be a file, but {out} is a folder")
    if args.int8 != (args.calibration is not None):
        raise InvalidArgumentError("--int8 and --calibration FACES.npy go together")
    if args.calibration_count is not None and not args.int8:
        raise InvalidArgumentError("--calibration-count needs --int8")
    res = export_regressor_onnx(args.scorer, out, weights=args.weights, int8=args.int8,
                                calibration=args.calibration,
                                calibration_count=args.calibration_count)
    print(json.dumps(res.as_dict()), flush=True)
    if not res.passed:
        print(f"fiqa: error: ONNX parity check failed: max |onnx - torch| quality "
              f"{res.max_abs_diff:.3g} > {res.tolerance:g} on the sample face ({out} was "
              "written)", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
