"""Alignment-sensitivity benchmark (eDifFIQA paper, TBIOM 2024, section 5.4, Tables 8-9).

How much does a quality scorer's ranking degrade when the faces are aligned differently from
the landmarks the FR model and the scorer were made for? On the LFW pairs protocol each
*condition* gives its own landmarks:

* **detectors** (the paper's setup): faces detected and aligned by each detector in turn
  (``retinaface``, ``mtcnn``, ``dlib``, ``scrfd``; the paper uses RetinaFace ResNet-100 and
  MobileNet, MTCNN and dlib and reports the mean pAUC over the detectors);
* **landmark jitter** (not in the paper; a controlled dose of misalignment): the RetinaFace
  landmarks moved by uniform noise in ``[-k, k]`` pixels on each coordinate of each of the five
  landmarks, in the pixels of the *original* image (LFW: 250 x 250, inter-eye distance about
  40 px; the 112 x 112 ArcFace crop is about 0.45x that scale), before the similarity alignment.
  The noise is seeded per image: image ``p`` gets ``k * u_p`` with ``u_p`` uniform in
  ``[-1, 1]^(5x2)`` drawn from ``(seed, parent folder / file name of p)``, so a face gets the
  same noise direction at every ``k`` (the conditions are nested), in any image list, on any
  machine. Images without a detected face keep the fallback landmarks (median of the found
  faces), unjittered.

For each condition: ArcFace embeddings of the crops aligned from that condition's landmarks,
LFW 10-fold verification accuracy, one threshold at FMR 1e-3 over that condition's non-mated
pairs, and for every quality scorer the ISO/IEC 29794-1 FNMR-EDC (pair quality = min) scored on
the condition's *own* crops, with its normalized pAUC at discard 0.2 and 0.3. The change of each
pAUC relative to the reference condition (RetinaFace, no jitter) says which scorer degrades
least. Detections, embeddings and quality scores are cached per (model, image, landmarks) by
:mod:`fiqa_sdk.eval.features`, so each condition has its own cache entries and a re-run (or the
``--quick`` subset after the full run) recomputes nothing.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fiqa_sdk.align import jitter_landmarks
from fiqa_sdk.errors import EvaluationError
from fiqa_sdk.quality import scorers_of_kind
from fiqa_sdk.eval import EDCResult, threshold_at_fmr
from fiqa_sdk.eval.evaluate import (BASELINE_SCORERS, DEFAULT_LIMITS, check_fmr_limits,
                                    edc_at_threshold, json_number, make_scorers, pair_scores)

from .report import pyplot, save_figure
from fiqa_sdk.eval.features import FaceSet
from fiqa_sdk.eval.protocols import PairsProtocol
from fiqa_sdk.eval.verification import VerificationResult, kfold_accuracy

#: Detectors of the detector conditions (all registered detectors with 5-point landmarks).
DETECTORS = ("retinaface", "mtcnn", "dlib", "scrfd")
#: Landmark jitter magnitudes k (pixels of the original image) applied to the RetinaFace landmarks.
DEFAULT_JITTER = (0.0, 2.0, 4.0, 6.0)
#: Default scorers: the baselines and the shipped distilled regressors (DifFIQA itself is ~1 s
#: per face on a CPU core and is left out; pass it with ``scorers=`` on a GPU).
DEFAULT_SCORERS = (*BASELINE_SCORERS, *scorers_of_kind("regressor"))
#: The detector whose landmarks are jittered; unjittered, it is the reference condition.
REFERENCE_DETECTOR = "retinaface"

#: ``--quick``: RetinaFace only, k in {0, 4}, three fast scorers, 10 mated + 10 non-mated pairs
#: from each of the ten folds (200 pairs, 312 images: about a minute of CPU from a cold cache).
QUICK_DETECTORS = ("retinaface",)
QUICK_JITTER = (0.0, 4.0)
QUICK_SCORERS = ("embedding-norm", "inter-eye", "ediffiqa-free")


# --------------------------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One way of getting the landmarks: a detector, optionally with landmark jitter."""

    detector: str
    jitter: float | None = None  # k in original-image pixels; None: the detector's landmarks

    @property
    def name(self) -> str:
        return self.detector if self.jitter is None else f"{self.detector} ±{self.jitter:g}px"

    @property
    def is_reference(self) -> bool:
        return self.detector == REFERENCE_DETECTOR and not self.jitter


