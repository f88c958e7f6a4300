"""``fiqa train ...`` sub-commands (hooked into :mod:`fiqa_sdk.cli` by :func:`add_train_parser`).

    fiqa train ddpm --out DIR [--preset small] [--steps N] [--max-minutes M] [--resume]

trains the DifFIQA denoiser on the aligned celeba-subset (detected and aligned once, cached
under ``--cache`` or ``$FIQA_CACHE``) and writes ``DIR/diffiqa_unet.safetensors`` + ``.json``.

    fiqa train ediffiqa|ediffiqa-free|diffiqa-r --out DIR [--eps X] [--epochs N] ...

has one sub-command per registered :class:`~fiqa_sdk.train.methods.TrainingMethod`; its options
become a :class:`~fiqa_sdk.train.config.TrainingConfig` (:func:`config_from_args`) that
:func:`~fiqa_sdk.train.api.train_regressor` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..errors import InvalidArgumentError
from .._paths import celeba_root


def _log(msg: str) -> None:
    print(f"fiqa train: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def _cmd_train_ddpm(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..diffusion.unet import PRESETS
    from .data import cache_root
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
    _log(f"aligned faces: {cache_root(args.cache)} (built on first use)")
    data, _ = _training_faces(args)
    _log(f"{len(data)} aligned faces ({data.skipped} images skipped: no face)")
    faces = np.asarray(data.faces)
    if args.limit:
        faces = faces[: args.limit]
    cfg = TrainConfig(preset=args.preset, steps=args.steps, batch_size=args.batch_size,
                      seed=args.seed, checkpoint_every=args.checkpoint_every, lr=args.lr,
                      mix_T=args.mix_T, t_max=args.t_max, bf16=args.bf16, device=args.device,
                      init_from=str(args.init_from) if args.init_from else None)
    out = Path(args.out)
    if (out / "checkpoint.pt").is_file() and not args.resume:
        print(f"fiqa: error: {out / 'checkpoint.pt'} exists; pass --resume to continue it or "
              "choose another --out", file=sys.stderr)
        return 1
    info = {"source": str(celeba_root(args.data)), "cache": str(data.path), "faces": int(len(faces)),
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
    t = subparsers.add_parser("train", help="train models (the DifFIQA denoiser, the regressors)")
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
                   help="training set: a folder with identities.csv + images/, or one sub-folder "
                        "of face images per identity (default $FIQA_CELEBA); "
                        "never LFW")
    d.add_argument("--preset", default="small", help="UNet size: tiny, small, base (default small)")
    d.add_argument("--steps", type=int, default=20000, help="total optimiser steps (default 20000)")
    d.add_argument("--batch-size", type=int, default=16, help="faces per step (default 16)")
    d.add_argument("--lr", type=float, default=8e-5, help="Adam learning rate (default 8e-5)")
    d.add_argument("--mix-T", dest="mix_T", type=int, default=1000,
                   help="T of the degradation weight sin(t/T pi/2) (default 1000, the paper's "
                        "text; the official code uses 100)")
    d.add_argument("--t-max", dest="t_max", type=int, default=100,
                   help="T': training noise levels t in [0, T') (default 100, the paper's); "
                        "DifFIQA inference only visits t <= 5")
    d.add_argument("--max-minutes", type=float, default=None,
                   help="stop cleanly (checkpoint + export) before this many minutes")
    d.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    d.add_argument("--init-from", type=Path, default=None, metavar="CHECKPOINT",
                   help="start a new run from the model and EMA weights of another run's "
                        "checkpoint.pt (same preset), e.g. to change --mix-T")
    d.add_argument("--checkpoint-every", type=int, default=500, help="steps (default 500)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    d.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    d.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="where to train (default cpu)")
    d.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # smoke tests
    d.set_defaults(func=_cmd_train_ddpm)

    lab = tsub.add_parser(
        "labels", help="DifFIQA pseudo-labels of the training faces (cached, resumable, shardable)",
        description="Score every aligned training face with a DifFIQA teacher. Labels are cached "
                    "under CACHE/labels/<teacher+data hash>/ in chunks: stop any time, resume "
                    "by running the same command, or split the work with --shard i/k.")
    _teacher_args(lab)
    lab.add_argument("--shard", default="0/1", help="i/k: this process labels chunks c with c %% k == i")
    lab.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes")
    lab.set_defaults(func=_cmd_train_labels)
    from .methods import get_method, method_names

    for method in method_names():  # one sub-command per registered training method
        strategy = get_method(method)
        helptext = strategy.description or method
        r = tsub.add_parser(method, help=helptext,
                            description=helptext + ". Computes the teacher's pseudo-labels first "
                            "if they are not cached (see `fiqa train labels`). Writes "
                            "OUT/<name>.safetensors + .json (sidecar with config, labels and "
                            "validation history).")
        _teacher_args(r)
        r.add_argument("--out", required=True, help="output folder")
        r.add_argument("--eps", type=float, default=0.5, help="label optimization strength (default 0.5)")
        r.add_argument("--theta", type=float, default=0.5,
                       help="weight of the representation-consistency loss (default 0.5)")
        r.add_argument("--p", type=float, default=0.2, help="top label fraction for class centres")
        r.add_argument("--min-count", type=int, default=3,
                       help="top-p faces an identity needs for a centre (default 3)")
        r.add_argument("--epochs", type=int, default=8)
        r.add_argument("--train-seed", type=int, default=None,
                       help="seed of the regressor training and of the held-out identity split "
                            "(default: --seed, which also seeds the teacher; a different "
                            "--train-seed reuses the cached pseudo-labels)")
        r.add_argument("--split-seed", type=int, default=None,
                       help="seed of the held-out identities alone (default: the training "
                            "seed); runs with one --split-seed share their held-out faces")
        if strategy.supports_ensemble:
            r.add_argument("--ensemble-seeds", type=int, nargs="+", default=None, metavar="S",
                           help="train one regressor per training seed S (into OUT/seed-S/) and "
                                "bundle them into the seed ensemble OUT/<name>_x<k>.safetensors "
                                "(as `fiqa train ensemble`; the shipped ediffiqa: --eps 1 "
                                "--theta 0.5 --ensemble-seeds 0 1 2)")
        r.add_argument("--cut", type=int, default=15,
                       help="fine-tune MobileFaceNet blocks [cut:] (0..20, default 15)")
        r.add_argument("--name", default=None, help="file name stem of the weights")
        r.add_argument("--backbone", default=None, metavar="MODULE:FACTORY|MODEL.onnx",
                       help="a user-supplied FR backbone instead of the shipped ArcFace "
                            "MobileFaceNet: FACTORY() in MODULE (a module path, or a .py file) "
                            "returns a torch module with its trained weights, mapping (N, 3, 112, "
                            "112) RGB crops scaled to [-1, 1] to (N, D) embeddings; or an "
                            "insightface-format ONNX model (e.g. w600k_r50.onnx), run as a "
                            "trainable torch module. It is also the target model M. Load the "
                            "result with RegressorScorer(weights, backbone=FACTORY()) or "
                            "backbone=OnnxGraphModule(MODEL.onnx)")
        r.set_defaults(func=_cmd_train_distill, method=method)
    ens = tsub.add_parser(
        "ensemble", help="bundle regressors of one recipe (e.g. training seeds) into one "
                         "ensemble scorer",
        description="Write OUT/<name>.safetensors + .json: the regressors MEMBERS (outputs of "
                    "`fiqa train ediffiqa|diffiqa-r` with the same cut, e.g. several "
                    "--train-seed) as one scorer whose quality is the mean of theirs. The frozen "
                    "stem runs once (docs/ediffiqa.md, \"Seed ensemble\"). Load it like one "
                    "regressor: create_scorer('ediffiqa', weights=OUT/<name>.safetensors).")
    ens.add_argument("members", nargs="+", type=Path, help="regressor .safetensors files (>= 2)")
    ens.add_argument("--out", required=True, help="output folder")
    ens.add_argument("--name", default=None,
                     help="file name stem (default: the members' method stem + _x<count>)")
    ens.set_defaults(func=_cmd_train_ensemble)
    return t


def _cmd_train_ensemble(args: argparse.Namespace) -> int:
    from .._weights import read_sidecar
    from ..errors import FiqaError
    from ..quality.ediffiqa import save_ensemble

    name = args.name or f"{args.members[0].stem}_x{len(args.members)}"
    try:
        path = save_ensemble(args.members, Path(args.out) / f"{name}.safetensors")
    except FiqaError as exc:
        return _die(str(exc))
    meta = read_sidecar(path, verify=False)  # just written
    print(json.dumps({"weights": str(path), "members": meta["ensemble"]["members"],
                      "seeds": meta["ensemble"]["seeds"], "sha256": meta["sha256"]}))
    return 0


def _teacher_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, default=None,
                   help="DifFIQA denoiser .safetensors (default: the shipped one)")
    p.add_argument("--t", type=int, default=5, help="forward steps (default 5)")
    p.add_argument("--n", type=int, default=None, help="repeats (default 10; 2 with --fast)")
    p.add_argument("--fast", action="store_true", help="one-step restoration (see docs/diffiqa.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None,
                   help="cache folder (default $FIQA_CACHE or ~/.cache/fiqa-sdk)")
    p.add_argument("--data", type=Path, default=None,
                   help="training set: a folder with identities.csv + images/, or one sub-folder "
                        "of face images per identity (default $FIQA_CELEBA); "
                        "never LFW")
    p.add_argument("--threads", type=int, default=2, help="torch / onnxruntime CPU threads")
    p.add_argument("--degraded-copies", type=int, default=0, metavar="K",
                   help="also label (and train on) K synthetically degraded copies of every "
                        "face: a random BSRGAN-style chain mixed in with a random weight "
                        "(default 0; see docs/ediffiqa.md)")
    p.add_argument("--degrade-seed", type=int, default=1, help="seed of the degraded copies (default 1)")
    p.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # smoke tests


def _training_faces(args: argparse.Namespace):
    from ..errors import FiqaError
    from .data import build_aligned_cache

    try:
        data = build_aligned_cache(celeba_root(args.data), cache=args.cache,
                                   progress=_progress if sys.stderr.isatty() else None)
    except FiqaError as exc:
        raise SystemExit(_die(str(exc))) from None
    n = args.limit or len(data)
    return data, n


def _die(msg: str) -> int:
    print(f"fiqa: error: {msg}", file=sys.stderr)
    return 1


def teacher_config_from_args(args: argparse.Namespace):
    """The :class:`~fiqa_sdk.train.config.TeacherConfig` of the teacher options (``--weights
    --t --n --fast --seed``) of ``fiqa train labels|ediffiqa|...``."""
    from .config import TeacherConfig

    return TeacherConfig(weights=args.weights, t=args.t, n=args.n, fast=args.fast, seed=args.seed)


def _teacher(args: argparse.Namespace):
    from .api import diffiqa_teacher

    cfg = teacher_config_from_args(args)
    return diffiqa_teacher(cfg.weights, cfg.t, cfg.n, cfg.fast, cfg.seed, args.threads)


def _labels(args: argparse.Namespace, data, n: int, shard=(0, 1), max_minutes=None, scorer=None):
    from .data import cache_root
    from .labels import pseudo_labels

    scorer = scorer or _teacher(args)
    q, folder = pseudo_labels(data.faces[:n], scorer, cache_root(args.cache) / "labels",
                              shard=shard, max_minutes=max_minutes, log=_log)
    return q, folder, scorer


def _cmd_train_labels(args: argparse.Namespace) -> int:
    import numpy as np

    try:
        i, k = (int(v) for v in args.shard.split("/"))
        if not 0 <= i < k:
            raise InvalidArgumentError
    except ValueError:
        print(f"fiqa: error: --shard must be i/k with 0 <= i < k, got {args.shard!r}", file=sys.stderr)
        return 2
    if args.degraded_copies < 0:
        print(f"fiqa: error: --degraded-copies must be >= 0, got {args.degraded_copies}",
              file=sys.stderr)
        return 2
    data, n = _training_faces(args)
    q, folder, teacher = _labels(args, data, n, shard=(i, k), max_minutes=args.max_minutes)
    out = {"labels": str(folder), "done": int(np.isfinite(q).sum()), "total": n}
    if args.degraded_copies:  # then the copies' labels, in their own cache folder
        from .api import _degraded

        deg = _degraded(data, n, args.degraded_copies, args.degrade_seed, _log)
        qd, dfolder, _ = _labels(args, deg, len(deg), shard=(i, k), max_minutes=args.max_minutes,
                                 scorer=teacher)
        out["degraded"] = {"labels": str(dfolder), "done": int(np.isfinite(qd).sum()),
                           "total": len(deg)}
    print(json.dumps(out))
    return 0


def config_from_args(args: argparse.Namespace, seed: int | None = None):
    """The :class:`~fiqa_sdk.train.config.TrainingConfig` of ``fiqa train ediffiqa|...``'s
    arguments; ``seed``: the training seed (default ``--train-seed``, else ``--seed``).

    Raises :class:`~fiqa_sdk.errors.InvalidArgumentError` for a value out of range."""
    from .config import DataConfig, DistillConfig, LabelConfig, OptimConfig, TrainingConfig

    if seed is None:
        seed = args.seed if args.train_seed is None else args.train_seed
    return TrainingConfig(
        distill=DistillConfig(method=args.method,
                              labels=LabelConfig(eps=args.eps, p=args.p, min_count=args.min_count),
                              optim=OptimConfig(epochs=args.epochs, seed=seed), theta=args.theta,
                              cut=args.cut, split_seed=args.split_seed),
        teacher=teacher_config_from_args(args),
        data=DataConfig(limit=args.limit, degraded_copies=args.degraded_copies,
                        degrade_seed=args.degrade_seed))


def _cmd_train_distill(args: argparse.Namespace) -> int:
    from ..errors import FiqaError
    from .api import train_regressor

    seeds = getattr(args, "ensemble_seeds", None)
    if seeds is not None:
        if args.train_seed is not None:
            print("fiqa: error: --ensemble-seeds gives the training seeds; drop --train-seed",
                  file=sys.stderr)
            return 2
        if len(set(seeds)) < 2 or len(set(seeds)) != len(seeds):
            print(f"fiqa: error: --ensemble-seeds needs two or more different seeds, got {seeds}",
                  file=sys.stderr)
            return 2
        if args.backbone:
            print("fiqa: error: --ensemble-seeds works with the shipped MobileFaceNet backbone "
                  "only (no --backbone)", file=sys.stderr)
            return 2

    def train(seed: int, out) -> object:
        return train_regressor(celeba_root(args.data), out, config_from_args(args, seed),
                               backbone=args.backbone, threads=args.threads, cache=args.cache,
                               name=args.name, log=_log,
                               progress=_progress if sys.stderr.isatty() else None)

    try:
        if seeds is None:
            result = train(args.seed if args.train_seed is None else args.train_seed, args.out)
            print(json.dumps({"weights": str(result.weights), "final": result.final,
                              "labels": result.labels, "seconds": result.seconds}))
            return 0
        from ..quality.ediffiqa import save_ensemble

        members = []
        for s in seeds:
            _log(f"ensemble member: training seed {s}")
            members.append(train(s, Path(args.out) / f"seed-{s}"))
        first = members[0].weights
        path = save_ensemble([m.weights for m in members],
                             Path(args.out) / f"{first.stem}_x{len(members)}.safetensors")
    except FiqaError as exc:
        return _die(str(exc))
    print(json.dumps({"weights": str(path), "seeds": list(seeds),
                      "members": [str(m.weights) for m in members],
                      "final": [m.final for m in members], "labels": members[0].labels,
                      "seconds": round(sum(m.seconds for m in members), 1)}))
    return 0
