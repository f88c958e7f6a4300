"""Is scorer A's normalized pAUC really lower than scorer B's? A paired identity bootstrap.

The EDC of an LFW protocol rests on few failing mated pairs when the comparisons are ArcFace's
(172 on lfw-all, from 30 identities; 18 on pairs.txt), so a difference of pAUCs between two
scorers can be noise. This script redraws the *identities* (clusters: all mated pairs of a
drawn identity come with it, an identity drawn twice counts twice) with replacement, keeps the
decision threshold of the full protocol (FMR 1e-3 over all its non-mated pairs), and computes
both scorers' normalized pAUC on the same redrawn mated pairs. It reports each scorer's pAUC,
the difference A - B with its bootstrap standard error and 95 % percentile interval, and the
share of redraws in which A is lower (better) than B.

    python benchmarks/paired_pauc_ci.py --protocol lfw-all --eval-embedder arcface \\
        --a ediffiqa --b embedding-norm --boot 2000
    python benchmarks/paired_pauc_ci.py --quick       # smoke run (tests)

Uses the caches of ``fiqa bench quality`` ($FIQA_CACHE/lfw): run that command first with both
scorers so that no scorer is computed here. Scorer options as in ``fiqa bench quality``
(``--scorer-param ediffiqa.threads=2``). ``--quick`` (seconds on a warm cache): all-vs-all over
the 312 images of the other ``--quick`` benchmarks, ``inter-eye`` vs ``random``, 50 redraws, and
the threshold at FMR 1e-5 (at 1e-3 ArcFace fails none of their mated pairs); options given
explicitly still win.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.bench import (edc_at_threshold, make_scorers, pair_scores,
                                 parse_scorer_params)
from fiqa_sdk.eval.features import default_cache_dir, score_all

LIMITS = (0.2, 0.3)
#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"a": "inter-eye", "b": "random", "boot": 50, "fmr": 1e-5}


def pair_identities(proto, mated_pairs: np.ndarray) -> np.ndarray:
    """Identity index of each mated pair (both images share it)."""
    if getattr(proto, "labels", None) is not None:
        return np.asarray(proto.labels)[mated_pairs[:, 0]]
    names = [Path(proto.paths[i]).parent.name for i in mated_pairs[:, 0]]
    return np.unique(names, return_inverse=True)[1]


def paired_bootstrap(mated: np.ndarray, qa: np.ndarray, qb: np.ndarray, ids: np.ndarray, thr,
                     fmr: float, k_total: int, boot: int, seed: int = 0,
                     limits=LIMITS) -> dict:
    """Normalized pAUCs of per-pair qualities ``qa``, ``qb`` ``(M, 2)`` and their difference on
    ``boot`` identity-cluster redraws of the mated pairs (threshold ``thr`` held fixed).
    Redraws without a failing pair (normalized pAUC undefined) are skipped and counted."""
    def paucs(idx):
        a = edc_at_threshold(mated[idx], qa[idx], thr, fmr, k_total)
        b = edc_at_threshold(mated[idx], qb[idx], thr, fmr, k_total)
        return [(a.pauc(lim, normalized=True), b.pauc(lim, normalized=True)) for lim in limits]

    uniq, inv = np.unique(ids, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    full = paucs(np.arange(len(mated)))
    rng = np.random.default_rng(seed)
    draws, undefined = [], 0
    for _ in range(int(boot)):
        counts = np.bincount(rng.integers(0, len(uniq), len(uniq)), minlength=len(uniq))
        idx = np.concatenate([np.tile(order[starts[c]:starts[c + 1]], counts[c])
                              for c in np.flatnonzero(counts)])
        if not np.any(mated[idx] < thr.threshold):
            undefined += 1
            continue
        draws.append(paucs(idx))
    d = np.asarray(draws, dtype=float)  # (B, limits, 2)
    out = {"identities": int(len(uniq)), "boot": int(boot), "seed": int(seed),
           "undefined_draws": undefined, "limits": {}}
    for j, lim in enumerate(limits):
        a, b = full[j]
        diff = d[:, j, 0] - d[:, j, 1] if len(d) else np.array([np.nan])
        out["limits"][f"{lim:g}"] = {
            "a": a, "b": b, "diff": a - b,
            "se_diff": float(np.std(diff, ddof=1)) if len(d) > 1 else float("nan"),
            "ci95_diff": [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))],
            "share_a_lower": float(np.mean(diff < 0)),
            "se_a": float(np.std(d[:, j, 0], ddof=1)) if len(d) > 1 else float("nan"),
            "se_b": float(np.std(d[:, j, 1], ddof=1)) if len(d) > 1 else float("nan"),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: the 312 --quick LFW images, inter-eye vs random, 50 redraws, "
                         "FMR 1e-5")
    args = ap.parse_args(argv)
    if args.quick:
        ap.set_defaults(**QUICK)
        args = ap.parse_args(argv)
    if args.a == args.b:
        ap.error("--a and --b must name two different scorers")
    if args.boot < 2:
        ap.error("--boot must be at least 2")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from random_edc_spread import protocol_threshold

    proto, faces, emb, thr, k_total = protocol_threshold(
        args.protocol, args.lfw, args.quick, args.cache, args.detector, args.eval_embedder, args.fmr)
    cache = Path(args.cache) if args.cache else default_cache_dir() / "lfw"
    emb_q = fq.create_embedder(args.quality_embedder)
    scorers = make_scorers([args.a, args.b], emb_q, None, parse_scorer_params(args.scorer_param))
    qa, qb = score_all(faces, scorers, fallback=True, cache_dir=cache)
    mated_pairs = np.asarray(proto.mated_pairs, dtype=np.int64)
    mated = pair_scores(emb, mated_pairs)
    ids = pair_identities(proto, mated_pairs)
    if not np.any(mated < thr.threshold):
        print(f"no mated pair fails at FMR {args.fmr:g}: the normalized pAUC is undefined",
              file=sys.stderr)
        return 2
    res = paired_bootstrap(mated, qa[mated_pairs], qb[mated_pairs], ids, thr, args.fmr, k_total,
                           args.boot, args.seed)
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
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