def conditions(detectors: Sequence[str] = DETECTORS,
               jitter: Sequence[float] = DEFAULT_JITTER) -> list[Condition]:
    """The conditions to run, the reference (RetinaFace, no jitter) first.

    The reference is always included (it is what the deltas are taken against); ``k = 0`` is the
    reference itself, not a separate condition. Raises :class:`EvaluationError` on an empty,
    duplicated or negative entry.
    """
    detectors = [str(d) for d in detectors]
    ks = [float(k) for k in jitter]
    if not detectors and not ks:
        raise EvaluationError("no conditions: give at least one detector or jitter magnitude")
    for what, items in (("detector", detectors), ("jitter magnitude", ks)):
        dup = sorted({str(x) for x in items if items.count(x) > 1})
        if dup:
            raise EvaluationError(f"{what}(s) listed twice: {', '.join(dup)}")
    bad = [k for k in ks if not (math.isfinite(k) and k >= 0)]
    if bad:
        raise EvaluationError(f"jitter magnitudes must be finite and >= 0 pixels, got {bad}")
    out = [Condition(REFERENCE_DETECTOR)]
    out += [Condition(d) for d in detectors if d != REFERENCE_DETECTOR]
    out += [Condition(REFERENCE_DETECTOR, k) for k in ks if k > 0]
    return out


def _image_seed(path: str, seed: int) -> list[int]:
    """Seed entropy of one image: ``seed`` and a hash of its parent folder and file name
    (stable across machines and image lists, unlike the absolute path or the row index)."""
    p = Path(path)
    name = f"{p.parent.name}/{p.name}".encode()
    return [int(seed), int.from_bytes(hashlib.sha1(name).digest()[:8], "little")]


def jitter_faces(faces: FaceSet, k: float, seed: int = 0) -> FaceSet:
    """A copy of ``faces`` with every found face's landmarks moved by seeded uniform noise.

    Each coordinate of each landmark moves by a uniform offset in ``[-k, k]`` pixels of the
    original image (:func:`fiqa_sdk.align.jitter_landmarks`), drawn from a generator seeded by
    ``seed`` and the image's parent folder and file name: the same image gets the same noise in
    any image list, and ``k * u`` with the same ``u`` for every ``k``. Boxes, detector scores
    and the faces that were not found (NaN landmarks) are unchanged; ``faces`` is not modified.

    Args:
        faces: detections (``landmarks`` ``(N, 5, 2)`` float32, NaN where not found).
        k: jitter magnitude in pixels, finite and ``>= 0`` (0 returns an equal copy).
        seed: integer seed.

    Returns:
        A new :class:`~fiqa_sdk.eval.features.FaceSet` (landmarks float32).
    """
    k = float(k)
    if not (math.isfinite(k) and k >= 0):
        raise EvaluationError(f"jitter magnitude must be finite and >= 0 pixels, got {k!r}")
    lmk = np.array(faces.landmarks, dtype=np.float32, copy=True)
    if k > 0:
        for i in np.flatnonzero(faces.found):
            rng = np.random.default_rng(_image_seed(faces.paths[i], seed))
            lmk[i] = jitter_landmarks(faces.landmarks[i].astype(np.float64), k, rng)
    return replace(faces, paths=list(faces.paths), found=faces.found.copy(),
                   bbox=faces.bbox.copy(), landmarks=lmk, det_score=faces.det_score.copy())


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class ConditionResult:
    """Verification and quality results of one condition."""

    condition: Condition
    images: int
    no_face: int
    verification: VerificationResult
    threshold: float
    fmr_achieved: float
    fnmr0: float
    edc: dict[str, EDCResult]  # scorer name -> FNMR-EDC at the condition's threshold
    limits: tuple[float, ...]
    seconds: dict[str, float]

    def pauc(self, scorer: str, limit: float) -> float:
        """Normalized pAUC of ``scorer`` at discard ``limit`` (nan when FNMR_0 is 0)."""
        return float(self.edc[scorer].pauc(limit, normalized=True))

    def as_dict(self) -> dict[str, Any]:
        c = self.condition
        return {
            "condition": c.name, "detector": c.detector, "jitter_px": c.jitter,
            "images": self.images, "no_face": self.no_face,
            "accuracy": self.verification.accuracy, "accuracy_std": self.verification.std,
            "threshold": json_number(self.threshold), "fmr_achieved": self.fmr_achieved,
            "fnmr0": self.fnmr0,
            "scorers": {s: {**{f"pauc_norm_{lim:g}": json_number(self.pauc(s, lim))
                               for lim in self.limits},
                            **{f"pauc_{lim:g}": json_number(e.pauc(lim, normalized=False))
                               for lim in self.limits}}
                        for s, e in self.edc.items()},
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }


