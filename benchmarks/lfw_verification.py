"""LFW 6,000-pair verification accuracy (10-fold) for detector x embedder combinations.

Proves that detection, landmark order and alignment are right: a wrong landmark order or a
bad alignment costs whole points of accuracy.

    python benchmarks/lfw_verification.py --detectors retinaface mtcnn dlib --embedders arcface dlib
    python benchmarks/lfw_verification.py --quick   # smoke run (CI): 200 pairs, ~1 min cold

Results (markdown table) go to stdout and, with --out, to a JSON file. Landmarks and embeddings
are cached under $FIQA_CACHE (default ~/.cache/fiqa-sdk).

``--quick``: the first 10 mated + 10 non-mated pairs of each fold (200 pairs, the subset of the
other ``--quick`` benchmarks, so 10-fold accuracy stays defined); far too few pairs to compare
configurations, it checks the plumbing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all
from fiqa_sdk.eval.protocols import (QUICK_PAIRS_PER_FOLD, default_lfw_root, pairs_subset,
                                     read_lfw_pairs)
from fiqa_sdk.eval.verification import kfold_accuracy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", default=None, help="LFW root (images/, pairs.txt)")
    ap.add_argument("--detectors", nargs="+", default=["retinaface"])
    ap.add_argument("--embedders", nargs="+", default=["arcface"])
    ap.add_argument("--face-policy", default="central",
                    help="which face of a multi-face image is the subject (LFW: the central one)")
    ap.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE)")
    ap.add_argument("--limit-folds", type=int, default=10, help="use only the first K folds (quick runs)")
    ap.add_argument("--out", default=None, help="write results as JSON here")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: the first {QUICK_PAIRS_PER_FOLD} mated and "
                         f"{QUICK_PAIRS_PER_FOLD} non-mated pairs of each fold (200 pairs)")
    args = ap.parse_args(argv)

    proto = read_lfw_pairs(args.lfw or default_lfw_root())
    if args.quick:
        proto = pairs_subset(proto, QUICK_PAIRS_PER_FOLD)
    sel = proto.folds < args.limit_folds
    pairs, mated, folds = proto.pairs[sel], proto.mated[sel], proto.folds[sel]
    used = np.unique(pairs)
    paths = [proto.paths[i] for i in used]
    remap = np.full(len(proto.paths), -1)
    remap[used] = np.arange(len(used))
    pairs = remap[pairs]
    cache = args.cache or default_cache_dir() / "lfw"
    rows = []
    embedders = {name: fq.create_embedder(name) for name in args.embedders}
    for dname in args.detectors:
        det = fq.create_detector(dname)
        t0 = time.perf_counter()
        faces = detect_all(paths, det, policy=args.face_policy, cache_dir=cache, progress=sys.stderr.isatty())
        t_det = time.perf_counter() - t0
        for ename, emb in embedders.items():
            e = embed_all(faces, emb, fallback=True, cache_dir=cache, progress=sys.stderr.isatty())
            sims = np.einsum("ij,ij->i", e[pairs[:, 0]], e[pairs[:, 1]])
            res = kfold_accuracy(sims, mated, folds)
            rows.append({
                "detector": dname, "embedder": ename, "accuracy": res.accuracy, "std": res.std,
                "images": len(paths), "pairs": int(len(pairs)),
                "no_face": int((~faces.found).sum()), "detection_rate": faces.detection_rate,
                "detect_seconds": round(t_det, 1),
            })
            print(f"{dname:>10} + {ename:<8} accuracy {res}  (no face in {rows[-1]['no_face']} of "
                  f"{len(paths)} images, fallback landmarks used)", file=sys.stderr)
    print("| detector | embedder | LFW accuracy (10-fold) | images without a detected face |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} | {r['embedder']} | {100 * r['accuracy']:.2f} +- {100 * r['std']:.2f} % "
              f"| {r['no_face']} / {r['images']} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
