"""Face image quality scorers, created by name: ``create_scorer("flip-consistency")``."""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .base import Scorer

SCORERS: Registry[Scorer] = Registry("scorer")


def _lazy(module: str, cls: str):
    def factory(**kw: Any) -> Scorer:
        import importlib

        return getattr(importlib.import_module(module, __name__), cls)(**kw)

    return factory


for _name, _cls, _doc in [
    ("random", "RandomScorer", "seeded pseudo-random score (the EDC floor)"),
    ("det-score", "DetScoreScorer", "detector confidence"),
    ("inter-eye", "InterEyeScorer", "inter-eye distance in source pixels"),
    ("face-area", "FaceAreaScorer", "bounding-box area in source pixels"),
    ("sharpness", "SharpnessScorer", "variance of the Laplacian of the grey crop"),
    ("embedding-norm", "EmbeddingNormScorer", "norm of the un-normalised FR embedding"),
    ("flip-consistency", "FlipConsistencyScorer", "cosine of the embeddings of crop and mirror"),
]:
    SCORERS.register(_name, _doc)(_lazy(".baselines", _cls))

SCORERS.register("diffiqa", "DifFIQA: FR-embedding stability under DDPM noising + restoration "
                 "(weights= a trained denoiser)")(_lazy(".diffiqa", "DifFIQAScorer"))
for _name, _cls, _doc in [
    ("ediffiqa", "EDifFIQAScorer", "eDifFIQA: DifFIQA distilled with label optimization into a "
     "one-pass MobileFaceNet regressor (shipped weights or weights=)"),
    ("ediffiqa-free", "EDifFIQAFreeScorer", "eDifFIQA head on the frozen ArcFace embedding "
     "(quality at the cost of an MLP when the gate embeds with the same model)"),
    ("diffiqa-r", "DifFIQARScorer", "DifFIQA(R): MobileFaceNet + linear head regressed on raw "
     "DifFIQA labels (the papers' distillation baseline)"),
]:
    SCORERS.register(_name, _doc, precisions=("auto", "fp32", "int8"))(_lazy(".ediffiqa", _cls))


def create_scorer(name: str | Scorer = "flip-consistency", /, **kwargs: Any) -> Scorer:
    """A scorer by registry name (keyword arguments go to its constructor), or pass one through."""
    if isinstance(name, Scorer):
        return name
    return SCORERS.create(name, **kwargs)


def list_scorers() -> list[str]:
    """Names of the registered quality scorers."""
    return SCORERS.names()


__all__ = ["Scorer", "SCORERS", "create_scorer", "list_scorers"]
