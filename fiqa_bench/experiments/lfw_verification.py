"""LFW 6,000-pair verification accuracy (10-fold) for detector x embedder combinations.

Proves that detection, landmark order and alignment are right: a wrong landmark order or a
bad alignment costs whole points of accuracy.

    fiqa-bench run lfw_verification --detectors retinaface mtcnn dlib --embedders arcface dlib
    fiqa-bench run lfw_verification --quick   # smoke run (CI): 200 pairs, ~1 min cold
    fiqa-bench run lfw_verification --face-policy largest --errors-vs-policy central --limit-folds 2

Results (markdown table) go to stdout and, with --out, to a JSON file. Landmarks and embeddings
are cached under $FIQA_CACHE (default ~/.cache/fiqa-sdk).

``--quick``: the first 10 mated + 10 non-mated pairs of each fold (200 pairs, the subset of the
other ``--quick`` benchmarks, so 10-fold accuracy stays defined); far too few pairs to compare
configurations, it checks the plumbing.

``--errors-vs-policy P``: also list the misclassified pairs of each detector x embedder run (the
threshold of each test fold chosen on the other folds, as for the accuracy) and count those with
an image whose selected face differs from the one face policy ``P`` selects (bounding-box IoU
below 0.5, or a face found under one policy only), e.g. the errors that ``--face-policy
largest`` makes by picking a bigger off-centre face instead of the central subject.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all
from fiqa_sdk.eval.protocols import (QUICK_PAIRS_PER_FOLD, default_lfw_root, pairs_subset,
                                     read_lfw_pairs)
from fiqa_sdk.eval.verification import best_threshold, kfold_accuracy

from ..harness import experiment


def kfold_errors(sims: np.ndarray, mated: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Indices of the pairs misclassified with each fold's threshold chosen on the other folds
    (the decisions behind :func:`kfold_accuracy`)."""
    wrong = np.zeros(len(sims), bool)
    for f in np.unique(folds):
        test = folds == f
        th = best_threshold(sims[~test], mated[~test])
        wrong[test] = (sims[test] >= th) != mated[test]
    return np.flatnonzero(wrong)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two ``(N, 4)`` x1, y1, x2, y2 arrays (NaN rows give 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a) + area(b) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return np.nan_to_num(iou, nan=0.0)


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None, help="LFW root (images/, pairs.txt)")
    ap.add_argument("--detectors", nargs="+", default=["retinaface"])
    ap.add_argument("--embedders", nargs="+", default=["arcface"])
    ap.add_argument("--face-policy", default="central",
                    help="which face of a multi-face image is the subject (LFW: the central one)")
    ap.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE)")
    ap.add_argument("--limit-folds", type=int, default=10, help="use only the first K folds (quick runs)")
    ap.add_argument("--errors-vs-policy", default=None, metavar="POLICY",
                    help="list the misclassified pairs and count those with an image whose face "
                         "differs from the one POLICY selects (e.g. central)")


@experiment("lfw_verification", "LFW 10-fold verification accuracy per detector x "
            "embedder",
            arguments=arguments)
def run(args, ctx) -> dict:
    """One row per detector x embedder: 10-fold accuracy and detection counts."""
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
        other = None
        if args.errors_vs_policy:
            other = detect_all(paths, det, policy=args.errors_vs_policy, cache_dir=cache,
                               progress=sys.stderr.isatty())
            differs = np.asarray(faces.found) != np.asarray(other.found)
            differs |= (np.asarray(faces.found) & np.asarray(other.found)
                        & (box_iou(faces.bbox, other.bbox) < 0.5))
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
            if other is not None:
                err = kfold_errors(sims, mated, folds)
                bad = differs[pairs[err]].any(axis=1)
                rows[-1].update({
                    "errors": int(len(err)), "errors_vs_policy": args.errors_vs_policy,
                    "errors_with_other_face": int(bad.sum()),
                    "images_with_other_face": int(differs.sum()),
                    "error_pairs": [{"a": str(paths[pairs[i, 0]]), "b": str(paths[pairs[i, 1]]),
                                     "mated": bool(mated[i]), "score": float(sims[i]),
                                     "other_face": bool(b)} for i, b in zip(err, bad)]})
                print(f"{dname:>10} + {ename:<8} {len(err)} errors in {len(np.unique(folds))} "
                      f"folds; {int(bad.sum())} with an image whose face differs from the "
                      f"'{args.errors_vs_policy}' policy's ({int(differs.sum())} such images)",
                      file=sys.stderr)
            print(f"{dname:>10} + {ename:<8} accuracy {res}  (no face in {rows[-1]['no_face']} of "
                  f"{len(paths)} images, fallback landmarks used)", file=sys.stderr)
    print("| detector | embedder | LFW accuracy (10-fold) | images without a detected face |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} | {r['embedder']} | {100 * r['accuracy']:.2f} +- {100 * r['std']:.2f} % "
              f"| {r['no_face']} / {r['images']} |")
    return {"rows": rows}

