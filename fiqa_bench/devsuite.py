"""The hard-data development benchmark: ``fiqa-bench quality --suite dev``.

Every quality-scorer choice of the project is made on this suite, not on LFW (where the EDC
rests on 171 failing mated pairs from a handful of images). It runs the scorers on a fixed
subset of LFW (:mod:`fiqa_bench.devsuite_images`: 610 identities with >= 4 images, at most
15 each, 4,578 images) in three versions, the **pools**:

- ``clean``: the LFW deep-funneled images themselves (the high-quality gallery);
- ``xq``: their ``lfw-xq`` v1 versions (:mod:`fiqa_bench.xq`: half of the images degraded
  by a seeded capture chain: exposure, blur, resolution, noise, JPEG);
- ``occ``: their ``lfw-occ`` v1 probe copies (:mod:`fiqa_bench.occ`: seeded sunglasses /
  mask / hand / cap occluders and a yaw-like pose warp, some with resolution loss and JPEG).

``xq`` holds all 4,578 images; ``clean`` and ``occ`` the first
:data:`~fiqa_bench.devsuite_images.CROSS_PER_ID` (6) of each identity (3,174 images), to keep
the suite affordable on a CPU. ``--quick`` (and the teacher check's subset) use the same images
in every pool.

and evaluates them on these **sets** (:data:`DEV_SETS`):

=====================  ============================================================  =======
set                    comparisons                                                   hard
=====================  ============================================================  =======
``xq-arcface``         all-vs-all within ``xq``, ArcFace (w600k_mbf)                 yes
``xq-dlib``            all-vs-all within ``xq``, dlib ResNet-34                      yes
``occ-cross-arcface``  ``clean`` gallery vs ``occ`` probe, ArcFace                   yes
``occ-cross-dlib``     ``clean`` gallery vs ``occ`` probe, dlib (only when named)    yes
``clean-arcface``      all-vs-all within ``clean``, ArcFace (easy-data reference)    no
=====================  ============================================================  =======

Cross sets: the mated pairs are (gallery image i, probe image j) of one identity with i and j
different source photographs; the non-mated pairs are *all* gallery x probe pairs of different
identities, scored blockwise (as :func:`~fiqa_sdk.eval.evaluate.threshold_all_nonmated`). All-vs-all
sets use every mated and every non-mated pair. One decision threshold per set at FMR = 1e-3;
pair quality = min of the two images' qualities; FNMR-EDC and normalized pAUC as
:mod:`fiqa_sdk.eval.evaluate`. "Failing" mated pairs = mated comparisons below that threshold;
each set's count is reported.

**Bootstrap.** All sets share one identity universe (the subset's identities), so the redraws
are *joint*: each redraw draws the identities once with replacement and weights every set's
mated pairs by their identity's count (the exact weighted EDC of
:mod:`fiqa_sdk.eval.bootstrap`). The paired standard error of a scorer's difference from the
reference (``embedding-norm``) is the standard deviation of that difference over the redraws,
per set and for the **pooled** figure: the mean over the hard sets, whose redraw-wise
difference is the mean of the sets' differences in the same redraw (so the correlation of the
sets, which share identities, is accounted for).

Outputs in ``OUT``: ``quality.json`` (everything), ``quality.csv`` (one row per set and
scorer, and the pooled rows), ``quality.md`` (the tables).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fiqa_sdk.errors import ConsistencyError, EvaluationError
from fiqa_sdk.quality import scorers_of_kind
from fiqa_sdk.eval import FMRThreshold
from fiqa_sdk.eval.evaluate import json_number, allowed_false_matches, edc_at_threshold, pair_scores, threshold_all_nonmated
from fiqa_sdk.eval.bootstrap import PairQualityCurve
from fiqa_sdk.eval.protocols import same_label_pairs

#: Scorers of the dev suite by default: every shipped fusion, regressor and baseline, read from
#: the registry's cards, so that a new one is in the table without a change here (the DifFIQA
#: teacher, about a CPU-second per face, has its own check: :mod:`.teacher_check`).
DEV_SCORERS = scorers_of_kind("fusion", "regressor", "baseline")
#: The baseline every scorer is compared with (paired differences).
REFERENCE = "embedding-norm"
#: Regressors are scored with the onnxruntime backend on one thread (same scores to ~1e-6).
FAST_PARAMS = {"backend": "onnxruntime", "threads": 1}


@dataclass(frozen=True)
class DevSet:
    name: str
    kind: str  # "all" (all-vs-all within pool) or "cross" (gallery pool vs probe pool)
    pool: str  # the pool (all) or the probe pool (cross)
    embedder: str
    hard: bool
    gallery: str | None = None  # cross: the gallery pool


DEV_SETS = (
    DevSet("xq-arcface", "all", "xq", "arcface", True),
    DevSet("xq-dlib", "all", "xq", "dlib", True),
    DevSet("occ-cross-arcface", "cross", "occ", "arcface", True, gallery="clean"),
    DevSet("occ-cross-dlib", "cross", "occ", "dlib", True, gallery="clean"),
    DevSet("clean-arcface", "all", "clean", "arcface", False),
)
SET_NAMES = tuple(s.name for s in DEV_SETS)
#: The sets run by default: ``occ-cross-dlib`` needs dlib embeddings of two more pools (about
#: 25 CPU-minutes here) and is run only when named in ``sets``.
DEFAULT_SETS = ("xq-arcface", "xq-dlib", "occ-cross-arcface", "clean-arcface")


def pool_paths(pool: str, lfw_root: Path, rels: Sequence[str], cache_dir: Path) -> list[Path]:
    """Image files of a pool (building ``lfw-xq`` / ``lfw-occ`` images in the cache first)."""
    if pool == "clean":
        root = Path(lfw_root)
    elif pool == "xq":
        from .xq import build_lfw_xq

        root = build_lfw_xq(lfw_root, cache_dir, relpaths=rels)
    elif pool == "occ":
        from .occ import build_lfw_occ

        root = build_lfw_occ(lfw_root, cache_dir, rels)
    else:
        raise EvaluationError(f"unknown pool {pool!r}")
    return [root / "images" / r for r in rels]


def threshold_cross_nonmated(gallery: np.ndarray, probe: np.ndarray, g_labels: np.ndarray,
                             p_labels: np.ndarray, fmr: float = 1e-3, block_size: int = 1024,
                             ) -> tuple[FMRThreshold, int]:
    """Threshold at ``fmr`` over *all* gallery x probe cosine scores of different identities,
    blockwise (top-k selection, exact as :func:`~fiqa_sdk.eval.evaluate.threshold_all_nonmated`)."""
    g = np.ascontiguousarray(gallery, dtype=np.float32)
    p = np.ascontiguousarray(probe, dtype=np.float32)
    if not (np.isfinite(g).all() and np.isfinite(p).all()):
        raise EvaluationError("embeddings contain NaN or infinite values")
    gl, pl = np.asarray(g_labels), np.asarray(p_labels)
    ids = np.union1d(gl, pl)
    ng = np.array([np.count_nonzero(gl == i) for i in ids], dtype=np.int64)
    npb = np.array([np.count_nonzero(pl == i) for i in ids], dtype=np.int64)
    k_total = int(len(gl) * len(pl) - int((ng * npb).sum()))
    if k_total <= 0:
        raise EvaluationError("no non-mated gallery x probe pairs")
    need = allowed_false_matches(float(fmr), k_total) + 1
    top = np.zeros(0, dtype=np.float32)
    floor = -np.inf
    for r0 in range(0, len(g), block_size):
        sims = g[r0:r0 + block_size] @ p.T
        valid = gl[r0:r0 + block_size, None] != pl[None, :]
        if np.isfinite(floor):
            valid &= sims > floor
        vals = sims[valid]
        if vals.size:
            top = np.concatenate([top, vals])
            if top.size >= need:
                top = np.partition(top, top.size - need)[top.size - need:]
                floor = float(top.min())
    kth = np.float64(top.min())
    tau = float(np.nextafter(kth, np.inf))
    n_false = int(np.count_nonzero(top.astype(np.float64) >= tau))
    return FMRThreshold(tau, n_false / k_total), k_total


def cross_mated_pairs(labels: np.ndarray) -> np.ndarray:
    """``(M, 2)`` (gallery i, probe j) of one identity, ``i != j`` (pools share the image order)."""
    pairs = same_label_pairs(np.asarray(labels))
    return np.concatenate([pairs, pairs[:, ::-1]]).astype(np.int64)


def _scorer_objects(names, weights, params):
    from fiqa_sdk.quality import SCORERS
    from fiqa_sdk.eval.evaluate import make_scorers

    p = {k: dict(v) for k, v in (params or {}).items()}
    for n in names:  # the regressors (their cards list precisions) run on onnxruntime
        if n in SCORERS and "fp32" in SCORERS.card(n).get("precisions", ()):
            for k, v in FAST_PARAMS.items():
                p.setdefault(n, {}).setdefault(k, v)
    return make_scorers(list(names), "arcface", weights, p), p


@dataclass
class SetData:
    spec: DevSet
    mated_scores: np.ndarray
    pair_ids: np.ndarray  # identity of each mated pair
    qualities: dict[str, np.ndarray]  # scorer -> (M, 2)
    threshold: FMRThreshold
    n_nonmated: int
    images: int

    @property
    def n_failing(self) -> int:
        return int(np.count_nonzero(self.mated_scores < self.threshold.threshold))


def prepare_sets(lfw_root, sets: Sequence[str], scorers: Sequence, quick: bool = False,
                 subset: str | None = None,
                 cache_dir: str | Path | None = None, fmr: float = 1e-3,
                 log: Callable[[str], None] | None = None, progress: bool = False,
                 extra_scores: Callable[[str, Any], dict[str, np.ndarray]] | None = None,
                 ) -> tuple[list[SetData], dict[str, Any]]:
    """Detect, embed and score the pools the ``sets`` need; return each set's mated pairs,
    scores, qualities and threshold. ``extra_scores(pool, faces)`` may add per-image quality
    arrays (e.g. the DifFIQA terms of the teacher check)."""
    import fiqa_sdk as fq

    from .devsuite_images import CROSS_PER_ID, dev_relpaths, first_per_identity, lfw_images_root
    from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all, score_all

    say = log or (lambda m: None)
    unknown = [s for s in sets if s not in SET_NAMES]
    if unknown:
        raise EvaluationError(f"unknown dev set(s) {unknown}; choose from {list(SET_NAMES)}")
    lfw_root = lfw_images_root(lfw_root).parent
    cache_dir = (Path(cache_dir) if cache_dir is not None else default_cache_dir()).resolve()
    feat_cache = cache_dir / "lfw"
    rels_all = dev_relpaths(lfw_root, quick, subset)
    ids = np.unique([r.split("/")[0] for r in rels_all])
    index = {n: i for i, n in enumerate(ids)}
    sub = subset or ("quick" if quick else "dev")
    pool_rels = {"xq": rels_all, "clean": rels_all, "occ": rels_all}
    if sub == "dev":  # the cross-quality pools: the first CROSS_PER_ID images of each identity
        cross = first_per_identity(rels_all, CROSS_PER_ID)
        pool_rels.update(clean=cross, occ=cross)
    pool_labels = {k: np.array([index[r.split("/")[0]] for r in v], dtype=np.int64)
                   for k, v in pool_rels.items()}
    specs = [s for s in DEV_SETS if s.name in sets]
    pools = sorted({s.pool for s in specs} | {s.gallery for s in specs if s.gallery})
    det = fq.create_detector("retinaface")
    faces, quals, timings = {}, {}, {}
    for pool in pools:
        t0 = time.perf_counter()
        paths = pool_paths(pool, lfw_root, pool_rels[pool], cache_dir)
        say(f"pool {pool}: {len(paths)} images; detecting")
        faces[pool] = detect_all(paths, det, policy="central", cache_dir=feat_cache,
                                 progress=progress)
        say(f"pool {pool}: quality scores ({', '.join(s.name for s in scorers)})")
        qs = score_all(faces[pool], scorers, fallback=True, cache_dir=feat_cache,
                       progress=progress)
        quals[pool] = {sc.name: q for sc, q in zip(scorers, qs)}
        if extra_scores is not None:
            quals[pool].update(extra_scores(pool, faces[pool]))
        for name, q in quals[pool].items():
            if not np.isfinite(q).all():
                raise EvaluationError(f"scorer {name!r} gave NaN/inf on pool {pool}")
        timings[f"pool_{pool}"] = round(time.perf_counter() - t0, 1)
    embedders: dict[str, Any] = {}
    embs: dict[tuple[str, str], np.ndarray] = {}

    def emb(pool: str, model: str) -> np.ndarray:
        if (pool, model) not in embs:
            if model not in embedders:
                embedders[model] = fq.create_embedder(model)
            say(f"pool {pool}: {model} embeddings")
            e = embed_all(faces[pool], embedders[model], fallback=True, cache_dir=feat_cache,
                          progress=progress)
            if not np.isfinite(e).all():
                raise EvaluationError(f"{model} could not embed some images of pool {pool}")
            embs[pool, model] = e
        return embs[pool, model]

    out = []
    for spec in specs:
        t0 = time.perf_counter()
        if spec.kind == "all":
            e = emb(spec.pool, spec.embedder)
            labels = pool_labels[spec.pool]
            thr, k = threshold_all_nonmated(e, labels, fmr)
            mated = same_label_pairs(labels)
            scores = pair_scores(e, mated)
            q = {n: v[mated] for n, v in quals[spec.pool].items()}
            images = len(labels)
        else:
            if pool_rels[spec.gallery] != pool_rels[spec.pool]:  # pragma: no cover - a bug guard
                raise ConsistencyError("gallery and probe pools must list the same images")
            labels = pool_labels[spec.pool]
            g, p = emb(spec.gallery, spec.embedder), emb(spec.pool, spec.embedder)
            thr, k = threshold_cross_nonmated(g, p, labels, labels, fmr)
            mated = cross_mated_pairs(labels)
            scores = np.einsum("ij,ij->i", g[mated[:, 0]], p[mated[:, 1]]).astype(np.float64)
            q = {n: np.stack([quals[spec.gallery][n][mated[:, 0]], v[mated[:, 1]]], axis=1)
                 for n, v in quals[spec.pool].items()}
            images = 2 * len(labels)
        sd = SetData(spec, scores, labels[mated[:, 0]], q, thr, k, images)
        say(f"{spec.name}: {len(scores)} mated pairs, {sd.n_failing} failing at threshold "
            f"{thr.threshold:.4f} (FMR {thr.fmr_achieved:.2e} over {k} non-mated pairs)")
        timings[f"set_{spec.name}"] = round(time.perf_counter() - t0, 1)
        out.append(sd)
    info = {"subset": sub, "images_per_pool": {k: len(pool_rels[k]) for k in pools},
            "identities": int(len(ids)), "pools": pools,
            "seconds": timings}
    return out, info


def joint_bootstrap(data: Sequence[SetData], names: Sequence[str], limits: Sequence[float],
                    boot: int, seed: int = 0) -> np.ndarray:
    """``(B, sets, scorers, limits)`` normalized pAUCs over joint identity redraws (all sets
    share the identity labels); NaN where a redraw of a set has no failing pair."""
    curves = []
    for sd in data:
        err = sd.mated_scores < sd.threshold.threshold
        pq = {n: np.min(sd.qualities[n], axis=1) for n in names}
        curves.append((err, [PairQualityCurve(pq[n], err) for n in names]))
    n_ids = int(max(int(sd.pair_ids.max()) for sd in data)) + 1
    rng = np.random.default_rng(int(seed))
    draws = []
    for _ in range(int(boot)):
        counts = np.bincount(rng.integers(0, n_ids, n_ids), minlength=n_ids).astype(float)
        row = []
        for sd, (err, cs) in zip(data, curves):
            w = counts[sd.pair_ids]
            w_err = w[err]
            if w_err.any():
                row.append([c.paucs(w, w_err, limits) for c in cs])
            else:  # no failing pair in this redraw of this set: undefined
                row.append([[np.nan] * len(limits) for _ in cs])
        draws.append(row)
    return np.asarray(draws, dtype=float).reshape(len(draws), len(data), len(names), len(limits))


def summarize(data: Sequence[SetData], names: Sequence[str], limits: Sequence[float],
              boot: int, seed: int = 0, reference: str = REFERENCE, fmr: float = 1e-3,
              ) -> dict[str, Any]:
    """Per-set and pooled normalized pAUCs, bootstrap SEs and paired differences (JSON-ready)."""
    limits = tuple(float(x) for x in limits)
    point = np.zeros((len(data), len(names), len(limits)))
    sets = []
    for i, sd in enumerate(data):
        rows = []
        for j, n in enumerate(names):
            res = edc_at_threshold(sd.mated_scores, sd.qualities[n], sd.threshold, fmr,
                                   sd.n_nonmated)
            point[i, j] = [res.pauc(lim, normalized=True) for lim in limits]
            rows.append({"scorer": n, **{f"pauc_norm_{lim:g}": json_number(point[i, j, k])
                                         for k, lim in enumerate(limits)}})
        sets.append({"set": sd.spec.name, "hard": sd.spec.hard, "kind": sd.spec.kind,
                     "pool": sd.spec.pool, "gallery": sd.spec.gallery,
                     "eval_embedder": sd.spec.embedder, "images": sd.images,
                     "n_mated": int(len(sd.mated_scores)), "n_failing": sd.n_failing,
                     "fnmr0": float(np.mean(sd.mated_scores < sd.threshold.threshold)),
                     "failing_note": "mated pairs below the FMR 1e-3 threshold",
                     "threshold": sd.threshold.threshold,
                     "fmr_achieved": sd.threshold.fmr_achieved, "n_nonmated": int(sd.n_nonmated),
                     "rows": rows})
    hard = np.array([sd.spec.hard for sd in data])
    ref = names.index(reference) if reference in names else None
    draws = joint_bootstrap(data, names, limits, boot, seed) if boot else None
    boot_meta: dict[str, Any] = {"redraws": int(boot), "seed": int(seed), "unit": "identity",
                                 "joint": True}
    if draws is not None:
        defined = np.isfinite(draws).all(axis=(2, 3))  # (B, sets)
        boot_meta["undefined_redraws"] = {sd.spec.name: int((~defined[:, i]).sum())
                                          for i, sd in enumerate(data)}
        if defined.sum(axis=0).min() < 2:
            boot_meta["note"] = ("sets with fewer than 2 defined redraws (no failing pair) have "
                                 "no SE")

    def stats(vals: np.ndarray, refvals: np.ndarray | None, pt: float, pt_ref: float | None):
        d: dict[str, Any] = {}
        ok = np.isfinite(vals) & (np.isfinite(refvals) if refvals is not None else True)
        if ok.sum() < 2 or not np.isfinite(pt):
            return d
        vals = vals[ok]
        d["se"] = float(np.std(vals, ddof=1))
        if refvals is not None and pt_ref is not None:
            diff = vals - refvals[ok]
            d["diff_vs_ref"] = float(pt - pt_ref)
            d["diff_se"] = float(np.std(diff, ddof=1))
            d["z"] = float((pt - pt_ref) / d["diff_se"]) if d["diff_se"] > 0 else None
            d["share_lower_than_ref"] = float(np.mean(diff < 0))
        return d

    for i, s in enumerate(sets):
        for j, row in enumerate(s["rows"]):
            for k, lim in enumerate(limits):
                if draws is None:
                    continue
                st = stats(draws[:, i, j, k], draws[:, i, ref, k] if ref is not None else None,
                           point[i, j, k], point[i, ref, k] if ref is not None else None)
                row.update({f"{key}_{lim:g}": v for key, v in st.items()})
    pooled_rows = []
    if hard.any():
        pp = point[hard].mean(axis=0)
        pd_ = None
        if draws is not None:
            keep = np.isfinite(draws[:, hard]).all(axis=(1, 2, 3))
            pd_ = draws[keep][:, hard].mean(axis=1)
            boot_meta["pooled_redraws"] = int(keep.sum())
        for j, n in enumerate(names):
            row = {"scorer": n, **{f"pauc_norm_{lim:g}": json_number(pp[j, k])
                                   for k, lim in enumerate(limits)}}
            for k, lim in enumerate(limits):
                if pd_ is None:
                    continue
                st = stats(pd_[:, j, k], pd_[:, ref, k] if ref is not None else None, pp[j, k],
                           pp[ref, k] if ref is not None else None)
                row.update({f"{key}_{lim:g}": v for key, v in st.items()})
            pooled_rows.append(row)
    verdict = _verdict(sets, pooled_rows, names, limits, reference) if draws is not None \
        and ref is not None and pooled_rows else None
    return {"reference": reference, "limits": list(limits), "sets": sets,
            "pooled": {"sets": [s["set"] for s in sets if s["hard"]], "rows": pooled_rows},
            "bootstrap": boot_meta, "verdict": verdict}


def _verdict(sets, pooled_rows, names, limits, reference) -> dict[str, Any]:
    """The best scorer on the pooled dev benchmark at the largest limit, and the acceptance
    lines of issue 23 (>= 2 paired SE below the reference pooled; no hard set > 1 SE worse)."""
    lim = max(limits)
    key = f"pauc_norm_{lim:g}"
    best = min(pooled_rows, key=lambda r: np.inf if r[key] is None else r[key])
    out: dict[str, Any] = {"limit": lim, "best": best["scorer"], "scorers": {}}
    for r in pooled_rows:
        if r["scorer"] == reference:
            continue
        z = r.get(f"z_{lim:g}")
        worst = []
        for s in sets:
            if not s["hard"]:
                continue
            sr = next(x for x in s["rows"] if x["scorer"] == r["scorer"])
            worst.append((s["set"], sr.get(f"z_{lim:g}")))
        out["scorers"][r["scorer"]] = {
            "pooled_z": z,
            "pooled_lower_by_2se": bool(z is not None and z <= -2.0),
            "per_set_z": dict(worst),
            "no_set_worse_by_1se": all(zz is None or zz <= 1.0 for _, zz in worst),
            "no_set_worse": all(zz is None or zz <= 0.0 for _, zz in worst),
        }
    return out


def markdown(summary: dict[str, Any]) -> str:
    """The per-set and pooled tables (pAUC, bootstrap SE, difference from the reference +- SE)."""
    limits = summary["limits"]
    ref = summary["reference"]

    def f(x, d=3):
        return "n/a" if x is None else f"{x:.{d}f}"

    def cell(row, lim):
        s = f(row.get(f"pauc_norm_{lim:g}"))
        if f"se_{lim:g}" in row:
            s += f" ± {row[f'se_{lim:g}']:.3f}"
        return s

    def dcell(row, lim):
        if row["scorer"] == ref or f"diff_se_{lim:g}" not in row:
            return ""
        d, se = row[f"diff_vs_ref_{lim:g}"], row[f"diff_se_{lim:g}"]
        return f"{d:+.3f} ± {se:.3f} ({d / se:+.1f} SE)" if se > 0 else f"{d:+.3f}"

    head = ["scorer"] + [f"pAUC@{x:g}" for x in limits] + [f"Δ vs {ref} @{x:g}" for x in limits]
    lines = []
    groups = [("pooled (mean over the hard sets: " + ", ".join(summary["pooled"]["sets"]) + ")",
               summary["pooled"]["rows"], None)] + [(s["set"], s["rows"], s) for s in
                                                     summary["sets"]]
    for title, rows, s in groups:
        if not rows:
            continue
        lines.append(f"**{title}**" + ("" if s is None else (
            f" ({'hard' if s['hard'] else 'easy reference, not pooled'}; {s['images']:,} images, "
            f"{s['n_mated']:,} mated pairs, **{s['n_failing']:,} failing** (FNMR_0 "
            f"{s['fnmr0']:.4f}), {s['n_nonmated']:,} non-mated, threshold {s['threshold']:.4f})")))
        lines.append("")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        key = f"pauc_norm_{max(limits):g}"
        for r in sorted(rows, key=lambda r: (r[key] is None, r[key] or 0.0)):
            lines.append("| " + " | ".join([r["scorer"]] + [cell(r, x) for x in limits]
                                           + [dcell(r, x) for x in limits]) + " |")
        lines.append("")
    rn = summary.get("restored_minus_noisy")
    if rn:
        lines.append("**restored-only minus noisy-only** (paired, same redraws; negative = the "
                     "denoiser's restored terms rank better):")
        lines.append("")
        lines.append("| set | " + " | ".join(f"@{x:g}" for x in limits) + " |")
        lines.append("|---|" + "---|" * len(limits))
        for name, d in rn.items():
            lines.append(f"| {name} | " + " | ".join(
                "n/a" if d.get(f"diff_vs_ref_{x:g}") is None or d.get(f"diff_se_{x:g}") is None
                else f"{d[f'diff_vs_ref_{x:g}']:+.3f} ± {d[f'diff_se_{x:g}']:.3f}"
                for x in limits) + " |")
        lines.append("")
    v = summary.get("verdict")
    if v:
        b = v["best"]
        vb = v["scorers"].get(b)
        lines.append(f"Best on the pooled dev benchmark at pAUC@{v['limit']:g}: **{b}**" + (
            "" if vb is None else
            f" (pooled z = {vb['pooled_z']:+.1f} vs {ref}; >= 2 SE lower: "
            f"{'yes' if vb['pooled_lower_by_2se'] else 'no'}; no hard set > 1 SE worse: "
            f"{'yes' if vb['no_set_worse_by_1se'] else 'no'})"))
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = out / "quality.json"
    js.write_text(json.dumps(result, indent=2) + "\n")
    summary = result["summary"]
    cols = ["set", "scorer"] + sorted({k for s in summary["sets"] for r in s["rows"] for k in r}
                                      - {"scorer"})
    cs = out / "quality.csv"
    with open(cs, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for s in summary["sets"]:
            for r in s["rows"]:
                w.writerow({"set": s["set"], **r})
        for r in summary["pooled"]["rows"]:
            w.writerow({"set": "pooled", **{k: v for k, v in r.items() if k in cols}})
    md = out / "quality.md"
    md.write_text(f"# Dev benchmark\n\n`{result['command']}`\n\n" + markdown(summary))
    return [js, cs, md]


def _from_embedding(free, cache_dir, progress):
    """``extra_scores`` hook: ``ediffiqa-free`` read from the cached ArcFace embedding and its
    norm (``embedding-norm``), as :class:`~fiqa_sdk.gate.QualityGate` computes it: the head on
    the raw embedding ``e / ||e|| * ||e||``, no second backbone pass."""
    import fiqa_sdk as fq

    from fiqa_sdk.eval.features import default_cache_dir, embed_all, score_all

    emb = fq.create_embedder("arcface")
    norm = fq.create_scorer("embedding-norm", embedder=emb)
    if not free.reads_embedding_of(emb):
        raise EvaluationError(f"{free.name} cannot read the ArcFace embedding (fine-tuned backbone)")
    feat_cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()).resolve() / "lfw"

    def extra(pool, faces):
        e = embed_all(faces, emb, fallback=True, cache_dir=feat_cache, progress=progress)
        n = score_all(faces, [norm], fallback=True, cache_dir=feat_cache, progress=progress)[0]
        return {free.name: np.asarray(free.score_embeddings(e * n[:, None]), np.float64)}

    return extra


def run_dev_suite(lfw_root=None, scorers: Sequence[str] = DEV_SCORERS,
                  sets: Sequence[str] | None = None, quick: bool = False, boot: int = 1000,
                  seed: int = 0, cache_dir=None, weights: dict | None = None,
                  scorer_params: dict | None = None, limits=(0.2, 0.3), fmr: float = 1e-3,
                  log=None, progress: bool = False,
                  free_from_embedding: bool = True) -> dict[str, Any]:
    """Run the dev suite (see the module doc); returns the JSON-ready result.

    ``free_from_embedding``: score ``ediffiqa-free`` from the cached ArcFace embeddings (the
    head on the raw embedding, as the gate does) instead of running its backbone again."""
    t0 = time.perf_counter()
    sets = list(sets or DEFAULT_SETS)
    objs, params = _scorer_objects(scorers, weights, scorer_params)
    names = [o.name for o in objs]
    extra = None
    free = [o for o in objs if o.name == "ediffiqa-free"]
    if free_from_embedding and free and free[0].reads_embedding_of(
            __import__("fiqa_sdk").create_embedder("arcface")):
        objs = [o for o in objs if o is not free[0]]
        extra = _from_embedding(free[0], cache_dir, progress)
        params.setdefault("ediffiqa-free", {})["scored_from"] = "cached ArcFace embedding (gate path)"
    data, info = prepare_sets(lfw_root, sets, objs, quick=quick, cache_dir=cache_dir, fmr=fmr,
                              log=log, progress=progress, extra_scores=extra)
    summary = summarize(data, names, limits, boot, seed, fmr=fmr)
    info["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    return {"suite": "dev", "quick": bool(quick), "fmr_target": fmr, "pair_quality": "min",
            "scorer_params": params, "weights": dict(weights or {}), **info,
            "summary": summary}
