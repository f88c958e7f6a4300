#!/usr/bin/env python3
"""Assess the quality of the face in one or more images.

Shows the one-object API: build a :class:`fiqa_sdk.QualityGate` (detector, aligner, embedder
and quality scorer with offline defaults) and call :meth:`~fiqa_sdk.QualityGate.assess` on an
image. Each report says whether a face was found and scored (``score``, higher = better), whether
it passes the gate's threshold (``accepted``), why not (``reason``) and where the face is
(``bbox``).

Run::

    python examples/assess.py                        # the bundled sample face (astronaut)
    python examples/assess.py photo.jpg group.png    # your own images
    python examples/assess.py photo.jpg --threshold 0.75 --all-faces --save-crops crops/

Nothing is downloaded; with no argument the sample photo that ships with scikit-image
(``skimage.data.astronaut()``, an RGB array) is used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import fiqa_sdk as fq


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="*", help="image files (none: the bundled sample face)")
    ap.add_argument("--scorer", default=None,
                    help="quality scorer (default: the gate's default; see fq.list_scorers())")
    ap.add_argument("--detector", default="retinaface", help="face detector (default retinaface)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="accept faces scoring >= this (default: accept every scored face)")
    ap.add_argument("--all-faces", action="store_true",
                    help="report every face of an image, not only the subject")
    ap.add_argument("--save-crops", metavar="DIR", default=None,
                    help="write the aligned 112x112 crops that were scored to DIR")
    args = ap.parse_args(argv)

    gate = fq.QualityGate(detector=args.detector, scorer=args.scorer, threshold=args.threshold)
    print(f"scorer: {gate.scorer.name}, threshold: {gate.threshold}")

    if args.images:
        inputs = [(p, p, "bgr") for p in args.images]  # files: colour order comes from the file
    else:
        from skimage.data import astronaut

        # scikit-image arrays are RGB; numpy arrays are taken as BGR (OpenCV) unless told
        inputs = [("sample:astronaut", astronaut(), "rgb")]

    unreadable = 0
    for label, img, color in inputs:
        reports = gate.assess(img, color=color, faces="all" if args.all_faces else None)
        if not isinstance(reports, list):
            reports = [reports]
        for i, r in enumerate(reports):
            score = "None" if r.score is None else f"{r.score:.4f}"
            bbox = ("None" if r.face is None
                    else "(" + ", ".join(f"{v:.1f}" for v in r.face.bbox) + ")")
            det = "" if r.face is None else f"  det_score={r.face.det_score:.3f}"
            print(f"{label}  score={score}  accepted={r.accepted}  reason={r.reason}  "
                  f"bbox={bbox}{det}")
            if r.message and r.reason != "below_threshold":
                print(f"    ({r.message})")
            if r.reason in ("not_found", "decode_error", "invalid_input"):
                unreadable += 1
            if args.save_crops and r.aligned is not None:
                from PIL import Image

                out = Path(args.save_crops)
                out.mkdir(parents=True, exist_ok=True)
                suffix = f"_face{i}" if len(reports) > 1 else ""
                name = Path(label.replace(":", "_")).stem + suffix
                Image.fromarray(r.aligned).save(out / f"{name}.png")  # aligned crops are RGB
    return 3 if unreadable else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fq.FiqaError as exc:  # user mistakes (bad backend name, ...): one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
