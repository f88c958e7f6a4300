"""Distillation of DifFIQA into one-pass regressors: eDifFIQA, eDifFIQA-free, DifFIQA(R).

eDifFIQA (T-BIOM 2024, section 3.6; details pinned in ../shared/docs/method.md): an FR backbone
``M_r`` (initialised as the target FR model ``M``) with an MLP head is trained on

    L = theta * (1 - cos(M_r(x), M(x))) + (1 - theta) * |q_hat(x) - q_o(x)|

where ``q_o`` are the label-optimized DifFIQA pseudo-labels (:mod:`fiqa_sdk.train.labels`).
Adam with lr 1e-3 for the head and 1e-4 for the trainable last layers of the backbone, gradient
norm clipping at 5, random horizontal flips (the target embedding ``M(x)`` is the one of the
flipped crop when the crop is flipped), seeded.

- ``method="ediffiqa"``: as above.
- ``method="diffiqa-r"``: a linear head, the raw (min-max scaled, not optimized) labels, L1 only.
- ``method="ediffiqa-free"``: the backbone is frozen (it stays exactly ``M``): only the MLP
  head is trained, on ``M``'s raw embeddings, with the optimized labels (the consistency term
  is zero by construction).

What differs between them is decided by the method's :class:`~fiqa_sdk.train.methods.TrainingMethod`
(targets, head, frozen part, loss terms, file name); :func:`distill` asks it and never branches
on the name. The hyper-parameters are a :class:`~fiqa_sdk.train.config.DistillConfig`
(re-exported here).

CPU economy: the frozen front of the backbone is run once per crop (and its mirror) and its
activations cached in memory; each epoch then runs only the trainable tail and the head. The
backbone must offer ``split(cut) -> (stem, tail)`` (:class:`fiqa_sdk.nets.MobileFaceNet` does);
any other torch module is fine-tuned whole (no cache).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..embed.base import run_torch_module
from ..errors import FiqaError, InvalidArgumentError
from ..quality.ediffiqa import QualityRegressor, save_regressor
from .config import DistillConfig, LabelConfig, OptimConfig  # noqa: F401 - re-exported
from .labels import save_npy


def split_identities(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of validation faces: a seeded ``fraction`` of the identities."""
    uniq = np.unique(ids)
    rng = np.random.default_rng([seed, 7])
    n_val = int(round(fraction * len(uniq)))
    val_ids = rng.choice(uniq, size=n_val, replace=False) if n_val else np.array([], uniq.dtype)
    return np.isin(ids, val_ids)


