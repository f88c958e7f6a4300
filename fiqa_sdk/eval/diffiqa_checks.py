"""DifFIQA acceptance checks (issue 4): does the denoiser denoise, does the quality follow
degradation?

Two measurements on aligned LFW faces (RetinaFace, ``central`` face, ArcFace 5-point
alignment; detections through the cache of :func:`fiqa_sdk.eval.features.detect_all`):

a. **Denoiser PSNR.** For each forward level ``t`` (default 5 and 50): ``x_t = q_sample(x, t)``
   with seeded noise and ``x_hat`` the backward process exactly as the ``diffiqa`` scorer runs
   it (:meth:`~fiqa_sdk.quality.diffiqa.DifFIQAScorer.perturb` with ``n = 1``, no flip: DDIM
   ``eta = 1`` over :func:`~fiqa_sdk.diffusion.schedule.time_pairs`, ``t + 1`` UNet passes), and
   the fast mode's one-step x0 prediction ``D(x_t, t)``. Both use the same ``x_t`` (the scorer
   draws the forward noise first from each face's own generator). PSNR in dB on the uint8
   images (0..255) against the clean crop ``x``; reported: mean and median of
   ``PSNR(x_t, x)`` and ``PSNR(x_hat, x)`` and the fraction of faces with
   ``PSNR(x_hat, x) > PSNR(x_t, x)``. A denoiser that only copied its input would give
   ``PSNR(x_hat) ~ PSNR(x_t)``; identical images count as :data:`PSNR_MAX` dB.
b. **Quality follows degradation.** Three degraded copies of each aligned crop
   (:func:`degrade_copies`): Gaussian blur sigma 3 px, downscale to 16x16 and back (bilinear both
   ways), Gaussian noise sigma 25 grey levels (seeded). Each scorer scores the originals and the
   copies; reported per degradation: the fraction of faces whose degraded copy scores strictly
   lower than the original. Acceptance (issue 4): >= :data:`ACCEPT_FRACTION` for ``diffiqa`` on
   every degradation. The baselines ``embedding-norm`` and ``flip-consistency`` and any given
   regressor (``ediffiqa``, ``ediffiqa-free``, ``diffiqa-r``) are scored alike for comparison.

Used by ``fiqa-bench run diffiqa_acceptance``.
"""

from __future__ import annotations

import os
import platform
import random
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import EvaluationError, InvalidArgumentError
from ..quality import scorers_of_kind

#: Forward levels of the PSNR check.
DEFAULT_TS = (5, 50)
#: The degradations of the quality check, in table order.
DEGRADATIONS = ("blur", "downscale", "noise")
#: Their parameters (pixels of the 112x112 crop, grey levels of 0..255).
BLUR_SIGMA = 3.0
DOWNSCALE_SIZE = 16
NOISE_SIGMA = 25.0
#: Acceptance: DifFIQA scores the degraded copy lower for at least this fraction of faces.
ACCEPT_FRACTION = 0.9
#: PSNR of identical images (MSE 0), to keep means finite.
PSNR_MAX = 100.0
#: Baseline scorers compared in the degradation check.
BASELINES = ("embedding-norm", "flip-consistency")
#: Regressors that ``regressors=`` may name.
REGRESSORS = scorers_of_kind("regressor")
#: Quick mode (``--quick``): faces of the PSNR and of the degradation check, DifFIQA repeats.
QUICK_PSNR_FACES = 10
QUICK_QUALITY_FACES = 20
QUICK_N = 1


# --------------------------------------------------------------------------------------------
# shared helpers (also used by fiqa_sdk.eval.runtime)
# --------------------------------------------------------------------------------------------


def default_weights() -> Path | None:
    """``$FIQA_DIFFIQA_WEIGHTS`` if set, else None (the shipped denoiser)."""
    env = os.environ.get("FIQA_DIFFIQA_WEIGHTS")
    return Path(env) if env else None


