"""End-to-end images/s of decode + detect + align + embed on this machine, per detector.

    fiqa-bench run pipeline_throughput --detectors retinaface mtcnn dlib scrfd --images 200
    fiqa-bench run pipeline_throughput --quick   # smoke run (CI): retinaface + scrfd, 8 images, 1 round

Runs every configuration on the same LFW images (250x250 JPEG), interleaved over --repeats
rounds so that machine noise hits all of them alike; reports the median per-image time of each
stage and end-to-end images/s (single process, batch of --batch images per embedder call).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.protocols import default_lfw_root
from fiqa_sdk.io import load_image

from ..harness import experiment

#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"detectors": ["retinaface", "scrfd"], "images": 8, "repeats": 1}


def run_once(paths, det, emb, batch):
    t = {"decode": 0.0, "detect": 0.0, "align": 0.0, "embed": 0.0}
    crops = []
    t_start = time.perf_counter()
    for p in paths:
        t0 = time.perf_counter()
        img = load_image(Path(p).read_bytes())
        t1 = time.perf_counter()
        faces = fq.detect.select_faces(det.detect(img), "central", img.shape)
        t2 = time.perf_counter()
        if faces:
            crops.append(fq.align_face(img, faces[0], emb.input_size, emb.template))
        t3 = time.perf_counter()
        t["decode"] += t1 - t0
        t["detect"] += t2 - t1
        t["align"] += t3 - t2
        if len(crops) == batch:
            t4 = time.perf_counter()
            emb.embed(np.stack(crops))
            t["embed"] += time.perf_counter() - t4
            crops = []
    if crops:
        t4 = time.perf_counter()
        emb.embed(np.stack(crops))
        t["embed"] += time.perf_counter() - t4
    t["total"] = time.perf_counter() - t_start
    return t


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None)
    ap.add_argument("--detectors", nargs="+", default=["retinaface", "mtcnn", "dlib", "scrfd"])
    ap.add_argument("--embedder", default="arcface")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)


@experiment("pipeline_throughput", "end-to-end images/s of decode + detect + align + embed "
            "per detector",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """One row per detector: per-stage ms per image and images/s."""
    root = Path(args.lfw) if args.lfw else default_lfw_root()
    all_paths = sorted(str(p) for p in (root / "images").glob("*/*.jpg"))
    paths = random.Random(args.seed).sample(all_paths, args.images)
    emb = fq.create_embedder(args.embedder)
    dets = {name: fq.create_detector(name) for name in args.detectors}
    for det in dets.values():  # warm-up: first calls allocate
        run_once(paths[:5], det, emb, args.batch)
    times = {name: [] for name in dets}
    for _ in range(args.repeats):
        for name, det in dets.items():
            times[name].append(run_once(paths, det, emb, args.batch))
    rows = []
    for name, ts in times.items():
        med = {k: float(np.median([t[k] for t in ts])) * 1000 / len(paths) for k in ts[0]}
        rows.append({"detector": name, "embedder": args.embedder, **{f"{k}_ms": round(v, 2) for k, v in med.items()},
                     "images_per_s": round(1000 / med["total"], 1)})
    base = rows[0]["total_ms"]
    print(f"{len(paths)} LFW images (250x250), median of {args.repeats} interleaved runs, ms per image")
    print("| detector + embedder | decode | detect | align | embed | total | images/s | time vs first |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} + {r['embedder']} | {r['decode_ms']:.1f} | {r['detect_ms']:.1f} | "
              f"{r['align_ms']:.2f} | {r['embed_ms']:.1f} | {r['total_ms']:.1f} | {r['images_per_s']:.1f} | "
              f"{r['total_ms'] / base:.2f}x |")
    return {"images": len(paths), "repeats": args.repeats, "rows": rows}

