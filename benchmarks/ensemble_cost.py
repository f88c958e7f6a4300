"""What a seed ensemble of regressors costs: k fine-tuned tails on one shared frozen stem.

The mean of several training seeds' scores is steadier than one run on LFW (docs/benchmarks.md
"Seeds and a seed ensemble"). Regressors distilled with the same ``--cut`` share the frozen
MobileFaceNet front (:class:`fiqa_sdk.quality.ediffiqa.SharedStem`), so an ensemble costs one
stem pass plus one tail per member. This script times, side by side in each round (torch, CPU),
one regressor alone and the ensemble of all given regressors (``regressors_lfw.mean_scorer``
over scorers sharing one stem), on the same batches, and reports medians and their ratio.

    python benchmarks/ensemble_cost.py --regressor runs/e1t05-s0/ediffiqa_mbf.safetensors \\
        --regressor runs/e1t05-s1/ediffiqa_mbf.safetensors \\
        --regressor runs/e1t05-s2/ediffiqa_mbf.safetensors --threads 1

Timing does not depend on the pixels, so the crops are seeded random uint8 images.
``--quick`` (CI smoke run, seconds): the shipped ``ediffiqa`` and ``diffiqa-r`` as a
two-member ensemble, 32 crops, 2 rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regressor", action="append", default=[], metavar="PATH",
                    help="a regressor's .safetensors (repeatable; at least two)")
    ap.add_argument("--faces", type=int, default=256, help="crops per round")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the result as JSON here")
    ap.add_argument("--quick", action="store_true", help="shipped ediffiqa + diffiqa-r, 32 crops, 2 rounds")
    args = ap.parse_args(argv)

    import torch

    from fiqa_sdk.quality.ediffiqa import RegressorScorer, SharedStem, shipped_weights

    if args.quick:
        args.regressor = args.regressor or [str(shipped_weights(m)) for m in ("ediffiqa", "diffiqa-r")]
        args.faces, args.rounds = 32, 2
    if len(args.regressor) < 2:
        ap.error("give at least two --regressor weights (the ensemble's members)")
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))
    from regressors_lfw import mean_scorer

    def random_crops(seed: int) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, (args.faces, 112, 112, 3), dtype=np.uint8)

    crops = random_crops(0)
    single = RegressorScorer(args.regressor[0], batch_size=args.batch_size)
    stem = SharedStem(int((single.meta or {}).get("config", {}).get("cut", 15)))  # as trained
    members = [RegressorScorer(w, shared_stem=stem, batch_size=args.batch_size, name=f"m{i}")
               for i, w in enumerate(args.regressor)]
    ensemble = mean_scorer("ensemble", members)
    # the ensemble's member 0 is the single regressor: same scores from the shared stem
    np.testing.assert_allclose(members[0].score(crops[:8]), single.score(crops[:8]), atol=1e-5)
    times: dict[str, list[float]] = {"single": [], "ensemble": []}
    for r in range(args.rounds):
        # new pixels every round: the shared stem memoises only its last batch, and a batch it
        # has seen before would make the ensemble look free
        crops = random_crops(r + 1)
        for name, scorer in (("single", single), ("ensemble", ensemble)):
            t0 = time.perf_counter()
            for s in range(0, args.faces, args.batch_size):
                scorer.score(crops[s : s + args.batch_size])
            times[name].append((time.perf_counter() - t0) / args.faces)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"members": len(members), "faces": args.faces, "batch_size": args.batch_size,
           "rounds": args.rounds, "threads": args.threads,
           "ms_per_face": {k: round(v * 1e3, 3) for k, v in med.items()},
           "ratio": round(med["ensemble"] / med["single"], 3),
           "all_ms_per_face": {k: [round(x * 1e3, 3) for x in v] for k, v in times.items()}}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
