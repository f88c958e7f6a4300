"""QualityGate.filter over LFW: kept count, memory profile, and agreement with the EDC toolkit.

    fiqa-bench run gate_filter_lfw --discard 0.2
    fiqa-bench run gate_filter_lfw --discard 0.2 --edc-protocol lfw-pairs --face-policy central
    fiqa-bench run gate_filter_lfw --discard 0.2 --edc-protocol lfw-all --face-policy central
    fiqa-bench run gate_filter_lfw --quick [--edc-protocol lfw-pairs --face-policy central]

Streams LFW image paths (a generator, never a list of decoded images) through
``gate.filter(..., discard=f)`` and reports how many were kept against the documented count
``n_scored - floor(f * n_scored)``, and the process's resident memory as the stream advances.

``--edc-protocol`` streams the images of that protocol instead of every LFW image and checks
the acceptance criterion "the kept set's EDC improvement matches what the evaluation toolkit
reports for the same scorer": filtering images at a quality cut removes exactly the mated pairs
whose ``min(q_a, q_b)`` is below the cut, so the FNMR over the mated pairs with both images
kept, at the decision threshold fixed at FMR 1e-3 over all non-mated pairs before filtering,
must equal the EDC's FNMR at the matching pair-discard fraction. The EDC is computed from the
gate's own scores and embeddings with the toolkit (``fq.eval.edc`` for lfw-pairs; for lfw-all
the blockwise threshold over all 87.3M non-mated pairs and ``edc_at_threshold``, the code of
``fiqa-bench quality``). The script also compares the gate's per-image scores and embeddings
with the toolkit's cached features (``fiqa_sdk.eval.features``, as ``fiqa-bench quality`` uses)
and reports both EDCs' pAUC. Exit status 1 when a count or an equality fails.

``--quick`` (the CI smoke run, well under a minute from a cold cache): without
``--edc-protocol`` the first 20 LFW images; with ``--edc-protocol lfw-pairs`` the first 3 mated
+ 3 non-mated pairs of each fold (60 pairs, 96 images, all among the images of the other
``--quick`` benchmarks, so their cached features are reused), with ``lfw-all`` all-vs-all
comparisons over those same images. On so few ArcFace comparisons FNMR_0 at FMR 1e-3 is
usually 0 (normalized pAUC undefined); it checks the plumbing.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.evaluate import json_number
from fiqa_sdk import policy
from fiqa_sdk.errors import EvaluationError, InvalidArgumentError
from fiqa_sdk.eval.protocols import default_lfw_root

from ..harness import experiment


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


#: ``--quick``: the first this many LFW images; with ``--edc-protocol``, the first this many
#: mated and non-mated pairs of each pairs.txt fold
QUICK_IMAGES, QUICK_PAIRS_PER_FOLD = 20, 3


def _protocol(name: str, root: Path, quick: bool = False):
    """``(protocol, mated pairs, non-mated pairs or None (all), labels or None)``; ``quick``:
    the first :data:`QUICK_PAIRS_PER_FOLD` mated and non-mated pairs of each fold, or
    all-vs-all over their images."""
    from fiqa_sdk.eval import protocols

    if name == "lfw-pairs" or quick:
        p = protocols.read_lfw_pairs(root)
        if quick:
            p = protocols.pairs_subset(p, QUICK_PAIRS_PER_FOLD)
        if name == "lfw-pairs":
            return p, p.mated_pairs, p.nonmated_pairs, None
        p = protocols.identity_protocol(p.paths, [Path(f).parent.name for f in p.paths],
                                        source="the --quick LFW images")
    else:
        p = protocols.lfw_all_vs_all(root)
    return p, p.mated_pairs, None, p.labels


def edc_check(gate, res, proto_name: str, root: Path, fractions, fmr: float, cache: Path,
              face_policy: str, quick: bool = False) -> dict:
    """The kept-set FNMR == EDC FNMR check, and the comparison with the toolkit's features."""
    from fiqa_sdk.eval import evaluate as bench
    from fiqa_sdk.eval.features import detect_all, embed_all, score_all

    proto, mated_pairs, nonmated_pairs, labels = _protocol(proto_name, root, quick)
    q = np.array([np.nan if r.score is None else r.score for r in res.reports])
    if not np.isfinite(q).all():
        raise EvaluationError(f"{int((~np.isfinite(q)).sum())} image(s) without a scored face: the "
                         "pair EDC needs every image (use --face-policy central on LFW)")
    emb = np.stack([r.embedding for r in res.reports]).astype(np.float32)
    mated = bench.pair_scores(emb, mated_pairs)
    qm = np.stack([q[mated_pairs[:, 0]], q[mated_pairs[:, 1]]], 1)
    if nonmated_pairs is not None:
        edc = fq.eval.edc(mated, bench.pair_scores(emb, nonmated_pairs), qm, fmr=fmr)
        how = "fq.eval.edc"
    else:
        thr, k_total = bench.threshold_all_nonmated(emb, labels, fmr)
        edc = bench.edc_at_threshold(mated, qm, thr, fmr, k_total)
        how = "threshold_all_nonmated + edc_at_threshold (all non-mated pairs, blockwise)"
    points = set(edc.discard_fractions.tolist())
    rows, ok = [], True
    for f in fractions:
        keep, cut = policy.discard_lowest(q.tolist(), f)  # exactly what filter(discard=f) keeps
        keep = np.asarray(keep)
        both = keep[mated_pairs[:, 0]] & keep[mated_pairs[:, 1]]
        n_both = int(both.sum())
        d = (len(mated) - n_both) / len(mated)
        fails = int(np.count_nonzero(both & (mated < edc.threshold)))
        fnmr = fails / n_both if n_both else float("nan")
        at = float(edc.fnmr_at(d))
        equal = (d in points) and (at == fnmr or (math.isnan(at) and math.isnan(fnmr)))
        ok &= equal
        rows.append({"image_discard": f, "images_kept": int(keep.sum()), "quality_cut": cut,
                     "pair_discard": d, "mated_pairs_kept": n_both, "mated_fails_kept": fails,
                     "fnmr_kept": json_number(fnmr), "edc_fnmr_at_pair_discard": json_number(at),
                     "equal": bool(equal)})
    # the toolkit's own features (cached), as `fiqa-bench quality` computes them
    det = fq.create_detector("retinaface")
    emb_model = fq.create_embedder("arcface")
    scorer = bench.make_scorers([gate.scorer.name], emb_model)[0]
    paths = [str(p) for p in proto.paths]
    faces = detect_all(paths, det, policy=face_policy, cache_dir=cache, progress=True)
    t_emb = embed_all(faces, emb_model, fallback=True, cache_dir=cache, progress=True)
    (t_q,) = score_all(faces, [scorer], fallback=True, cache_dir=cache, progress=True)
    t_mated = bench.pair_scores(t_emb, mated_pairs)
    t_qm = np.stack([t_q[mated_pairs[:, 0]], t_q[mated_pairs[:, 1]]], 1)
    if nonmated_pairs is not None:
        t_edc = fq.eval.edc(t_mated, bench.pair_scores(t_emb, nonmated_pairs), t_qm, fmr=fmr)
    else:
        t_thr, t_k = bench.threshold_all_nonmated(t_emb, labels, fmr)
        t_edc = bench.edc_at_threshold(t_mated, t_qm, t_thr, fmr, t_k)

    def summary(e):
        return {"threshold": e.threshold, "fmr_achieved": e.fmr_achieved, "fnmr0": e.fnmr0,
                "mated_fails": int(round(e.fnmr0 * e.n_mated)),
                "pauc_norm_0.2": json_number(e.pauc(0.2, normalized=True)),
                "pauc_norm_0.3": json_number(e.pauc(0.3, normalized=True)),
                "n_mated": e.n_mated, "n_nonmated": e.n_nonmated}

    return {
        "protocol": proto_name, "images": len(paths), "edc_from": how,
        "all_equal": bool(ok), "checks": rows,
        "gate_edc": summary(edc), "toolkit_edc": summary(t_edc),
        "toolkit_vs_gate": {
            "max_abs_quality_diff": float(np.max(np.abs(t_q - q))),
            "max_abs_embedding_diff": float(np.max(np.abs(t_emb - emb))),
            "max_abs_mated_score_diff": float(np.max(np.abs(t_mated - mated))),
            "max_abs_pauc_diff": _pauc_diff(summary(edc), summary(t_edc)),
            "same_discard_points": bool(np.array_equal(t_edc.discard_fractions,
                                                       edc.discard_fractions)),
            "same_fnmr_curve": bool(np.array_equal(t_edc.fnmr[:-1], edc.fnmr[:-1])),
        },
    }


