#!/usr/bin/env python3
"""Filter a folder of face images by quality and write the decisions to a CSV file.

Shows :meth:`fiqa_sdk.QualityGate.filter` on a directory: every image file directly in the
folder (sorted by name) is scored; ``discard=0.2`` rejects the ``floor(0.2 * n_scored)``
lowest-scored images, and images without a scorable face (unreadable file, no face) are always
rejected with their reason. One unreadable file never aborts the batch.

The CSV has one row per image file and the columns ``path, score, kept, reason`` (``score``
empty when no face was scored; ``reason`` empty for kept images, else ``discarded``,
``below_threshold``, ``no_face``, ``decode_error``, ...). The same as ``fiqa filter DIR
--discard 0.2 --out result.csv``.

Run::

    python examples/filter_folder.py                      # a generated demo folder
    python examples/filter_folder.py photos/ --discard 0.2 --out result.csv
    python examples/filter_folder.py photos/ --threshold -1    # diffiqa-r+norm units (docs/cli.md)

With no folder, a demo folder is generated in a new temporary directory from the sample face
that ships with scikit-image: copies degraded by blur, low resolution and noise, an image
without a face and a file that is not an image. Without ``--out`` the CSV is written into a
temporary directory (the demo's, or a new one); its path is printed.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import fiqa_sdk as fq


def make_demo_folder(folder: Path) -> Path:
    """Write a few images of varying quality (and two that cannot be scored) to ``folder``."""
    import cv2
    import numpy as np
    from skimage.data import astronaut

    folder.mkdir(parents=True, exist_ok=True)
    face = cv2.cvtColor(np.ascontiguousarray(astronaut()[0:320, 90:370]), cv2.COLOR_RGB2BGR)
    h, w = face.shape[:2]

    def lowres(img, f):
        small = cv2.resize(img, (w // f, h // f), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    rng = np.random.default_rng(0)
    noisy = np.clip(face + rng.normal(0, 40, face.shape), 0, 255).astype(np.uint8)
    images = {
        "01_sharp.jpg": face,
        "02_blur_mild.jpg": cv2.GaussianBlur(face, (0, 0), 1.5),
        "03_noisy.jpg": noisy,
        "04_lowres.jpg": lowres(face, 8),
        "05_blur_heavy.jpg": cv2.GaussianBlur(face, (0, 0), 8),
        "06_no_face.png": np.full((200, 200, 3), 128, np.uint8),
    }
    for name, img in images.items():
        cv2.imwrite(str(folder / name), img)  # cv2 writes BGR arrays
    (folder / "07_not_an_image.jpg").write_text("this file is not an image\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=None,
                    help="folder of images, not recursive (default: a generated demo folder)")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--discard", type=float, default=None,
                       help="fraction of the scored images to reject (default 0.2)")
    group.add_argument("--threshold", type=float, default=None,
                       help="reject images scoring below this instead, in the scorer's units "
                            "(docs/cli.md: thresholds in each scorer's units)")
    ap.add_argument("--out", default=None,
                    help="CSV file to write (default: filter_result.csv in a temporary folder)")
    ap.add_argument("--scorer", default=None, help="quality scorer (default: the gate's default)")
    args = ap.parse_args(argv)
    if args.discard is None and args.threshold is None:
        args.discard = 0.2

    workdir = None
    if args.folder is None:
        workdir = Path(tempfile.mkdtemp(prefix="fiqa-filter-demo-"))
        folder = make_demo_folder(workdir / "images")
        print(f"demo folder: {folder}")
    else:
        folder = Path(args.folder)
    if args.out:
        out = Path(args.out)
    else:
        out = (workdir or Path(tempfile.mkdtemp(prefix="fiqa-filter-"))) / "filter_result.csv"

    gate = fq.QualityGate(scorer=args.scorer)
    res = gate.filter(folder, discard=args.discard, threshold=args.threshold)

    # res.sources: the file of each report (input order); res.kept / res.rejected: indices
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "score", "kept", "reason"])
        for path, r in zip(res.sources, res.reports):
            writer.writerow([path, "" if r.score is None else f"{r.score:.6f}",
                             r.accepted, r.reason or ""])

    rule = (f"discard={args.discard:g}" if args.discard is not None
            else f"threshold={args.threshold:g}")
    print(f"scorer {gate.scorer.name}, {rule}: kept {len(res.kept)} of {len(res)} images "
          f"(quality cut {res.threshold:.4f})")
    for i, reason in res.rejected:
        r = res.reports[i]
        score = "no score" if r.score is None else f"score {r.score:.4f}"
        print(f"  rejected {Path(res.sources[i]).name}: {reason} ({score})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fq.FiqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
