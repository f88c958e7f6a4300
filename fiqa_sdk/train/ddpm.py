"""Extended DDPM training of the DifFIQA denoiser (paper section 3.3, eq. 6).

For each training face ``x`` (aligned 112x112, scaled to [-1, 1], randomly mirrored):

1. ``x' = d(x)``: a BSRGAN-style random degradation (:func:`fiqa_sdk.diffusion.degrade`);
   as in the official data loader, a second and third degradation follow with probability
   0.2 and 0.01;
2. a time index ``t`` uniform in ``0 .. T'-1`` (``T' = 100`` noise levels; see the index
   convention of :mod:`fiqa_sdk.diffusion.schedule`);
3. ``x'_t = (1 - a_t) x + a_t x'`` with ``a_t = sin(t / mix_T * pi / 2)`` (eq. 6; ``mix_T``
   defaults to ``T = 1000`` as in the paper's text; the official code uses ``T' = 100``);
4. ``x_t = q_sample(x'_t, t, eps)`` (eq. 2) and the loss ``|| D(x_t, t) - x ||^2`` (eq. 5,
   x0 target = the clean face).

Adam (lr 8e-5) and an exponential moving average of the weights (decay 0.995, updated every
``ema_every`` steps after ``ema_start`` steps, as the official trainer does with
``ema_pytorch``); the EMA weights are the ones exported for inference.

Reproducibility and slicing: every random draw of step ``k`` (sample order, flips,
degradations, ``t``, noise) comes from a numpy Generator seeded with ``(seed, k)``, so a run
resumed from a checkpoint continues exactly as an uninterrupted one. ``max_minutes`` stops a
slice cleanly (checkpoint + export) so that a long run can be spread over sessions.

Outputs in ``out_dir``: ``checkpoint.pt`` (model, EMA, optimiser, step, RNG states, config;
loadable with ``torch.load(weights_only=True)``), ``loss.csv`` (every logged step),
``val.csv`` (EMA loss on a fixed validation batch at each checkpoint) and, at every stop,
``diffiqa_unet.safetensors`` + ``diffiqa_unet.json`` (EMA weights, config, sha256).
"""

from __future__ import annotations

import copy
import csv
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .._torch import torch_device
from ..diffusion.degrade import degrade
from ..diffusion.schedule import Schedule, degradation_weight
from ..diffusion.unet import UNet, count_parameters, unet_config
from .._preprocess import from_model_range, to_model_range  # noqa: F401 (re-exported)
from ..errors import InvalidArgumentError, InvalidImageError, OutputExistsError, TrainingDivergedError

WEIGHTS_NAME = "diffiqa_unet"


