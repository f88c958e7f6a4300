"""The embedder role: aligned face crops in, L2-normalised face-recognition embeddings out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np

from ..align import ARCFACE_SIZE, as_face_batch, template
from ..errors import FiqaError, InvalidTypeError


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


class Embedder(ABC):
    """Base class of face-recognition models.

    An embedder declares the crop it expects: ``input_size`` (side in pixels) and ``template``
    (where the five ArcFace-order landmarks sit in that crop). Most models use the ArcFace
    112x112 template; a model trained on other crops (dlib's 150x150 chips) declares its own,
    and the pipeline aligns for it with :func:`fiqa_sdk.align.align_face(..., dst=template)`.
    """

    name: str = "embedder"
    dim: int = 0
    input_size: int = ARCFACE_SIZE

    @property
    def template(self) -> np.ndarray:
        return template(self.input_size)

    @abstractmethod
    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        """Un-normalised embeddings, ``(N, dim)`` float32, of ``(N, S, S, 3)`` uint8 RGB crops."""

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings ``(N, dim)`` float32 of aligned ``(N, S, S, 3)`` uint8 RGB
        crops (a single ``(S, S, 3)`` crop is a batch of one)."""
        return l2_normalize(self.embed_raw(as_face_batch(faces, self.input_size)))

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return self.embed(faces)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def run_torch_module(module: Any, crops: np.ndarray, batch_size: int = 64, flip: bool = False):
    """Outputs of a torch face-recognition module on aligned crops, in the ArcFace convention.

    The one place where a torch module runs on crops: ``batch_size`` crops at a time, each
    batch a float tensor ``(B, 3, S, S)`` scaled to [-1, 1]
    (:func:`fiqa_sdk._preprocess.to_model_range`) on the device of the module's parameters
    (the CPU if it has none), under ``torch.inference_mode``. The module's mode (``eval`` /
    ``train``) is left as it is.

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``(B, 3, S, S)`` float32 in [-1, 1] to ``(B, ...)``.
    crops : numpy.ndarray
        Aligned ``(N, S, S, 3)`` uint8 RGB crops (N >= 1).
    batch_size : int
        Crops per forward pass.
    flip : bool
        Run the horizontally mirrored crops instead.

    Returns
    -------
    torch.Tensor
        The outputs of all batches concatenated, float32, on the CPU.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(8))
    >>> run_torch_module(net, np.zeros((3, 112, 112, 3), np.uint8)).shape  # doctest: +SKIP
    torch.Size([3, 8])
    """
    import torch

    from .._preprocess import to_model_range

    param = next(iter(module.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    step = int(batch_size)
    outs = []
    with torch.inference_mode():
        for i in range(0, len(crops), step):
            x = to_model_range(crops[i : i + step], device=device)
            if flip:
                x = x.flip(-1)
            outs.append(module(x).detach().float().cpu())
    return torch.cat(outs)


class TorchModuleEmbedder(Embedder):
    """A torch face-recognition module as an embedder (raw outputs of
    :func:`run_torch_module`), put in ``eval`` mode before each call.

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``(B, 3, S, S)`` float32 crops in [-1, 1] to ``(B, D)`` embeddings.
    name : str
        The embedder's name (e.g. in cache keys).
    batch_size : int
        Crops per forward pass.
    input_size : int
        The side ``S`` of the crops it takes.

    Examples
    --------
    >>> import torch
    >>> from fiqa_sdk.embed import TorchModuleEmbedder
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(8))
    >>> emb = TorchModuleEmbedder(net, "toy")
    >>> emb.embed(np.zeros((2, 112, 112, 3), np.uint8)).shape  # doctest: +SKIP
    (2, 8)
    """

    def __init__(self, module: Any, name: str = "torch", batch_size: int = 64,
                 input_size: int = ARCFACE_SIZE) -> None:
        if not _is_torch_module(module):
            raise InvalidTypeError(f"expected a torch module, got {type(module).__name__}")
        self.module = module
        self.name = name
        self.batch_size = int(batch_size)
        self.input_size = int(input_size)
        self.dim = 0

    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        """Raw ``(N, D)`` float32 outputs of the module on ``(N, S, S, 3)`` uint8 RGB crops."""
        if len(faces) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = run_torch_module(self.module.eval(), faces, self.batch_size).numpy()
        self.dim = int(out.shape[-1])
        return out


class CallableEmbedder(Embedder):
    """Wrap any callable ``(N, 112, 112, 3) uint8 RGB -> (N, D)`` (or a torch ``nn.Module``).

    A torch module receives a float tensor ``(N, 3, 112, 112)`` scaled to [-1, 1] (the ArcFace
    convention) on the module's device, and is run under ``torch.inference_mode``
    (:func:`run_torch_module`; its mode is left as it is).
    """

    def __init__(self, fn: Callable[[np.ndarray], Any], name: str = "custom", batch_size: int = 64,
                 input_size: int = ARCFACE_SIZE) -> None:
        if not callable(fn):
            raise InvalidTypeError(f"embedder must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = name
        self.batch_size = int(batch_size)
        self.input_size = int(input_size)
        self._is_torch = _is_torch_module(fn)
        self.dim = 0

    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        faces = as_face_batch(faces, self.input_size)
        outs = [self._run(faces[i : i + self.batch_size]) for i in range(0, len(faces), self.batch_size)]
        out = np.concatenate(outs) if outs else np.zeros((0, self.dim), np.float32)
        if out.ndim != 2 or out.shape[0] != len(faces):
            raise FiqaError(
                f"custom embedder returned shape {out.shape} for {len(faces)} faces; expected (N, D)"
            )
        self.dim = out.shape[1]
        return out

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._is_torch:
            return run_torch_module(self.fn, batch, len(batch)).numpy()
        y = self.fn(batch.copy())  # a copy: user code must not be able to alter our crops
        return np.asarray(y, dtype=np.float32)


def _is_torch_module(obj: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return isinstance(obj, torch.nn.Module)
