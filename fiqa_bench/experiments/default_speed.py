"""Speed of the defaults, side by side in one run: what a user gets with no options.

    fiqa-bench run default_speed --out results/default_speed.json
    fiqa-bench run default_speed --quick        # smoke run (CI): 6 photos, 32 crops, 1 round

Three measurements on LFW photos (250x250 JPEG, read from disk as bytes first):

- **per image**: ``fq.QualityGate().assess(photo)`` against the bare face pipeline
  ``fq.FacePipeline().process(photo)`` (decode, detect, align, embed) on the same ``--images``
  photos, one call per photo, the two interleaved over ``--rounds`` rounds so that machine noise
  hits both alike; the median per-photo time of each round, then the median over rounds, and
  their ratio (gate / pipeline);
- **scorer**: ``fq.create_scorer(name).score(crops)`` on ``--crops`` aligned crops in one call,
  for the default scorer and each of ``--scorers`` (faces/s, median over rounds; the backend and
  precision the defaults chose are reported);
- **filter**: ``fq.QualityGate().filter(folder, discard=0.2)`` over a folder of ``--folder-images``
  photos (images/s, median over rounds).

The CPU (model name and whether it has int8 dot-product instructions) and the backends the
defaults chose are printed and saved with the numbers.
"""

from __future__ import annotations

import platform
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.cpu import has_int8_dot, usable_cpus
from fiqa_sdk.eval.protocols import default_lfw_root

from ..harness import experiment

QUICK = {"images": 6, "crops": 32, "folder_images": 8, "rounds": 1}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None, help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--images", type=int, default=60, help="photos of the per-image comparison")
    ap.add_argument("--crops", type=int, default=256, help="aligned crops of the scorer run")
    ap.add_argument("--folder-images", type=int, default=500, help="photos of the filter run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scorers", nargs="*", default=["ediffiqa"],
                    help="scorers timed on their own besides the gate's default (default ediffiqa)")
    ap.add_argument("--seed", type=int, default=0)


@experiment("default_speed", "speed of the defaults, side by side in one run",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Per-photo times of the gate and the pipeline, scorer faces/s and filter images/s."""
    log = ctx.log
    root = Path(args.lfw) if args.lfw else default_lfw_root()
    files = sorted((root / "images").glob("*/*.jpg"))
    rng = random.Random(args.seed)
    photos = [f.read_bytes() for f in rng.sample(files, args.images)]
    pipe = fq.FacePipeline()
    gate = fq.QualityGate()
    names = [gate.scorer.name] + [n for n in args.scorers if n != gate.scorer.name]
    scorers = {n: fq.create_scorer(n) for n in names}
    scorer = scorers[gate.scorer.name]
    log(f"gate: scorer {gate.scorer.name}, face policy {gate.face_policy}, joint pass "
        f"{gate.joint}; " + "; ".join(f"{n} alone: backend {s.backend}, precision {s.precision}, "
                                      f"threads {s.threads}" for n, s in scorers.items()))
    for b in photos[:3]:  # warm-up: sessions, caches, first-call allocations
        pipe.process(b)
        gate.assess(b)
    per = {"pipeline": [], "gate": []}
    for _ in range(args.rounds):
        for name, fn in (("pipeline", pipe.process), ("gate", gate.assess)):
            ts = []
            for b in photos:
                t0 = time.perf_counter()
                fn(b)
                ts.append(time.perf_counter() - t0)
            per[name].append(1000 * statistics.median(ts))
    ms = {k: statistics.median(v) for k, v in per.items()}
    ratio = ms["gate"] / ms["pipeline"]
    log(f"per image: pipeline {ms['pipeline']:.2f} ms, gate.assess {ms['gate']:.2f} ms, "
        f"ratio {ratio:.2f}")
    crop_src = [r.aligned for b in rng.sample(files, min(len(files), args.crops * 2))
                for r in pipe.process(str(b))[:1] if r.ok][: args.crops]
    crops = np.stack(crop_src)
    standalone = {}
    for name, sc in scorers.items():
        sc.score(crops[:8])
        fps = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            sc.score(crops)
            fps.append(len(crops) / (time.perf_counter() - t0))
        standalone[name] = {"backend": sc.backend, "precision": sc.precision,
                            "threads": sc.threads, "faces_s": statistics.median(fps),
                            "faces_s_rounds": fps}
        log(f"scorer {name} ({sc.backend}, {sc.precision}): {standalone[name]['faces_s']:.1f} "
            f"faces/s on {len(crops)} crops")
    faces_s = standalone[scorer.name]["faces_s"]
    fps = standalone[scorer.name]["faces_s_rounds"]
    folder = Path(tempfile.mkdtemp(prefix="fiqa-speed-"))
    try:
        for f in rng.sample(files, args.folder_images):
            shutil.copy(f, folder / f"{f.parent.name}__{f.name}")
        ips = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            res = gate.filter(folder, discard=0.2)
            ips.append(len(res.reports) / (time.perf_counter() - t0))
        images_s = statistics.median(ips)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log(f"gate.filter: {images_s:.1f} images/s over {args.folder_images} photos")
    result = {
        "benchmark": "default_speed", "quick": args.quick, "fiqa_sdk": fq.__version__,
        "cpu": cpu_name(), "usable_cpus": usable_cpus(), "int8_dot": has_int8_dot(),
        "gate": {"scorer": gate.scorer.name, "face_policy": gate.face_policy, "joint": gate.joint},
        "scorer": {"backend": scorer.backend, "precision": scorer.precision,
                   "threads": scorer.threads},
        "images": args.images, "rounds": args.rounds,
        "pipeline_ms": ms["pipeline"], "gate_assess_ms": ms["gate"], "ratio": ratio,
        "pipeline_ms_rounds": per["pipeline"], "gate_assess_ms_rounds": per["gate"],
        "scorer_crops": len(crops), "scorer_faces_s": faces_s, "scorer_faces_s_rounds": fps,
        "standalone": standalone,
        "filter_images": args.folder_images, "filter_images_s": images_s,
        "filter_images_s_rounds": ips,
    }
    print(f"CPU: {result['cpu']} ({usable_cpus()} usable cores, int8 dot product: "
          f"{has_int8_dot()})\n")
    print("| measurement | value |")
    print("|---|---|")
    print(f"| `FacePipeline().process`, ms per photo | {ms['pipeline']:.2f} |")
    print(f"| `QualityGate().assess`, ms per photo | {ms['gate']:.2f} |")
    print(f"| ratio gate / pipeline | {ratio:.2f} |")
    for name, r in standalone.items():
        print(f"| `create_scorer(\"{name}\").score`, faces/s ({len(crops)} crops; "
              f"{r['backend']} {r['precision']}, {r['threads']} threads) | {r['faces_s']:.1f} |")
    print(f"| `QualityGate().filter(folder)`, images/s ({args.folder_images} photos) | "
          f"{images_s:.1f} |")
    return result

