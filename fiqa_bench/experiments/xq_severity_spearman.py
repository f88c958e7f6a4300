"""How well each quality scorer ranks the degradation strength of lfw-xq images.

    fiqa-bench run xq_severity_spearman --scorers random det-score inter-eye sharpness \
        embedding-norm flip-consistency
    fiqa-bench run xq_severity_spearman --quick   # smoke run (CI): 60 images, seconds

Spearman rank correlation between each scorer's quality and minus the image's documented
degradation ``severity`` (params.csv of lfw-xq): positive = the scorer gives degraded images
lower quality. Reported over all 13,233 images (half are clean, severity 0) and over the
degraded half only. Uses the same caches as ``fiqa-bench quality --protocol lfw-xq``, so after
that run it only reads scores.

``--quick``: the first 60 LFW images (sorted paths) only: just those are degraded into the
lfw-xq folder under $FIQA_CACHE (a later full run completes the set) and scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.evaluate import BASELINE_SCORERS, make_scorers
from fiqa_sdk.eval.features import default_cache_dir, detect_all, score_all
from fiqa_sdk.eval.protocols import default_lfw_root, lfw_all_vs_all

from ..harness import experiment

#: ``--quick``: the first this many LFW images (sorted relative paths)
QUICK_IMAGES = 60


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--scorers", nargs="+", default=list(BASELINE_SCORERS))
    ap.add_argument("--quality-embedder", default="arcface")
    ap.add_argument("--detector", default="retinaface")


@experiment("xq_severity_spearman", "how well each scorer ranks the degradation strength of "
            "lfw-xq images",
            arguments=arguments)
def run(args, ctx) -> dict:
    """One row per scorer: Spearman of quality with -severity (all, degraded)."""
    from scipy.stats import spearmanr

    from ..xq import build_lfw_xq, read_xq_params

    lfw = Path(args.lfw or default_lfw_root())
    if args.quick:
        rels = sorted(f"{p.parent.name}/{p.name}" for p in (lfw / "images").glob("*/*.jpg"))
        rels = rels[:QUICK_IMAGES]
        root = build_lfw_xq(lfw, default_cache_dir(), relpaths=rels)
        paths = [str(root / "images" / r) for r in rels]
    else:
        root = build_lfw_xq(lfw, default_cache_dir())
        proto = lfw_all_vs_all(root)
        paths = [str(p) for p in proto.paths]
    params = read_xq_params(root)
    rel = ["/".join(Path(p).parts[-2:]) for p in paths]
    severity = np.array([float(params[r]["severity"]) for r in rel])
    degraded = np.array([params[r]["degraded"] == "1" for r in rel])
    cache = default_cache_dir() / "lfw"  # the bench's default cache for LFW protocols
    faces = detect_all(paths, fq.create_detector(args.detector), policy="central", cache_dir=cache)
    scorers = make_scorers(args.scorers, fq.create_embedder(args.quality_embedder))
    scores = score_all(faces, scorers, cache_dir=cache)
    rows = []
    for sc, q in zip(scorers, scores):
        ok = np.isfinite(q)
        r_all = spearmanr(q[ok], -severity[ok]).statistic
        d = ok & degraded
        r_deg = spearmanr(q[d], -severity[d]).statistic
        rows.append({"scorer": sc.name, "spearman_all": float(r_all), "spearman_degraded": float(r_deg)})
    print(f"lfw-xq {root.name}: {len(paths)} images, {int(degraded.sum())} degraded")
    print("| scorer | Spearman(quality, -severity), all images | degraded images only |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['scorer']} | {r['spearman_all']:.3f} | {r['spearman_degraded']:.3f} |")
    return {"images": len(paths), "degraded": int(degraded.sum()), "rows": rows}

