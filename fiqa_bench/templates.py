"""Template benchmark: verification between templates of ``k`` images of one identity.

A *template* fuses the embeddings of ``k`` images of one person into one vector with a method
of :func:`fiqa_sdk.policy.template_weights` (``mean``, ``best``, ``quality_weighted``,
``top_k``), through :func:`fiqa_sdk.policy.fuse_template`: the very function
:meth:`fiqa_sdk.QualityGate.template` calls, fed here with cached features instead of a live
pipeline.

Protocol (see ``docs/benchmarks.md``, "Templates"):

1. Per identity with at least ``min_templates * k`` images, a seeded random permutation of its
   images is cut into ``t = min(n // k, max_templates)`` disjoint templates of ``k`` images
   (identities in sorted order, one ``numpy.random.default_rng(seed)`` for the whole set, so
   the sampling is the same on every machine). Identities with fewer images take no part.
2. Every used image is detected (one face, ``face_policy``), aligned, embedded (ArcFace) and
   quality-scored through the cached features of :mod:`fiqa_sdk.eval.features` (re-runs and
   other benchmarks share them). An image without a detected face or that cannot be decoded
   leaves its template, as in ``QualityGate.template``; a template with no image left is
   dropped (both are counted in the output).
3. Comparisons: every pair of templates, cosine similarity of the fused embeddings. Mated =
   same identity (disjoint images by construction), non-mated = different identities.
4. For each target FAR, the threshold is :func:`fiqa_sdk.eval.threshold_at_fmr` of all
   non-mated scores (the smallest ``tau`` with ``count(nonmated >= tau) / K <= FAR``) and
   ``TAR = count(mated >= tau) / M``. A FAR is evaluated only when ``K * FAR >= 1`` (at least
   one false accept allowed); results with ``K * FAR < 10`` are flagged ``coarse``.

Besides the four methods, ``single`` compares one image per template (its first usable image,
i.e. a random one), as the no-template reference, and ``quality_weighted@c`` rows (option
``temperatures``) use the temperature ``c x std`` of the template's scores instead of the
default ``4 x std`` (:data:`fiqa_sdk.policy.DEFAULT_TEMPERATURE_SCALE`).
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fiqa_sdk.train.data import celeba_root
from fiqa_sdk.errors import ConsistencyError, EvaluationError, GateError
from fiqa_sdk.policy import fuse_template

#: Template methods of the benchmark: the reference ``single`` plus the gate's methods.
METHODS = ("single", "mean", "best", "quality_weighted", "top_k")
DATASETS = ("lfw", "celeba", "lfw-xq")
DEFAULT_FARS = (1e-3, 1e-4)
#: ``K * FAR`` below this marks a TAR as coarse (too few non-mated pairs behind the threshold).
RELIABLE_FALSE_ACCEPTS = 10
#: ``--quick``: this many identities per dataset, at most this many templates per identity.
QUICK_IDENTITIES = 24
QUICK_MAX_TEMPLATES = 3
#: Default cap of templates per identity: LFW's largest identities (George W Bush: 530 images,
#: 106 templates) would otherwise make most mated pairs.
DEFAULT_MAX_TEMPLATES = 10


def default_celeba_root() -> Path:
    """``$FIQA_CELEBA`` (:class:`~fiqa_sdk.errors.DataLocationError` when it is not set)."""
    return celeba_root()


# --------------------------------------------------------------------------------------------
# Datasets and template sampling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledImages:
    """Images with identity labels: ``labels[i]`` indexes ``identities``."""

    name: str
    paths: list[Path]
    labels: np.ndarray  # (N,) int64
    identities: list[str]


def _labelled(name: str, paths: Sequence[Path], ids: Sequence[str]) -> LabelledImages:
    names, labels = np.unique(np.asarray(ids, dtype=str), return_inverse=True)
    return LabelledImages(name, [Path(p) for p in paths], labels.astype(np.int64).reshape(-1),
                          [str(x) for x in names])


def lfw_images(root: str | Path | None = None) -> LabelledImages:
    """Every LFW image with its identity (the folder name), in sorted order."""
    from fiqa_sdk.eval.protocols import default_lfw_root

    root = Path(root) if root is not None else default_lfw_root()
    img = root / "images"
    if not img.is_dir():
        raise EvaluationError(f"LFW images folder not found: {img} (set FIQA_LFW or --lfw)")
    paths, ids = [], []
    for d in sorted(p for p in img.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(d.glob("*.jpg")):
            paths.append(f)
            ids.append(d.name)
    if not paths:
        raise EvaluationError(f"no LFW images under {img}")
    return _labelled("lfw", paths, ids)


def celeba_images(root: str | Path | None = None) -> LabelledImages:
    """The celeba-subset: ``identities.csv`` (columns ``file``, ``identity``) and ``images/``."""
    root = Path(root) if root is not None else default_celeba_root()
    csv_path = root / "identities.csv"
    if not csv_path.is_file():
        raise EvaluationError(f"celeba-subset not found: {csv_path} (set FIQA_CELEBA or --celeba)")
    paths, ids = [], []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            paths.append(root / "images" / row["file"].strip())
            ids.append(row["identity"].strip())
    return _labelled("celeba", paths, ids)


@dataclass(frozen=True)
class TemplateSampling:
    """Disjoint templates: ``members[t]`` are ``k`` indices into the dataset's images."""

    members: np.ndarray  # (T, k) int64
    labels: np.ndarray  # (T,) int64 identity label of each template
    identities_used: int
    seed: int
    k: int


