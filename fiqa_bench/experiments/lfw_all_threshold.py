"""Cost and make-up of the exact FMR threshold over *all* LFW non-mated pairs (lfw-all).

    fiqa-bench run lfw_all_threshold                  # all 13,233 images, ArcFace
    fiqa-bench run lfw_all_threshold --quick          # smoke run (CI): 312 images

Runs :func:`fiqa_sdk.eval.evaluate.threshold_all_nonmated` -- the blockwise exact threshold that
``fiqa-bench quality --protocol lfw-all`` uses (1,024 probe images per matrix product, only the
top k + 1 non-mated scores kept) -- on the cached detections and embeddings of ``fiqa-bench
quality`` ($FIQA_CACHE/lfw, RetinaFace, central face policy, fallback landmarks), and reports:

- ``seconds``: its wall time (median of ``--repeats`` calls, no memory tracing);
- ``peak_mib``: the peak of the memory allocated during one more call, traced with
  ``tracemalloc`` (numpy registers its buffers there; the embeddings passed in are not counted);
- the mated pairs that fail at the threshold (score < threshold): how many, from how many
  identities and distinct images, and the most failing pairs any one image is part of.

``--quick``: all-vs-all over the images of the 200 pairs of the other ``--quick`` benchmarks
(the first 10 mated + 10 non-mated pairs of each fold of pairs.txt).
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from fiqa_sdk.eval.evaluate import pair_scores, threshold_all_nonmated

from ..harness import experiment


def threshold_cost(emb: np.ndarray, labels, fmr: float = 1e-3, block_size: int = 1024,
                   repeats: int = 3) -> dict:
    """Threshold, K, median seconds over ``repeats`` calls and traced peak MiB of one call."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        thr, k = threshold_all_nonmated(emb, labels, fmr, block_size=block_size)
        times.append(time.perf_counter() - t0)
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    threshold_all_nonmated(emb, labels, fmr, block_size=block_size)
    peak = tracemalloc.get_traced_memory()[1] - base
    if not was_tracing:
        tracemalloc.stop()
    return {"threshold": float(thr.threshold), "fmr_achieved": float(thr.fmr_achieved), "n_nonmated": int(k),
            "seconds": float(np.median(times)), "peak_mib": peak / 2**20,
            "block_size": block_size, "repeats": len(times)}


def failing_breakdown(mated_pairs: np.ndarray, mated_scores: np.ndarray, threshold: float,
                      labels) -> dict:
    """Which mated pairs fail at ``threshold`` (score < threshold): counts by identity and image."""
    labels = np.asarray(labels)
    fail = np.asarray(mated_pairs)[np.asarray(mated_scores) < threshold]
    images = np.unique(fail)
    per_image = np.bincount(fail.ravel(), minlength=len(labels)) if fail.size else np.zeros(0, int)
    worst = int(per_image.argmax()) if fail.size else -1
    return {"failing_mated_pairs": int(len(fail)), "n_mated": int(len(mated_pairs)),
            "failing_identities": int(len(np.unique(labels[fail[:, 0]]))) if fail.size else 0,
            "failing_images": int(len(images)),
            "max_failing_pairs_of_one_image": int(per_image.max()) if fail.size else 0,
            "worst_image_index": worst}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--eval-embedder", default="arcface")
    ap.add_argument("--detector", default="retinaface")
    ap.add_argument("--fmr", type=float, default=1e-3)
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls (median)")
    ap.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE/lfw)")


@experiment("lfw_all_threshold", "cost and make-up of the exact FMR threshold over all "
            "LFW non-mated pairs",
            arguments=arguments)
def run(args, ctx) -> dict:
    """Time and peak memory of the threshold, and which mated pairs fail at it."""
    import fiqa_sdk as fq
    from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all
    from fiqa_sdk.eval.protocols import (QUICK_PAIRS_PER_FOLD, identity_protocol, lfw_all_vs_all,
                                         pairs_subset, read_lfw_pairs)

    t_start = time.perf_counter()
    if args.quick:
        sub = pairs_subset(read_lfw_pairs(args.lfw), QUICK_PAIRS_PER_FOLD)
        proto = identity_protocol(sub.paths, [Path(p).parent.name for p in sub.paths],
                                  source="the --quick LFW images")
    else:
        proto = lfw_all_vs_all(args.lfw)
    cache = Path(args.cache) if args.cache else default_cache_dir() / "lfw"
    faces = detect_all([str(p) for p in proto.paths], fq.create_detector(args.detector),
                       policy="central", cache_dir=cache)
    emb = embed_all(faces, fq.create_embedder(args.eval_embedder), fallback=True, cache_dir=cache)
    cost = threshold_cost(emb, proto.labels, args.fmr, args.block_size, args.repeats)
    mated = pair_scores(emb, proto.mated_pairs)
    brk = failing_breakdown(proto.mated_pairs, mated, cost["threshold"], proto.labels)
    if brk["worst_image_index"] >= 0:
        brk["worst_image"] = str(proto.paths[brk["worst_image_index"]])
    out = {"benchmark": "lfw-all-threshold", "quick": bool(args.quick),
           "images": len(proto.paths), "eval_embedder": args.eval_embedder, **cost, **brk,
           "total_seconds": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(out, indent=2))
    print(f"{out['images']} images, {cost['n_nonmated']:,} non-mated pairs: threshold "
          f"{cost['threshold']:.5f} in {cost['seconds']:.2f} s, peak {cost['peak_mib']:.0f} MiB "
          f"allocated; {brk['failing_mated_pairs']} of {brk['n_mated']:,} mated pairs fail, from "
          f"{brk['failing_identities']} identities and {brk['failing_images']} images, up to "
          f"{brk['max_failing_pairs_of_one_image']} per image", file=sys.stderr)
    return out

