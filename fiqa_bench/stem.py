"""One frozen stem pass for several distilled regressors (ablations over many regressors).

Regressors distilled with the same ``cut`` share the frozen front ``blocks[:cut]`` of the base
MobileFaceNet and differ only after it. Scoring one batch of faces with several of them (seed
and label ablations, ``fiqa-bench run regressors_lfw``) then runs that front once:
:class:`SharedStem` memoises the last batch's activations (keyed by a hash of its pixels) and
:class:`StemRegressorScorer` runs only its regressor's tail on them. The scores are the
regressor's own (tests/test_bench_stem.py checks them against
:class:`~fiqa_sdk.quality.ediffiqa.RegressorScorer` on the torch backend).

This was ``RegressorScorer(shared_stem=SharedStem(cut))`` of ``fiqa_sdk.quality.ediffiqa``
before the SDK and its research harness were split (docs/api.md, "Migration").
"""

from __future__ import annotations

import hashlib
import numpy as np
import torch
from torch import nn

from fiqa_sdk.errors import InvalidArgumentError
from fiqa_sdk.quality.ediffiqa import RegressorScorer
from fiqa_sdk.quality.regressor_models import same_weights, split_regressor
from fiqa_sdk.train.ddpm import to_model_range


class SharedStem:
    """The frozen front ``blocks[:cut]`` of the base MobileFaceNet, shared by several
    regressors; calling it on a batch of aligned uint8 RGB crops returns the front's
    activations, computed once per distinct batch (the last one is memoised).

    Parameters
    ----------
    cut : int
        The block the regressors were cut at when distilled (their ``cut``).
    device : str
        Torch device of the stem.
    """

    def __init__(self, cut: int, device: str = "cpu") -> None:
        from fiqa_sdk.embed.arcface import default_model_path
        from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet

        self.cut = int(cut)
        self.device = torch.device(device)
        self.stem = load_mobilefacenet(default_model_path()).split(self.cut)[0].to(self.device).eval()
        self._key: bytes | None = None
        self._value: torch.Tensor | None = None

    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` (a ``QualityRegressor`` or ``RegressorEnsemble``) can be cut at this
        stem's block and its front holds exactly this stem's weights."""
        split = split_regressor(model, self.cut)
        return split is not None and same_weights(self.stem, split[0])

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        key = hashlib.blake2b(np.ascontiguousarray(batch).tobytes(), digest_size=16).digest()
        if key != self._key:
            self._value = self.stem(to_model_range(batch).to(self.device))
            self._key = key
        return self._value


class StemRegressorScorer(RegressorScorer):
    """A :class:`~fiqa_sdk.quality.ediffiqa.RegressorScorer` on the torch backend whose frozen
    front runs through a :class:`SharedStem` (the same scores, one stem pass for several
    regressors).

    Parameters
    ----------
    weights : path, QualityRegressor or RegressorEnsemble
        The regressor, as for ``RegressorScorer``.
    stem : SharedStem
        The shared front; refused (``InvalidArgumentError``) if this model's front differs.
    **kwargs
        Other ``RegressorScorer`` arguments (``name``, ``batch_size``, ``threads``, ``device``,
        ``verify``); the backend is always torch.
    """

    def __init__(self, weights, stem: SharedStem, **kwargs) -> None:
        if kwargs.get("backend", "torch") != "torch":
            raise InvalidArgumentError("a shared stem runs the torch model; it cannot be combined "
                                       f"with backend={kwargs['backend']!r}")
        kwargs["backend"] = "torch"
        super().__init__(weights, **kwargs)
        if not stem.matches(self.model):
            own = getattr(self.model, "cut", None) or self.meta.get("config", {}).get("cut")
            raise InvalidArgumentError(
                f"{self.name} (trained with cut {own}) cannot run on the shared stem (cut "
                f"{stem.cut}): its first {stem.cut} blocks differ from the stem's; score it "
                "with RegressorScorer")
        self.stem = stem
        self.tail = split_regressor(self.model, stem.cut)[1]

    def torch_quality(self, batch: np.ndarray) -> torch.Tensor:
        """The regressor's tail on the shared stem's activations of ``batch``."""
        return self.tail(self.stem(batch).to(self.device))


__all__ = ["SharedStem", "StemRegressorScorer"]
