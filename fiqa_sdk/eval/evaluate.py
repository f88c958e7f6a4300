"""Evaluate quality scorers: ISO/IEC 29794-1 EDC and pAUC of scorers on a verification protocol
(:func:`evaluate_scorers`, which returns results and writes nothing; the research harness
``fiqa-bench quality`` adds the tables and figures).

Steps (each cached under the cache folder, see :mod:`fiqa_sdk.eval.features`):

1. detect and select one face per image (``face_policy``; on LFW the subject is the central
   face); images without a detected face get the fallback landmarks (median of the found faces)
   and are counted in the output (``no_face``);
2. embed every image with the *evaluation* FR model (comparison scores);
3. score every image with each quality scorer on the ArcFace 112x112 crop aligned from the same
   landmarks. Scorers built on an FR model (``embedding-norm``, ``flip-consistency``, later
   DifFIQA) use the *quality* embedder: equal to the evaluation embedder is the papers'
   "same-model" setting, different is "cross-model"; scorers without an FR model are
   "model-free";
4. fix one decision threshold at the target FMR (1e-3) over all non-mated comparison scores,
   then compute the FNMR-EDC of the mated pairs (pair quality = min of the two images) and its
   raw and normalized pAUC (see :mod:`fiqa_sdk.eval.metrics`).

Non-mated pairs. With an explicit list (LFW pairs.txt, or a seeded sample) the scores are
computed pair by pair (:func:`pair_scores`). With *all* non-mated pairs of an
identity protocol (87.3M on LFW) the scores are computed blockwise (``block_size`` probe images
x all later gallery images, one matrix product per block, same-identity entries masked) and
never stored: a running selection keeps only the ``k + 1`` highest scores (k = largest count
with k / K <= FMR), which gives exactly the threshold :func:`~fiqa_sdk.eval.threshold_at_fmr`
would give on the full score array. Memory is one block (``block_size x N`` float32) plus
``k + 1`` floats (peak memory and time for LFW's 87.3M pairs: docs/benchmarks.md "Quality
scorers on LFW", "Protocols"). Only the
FNMR-EDC is reported; the FMR-EDC (``fq.eval.fmr_edc``, which needs the pair quality of every
non-mated pair) is left out.

Images that cannot be decoded are an error; images without a detected face are kept (fallback
landmarks) and counted.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConsistencyError, EvaluationError, FiqaError
from .metrics import EDCResult, FMRThreshold, _step_curve, combine_pair_qualities, threshold_at_fmr
from .protocols import IdentityProtocol, PairsProtocol, nonmated_count

#: The baseline scorers evaluated by default (also ``fiqa-bench quality`` without ``--scorers``).
BASELINE_SCORERS = ("random", "det-score", "inter-eye", "sharpness", "embedding-norm",
                    "flip-consistency")

DEFAULT_LIMITS = (0.2, 0.3)


# --------------------------------------------------------------------------------------------
# Threshold over all non-mated pairs, blockwise
# --------------------------------------------------------------------------------------------


def allowed_false_matches(fmr: float, k_total: int) -> int:
    """Largest k with k / K <= fmr (the same rule as :func:`threshold_at_fmr`)."""
    k = min(int(np.floor(fmr * k_total)), k_total - 1)
    if k + 1 <= k_total - 1 and (k + 1) / k_total <= fmr:
        k += 1
    while k > 0 and k / k_total > fmr:
        k -= 1
    return k


def _progress(it, enabled: bool, desc: str, total: int, unit: str = "it"):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, desc=desc, total=total, unit=unit, mininterval=2.0)


def threshold_all_nonmated(embeddings: np.ndarray, labels: np.ndarray, fmr: float = 1e-3,
                           block_size: int = 1024, progress: bool = False,
                           ) -> tuple[FMRThreshold, int]:
    """Threshold at ``fmr`` over *all* non-mated cosine scores, computed blockwise.

    Args:
        embeddings: ``(N, D)`` L2-normalised embeddings (float32 is used for the products).
        labels: ``(N,)`` identity labels; every pair with different labels is non-mated.
        fmr: target FMR in (0, 1).
        block_size: probe images per matrix product (memory ~ ``block_size * N * 5`` bytes).

    Returns:
        ``(FMRThreshold, K)``: identical to ``threshold_at_fmr(all_scores, fmr)`` on the float32
        scores, and the number K of non-mated pairs.
    """
    if not 0.0 < float(fmr) < 1.0:
        raise EvaluationError(f"fmr must be in the open interval (0, 1), got {fmr!r}")
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    emb = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32)[order])
    if not np.isfinite(emb).all():
        raise EvaluationError("embeddings contain NaN or infinite values")
    _, lab = np.unique(labels[order], return_inverse=True)
    lab = lab.reshape(-1)
    n = len(lab)
    group_end = np.cumsum(np.bincount(lab))[lab]  # first index after each image's identity
    k_total = nonmated_count(lab)
    if k_total == 0:
        raise EvaluationError("no non-mated pairs: all images have the same identity")
    need = allowed_false_matches(float(fmr), k_total) + 1
    top = np.zeros(0, dtype=np.float32)
    floor = -np.inf  # once `top` holds `need` values, only larger ones can enter it
    seen = 0
    starts = range(0, n, block_size)
    for r0 in _progress(starts, progress, "non-mated scores", len(starts), "block"):
        r1 = min(n, r0 + block_size)
        c0 = int(group_end[r0])  # group_end is non-decreasing: the block's first useful column
        if c0 >= n:
            continue
        sims = emb[r0:r1] @ emb[c0:].T
        valid = np.arange(c0, n)[None, :] >= group_end[r0:r1, None]
        seen += int(np.count_nonzero(valid))
        if np.isfinite(floor):
            valid &= sims > floor
        vals = sims[valid]
        del sims, valid
        if vals.size:
            top = np.concatenate([top, vals])
            if top.size >= need:
                top = np.partition(top, top.size - need)[top.size - need:]
                floor = float(top.min())
    if seen != k_total:  # pragma: no cover - a bug guard
        raise ConsistencyError(f"blockwise scoring visited {seen} non-mated pairs, expected {k_total}")
    kth = np.float64(top.min())  # the (k+1)-th highest of all K scores
    tau = float(np.nextafter(kth, np.inf))
    n_false = int(np.count_nonzero(top.astype(np.float64) >= tau))
    return FMRThreshold(tau, n_false / k_total), k_total


def edc_at_threshold(mated_scores: np.ndarray, mated_qualities: np.ndarray,
                     threshold: FMRThreshold, fmr: float, n_nonmated: int,
                     pair_quality: str = "min") -> EDCResult:
    """FNMR-EDC of mated pairs at a threshold already fixed over the non-mated scores."""
    mated = np.asarray(mated_scores, dtype=np.float64)
    if mated.ndim != 1 or mated.size == 0 or not np.isfinite(mated).all():
        raise EvaluationError("mated scores must be a non-empty 1-D array of finite values")
    q = combine_pair_qualities(mated_qualities, pair_quality, name="mated_qualities")
    if q.shape != mated.shape:
        raise EvaluationError(f"mated qualities {q.shape} do not match the scores {mated.shape}")
    discard, fnmr, cuts = _step_curve(q, mated < threshold.threshold)
    return EDCResult(
        discard_fractions=discard, fnmr=fnmr, quality_cuts=cuts, threshold=threshold.threshold,
        fmr_achieved=threshold.fmr_achieved, fmr_target=float(fmr), fnmr0=float(fnmr[0]),
        n_mated=int(mated.size), n_nonmated=int(n_nonmated),
    )


def pair_scores(emb: np.ndarray, pairs: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Cosine scores (float32 dot products of L2-normalised rows, returned as float64) of the
    ``(P, 2)`` index pairs, in chunks."""
    out = np.empty(len(pairs), dtype=np.float32)
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        out[s : s + len(p)] = np.einsum("ij,ij->i", emb[p[:, 0]], emb[p[:, 1]])
    return out.astype(np.float64)


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


