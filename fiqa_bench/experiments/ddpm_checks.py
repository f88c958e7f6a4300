"""Cheap checks behind docs/diffiqa.md's statements about the denoiser's training objective.

    fiqa-bench run ddpm_checks --faces /work/cache/celeba-subset-aligned/faces.npy
    fiqa-bench run ddpm_checks --quick        # smoke run (CI): synthetic faces, seconds

Three measurements on aligned 112x112 faces (default ``$FIQA_CACHE/celeba-subset-aligned``,
the cache ``fiqa train`` builds; ``--quick`` uses seeded synthetic images instead):

1. **output = input**: the validation loss that ``fiqa train ddpm`` writes to ``val.csv`` (EMA
   model, the fixed batch of ``val_size`` = 16 training faces with fixed degradations and noise,
   at t = 0, 4, 19, 49, 99, and their mean), computed for the identity ``x0 = x_t`` -- the
   residual UNet (``x_t + UNet(x_t, t)``, zero-initialised output conv) before its first step
   -- for each ``--mix-T`` (1000: the default / the paper's text; 100: the official code).
2. **degradation strength**: PSNR of :func:`fiqa_sdk.diffusion.degrade` (one BSRGAN-style
   degradation) and of the training chain (``degrade_train``: a second / third degradation with
   probability 0.2 / 0.01) against the input, over ``--psnr-faces`` faces (seeded; median and
   quartiles).
3. **residual vs plain, a short smoke run**: the ``tiny`` preset trained by
   :class:`fiqa_sdk.train.ddpm.DDPMTrainer` (batch 16, Adam 8e-5, seed 0, default objective,
   1 thread) for ``--smoke-steps R P``: R steps with ``residual=True`` (shipped) and P steps with
   ``residual=False`` (the plain x0 network); prints the validation loss (item 1's batch; before
   step 100 the EMA equals the model) after each run. ``--smoke-steps 0 0`` skips it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..harness import experiment


#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"psnr_faces": 8, "smoke_steps": [1, 1], "mix_t": [1000, 100], "val_size": 8,
         "threads": 2}


def synthetic_faces(n: int, seed: int = 0) -> np.ndarray:
    """Smooth seeded 112x112 RGB images (``--quick``; no data needed)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, size=(14, 14, 3), dtype=np.uint8)
        out.append(cv2.resize(small, (112, 112), interpolation=cv2.INTER_CUBIC))
    return np.stack(out)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def degradation_psnr(faces: np.ndarray, n: int, seed: int = 0) -> dict:
    """PSNR (dB) of one degradation and of the training chain, over ``n`` seeded faces."""
    from fiqa_sdk.diffusion.degrade import degrade
    from fiqa_sdk.train.ddpm import degrade_train

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(faces), size=min(n, len(faces)), replace=False))
    one, chain = [], []
    for r in rows:
        img = np.asarray(faces[r])
        s = int(rng.integers(0, 2**63 - 1))
        one.append(psnr(img, degrade(img, np.random.default_rng(s))))
        chain.append(psnr(img, degrade_train(img, np.random.default_rng(s))))

    def summary(v):
        v = np.asarray(v)
        return {"median": float(np.median(v)), "q25": float(np.percentile(v, 25)),
                "q75": float(np.percentile(v, 75))}
    return {"faces": len(rows), "degrade": summary(one), "degrade_train": summary(chain)}


def validation_batches(tr) -> list:
    """The fixed validation batches of a :class:`~fiqa_sdk.train.ddpm.DDPMTrainer`, rebuilt
    through its public ``make_batch`` with the rows and generators ``validate()`` uses: one
    ``(x_t, t, x)`` per ``cfg.val_t``. :func:`identity_val_loss` checks that they are the same
    batches (its ``max_abs_diff_from_mse_x_t_x``)."""
    cfg = tr.cfg
    rng = np.random.default_rng([cfg.seed, 2])
    rows = rng.choice(len(tr.faces), size=min(cfg.val_size, len(tr.faces)), replace=False)
    return [tr.make_batch(0, rows=rows, t=np.full(len(rows), tv),
                          rng=np.random.default_rng([cfg.seed, 3, tv])) for tv in cfg.val_t]


