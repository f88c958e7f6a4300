"""dlib against RetinaFace on LFW pairs.txt: landmark offsets, and why dlib's failures are easy.

    fiqa-bench run dlib_vs_retinaface
    fiqa-bench run dlib_vs_retinaface --quick     # smoke run (CI): 60 pairs

Both detectors run on the 7,701 images of ``pairs.txt`` with the *central* face policy, as in
``fiqa-bench alignment`` (detections and ArcFace embeddings cached under $FIQA_CACHE/lfw, shared
with the other LFW benchmarks). Reports

- **landmark offsets**, over the images where both found a face: the Euclidean distance, in
  pixels of the 250 x 250 LFW image, between dlib's and RetinaFace's 5 landmarks (the
  alignment's eyes, nose, mouth corners): median and 90th percentile over all landmarks
  (``pooled``), and of the per-image mean over the 5 (``per_image_mean``);
- **failing mated pairs** with ArcFace comparisons of each detector's aligned crops (images
  without a face get the median landmarks of the detector's found faces, as in ``fiqa-bench
  alignment``), at the threshold for FMR ``--fmr`` over the 3,000 non-mated pairs: how many fail
  (score < threshold), and how many of dlib's contain an image dlib found no face in.

``--quick``: 60 pairs (3 mated + 3 non-mated per fold), a subset of the 200 of the other
``--quick`` benchmarks, whose cached RetinaFace detections and embeddings it reuses.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from fiqa_sdk.eval.evaluate import pair_scores

from ..harness import experiment

#: ``--quick``: mated and non-mated pairs per fold of pairs.txt
QUICK_PAIRS_PER_FOLD = 3


def landmark_offsets(a: np.ndarray, b: np.ndarray, both: np.ndarray) -> dict:
    """Distances between two ``(N, 5, 2)`` landmark sets over the rows ``both``."""
    d = np.linalg.norm(np.asarray(a, np.float64)[both] - np.asarray(b, np.float64)[both], axis=-1)
    pooled, per_image = d.ravel(), d.mean(axis=1)

    def s(v):
        return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90))} if v.size else {}
    return {"images": int(both.sum()), "pooled": s(pooled), "per_image_mean": s(per_image),
            "per_landmark_median": [float(x) for x in np.median(d, axis=0)] if d.size else []}


def failing(emb: np.ndarray, proto, fmr: float, no_face: np.ndarray) -> dict:
    from fiqa_sdk.eval import threshold_at_fmr

    thr = threshold_at_fmr(pair_scores(emb, proto.nonmated_pairs), fmr)
    mp = proto.mated_pairs
    fail = pair_scores(emb, mp) < thr.threshold
    with_no_face = fail & (no_face[mp[:, 0]] | no_face[mp[:, 1]])
    return {"threshold": float(thr.threshold), "failing_mated_pairs": int(fail.sum()),
            "n_mated": int(len(mp)), "fnmr0": float(fail.mean()),
            "failing_with_a_no_face_image": int(with_no_face.sum()),
            "no_face_images": int(no_face.sum())}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--fmr", type=float, default=1e-3)
    ap.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE/lfw)")


@experiment("dlib_vs_retinaface", "dlib against RetinaFace on LFW pairs.txt: landmark "
            "offsets and failures",
            arguments=arguments)
def run(args, ctx) -> dict:
    """Landmark offsets between the detectors and each one's failing mated pairs."""
    import fiqa_sdk as fq
    from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all
    from fiqa_sdk.eval.protocols import pairs_subset, read_lfw_pairs

    t_start = time.perf_counter()
    proto = read_lfw_pairs(args.lfw)
    if args.quick:
        proto = pairs_subset(proto, QUICK_PAIRS_PER_FOLD)
    paths = [str(p) for p in proto.paths]
    cache = Path(args.cache) if args.cache else default_cache_dir() / "lfw"
    arcface = fq.create_embedder("arcface")
    sets, out = {}, {}
    for name in ("retinaface", "dlib"):
        t0 = time.perf_counter()
        faces = detect_all(paths, fq.create_detector(name), policy="central", cache_dir=cache)
        emb = embed_all(faces, arcface, fallback=True, cache_dir=cache)
        sets[name] = faces
        out[name] = {**failing(emb, proto, args.fmr, ~np.asarray(faces.found)),
                     "seconds": round(time.perf_counter() - t0, 1)}
    both = np.asarray(sets["retinaface"].found) & np.asarray(sets["dlib"].found)
    result = {"benchmark": "dlib-vs-retinaface", "quick": bool(args.quick), "images": len(paths),
              "landmark_offset_px": landmark_offsets(sets["dlib"].landmarks,
                                                     sets["retinaface"].landmarks, both),
              **out,
              "seconds": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(result, indent=2))
    off, dl = result["landmark_offset_px"], out["dlib"]
    if off["images"]:
        print(f"dlib vs RetinaFace landmarks on {off['images']} images: median "
              f"{off['pooled']['median']:.2f} px, 90th percentile {off['pooled']['p90']:.2f} px "
              f"(per-image mean: {off['per_image_mean']['median']:.2f} / "
              f"{off['per_image_mean']['p90']:.2f} px)", file=sys.stderr)
    print(f"failing mated pairs: RetinaFace {out['retinaface']['failing_mated_pairs']}, dlib "
          f"{dl['failing_mated_pairs']} ({dl['failing_with_a_no_face_image']} with an image dlib "
          f"found no face in; {dl['no_face_images']} such images)", file=sys.stderr)
    return result

