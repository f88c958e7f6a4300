"""eDifFIQA ablation over eps (label optimization) and theta (loss balance), like the paper's Table 10.

Trains one eDifFIQA regressor per setting with ``fiqa train ediffiqa`` (pseudo-labels, target
embeddings and frozen-stem activations are cached, so each run costs only the tail training),
then evaluates all of them side by side on LFW with ``benchmarks/regressors_lfw.py``.

    python benchmarks/ediffiqa_ablation.py --weights DENOISER.safetensors --n 1 \\
        --out results/ablation

eps in {0, 0.1, 0.5, 1.0} at theta = 0.5 and theta in {0.1, 0.5, 0.9} at eps = 0.5 (six runs;
eps = 0.5, theta = 0.5 is shared). The teacher options (--weights, --t, --n, --fast, --seed)
must match the ones the labels were computed with, or the labels are computed anew.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SETTINGS = [(0.0, 0.5), (0.1, 0.5), (0.5, 0.5), (1.0, 0.5), (0.5, 0.1), (0.5, 0.9)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="DifFIQA denoiser (the teacher)")
    ap.add_argument("--t", type=int, default=5)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--protocols", nargs="+", default=["lfw-pairs", "lfw-all"])
    ap.add_argument("--eval-embedders", nargs="+", default=["arcface"])
    ap.add_argument("--out", type=Path, default=Path("results/ablation"))
    ap.add_argument("--skip-training", action="store_true", help="evaluate existing runs only")
    args = ap.parse_args(argv)

    teacher = ["--weights", args.weights, "--t", str(args.t), "--seed", str(args.seed),
               "--threads", str(args.threads)]
    if args.n is not None:
        teacher += ["--n", str(args.n)]
    if args.fast:
        teacher.append("--fast")
    regressors = []
    for eps, theta in SETTINGS:
        run = args.out / f"eps{eps:g}-theta{theta:g}"
        if not args.skip_training:
            cmd = [sys.executable, "-m", "fiqa_sdk.cli", "train", "ediffiqa", "--out", str(run),
                   "--eps", str(eps), "--theta", str(theta), "--epochs", str(args.epochs), *teacher]
            print(" ".join(cmd), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True)
        regressors += ["--regressor", f"eps={eps:g} theta={theta:g}={run / 'ediffiqa_mbf.safetensors'}"]
    sys.path.insert(0, str(HERE))
    import regressors_lfw

    return regressors_lfw.main([*regressors, "--baselines", "embedding-norm", "flip-consistency",
                                "--protocols", *args.protocols, "--eval-embedders",
                                *args.eval_embedders, "--threads", str(args.threads),
                                "--out", str(args.out / "lfw")])


if __name__ == "__main__":
    raise SystemExit(main())