def identity_val_loss(faces: np.ndarray, mix_t: int, work: Path, val_size: int = 16) -> dict:
    """``val.csv``'s losses of the output = input model (the residual UNet before step 1)."""
    import torch

    from fiqa_sdk.train.ddpm import DDPMTrainer, TrainConfig

    tr = DDPMTrainer(faces, work / f"identity-mix{mix_t}",
                     TrainConfig(preset="tiny", mix_T=mix_t, seed=0, steps=0, val_size=val_size))
    val = tr.validate()
    # the same numbers straight from the batch: MSE(x_t, x)
    direct = {f"t{tv}": float(torch.mean((x_t - x) ** 2)) for tv, (x_t, _, x) in
              zip(tr.cfg.val_t, validation_batches(tr))}
    gap = max(abs(val[k] - direct[k]) for k in direct)
    return {**val, "max_abs_diff_from_mse_x_t_x": gap}


def smoke_run(faces: np.ndarray, residual: bool, steps: int, work: Path,
              val_size: int = 16) -> dict:
    """Validation loss of the tiny preset after ``steps`` training steps."""
    from fiqa_sdk.train.ddpm import DDPMTrainer, TrainConfig

    cfg = TrainConfig(preset="tiny", unet={"residual": residual}, steps=steps, seed=0,
                      checkpoint_every=10**9, val_size=val_size)
    tr = DDPMTrainer(faces, work / f"smoke-{'res' if residual else 'plain'}-{steps}", cfg)
    t0 = time.perf_counter()
    losses = [tr.train_step()[0] for _ in range(steps)]
    sec = time.perf_counter() - t0
    return {"residual": residual, "steps": steps, "seconds": round(sec, 1),
            "last_train_loss": losses[-1] if losses else None, "val": tr.validate()}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--faces", default=None,
                    help="aligned faces .npy (default $FIQA_CACHE/celeba-subset-aligned/faces.npy)")
    ap.add_argument("--mix-t", type=int, nargs="+", default=[1000, 100])
    ap.add_argument("--psnr-faces", type=int, default=500)
    ap.add_argument("--smoke-steps", type=int, nargs=2, default=[20, 55], metavar=("RESIDUAL", "PLAIN"),
                    help="training steps of the residual and of the plain tiny UNet (20 55)")
    ap.add_argument("--val-size", type=int, default=16,
                    help="faces of each validation batch (default 16, fiqa train's)")
    ap.add_argument("--threads", type=int, default=1)


@experiment("ddpm_checks", "cheap checks behind docs/diffiqa.md's statements about "
            "the denoiser's objective",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Validation losses of the output = input model, the degradation PSNR and the smoke trainings.
    """
    import torch

    if args.quick and args.faces is None:
        faces, source = synthetic_faces(24), "synthetic (--quick)"
    else:
        from fiqa_sdk.eval.features import default_cache_dir

        path = Path(args.faces) if args.faces else (
            default_cache_dir() / "celeba-subset-aligned" / "faces.npy")
        faces, source = np.load(path, mmap_mode="r"), str(path)
    t_start = time.perf_counter()
    prev = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="ddpm-checks-") as tmp:
            work = Path(tmp)
            identity = {str(m): identity_val_loss(faces, m, work, args.val_size)
                        for m in args.mix_t}
            deg = degradation_psnr(faces, args.psnr_faces)
            smoke = [smoke_run(faces, res, s, work, args.val_size)
                     for res, s in zip((True, False), args.smoke_steps) if s > 0]
    finally:
        torch.set_num_threads(prev)
    result = {"benchmark": "ddpm-checks", "faces": source, "n_faces": int(len(faces)),
              "identity_val_loss": identity, "degradation_psnr_db": deg, "smoke": smoke,
              "val_size": args.val_size, "threads": args.threads,
              "seconds": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(result, indent=2))
    keys = ["t0", "t4", "t19", "t49", "t99", "mean"]
    print("\n| output = input, val.csv batch | " + " | ".join(keys) + " |", file=sys.stderr)
    print("|---" * (len(keys) + 1) + "|", file=sys.stderr)
    for m, v in identity.items():
        print(f"| mix_T {m} | " + " | ".join(f"{v[k]:.3g}" for k in keys) + " |", file=sys.stderr)
    print(f"\ndegradation PSNR over {deg['faces']} faces: degrade() median "
          f"{deg['degrade']['median']:.1f} dB (quartiles {deg['degrade']['q25']:.1f}-"
          f"{deg['degrade']['q75']:.1f}), training chain median {deg['degrade_train']['median']:.1f} dB",
          file=sys.stderr)
    for r in smoke:
        print(f"tiny, {'residual' if r['residual'] else 'plain'}, {r['steps']} steps "
              f"({r['seconds']} s): val mean {r['val']['mean']:.3g} (t0 {r['val']['t0']:.3g}, "
              f"t4 {r['val']['t4']:.3g}, t99 {r['val']['t99']:.3g})", file=sys.stderr)
    return result

