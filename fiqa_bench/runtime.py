"""Runtime breakdown of the quality pipeline per face (issue 7; DifFIQA supplementary Table 4).

One *run* measures every stage side by side on the same ``images`` LFW files (all with a
detected face), and the result is the per-face median over ``repeats`` runs:

- the pipeline: ``decode`` (``cv2.imdecode`` of the JPEG bytes, read from disk beforehand, + BGR
  to RGB), ``detect`` (RetinaFace + the ``central`` face policy), ``align`` (5-point ArcFace
  similarity warp), ``embed`` (ArcFace MobileFaceNet, onnxruntime, raw embedding + L2 norm);
- DifFIQA, default (``t = 5``, ``n = 10``: 120 UNet passes per face) and fast mode (one-step x0
  prediction, ``n = 2``: 4 passes): ``forward`` (drawing the per-face noise + ``q_sample``),
  ``backward`` (the DDIM chain, or one x0 prediction; includes the uint8 conversion of the
  copies), ``quality`` (embedding the original, mirror, noisy and restored copies + cosines, i.e.
  the scorer's own ``score_copies`` on the perturbed copies). The stages are the scorer's public
  phases, ``forward_noise`` / ``restore`` / ``score_copies`` (:func:`diffiqa_staged`, checked to
  give the scorer's scores);
- the baselines ``embedding-norm`` and ``flip-consistency`` and each regressor given
  (``ediffiqa``, ``ediffiqa-free``, ``diffiqa-r``): ``score`` = one ``Scorer.score`` call on the
  aligned crops (one forward pass per face, batches of ``regressor_batch``);
- ``ediffiqa-free (head)``: the cost on top of the embedding the gate already computed (the MLP
  head on the raw ArcFace embedding, :meth:`RegressorScorer.score_embeddings`);
- the :class:`~fiqa_sdk.QualityGate` end to end: ``gate.filter(files, discard=0.2)`` on
  ``gate_images`` files for each scorer (file read + decode + detect + align + embed + score).

Regressors may also be timed with ``regressor_backends=("torch", "onnxruntime")``: a row
``NAME@onnxruntime`` per regressor (the same model run by onnxruntime, see
:mod:`fiqa_sdk.quality.regressor_onnx`), with its own gate timing.

:func:`run_regressor_throughput` (``fiqa-bench runtime --throughput``) times the regressors
alone on batched aligned crops: every (backend, threads) variant at every batch size, side by
side in interleaved rounds, with each variant's max abs score difference from torch on 1 thread.

Per scorer: ``scorer_ms`` (its stages), ``end_to_end_ms`` = decode + detect + align + embed +
``scorer_ms`` (the modular pipeline, which embeds once for templates and again inside the
embedding-based scorers), faces/s, and speed ratios against DifFIQA (default and fast).
The JSON records threads and the load average, since absolute times on a shared machine are
only comparable within one run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from fiqa_sdk.errors import EvaluationError, InvalidArgumentError

from .diffiqa_checks import lfw_sample, machine_info, parse_regressors, weights_info

PIPELINE_STAGES = ("decode", "detect", "align", "embed")
DIFFIQA_STAGES = ("forward", "backward", "quality")
#: Defaults of the full and the quick mode.
DEFAULT_IMAGES, DEFAULT_REPEATS, DEFAULT_N = 20, 5, 10
QUICK_IMAGES, QUICK_REPEATS, QUICK_GATE_IMAGES = 2, 1, 1
#: ``--quick``: DifFIQA repeats (``--n``; the same stages as the default 10, fewer UNet passes)
QUICK_N = 2
GATE_DISCARD = 0.2
#: Defaults of the regressor throughput mode (full / quick).
THROUGHPUT_IMAGES, THROUGHPUT_ROUNDS, THROUGHPUT_BATCHES = 64, 7, (1, 16, 64)
QUICK_THROUGHPUT_IMAGES, QUICK_THROUGHPUT_ROUNDS, QUICK_THROUGHPUT_BATCHES = 16, 2, (1, 16)
THROUGHPUT_BACKENDS, THROUGHPUT_THREADS = ("torch", "onnxruntime"), (1, 2)
#: Backend names ``run_regressor_throughput`` takes: scorer ``(backend, precision)``.
#: ``onnxruntime-int8``: the shipped int8 graph (regressors without one are refused).
THROUGHPUT_VARIANTS = {"torch": ("torch", "fp32"), "onnxruntime": ("onnxruntime", "fp32"),
                       "onnxruntime-int8": ("onnxruntime", "int8")}


def _check_variants(backends: Sequence[str], what: str) -> list[str]:
    """``backends`` as a list if every one is a key of :data:`THROUGHPUT_VARIANTS`, else
    :class:`~fiqa_sdk.errors.InvalidArgumentError` (``what`` names them in the message)."""
    unknown = [b for b in backends if b not in THROUGHPUT_VARIANTS]
    if unknown:
        raise InvalidArgumentError(f"{what} must be among {list(THROUGHPUT_VARIANTS)}, "
                                   f"got {unknown}")
    return list(backends)


def _variant_scorer(name: str, path: str, variant: str, **kw: Any):
    """Regressor ``name`` (weights ``path``) for a :data:`THROUGHPUT_VARIANTS` key: its backend
    and, unless fp32, its precision (InvalidArgumentError, e.g. no shipped int8 graph)."""
    from fiqa_sdk.quality import create_scorer

    backend, precision = THROUGHPUT_VARIANTS[variant]
    if precision != "fp32":
        kw["precision"] = precision
    return create_scorer(name, weights=path, backend=backend, **kw)


class StageTimer:
    """Accumulates wall seconds per stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def diffiqa_staged(scorer, crops: np.ndarray, timer: StageTimer, prefix: str = "") -> np.ndarray:
    """A :class:`~fiqa_sdk.quality.diffiqa.DifFIQAScorer`'s scores of validated crops, with the
    forward / backward / quality phases timed separately: the scorer's own public phases
    (:meth:`~fiqa_sdk.quality.diffiqa.DifFIQAScorer.forward_noise`, ``restore``,
    ``score_copies``) on the same chunks, so the scores are ``scorer.score``'s."""
    chunk = max(1, scorer.batch_size // scorer.copies)
    out = np.empty(len(crops))
    for i in range(0, len(crops), chunk):
        part = crops[i : i + chunk]
        with timer(prefix + "forward"):
            x_t, backward_noise = scorer.forward_noise(part)
        with timer(prefix + "backward"):
            noisy, restored = scorer.restore(x_t, backward_noise)
        with timer(prefix + "quality"):
            out[i : i + len(part)] = scorer.score_copies(part, noisy, restored)
    return np.clip(out, -1.0, 1.0)


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def run_runtime_bench(weights: str | Path | None = None,
                      regressors: Mapping[str, str] | Sequence[str] | None = None,
                      images: int = DEFAULT_IMAGES, repeats: int = DEFAULT_REPEATS,
                      gate_images: int | None = None, t: int = 5, n: int = DEFAULT_N,
                      fast_n: int = 2,
                      threads: int | None = None, regressor_batch: int = 64,
                      diffiqa_batch: int = 40, lfw_root: str | Path | None = None,
                      paths: Sequence[str | Path] | None = None, seed: int = 0,
                      gate: bool = True, quick: bool = False,
                      regressor_backends: Sequence[str] = ("torch",),
                      diffiqa_unet_batches: Sequence[int] = (),
                      log: Callable[[str], None] | None = None) -> dict:
    """Measure the runtime breakdown (see the module doc); returns a JSON-able dict.

    ``paths``: image files to use instead of a seeded LFW sample (the first ``images`` of them
    with a detected face). ``threads``: torch threads during the run and the onnxruntime threads
    of the models built here (None: leave torch's setting and onnxruntime's default).
    ``gate=False`` skips the QualityGate timing. ``regressor_backends``: each regressor is
    timed with each backend (rows ``NAME`` for torch, ``NAME@onnxruntime``; the onnxruntime
    rows run ``threads`` single-threaded inferences at once, onnxruntime's default if None).
    ``diffiqa_unet_batches``: extra default-mode DifFIQA rows ``diffiqa@unet_batch=B`` (the
    UNet run on B samples per pass instead of the scorer's default), timed side by side.
    """
    import cv2
    import torch

    from fiqa_sdk.align import align_face
    from fiqa_sdk.detect import create_detector, select_faces
    from fiqa_sdk.embed import create_embedder
    from fiqa_sdk.embed.base import l2_normalize
    from fiqa_sdk.gate import QualityGate
    from fiqa_sdk.quality import create_scorer
    from fiqa_sdk.quality.diffiqa import DifFIQAScorer, load_denoiser

    if images < 1 or repeats < 1:
        raise EvaluationError("images and repeats must be >= 1")
    gate_images = images if gate_images is None else min(int(gate_images), images)
    if gate and gate_images < 1:
        raise EvaluationError("gate_images must be >= 1 (or gate=False)")
    regressors = parse_regressors(regressors)
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    prev_threads, prev_cv2 = torch.get_num_threads(), cv2.getNumThreads()
    if threads:
        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))
    try:
        machine = machine_info(threads)
        ort = {"threads": int(threads)} if threads else {}
        det = create_detector("retinaface", **ort)
        emb = create_embedder("arcface", **ort)
        model, _ = load_denoiser(weights)
        configs: dict[str, Any] = {
            "diffiqa": DifFIQAScorer(weights=model, embedder=emb, t=t, n=n, seed=seed,
                                     batch_size=diffiqa_batch),
            "diffiqa-fast": DifFIQAScorer(weights=model, embedder=emb, t=t, n=fast_n, fast=True,
                                          seed=seed, batch_size=diffiqa_batch),
            **{f"diffiqa@unet_batch={b}": DifFIQAScorer(
                weights=model, embedder=emb, t=t, n=n, seed=seed, batch_size=diffiqa_batch,
                unet_batch=b) for b in diffiqa_unet_batches},
            "embedding-norm": create_scorer("embedding-norm", embedder=emb),
            "flip-consistency": create_scorer("flip-consistency", embedder=emb),
        }
        reg_backends = _check_variants(regressor_backends, "regressor backends")
        for name, path in regressors.items():
            for b in reg_backends:
                try:
                    configs[name if b == "torch" else f"{name}@{b}"] = _variant_scorer(
                        name, path, b, batch_size=regressor_batch, **ort)
                except InvalidArgumentError as exc:  # e.g. no shipped int8 graph: no row
                    if THROUGHPUT_VARIANTS[b][1] == "fp32":
                        raise
                    log(f"no {name}@{b} row: {exc}")

        # the images: the first `images` files of the sample with a detected face
        pool = [str(p) for p in paths] if paths is not None else lfw_sample(lfw_root, None, seed)
        files: list[str] = []
        blobs: list[bytes] = []
        for p in pool:
            data = Path(p).read_bytes()
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                continue
            if select_faces(det.detect(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)), "central", img.shape):
                files.append(p)
                blobs.append(data)
            if len(files) == images:
                break
        if len(files) < images:
            raise EvaluationError(f"only {len(files)} of {images} images have a detected face")
        gates = {name: QualityGate(detector=det, embedder=emb, scorer=sc, face_policy="central",
                                   batch_size=max(gate_images, 1))
                 for name, sc in configs.items()} if gate else {}

        def one_run(k: int, skip: tuple[str, ...] = ()) -> dict[str, float]:
            """All stages on the first k images; seconds per stage name."""
            tm = StageTimer()
            decoded = []
            with tm("decode"):
                for b in blobs[:k]:
                    bgr = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
                    decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            found = []
            with tm("detect"):
                for img in decoded:
                    found.append(select_faces(det.detect(img), "central", img.shape)[0])
            with tm("align"):
                crops = np.stack([align_face(img, f) for img, f in zip(decoded, found)])
            with tm("embed"):
                raw = emb.embed_raw(crops)
                l2_normalize(raw)
            for name, sc in configs.items():
                if name in skip:
                    continue
                if isinstance(sc, DifFIQAScorer):
                    diffiqa_staged(sc, crops, tm, prefix=name + ":")
                else:
                    with tm(name + ":score"):
                        sc.score(crops)
                    if name == "ediffiqa-free":
                        with tm("ediffiqa-free (head):head"):
                            sc.score_embeddings(raw)
            kg = min(k, gate_images)
            for name, g in gates.items():
                if name in skip:
                    continue
                with tm(name + ":gate"):
                    res = g.filter(files[:kg], discard=GATE_DISCARD)
                if len(res.reports) != kg:
                    raise EvaluationError(
                        f"gate {name}: {len(res.reports)} reports for {kg} images")
            return tm.seconds

        # warm-up (session / oneDNN primitive creation) on one image, the UNet at every batch
        # shape the runs will use
        log("warm-up")
        slow = tuple(k for k, v in configs.items()
                     if isinstance(v, DifFIQAScorer) and not v.fast)
        for sc in (v for v in configs.values() if isinstance(v, DifFIQAScorer)):
            chunk = max(1, sc.batch_size // sc.copies)
            sizes = {min(chunk, k) * sc.copies for k in (images, gate_images) if k}
            sizes |= {(k % chunk) * sc.copies for k in (images, gate_images) if k % chunk}
            for s in sorted(sizes):
                with torch.inference_mode():
                    sc.denoise(torch.zeros(s, 3, 112, 112), torch.full((s,), max(sc.t - 1, 0)))
        one_run(1, skip=slow)  # their UNet shapes are warm; a full face takes seconds

        runs = []
        for r in range(repeats):
            w0 = time.perf_counter()
            runs.append(one_run(images))
            log(f"run {r + 1}/{repeats}: {time.perf_counter() - w0:.1f} s")
        machine["loadavg_end"] = machine_info(threads)["loadavg"]
    finally:
        torch.set_num_threads(prev_threads)
        cv2.setNumThreads(prev_cv2)

    def per_face_ms(key: str, count: int = images) -> float:
        return _median([run[key] for run in runs]) * 1000.0 / count

    pipeline = {f"{s}_ms": per_face_ms(s) for s in PIPELINE_STAGES}
    pipeline_per_run = [sum(run[s] for s in PIPELINE_STAGES) for run in runs]
    pipeline["total_ms"] = _median(pipeline_per_run) * 1000.0 / images
    rows = []
    labels = list(configs) + (["ediffiqa-free (head)"] if "ediffiqa-free" in configs else [])
    for name in labels:
        keys = sorted({k for k in runs[0] if k.startswith(name + ":") and not k.endswith(":gate")},
                      key=lambda k: list(runs[0]).index(k))
        stages = {k.split(":", 1)[1]: per_face_ms(k) for k in keys}
        scorer_runs = [sum(run[k] for k in keys) for run in runs]
        scorer_ms = _median(scorer_runs) * 1000.0 / images
        e2e_ms = _median([p + s for p, s in zip(pipeline_per_run, scorer_runs)]) * 1000.0 / images
        sc = configs.get(name.split(" ")[0])
        row: dict[str, Any] = {"scorer": name, "stages_ms": stages, "scorer_ms": scorer_ms,
                               "scorer_faces_per_s": 1000.0 / scorer_ms if scorer_ms > 0 else None,
                               "end_to_end_ms": e2e_ms, "end_to_end_s": e2e_ms / 1000.0,
                               "faces_per_s": 1000.0 / e2e_ms}
        if isinstance(sc, DifFIQAScorer):
            row.update(t=sc.t, n=sc.n, fast=sc.fast, unet_batch=sc.unet_batch,
                       unet_passes_per_face=sc.unet_passes_per_face,
                       fr_passes_per_face=2 * sc.copies + (2 if sc.flip else 1))
        if name + ":gate" in runs[0]:
            g_ms = per_face_ms(name + ":gate", gate_images)
            row.update(gate_ms=g_ms, gate_faces_per_s=1000.0 / g_ms)
        rows.append(row)
    by = {r["scorer"]: r for r in rows}
    ratios = []
    for r in rows:
        ratios.append({
            "scorer": r["scorer"],
            "speedup_vs_diffiqa": by["diffiqa"]["scorer_ms"] / r["scorer_ms"],
            "speedup_vs_diffiqa_fast": by["diffiqa-fast"]["scorer_ms"] / r["scorer_ms"],
            "end_to_end_speedup_vs_diffiqa": by["diffiqa"]["end_to_end_ms"] / r["end_to_end_ms"],
            "gate_speedup_vs_diffiqa": (by["diffiqa"]["gate_ms"] / r["gate_ms"]
                                        if "gate_ms" in r and "gate_ms" in by["diffiqa"] else None),
        })
    return {
        "benchmark": "runtime",
        "quick": bool(quick),
        "images": images,
        "repeats": repeats,
        "regressor_backends": list(regressor_backends),
        "gate_images": gate_images if gate else 0,
        "gate_discard": GATE_DISCARD,
        "seed": seed,
        "weights": weights_info(weights),
        "regressors": regressors,
        "machine": machine,
        "pipeline": pipeline,
        "scorers": rows,
        "ratios": ratios,
        "runs_seconds": runs,
        "files": files,
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def markdown(result: dict) -> str:
    """Stage table, scorer table and ratio table of :func:`run_runtime_bench`'s result."""
    m = result["machine"]
    p = result["pipeline"]
    out = [f"{result['images']} LFW images, per-face median of {result['repeats']} runs; torch "
           f"threads {m['torch_threads']}, onnxruntime threads {m['onnx_threads']}, load average "
           f"{m['loadavg']} -> {m.get('loadavg_end')}", "",
           "| stage | ms/face |", "|---|---|"]
    for s in PIPELINE_STAGES:
        out.append(f"| {s} | {p[s + '_ms']:.1f} |")
    out.append(f"| pipeline total | {p['total_ms']:.1f} |")
    for r in result["scorers"]:
        for s, v in r["stages_ms"].items():
            out.append(f"| {r['scorer']}: {s} | {v:.1f} |")
    out += ["", "| scorer | UNet passes/face | scorer ms/face | end-to-end s/face | faces/s "
            "| gate s/face | gate faces/s |", "|---|---|---|---|---|---|---|"]
    for r in result["scorers"]:
        g = (f"{r['gate_ms'] / 1000:.3f} | {r['gate_faces_per_s']:.2f}" if "gate_ms" in r
             else "- | -")
        out.append(f"| {r['scorer']} | {r.get('unet_passes_per_face', 0)} | {r['scorer_ms']:.1f} | "
                   f"{r['end_to_end_s']:.3f} | {r['faces_per_s']:.2f} | {g} |")
    out += ["", "| scorer | speed-up vs DifFIQA (scorer) | vs DifFIQA fast (scorer) "
            "| vs DifFIQA (end to end) | vs DifFIQA (gate) |", "|---|---|---|---|---|"]
    for r in result["ratios"]:
        g = "-" if r["gate_speedup_vs_diffiqa"] is None else f"{r['gate_speedup_vs_diffiqa']:.1f}x"
        out.append(f"| {r['scorer']} | {r['speedup_vs_diffiqa']:.1f}x | "
                   f"{r['speedup_vs_diffiqa_fast']:.2f}x | "
                   f"{r['end_to_end_speedup_vs_diffiqa']:.1f}x | {g} |")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Regressor throughput: backends x threads x batch sizes
# --------------------------------------------------------------------------------------------

def process_priority() -> dict:
    """The process's nice value and (Linux) scheduler autogroup: with autogroups on, nice only
    ranks processes of one session, so timings on a shared machine depend on both."""
    import os

    out: dict[str, Any] = {"nice": os.nice(0) if hasattr(os, "nice") else None}
    try:
        out["autogroup"] = Path("/proc/self/autogroup").read_text().strip()
    except OSError:
        pass
    return out


def run_regressor_throughput(regressors: Mapping[str, str] | Sequence[str] | None = None,
                             backends: Sequence[str] = THROUGHPUT_BACKENDS,
                             threads: Sequence[int] = THROUGHPUT_THREADS,
                             batch_sizes: Sequence[int] = THROUGHPUT_BATCHES,
                             images: int = THROUGHPUT_IMAGES, rounds: int = THROUGHPUT_ROUNDS,
                             lfw_root: str | Path | None = None,
                             paths: Sequence[str | Path] | None = None, seed: int = 0,
                             cache_dir: str | Path | None = None, quick: bool = False,
                             log: Callable[[str], None] | None = None) -> dict:
    """Faces/s of each regressor per (backend, threads) variant and batch size.

    ``images`` aligned LFW crops (RetinaFace, central face; or of ``paths``) are scored whole
    by every variant with its ``batch_size`` set to each of ``batch_sizes``; per batch size the
    variants run in turn, ``rounds`` times (after one warm-up call each), and the result is the
    per-face median. ``threads``: the scorer's ``threads=`` (torch intra-op threads; for
    onnxruntime that many single-threaded inferences at once). Each variant's scores are
    compared with the torch 1-thread scores of the same crops (max abs difference).
    Regressors default to the shipped ``ediffiqa``. Returns a JSON-able dict.
    """
    import torch

    from fiqa_sdk.quality import create_scorer
    from fiqa_sdk.quality.ediffiqa import shipped_weights
    from .diffiqa_checks import aligned_lfw_faces

    if images < 1 or rounds < 1 or not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise EvaluationError("images, rounds and batch sizes must be >= 1")
    backends = _check_variants(backends, "backends")
    threads = [int(t) for t in threads]
    if not threads or any(t < 1 for t in threads):
        raise EvaluationError(f"threads must be ints >= 1, got {threads}")
    regressors = parse_regressors(regressors)
    if not regressors:
        w = shipped_weights("ediffiqa")
        if w is None:
            raise EvaluationError("no regressor given and ediffiqa's weights are not shipped")
        regressors = {"ediffiqa": str(w)}
    log = log or (lambda msg: None)
    t_start = time.perf_counter()
    crops, files = aligned_lfw_faces(images, seed=seed, lfw_root=lfw_root, cache_dir=cache_dir,
                                     paths=[str(p) for p in paths] if paths is not None else None)
    prev_threads = torch.get_num_threads()
    try:
        variants: dict[tuple[str, str, int], Any] = {}
        for name, path in regressors.items():
            for b in backends:
                for t in threads:
                    log(f"building {name} {b} threads={t}")
                    try:
                        variants[(name, b, t)] = _variant_scorer(name, path, b, threads=t)
                    except InvalidArgumentError as exc:  # e.g. no shipped int8 graph
                        raise EvaluationError(f"{name} with backend {b}: {exc}") from None
        reference: dict[str, np.ndarray] = {}
        for name, path in regressors.items():
            ref = variants.get((name, "torch", 1)) or create_scorer(name, weights=path, threads=1, backend="torch")
            ref.batch_size = max(int(b) for b in batch_sizes)
            reference[name] = ref.score(crops)
        per_face: dict[tuple[str, str, int, int], list[float]] = {}
        diffs: dict[tuple[str, str, int], float] = {}
        for bs in [int(b) for b in batch_sizes]:
            for key, sc in variants.items():
                sc.batch_size = bs
                sc.score(crops[:bs])  # warm-up (sessions, buffers) at this batch shape
            for r in range(rounds):
                for key, sc in variants.items():
                    t0 = time.perf_counter()
                    q = sc.score(crops)
                    per_face.setdefault((*key, bs), []).append((time.perf_counter() - t0) / len(crops))
                    diffs[key] = max(diffs.get(key, 0.0),
                                     float(np.abs(q - reference[key[0]]).max()))
            log(f"batch {bs}: {rounds} rounds done")
        loadavg_end = machine_info()["loadavg"]
    finally:
        torch.set_num_threads(prev_threads)
    rows = []
    for (name, b, t, bs), secs in per_face.items():
        ms = _median(secs) * 1000.0
        rows.append({"scorer": name, "backend": b, "threads": t, "batch": bs,
                     "ms_per_face": ms, "faces_per_s": 1000.0 / ms,
                     "max_abs_diff_vs_torch_1_thread": diffs[(name, b, t)]})
    base = {(r["scorer"], r["batch"]): r["ms_per_face"] for r in rows
            if r["backend"] == "torch" and r["threads"] == 1}
    for r in rows:
        ref_ms = base.get((r["scorer"], r["batch"]))
        r["speedup_vs_torch_1_thread"] = ref_ms / r["ms_per_face"] if ref_ms else None
    machine = machine_info()
    machine.update(process_priority(), loadavg_end=loadavg_end)
    return {"benchmark": "regressor-throughput", "quick": bool(quick), "images": len(crops),
            "rounds": rounds, "batch_sizes": [int(b) for b in batch_sizes],
            "backends": backends, "threads": threads, "regressors": regressors, "seed": seed,
            "machine": machine, "rows": rows, "files": files,
            "seconds": round(time.perf_counter() - t_start, 1)}


def throughput_markdown(result: dict) -> str:
    """The table of :func:`run_regressor_throughput`'s result."""
    m = result["machine"]
    out = [f"{result['images']} aligned LFW crops, per-face median of {result['rounds']} "
           f"interleaved rounds; load average {m['loadavg']} -> {m.get('loadavg_end')}, nice "
           f"{m.get('nice')}, {m.get('autogroup', 'no autogroup')}", "",
           "| scorer | backend | threads | batch | ms/face | faces/s | vs torch 1 thread "
           "| max abs diff vs torch |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(result["rows"], key=lambda r: (r["scorer"], r["batch"], r["backend"] != "torch",
                                                   r["backend"], r["threads"])):
        sp = "-" if r["speedup_vs_torch_1_thread"] is None else f"{r['speedup_vs_torch_1_thread']:.2f}x"
        out.append(f"| {r['scorer']} | {r['backend']} | {r['threads']} | {r['batch']} | "
                   f"{r['ms_per_face']:.2f} | {r['faces_per_s']:.1f} | {sp} | "
                   f"{r['max_abs_diff_vs_torch_1_thread']:.1e} |")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# ``fiqa-bench runtime``
# --------------------------------------------------------------------------------------------


def add_cli_parser(bench_subparsers) -> None:
    """Register ``fiqa-bench runtime`` on the suites' sub-parsers."""
    r = bench_subparsers.add_parser(
        "runtime", help="per-face runtime breakdown: pipeline stages, DifFIQA, regressors, gate",
        description="Time decode / detect / align / embed, DifFIQA (default and fast: forward, "
                    "backward, quality), the baselines, regressors and QualityGate.filter per "
                    "face on LFW images (median over --repeats runs); writes OUT/runtime.json "
                    "and OUT/runtime.md. --throughput: faces/s of the regressors per backend, "
                    "threads and batch size (OUT/runtime-throughput.json and .md).")
    add_runtime_arguments(r)
    r.add_argument("--out", required=True, help="output folder")
    r.set_defaults(func=_cli_runtime)


def add_runtime_arguments(parser, threads_default: int | None = None) -> None:
    """Every option of ``fiqa-bench runtime`` but ``--out`` (shared with
    ``fiqa-bench run runtime``, whose ``--threads`` defaults to 1)."""
    parser.add_argument("--weights", default=None,
                        help="DifFIQA denoiser .safetensors with its .json sidecar (default "
                             "$FIQA_DIFFIQA_WEIGHTS, else the shipped one)")
    parser.add_argument("--regressor", action="append", default=[], metavar="NAME=PATH",
                        help="time a regressor too: ediffiqa, ediffiqa-free or diffiqa-r "
                             "(repeatable)")
    add_throughput_arguments(parser)
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_IMAGES} images, {QUICK_REPEATS} runs, gate on "
                             f"{QUICK_GATE_IMAGES} image(s)")
    parser.add_argument("--images", type=int, default=None,
                        help=f"images (default {DEFAULT_IMAGES})")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"runs (default {DEFAULT_REPEATS})")
    parser.add_argument("--gate-images", type=int, default=None,
                        help="images of the QualityGate timing (default: --images)")
    parser.add_argument("--no-gate", action="store_true", help="skip the QualityGate timing")
    parser.add_argument("--t", type=int, default=5, help="DifFIQA forward steps (default 5)")
    parser.add_argument("--n", type=int, default=None,
                        help=f"DifFIQA repeats (default {DEFAULT_N}; --quick {QUICK_N})")
    parser.add_argument("--fast-n", type=int, default=2, help="fast-mode repeats (default 2)")
    parser.add_argument("--unet-batch", type=int, nargs="+", default=[], metavar="B",
                        help="extra rows diffiqa@unet_batch=B: default-mode DifFIQA with the UNet "
                             "run on B samples per pass (the scorer's default: 8 on the CPU)")
    parser.add_argument("--threads", type=int, default=threads_default,
                        help="torch and onnxruntime threads (default: "
                             f"{threads_default or 'their own defaults'})")
    parser.add_argument("--seed", type=int, default=0, help="LFW sample seed (default 0)")
    parser.add_argument("--lfw", default=None,
                        help="LFW root (default $FIQA_LFW or ../shared/data/lfw)")