def weights_info(weights: str | Path | None) -> dict:
    """Path, sha256 and training state of a DifFIQA denoiser (from its sidecar)."""
    from .._weights import read_sidecar, sidecar_path
    from ..quality.diffiqa import DEFAULT_WEIGHTS

    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    info: dict[str, Any] = {"path": str(path), "shipped": weights is None}
    if sidecar_path(path).is_file():
        meta = read_sidecar(path, verify=False, missing_ok=True)
        tr = meta.get("training", {})
        info.update(sha256=meta.get("sha256"), parameters=meta.get("parameters"),
                    preset=tr.get("preset"), steps=tr.get("steps", meta.get("steps")),
                    complete=meta.get("complete", tr.get("complete")),
                    export_step=tr.get("step"), init_from=tr.get("init_from"),
                    mix_T=tr.get("mix_T"), source=tr.get("source"))
    return info


def machine_info(threads: int | None = None) -> dict:
    """Threads, load average and library versions: timings on a shared machine need them."""
    import onnxruntime
    import torch

    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not on every platform
        load = None
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "onnx_threads": threads if threads else "onnxruntime default",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "loadavg": load,
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def parse_regressors(items: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["ediffiqa=PATH", ...]`` (or a mapping) -> ``{name: path}``, names checked."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else [i.partition("=")[::2] for i in items]
    out = {}
    for name, path in pairs:
        if name not in REGRESSORS or not path:
            raise EvaluationError(f"--regressor takes NAME=PATH with NAME one of {REGRESSORS}, "
                                  f"got {name}={path}")
        out[name] = str(path)
    return out


def lfw_sample(root: str | Path | None = None, n: int | None = None, seed: int = 0) -> list[str]:
    """A seeded random order of LFW's images (``root/images/<identity>/<file>.jpg``), the
    first ``n`` of it (all when None)."""
    from .protocols import default_lfw_root

    root = Path(root) if root else default_lfw_root()
    paths = sorted(str(p) for p in (root / "images").glob("*/*.jpg"))
    if not paths:
        raise EvaluationError(f"no LFW images under {root / 'images'}")
    random.Random(seed).shuffle(paths)
    return paths if n is None else paths[:n]


def aligned_lfw_faces(n: int, seed: int = 0, lfw_root: str | Path | None = None,
                      detector: Any = "retinaface", policy: str = "central",
                      cache_dir: str | Path | None = None, paths: Sequence[str] | None = None,
                      progress: bool = False) -> tuple[np.ndarray, list[str]]:
    """``n`` aligned 112x112 RGB crops of a seeded sample of LFW (or of ``paths``) and their
    files. Images without a detected face are skipped (the sample is drawn with a margin)."""
    from ..detect import create_detector
    from .features import _aligned_crops, detect_all

    det = create_detector(detector)
    pool = list(paths) if paths is not None else lfw_sample(lfw_root, None, seed)
    crops: list[np.ndarray] = []
    files: list[str] = []
    start, want = 0, n
    while len(crops) < n and start < len(pool):
        take = pool[start : start + want + max(2, want // 20)]
        start += len(take)
        faces = detect_all(take, det, policy=policy, cache_dir=cache_dir, progress=progress)
        rows = np.flatnonzero(faces.found)
        got, ok = _aligned_crops(faces.paths, faces.landmarks, rows)
        for c, i in zip(got, ok):
            if len(crops) < n:
                crops.append(c)
                files.append(faces.paths[i])
        want = n - len(crops)
    if len(crops) < n:
        raise EvaluationError(f"only {len(crops)} of the {n} faces asked for were found")
    return np.stack(crops), files


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of uint8 images ``(N, H, W, C)`` (peak 255); :data:`PSNR_MAX` for
    identical images."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        out = 10 * np.log10(255.0**2 / mse)
    return np.minimum(out, PSNR_MAX)


def degrade_copies(crops: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """The degraded copies of aligned crops, ``{name: (N, 112, 112, 3) uint8}``:

    - ``blur``: ``cv2.GaussianBlur`` sigma :data:`BLUR_SIGMA` px (kernel from sigma, reflect-101
      borders);
    - ``downscale``: bilinear resize to :data:`DOWNSCALE_SIZE` px and back (``INTER_LINEAR``
      both ways, so the down-sampling aliases);
    - ``noise``: i.i.d. Gaussian noise of sigma :data:`NOISE_SIGMA` grey levels
      (``default_rng(seed)``), rounded and clipped to 0..255.
    """
    import cv2

    crops = np.asarray(crops, np.uint8)
    size = crops.shape[1]
    blur = np.stack([cv2.GaussianBlur(c, (0, 0), BLUR_SIGMA) for c in crops])
    down = np.stack([cv2.resize(cv2.resize(c, (DOWNSCALE_SIZE, DOWNSCALE_SIZE),
                                           interpolation=cv2.INTER_LINEAR),
                                (size, size), interpolation=cv2.INTER_LINEAR) for c in crops])
    rng = np.random.default_rng(seed)
    noise = np.clip(np.rint(crops + rng.normal(0.0, NOISE_SIGMA, crops.shape)), 0, 255)
    return {"blur": blur, "downscale": down, "noise": noise.astype(np.uint8)}


# --------------------------------------------------------------------------------------------
# a. denoiser PSNR
# --------------------------------------------------------------------------------------------


def denoiser_psnr(model, crops: np.ndarray, ts: Sequence[int] = DEFAULT_TS, seed: int = 0,
                  eta: float = 1.0, batch_size: int = 40, embedder: Any = None,
                  modes: Sequence[str] = ("ddim", "one-step"),
                  log: Callable | None = None) -> list[dict]:
    """PSNR of the noisy and restored copies against the clean crops (see the module doc).

    ``model``: the denoiser (a UNet or a weights path). ``embedder`` is only needed to build
    the scorer objects (pass the one you have to avoid loading ArcFace again). Returns one row
    per ``(t, mode)``.
    """
    import torch

    from ..quality.diffiqa import DifFIQAScorer, load_denoiser

    if not isinstance(model, torch.nn.Module):
        model = load_denoiser(model)[0]
    if embedder is None:
        from ..embed import create_embedder

        embedder = create_embedder("arcface")
    rows = []
    for t in ts:
        for mode in modes:
            if mode not in ("ddim", "one-step"):
                raise InvalidArgumentError(f"mode must be 'ddim' or 'one-step', got {mode!r}")
            sc = DifFIQAScorer(weights=model, embedder=embedder, t=t, n=1, flip=False, seed=seed,
                               eta=eta, fast=mode == "one-step", batch_size=batch_size)
            t0 = time.perf_counter()
            x_t, x_hat = [], []
            for i in range(0, len(crops), batch_size):
                a, b = sc.perturb(crops[i : i + batch_size])
                x_t.append(a[:, 0])
                x_hat.append(b[:, 0])
            secs = time.perf_counter() - t0
            p_t = psnr(np.concatenate(x_t), crops)
            p_h = psnr(np.concatenate(x_hat), crops)
            row = {"t": int(t), "mode": mode, "unet_passes": sc.unet_passes_per_face,
                   "faces": len(crops),
                   "psnr_noisy_mean": float(p_t.mean()), "psnr_noisy_median": float(np.median(p_t)),
                   "psnr_restored_mean": float(p_h.mean()),
                   "psnr_restored_median": float(np.median(p_h)),
                   "gain_median_db": float(np.median(p_h - p_t)),
                   "frac_improved": float(np.mean(p_h > p_t)),
                   "seconds": round(secs, 2)}
            rows.append(row)
            if log:
                log(f"PSNR t={t} {mode}: noisy {row['psnr_noisy_median']:.2f} dB -> restored "
                    f"{row['psnr_restored_median']:.2f} dB (median), improved "
                    f"{row['frac_improved']:.0%} ({secs:.1f} s)")
    return rows


# --------------------------------------------------------------------------------------------
# b. quality follows degradation
# --------------------------------------------------------------------------------------------


def quality_vs_degradation(crops: np.ndarray, scorers: Mapping[str, Any], seed: int = 0,
                           copies: Mapping[str, np.ndarray] | None = None,
                           log: Callable | None = None) -> list[dict]:
    """For each scorer (``{label: Scorer}``): the fraction of faces whose degraded copy scores
    strictly lower than the original, per degradation of :func:`degrade_copies`."""
    copies = degrade_copies(crops, seed) if copies is None else copies
    rows = []
    for label, sc in scorers.items():
        t0 = time.perf_counter()
        q0 = sc.score(crops)
        qd = {name: sc.score(img) for name, img in copies.items()}
        secs = time.perf_counter() - t0
        row = {"scorer": label, "name": getattr(sc, "name", label), "faces": len(crops),
               "frac_lower": {k: float(np.mean(v < q0)) for k, v in qd.items()},
               "frac_ties": {k: float(np.mean(v == q0)) for k, v in qd.items()},
               "mean_score": {"original": float(np.mean(q0)),
                              **{k: float(np.mean(v)) for k, v in qd.items()}},
               "median_drop": {k: float(np.median(q0 - v)) for k, v in qd.items()},
               "seconds": round(secs, 2),
               "seconds_per_image": round(secs / (len(crops) * (1 + len(qd))), 4)}
        rows.append(row)
        if log:
            lower = ", ".join(f"{k} {v:.0%}" for k, v in row["frac_lower"].items())
            log(f"{label}: lower after {lower} ({secs:.1f} s)")
    return rows


# --------------------------------------------------------------------------------------------
# the whole check
# --------------------------------------------------------------------------------------------


def run_acceptance(weights: str | Path | None = None, psnr_faces: int = 200,
                   quality_faces: int = 200, ts: Sequence[int] = DEFAULT_TS, t: int = 5,
                   n: int | None = 10, fast: bool = False,
                   regressors: Mapping[str, str] | None = None,
                   baselines: Sequence[str] = BASELINES, seed: int = 0,
                   lfw_root: str | Path | None = None, cache_dir: str | Path | None = None,
                   threads: int | None = None, batch_size: int = 40, quick: bool = False,
                   crops: np.ndarray | None = None, progress: bool = False,
                   log: Callable | None = None) -> dict:
    """Run both checks; returns a JSON-able dict (see :func:`markdown`).

    ``crops``: aligned faces to use instead of LFW (tests). ``threads``: torch threads during
    the run and onnxruntime threads of the models built here. ``n=None``: the scorer's
    default (10, fast mode 2).
    """
    import torch

    from ..embed import create_embedder
    from ..quality import create_scorer
    from ..quality.diffiqa import DifFIQAScorer, load_denoiser

    t_start = time.perf_counter()
    regressors = parse_regressors(regressors)
    prev_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        machine = machine_info(threads)
        model, _ = load_denoiser(weights)
        ort = {"threads": int(threads)} if threads else {}
        emb = create_embedder("arcface", **ort)
        need = max(psnr_faces, quality_faces)
        files: list[str] = []
        if crops is None:
            from .features import default_cache_dir

            if cache_dir is None:
                cache_dir = default_cache_dir() / "lfw"
            from ..detect import create_detector

            crops, files = aligned_lfw_faces(need, seed, lfw_root,
                                             detector=create_detector("retinaface", **ort),
                                             cache_dir=cache_dir, progress=progress)
        elif len(crops) < need:
            raise EvaluationError(f"{need} faces needed, {len(crops)} given")
        if log:
            log(f"{len(crops)} aligned faces")
        psnr_rows = denoiser_psnr(model, crops[:psnr_faces], ts, seed=seed, batch_size=batch_size,
                                  embedder=emb, log=log) if psnr_faces else []
        scorers: dict[str, Any] = {}
        dq = DifFIQAScorer(weights=model, embedder=emb, t=t, n=n, fast=fast, seed=seed,
                           batch_size=batch_size)
        scorers["diffiqa"] = dq
        for b in baselines:
            scorers[b] = create_scorer(b, embedder=emb)
        for name, path in regressors.items():
            kw = {"threads": int(threads)} if threads else {}
            scorers[name] = create_scorer(name, weights=path, precision="fp32", **kw)
        q_rows = quality_vs_degradation(crops[:quality_faces], scorers, seed=seed,
                                        log=log) if quality_faces else []
        verdict = None
        if q_rows:
            fr = q_rows[0]["frac_lower"]
            verdict = {"scorer": "diffiqa", "threshold": ACCEPT_FRACTION,
                       "pass": {k: bool(v >= ACCEPT_FRACTION) for k, v in fr.items()}}
            verdict["all_pass"] = all(verdict["pass"].values())
        machine["loadavg_end"] = machine_info(threads)["loadavg"]
        return {
            "benchmark": "diffiqa-acceptance",
            "quick": bool(quick),
            "seed": seed,
            "weights": weights_info(weights),
            "machine": machine,
            "diffiqa": {"t": dq.t, "n": dq.n, "fast": dq.fast, "flip": dq.flip, "eta": dq.eta,
                        "unet_passes_per_face": dq.unet_passes_per_face},
            "degradations": {"blur": {"sigma_px": BLUR_SIGMA},
                             "downscale": {"size_px": DOWNSCALE_SIZE, "interpolation": "bilinear"},
                             "noise": {"sigma_grey_levels": NOISE_SIGMA}},
            "psnr": psnr_rows,
            "quality": q_rows,
            "acceptance": verdict,
            "files": [str(f) for f in files],
            "seconds": round(time.perf_counter() - t_start, 1),
        }
    finally:
        torch.set_num_threads(prev_threads)


def markdown(result: dict) -> str:
    """The two tables of :func:`run_acceptance`'s result."""
    out = []
    if result["psnr"]:
        nf = result["psnr"][0]["faces"]
        out += [f"Denoiser PSNR on {nf} aligned faces (dB, uint8 images vs the clean crop)", "",
                "| t | backward | UNet passes | PSNR(x_t) mean / median "
                "| PSNR(x_hat) mean / median | median gain | x_hat better |",
                "|---|---|---|---|---|---|---|"]
        for r in result["psnr"]:
            out.append(f"| {r['t']} | {r['mode']} | {r['unet_passes']} | "
                       f"{r['psnr_noisy_mean']:.2f} / {r['psnr_noisy_median']:.2f} | "
                       f"{r['psnr_restored_mean']:.2f} / {r['psnr_restored_median']:.2f} | "
                       f"{r['gain_median_db']:+.2f} | {100 * r['frac_improved']:.0f}% |")
        out.append("")
    if result["quality"]:
        d = result["diffiqa"]
        degs = list(result["quality"][0]["frac_lower"])
        nf = result["quality"][0]["faces"]
        out += [f"Faces whose degraded copy scores lower than the original ({nf} faces; "
                f"diffiqa t={d['t']}, n={d['n']}{', fast' if d['fast'] else ''}; acceptance "
                f">= {100 * ACCEPT_FRACTION:.0f}%)", "",
                "| scorer | " + " | ".join(degs) + " | s/image |",
                "|---|" + "---|" * (len(degs) + 1)]
        for r in result["quality"]:
            cells = [f"{100 * r['frac_lower'][k]:.1f}%" for k in degs]
            out.append(f"| {r['scorer']} | " + " | ".join(cells)
                       + f" | {r['seconds_per_image']:.3f} |")
        v = result["acceptance"]
        if v:
            out += ["", "Acceptance (diffiqa): " + ", ".join(
                f"{k} {'pass' if ok else 'FAIL'}" for k, ok in v["pass"].items())]
    return "\n".join(out)


__all__ = ["run_acceptance", "denoiser_psnr", "quality_vs_degradation", "degrade_copies", "psnr",
           "aligned_lfw_faces", "lfw_sample", "markdown", "ACCEPT_FRACTION", "DEGRADATIONS"]
