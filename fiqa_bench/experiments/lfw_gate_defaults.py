"""LFW through the public gate with nothing but its defaults: 10-fold verification accuracy on
the 6,000 pairs of pairs.txt, and which face each face policy picks.

    fiqa-bench run lfw_gate_defaults --out results/lfw_gate_defaults.json
    fiqa-bench run lfw_gate_defaults --quick     # smoke run (CI): 60 pairs, --policies largest

Every image of pairs.txt goes through ``fq.QualityGate().filter(paths, discard=0.0)`` (the
default detector, face policy, embedder and scorer; ``color`` does not apply to files). A pair
whose image has no scorable face counts as a comparison at similarity -1 (a non-match). The
accuracy is the mean over the 10 folds of pairs.txt of the accuracy at the threshold that is
best on the other 9 folds (``fq.eval.verification.kfold_accuracy``, the standard LFW protocol).

``--policies``: also run the gate with those face policies on the same images (e.g. ``largest
central``) and count the images where a policy picks another face than the default one
(bounding-box IoU < 0.5), with the accuracy of each.
"""

from __future__ import annotations

import time

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.errors import InvalidArgumentError
from fiqa_sdk.eval.protocols import default_lfw_root, pairs_subset, read_lfw_pairs
from fiqa_sdk.eval.verification import kfold_accuracy

from ..harness import experiment


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def run_policy(paths: list[str], policy: str | None, log) -> dict:
    gate = fq.QualityGate() if policy is None else fq.QualityGate(face_policy=policy)
    t0 = time.perf_counter()
    res = gate.filter(paths, discard=0.0)
    seconds = time.perf_counter() - t0
    log(f"face_policy={gate.face_policy}: {len(paths)} images in {seconds:.0f} s "
        f"({len(paths) / seconds:.1f} images/s), scorer {gate.scorer.name}, joint {gate.joint}")
    return {"policy": gate.face_policy, "scorer": gate.scorer.name, "seconds": seconds,
            "reports": res.reports}


def accuracy(proto, reports) -> tuple[float, float, int]:
    sims = np.empty(len(proto.pairs))
    missing = 0
    for k, (a, b) in enumerate(proto.pairs):
        ea, eb = reports[a].embedding, reports[b].embedding
        if ea is None or eb is None:
            sims[k] = -1.0
            missing += 1
        else:
            sims[k] = float(np.dot(ea, eb))
    res = kfold_accuracy(sims, proto.mated, proto.folds)
    return float(res.accuracy), float(res.std), missing


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None, help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--policies", nargs="*", default=[], help="other face policies to compare")
    ap.add_argument("--pairs-per-fold", type=int, default=None, metavar="K",
                    help="the first K mated and K non-mated pairs of each fold (default: all)")


#: ``--quick``: 3 mated + 3 non-mated pairs of each fold (60 pairs), one other face policy
QUICK = {"policies": ["largest"], "pairs_per_fold": 3}


@experiment("lfw_gate_defaults", "LFW through the public gate with its defaults: 10-fold "
            "accuracy",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """10-fold accuracy of the default gate and of each other face policy."""
    log = ctx.log
    proto = read_lfw_pairs(args.lfw or default_lfw_root())
    if args.pairs_per_fold is not None:
        if args.pairs_per_fold < 1:
            raise InvalidArgumentError(f"--pairs-per-fold must be >= 1, got {args.pairs_per_fold}")
        proto = pairs_subset(proto, args.pairs_per_fold)
    paths = [str(p) for p in proto.paths]
    default = run_policy(paths, None, log)
    acc, std, missing = accuracy(proto, default["reports"])
    rows = [{"face_policy": f"{default['policy']} (default)", "accuracy": acc, "std": std,
             "pairs_without_face": missing, "images_s": len(paths) / default["seconds"],
             "differs_from_default": 0}]
    multi = sum(r.n_faces > 1 for r in default["reports"])
    ambiguous = sum(r.ambiguous for r in default["reports"])
    for policy in args.policies:
        other = run_policy(paths, policy, log)
        a2, s2, m2 = accuracy(proto, other["reports"])
        differ = sum(1 for r0, r1 in zip(default["reports"], other["reports"])
                     if (r0.face is None) != (r1.face is None)
                     or (r0.face is not None and iou(r0.face.bbox, r1.face.bbox) < 0.5))
        rows.append({"face_policy": policy, "accuracy": a2, "std": s2, "pairs_without_face": m2,
                     "images_s": len(paths) / other["seconds"], "differs_from_default": differ})
    result = {"benchmark": "lfw_gate_defaults", "quick": args.quick, "fiqa_sdk": fq.__version__, "pairs": len(proto.pairs),
              "images": len(paths), "scorer": default["scorer"],
              "images_with_several_faces": multi, "ambiguous_images": ambiguous, "rows": rows}
    print(f"LFW pairs.txt, {len(proto.pairs)} pairs, {len(paths)} images, scorer {default['scorer']}; "
          f"{multi} images with several faces, {ambiguous} flagged ambiguous\n")
    print("| face policy | 10-fold accuracy | std | pairs without a face | images/s | picks another face than the default |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['face_policy']} | {100 * r['accuracy']:.2f} % | {100 * r['std']:.2f} | "
              f"{r['pairs_without_face']} | {r['images_s']:.1f} | {r['differs_from_default']} |")
    return result

