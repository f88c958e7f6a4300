"""QualityGate.filter over all of LFW: the kept count and the memory profile of a long stream.

    python benchmarks/gate_filter_lfw.py --discard 0.2

Streams every LFW image (a generator of paths, never a list of decoded images) through
``gate.filter(..., discard=f)`` and reports how many were kept against the documented count
``n_scored - floor(f * n_scored)``, and the process's resident memory as the stream advances.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import time
from pathlib import Path

import fiqa_sdk as fq
from fiqa_sdk.eval.protocols import default_lfw_root


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--discard", type=float, default=0.2)
    ap.add_argument("--scorer", default=None)
    ap.add_argument("--limit", type=int, default=None, help="first N images only (quick runs)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    root = Path(args.lfw) if args.lfw else default_lfw_root()
    paths = sorted((root / "images").glob("*/*.jpg"))[: args.limit]
    gate = fq.QualityGate(**({"scorer": args.scorer} if args.scorer else {}))
    marks = {int(len(paths) * f) for f in (0.1, 0.25, 0.5, 0.75)} | {len(paths)}
    profile = []

    def stream():
        for i, p in enumerate(paths, 1):
            yield str(p)
            if i in marks:
                profile.append((i, round(rss_mb(), 1)))

    t0 = time.perf_counter()
    res = gate.filter(stream(), discard=args.discard)
    seconds = time.perf_counter() - t0
    n_scored = sum(r.score is not None for r in res.reports)
    expected = n_scored - math.floor(args.discard * n_scored)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"images": len(paths), "scored": n_scored, "kept": len(res.kept), "expected_kept": expected,
           "rejected": len(res.rejected), "threshold": res.threshold, "scorer": gate.scorer.name,
           "seconds": round(seconds, 1), "rss_mb_by_images": profile, "peak_rss_mb": round(peak, 1)}
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0 if len(res.kept) == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
