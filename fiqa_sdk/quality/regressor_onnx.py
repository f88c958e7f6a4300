"""onnxruntime backend of the distilled quality regressors (``backend="onnxruntime"``).

:class:`~fiqa_sdk.quality.ediffiqa.RegressorScorer` (``ediffiqa``, ``diffiqa-r``,
``ediffiqa-free``) runs its torch :class:`~fiqa_sdk.quality.ediffiqa.QualityRegressor` by default.
With ``backend="onnxruntime"`` the same model is exported once to ONNX (cached under
``$FIQA_CACHE/onnx``, keyed by a digest of the model's tensors; built in memory when the cache
cannot be written) and run by onnxruntime's CPU (or CUDA) provider. Scores agree with torch to
about 1e-6 (fp32 both; tested within 1e-4 on real faces).

Why it is faster (measured on a 2-core AVX2 EPYC, see docs/benchmarks.md "Runtime per face"):

- **PReLU in the blocked layout.** onnxruntime's ``ORT_ENABLE_ALL`` optimizer runs the
  MobileFaceNet convolutions in its NCHWc (8-channel blocked) layout, but its ``PRelu`` kernel
  has no NCHWc form: every one of the 34 PReLUs costs a reorder out of and back into the blocked
  layout plus a slow broadcast kernel (together ~45 % of the plain export's time). The export
  here writes each PReLU with slopes ``a < 1`` (all of the shipped models') as
  ``y + Relu((a - 1) * y)`` -- a 1x1 depthwise ``Conv`` with a fused ``Relu`` and an ``Add``,
  ops the NCHWc optimizer keeps blocked; it equals ``PReLU(y)`` (``y > 0``: ``y``; ``y < 0``:
  ``y - (1 - a) y = a y``). Other PReLUs stay. 1.4x on one thread. The rewrite is on the
  exported graph (:func:`fiqa_sdk._onnx.rewrite_blocked_prelu`), the one the ArcFace embedder
  applies to ``w600k_mbf.onnx``.
- **Data-parallel threads.** ``threads=k`` runs ``k`` single-threaded inferences at once, each
  on a share of the batch (onnxruntime releases the GIL); on this machine that beat one
  inference with ``k`` intra-op threads (~1.08x more faces/s at 2 threads, batch 16-64). A
  call with a single crop still runs on one thread.

int8 (``onnxruntime.quantization``, static QDQ / QOperator or dynamic) is not offered: on this
AVX2 CPU without VNNI it was *slower* than fp32 and changed the ranking (Spearman 0.84-0.99
against the fp32 scores), see docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InvalidArgumentError

#: The backends of :class:`~fiqa_sdk.quality.ediffiqa.RegressorScorer`.
BACKENDS = ("torch", "onnxruntime")
#: Version of the exported graph's form: part of the cache key (bump when the export changes).
GRAPH_VERSION = 2
OPSET = 17


def check_backend(backend: object, threads: object) -> tuple[str, int | None]:
    """``(backend, threads)`` validated: a name of :data:`BACKENDS` and None or an int >= 1.

    Raises :class:`~fiqa_sdk.errors.InvalidArgumentError` otherwise."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
            raise InvalidArgumentError(f"threads must be None or an int >= 1, got {threads!r}")
        threads = int(threads) or None  # 0: as None (the torch backend always read it so)
    return backend, threads


