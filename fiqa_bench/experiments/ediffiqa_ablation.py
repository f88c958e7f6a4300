"""eDifFIQA ablation over eps (label optimization) and theta (loss balance), like the paper's Table 10.

Trains one eDifFIQA regressor per setting with ``fiqa train ediffiqa``, run in this process
(pseudo-labels, target embeddings and frozen-stem activations are cached, so each run costs only
the tail training), then evaluates all of them side by side on LFW with the ``regressors_lfw``
experiment.

    fiqa-bench run ediffiqa_ablation --weights DENOISER.safetensors --n 1 \\
        --out results/ablation

eps in {0, 0.1, 0.5, 1.0} at theta = 0.5 and theta in {0.1, 0.5, 0.9} at eps = 0.5 (six runs;
eps = 0.5, theta = 0.5 is shared); ``--grid``: all twelve (eps, theta) pairs; ``--settings
EPS:THETA ...``: any others (e.g. ``--settings 2:0.5 4:0.5`` beyond the paper's range);
``--degraded-copies K``: every setting trained with K degraded copies of each face. The teacher
options (--weights, --t, --n, --fast, --seed) must match the ones the labels were computed
with, or the labels are computed anew.

Model selection without LFW: every run also reports the EDC pAUC on its *held-out* training
identities (celeba-subset, 10 % of the identities, never trained on; see
``fiqa_sdk.train.distill.HeldOutVerification``) next to the teacher's and embedding-norm's on
the same faces; the table ``held_out.md`` ranks the settings by it (``--no-lfw`` stops there).

``--quick`` (the CI smoke run, about a minute from a cold cache; ``--weights`` may be left out:
the shipped denoiser) runs the same steps on a tiny set: 30 training identities x 4 images
(the first identities of ``--data`` with that many, copied to ``OUT/quick-data``; 3 of them are
held out), a one-step teacher (``--fast --n 1``), settings 0.5:0.5 and 0:0.5, one epoch, class
centres from every face (``--p 1 --min-count 1``: a set this small has too few top-label faces
per identity for the defaults), then ``regressors_lfw.py --quick`` (200 lfw-pairs pairs), on
two CPU threads (``--threads 2``: a CI machine's two cores). Its numbers are meaningless; it
checks the plumbing:

    fiqa-bench run ediffiqa_ablation --quick --out /tmp/ablation-quick
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fiqa_sdk.errors import EvaluationError, InvalidArgumentError

from ..harness import experiment, run_experiment

SETTINGS = [(0.0, 0.5), (0.1, 0.5), (0.5, 0.5), (1.0, 0.5), (0.5, 0.1), (0.5, 0.9)]
GRID = [(eps, theta) for theta in (0.1, 0.5, 0.9) for eps in (0.0, 0.1, 0.5, 1.0)]

#: ``--quick``: training identities and images per identity, and the option defaults
QUICK_IDENTITIES, QUICK_FACES = 30, 4
QUICK = {"settings": [(0.5, 0.5), (0.0, 0.5)], "epochs": 1, "n": 1, "fast": True, "threads": 2,
         "protocols": ["lfw-pairs"]}


def quick_parameters(args) -> dict:
    """The ``--quick`` parameters; ``--grid`` keeps its grid."""
    return {k: v for k, v in QUICK.items() if not (k == "settings" and args.grid)}


def _setting(text: str) -> tuple[float, float]:
    """Parse ``EPS:THETA`` (eps >= 0, theta in [0, 1])."""
    try:
        eps, theta = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected EPS:THETA, e.g. 2:0.5, got {text!r}") from None
    if eps < 0 or not 0 <= theta <= 1:
        raise argparse.ArgumentTypeError(f"need eps >= 0 and 0 <= theta <= 1, got {text!r}")
    return eps, theta


def quick_training_folder(root: Path, dest: Path, identities: int = QUICK_IDENTITIES,
                          faces: int = QUICK_FACES) -> Path:
    """``--quick``: a training-set folder (one sub-folder per identity) under ``dest`` with
    copies of ``faces`` images each of the first ``identities`` identities of ``root`` (sorted
    by label) that have at least ``faces`` images."""
    from fiqa_sdk.train.data import subset_folder

    return subset_folder(root, dest, identities, faces)


def train(argv: list[str]) -> None:
    """Run ``fiqa ARGV`` (one ``fiqa train ediffiqa``) in this process, so that the settings
    share its loaded models (teacher, FR model, stem) instead of loading them per setting.

    Raises
    ------
    EvaluationError
        When ``fiqa`` exits with a non-zero code (its error is on stderr).
    """
    from fiqa_sdk.cli import main as fiqa

    print("fiqa " + " ".join(argv), file=sys.stderr, flush=True)
    code = fiqa(argv)
    if code:
        raise EvaluationError(f"`fiqa {' '.join(argv)}` exited with code {code}")


def held_out_table(runs: list[tuple[float, float, Path]]) -> str:
    """Markdown table of the held-out (celeba validation identities) pAUC of each run, best
    first, with the teacher's and embedding-norm's on the same faces."""
    import json

    rows, ref = [], None
    for eps, theta, run in runs:
        meta = json.loads((run / "ediffiqa_mbf.json").read_text())
        final = meta["history"][-1]
        ref = meta.get("held_out_verification") or ref
        rows.append((final["val_pauc_0.2"], final["val_pauc_0.3"], eps, theta,
                     final.get("val_spearman_q", float("nan"))))
    rows.sort()
    lines = ["| eps | theta | held-out pAUC@0.2 | @0.3 | Spearman with the teacher |",
             "|---|---|---|---|---|"]
    lines += [f"| {e:g} | {t:g} | {a:.3f} | {b:.3f} | {sp:.3f} |" for a, b, e, t, sp in rows]
    if ref:
        for name in ("teacher", "embedding-norm"):
            if name in ref:
                lines.append(f"| {name} | | {ref[name]['pauc_0.2']:.3f} | "
                             f"{ref[name]['pauc_0.3']:.3f} | |")
        lines.append("")
        lines.append(f"{ref['mated']} mated / {ref['nonmated']} non-mated pairs of the held-out "
                     f"identities, threshold {ref['threshold']:.4f} at FMR {ref['fmr']:g}, "
                     f"FNMR_0 {ref['fnmr0']:.4f}.")
    return "\n".join(lines) + "\n"


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--weights", default=None,
                    help="DifFIQA denoiser (the teacher); required, except with --quick")
    ap.add_argument("--t", type=int, default=5)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--degraded-copies", type=int, default=0, metavar="K",
                    help="train every setting with K degraded copies of each face "
                         "(fiqa train ediffiqa --degraded-copies)")
    ap.add_argument("--protocols", nargs="+", default=["lfw-pairs", "lfw-all"])
    ap.add_argument("--eval-embedders", nargs="+", default=["arcface"])
    ap.add_argument("--skip-training", action="store_true", help="evaluate existing runs only")
    ap.add_argument("--grid", action="store_true", help="all 12 (eps, theta) pairs")
    ap.add_argument("--settings", nargs="+", type=_setting, metavar="EPS:THETA",
                    help="these (eps, theta) pairs instead of the default six / the grid")
    ap.add_argument("--no-lfw", action="store_true",
                    help="stop after the held-out (celeba) table; no LFW evaluation")
    ap.add_argument("--data", type=Path, default=None,
                    help="training set (default: fiqa train's, $FIQA_CELEBA)")
    ap.add_argument("--lfw", default=None, help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--lfw-cache", default=None,
                    help="LFW feature cache of the evaluation (default $FIQA_CACHE/lfw)")


@experiment("ediffiqa_ablation", "eDifFIQA ablation over eps and theta (the paper's Table"
            " 10)",
            arguments=arguments, quick=quick_parameters, default_out="results/ablation")
def run(args, ctx) -> dict:
    """Trains the settings' regressors into ``OUT/eps*-theta*``, writes ``OUT/held_out.md``
    and evaluates them on LFW (the ``regressors_lfw`` experiment, into ``OUT/lfw``).

    Raises
    ------
    InvalidArgumentError
        Without ``--weights`` (except with ``--quick``) or with both ``--settings`` and
        ``--grid``.
    """
    if not args.quick and args.weights is None:
        raise InvalidArgumentError("--weights is required (or use --quick)")
    out = ctx.out_dir
    teacher = [] if args.weights is None else ["--weights", args.weights]
    teacher += ["--t", str(args.t), "--seed", str(args.seed), "--threads", str(args.threads)]
    if args.n is not None:
        teacher += ["--n", str(args.n)]
    if args.fast:
        teacher.append("--fast")
    if args.degraded_copies:
        teacher += ["--degraded-copies", str(args.degraded_copies)]
    data = args.data
    if args.quick:
        from fiqa_sdk.train.data import celeba_root

        data = quick_training_folder(celeba_root(data), out / "quick-data")
        teacher += ["--p", "1", "--min-count", "1"]  # training options, not the teacher's
    if data is not None:
        teacher += ["--data", str(data)]
    regressors, runs = [], []
    if args.settings and args.grid:
        raise InvalidArgumentError("--settings and --grid are alternatives")
    for eps, theta in (args.settings or (GRID if args.grid else SETTINGS)):
        run = out / f"eps{eps:g}-theta{theta:g}"
        runs.append((eps, theta, run))
        if not args.skip_training:
            train(["train", "ediffiqa", "--out", str(run), "--eps", str(eps), "--theta",
                   str(theta), "--epochs", str(args.epochs), *teacher])
        regressors += ["--regressor", f"eps={eps:g} theta={theta:g}={run / 'ediffiqa_mbf.safetensors'}"]
    table = held_out_table(runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "held_out.md").write_text(table)
    print(table, flush=True)
    result = {"settings": [{"eps": e, "theta": t, "run": str(r)} for e, t, r in runs],
              "held_out_table": table}
    if args.no_lfw:
        return result
    # --quick: the quick baselines of regressors_lfw (flip-consistency is slow to score)
    extra = (["--quick"] if args.quick
             else ["--baselines", "embedding-norm", "flip-consistency"])
    if args.lfw:
        extra += ["--lfw", args.lfw]
    if args.lfw_cache:
        extra += ["--cache", args.lfw_cache]
    lfw = run_experiment("regressors_lfw", [
        *regressors, "--protocols",
        *args.protocols, "--eval-embedders", *args.eval_embedders, "--threads",
        str(args.threads), "--out", str(out / "lfw"), *extra])
    result["lfw"] = lfw["results"]
    return result