def _pauc_diff(a: dict, b: dict) -> float:
    """Largest |a - b| of the two normalized pAUCs (0 where both are undefined, inf where one is)."""
    out = 0.0
    for k in ("pauc_norm_0.2", "pauc_norm_0.3"):
        if (a[k] is None) != (b[k] is None):
            return math.inf
        if a[k] is not None:
            out = max(out, abs(a[k] - b[k]))
    return out


def quick_parameters(args) -> dict:
    """``--quick``: the first :data:`QUICK_IMAGES` images (with ``--edc-protocol``: the quick
    protocol instead)."""
    return {} if args.edc_protocol else {"limit": QUICK_IMAGES}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--discard", type=float, default=0.2)
    ap.add_argument("--scorer", default=None)
    ap.add_argument("--face-policy", default="largest",
                    choices=["largest", "central", "confidence"],
                    help="the gate's face policy (default largest, the gate's default; use "
                         "central with --edc-protocol, as `fiqa-bench quality` does on LFW)")
    ap.add_argument("--limit", type=int, default=None, help="first N images only (quick runs)")
    ap.add_argument("--edc-protocol", default=None, choices=["lfw-pairs", "lfw-all"],
                    help="check the kept sets against the EDC toolkit on this protocol")
    ap.add_argument("--check-discards", type=float, nargs="+",
                    default=[0.05, 0.1, 0.2, 0.3, 0.5],
                    help="image discard fractions checked against the EDC")
    ap.add_argument("--fmr", type=float, default=1e-3)
    ap.add_argument("--cache", default=None, help="toolkit feature cache (default $FIQA_CACHE/lfw)")


