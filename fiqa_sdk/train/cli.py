"""``fiqa train ...`` sub-commands (hooked into :mod:`fiqa_sdk.cli` by :func:`add_train_parser`).

    fiqa train ddpm --out DIR [--preset small] [--steps N] [--max-minutes M] [--resume]

trains the DifFIQA denoiser on the aligned celeba-subset (detected and aligned once, cached
under ``--cache`` or ``$FIQA_CACHE``) and writes ``DIR/diffiqa_unet.safetensors`` + ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _log(msg: str) -> None:
    print(f"fiqa train: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _cmd_train_ddpm(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..diffusion.unet import PRESETS
    from .data import DEFAULT_CELEBA, build_aligned_cache, cache_root
    from .ddpm import TrainConfig, train_ddpm

    if args.preset not in PRESETS:
        print(f"fiqa: error: unknown preset {args.preset!r}; available: {', '.join(PRESETS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
    root = Path(args.data or DEFAULT_CELEBA)
    if not (root / "identities.csv").is_file():
        print(f"fiqa: error: {root} has no identities.csv (expected the celeba-subset layout: "
              "images/ + identities.csv); pass --data", file=sys.stderr)
        return 1
    _log(f"aligned faces: {cache_root(args.cache)} (built on first use)")
    data = build_aligned_cache(root, cache=args.cache,
                               progress=_progress if sys.stderr.isatty() else None)
    _log(f"{len(data)} aligned faces ({data.skipped} images skipped: no face)")
    faces = np.asarray(data.faces)
    if args.limit:
        faces = faces[: args.limit]
    cfg = TrainConfig(preset=args.preset, steps=args.steps, batch_size=args.batch_size,
                      seed=args.seed, checkpoint_every=args.checkpoint_every, lr=args.lr,
                      mix_T=args.mix_T, bf16=args.bf16, device=args.device)
    out = Path(args.out)
    if (out / "checkpoint.pt").is_file() and not args.resume:
        print(f"fiqa: error: {out / 'checkpoint.pt'} exists; pass --resume to continue it or "
              "choose another --out", file=sys.stderr)
        return 1
    info = {"source": str(root), "cache": str(data.path), "faces": int(len(faces)),
            "skipped": data.skipped}
    summary = train_ddpm(faces, out, cfg, resume=args.resume, max_minutes=args.max_minutes,
                         data_info=info, log=_log)
    print(json.dumps(summary))
    return 0


def _progress(k: int, total: int) -> None:
    if k % 100 == 0 or k == total:
        print(f"\raligning {k}/{total}", end="\n" if k == total else "", file=sys.stderr, flush=True)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` (with ``train ddpm``) on a ``subparsers`` object of the fiqa parser."""
    t = subparsers.add_parser("train", help="train models (the DifFIQA denoiser)")
    tsub = t.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    d = tsub.add_parser(
        "ddpm", help="extended DDPM training of the DifFIQA denoiser",
        description="Train the DifFIQA UNet (x0 prediction, cosine schedule, t < 100, BSRGAN "
                    "degradations mixed in with sin(t/T pi/2)) on the aligned celeba-subset. "
                    "Writes OUT/checkpoint.pt, OUT/loss.csv, OUT/val.csv and, at every stop, "
                    "OUT/diffiqa_unet.safetensors + .json (EMA weights). Stop and continue "
                    "with --max-minutes / --resume.")
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument("--cache", default=None,
                   help="cache folder of the aligned faces (default $FIQA_CACHE or ~/.cache/fiqa-sdk)")
    d.add_argument("--data", type=Path, default=None,
                   help="training set root with images/ and identities.csv (default "
                        "../shared/data/celeba-subset); never LFW")
    d.add_argument("--preset", default="small", help="UNet size: tiny, small, base (default small)")
    d.add_argument("--steps", type=int, default=20000, help="total optimiser steps (default 20000)")
    d.add_argument("--batch-size", type=int, default=16, help="faces per step (default 16)")
    d.add_argument("--lr", type=float, default=8e-5, help="Adam learning rate (default 8e-5)")
    d.add_argument("--mix-T", dest="mix_T", type=int, default=1000,
                   help="T of the degradation weight sin(t/T pi/2) (default 1000, the paper's "
                        "text; the official code uses 100)")
    d.add_argument("--max-minutes", type=float, default=None,
                   help="stop cleanly (checkpoint + export) before this many minutes")
    d.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    d.add_argument("--checkpoint-every", type=int, default=500, help="steps (default 500)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    d.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    d.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="where to train (default cpu)")
    d.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # smoke tests
    d.set_defaults(func=_cmd_train_ddpm)
    return t
