"""The model-input normalisation shared by inference and training: uint8 RGB <-> [-1, 1].

A bottom module (it imports nothing of fiqa_sdk), so that scorers need not import
:mod:`fiqa_sdk.train` for it. The old names stay importable from their old places
(:mod:`fiqa_sdk.train.ddpm`, :mod:`fiqa_sdk.quality.regressor_onnx`).
"""

from __future__ import annotations

import numpy as np


def to_model_range(imgs: np.ndarray):
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` float32 torch tensor in [-1, 1].

    Parameters
    ----------
    imgs : numpy.ndarray
        Images, ``(N, H, W, 3)`` uint8 RGB.

    Returns
    -------
    torch.Tensor
        ``x / 127.5 - 1``, channels first.
    """
    import torch

    return torch.from_numpy(np.array(imgs, dtype=np.uint8)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def from_model_range(x) -> np.ndarray:
    """``(N, 3, H, W)`` float tensor in [-1, 1] -> ``(N, H, W, 3)`` uint8 RGB (rounded, clipped).

    Parameters
    ----------
    x : torch.Tensor
        Images in the model range, channels first.

    Returns
    -------
    numpy.ndarray
        ``(N, H, W, 3)`` uint8 RGB.
    """
    import torch

    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_blob(crops: np.ndarray) -> np.ndarray:
    """``(N, 112, 112, 3)`` uint8 RGB -> ``(N, 3, 112, 112)`` float32 numpy array in [-1, 1].

    The same arithmetic as :func:`to_model_range` (``x / 127.5 - 1``), without torch.

    Parameters
    ----------
    crops : numpy.ndarray
        Aligned crops, ``(N, H, W, 3)`` RGB.

    Returns
    -------
    numpy.ndarray
        A contiguous float32 array, channels first.
    """
    x = np.asarray(crops, dtype=np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x / np.float32(127.5) - np.float32(1.0))
