"""Time fiqa_sdk.eval.edc on 10M non-mated + 250k mated random pairs (median of 3 runs).

    fiqa-bench run bench_edc [--nonmated 10000000] [--mated 250000] [--repeats 3]
    fiqa-bench run bench_edc --quick   # smoke run (CI): 100k + 2.5k pairs, 1 run, ~1 s

Prints the seconds for the FNMR-EDC alone and with the FMR-EDC (non-mated qualities given).
Input generation is not timed.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from fiqa_sdk.eval import edc

from ..harness import experiment

#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"nonmated": 100_000, "mated": 2_500, "repeats": 1}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--nonmated", type=int, default=10_000_000)
    ap.add_argument("--mated", type=int, default=250_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)


@experiment("bench_edc", "time fiqa_sdk.eval.edc on many random pairs",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Median seconds of the FNMR-EDC alone and with the FMR-EDC (one row each)."""
    rng = np.random.default_rng(args.seed)
    mated = rng.normal(0.6, 0.15, args.mated)
    nonmated = rng.normal(0.0, 0.1, args.nonmated)
    q_mated = rng.random((args.mated, 2))
    q_nonmated = rng.random((args.nonmated, 2))
    rows = []
    cases = (("FNMR-EDC", {}), ("FNMR-EDC + FMR-EDC", {"nonmated_qualities": q_nonmated}))
    for label, extra in cases:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = edc(mated, nonmated, q_mated, fmr=1e-3, **extra)
            times.append(time.perf_counter() - t0)
        print(
            f"{label}: {statistics.median(times):.3f} s median of {args.repeats} "
            f"(M={args.mated:,}, K={args.nonmated:,}; pAUC@0.2 norm={res.pauc(0.2, True):.3f}, "
            f"threshold={res.threshold:.4f}, fmr_achieved={res.fmr_achieved:.2e})"
        )
        rows.append({"case": label, "median_s": statistics.median(times), "runs_s": times,
                     "pauc_0.2_norm": res.pauc(0.2, True), "threshold": res.threshold,
                     "fmr_achieved": res.fmr_achieved})
    return {"mated": args.mated, "nonmated": args.nonmated, "repeats": args.repeats,
            "rows": rows}

