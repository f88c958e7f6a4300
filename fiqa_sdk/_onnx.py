"""onnxruntime sessions with automatic execution-provider choice."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from ._deps import require
from .errors import DeviceUnavailableError, InvalidArgumentError

DEVICES = ("cpu", "cuda", "auto")


def providers_for(device: str) -> list[str]:
    """Execution providers for ``device`` ("cpu", "cuda" or "auto": CUDA when available)."""
    if device not in DEVICES:
        raise InvalidArgumentError(f"device must be one of {DEVICES}, got {device!r}")
    ort = require("onnxruntime", "onnx", "onnxruntime")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise DeviceUnavailableError(
            "device='cuda' but this onnxruntime has no CUDA execution provider (available: "
            f"{', '.join(available) or 'none'}); install 'fiqa-sdk[gpu]' (onnxruntime-gpu) or "
            "use device='cpu' or 'auto'"
        )
    return ["CPUExecutionProvider"]


def make_session(model: Union[str, Path, bytes], device: str = "cpu", threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` for a model path or serialized bytes."""
    ort = require("onnxruntime", "onnx", "onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=providers_for(device))