def sample_templates(labels: np.ndarray, k: int = 5, seed: int = 0, min_templates: int = 2,
                     max_templates: int | None = None,
                     identities: int | None = None) -> TemplateSampling:
    """Seeded disjoint templates of ``k`` images per identity (see the module doc, step 1).

    ``identities``: use a seeded random subset of this many eligible identities (``--quick``).
    """
    if int(k) < 1:
        raise EvaluationError(f"k must be >= 1, got {k}")
    if int(min_templates) < 1:
        raise EvaluationError(f"min_templates must be >= 1, got {min_templates}")
    if max_templates is not None and int(max_templates) < int(min_templates):
        raise EvaluationError(f"max_templates ({max_templates}) < min_templates ({min_templates})")
    k = int(k)
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels)
    eligible = np.flatnonzero(counts >= min_templates * k)
    if identities is not None:
        if int(identities) < 2:
            raise EvaluationError(f"need at least 2 identities, got {identities}")
        if len(eligible) > int(identities):
            eligible = np.sort(rng.choice(eligible, size=int(identities), replace=False))
    if len(eligible) < 2:
        raise EvaluationError(f"fewer than 2 identities with >= {min_templates * k} images "
                              f"(k={k}, {min_templates} templates each): no non-mated pairs")
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    members, tl = [], []
    for lab in eligible:
        imgs = order[starts[lab] : starts[lab] + counts[lab]]
        perm = rng.permutation(imgs)
        t = counts[lab] // k
        if max_templates is not None:
            t = min(t, int(max_templates))
        for j in range(t):
            members.append(perm[j * k : (j + 1) * k])
            tl.append(lab)
    return TemplateSampling(np.asarray(members, dtype=np.int64), np.asarray(tl, dtype=np.int64),
                            int(len(eligible)), int(seed), k)


# --------------------------------------------------------------------------------------------
# Fusion and verification
# --------------------------------------------------------------------------------------------


def _method_spec(name: str) -> tuple[str, float | None]:
    """``"quality_weighted@2"`` -> ("quality_weighted", 2.0); others -> (name, None)."""
    if "@" in name:
        base, c = name.split("@", 1)
        if base != "quality_weighted":
            raise EvaluationError(f"only quality_weighted takes @temperature, got {name!r}")
        try:
            cf = float(c)
        except ValueError:
            raise EvaluationError(f"bad temperature in {name!r}") from None
        if not cf > 0:
            raise EvaluationError(f"temperature factor must be > 0 in {name!r}")
        return base, cf
    if name not in METHODS:
        raise EvaluationError(f"unknown template method {name!r}; use {', '.join(METHODS)} "
                              "or quality_weighted@C")
    return name, None


