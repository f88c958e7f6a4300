"""The teacher check: a DifFIQA denoiser on a fixed subset of the dev suite, eq. 7 by terms.

``fiqa-bench quality --teacher-check --weights diffiqa=PATH [--scorer-param diffiqa.n=1 ...]``
scores a denoiser checkpoint on the **teacher subset** of the dev suite
(:func:`~fiqa_bench.devsuite_images.dev_relpaths` ``subset="teacher"``: 40 identities of
the dev subset in sha256 order of ``"fiqa-dev/v1/teacher/<Name>"``, at most 5 images each, so
200 images in each of the pools xq, occ and clean: 600 faces scored) and its two ArcFace hard
sets, ``xq-arcface`` (all-vs-all within the lfw-xq versions) and
``occ-cross-arcface`` (clean gallery vs occluded / pose-warped probe). It reports the
normalized pAUC of three qualities built from one pass of the scorer
(:meth:`~fiqa_sdk.quality.diffiqa.DifFIQAScorer.terms`):

- ``diffiqa-eq7``: eq. 7, the mean of all terms (the teacher's quality);
- ``diffiqa-restored``: the mean of the restored terms only (``x_hat``, ``x_hat^f``);
- ``diffiqa-noisy``: the mean of the noisy terms only (``x_t``, ``x^f_t``);

and ``embedding-norm`` for reference, with the dev suite's joint identity bootstrap (paired
differences from embedding-norm). If the denoiser matters, ``restored`` differs from (and
should beat) ``noisy``. The terms of each image are cached under the cache folder (key: the
scorer's parameters and weights digest, the images and their landmarks).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fiqa_sdk.errors import EvaluationError
from .devsuite import prepare_sets, summarize

TEACHER_SETS = ("xq-arcface", "occ-cross-arcface")
#: Default DifFIQA settings of the check: the labels' setting (t = 5, n = 1, flip, full DDIM).
DEFAULT_PARAMS = {"n": 1}


def _terms_for(scorer, faces, cache_dir: Path, progress: bool, log) -> dict[str, np.ndarray]:
    from fiqa_sdk.eval.features import aligned_crops, cache_key, paths_key, used_faces, scorer_key

    use, lmk, _, _ = used_faces(faces, True)
    key = cache_key("teacher-terms", scorer_key(scorer), paths_key(faces.paths),
               hashlib.sha1(np.ascontiguousarray(lmk, dtype=np.float32).tobytes()).hexdigest())
    cache = Path(cache_dir) / f"teacher-terms-{key}.npz"
    if cache.is_file():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    n = len(faces.paths)
    out: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for s in range(0, n, 32):
        rows = np.arange(s, min(n, s + 32))
        crops, ok = aligned_crops(faces.paths, lmk, rows)
        if len(ok) != len(rows):
            raise EvaluationError("teacher check: some images could not be read")
        terms = scorer.terms(np.stack(crops))
        for k, v in terms.items():
            out.setdefault(k, np.full(n, np.nan))[rows] = v
        if log and (s // 32) % 5 == 0:
            log(f"  diffiqa terms {min(n, s + 32)}/{n} ({time.perf_counter() - t0:.0f} s)")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(cache)
    return out


def qualities_from_terms(terms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``diffiqa-eq7``, ``diffiqa-restored``, ``diffiqa-noisy`` from the terms of eq. 7."""
    restored = [terms[k] for k in ("restored", "restored_flip") if k in terms]
    noisy = [terms[k] for k in ("noisy", "noisy_flip") if k in terms]
    return {"diffiqa-eq7": np.mean(list(terms.values()), axis=0),
            "diffiqa-restored": np.mean(restored, axis=0),
            "diffiqa-noisy": np.mean(noisy, axis=0)}


def run_teacher_check(lfw_root=None, weights=None, params: dict | None = None,
                      quick: bool = False, boot: int = 1000, seed: int = 0, cache_dir=None,
                      limits=(0.2, 0.3), fmr: float = 1e-3, log=None,
                      progress: bool = False, students: Sequence[str] = ()) -> dict[str, Any]:
    """Run the teacher check (see the module doc); returns the JSON-ready result.

    ``students``: more scorers (e.g. the regressors distilled from the teacher) evaluated on
    the same faces and redraws, for teacher-vs-distillation comparisons."""
    from fiqa_sdk.quality import create_scorer
    from .devsuite import _scorer_objects
    from fiqa_sdk.eval.features import default_cache_dir

    t0 = time.perf_counter()
    kw = {**DEFAULT_PARAMS, **dict(params or {})}
    if weights is not None:
        kw["weights"] = weights
    teacher = create_scorer("diffiqa", **kw)
    ref = create_scorer("embedding-norm")
    wanted = [s for s in students if s != "embedding-norm"]
    extra_objs = _scorer_objects(wanted, None, None)[0] if wanted else []
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    timings: dict[str, float] = {}

    def extra(pool, faces):
        t = time.perf_counter()
        q = qualities_from_terms(_terms_for(teacher, faces, cache_dir / "lfw", progress, log))
        timings[pool] = round(time.perf_counter() - t, 1)
        return q

    subset = "teacher-quick" if quick else "teacher"
    data, info = prepare_sets(lfw_root, TEACHER_SETS, [ref, *extra_objs], subset=subset,
                              cache_dir=cache_dir, fmr=fmr, log=log, progress=progress,
                              extra_scores=extra)
    names = ["diffiqa-eq7", "diffiqa-restored", "diffiqa-noisy", "embedding-norm",
             *(o.name for o in extra_objs)]
    summary = summarize(data, names, limits, boot, seed, fmr=fmr)
    # restored vs noisy directly: the same redraws (same seed), paired differences
    vs_noisy = summarize(data, names, limits, boot, seed, reference="diffiqa-noisy", fmr=fmr)
    lim = max(limits)
    restored_vs_noisy = {
        s["set"]: {k: r.get(k) for k in (f"diff_vs_ref_{x:g}" for x in limits)
                   } | {k: r.get(k) for k in (f"diff_se_{x:g}" for x in limits)}
        for s in vs_noisy["sets"] for r in s["rows"] if r["scorer"] == "diffiqa-restored"}
    pooled = next((r for r in vs_noisy["pooled"]["rows"] if r["scorer"] == "diffiqa-restored"), {})
    restored_vs_noisy["pooled"] = {k: pooled.get(k) for x in limits
                                   for k in (f"diff_vs_ref_{x:g}", f"diff_se_{x:g}")}
    summary["restored_minus_noisy"] = restored_vs_noisy
    summary["verdict"] = None  # the check ranks terms, it does not pick a scorer
    del lim
    info["seconds"]["diffiqa_terms"] = timings
    info["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    return {"suite": "teacher-check", "quick": bool(quick), "fmr_target": fmr,
            "weights": str(weights) if weights is not None else "shipped",
            "weights_sha256": getattr(teacher, "weights_sha256", None),
            "diffiqa": {"t": teacher.t, "n": teacher.n, "fast": teacher.fast,
                        "flip": teacher.flip, "seed": teacher.seed, "eta": teacher.eta},
            "unet_passes_per_face": teacher.unet_passes_per_face, **info, "summary": summary}