@experiment("gate_filter_lfw", "QualityGate.filter over LFW: kept count, memory, "
            "agreement with the EDC toolkit",
            arguments=arguments, quick=quick_parameters)
def run(args, ctx) -> dict:
    """Kept / expected counts, the memory profile and, with ``--edc-protocol``, the EDC check;
    the exit status is 1 when the kept count or the EDC check disagrees."""
    root = Path(args.lfw) if args.lfw else default_lfw_root()
    if args.edc_protocol:
        if args.limit:
            raise InvalidArgumentError("--limit does not apply with --edc-protocol")
        proto = _protocol(args.edc_protocol, root, args.quick)[0]
        paths = [Path(p) for p in proto.paths]
    else:
        paths = sorted((root / "images").glob("*/*.jpg"))[: args.limit]
    gate = fq.QualityGate(face_policy=args.face_policy,
                          **({"scorer": args.scorer} if args.scorer else {}))
    marks = {int(len(paths) * f) for f in (0.1, 0.25, 0.5, 0.75)} | {len(paths)}
    profile = []

    def stream():
        for i, p in enumerate(paths, 1):
            yield str(p)
            if i in marks:
                profile.append((i, round(rss_mb(), 1)))

    t0 = time.perf_counter()
    res = gate.filter(stream(), discard=args.discard, progress=True)
    seconds = time.perf_counter() - t0
    n_scored = sum(r.score is not None for r in res.reports)
    expected = n_scored - math.floor(args.discard * n_scored)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"images": len(paths), "scored": n_scored, "kept": len(res.kept), "expected_kept": expected,
           "rejected": len(res.rejected), "threshold": res.threshold, "scorer": gate.scorer.name,
           "face_policy": args.face_policy,
           "seconds": round(seconds, 1), "rss_mb_by_images": profile, "peak_rss_mb": round(peak, 1)}
    ok = len(res.kept) == expected
    if args.edc_protocol:
        from fiqa_sdk.eval.features import default_cache_dir

        fr = sorted(set(args.check_discards) | {args.discard})
        keep, _ = policy.discard_lowest([r.score for r in res.reports], args.discard)
        assert [i for i, k in enumerate(keep) if k] == res.kept  # filter = discard_lowest
        cache = Path(args.cache) if args.cache else default_cache_dir() / "lfw"
        out["edc"] = edc_check(gate, res, args.edc_protocol, root, fr, args.fmr, cache,
                               args.face_policy, args.quick)
        ok &= out["edc"]["all_equal"]
    out["ok"] = bool(ok)
    print(json.dumps(out, indent=2))
    ctx.exit_code = 0 if ok else 1
    return out

