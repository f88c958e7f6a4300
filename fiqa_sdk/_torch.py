"""Torch device choice shared by the torch backends (MTCNN, DifFIQA, DDPM training)."""

from __future__ import annotations

from .errors import FiqaError


class DeviceUnavailableError(FiqaError, ValueError, RuntimeError):
    """CUDA was asked for but torch sees no CUDA device."""


def torch_device(device: str):
    """``torch.device`` for "cpu", "cuda", "cuda:N" or "auto" (CUDA when torch sees one)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device={device!r} but torch has no CUDA device here; use device='cpu' or 'auto'")
    return torch.device(device)