def add_throughput_arguments(parser) -> None:
    """The regressor-backend options shared by ``fiqa-bench runtime`` and
    ``fiqa-bench run runtime``."""
    parser.add_argument("--regressor-backend", nargs="+", default=["torch"],
                        choices=list(THROUGHPUT_VARIANTS), metavar="BACKEND",
                        help="backends each --regressor is timed with in the full breakdown "
                             "(default torch; onnxruntime adds NAME@onnxruntime rows, "
                             "onnxruntime-int8 NAME@onnxruntime-int8 rows where an int8 graph "
                             "ships)")
    parser.add_argument("--throughput", action="store_true",
                        help="only the regressor throughput table: every --backends x "
                             "--thread-counts variant at every --batch-sizes on aligned LFW "
                             "crops (default regressor: the shipped ediffiqa); --images crops "
                             f"(default {THROUGHPUT_IMAGES}), --repeats rounds (default "
                             f"{THROUGHPUT_ROUNDS}); --quick: {QUICK_THROUGHPUT_IMAGES} crops, "
                             f"{QUICK_THROUGHPUT_ROUNDS} rounds, batches "
                             f"{' '.join(map(str, QUICK_THROUGHPUT_BATCHES))}")
    parser.add_argument("--backends", nargs="+", default=list(THROUGHPUT_BACKENDS),
                        choices=list(THROUGHPUT_VARIANTS),
                        help="--throughput: backends (onnxruntime-int8: the shipped int8 graph, "
                             "precision='int8'; default torch onnxruntime)")
    parser.add_argument("--thread-counts", nargs="+", type=int,
                        default=list(THROUGHPUT_THREADS), metavar="K",
                        help="--throughput: the scorers' threads= values (default 1 2)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=None, metavar="B",
                        help="--throughput: batch sizes (default 1 16 64; quick 1 16)")


