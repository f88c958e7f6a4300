"""What a seed ensemble of regressors costs: k fine-tuned tails on one shared frozen stem.

The mean of several training seeds' scores is steadier than one run on LFW (docs/benchmarks.md
"Seeds and a seed ensemble"), and the shipped ``ediffiqa`` is such an ensemble
(:class:`fiqa_sdk.quality.ediffiqa.RegressorEnsemble`). Regressors distilled with the same
``--cut`` share the frozen MobileFaceNet front, so an ensemble costs one stem pass plus one
tail per member. This script times, side by side in each round, one regressor alone and the
ensemble of all given regressors (one ``RegressorEnsemble`` module, as shipped) through
``RegressorScorer`` with the same ``--backend`` / ``--threads``, on the same batches, and
reports medians and their ratio.

    fiqa-bench run ensemble_cost --regressor runs/e1t05-s0/ediffiqa_mbf.safetensors \\
        --regressor runs/e1t05-s1/ediffiqa_mbf.safetensors \\
        --regressor runs/e1t05-s2/ediffiqa_mbf.safetensors --threads 1 [--backend onnxruntime]

Timing does not depend on the pixels, so the crops are seeded random uint8 images.
``--quick`` (CI smoke run, seconds): the shipped ``diffiqa-r`` and ``ediffiqa-free`` as a
two-member ensemble, 32 crops, 2 rounds.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np

from ..harness import experiment


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--regressor", action="append", default=[], metavar="PATH",
                    help="a regressor's .safetensors (repeatable; at least two)")
    ap.add_argument("--faces", type=int, default=256, help="crops per round")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                    help="runtime of both (onnxruntime: threads = inferences at once)")


@experiment("ensemble_cost", "what a seed ensemble of regressors costs (k tails on "
            "one frozen stem)",
            arguments=arguments, quick={"faces": 32, "rounds": 2})
def run(args, ctx) -> dict:
    """Per-face times of one member and of the ensemble, and their ratio."""
    import torch

    from fiqa_sdk.errors import InvalidArgumentError, WeightsError
    from fiqa_sdk.quality.ediffiqa import (
        RegressorEnsemble,
        RegressorScorer,
        load_regressor,
        shipped_weights,
    )

    if args.quick and not args.regressor:  # two shipped single regressors of one recipe
        args.regressor = [str(shipped_weights(m)) for m in ("diffiqa-r", "ediffiqa-free")]
    if len(args.regressor) < 2:
        raise InvalidArgumentError("give at least two --regressor weights (the ensemble's members)")
    torch.set_num_threads(args.threads)
    try:
        loaded = [load_regressor(w) for w in args.regressor]
        members = RegressorEnsemble.from_regressors(loaded, args.regressor)
    except (InvalidArgumentError, WeightsError) as exc:
        raise InvalidArgumentError(f"--regressor takes single regressors of one recipe (the members): {exc}")
    threads = args.threads if args.backend == "onnxruntime" else None

    def scorer(weights, name: str) -> RegressorScorer:
        return RegressorScorer(weights, batch_size=args.batch_size, backend=args.backend,
                               threads=threads, name=name)

    def random_crops(seed: int) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, (args.faces, 112, 112, 3), dtype=np.uint8)

    crops = random_crops(0)
    single = scorer(loaded[0][0], "single")
    ensemble = scorer(members, "ensemble")
    alone = np.mean([scorer(m, f"m{i}").score(crops[:8]) for i, (m, _) in enumerate(loaded)], 0)
    np.testing.assert_allclose(ensemble.score(crops[:8]), alone, atol=1e-4)
    times: dict[str, list[float]] = {"single": [], "ensemble": []}
    for r in range(args.rounds):
        crops = random_crops(r + 1)
        for name, sc in (("single", single), ("ensemble", ensemble)):
            t0 = time.perf_counter()
            for s in range(0, args.faces, args.batch_size):
                sc.score(crops[s : s + args.batch_size])
            times[name].append((time.perf_counter() - t0) / args.faces)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"members": len(members), "faces": args.faces, "batch_size": args.batch_size,
           "rounds": args.rounds, "threads": args.threads, "backend": args.backend,
           "ms_per_face": {k: round(v * 1e3, 3) for k, v in med.items()},
           "ratio": round(med["ensemble"] / med["single"], 3),
           "all_ms_per_face": {k: [round(x * 1e3, 3) for x in v] for k, v in times.items()}}
    print(json.dumps(out, indent=1))
    return out

