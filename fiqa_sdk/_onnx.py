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


def blocked_prelu_bytes(path: Union[str, Path]) -> bytes | None:
    """The ONNX model at ``path`` with each per-channel ``PRelu`` whose slopes are all < 1
    rewritten as ``x + Relu(Conv1x1_depthwise(x; a - 1))`` (equal to ``PReLU(x)``: ``x > 0``
    gives ``x``, ``x < 0`` gives ``a x``), serialized; None when there is nothing to rewrite.

    Why: onnxruntime's CPU optimizer runs convolutions in its 8-channel blocked (NCHWc) layout,
    but its ``PRelu`` kernel has none, so every PReLU of a MobileFaceNet costs two reorders;
    Conv, Relu and Add stay blocked. On ArcFace ``w600k_mbf`` this makes the embedder ~1.5x
    faster on one CPU thread with embeddings equal to 3e-6 (``benchmarks/arcface_prelu.py``).
    """
    import numpy as np

    onnx = require("onnx", "onnx", "onnx")
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, changed = [], 0
    for n in g.node:
        slope = inits.get(n.input[1]) if n.op_type == "PRelu" and len(n.input) == 2 else None
        a = numpy_helper.to_array(slope).astype(np.float32) if slope is not None else None
        if a is None or a.size < 2 or a.ndim < 1 or a.size != a.shape[0] or not (a < 1).all():
            nodes.append(n)  # scalar, non-channel or slopes >= 1: keep the PRelu
            continue
        c, base, x, y = a.size, (n.name or n.output[0]), n.input[0], n.output[0]
        w = numpy_helper.from_array((a.reshape(-1) - 1.0).reshape(c, 1, 1, 1), base + "_prelu_w")
        g.initializer.append(w)
        nodes += [helper.make_node("Conv", [x, w.name], [base + "_prelu_c"], group=c,
                                   kernel_shape=[1, 1], name=base + "_prelu_conv"),
                  helper.make_node("Relu", [base + "_prelu_c"], [base + "_prelu_r"],
                                   name=base + "_prelu_relu"),
                  helper.make_node("Add", [x, base + "_prelu_r"], [y], name=base + "_prelu_add")]
        changed += 1
    if not changed:
        return None
    del g.node[:]
    g.node.extend(nodes)
    return model.SerializeToString()
