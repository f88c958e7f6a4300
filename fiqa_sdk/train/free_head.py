"""``ediffiqa-free`` v2: a quality head on the frozen FR model's raw embedding that starts as,
and can always fall back to, the embedding norm.

The head (``kind="norm-mlp"``, :class:`~fiqa_sdk.quality.ediffiqa.NormResidualHead`) is

    q(e) = a * log ||e|| + b + MLP(e / ||e||)

with the MLP's last layer initialised at zero and ``a = 1``: before training it ranks faces
exactly as ``embedding-norm`` (the baseline it has to beat, computed from the same embedding
for free), and training only adds a direction-dependent correction. The previous head (an MLP
on the raw embedding, eps-0.5 labels) could not even reproduce the norm and scored worse than
it on every hard set.

Training data: the aligned celeba-subset faces (the regressors' training set) and one seeded
degraded copy of each face (:func:`fiqa_sdk.train.data.degraded_copies`, the
same copies as ``--degraded-copies 1``). Features: the raw embedding of the frozen backbone
(the shipped regressors' MobileFaceNet, i.e. ArcFace ``w600k_mbf``). Targets: the scores of a
*label scorer* on the same crops, default the shipped ``diffiqa-r`` (the DifFIQA teacher's raw
labels distilled into the fine-tuned backbone; cheap, and the best scorer on hard data in
issue 23), standardised. Loss: MSE; Adam; identities split as the regressors' (10 %, seed 0) for
the validation Spearman; the last epoch is kept.

    python -m fiqa_sdk.train.free_head --out runs/free-v2        # writes ediffiqa_free_mbf.*
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from .config import FreeHeadConfig
from .data import cache_root, degraded_copies, load_aligned

FREE_HEAD_VERSION = 2


def _frozen_backbone():
    from ..embed.arcface import default_model_path
    from ..nets.mobilefacenet import load_mobilefacenet

    return load_mobilefacenet(default_model_path(), verify=True).eval().requires_grad_(False)


def raw_embeddings(backbone, faces: np.ndarray, batch: int = 64, log=None) -> np.ndarray:
    from ..embed.base import run_torch_module

    out = np.empty((len(faces), 512), np.float32)
    t0 = time.time()
    for i in range(0, len(faces), batch):
        chunk = np.asarray(faces[i : i + batch])
        out[i : i + batch] = run_torch_module(backbone, chunk, batch).numpy()
        if log and (i // batch) % 20 == 0:
            log(f"  embeddings {i + batch}/{len(faces)} ({time.time() - t0:.0f} s)")
    return out


def training_features(cache=None, label_scorer: str = "diffiqa-r", log=None) -> dict:
    """Raw embeddings and label-scorer scores of the celeba faces and their degraded copies
    (cached in ``<aligned>/free-head-v2-<label scorer>.npz``)."""
    from ..quality import create_scorer

    say = log or (lambda m: None)
    aligned = load_aligned(cache_root(cache) / "celeba-subset-aligned")
    path = Path(aligned.path) / f"free-head-v{FREE_HEAD_VERSION}-{label_scorer}.npz"
    if path.is_file():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    deg = degraded_copies(aligned, 1, 1)
    faces = np.asarray(aligned.faces)
    sets = {"orig": faces, "deg": np.asarray(deg.faces)}
    backbone = _frozen_backbone()
    scorer = create_scorer(label_scorer, backend="onnxruntime", threads=1)
    out: dict[str, np.ndarray] = {"ids": np.asarray(aligned.identities)}
    for k, x in sets.items():
        say(f"{k}: raw embeddings of {len(x)} faces")
        out[f"emb_{k}"] = raw_embeddings(backbone, x, log=say)
        say(f"{k}: {label_scorer} scores")
        out[f"label_{k}"] = np.asarray(scorer.score(x), np.float64)
    if hasattr(deg, "path") and (Path(deg.path) / "mix.npy").is_file():
        out["deg_mix"] = np.load(Path(deg.path) / "mix.npy")
    np.savez(path, **out)
    return out


def train_head(feats: dict, epochs: int = 30, lr: float = 1e-3, hidden: int = 256,
               weight_decay: float = 1e-4, seed: int = 0, log=None,
               config: FreeHeadConfig | None = None):
    """Fit the norm-residual head; returns ``(head, history, label statistics)``.

    ``config`` (a :class:`~fiqa_sdk.train.config.FreeHeadConfig`) replaces ``epochs``, ``lr``,
    ``hidden``, ``weight_decay`` and ``seed`` when given; either way they are validated
    (:class:`~fiqa_sdk.errors.InvalidArgumentError`).

    Examples
    --------
    >>> head, history, stats = train_head(feats, config=FreeHeadConfig(epochs=3))  # doctest: +SKIP
    """
    from scipy.stats import spearmanr

    from ..quality.ediffiqa import NormResidualHead
    from .distill import split_identities

    cfg = config or FreeHeadConfig(epochs=epochs, lr=lr, hidden=hidden,
                                   weight_decay=weight_decay, seed=seed)
    epochs, lr, hidden, weight_decay, seed = (cfg.epochs, cfg.lr, cfg.hidden, cfg.weight_decay,
                                              cfg.seed)
    say = log or (lambda m: None)
    torch.manual_seed(seed)
    ids = feats["ids"]
    val = split_identities(ids, 0.1, 0)
    x = np.concatenate([feats["emb_orig"], feats["emb_deg"]])
    y = np.concatenate([feats["label_orig"], feats["label_deg"]])
    v = np.concatenate([val, val])
    mu, sd = float(y[~v].mean()), float(y[~v].std())
    yt = (y - mu) / sd
    X, Y = torch.from_numpy(x), torch.from_numpy(yt).float()
    head = NormResidualHead(512, hidden)
    # start at the norm's scale: a * log||e|| with a chosen so that its spread matches the labels'
    with torch.no_grad():
        ln = np.log(np.linalg.norm(x[~v], axis=1))
        slope = float(np.cov(ln, yt[~v])[0, 1] / np.var(ln))
        head.scale.fill_(max(slope, 1e-3))
        head.bias.fill_(float(-max(slope, 1e-3) * ln.mean()))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    tr = np.flatnonzero(~v)
    rng = np.random.default_rng(seed)
    hist = []

    def val_metrics():
        with torch.no_grad():
            p = head(X[v]).squeeze(-1).numpy()
        norm = np.linalg.norm(x[v], axis=1)
        return (float(spearmanr(p, yt[v])[0]), float(spearmanr(norm, yt[v])[0]),
                float(np.mean((p - yt[v]) ** 2)))

    s0 = val_metrics()
    say(f"epoch 0: val Spearman {s0[0]:.3f} (norm alone {s0[1]:.3f}), mse {s0[2]:.3f}, "
        f"scale {float(head.scale.detach()):.3f}")
    for ep in range(1, epochs + 1):
        perm = rng.permutation(tr)
        tot = 0.0
        for i in range(0, len(perm), 256):
            r = torch.from_numpy(perm[i : i + 256])
            loss = torch.mean((head(X[r]).squeeze(-1) - Y[r]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(r)
        s = val_metrics()
        hist.append({"epoch": ep, "loss": tot / len(perm), "val_spearman": s[0],
                     "val_spearman_norm": s[1], "val_mse": s[2], "scale": float(head.scale.detach())})
        say(f"epoch {ep}: loss {tot / len(perm):.4f}, val Spearman {s[0]:.3f} (norm {s[1]:.3f}), "
            f"mse {s[2]:.3f}, scale {float(head.scale.detach()):.3f}")
    return head.eval(), hist, {"label_mean": mu, "label_std": sd}


def save_free_regressor(head, out_dir: str | Path, meta_extra: dict) -> Path:
    from ..quality.ediffiqa import QualityRegressor, save_regressor

    model = QualityRegressor(_frozen_backbone(), head="norm-mlp", dim=512,
                             hidden=int(meta_extra["head"]["hidden"]))
    model.head.load_state_dict(head.state_dict())
    base = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    meta = {"backbone": {"arch": "mobilefacenet", "base": "w600k_mbf.onnx",
                         "base_sha256": "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
                         "frozen": True},
            "target_model": "arcface:w600k_mbf", "method": "ediffiqa-free", **meta_extra}
    return save_regressor(model, Path(out_dir) / "ediffiqa_free_mbf.safetensors", meta, base)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--label-scorer", default="diffiqa-r")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    cfg = FreeHeadConfig(label_scorer=a.label_scorer, epochs=a.epochs, lr=a.lr, hidden=a.hidden,
                         weight_decay=a.weight_decay, seed=a.seed)
    torch.set_num_threads(1)

    def log(m):
        print(time.strftime("%H:%M:%S"), m, flush=True)

    t0 = time.time()
    feats = training_features(a.cache, cfg.label_scorer, log)
    head, hist, norm = train_head(feats, log=log, config=cfg)
    meta = {"head": {"kind": "norm-mlp", "dim": 512, "hidden": cfg.hidden},
            "free_head_version": FREE_HEAD_VERSION,
            "labels": {"scorer": cfg.label_scorer, "backend": "onnxruntime", **norm,
                       "faces": int(len(feats["ids"])), "sets": ["orig", "deg"]},
            "data": {"source": "celeba-subset-aligned (+ degraded-k1-s1 copies)",
                     "identities": int(len(np.unique(feats["ids"])))},
            "config": {"method": "ediffiqa-free", "epochs": cfg.epochs, "lr": cfg.lr,
                       "weight_decay": cfg.weight_decay, "seed": cfg.seed, "val_fraction": 0.1,
                       "split_seed": 0, "optimizer": "AdamW", "batch_size": 256},
            "history": hist, "seconds": round(time.time() - t0, 1),
            "command": "python -m fiqa_sdk.train.free_head " + " ".join(argv or [])}
    p = save_free_regressor(head, a.out, meta)
    log(f"wrote {p}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