@dataclass
class ScorerRow:
    """One scorer's result on one protocol."""

    scorer: str
    setting: str  # "same-model", "cross-model" or "model-free"
    quality_model: str | None
    edc: EDCResult
    limits: tuple[float, ...]
    seconds: float
    #: with ``bootstrap``: limit -> {"se": ..., "interval": [lo, hi]} of the normalized pAUC
    bootstrap: dict[float, dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"scorer": self.scorer, "setting": self.setting,
                             "quality_model": self.quality_model}
        for lim in self.limits:
            d[f"pauc_norm_{lim:g}"] = json_number(self.edc.pauc(lim, normalized=True))
        if self.bootstrap is not None:
            for lim in self.limits:
                b = self.bootstrap[lim]
                d[f"pauc_norm_{lim:g}_se"] = b["se"]
                d[f"pauc_norm_{lim:g}_ci_low"], d[f"pauc_norm_{lim:g}_ci_high"] = b["interval"]
        for lim in self.limits:
            d[f"pauc_{lim:g}"] = json_number(self.edc.pauc(lim, normalized=False))
        d.update(fnmr0=json_number(self.edc.fnmr0), threshold=json_number(self.edc.threshold),
                 fmr_achieved=json_number(self.edc.fmr_achieved), n_mated=self.edc.n_mated,
                 n_nonmated=self.edc.n_nonmated, quality_seconds=round(self.seconds, 1))
        return d