@dataclass
class AlignmentBenchResult:
    """All conditions of one run; ``conditions[0]`` is the reference."""

    meta: dict[str, Any]
    conditions: list[ConditionResult] = field(default_factory=list)

    @property
    def scorers(self) -> list[str]:
        return list(self.conditions[0].edc) if self.conditions else []

    @property
    def limits(self) -> tuple[float, ...]:
        return self.conditions[0].limits if self.conditions else tuple(DEFAULT_LIMITS)

    def delta(self, scorer: str, limit: float, cond: ConditionResult) -> float:
        """pAUC of ``scorer`` under ``cond`` minus its pAUC under the reference (> 0: worse)."""
        return cond.pauc(scorer, limit) - self.conditions[0].pauc(scorer, limit)

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per scorer and limit: the mean pAUC over the detector conditions (the paper's
        Tables 8-9 average), the mean and largest change against the reference over the other
        conditions, and the mean change over the other detectors and over the jitter conditions
        alone (``mean_delta_L_detectors`` / ``mean_delta_L_jitter``; None where there are none)."""
        out: dict[str, dict[str, float | None]] = {}
        det = [c for c in self.conditions if c.condition.jitter is None]
        others = self.conditions[1:]

        def finite_deltas(s: str, lim: float, conds) -> list[float]:
            return [d for d in (self.delta(s, lim, c) for c in conds) if math.isfinite(d)]

        for s in self.scorers:
            row: dict[str, float | None] = {}
            for lim in self.limits:
                row[f"mean_pauc_norm_{lim:g}_detectors"] = _mean([c.pauc(s, lim) for c in det])
                deltas = finite_deltas(s, lim, others)
                row[f"mean_delta_{lim:g}"] = _mean(deltas)
                row[f"max_delta_{lim:g}"] = max(deltas) if deltas else None
                row[f"mean_delta_{lim:g}_detectors"] = _mean(finite_deltas(
                    s, lim, [c for c in others if c.condition.jitter is None]))
                row[f"mean_delta_{lim:g}_jitter"] = _mean(finite_deltas(
                    s, lim, [c for c in others if c.condition.jitter is not None]))
            out[s] = row
        return out

    def as_dict(self) -> dict[str, Any]:
        conds = []
        for c in self.conditions:
            d = c.as_dict()
            for s, rec in d["scorers"].items():
                for lim in c.limits:
                    rec[f"delta_pauc_norm_{lim:g}"] = json_number(self.delta(s, lim, c))
            conds.append(d)
        return {**self.meta, "conditions": conds, "summary": self.summary()}


def _mean(values: Sequence[float]) -> float | None:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else None


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def run_alignment_bench(
    protocol: PairsProtocol,
    detectors: Sequence[str] = DETECTORS,
    jitter: Sequence[float] = DEFAULT_JITTER,
    scorers: Sequence[str] = DEFAULT_SCORERS,
    seed: int = 0,
    embedder: Any = "arcface",
    face_policy: str = "central",
    fmr: float = 1e-3,
    limits: Sequence[float] = DEFAULT_LIMITS,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    on_condition: Callable[[AlignmentBenchResult], None] | None = None,
    protocol_name: str = "lfw-pairs",
) -> AlignmentBenchResult:
    """Verification accuracy and quality-scorer EDCs under each alignment condition.

    Args:
        protocol: a pairs protocol with folds (LFW pairs.txt, or
            :func:`~fiqa_sdk.eval.protocols.pairs_subset` of it).
        detectors: detector conditions (registry names).
        jitter: landmark jitter magnitudes k (original-image pixels) on the RetinaFace landmarks.
        scorers: quality scorer names (scorers built on an FR model use ``embedder``).
        seed: seed of the landmark jitter (:func:`jitter_faces`).
        embedder: FR model of the comparison scores and of the quality scorers that use one.
        face_policy: which detected face is the subject (``central`` on LFW).
        fmr: target FMR of each condition's decision threshold.
        limits: discard limits of the normalized pAUC.
        cache_dir: feature cache (default ``$FIQA_CACHE``).
        on_condition: called with the partial result after each condition (e.g. to save it).
        protocol_name: the protocol's name in the result's metadata.

    Returns:
        :class:`AlignmentBenchResult`, the reference condition first. Bad names and values
        raise before any long step.
    """
    import fiqa_sdk as fq

    from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all, score_all

    say = log or (lambda msg: None)
    fmr, limits = check_fmr_limits(fmr, limits)
    conds = conditions(detectors, jitter)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # Every model first, so that a bad name fails before any long step.
    dets = {d: fq.create_detector(d) for d in dict.fromkeys(c.detector for c in conds)}
    emb = fq.create_embedder(embedder)
    scorer_objs = make_scorers(list(scorers), emb)

    paths = [str(p) for p in protocol.paths]
    pairs = np.asarray(protocol.pairs, dtype=np.int64)
    mated = np.asarray(protocol.mated, dtype=bool)
    if not mated.any() or mated.all():
        raise EvaluationError("the protocol needs both mated and non-mated pairs")
    result = AlignmentBenchResult(meta={
        "benchmark": "alignment",
        "protocol": protocol_name, "pairs": len(pairs),
        "folds": len(np.unique(protocol.folds)), "images": len(paths),
        "n_mated": int(mated.sum()), "n_nonmated": int((~mated).sum()),
        "embedder": emb.name, "face_policy": face_policy, "fmr_target": fmr,
        "pair_quality": "min", "limits": list(limits), "seed": int(seed),
        "reference": conds[0].name,
        "jitter_note": "uniform noise in [-k, k] px of the original image on each landmark "
                       "coordinate of the RetinaFace landmarks, seeded per image by (seed, "
                       "folder/file name), same direction for every k; faces not found keep "
                       "the (unjittered) fallback landmarks",
        "no_face_note": "images without a detected face use the fallback landmarks (median of "
                        "the found faces) and det_score 0",
        "planned_conditions": [c.name for c in conds],
        # which trained weights the regressors' rows were scored with
        "weights_sha256": {s.name: s.weights_sha256 for s in scorer_objs
                           if isinstance(getattr(s, "weights_sha256", None), str)},
    })
    detected: dict[str, FaceSet] = {}
    for cond in conds:
        secs: dict[str, float] = {}
        t0 = time.perf_counter()
        if cond.detector not in detected:
            say(f"{cond.name}: detecting faces in {len(paths)} images")
            detected[cond.detector] = detect_all(paths, dets[cond.detector], policy=face_policy,
                                                 cache_dir=cache_dir, progress=progress)
        faces = detected[cond.detector]
        if not faces.found.any():
            raise EvaluationError(f"{cond.detector}: no face detected in any of the "
                                  f"{len(paths)} images")
        if cond.jitter:
            faces = jitter_faces(faces, cond.jitter, seed)
        secs["detect"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        say(f"{cond.name}: embedding with {emb.name}")
        e = embed_all(faces, emb, fallback=True, cache_dir=cache_dir, progress=progress)
        bad = np.flatnonzero(~np.isfinite(e).all(axis=1))
        if bad.size:
            raise EvaluationError(f"{bad.size} image(s) could not be read or embedded: "
                                  + ", ".join(paths[i] for i in bad[:3]))
        sims = pair_scores(e, pairs)
        verification = kfold_accuracy(sims, mated, protocol.folds)
        thr = threshold_at_fmr(sims[~mated], fmr)
        fnmr0 = float(np.mean(sims[mated] < thr.threshold))
        secs["embed"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        say(f"{cond.name}: accuracy {verification}, FNMR_0 {fnmr0:.4f}; quality scores: "
            + ", ".join(s.name for s in scorer_objs))
        per_scorer: dict[str, float] = {}
        qualities = score_all(faces, scorer_objs, fallback=True, cache_dir=cache_dir,
                              progress=progress, timings=per_scorer)
        secs["quality"] = time.perf_counter() - t0
        edcs = {}
        for scorer, q in zip(scorer_objs, qualities):
            if not np.isfinite(q).all():
                raise EvaluationError(f"scorer {scorer.name!r} gave NaN/inf for "
                                      f"{int((~np.isfinite(q)).sum())} image(s) ({cond.name})")
            edcs[scorer.name] = edc_at_threshold(sims[mated], q[pairs[mated]], thr, fmr,
                                                 int((~mated).sum()))
        result.conditions.append(ConditionResult(
            cond, len(paths), int((~faces.found).sum()), verification, thr.threshold,
            thr.fmr_achieved, fnmr0, edcs, limits, secs))
        say(f"{cond.name}: done ({sum(secs.values()):.0f} s)")
        if on_condition is not None:
            on_condition(result)
    return result


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def markdown_table(result: AlignmentBenchResult) -> str:
    """The result as markdown: one table of the conditions (accuracy, FNMR_0, faces not
    found) and, per pAUC limit, one table of scorers x conditions (normalized pAUC, its change
    against the reference in parentheses, lower is better) with the mean over the detector
    conditions and the mean change over the non-reference conditions: all of them, the other
    detectors, the jitter conditions (which scorer degrades least under misalignment)."""

    def f(x: float | None, d: int = 3, sign: bool = False) -> str:
        if x is None or not math.isfinite(x):
            return "n/a"
        return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"

    conds = result.conditions
    lines = ["| condition | LFW accuracy (10-fold) | FNMR_0 @ FMR "
             f"{result.meta.get('fmr_target', 1e-3):g} | threshold | no face |",
             "|---|---|---|---|---|"]
    for c in conds:
        lines.append(f"| {c.condition.name} | {100 * c.verification.accuracy:.2f} ± "
                     f"{100 * c.verification.std:.2f} % | {f(c.fnmr0, 4)} | {f(c.threshold, 4)} "
                     f"| {c.no_face} / {c.images} |")
    summary = result.summary()
    n_det = sum(c.condition.jitter is None for c in conds)
    for lim in result.limits:
        head = ["scorer"] + [c.condition.name for c in conds] + \
            [f"mean over {n_det} detector(s)", "mean Δ vs reference", "mean Δ, detectors",
             "mean Δ, jitter"]
        lines += ["", f"Normalized pAUC@{lim:g} (Δ vs {conds[0].condition.name if conds else '-'}"
                      "; lower is better)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in result.scorers:
            cells = [s]
            for i, c in enumerate(conds):
                cell = f(c.pauc(s, lim))
                if i:
                    cell += f" ({f(result.delta(s, lim, c), sign=True)})"
                cells.append(cell)
            row = summary[s]
            cells += [f(row[f"mean_pauc_norm_{lim:g}_detectors"]),
                      f(row[f"mean_delta_{lim:g}"], sign=True),
                      f(row[f"mean_delta_{lim:g}_detectors"], sign=True),
                      f(row[f"mean_delta_{lim:g}_jitter"], sign=True)]
            lines.append("| " + " | ".join(cells) + " |")
    if any(c.fnmr0 == 0 for c in conds):
        lines += ["", "n/a: no mated pair fails at the threshold (FNMR_0 = 0), so the normalized "
                      "pAUC is undefined (small pair sets such as --quick's)."]
    return "\n".join(lines)


def plot_alignment(result: AlignmentBenchResult, path: str | Path, limit: float | None = None
                   ) -> Path:
    """PNG: normalized pAUC at ``limit`` (default the last limit, e.g. 0.3) of each scorer
    (groups) under each condition (bars), lower is better; n/a bars are left out."""
    plt = pyplot()
    lim = result.limits[-1] if limit is None else limit
    conds, scorers = result.conditions, result.scorers
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(scorers) + 2.5), 4.6), dpi=110)
    width = 0.8 / max(len(conds), 1)
    x = np.arange(len(scorers))
    for i, c in enumerate(conds):
        vals = np.array([c.pauc(s, lim) for s in scorers], float)
        ax.bar(x - 0.4 + (i + 0.5) * width, np.where(np.isfinite(vals), vals, 0.0), width,
               label=c.condition.name)
    ax.axhline(1.0, color="grey", ls="--", lw=0.8)
    ax.set_xticks(x, scorers, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"normalized pAUC@{lim:g} (lower is better)")
    m = result.meta
    ax.set_title(f"Alignment sensitivity, {m.get('protocol', 'lfw-pairs')}, comparison "
                 f"{m.get('embedder', 'arcface')}, FMR {m.get('fmr_target', 1e-3):g}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, title="alignment condition", title_fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return save_figure(fig, path)


__all__ = [
    "AlignmentBenchResult", "Condition", "ConditionResult", "DEFAULT_JITTER", "DEFAULT_SCORERS",
    "DETECTORS", "conditions", "jitter_faces", "markdown_table", "plot_alignment",
    "run_alignment_bench",
]
