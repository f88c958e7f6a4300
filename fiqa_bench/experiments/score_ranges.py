"""Typical score values of the registered quality scorers (the numbers in docs/faq.md).

Scores the sample face that ships with scikit-image (``astronaut``) and a seeded sample of LFW
images (the first image of ``--people`` randomly chosen identities) and a copy of the astronaut
blurred with a Gaussian of sigma 8 pixels (a clearly poor image), each aligned from the
RetinaFace detection with the ``central`` face policy, with every scorer of ``--scorers``
(default: all registered ones; ``diffiqa`` with its defaults, t = 5, n = 10), and prints
min / median / max per scorer. Scores are in each scorer's own units: only their order means
something, and only within one scorer.

    fiqa-bench run score_ranges --people 20 --seed 0
    fiqa-bench run score_ranges --quick   # smoke run (CI): 4 identities, diffiqa n = 1
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.protocols import default_lfw_root

from ..harness import experiment

ARCFACE_SCORERS = ("embedding-norm", "flip-consistency", "diffiqa", "diffiqa-r+norm",
                   "ediffiqa+norm")  # share one embedder

#: ``--quick`` defaults (options given explicitly still win) and diffiqa's repeats
QUICK = {"people": 4}
QUICK_DIFFIQA_N = 1


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None,
                    help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scorers", nargs="+", default=None,
                    help="scorers (default: every registered one, fq.list_scorers())")


@experiment("score_ranges", "typical score values of the registered quality scorers "
            "(docs/faq.md)",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """One row per scorer: LFW min / median / max and the astronaut's two scores."""
    from skimage.data import astronaut

    root = Path(args.lfw or default_lfw_root()) / "images"
    people = sorted(p for p in root.iterdir() if p.is_dir())
    chosen = random.Random(args.seed).sample(people, args.people)
    files = [sorted(p.glob("*.jpg"))[0] for p in chosen]
    pipe = fq.FacePipeline(embedder=None, face_policy="central")
    crops, faces = [], []
    for f in files:
        (r,) = pipe.process(f)
        if r.ok:
            crops.append(r.aligned)
            faces.append(r.face)
    import cv2

    (a,) = pipe.process(astronaut(), color="rgb")
    (b,) = pipe.process(cv2.GaussianBlur(astronaut(), (0, 0), 8), color="rgb")
    arcface = fq.create_embedder("arcface")
    print(f"{len(crops)} LFW images of {args.people} identities (seed {args.seed}) + astronaut "
          "(sharp and blurred)")
    print("| scorer | LFW min | LFW median | LFW max | astronaut | astronaut, blur sigma 8 |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name in args.scorers or fq.list_scorers():
        kw = {"embedder": arcface} if name in ARCFACE_SCORERS else {}
        if args.quick and name == "diffiqa":
            kw["n"] = QUICK_DIFFIQA_N
        if "fp32" in fq.quality.SCORERS.card(name).get("precisions", ()):
            kw["precision"] = "fp32"  # the model's own scores, the same on every CPU
        scorer = fq.create_scorer(name, **kw)
        v = scorer.score(np.stack(crops), faces)
        s = scorer.score(np.stack([a.aligned, b.aligned]), [a.face, b.face])
        print(f"| {name} | {v.min():.4g} | {np.median(v):.4g} | {v.max():.4g} | {s[0]:.4g} "
              f"| {s[1]:.4g} |")
        rows.append({"scorer": name, "lfw_min": float(v.min()), "lfw_median": float(np.median(v)),
                     "lfw_max": float(v.max()), "astronaut": float(s[0]),
                     "astronaut_blur8": float(s[1])})
    return {"lfw_images": len(crops), "people": args.people, "seed": args.seed, "rows": rows}

