"""The ``fiqa`` command line.

    fiqa assess [IMG ...]     one JSON line per image (no IMG: the bundled sample face)
    fiqa list                 registered detectors, embedders and scorers
    fiqa --version

User mistakes (missing file, bad option, missing optional backend) print one line to stderr
and exit non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from . import __version__
from .errors import FiqaError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3


def sample_image():
    """The bundled sample face: scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain)."""
    from skimage.data import astronaut

    return astronaut()


def _cmd_assess(args: argparse.Namespace) -> int:
    import numpy as np

    from .pipeline import FacePipeline
    from .quality import create_scorer

    pipe = FacePipeline(detector=args.detector, embedder=None, face_policy=args.face_policy,
                        device=args.device)
    scorer = create_scorer(args.scorer)
    inputs = [(p, p) for p in args.images] or [("sample:astronaut", sample_image())]
    failed = 0
    for label, img in inputs:
        color = "rgb" if isinstance(img, np.ndarray) else "bgr"
        for r in pipe.process(img, color=color):
            rec = {"path": label, "score": None, "accepted": False, "reason": r.reason}
            if r.ok:
                score = float(scorer.score(r.aligned, [r.face])[0])
                accepted = args.threshold is None or score >= args.threshold
                rec.update(score=round(score, 6), accepted=accepted,
                           reason=None if accepted else "below_threshold")
            if r.face is not None:
                rec.update(bbox=[round(float(v), 1) for v in r.face.bbox],
                           det_score=round(r.face.det_score, 4))
            if r.reason in ("decode_error", "invalid_input"):
                failed += 1
                print(f"fiqa: {label}: {r.message}", file=sys.stderr)
            print(json.dumps(rec), flush=True)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    from .detect import DETECTORS
    from .embed import EMBEDDERS
    from .quality import SCORERS

    for title, reg in (("detectors", DETECTORS), ("embedders", EMBEDDERS), ("scorers", SCORERS)):
        print(f"{title}:")
        for name, doc in reg.describe().items():
            print(f"  {name:<18} {doc}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fiqa", description="Face image quality assessment, offline.")
    ap.add_argument("--version", action="version", version=f"fiqa-sdk {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser("assess", help="score the face in each image (JSON lines)")
    a.add_argument("images", nargs="*", help="image files (none: the bundled sample face)")
    a.add_argument("--detector", default="retinaface")
    a.add_argument("--scorer", default="flip-consistency")
    a.add_argument("--face-policy", default="largest",
                   choices=["largest", "central", "confidence", "all"])
    a.add_argument("--threshold", type=float, default=None, help="accept scores >= this")
    a.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    a.set_defaults(func=_cmd_assess)

    ls = sub.add_parser("list", help="list registered detectors, embedders and scorers")
    ls.set_defaults(func=_cmd_list)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