@dataclass
class TrainConfig:
    """Hyper-parameters of :class:`DDPMTrainer` (defaults: the paper's where it gives them)."""

    preset: str = "small"
    unet: dict = field(default_factory=dict)  # overrides of the preset (UNetConfig fields)
    steps: int = 20000
    batch_size: int = 16
    lr: float = 8e-5
    ema_decay: float = 0.995
    ema_every: int = 10
    ema_start: int = 100
    T: int = 1000
    t_max: int = 100  # T': t in 0 .. t_max - 1
    mix_T: int = 1000  # a_t = sin(t / mix_T * pi / 2)
    extra_degrade_p: tuple = (0.2, 0.01)
    hflip: bool = True
    grad_clip: float | None = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    val_size: int = 16
    val_t: tuple = (0, 4, 19, 49, 99)
    channels_last: bool = True
    bf16: bool = False  # bfloat16 autocast; off by default: fp32 is the reference
    device: str = "cpu"  # "cpu", "cuda" or "auto"
    init_from: str | None = None  # warm start: model + EMA weights of another run's checkpoint

    def to_dict(self) -> dict:
        d = asdict(self)
        d["extra_degrade_p"] = list(self.extra_degrade_p)
        d["val_t"] = list(self.val_t)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("extra_degrade_p", "val_t"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def degrade_train(img: np.ndarray, rng: np.random.Generator, extra_p=(0.2, 0.01)) -> np.ndarray:
    """The official loader's chain: one degradation, then more with probabilities ``extra_p``."""
    out = degrade(img, rng)
    for p in extra_p:
        if rng.random() < p:
            out = degrade(out, rng)
    return out


class DDPMTrainer:
    """Trains a :class:`~fiqa_sdk.diffusion.unet.UNet` with the extended DDPM objective.

    Parameters
    ----------
    faces : ndarray, (N, 112, 112, 3) uint8 RGB
        Aligned training faces (e.g. :func:`fiqa_sdk.train.data.build_aligned_cache`).
    out_dir : path
        Checkpoints, logs and the exported weights.
    config : TrainConfig
    data_info : dict
        Free-form description of the data, stored in the exported sidecar.
    """

    def __init__(self, faces: np.ndarray, out_dir: str | os.PathLike, config: TrainConfig | None = None,
                 data_info: dict | None = None, log: Callable[[str], None] | None = None) -> None:
        self.cfg = config or TrainConfig()
        if faces.ndim != 4 or faces.shape[1:] != (112, 112, 3) or faces.dtype != np.uint8:
            raise InvalidImageError(f"faces must be (N, 112, 112, 3) uint8, got {faces.shape} {faces.dtype}")
        if len(faces) < 1:
            raise InvalidArgumentError("no training faces")
        self.faces = faces
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data_info = data_info or {}
        self.log = log or (lambda msg: None)
        self.sched = Schedule(self.cfg.T)
        self.device = torch_device(self.cfg.device)
        torch.manual_seed(self.cfg.seed)  # the initial weights
        self.model = UNet(unet_config(self.cfg.preset, **self.cfg.unet)).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        if self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.ema.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        self.step = 0
        self.losses: list[tuple[int, float, float, float]] = []  # step, loss, t mean, seconds
        self._perm_cache: dict[int, np.ndarray] = {}
        self._flushed = 0
        self._val_seconds = 0.0
        self._val = None

    # -- data --------------------------------------------------------------------------
    def _indices(self, step: int) -> np.ndarray:
        """Sample rows of step ``step``: epochs of seeded permutations (resume-safe)."""
        n, b = len(self.faces), self.cfg.batch_size
        pos = np.arange(step * b, (step + 1) * b)
        out = np.empty(b, np.int64)
        for e in np.unique(pos // n):
            if e not in self._perm_cache:
                self._perm_cache = {e: np.random.default_rng([self.cfg.seed, 1, int(e)]).permutation(n)}
            m = pos // n == e
            out[m] = self._perm_cache[e][pos[m] % n]
        return out

    def make_batch(self, step: int, rows: np.ndarray | None = None, t: np.ndarray | None = None,
                   rng: np.random.Generator | None = None):
        """Inputs and targets of step ``step``: ``(x_t, t, x)`` tensors."""
        cfg = self.cfg
        rng = rng or np.random.default_rng([cfg.seed, 0, step])
        rows = self._indices(step) if rows is None else rows
        clean = np.asarray(self.faces[rows])
        if cfg.hflip:
            flip = rng.random(len(rows)) < 0.5
            clean = np.where(flip[:, None, None, None], clean[:, :, ::-1], clean)
        seeds = rng.integers(0, 2**63 - 1, size=len(rows))
        degraded = np.stack([degrade_train(im, np.random.default_rng(int(s)), cfg.extra_degrade_p)
                             for im, s in zip(clean, seeds)])
        if t is None:
            t = rng.integers(0, cfg.t_max, size=len(rows))
        noise = torch.from_numpy(rng.standard_normal((len(rows), 3, 112, 112), dtype=np.float32))
        x, xd = to_model_range(clean), to_model_range(degraded)
        tt = torch.from_numpy(np.asarray(t, np.int64))
        a = degradation_weight(tt, cfg.mix_T)[:, None, None, None]
        x_mix = (1 - a) * x + a * xd
        x_t = self.sched.q_sample(x_mix, tt, noise)
        return x_t, tt, x

    def _forward(self, model, x_t, t):
        x_t, t = x_t.to(self.device), t.to(self.device)
        if self.cfg.channels_last:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            return model(x_t, t).float()

    # -- optimisation ------------------------------------------------------------------
    def train_step(self) -> tuple[float, float]:
        """One optimiser step; returns (loss, mean t)."""
        x_t, t, x = self.make_batch(self.step)
        self.model.train()
        pred = self._forward(self.model, x_t, t)
        loss = F.mse_loss(pred, x.to(self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.step += 1
        self._update_ema()
        return float(loss.detach()), float(t.float().mean())

    @torch.no_grad()
    def _update_ema(self) -> None:
        cfg = self.cfg
        if self.step <= cfg.ema_start:
            self.ema.load_state_dict(self.model.state_dict())
        elif self.step % cfg.ema_every == 0:
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.lerp_(pm, 1 - cfg.ema_decay)
            for be, bm in zip(self.ema.buffers(), self.model.buffers()):
                be.copy_(bm)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """EMA loss on a fixed batch (same images, degradations, noise every time), per ``t``."""
        t0 = time.perf_counter()
        out = self._validate()
        self._val_seconds = time.perf_counter() - t0 + 1.0
        return out

    def _validate(self) -> dict[str, float]:
        cfg = self.cfg
        if self._val is None:
            rng = np.random.default_rng([cfg.seed, 2])
            rows = rng.choice(len(self.faces), size=min(cfg.val_size, len(self.faces)), replace=False)
            batches = []
            for tv in cfg.val_t:
                batches.append(self.make_batch(0, rows=rows, t=np.full(len(rows), tv), rng=np.random.default_rng([cfg.seed, 3, tv])))
            self._val = batches
        self.ema.eval()
        out = {}
        for tv, (x_t, t, x) in zip(cfg.val_t, self._val):
            out[f"t{tv}"] = float(F.mse_loss(self._forward(self.ema, x_t, t), x.to(self.device)))
        out["mean"] = float(np.mean(list(out.values())))
        return out

    # -- checkpoints -------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self) -> Path:
        state = {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_seed": [self.cfg.seed, 0, self.step],  # every step's Generator is re-derived
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)
        self._flush_losses()
        return self.checkpoint_path

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> int:
        path = Path(path) if path else self.checkpoint_path
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = TrainConfig.from_dict(state["config"])
        for k in ("preset", "unet", "batch_size", "seed", "t_max", "mix_T", "T", "extra_degrade_p"):
            if getattr(saved, k) != getattr(self.cfg, k):
                raise InvalidArgumentError(f"checkpoint {path} was trained with {k}={getattr(saved, k)!r}, "
                                 f"not {getattr(self.cfg, k)!r}; pass the same value to resume")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        for g in self.opt.param_groups:
            g["lr"] = self.cfg.lr
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self._truncate_log(self.step)
        return self.step

    def init_weights_from(self, path: str | os.PathLike) -> int:
        """Warm start: copy model and EMA weights (not the optimiser, step or RNG) of a checkpoint.

        For continuing a run under a changed objective (e.g. another ``mix_T``), where
        :meth:`load_checkpoint` refuses. The architecture must match. Returns the source's step.
        """
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        saved = TrainConfig.from_dict(state["config"])
        if (saved.preset, saved.unet) != (self.cfg.preset, self.cfg.unet):
            raise InvalidArgumentError(f"{path} holds preset {saved.preset!r} {saved.unet}, not "
                             f"{self.cfg.preset!r} {self.cfg.unet}")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        return int(state["step"])

    def _truncate_log(self, step: int) -> None:
        for name in ("loss.csv", "val.csv"):
            p = self.out / name
            if p.is_file():
                with open(p, newline="") as f:
                    rows = list(csv.reader(f))
                keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
                with open(p, "w", newline="") as f:
                    csv.writer(f).writerows(keep)
        self.losses = []
        p = self.out / "loss.csv"
        if p.is_file():
            with open(p, newline="") as f:
                self.losses = [(int(r["step"]), float(r["loss"]), float(r["t_mean"]), float(r["seconds"]))
                               for r in csv.DictReader(f)]
        self._flushed = len(self.losses)

    def _flush_losses(self) -> None:
        p = self.out / "loss.csv"
        start = self._flushed
        new = not p.is_file()
        with open(p, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "loss", "t_mean", "seconds"])
                start = 0
            for row in self.losses[start:]:
                w.writerow([row[0], f"{row[1]:.6f}", f"{row[2]:.1f}", f"{row[3]:.3f}"])
        self._flushed = len(self.losses)

    def _write_val(self, val: dict) -> None:
        p = self.out / "val.csv"
        new = not p.is_file()
        with open(p, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step"] + list(val))
            w.writerow([self.step] + [f"{v:.6f}" for v in val.values()])

    def recent_loss(self, k: int = 100) -> float | None:
        vals = [r[1] for r in self.losses[-k:]]
        return float(np.mean(vals)) if vals else None

    def export(self, path: str | os.PathLike | None = None, val: dict | None = None) -> Path:
        """EMA weights as safetensors + a JSON sidecar (config, steps, losses, sha256)."""
        return export_weights(self.ema, path or self.out / f"{WEIGHTS_NAME}.safetensors", {
            "steps": self.step,
            "complete": self.step >= self.cfg.steps,
            "train_config": self.cfg.to_dict(),
            "final_loss": self.recent_loss(),
            "val_loss": val,
            "data": self.data_info,
        })

    # -- the loop ----------------------------------------------------------------------
    def run(self, max_minutes: float | None = None) -> dict:
        """Train until ``config.steps`` or the time budget; checkpoint + export at the stop."""
        cfg = self.cfg
        t_start = time.perf_counter()
        budget = None if max_minutes is None else max_minutes * 60.0
        stop = {"signal": None}

        def _on_signal(signum, frame):  # finish the step, then checkpoint and stop
            stop["signal"] = signum

        old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)
               if _is_main_thread()}
        step_times: list[float] = []
        reason = "steps"
        try:
            self.log(f"training {cfg.preset} ({count_parameters(self.model) / 1e6:.2f}M params) "
                     f"from step {self.step} to {cfg.steps}, batch {cfg.batch_size}, "
                     f"{len(self.faces)} faces, threads {torch.get_num_threads()}")
            while self.step < cfg.steps:
                if stop["signal"] is not None:
                    reason = "signal"
                    break
                if budget is not None and step_times:
                    # the next step, plus the final checkpoint + validation
                    med = float(np.median(step_times[-20:]))
                    est = med + (self._val_seconds or 2 * med)
                    if time.perf_counter() - t_start + est > budget:
                        reason = "time budget"
                        break
                t0 = time.perf_counter()
                loss, t_mean = self.train_step()
                dt = time.perf_counter() - t0
                step_times.append(dt)
                if not math.isfinite(loss):
                    raise TrainingDivergedError(f"loss is {loss} at step {self.step}")
                self.losses.append((self.step, loss, t_mean, dt))
                if self.step % cfg.log_every == 0:
                    self.log(f"step {self.step}: loss {self.recent_loss(cfg.log_every):.5f} "
                             f"({np.mean(step_times[-cfg.log_every:]):.2f} s/step)")
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                    val = self.validate()
                    self._write_val(val)
                    self.log(f"checkpoint at step {self.step}; EMA val loss {val['mean']:.5f}")
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        self.save_checkpoint()
        val = self.validate()
        if not (self.out / "val.csv").is_file() or self.step % cfg.checkpoint_every:
            self._write_val(val)
        weights = self.export(val=val)
        summary = {"step": self.step, "stopped_by": reason, "recent_loss": self.recent_loss(),
                   "val_loss": val, "weights": str(weights),
                   "seconds": round(time.perf_counter() - t_start, 1),
                   "sec_per_step": float(np.median(step_times)) if step_times else None}
        self.log(f"stopped at step {self.step} ({reason}); weights {weights}")
        return summary


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def export_weights(model: torch.nn.Module, path: str | os.PathLike, info: dict | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (safetensors) and ``path.json`` next to it.

    The sidecar holds ``unet`` (the :class:`UNetConfig`), ``schedule``, ``sha256`` of the
    safetensors file and everything in ``info``.
    """
    from safetensors.torch import save_file

    from .._weights import write_sidecar

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(sd, str(tmp), metadata={"format": "pt", "model": "fiqa-sdk diffiqa unet"})
    os.replace(tmp, path)
    os.chmod(path, 0o644)
    write_sidecar(path, {
        "model": "diffiqa-unet",
        "objective": "x0",
        "unet": model.config.to_dict(),
        "parameters": count_parameters(model),
        "schedule": {"kind": "cosine", "T": 1000, "s": 0.008, "max_beta": 0.999},
        **(info or {}),
    }, newline=False)  # no final newline, as the shipped denoisers' sidecars
    return path


def export_checkpoint(checkpoint: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Export the EMA weights of a training ``checkpoint.pt`` (e.g. of a run still in progress)
    as ``path`` (safetensors) + sidecar, like the export at the end of a run."""
    state = torch.load(Path(checkpoint), map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(state["config"])
    model = UNet(unet_config(cfg.preset, **cfg.unet))
    model.load_state_dict(state["ema"])
    info = {"training": {**cfg.to_dict(), "step": int(state["step"]), "complete": False,
                         "source": "checkpoint export (EMA)"}}
    return export_weights(model, path, info)


def train_ddpm(faces: np.ndarray, out_dir: str | os.PathLike, config: TrainConfig | None = None,
               resume: bool = False, max_minutes: float | None = None, data_info: dict | None = None,
               log: Callable[[str], None] | None = None) -> dict:
    """Train (or resume) the DifFIQA denoiser; see :class:`DDPMTrainer`. Returns a summary."""
    trainer = DDPMTrainer(faces, out_dir, config, data_info=data_info, log=log)
    if resume:
        if trainer.checkpoint_path.is_file():
            trainer.load_checkpoint()
            trainer.log(f"resumed from {trainer.checkpoint_path} at step {trainer.step}")
        else:
            trainer.log(f"no checkpoint in {trainer.out}; starting from scratch")
    elif trainer.checkpoint_path.is_file():
        raise OutputExistsError(f"{trainer.checkpoint_path} exists; pass resume=True (--resume) to "
                              "continue it or choose another output folder")
    else:
        for name in ("loss.csv", "val.csv"):
            (trainer.out / name).unlink(missing_ok=True)
        if trainer.cfg.init_from:
            src_step = trainer.init_weights_from(trainer.cfg.init_from)
            trainer.log(f"initialised from {trainer.cfg.init_from} (step {src_step})")
    return trainer.run(max_minutes)
