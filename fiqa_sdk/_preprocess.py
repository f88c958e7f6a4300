"""The model-input normalisation shared by inference and training: uint8 RGB <-> [-1, 1].

Every conversion of crops to a model's [-1, 1] input is one of these: :func:`to_model_range`
(torch) and :func:`to_blob` (numpy) compute ``x / 127.5 - 1``; :func:`insightface_blob` computes
``(x - 127.5) / 127.5``, insightface's rounding of the same values.

A bottom module (it imports nothing of fiqa_sdk), so that scorers need not import
:mod:`fiqa_sdk.train` for it. The old names stay importable from their old places
(:mod:`fiqa_sdk.train.ddpm`, :mod:`fiqa_sdk.quality.regressor_onnx`).
"""

from __future__ import annotations

import numpy as np


def to_model_range(imgs: np.ndarray, device=None):
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` float32 torch tensor in [-1, 1].

    Parameters
    ----------
    imgs : numpy.ndarray
        Images, ``(N, H, W, 3)`` uint8 RGB.
    device : torch.device, str or None
        Where the tensor is made: the uint8 images are moved there and converted there (None:
        the CPU). The values do not depend on it.

    Returns
    -------
    torch.Tensor
        ``x / 127.5 - 1``, channels first.
    """
    import torch

    x = torch.from_numpy(np.array(imgs, dtype=np.uint8))
    if device is not None:
        x = x.to(device)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


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


def insightface_blob(crops: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` float32 numpy array in [-1, 1], rounded
    as insightface computes it: ``(x - 127.5) / 127.5``.

    The input of :class:`~fiqa_sdk.embed.arcface.ArcFaceEmbedder`,
    :func:`~fiqa_sdk.nets.mobilefacenet.faces_to_tensor` and
    :class:`~fiqa_sdk.quality.ediffiqa.OnnxRegressorScorer`. The same values as
    :func:`to_blob` up to float32 rounding (one unit in the last place for some pixel values);
    kept apart so that those models' outputs stay bit for bit what they were.

    Parameters
    ----------
    crops : numpy.ndarray
        Aligned crops, ``(N, H, W, 3)`` RGB.

    Returns
    -------
    numpy.ndarray
        A contiguous float32 array, channels first.

    Examples
    --------
    >>> insightface_blob(np.full((1, 2, 2, 3), 255, np.uint8))[0, :, 0, 0]
    array([1., 1., 1.], dtype=float32)
    """
    x = (np.asarray(crops).astype(np.float32) - 127.5) / 127.5
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