def throughput_from_args(args, log: Callable[[str], None] | None = None) -> dict:
    """:func:`run_regressor_throughput` from parsed options (``--throughput``)."""
    quick = bool(args.quick)
    return run_regressor_throughput(
        regressors=parse_regressors(args.regressor), backends=args.backends,
        threads=args.thread_counts,
        batch_sizes=args.batch_sizes or (QUICK_THROUGHPUT_BATCHES if quick else THROUGHPUT_BATCHES),
        images=args.images or (QUICK_THROUGHPUT_IMAGES if quick else THROUGHPUT_IMAGES),
        rounds=args.repeats or (QUICK_THROUGHPUT_ROUNDS if quick else THROUGHPUT_ROUNDS),
        lfw_root=args.lfw, seed=args.seed, quick=quick, log=log)


def run_from_args(args, log: Callable[[str], None] | None = None) -> dict:
    """:func:`run_runtime_bench` from parsed options (``fiqa-bench runtime`` and
    ``fiqa-bench run runtime``): ``--quick`` / default sizes, ``$FIQA_DIFFIQA_WEIGHTS``;
    :func:`run_regressor_throughput` with ``--throughput``."""
    from .diffiqa_checks import default_weights

    if getattr(args, "throughput", False):
        return throughput_from_args(args, log)

    weights = args.weights if args.weights is not None else default_weights()
    images = args.images or (QUICK_IMAGES if args.quick else DEFAULT_IMAGES)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    if log is not None:
        log(f"weights {weights or 'shipped'}; {images} images, {repeats} runs")
    return run_runtime_bench(
        weights=weights, regressors=parse_regressors(args.regressor), images=images,
        repeats=repeats, gate_images=args.gate_images or (QUICK_GATE_IMAGES if args.quick else None),
        t=args.t, n=args.n if args.n is not None else (QUICK_N if args.quick else DEFAULT_N),
        fast_n=args.fast_n, threads=args.threads, lfw_root=args.lfw,
        seed=args.seed, gate=not args.no_gate, quick=args.quick,
        regressor_backends=getattr(args, "regressor_backend", None) or ("torch",),
        diffiqa_unet_batches=getattr(args, "unet_batch", None) or (), log=log)


def render(result: dict) -> str:
    """The markdown of either result kind (:func:`markdown` or :func:`throughput_markdown`)."""
    if result.get("benchmark") == "regressor-throughput":
        return throughput_markdown(result)
    return markdown(result)


def _cli_runtime(args) -> int:
    import json
    import shlex
    import sys

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out must be a folder, but {out} is a file")

    def log(msg: str) -> None:
        print(f"fiqa-bench runtime: {msg}", file=sys.stderr, flush=True)

    result = run_from_args(args, log)
    result["command"] = "fiqa-bench " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    stem = "runtime-throughput" if args.throughput else "runtime"
    table = render(result)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table + "\n")
    print(table)
    log(f"wrote {out / (stem + '.json')}, {out / (stem + '.md')}")
    return 0


__all__ = ["run_runtime_bench", "run_regressor_throughput", "run_from_args", "diffiqa_staged",
           "markdown", "throughput_markdown", "render", "StageTimer", "add_cli_parser",
           "add_runtime_arguments", "add_throughput_arguments"]