def fuse_all(members: np.ndarray, quality: np.ndarray, emb: np.ndarray, method: str,
             top_k: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused embeddings of every template.

    Args:
        members: ``(T, k)`` image indices; quality ``(N,)`` (NaN = unscored); emb ``(N, D)``
            L2-normalised (NaN rows = no face).
        method: one of :data:`METHODS` or ``quality_weighted@C``.

    Returns:
        ``(embeddings (T, D) float32, ok (T,) bool, max_weight (T,))``: rows of templates
        without any usable image are NaN with ``ok`` False.
    """
    base, c = _method_spec(method)
    usable = np.isfinite(quality) & np.isfinite(emb).all(axis=1)
    out = np.full((len(members), emb.shape[1]), np.nan, dtype=np.float32)
    ok = np.zeros(len(members), dtype=bool)
    wmax = np.full(len(members), np.nan)
    for t, mem in enumerate(members):
        m = mem[usable[mem]]
        if m.size == 0:
            continue
        if base == "single":
            out[t], ok[t], wmax[t] = emb[m[0]], True, 1.0
            continue
        q = quality[m]
        temp = None
        if c is not None and float(np.std(q)) > 0:
            temp = c * float(np.std(q))
        try:
            _, w, e = fuse_template(q, emb[m], base, k=top_k, temperature=temp)
        except GateError:  # embeddings cancelling out exactly: no template
            continue
        out[t], ok[t], wmax[t] = e, True, float(w.max())
    return out, ok, wmax


#: How many of the highest non-mated template scores a result records (``top_nonmated``).
TOP_NONMATED = 50


def verification_pairs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` of ``T`` templates and whether they are mated."""
    i, j = np.triu_indices(len(labels), k=1)
    return i, j, labels[i] == labels[j]


def tar_at_far(mated: np.ndarray, nonmated: np.ndarray, far: float) -> dict[str, Any]:
    """TAR at a target FAR with the toolkit's threshold rule (:func:`threshold_at_fmr`)."""
    from fiqa_sdk.eval import threshold_at_fmr

    k_total = int(nonmated.size)
    allowed = k_total * far
    rec: dict[str, Any] = {"far": far, "n_mated": int(mated.size), "n_nonmated": k_total,
                           "false_accepts_allowed": int(math.floor(allowed + 1e-9))}
    if allowed < 1:
        rec.update(tar=None, threshold=None, far_achieved=None, false_rejects=None,
                   coarse=True, note=f"K*FAR = {allowed:.3g} < 1: too few non-mated pairs")
        return rec
    thr = threshold_at_fmr(nonmated, far)
    fr = int(np.count_nonzero(mated < thr.threshold))
    rec.update(tar=1.0 - fr / mated.size, threshold=thr.threshold, far_achieved=thr.fmr_achieved,
               false_rejects=fr, coarse=bool(allowed < RELIABLE_FALSE_ACCEPTS))
    return rec


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class TemplateFeatures:
    """The sampled templates of a dataset and the cached features of the images they use."""

    dataset: str
    sampling: TemplateSampling
    members: np.ndarray  # (T, k) indices into ``paths`` (not the dataset's image list)
    paths: list[Path]  # the used images (after ``path_map``)
    quality: np.ndarray  # (N,) float64, NaN where no face was scored
    embeddings: np.ndarray  # (N, D) float32 L2-normalised, NaN rows where no face
    scorer: str
    embedder: str
    detector: str
    face_policy: str
    no_face: int
    seconds: float


def template_features(
    data: LabelledImages,
    k: int = 5,
    scorer: Any = None,
    seed: int = 0,
    min_templates: int = 2,
    max_templates: int | None = None,
    identities: int | None = None,
    detector: Any = "retinaface",
    face_policy: str = "central",
    cache_dir: str | Path | None = None,
    path_map: Callable[[list[Path]], list[Path]] | None = None,
    progress: bool = False,
) -> TemplateFeatures:
    """Sample the templates (step 1) and compute / load the features of their images (step 2).

    ``scorer``: registry name or Scorer (default :func:`fiqa_sdk.gate.default_scorer_name`);
    scorers built on an FR model get the same ArcFace embedder, as in the gate.
    ``path_map``: maps the used image paths before loading (``lfw-xq``: LFW names -> the
    degraded copy), so templates are the same images of both sets.
    """
    import fiqa_sdk as fq

    from fiqa_sdk.gate import default_scorer_name
    from fiqa_sdk.eval.evaluate import make_scorers
    from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all, score_all

    sampling = sample_templates(data.labels, k, seed, min_templates, max_templates, identities)
    used = np.unique(sampling.members)
    pos = np.full(len(data.paths), -1, dtype=np.int64)
    pos[used] = np.arange(len(used))
    paths = [data.paths[i] for i in used]
    if path_map is not None:
        paths = path_map(paths)
    det = fq.create_detector(detector) if isinstance(detector, str) else detector
    emb_model = fq.create_embedder("arcface")
    if scorer is None:
        scorer = default_scorer_name()
    sc = make_scorers([scorer], emb_model)[0] if isinstance(scorer, str) else scorer
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    t0 = time.perf_counter()
    faces = detect_all([str(p) for p in paths], det, policy=face_policy, cache_dir=cache,
                       progress=progress)
    emb = embed_all(faces, emb_model, fallback=False, cache_dir=cache, progress=progress)
    (quality,) = score_all(faces, [sc], fallback=False, cache_dir=cache, progress=progress)
    return TemplateFeatures(data.name, sampling, pos[sampling.members], paths, quality, emb,
                            sc.name, emb_model.name, det.name, face_policy,
                            int((~faces.found).sum()), time.perf_counter() - t0)


def run_template_bench(
    data: LabelledImages,
    k: int = 5,
    methods: Sequence[str] = METHODS,
    scorer: Any = None,
    fars: Sequence[float] = DEFAULT_FARS,
    seed: int = 0,
    min_templates: int = 2,
    max_templates: int | None = None,
    identities: int | None = None,
    top_k: int = 3,
    detector: Any = "retinaface",
    face_policy: str = "central",
    cache_dir: str | Path | None = None,
    path_map: Callable[[list[Path]], list[Path]] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the template benchmark on one dataset and return a JSON-able record (arguments as
    :func:`template_features`; ``methods`` from :data:`METHODS` or ``quality_weighted@C``)."""
    say = log or (lambda msg: None)
    fars = tuple(float(f) for f in fars)
    if not fars or any(not 0.0 < f < 1.0 for f in fars):
        raise EvaluationError(f"FARs must be in (0, 1), got {list(fars)}")
    if not methods:
        raise EvaluationError("no template methods given")
    for m in methods:
        _method_spec(m)
    if int(top_k) < 1:
        raise EvaluationError(f"top_k must be >= 1, got {top_k}")
    t_start = time.perf_counter()
    tf = template_features(data, k, scorer, seed, min_templates, max_templates, identities,
                           detector, face_policy, cache_dir, path_map, progress)
    sampling, members, quality, emb = tf.sampling, tf.members, tf.quality, tf.embeddings
    say(f"{data.name}: {sampling.identities_used} identities, {len(members)} templates of {k}, "
        f"{len(tf.paths)} images; features in {tf.seconds:.1f} s "
        f"({tf.no_face} image(s) without a face)")
    tl = sampling.labels
    results = []
    pairs_i = pairs_j = mated_mask = None
    n_ok = None
    for method in methods:
        e, ok, wmax = fuse_all(members, quality, emb, method, top_k=top_k)
        if n_ok is None:
            n_ok = ok
        elif not np.array_equal(ok, n_ok):  # pragma: no cover - same usable images for all
            raise ConsistencyError("template sets differ between methods")
        if pairs_i is None:
            keep = np.flatnonzero(ok)
            pairs_i, pairs_j, mated_mask = verification_pairs(tl[keep])
            pairs_i, pairs_j = keep[pairs_i], keep[pairs_j]
        e0 = np.where(ok[:, None], e, 0.0).astype(np.float32)
        s = (e0 @ e0.T)[pairs_i, pairs_j].astype(np.float64)  # T x T: small next to the pairs
        mated, nonmated = s[mated_mask], s[~mated_mask]
        if mated.size == 0 or nonmated.size == 0:
            raise EvaluationError(f"{data.name}: no mated or no non-mated template pairs")
        rec = {"method": method, "mean_max_weight": float(np.nanmean(wmax)),
               "mated_score_mean": float(mated.mean()),
               "nonmated_score_mean": float(nonmated.mean()),
               "at": [tar_at_far(mated, nonmated, f) for f in fars],
               "top_nonmated": _top_nonmated(nonmated, tl[pairs_i[~mated_mask]],
                                             tl[pairs_j[~mated_mask]], data.identities)}
        results.append(rec)
    n_tpl = int(n_ok.sum())
    return {
        "dataset": data.name,
        "images": len(tf.paths),
        "images_no_face": tf.no_face,
        "identities": sampling.identities_used,
        "templates": n_tpl,
        "templates_dropped": int(len(members) - n_tpl),
        "k": k,
        "top_k": int(top_k),
        "seed": int(seed),
        "min_templates": int(min_templates),
        "max_templates": max_templates,
        "n_mated": int(mated_mask.sum()),
        "n_nonmated": int((~mated_mask).sum()),
        "scorer": tf.scorer,
        "embedder": tf.embedder,
        "detector": tf.detector,
        "face_policy": tf.face_policy,
        "feature_seconds": round(tf.seconds, 1),
        "seconds": round(time.perf_counter() - t_start, 1),
        "quality_weighted_vs_mean": _qw_vs_mean(results),
        "results": results,
    }


def _top_nonmated(scores: np.ndarray, a: np.ndarray, b: np.ndarray, names: Sequence[str],
                  n: int = TOP_NONMATED) -> list[dict]:
    """The ``n`` highest non-mated template scores with their identity pair (highest first):
    where the threshold at a low FAR lands, and a pointer to mislabelled identities."""
    top = np.argsort(-scores, kind="stable")[:n]
    return [{"score": round(float(scores[t]), 4),
             "identities": sorted([str(names[a[t]]), str(names[b[t]])])} for t in top]


def _qw_vs_mean(results: list[dict]) -> list[dict] | None:
    by = {r["method"]: r for r in results}
    if "quality_weighted" not in by or "mean" not in by:
        return None
    out = []
    for a, b in zip(by["quality_weighted"]["at"], by["mean"]["at"]):
        if a["tar"] is None:
            continue
        out.append({"far": a["far"], "tar_quality_weighted": a["tar"], "tar_mean": b["tar"],
                    "difference": a["tar"] - b["tar"], "at_least_as_good": a["tar"] >= b["tar"]})
    return out


def markdown_table(records: Sequence[dict]) -> str:
    """One Markdown table over datasets and methods (TAR in %, false rejects in brackets)."""
    fars = [a["far"] for a in records[0]["results"][0]["at"]] if records else list(DEFAULT_FARS)
    head = ["dataset", "method"] + [f"TAR@FAR={f:g}" for f in fars] + \
        ["mated", "non-mated", "templates", "mean max weight"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in records:
        for r in d["results"]:
            cells = [d["dataset"], r["method"]]
            for a in r["at"]:
                if a["tar"] is None:
                    cells.append("n/a")
                else:
                    cells.append(f"{100 * a['tar']:.2f}% ({a['false_rejects']})"
                                 + (" coarse" if a["coarse"] else ""))
            cells += [f"{d['n_mated']:,}", f"{d['n_nonmated']:,}", f"{d['templates']:,}",
                      f"{r['mean_max_weight']:.3f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
