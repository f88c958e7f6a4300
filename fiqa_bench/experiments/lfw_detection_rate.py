"""Share of all 13,233 LFW images in which each detector finds a face.

    fiqa-bench run lfw_detection_rate --detectors retinaface mtcnn
    fiqa-bench run lfw_detection_rate --quick   # smoke run (CI): the first 20 images

Landmarks are cached under $FIQA_CACHE (shared with the other LFW benchmarks).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import fiqa_sdk as fq
from fiqa_sdk.eval.features import default_cache_dir, detect_all
from fiqa_sdk.eval.protocols import default_lfw_root

from ..harness import experiment

#: ``--quick``: the first this many images (sorted paths)
QUICK_IMAGES = 20


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--detectors", nargs="+", default=["retinaface", "mtcnn"])
    ap.add_argument("--face-policy", default="central")
    ap.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE/lfw)")


@experiment("lfw_detection_rate", "share of the LFW images in which each detector finds a "
            "face",
            arguments=arguments, quick=None)
def run(args, ctx) -> dict:
    """One row per detector: images, faces found, rate and the images missed."""
    root = Path(args.lfw) if args.lfw else default_lfw_root()
    paths = sorted((root / "images").glob("*/*.jpg"))
    if args.quick:
        paths = paths[:QUICK_IMAGES]
    cache = Path(args.cache) if args.cache else default_cache_dir() / "lfw"
    rows = []
    for name in args.detectors:
        t0 = time.perf_counter()
        fs = detect_all(paths, fq.create_detector(name), policy=args.face_policy,
                        cache_dir=cache, progress=sys.stderr.isatty())
        missed = [Path(p).name for p, f in zip(fs.paths, fs.found) if not f]
        rows.append({"detector": name, "images": len(paths), "found": int(fs.found.sum()),
                     "rate": fs.detection_rate, "missed": missed,
                     "seconds": round(time.perf_counter() - t0, 1)})
    print("| detector | images | face found | rate |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} | {r['images']} | {r['found']} | {100 * r['rate']:.2f} % |")
    return {"rows": rows}

