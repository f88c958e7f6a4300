"""Is scorer A's normalized pAUC really lower than scorer B's? A paired identity bootstrap.

The EDC of an LFW protocol rests on few failing mated pairs when the comparisons are ArcFace's
(172 on lfw-all, from 30 identities; 18 on pairs.txt), so a difference of pAUCs between two
scorers can be noise. This script redraws the *identities* (clusters: all mated pairs of a
drawn identity come with it, an identity drawn twice counts twice) with replacement, keeps the
decision threshold of the full protocol (FMR 1e-3 over all its non-mated pairs), and computes
both scorers' normalized pAUC on the same redrawn mated pairs (:func:`fiqa_sdk.eval.bootstrap_pauc`;
``fiqa-bench quality --bootstrap N`` gives every scorer's standard error the same way). It reports each scorer's pAUC,
the difference A - B with its bootstrap standard error and 95 % percentile interval, and the
share of redraws in which A is lower (better) than B.

    fiqa-bench run paired_pauc_ci --protocol lfw-all --eval-embedder arcface \\
        --a ediffiqa --b embedding-norm --boot 2000
    fiqa-bench run paired_pauc_ci --quick       # smoke run (tests)

Uses the caches of ``fiqa-bench quality`` ($FIQA_CACHE/lfw): run that command first with both
scorers so that no scorer is computed here. Scorer options as in ``fiqa-bench quality``
(``--scorer-param ediffiqa.threads=2``). ``--quick`` (seconds on a warm cache): all-vs-all over
the 312 images of the other ``--quick`` benchmarks, ``inter-eye`` vs ``random``, 50 redraws, and
the threshold at FMR 1e-5 (at 1e-3 ArcFace fails none of their mated pairs); options given
explicitly still win.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.evaluate import (make_scorers, mated_pair_identities, pair_scores,
                                 parse_scorer_params)
from fiqa_sdk.errors import InvalidArgumentError
from fiqa_sdk.eval.features import default_cache_dir, score_all

from ..harness import experiment
from ..lfw import protocol_threshold

LIMITS = (0.2, 0.3)
#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"a": "inter-eye", "b": "random", "boot": 50, "fmr": 1e-5}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--protocol", choices=["lfw-pairs", "lfw-all"], default="lfw-all")
    ap.add_argument("--eval-embedder", default="arcface")
    ap.add_argument("--quality-embedder", default="arcface")
    ap.add_argument("--detector", default="retinaface")
    ap.add_argument("--a", default="ediffiqa", help="scorer A (default: ediffiqa)")
    ap.add_argument("--b", default="embedding-norm", help="scorer B (default: embedding-norm)")
    ap.add_argument("--scorer-param", nargs="*", default=[], metavar="SCORER.KEY=VALUE")
    ap.add_argument("--boot", type=int, default=2000, help="identity redraws")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fmr", type=float, default=1e-3)
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--cache", default=None, help="cache folder (default $FIQA_CACHE/lfw)")


@experiment("paired_pauc_ci", "paired identity bootstrap of two scorers' normalized pAUC on LFW",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Both scorers' normalized pAUC, their difference, its bootstrap SE and 95 % interval.

    Raises
    ------
    InvalidArgumentError
        If ``--a`` and ``--b`` are the same scorer or ``--boot`` is below 2.

    Without a failing mated pair at the threshold the normalized pAUC is undefined: the run
    says so and exits with status 2.
    """
    if args.a == args.b:
        raise InvalidArgumentError("--a and --b must name two different scorers")
    if args.boot < 2:
        raise InvalidArgumentError("--boot must be at least 2")
    cache = Path(args.cache) if args.cache else default_cache_dir() / "lfw"
    proto, faces, emb, thr, k_total = protocol_threshold(
        args.protocol, args.lfw, args.quick, cache, args.detector, args.eval_embedder, args.fmr)
    emb_q = fq.create_embedder(args.quality_embedder)
    scorers = make_scorers([args.a, args.b], emb_q, None, parse_scorer_params(args.scorer_param))
    qa, qb = score_all(faces, scorers, fallback=True, cache_dir=cache)
    mated_pairs = np.asarray(proto.mated_pairs, dtype=np.int64)
    mated = pair_scores(emb, mated_pairs)
    ids = mated_pair_identities(proto, mated_pairs)
    if not np.any(mated < thr.threshold):
        print(f"no mated pair fails at FMR {args.fmr:g}: the normalized pAUC is undefined",
              file=sys.stderr)
        ctx.exit_code = 2
        return {"protocol": args.protocol, "eval_embedder": args.eval_embedder, "a": args.a,
                "b": args.b, "threshold": thr.threshold, "failing_mated_pairs": 0}
    boot = fq.eval.bootstrap_pauc(mated, {args.a: qa[mated_pairs], args.b: qb[mated_pairs]}, ids,
                                  thr, LIMITS, args.boot, args.seed)
    res = {"identities": boot.groups, "boot": int(args.boot), "seed": int(args.seed),
           "undefined_draws": boot.undefined, "limits": {}}
    for lim in LIMITS:
        d = boot.difference(args.a, args.b, lim)
        res["limits"][f"{lim:g}"] = {
            "a": float(boot.point[0, boot.limits.index(lim)]),
            "b": float(boot.point[1, boot.limits.index(lim)]),
            "diff": d["difference"], "se_diff": d["se"], "ci95_diff": d["interval"],
            "share_a_lower": d["share_a_lower"], "se_a": boot.se(args.a, lim),
            "se_b": boot.se(args.b, lim)}
    failing = mated < thr.threshold
    res = {"protocol": args.protocol, "eval_embedder": args.eval_embedder, "a": args.a,
           "b": args.b, "threshold": thr.threshold, "failing_mated_pairs": int(failing.sum()),
           "identities_with_failing_pairs": int(len(np.unique(ids[failing]))), **res}
    print(f"{args.protocol}, {args.eval_embedder} comparisons: {res['failing_mated_pairs']} failing "
          f"mated pairs from {res['identities_with_failing_pairs']} identities; {args.boot} "
          f"identity redraws ({res['undefined_draws']} without a failing pair)")
    print(f"| limit | {args.a} | {args.b} | difference | bootstrap SE | 95 % interval | "
          f"share of redraws with {args.a} lower |\n|---|---|---|---|---|---|---|")
    for lim, r in res["limits"].items():
        print(f"| {lim} | {r['a']:.3f} | {r['b']:.3f} | {r['diff']:+.3f} | {r['se_diff']:.3f} | "
              f"{r['ci95_diff'][0]:+.3f} to {r['ci95_diff'][1]:+.3f} | {r['share_a_lower']:.2f} |")
    return res
