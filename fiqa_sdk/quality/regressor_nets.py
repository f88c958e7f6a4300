"""The network of one distilled regressor: the quality heads and :class:`QualityRegressor`
(an FR backbone + a head), and :func:`build_backbone`. Ensembles, weight files and the shared
stem: :mod:`fiqa_sdk.quality.regressor_models`; the scorers: :mod:`fiqa_sdk.quality.ediffiqa`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidArgumentError, WeightsError
from .base import model_digest

class NormResidualHead(nn.Module):
    """``a * log ||e|| + b + MLP(e / ||e||)`` (``ediffiqa-free`` v2, :mod:`fiqa_sdk.train.free_head`):
    the embedding norm as an explicit input, so the head can always reproduce the
    ``embedding-norm`` ranking (its MLP's last layer starts at zero), plus a correction from the
    embedding's direction."""

    def __init__(self, dim: int = 512, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        n = torch.linalg.vector_norm(e, dim=-1, keepdim=True).clamp_min(1e-6)
        return self.scale * torch.log(n) + self.bias + self.mlp(e / n)


def make_head(kind: str, dim: int = 512, hidden: int = 1024) -> nn.Module:
    """``"mlp"``: Linear(dim, hidden) -> GELU -> Linear(hidden, 1) (eDifFIQA); ``"linear"``:
    Linear(dim, 1) (DifFIQA(R)); ``"norm-mlp"``: :class:`NormResidualHead`."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
    if kind == "linear":
        return nn.Linear(dim, 1)
    if kind == "norm-mlp":
        return NormResidualHead(dim, hidden)
    raise InvalidArgumentError(f"head must be 'mlp', 'linear' or 'norm-mlp', got {kind!r}")


class QualityRegressor(nn.Module):
    """FR backbone + quality head.

    ``forward(x)``: ``x`` ``(N, 3, 112, 112)`` float32 RGB in [-1, 1] -> ``(embedding, quality)``,
    the backbone's raw ``(N, D)`` embedding and the ``(N,)`` quality predicted from it.
    """

    def __init__(self, backbone: nn.Module, head: str = "mlp", dim: int = 512, hidden: int = 1024) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_kind = head
        self.head = make_head(head, dim, hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.backbone(x)
        return e, self.head(e).squeeze(-1)

    def quality(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[1]


def build_backbone(spec: dict, backbone: nn.Module | None = None) -> nn.Module:
    """The backbone described by a sidecar's ``backbone`` entry, with its base weights.

    A regressor distilled on a user-supplied backbone (``arch: "custom"``) needs that backbone
    passed back as ``backbone`` (the module as it was *before* distillation, e.g. a fresh call
    of the same factory); its tensors are checked against the sidecar's ``base_digest``.
    """
    arch = spec.get("arch")
    if backbone is not None:
        if arch != "custom":
            raise WeightsError(f"these weights were distilled on the {arch!r} backbone, which "
                               "the package builds itself: do not pass backbone=")
        want, got = spec.get("base_digest"), model_digest(backbone)
        if want and got != want:
            raise WeightsError(f"the backbone passed is not the one these weights were distilled "
                               f"from (tensor digest {got}, expected {want}; factory "
                               f"{spec.get('factory', '?')})")
        return backbone
    if arch == "custom":
        raise WeightsError(f"these weights were distilled on a user-supplied backbone (factory "
                           f"{spec.get('factory', '?')}): pass that module as backbone=")
    if arch == "mobilefacenet":
        from ..embed.arcface import default_model_path
        from ..nets.mobilefacenet import load_mobilefacenet

        base = spec.get("base", "w600k_mbf.onnx")
        if base != "w600k_mbf.onnx":
            raise WeightsError(f"unknown base model {base!r} for the mobilefacenet backbone")
        return load_mobilefacenet(default_model_path(), verify=True)
    raise WeightsError(f"unknown backbone architecture {arch!r}")
