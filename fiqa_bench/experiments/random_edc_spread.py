"""Spread of the normalized pAUC of *random* quality on an LFW protocol: the EDC floor.

Random per-image qualities (uniform, one draw per seed) discard mated pairs independently of
their comparison scores, so the expected FNMR-EDC is flat and the expected normalized pAUC is
1.0. With few failing mated pairs (LFW pairs.txt: 18 at FMR 1e-3 with ArcFace) one draw can
land well away from 1.0; this script shows how far, over many seeds, so that a scorer's
number can be judged against the noise.

    fiqa-bench run random_edc_spread --protocol lfw-all --seeds 200
    fiqa-bench run random_edc_spread --quick [--protocol lfw-pairs]   # smoke run (CI)

Uses the cached detections and embeddings of ``fiqa-bench quality`` ($FIQA_CACHE/lfw).

``--quick`` (well under a minute from a cold cache): 20 seeds on the 200 pairs of the other
``--quick`` benchmarks (the first 10 mated + 10 non-mated pairs of each fold; ``lfw-all``:
all-vs-all over their 312 images). With ArcFace at FMR 1e-3 these have no failing mated pair,
so the normalized pAUC is undefined (NaN); it checks the plumbing.
"""

from __future__ import annotations

import json

import numpy as np

from fiqa_sdk.eval.evaluate import edc_at_threshold, pair_scores

from ..harness import experiment
from ..lfw import protocol_threshold

#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"seeds": 20}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--protocol", choices=["lfw-pairs", "lfw-all"], default="lfw-all")
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--eval-embedder", default="arcface")
    ap.add_argument("--detector", default="retinaface")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--fmr", type=float, default=1e-3)
    ap.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE/lfw)")


@experiment("random_edc_spread", "spread of random quality's normalized pAUC on an LFW "
            "protocol (the EDC floor)", arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Summary of the normalized pAUC at discard 0.2 / 0.3 over ``--seeds`` random draws."""
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
    return out
