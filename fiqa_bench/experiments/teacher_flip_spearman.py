"""How closely the DifFIQA pseudo-label teacher ranks faces like the flip-consistency baseline.

    fiqa-bench run teacher_flip_spearman --faces /work/cache/celeba-subset-aligned/faces.npy --n 256
    fiqa-bench run teacher_flip_spearman --quick     # smoke run (CI): 8 astronaut crops

The regressors' labels come from DifFIQA with the shipped denoiser at t = 5, n = 1, flip,
seed 0 (the sidecars' ``teacher``), on the aligned celeba-subset training faces. Scoring all
6,275 of them takes most of an hour on one process here, so this script scores ``--n`` of them, evenly
spaced over the file (rows ``linspace(0, N - 1, n)``), in chunks of 64 as ``fiqa train labels``
does, with that teacher and with ``flip-consistency`` and ``embedding-norm`` (ArcFace), and
prints the Spearman rank correlations of the teacher with each. ``--quick``: seeded crops of
the astronaut (landmarks jittered by up to 3 px) instead of the celeba faces.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..faces import astronaut_faces
from ..harness import experiment


#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"n": 8}


def score_in_chunks(scorer, faces: np.ndarray, chunk: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(scorer.score(np.ascontiguousarray(faces[i : i + chunk])),
                                      np.float64) for i in range(0, len(faces), chunk)])


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--faces", default=None,
                    help="aligned faces .npy (default $FIQA_CACHE/celeba-subset-aligned/faces.npy)")
    ap.add_argument("--n", type=int, default=256, help="faces scored, evenly spaced (256)")


@experiment("teacher_flip_spearman", "Spearman correlation of DifFIQA (the distillation "
            "teacher) with flip-consistency and embedding-norm",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Spearman correlation of the teacher's scores with each baseline's."""
    from scipy.stats import spearmanr
    import fiqa_sdk as fq

    if args.quick and args.faces is None:
        faces, source, rows = astronaut_faces(args.n), "astronaut (--quick)", np.arange(args.n)
    else:
        from fiqa_sdk.eval.features import default_cache_dir

        path = Path(args.faces) if args.faces else (
            default_cache_dir() / "celeba-subset-aligned" / "faces.npy")
        allf = np.load(path, mmap_mode="r")
        rows = np.unique(np.linspace(0, len(allf) - 1, min(args.n, len(allf))).round().astype(int))
        faces, source = np.ascontiguousarray(allf[rows]), str(path)
    t_start = time.perf_counter()
    teacher = fq.create_scorer("diffiqa", n=1, t=5, flip=True, seed=0)
    t0 = time.perf_counter()
    q_teacher = score_in_chunks(teacher, faces)
    teacher_s = time.perf_counter() - t0
    others = {name: score_in_chunks(fq.create_scorer(name), faces)
              for name in ("flip-consistency", "embedding-norm")}
    rho = {name: float(spearmanr(q_teacher, q)[0]) for name, q in others.items()}
    result = {"benchmark": "teacher-flip-spearman", "faces": source, "n": int(len(faces)),
              "rows_first_last": [int(rows[0]), int(rows[-1])],
              "teacher": {"method": "diffiqa", "t": 5, "n": 1, "flip": True, "seed": 0},
              "spearman_with_teacher": rho, "teacher_s_per_face": teacher_s / len(faces),
              "seconds": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(result, indent=2))
    print(f"DifFIQA (t = 5, n = 1) on {len(faces)} faces of {source}: Spearman with "
          + ", ".join(f"{k} {v:.3f}" for k, v in rho.items())
          + f" ({teacher_s / len(faces):.2f} s/face for the teacher)", file=sys.stderr)
    return result