def export_bytes(model: nn.Module, blocked_prelu: bool = True, opset: int = OPSET) -> bytes:
    """The ONNX graph of a :class:`~fiqa_sdk.quality.ediffiqa.QualityRegressor` (input
    ``input``, outputs ``quality`` and ``embedding``; see
    :func:`~fiqa_sdk.quality.ediffiqa.export_onnx`), serialized; ``blocked_prelu``: with the
    PReLUs rewritten by :func:`fiqa_sdk._onnx.rewrite_blocked_prelu`. ``model`` is not changed."""
    import warnings

    from .._onnx import blocked_prelu_bytes
    from .ediffiqa import _QualityOutputs

    wrapper = _QualityOutputs(copy.deepcopy(model).cpu().eval()).eval()
    buf = io.BytesIO()
    x = torch.zeros(2, 3, 112, 112)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter
        # constant folding off: with it on, torch 2.13 exported a wrong head (see export_onnx)
        torch.onnx.export(wrapper, (x,), buf, input_names=["input"],
                          output_names=["quality", "embedding"],
                          dynamic_axes={"input": {0: "n"}, "quality": {0: "n"},
                                        "embedding": {0: "n"}},
                          opset_version=opset, do_constant_folding=False, dynamo=False)
    data = buf.getvalue()
    return (blocked_prelu_bytes(data) or data) if blocked_prelu else data


def tensor_digest(model: nn.Module) -> str:
    """sha256 (16 hex chars) of a module's tensors, names included."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cached_graph(model: nn.Module, tag: str = "regressor", cache_dir: str | Path | None = None,
                 refresh: bool = False) -> Path | bytes:
    """The exported graph of ``model``: a file under ``cache_dir`` (default ``$FIQA_CACHE/onnx``),
    written once (atomically) and reused while the model's tensors and :data:`GRAPH_VERSION`
    are unchanged; the serialized bytes when the folder cannot be written."""
    from ..eval.features import default_cache_dir

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tag)
    path = folder / f"{safe}-{tensor_digest(model)}-g{GRAPH_VERSION}-op{OPSET}.onnx"
    if path.is_file() and not refresh:
        return path
    data = export_bytes(model)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        return data
    return path


def to_blob(crops: np.ndarray) -> np.ndarray:
    """``(N, 112, 112, 3)`` uint8 RGB -> ``(N, 3, 112, 112)`` float32 in [-1, 1], the same
    arithmetic as the torch path (``x / 127.5 - 1``)."""
    x = np.asarray(crops, dtype=np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x / np.float32(127.5) - np.float32(1.0))


class OrtRegressor:
    """A regressor run by onnxruntime.

    ``threads=None``: one inference at a time with onnxruntime's default intra-op threads;
    ``threads=k``: a session with one intra-op thread and up to ``k`` inferences at once, each
    on a share of the batch (CPU only; on CUDA ``k`` is ignored)."""

    def __init__(self, model: nn.Module, device: str = "cpu", threads: int | None = None,
                 tag: str = "regressor", cache_dir: str | Path | None = None) -> None:
        from .._onnx import make_session

        self.threads = threads
        self.source = cached_graph(model, tag, cache_dir)
        try:
            self.session = make_session(self.source, device=device, threads=1 if threads else None)
        except Exception:  # noqa: BLE001 - a damaged cache file: export again, once
            if not isinstance(self.source, Path):
                raise
            self.source = cached_graph(model, tag, cache_dir, refresh=True)
            self.session = make_session(self.source, device=device, threads=1 if threads else None)
        on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        self.workers = int(threads) if threads and on_cpu else 1

    def _run(self, crops: np.ndarray) -> np.ndarray:
        return self.session.run(["quality"], {"input": to_blob(crops)})[0]

    def score(self, aligned: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Quality of validated ``(N, 112, 112, 3)`` uint8 crops, ``(N,)`` float64."""
        n = len(aligned)
        step = max(1, -(-int(batch_size) // self.workers))
        starts: Sequence[int] = range(0, n, step)
        out = np.empty(n)
        if self.workers == 1 or len(starts) == 1:
            for i in starts:
                out[i : i + step] = self._run(aligned[i : i + step])
            return out
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(self.workers, len(starts))) as ex:
            for i, q in zip(starts, ex.map(lambda s: self._run(aligned[s : s + step]), starts)):
                out[i : i + len(q)] = q
        return out


__all__ = ["BACKENDS", "GRAPH_VERSION", "OrtRegressor", "cached_graph", "check_backend",
           "export_bytes", "tensor_digest", "to_blob"]
