"""The face embedding and its quality in one pass over a shared backbone.

The distilled regressors (``ediffiqa``, ``diffiqa-r``) are the ArcFace MobileFaceNet
(``w600k_mbf``) with its first ``cut`` blocks frozen: on a given crop those blocks compute
exactly what the ArcFace embedder computes first. :class:`JointModel` runs that stem once and
feeds both the embedder's own tail (the ArcFace embedding, unchanged) and the regressor's
fine-tuned tail(s) and head (the quality); :class:`JointRunner` runs it with onnxruntime. A
:class:`~fiqa_sdk.QualityGate` with the default ``arcface`` embedder uses it, so that quality
costs only the regressor's tails on top of the embedding the gate computes anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .ediffiqa import RegressorScorer
from .regressor_models import RegressorEnsemble, same_weights
from .regressor_nets import QualityRegressor


class _QualityTail(nn.Module):
    """A regressor (or seed ensemble) from the input of block ``cut`` to its quality."""

    def __init__(self, model: nn.Module, cut: int) -> None:
        super().__init__()
        self.cut = int(cut)
        if isinstance(model, RegressorEnsemble):
            self.tails, self.heads = model.tails, model.heads
        else:
            self.tails = nn.ModuleList([nn.Sequential(*model.backbone.blocks[self.cut:])])
            self.heads = nn.ModuleList([model.head])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        qs = [head(tail(h)).squeeze(-1) for tail, head in zip(self.tails, self.heads)]
        return torch.stack(qs, -1).mean(-1)


class JointModel(nn.Module):
    """Base MobileFaceNet stem -> (its own tail: raw embedding, regressor tail: quality).

    ``forward(x)``: ``x`` ``(N, 3, 112, 112)`` float32 RGB in [-1, 1] -> ``(embedding, quality)``,
    the base model's raw ``(N, 512)`` embedding and the regressor's ``(N,)`` quality (the
    output order of :class:`~fiqa_sdk.quality.ediffiqa.QualityRegressor`, so that the same
    export serves both).
    """

    def __init__(self, base: nn.Module, regressor: QualityRegressor | RegressorEnsemble,
                 cut: int) -> None:
        super().__init__()
        self.cut = int(cut)
        self.stem, self.embed_tail = base.split(self.cut)
        self.quality_tail = _QualityTail(regressor, self.cut)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.stem(x)
        return self.embed_tail(h), self.quality_tail(h)


def _regressor_cut(scorer: RegressorScorer) -> int | None:
    model = scorer.model
    if isinstance(model, RegressorEnsemble):
        return model.cut
    cut = scorer.meta.get("config", {}).get("cut")
    blocks = getattr(getattr(model, "backbone", None), "blocks", None)
    if cut is None or blocks is None or not 0 < int(cut) < len(blocks):
        return None
    return int(cut)


def joint_model(scorer: Any, embedder: Any) -> JointModel | None:
    """A :class:`JointModel` of ``embedder`` (the shipped ArcFace ``w600k_mbf``) and ``scorer``
    (a MobileFaceNet regressor distilled from that model, its stem unchanged), or None when
    the two do not share a stem (another embedder, a custom backbone, a frozen-backbone
    regressor, which reads the embedding itself, or a stem that training changed)."""
    from ..embed.arcface import is_shipped_arcface
    from ..nets.mobilefacenet import load_mobilefacenet

    if not isinstance(scorer, RegressorScorer) or not is_shipped_arcface(embedder):
        return None
    if scorer.frozen_backbone:
        return None
    bb = scorer.meta.get("backbone", {})
    if bb.get("arch") != "mobilefacenet" or bb.get("base") != "w600k_mbf.onnx":
        return None
    cut = _regressor_cut(scorer)
    if cut is None:
        return None
    base = load_mobilefacenet(embedder.model_path)
    model = scorer.model.cpu()
    front = (model.stem if isinstance(model, RegressorEnsemble)
             else nn.Sequential(*model.backbone.blocks[:cut]))
    if not same_weights(base.split(cut)[0], front):
        return None
    return JointModel(base, model, cut).eval().requires_grad_(False)


class JointRunner:
    """A :class:`JointModel` exported to ONNX (cached like the regressor graphs, see
    :func:`fiqa_sdk.quality.regressor_onnx.cached_graph`) and run by onnxruntime.

    Parameters
    ----------
    model : JointModel
    device : {"cpu", "cuda", "auto"}
    threads : int or None
        onnxruntime intra-op threads (None: every core the process may use).
    tag : str
        Name of the cached graph file.
    """

    def __init__(self, model: JointModel, device: str = "cpu", threads: int | None = None,
                 tag: str = "joint") -> None:
        from ..cpu import usable_cpus
        from .._onnx import make_session
        from .regressor_onnx import cached_graph

        self.threads = int(threads) if threads else usable_cpus()
        self.source = cached_graph(model, tag)
        try:
            self.session = make_session(self.source, device=device, threads=self.threads)
        except Exception:  # noqa: BLE001 - a damaged cache file: export again, once
            if not isinstance(self.source, Path):
                raise
            self.source = cached_graph(model, tag, refresh=True)
            self.session = make_session(self.source, device=device, threads=self.threads)

    def __call__(self, aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(raw embeddings (N, 512) float32, qualities (N,) float64)`` of ``(N, 112, 112, 3)``
        uint8 RGB aligned crops."""
        from .regressor_onnx import to_blob

        emb, q = self.session.run(["embedding", "quality"], {"input": to_blob(aligned)})
        return np.asarray(emb, np.float32), np.asarray(q, np.float64)


__all__ = ["JointModel", "JointRunner", "joint_model"]
