"""ArcFace embedder with and without the PReLU rewrite (``ArcFaceEmbedder(fast_prelu=...)``).

    fiqa-bench run arcface_prelu [--threads 1] [--faces 32] [--rounds 7]
    fiqa-bench run arcface_prelu --quick   # smoke run (CI): 4 faces, 1 round, seconds

Both sessions embed the same batch of aligned LFW crops (or seeded random crops without LFW)
in interleaved rounds; prints the per-face median of each, their ratio and the largest
difference between the embeddings (raw and cosine).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.errors import DataLocationError
from fiqa_sdk.eval.protocols import default_lfw_root

from ..harness import experiment

#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"faces": 4, "rounds": 1}


def crops(n: int, lfw: Path) -> tuple[np.ndarray, str]:
    """The first ``n`` LFW images (sorted) detected and aligned; seeded random crops if there
    is no LFW (the timing is the same, the embeddings are not faces)."""
    files = sorted((lfw / "images").glob("*/*.jpg"))[: 4 * n]
    if files:
        det, out = fq.create_detector("retinaface"), []
        for f in files:
            img = fq.load_image(str(f), color="rgb")
            faces = det.detect(img)
            if faces:
                out.append(fq.align_face(img, faces[0]))
            if len(out) == n:
                return np.stack(out), "LFW"
    return np.random.default_rng(0).integers(0, 255, (n, 112, 112, 3), dtype=np.uint8), "random"


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--faces", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--lfw", type=Path, default=None,
                    help="LFW root (default $FIQA_LFW; without LFW: seeded random crops)")


@experiment("arcface_prelu", "ArcFace embedder with and without the PReLU rewrite "
            "(fast_prelu)",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Per-face median time of each embedder, their ratio and the embeddings' largest difference."""
    lfw = args.lfw
    if lfw is None:
        try:
            lfw = default_lfw_root()
        except DataLocationError:
            lfw = Path("/nonexistent")  # no LFW: seeded random crops
    x, source = crops(args.faces, Path(lfw))
    fast = fq.create_embedder("arcface", threads=args.threads)
    plain = fq.create_embedder("arcface", threads=args.threads, fast_prelu=False)
    ef, ep = fast.embed_raw(x), plain.embed_raw(x)  # also the warm-up
    cos = (ef * ep).sum(1) / np.linalg.norm(ef, axis=1) / np.linalg.norm(ep, axis=1)
    times = {"fast_prelu": [], "plain": []}
    for _ in range(args.rounds):
        for name, emb in (("fast_prelu", fast), ("plain", plain)):
            t0 = time.perf_counter()
            emb.embed_raw(x)
            times[name].append((time.perf_counter() - t0) * 1000 / len(x))
    med = {k: float(np.median(v)) for k, v in times.items()}
    result = {"faces": len(x), "source": source, "threads": args.threads,
              "ms_per_face": med, "speedup": med["plain"] / med["fast_prelu"],
              "max_abs_diff": float(np.abs(ef - ep).max()), "min_cosine": float(cos.min())}
    print(json.dumps(result, indent=2))
    return result

