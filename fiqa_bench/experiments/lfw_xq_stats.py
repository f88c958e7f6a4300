"""Two numbers of docs/benchmarks.md "lfw-xq": the lfw-xq build time per image and LFW's
nominal inter-eye distance.

    fiqa-bench run lfw_xq_stats                  # 50 images built, inter-eye on pairs.txt
    fiqa-bench run lfw_xq_stats --quick          # 10 images, inter-eye on 100 images

1. Build time: ``fiqa_bench.xq.build_lfw_xq`` over the first ``--build-images`` LFW images of
   ``pairs.txt`` (sorted relative paths) into a fresh temporary folder, wall time per image
   (degradation, JPEG encoding, checksums and manifest included).
2. Inter-eye distance: RetinaFace landmarks (``central`` face, as ``fiqa-bench quality``) of the
   images of LFW ``pairs.txt`` (7,701; cached under ``$FIQA_CACHE/lfw``, shared with the other
   LFW benchmarks), distance between the two eye landmarks in pixels of the 250 x 250 image:
   median and quartiles over the images with a detected face. lfw-xq's resolution component
   scales images by ``d / 42`` with 42 px taken as this nominal distance.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..harness import experiment



def build_time(lfw: Path, relpaths: list[str]) -> dict:
    from ..xq import build_lfw_xq

    with tempfile.TemporaryDirectory(prefix="lfw-xq-time-") as tmp:
        t0 = time.perf_counter()
        build_lfw_xq(lfw, tmp, relpaths=relpaths)
        dt = time.perf_counter() - t0
    return {"images": len(relpaths), "seconds": dt, "ms_per_image": 1000 * dt / len(relpaths)}


def inter_eye(paths: list[str]) -> dict:
    import fiqa_sdk as fq
    from fiqa_sdk.eval.features import default_cache_dir, detect_all

    faces = detect_all(paths, fq.create_detector("retinaface"), policy="central",
                       cache_dir=default_cache_dir() / "lfw")
    found = np.asarray(faces.found, bool)
    lmk = np.asarray(faces.landmarks, np.float64)[found]
    d = np.linalg.norm(lmk[:, 1] - lmk[:, 0], axis=1)
    q1, med, q3 = (float(np.percentile(d, p)) for p in (25, 50, 75))
    return {"images": len(paths), "with_face": int(found.sum()), "median_px": med,
            "q1_px": q1, "q3_px": q3}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", default=None, help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--build-images", type=int, default=None, help="images to build (50)")
    ap.add_argument("--eye-images", type=int, default=None,
                    help="first N pairs.txt images for the inter-eye distance (default all)")


@experiment("lfw_xq_stats", "lfw-xq build time per image and LFW's RetinaFace "
            "inter-eye distance",
            arguments=arguments)
def run(args, ctx) -> dict:
    """The lfw-xq build time per image and the inter-eye distance quartiles."""
    from fiqa_sdk.eval.protocols import default_lfw_root, read_lfw_pairs

    lfw = Path(args.lfw) if args.lfw else Path(default_lfw_root())
    proto = read_lfw_pairs(lfw)
    paths = sorted(str(p) for p in proto.paths)
    images = lfw / "images"
    rel = [Path(p).relative_to(images).as_posix() for p in paths]
    n_build = args.build_images or (10 if args.quick else 50)
    n_eye = args.eye_images or (100 if args.quick else len(paths))
    t0 = time.perf_counter()
    build = build_time(lfw, rel[:n_build])
    eye = inter_eye(paths[:n_eye])
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {"benchmark": "lfw-xq-stats", "build": build, "inter_eye": eye, "loadavg": load,
              "seconds": round(time.perf_counter() - t0, 1)}
    print(f"lfw-xq build: {build['images']} images in {build['seconds']:.2f} s = "
          f"{build['ms_per_image']:.1f} ms per image (load average {load})")
    print(f"RetinaFace inter-eye distance, {eye['with_face']} of {eye['images']} pairs.txt images: "
          f"median {eye['median_px']:.1f} px, quartiles {eye['q1_px']:.1f}-{eye['q3_px']:.1f} px")
    return result