def json_number(x: float) -> float | None:
    """``x`` as a float for a JSON result, None where it is NaN (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else x


@dataclass
class ScorerEvaluation:
    meta: dict[str, Any]
    rows: list[ScorerRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.meta, "results": [r.as_dict() for r in self.rows]}


def _scorer_model(scorer) -> str | None:
    from ..embed import Embedder

    if isinstance(getattr(scorer, "fr_model", None), str):  # e.g. regressors built on ArcFace
        return scorer.fr_model

    for v in vars(scorer).values():
        if isinstance(v, Embedder):
            return v.name
    return None


def parse_scorer_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["diffiqa.n=1", "diffiqa.fast=true"]`` -> ``{"diffiqa": {"n": 1, "fast": True}}``.

    Values are read as JSON where they parse (numbers, ``true``/``false``, ``null``), else kept
    as strings. Raises :class:`EvaluationError` on a malformed item."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        lhs, sep, value = item.partition("=")
        name, dot, key = lhs.rpartition(".")
        if not sep or not dot or not name or not key.isidentifier():
            raise EvaluationError(f"scorer parameters take SCORER.KEY=VALUE, got {item!r}")
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(name, {})[key] = parsed
    return out


def make_scorers(names: Sequence[str], quality_embedder, weights: dict | None = None,
                 params: dict[str, dict[str, Any]] | None = None) -> list:
    """Create scorers by name; those built on an FR model get ``embedder=quality_embedder``,
    those named in ``weights`` get ``weights=weights[name]`` (trained, unshipped models) and
    those named in ``params`` get those keyword arguments (e.g. ``{"diffiqa": {"n": 1}}``)."""
    from ..quality import create_scorer

    if not names:
        raise EvaluationError("no scorers given")
    dup = sorted({n for n in names if list(names).count(n) > 1})
    if dup:
        raise EvaluationError(f"scorer(s) listed twice: {', '.join(dup)}")
    out = []
    weights = dict(weights or {})
    params = dict(params or {})
    for what, given in (("weights", weights), ("parameters", params)):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise EvaluationError(f"{what} given for scorer(s) not in the list: "
                                  f"{', '.join(unknown)}")
    from ..quality import SCORERS

    for name in names:
        kw = {"weights": weights[name]} if name in weights else {}
        if name in SCORERS and "fp32" in SCORERS.card(name).get("precisions", ()):
            # the model's own scores, the same on every CPU (not int8 where it is the default)
            kw["precision"] = "fp32"
        kw.update(params.get(name, {}))
        if name in SCORERS and SCORERS.card(name).get("embedder") == "shared":
            kw.setdefault("embedder", quality_embedder)  # scorers built on an FR model
        try:
            out.append(create_scorer(name, **kw))
        except FiqaError:
            raise
        except (TypeError, ValueError) as exc:
            raise EvaluationError(f"cannot create scorer {name!r}: {exc}") from None
    return out


def check_fmr_limits(fmr: float, limits: Sequence[float]) -> tuple[float, tuple[float, ...]]:
    """``(fmr, limits)`` as floats, or :class:`EvaluationError` if the FMR is not in (0, 1) or a
    pAUC limit is not in (0, 1] (shared by the quality and alignment benchmarks)."""
    fmr = float(fmr)
    if not 0.0 < fmr < 1.0:
        raise EvaluationError(f"fmr must be in the open interval (0, 1), got {fmr!r}")
    limits = tuple(float(x) for x in limits)
    if not limits or any(not 0.0 < x <= 1.0 for x in limits):
        raise EvaluationError(f"pAUC limits must be in (0, 1], got {list(limits)}")
    return fmr, limits


def evaluate_scorers(
    protocol: PairsProtocol | IdentityProtocol,
    scorers: Sequence[str] = BASELINE_SCORERS,
    eval_embedder: Any = "arcface",
    quality_embedder: Any = "arcface",
    detector: Any = "retinaface",
    face_policy: str = "central",
    fmr: float = 1e-3,
    limits: Sequence[float] = DEFAULT_LIMITS,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    block_size: int = 1024,
    progress: bool = False,
    protocol_name: str = "custom",
    weights: dict | None = None,
    log: Callable[[str], None] | None = None,
    scorer_params: dict[str, dict[str, Any]] | None = None,
    shard: tuple[int, int] | None = None,
    bootstrap: int = 0,
    bootstrap_seed: int = 0,
) -> ScorerEvaluation | None:
    """Run quality scorers on a protocol and return their EDC results (see the module doc).

    ``shard=(i, k)`` only fills the quality cache for every k-th image starting at i (for
    parallel processes on long scorers such as DifFIQA) and returns None; a later call without
    ``shard`` reuses those scores.

    ``bootstrap=B`` (>= 2) adds to each row the standard error and 95 % percentile interval of
    its normalized pAUCs over ``B`` identity redraws of the mated pairs
    (:func:`fiqa_sdk.eval.bootstrap_pauc`; identity = the protocol's label, or for pairs
    protocols the image's folder, as in LFW), and to ``meta["bootstrap"]`` each scorer's paired
    difference from the best scorer at each limit."""
    import fiqa_sdk as fq

    from .features import default_cache_dir, detect_all, embed_all, score_all

    say = log or (lambda msg: None)
    fmr, limits = check_fmr_limits(fmr, limits)
    if int(block_size) < 1:
        raise EvaluationError(f"block size must be positive, got {block_size}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    # Build every model first, so that a bad name fails before any long step.
    from ..detect import DETECTORS
    from ..embed import EMBEDDERS
    from ..pipeline import device_kwargs

    det = fq.create_detector(detector, **device_kwargs(DETECTORS, detector, device))
    emb_eval = fq.create_embedder(eval_embedder, **device_kwargs(EMBEDDERS, eval_embedder, device))
    if isinstance(quality_embedder, str) and quality_embedder == eval_embedder:
        emb_quality = emb_eval
    else:
        emb_quality = fq.create_embedder(quality_embedder,
                                         **device_kwargs(EMBEDDERS, quality_embedder, device))
    scorer_objs = make_scorers(list(scorers), emb_quality, weights, scorer_params)
    if shard is not None:
        i, k = (int(v) for v in shard)
        if not 0 <= i < k:
            raise EvaluationError(f"shard must be i/k with 0 <= i < k, got {i}/{k}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or (
            bootstrap != 0 and bootstrap < 2):
        raise EvaluationError(f"bootstrap must be 0 (off) or at least 2 redraws, got {bootstrap!r}")

    paths = [str(p) for p in protocol.paths]
    mated_pairs = np.asarray(protocol.mated_pairs, dtype=np.int64)
    nonmated_pairs = protocol.nonmated_pairs
    if len(mated_pairs) == 0:
        raise EvaluationError("the protocol has no mated pairs")
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    say(f"detecting faces in {len(paths)} images ({det.name}, policy {face_policy})")
    faces = detect_all(paths, det, policy=face_policy, cache_dir=cache_dir, progress=progress)
    timings["detect"] = time.perf_counter() - t0
    no_face = int((~faces.found).sum())
    if no_face == len(paths):
        raise EvaluationError(f"no face detected in any of the {len(paths)} images")

    if shard is not None:
        say(f"quality scores of shard {shard[0]}/{shard[1]}: "
            + ", ".join(sc.name for sc in scorer_objs))
        score_all(faces, scorer_objs, fallback=True, cache_dir=cache_dir, progress=progress,
                  rows=np.arange(shard[0], len(paths), shard[1]))
        return None

    t0 = time.perf_counter()
    say(f"embedding with {emb_eval.name}")
    emb = embed_all(faces, emb_eval, fallback=True, cache_dir=cache_dir, progress=progress)
    timings["embed"] = time.perf_counter() - t0
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if bad.size:
        shown = ", ".join(paths[i] for i in bad[:3])
        raise EvaluationError(f"{bad.size} image(s) could not be read or embedded: {shown}")

    t0 = time.perf_counter()
    if nonmated_pairs is None:
        say("scoring all non-mated pairs blockwise for the threshold")
        thr, k_total = threshold_all_nonmated(emb, protocol.labels, fmr, block_size, progress)
    else:
        nonmated_pairs = np.asarray(nonmated_pairs, dtype=np.int64)
        if len(nonmated_pairs) == 0:
            raise EvaluationError("the protocol has no non-mated pairs")
        thr = threshold_at_fmr(pair_scores(emb, nonmated_pairs), fmr)
        k_total = len(nonmated_pairs)
    mated_scores = pair_scores(emb, mated_pairs)
    timings["comparisons"] = time.perf_counter() - t0
    fnmr0 = float(np.mean(mated_scores < thr.threshold))
    say(f"threshold {thr.threshold:.4f} at FMR {thr.fmr_achieved:.2e} over {k_total} non-mated "
        f"pairs; FNMR_0 {fnmr0:.4f} over {len(mated_pairs)} mated pairs")

    t0 = time.perf_counter()
    say("quality scores: " + ", ".join(s.name for s in scorer_objs))
    per_scorer: dict[str, float] = {}
    qualities = score_all(faces, scorer_objs, fallback=True, cache_dir=cache_dir, progress=progress,
                          timings=per_scorer)
    timings["quality"] = time.perf_counter() - t0

    rows = []
    for scorer, q in zip(scorer_objs, qualities):
        if not np.isfinite(q).all():
            raise EvaluationError(f"scorer {scorer.name!r} gave NaN/inf for "
                                  f"{int((~np.isfinite(q)).sum())} image(s)")
        res = edc_at_threshold(mated_scores, q[mated_pairs], thr, fmr, k_total)
        model = _scorer_model(scorer)
        setting = "model-free" if model is None else (
            "same-model" if model == emb_eval.name else "cross-model")
        rows.append(ScorerRow(scorer.name, setting, model, res, limits,
                              per_scorer.get(scorer.name, 0.0)))
    boot_meta = None
    if bootstrap:
        boot_meta = _bootstrap_rows(rows, protocol, mated_pairs, mated_scores, qualities, thr,
                                    limits, int(bootstrap), int(bootstrap_seed), say)
    meta = {
        "protocol": protocol_name,
        "images": len(paths),
        "no_face": no_face,
        "no_face_note": "images without a detected face use the fallback landmarks (median of "
                        "the found faces) and det_score 0",
        "detector": det.name,
        "face_policy": face_policy,
        "eval_embedder": emb_eval.name,
        "quality_embedder": emb_quality.name,
        "fmr_target": fmr,
        "threshold": thr.threshold,
        "fmr_achieved": thr.fmr_achieved,
        "fnmr0": fnmr0,
        "n_mated": int(len(mated_pairs)),
        "n_nonmated": int(k_total),
        "nonmated": ("listed pairs" if isinstance(protocol, PairsProtocol) else
                     "all" if nonmated_pairs is None else
                     f"seeded uniform sample (seed {protocol.seed})"),
        "pair_quality": "min",
        "scorer_params": {k: dict(v) for k, v in (scorer_params or {}).items()},
        "limits": list(limits),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    if isinstance(protocol, IdentityProtocol):
        meta["n_nonmated_total"] = protocol.n_nonmated_total
        meta["identities"] = len(protocol.identities)
    if boot_meta is not None:
        meta["bootstrap"] = boot_meta
    return ScorerEvaluation(meta, rows)


def mated_pair_identities(protocol: PairsProtocol | IdentityProtocol,
                          mated_pairs: np.ndarray) -> np.ndarray:
    """Identity of each mated pair: the protocol's label of its first image, or (pairs
    protocols such as LFW's pairs.txt, which carry no labels) the image's folder name."""
    if isinstance(protocol, IdentityProtocol):
        return np.asarray(protocol.labels)[mated_pairs[:, 0]]
    names = [Path(protocol.paths[i]).parent.name for i in mated_pairs[:, 0]]
    return np.unique(names, return_inverse=True)[1]


def _bootstrap_rows(rows, protocol, mated_pairs, mated_scores, qualities, thr, limits, boot: int,
                    seed: int, say) -> dict[str, Any]:
    """Fill each row's ``bootstrap`` and return the run's bootstrap metadata."""
    from .bootstrap import bootstrap_pauc

    meta: dict[str, Any] = {"redraws": boot, "seed": seed, "unit": "identity", "level": 0.95}
    if not np.any(mated_scores < thr.threshold):
        meta["skipped"] = "no mated pair fails at the threshold: normalized pAUC undefined"
        return meta
    say(f"bootstrap: {boot} identity redraws of the mated pairs")
    res = bootstrap_pauc(mated_scores, {r.scorer: q[mated_pairs] for r, q in zip(rows, qualities)},
                         mated_pair_identities(protocol, mated_pairs), thr, limits, boot, seed)
    meta.update(groups=res.groups, undefined_redraws=res.undefined)
    if len(res.draws) < 2:
        meta["skipped"] = f"only {len(res.draws)} redraw(s) had a failing mated pair"
        return meta
    for r in rows:
        r.bootstrap = {lim: {"se": res.se(r.scorer, lim), "interval": list(res.interval(r.scorer, lim))}
                       for lim in limits}
    vs_best = {}
    for j, lim in enumerate(limits):
        best = res.names[int(np.argmin(res.point[:, j]))]
        vs_best[f"{lim:g}"] = {"best": best, "differences": [
            res.difference(n, best, lim) for n in res.names if n != best]}
    meta["vs_best"] = vs_best
    return meta
