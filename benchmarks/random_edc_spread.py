"""Spread of the normalized pAUC of *random* quality on an LFW protocol: the EDC floor.

Random per-image qualities (uniform, one draw per seed) discard mated pairs independently of
their comparison scores, so the expected FNMR-EDC is flat and the expected normalized pAUC is
1.0. With few failing mated pairs (LFW pairs.txt: 18 at FMR 1e-3 with ArcFace) one draw can
land well away from 1.0; this script shows how far, over many seeds, so that a scorer's
number can be judged against the noise.

    python benchmarks/random_edc_spread.py --protocol lfw-all --seeds 200
    python benchmarks/random_edc_spread.py --quick [--protocol lfw-pairs]   # smoke run (CI)

Uses the cached detections and embeddings of ``fiqa bench quality`` ($FIQA_CACHE/lfw).

``--quick`` (well under a minute from a cold cache): 20 seeds on the 200 pairs of the other
``--quick`` benchmarks (the first 10 mated + 10 non-mated pairs of each fold; ``lfw-all``:
all-vs-all over their 312 images). With ArcFace at FMR 1e-3 these have no failing mated pair,
so the normalized pAUC is undefined (NaN); it checks the plumbing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.bench import pair_scores, edc_at_threshold, threshold_all_nonmated
from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all
from fiqa_sdk.eval.protocols import (QUICK_PAIRS_PER_FOLD, identity_protocol, lfw_all_vs_all,
                                     pairs_subset, read_lfw_pairs)

#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"seeds": 20}


def quick_protocol(name: str, lfw=None):
    """``--quick``: the 200 pairs of the other ``--quick`` benchmarks (``lfw-pairs``), or
    all-vs-all comparisons over their images (``lfw-all``)."""
    proto = pairs_subset(read_lfw_pairs(lfw), QUICK_PAIRS_PER_FOLD)
    if name == "lfw-pairs":
        return proto
    return identity_protocol(proto.paths, [p.parent.name for p in map(Path, proto.paths)],
                             source="the --quick LFW images")


def protocol_threshold(protocol: str, lfw=None, quick: bool = False, cache=None,
                       detector: str = "retinaface", eval_embedder: str = "arcface",
                       fmr: float = 1e-3):
    """The protocol (``--quick``: :func:`quick_protocol`), its cached detections and
    ``eval_embedder`` embeddings, and the decision threshold at ``fmr`` over all its non-mated
    pairs: ``(proto, faces, emb, threshold, n_nonmated)``."""
    if quick:
        proto = quick_protocol(protocol, lfw)
    else:
        proto = read_lfw_pairs(lfw) if protocol == "lfw-pairs" else lfw_all_vs_all(lfw)
    cache = Path(cache) if cache else default_cache_dir() / "lfw"
    faces = detect_all([str(p) for p in proto.paths], fq.create_detector(detector),
                       policy="central", cache_dir=cache)
    emb = embed_all(faces, fq.create_embedder(eval_embedder), fallback=True, cache_dir=cache)
    if protocol == "lfw-all":
        thr, k = threshold_all_nonmated(emb, proto.labels, fmr)
    else:
        nm = np.asarray(proto.nonmated_pairs)
        thr, k = fq.eval.threshold_at_fmr(pair_scores(emb, nm), fmr), len(nm)
    return proto, faces, emb, thr, k


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", choices=["lfw-pairs", "lfw-all"], default="lfw-all")
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--eval-embedder", default="arcface")
    ap.add_argument("--detector", default="retinaface")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--fmr", type=float, default=1e-3)
    ap.add_argument("--out", default=None, help="write the summary as JSON here")
    ap.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE/lfw)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {QUICK['seeds']} seeds, 200 lfw-pairs pairs (lfw-all: "
                         "all-vs-all over their images)")
    args = ap.parse_args(argv)
    if args.quick:  # the quick defaults; options given on the command line still win
        ap.set_defaults(**QUICK)
        args = ap.parse_args(argv)

    proto, faces, emb, thr, k = protocol_threshold(args.protocol, args.lfw, args.quick, args.cache,
                                                   args.detector, args.eval_embedder, args.fmr)
    mated_pairs = proto.mated_pairs
    mated = pair_scores(emb, mated_pairs)
    out = {"protocol": args.protocol, "eval_embedder": args.eval_embedder, "seeds": args.seeds,
           "fnmr0": float(np.mean(mated < thr.threshold)),
           "failing_mated_pairs": int(np.sum(mated < thr.threshold)), "n_mated": len(mated)}
    for lim in (0.2, 0.3):
        vals = []
        for seed in range(args.seeds):
            q = np.random.default_rng(seed).random(len(proto.paths))
            res = edc_at_threshold(mated, q[mated_pairs], thr, args.fmr, k)
            vals.append(res.pauc(lim, normalized=True))
        v = np.asarray(vals)
        out[f"pauc_norm_{lim:g}"] = {"mean": float(v.mean()), "std": float(v.std()),
                                     "p5": float(np.percentile(v, 5)),
                                     "p95": float(np.percentile(v, 95))}
    print(json.dumps(out, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