def _stem_features(stem: nn.Module, faces: np.ndarray, cfg: DistillConfig, frozen: bool,
                   cache: str | os.PathLike | None, base_state: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Activations of the frozen stem for the crops and (with ``hflip``) their mirrors."""
    paths = None
    if cache is not None:
        import hashlib

        from .labels import faces_fingerprint

        h = hashlib.sha256(faces_fingerprint(faces).encode())
        h.update(f"{frozen}/{cfg.cut}".encode())
        for k in sorted(base_state):
            h.update(k.encode())
            h.update(base_state[k].cpu().numpy().tobytes())
        key = h.hexdigest()[:16]
        paths = [Path(cache) / f"stem_{key}{s}.npy" for s in ("", "_flip")]
        if paths[0].is_file() and (not cfg.hflip or paths[1].is_file()):
            return (torch.from_numpy(np.load(paths[0])),
                    torch.from_numpy(np.load(paths[1])) if cfg.hflip else None)
    out = [run_torch_module(stem, faces, flip=False).half()]
    if cfg.hflip:
        out.append(run_torch_module(stem, faces, flip=True).half())
    if paths is not None:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        for p_, t in zip(paths, out):
            save_npy(p_, t.numpy())
    return out[0], (out[1] if cfg.hflip else None)


class HeldOutVerification:
    """ISO/IEC 29794-1 FNMR-EDC on the validation identities: model selection without LFW.

    All-vs-all comparisons of the validation faces with the target FR model's embeddings
    (same-model setting), the threshold at ``fmr`` over all their non-mated pairs, pair quality
    = min of the two faces; :meth:`pauc` gives the normalized pAUC of any quality vector over
    those faces (lower = better). Needs at least two faces of one identity and one non-mated pair.
    """

    def __init__(self, emb: np.ndarray, ids: np.ndarray, fmr: float = 1e-3) -> None:
        from ..eval.evaluate import pair_scores, threshold_all_nonmated

        e = np.asarray(emb, np.float32)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        ids = np.asarray(ids)
        self.fmr = float(fmr)
        self.threshold, self.n_nonmated = threshold_all_nonmated(e, ids, self.fmr)
        i, j = np.triu_indices(len(ids), 1)
        same = ids[i] == ids[j]
        self.mated = np.stack([i[same], j[same]], axis=1)
        if not len(self.mated):
            raise InvalidArgumentError("the validation identities have no mated pairs")
        self.scores = pair_scores(e, self.mated)
        self.fnmr0 = float(np.mean(self.scores < self.threshold.threshold))

    def pauc(self, quality: np.ndarray, limits: tuple[float, ...] = (0.2, 0.3)) -> dict:
        from ..eval.evaluate import edc_at_threshold

        res = edc_at_threshold(self.scores, np.asarray(quality, np.float64)[self.mated],
                               self.threshold, self.fmr, self.n_nonmated)
        return {f"pauc_{lim:g}": float(res.pauc(lim, normalized=True)) for lim in limits}

    def describe(self) -> dict:
        return {"mated": int(len(self.mated)), "nonmated": int(self.n_nonmated),
                "fmr": self.fmr, "threshold": float(self.threshold.threshold),
                "fnmr0": self.fnmr0}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) > 2 else float("nan")


def distill(faces: np.ndarray, ids: np.ndarray, labels: np.ndarray, target_emb: np.ndarray,
            target_emb_flip: np.ndarray | None, backbone: nn.Module, out_dir: str | os.PathLike,
            config: DistillConfig | None = None, meta: dict | None = None,
            log: Callable[[str], None] | None = None, name: str | None = None,
            feature_cache: str | os.PathLike | None = None, raw_target: bool = False,
            verify: np.ndarray | None = None) -> dict:
    """Train one regressor and export it to ``out_dir/<name>.safetensors`` (+ ``.json``).

    Parameters
    ----------
    faces : (N, 112, 112, 3) uint8 RGB aligned training crops.
    ids : (N,) identity labels (class centres; validation split by identity).
    labels : (N,) raw DifFIQA scores (min-max scaled here over the training faces).
    target_emb, target_emb_flip : (N, D) embeddings of the crops / their mirrors by the target
        FR model ``M`` (L2-normalised or not); the mirror ones may be None when ``hflip`` is off.
    backbone : the FR backbone ``M_r`` (a torch module, raw ``(N, D)`` output), modified in place.
    config : a :class:`~fiqa_sdk.train.config.DistillConfig` (default ``DistillConfig()``); its
        ``method`` names the :class:`~fiqa_sdk.train.methods.TrainingMethod`.
    meta : extra sidecar entries (backbone description, data, teacher).
    raw_target : the target embeddings are ``M``'s raw outputs and ``backbone`` is ``M``; the
        head of a frozen-backbone method (``ediffiqa-free``) then trains on them directly,
        without running the backbone.
    feature_cache : folder where the frozen-stem activations are kept between runs (float16,
        keyed by the faces, the cut and the backbone weights), so that several regressors
        (ablations, DifFIQA(R)) pay for the frozen part once.
    verify : (N,) bool, the faces the held-out verification EDC may use (default: all); e.g.
        only the real faces when synthetic degraded copies are trained on as well.

    Returns a summary (per-epoch losses, validation L1 and Spearman, label statistics).

    Examples
    --------
    >>> cfg = DistillConfig("diffiqa-r", optim=OptimConfig(epochs=2))
    >>> summary = distill(faces, ids, labels, emb, emb_flip, backbone, "runs/r", cfg)  # doctest: +SKIP
    >>> summary["weights"]  # doctest: +SKIP
    'runs/r/diffiqa_r_mbf.safetensors'
    """
    from .labels import minmax
    from .methods import get_method

    cfg = config or DistillConfig()
    if not isinstance(cfg, DistillConfig):
        raise InvalidArgumentError(f"config must be a DistillConfig, got {type(cfg).__name__}")
    method = get_method(cfg.method)
    log = log or (lambda msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(faces)
    ids = np.asarray(ids)
    labels = np.asarray(labels, np.float64)
    if not (len(ids) == len(labels) == len(target_emb) == n):
        raise InvalidArgumentError("faces, ids, labels and target_emb must have the same length")
    if not np.isfinite(labels).all():
        raise InvalidArgumentError(f"{int((~np.isfinite(labels)).sum())} labels are missing (NaN): finish "
                         "the pseudo-labels first")
    if cfg.hflip and target_emb_flip is None:
        raise InvalidArgumentError("hflip needs target_emb_flip (the target model's embeddings of the mirrors)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 11])

    # -- labels ------------------------------------------------------------------------
    q = minmax(labels)
    val = split_identities(ids, cfg.val_fraction, cfg.seed if cfg.split_seed is None
                           else cfg.split_seed)
    tr = ~val
    # every validation face (also those without a class centre) that the EDC may use
    val_all = np.flatnonzero(val if verify is None else val & np.asarray(verify, bool))
    verification = None
    if len(val_all):
        try:
            verification = HeldOutVerification(np.asarray(target_emb)[val_all], ids[val_all])
        except (ValueError, FiqaError) as exc:  # too few validation faces for an EDC
            log(f"no held-out verification EDC: {exc}")
    stats: dict = {"faces": n, "train": int(tr.sum()), "val": int(val.sum()),
                   "identities": int(len(np.unique(ids))),
                   "raw_min": float(labels.min()), "raw_max": float(labels.max())}
    q_o, label_stats = method.targets(q, target_emb, ids, cfg)
    stats.update(label_stats)
    keep = np.isfinite(q_o)  # a face without a usable target is not trained on
    tr &= keep
    val &= keep
    stats.update(train_used=int(tr.sum()), val_used=int(val.sum()),
                 q_o_mean=float(np.nanmean(q_o)), q_mean=float(q.mean()))
    log(f"{cfg.method}: {stats}")

    # -- model -------------------------------------------------------------------------
    base_state = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    dim = int(target_emb.shape[1])
    model = QualityRegressor(backbone, head=method.head, dim=dim, hidden=method.head_hidden)
    backbone.requires_grad_(False)
    stem, tail = method.split(backbone, cfg.cut)
    if not method.frozen_backbone:
        for p_ in tail.parameters():
            p_.requires_grad_(True)
    stem.eval()
    tail.eval()  # BatchNorm statistics stay those of M (fine-tuning affine parameters only)
    t0 = time.time()
    if method.frozen_backbone and raw_target:
        # the frozen backbone *is* the target model: its output is the given raw embedding
        feats = torch.as_tensor(np.asarray(target_emb), dtype=torch.float32)
        feats_f = (torch.as_tensor(np.asarray(target_emb_flip), dtype=torch.float32)
                   if cfg.hflip else None)
    else:
        feats, feats_f = _stem_features(stem, faces, cfg, method.frozen_backbone, feature_cache,
                                        base_state)
    log(f"frozen-stem features {tuple(feats.shape)} ready in {time.time() - t0:.0f} s")
    tgt = F.normalize(torch.as_tensor(np.asarray(target_emb), dtype=torch.float32), dim=1)
    tgt_f = (F.normalize(torch.as_tensor(np.asarray(target_emb_flip), dtype=torch.float32), dim=1)
             if cfg.hflip else None)
    qt = torch.as_tensor(np.nan_to_num(q_o), dtype=torch.float32)

    groups = [{"params": list(model.head.parameters()), "lr": cfg.lr_head}]
    tail_params = [p_ for p_ in tail.parameters() if p_.requires_grad]
    if tail_params:
        groups.append({"params": tail_params, "lr": cfg.lr_backbone})
    opt = torch.optim.Adam(groups)
    theta = method.consistency_weight(cfg)
    params = [p_ for g in groups for p_ in g["params"]]

    def forward(rows: np.ndarray, flip: np.ndarray):
        h = feats[rows].float()
        if flip.any():
            h[torch.from_numpy(flip)] = feats_f[rows[flip]].float()
        e = tail(h)
        return e, model.head(e).squeeze(-1)

    def predict(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted qualities, 1 - cos with the target embedding) of ``rows``, unflipped."""
        with torch.inference_mode():
            preds, rc = [], []
            for i in range(0, len(rows), 256):
                r = rows[i : i + 256]
                e, qh = forward(r, np.zeros(len(r), bool))
                preds.append(qh)
                rc.append(1 - F.cosine_similarity(e, tgt[r], dim=1))
            return torch.cat(preds).numpy(), torch.cat(rc).numpy()

    def evaluate(rows: np.ndarray) -> dict:
        qh, rc = predict(rows)
        out = {"l1": float(np.abs(qh - q_o[rows]).mean()), "rc": float(rc.mean()),
               "spearman_q_o": _spearman(qh, q_o[rows]), "spearman_q": _spearman(qh, q[rows])}
        if verification is not None:
            out.update(verification.pauc(predict(val_all)[0]))
        return out

    held_out: dict = {}
    if verification is not None:
        # the references on the same held-out faces: the teacher's labels and, where the target
        # embeddings are raw, the embedding-norm baseline of the same FR model
        held_out = {**verification.describe(), "teacher": verification.pauc(labels[val_all])}
        norms = np.linalg.norm(np.asarray(target_emb, np.float64)[val_all], axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            held_out["embedding-norm"] = verification.pauc(norms)
        log(f"held-out verification: {json.dumps(held_out)}")

    train_rows, val_rows = np.flatnonzero(tr), np.flatnonzero(val)
    history = []
    t0 = time.time()
    for epoch in range(cfg.epochs):
        order = rng.permutation(train_rows)
        flips = rng.random(len(order)) < 0.5 if cfg.hflip else np.zeros(len(order), bool)
        losses = []
        for i in range(0, len(order), cfg.batch_size):
            rows, fl = order[i : i + cfg.batch_size], flips[i : i + cfg.batch_size]
            e, qh = forward(rows, fl)
            l_q = (qh - qt[rows]).abs().mean()
            loss = (1 - theta) * l_q
            if theta > 0:
                target = tgt[rows].clone()
                if fl.any():
                    target[torch.from_numpy(fl)] = tgt_f[rows[fl]]
                loss = loss + theta * (1 - F.cosine_similarity(e, target, dim=1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "seconds": round(time.time() - t0, 1)}
        if len(val_rows):
            row.update({f"val_{k}": v for k, v in evaluate(val_rows).items()})
        history.append(row)
        log(json.dumps(row))
    name = name or method.weights_stem
    sidecar = dict(meta or {})
    sidecar.update({"method": cfg.method, "config": cfg.to_dict(), "labels": stats,
                    "history": history, "held_out_verification": held_out})
    sidecar.setdefault("backbone", {})["frozen"] = bool(method.frozen_backbone)
    sidecar.setdefault("head", {}).update({"dim": dim, "hidden": method.head_hidden})
    path = save_regressor(model, out / f"{name}.safetensors", sidecar, base_state=base_state)
    with open(out / f"{name}.history.json", "w") as f:
        json.dump(history, f, indent=1)
    return {"weights": str(path), "history": history, "labels": stats,
            "held_out_verification": held_out,
            "seconds": round(time.time() - t0, 1), "final": history[-1] if history else {},
            "lr_groups": [g["lr"] for g in groups],
            "trainable_params": int(sum(p_.numel() for p_ in tail_params)) + sum(
                p_.numel() for p_ in model.head.parameters()),
        }
