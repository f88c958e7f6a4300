"""Torch device choice shared by the torch backends (MTCNN, DifFIQA, DDPM training)."""

from __future__ import annotations

from .errors import DeviceUnavailableError

__all__ = ["DeviceUnavailableError", "torch_device"]  # the error lives in fiqa_sdk.errors


def torch_device(device: str):
    """``torch.device`` for "cpu", "cuda", "cuda:N" or "auto" (CUDA when torch sees one)."""
    import torch

    from ._device import check_device

    if check_device(device, allow_index=True) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device={device!r} but torch has no CUDA device here; use device='cpu' or 'auto'")
    return torch.device(device)
