"""onnxruntime sessions with automatic execution-provider choice."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from ._deps import require
from ._device import DEVICES, check_device  # noqa: F401 - DEVICES: re-exported
from .errors import DeviceUnavailableError, InvalidArgumentError



def providers_for(device: str) -> list[str]:
    """Execution providers for ``device`` ("cpu", "cuda" or "auto": CUDA when available)."""
    check_device(device)
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


#: Environment variable: default intra-op threads of every onnxruntime session that is not
#: given ``threads=`` (unset: onnxruntime's default, one per physical core). Set by
#: :mod:`fiqa_sdk.distributed` in each Ray actor so that N actors on N cores do not each start
#: a thread per core.
THREADS_ENV = "FIQA_NUM_THREADS"


def default_threads() -> int | None:
    """``$FIQA_NUM_THREADS`` as an int >= 1, or None when unset or empty."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise InvalidArgumentError(f"${THREADS_ENV} must be an int >= 1, got {raw!r}")
    return n


def make_session(model: Union[str, Path, bytes], device: str = "cpu", threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` for a model path or serialized bytes.

    ``threads``: intra-op threads; None: ``$FIQA_NUM_THREADS`` when set, else onnxruntime's
    default."""
    ort = require("onnxruntime", "onnx", "onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is None:
        threads = default_threads()
    if threads:
        opts.intra_op_num_threads = int(threads)
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=providers_for(device))


def constant_value(name: str, inits: dict, producers: dict):
    """The value of tensor ``name`` when it is a constant: an initializer, a ``Constant`` node,
    an ``Identity`` of a constant, or an ``Unsqueeze`` of constants (how torch's exporter writes
    a PReLU slope without constant folding); else None."""
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producers.get(name)
    if node is None:
        return None
    if node.op_type == "Identity":  # torch's exporter shares equal initializers this way
        return constant_value(node.input[0], inits, producers)
    if node.op_type == "Constant":
        value = next((a for a in node.attribute if a.name == "value"), None)
        return numpy_helper.to_array(value.t) if value is not None else None
    if node.op_type == "Unsqueeze":
        import numpy as np

        data = constant_value(node.input[0], inits, producers)
        if data is None:
            return None
        if len(node.input) > 1:  # opset >= 13: axes as an input
            axes = constant_value(node.input[1], inits, producers)
        else:
            axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        if axes is None:
            return None
        out_rank = data.ndim + len(np.ravel(axes))
        return np.expand_dims(data, tuple(int(ax) % out_rank for ax in np.ravel(axes)))
    return None


def rewrite_blocked_prelu(model) -> int:
    """Rewrite, in place in an ``onnx.ModelProto``, each ``PRelu`` with per-channel slopes all
    < 1 (a constant of shape ``(C, 1, 1)`` or ``(1, C, 1, 1)``, C >= 2, applied to NCHW input)
    as ``x + Relu(Conv1x1_depthwise(x; a - 1))``; return how many were rewritten.

    This is ``PReLU(x)``: ``x > 0`` gives ``x``, ``x < 0`` gives ``x + (a - 1) x = a x``. Why:
    onnxruntime's CPU optimizer runs convolutions in its 8-channel blocked (NCHWc) layout, but
    its ``PRelu`` kernel has none, so every PReLU of a MobileFaceNet costs two reorders and a
    slow broadcast kernel; Conv, Relu and Add stay blocked. The speed-up and the embeddings'
    agreement for ArcFace ``w600k_mbf``: docs/benchmarks.md, "Runtime per face"
    (``fiqa-bench run arcface_prelu``); for the distilled regressors: docs/benchmarks.md,
    "eDifFIQA throughput". Other PReLUs (a shared
    slope, slopes >= 1, other shapes) are kept: exact, only slower. ``Constant`` /
    ``Unsqueeze`` nodes and initializers that only fed rewritten slopes are removed.
    """
    import numpy as np

    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    nodes, changed = [], 0
    for n in g.node:
        a = (constant_value(n.input[1], inits, producers)
             if n.op_type == "PRelu" and len(n.input) == 2 else None)
        shape = tuple(a.shape) if a is not None else ()
        per_channel = (len(shape) == 3 and shape[1:] == (1, 1)) or (
            len(shape) == 4 and shape[0] == 1 and shape[2:] == (1, 1))
        c = a.size if a is not None else 0
        if not per_channel or c < 2 or not (a < 1).all():
            nodes.append(n)
            continue
        base, x, y = (n.name or n.output[0]), n.input[0], n.output[0]
        w = numpy_helper.from_array((a.astype(np.float32).reshape(-1) - 1.0).reshape(c, 1, 1, 1),
                                    base + "_prelu_w")
        g.initializer.append(w)
        nodes += [helper.make_node("Conv", [x, w.name], [base + "_prelu_c"], group=c,
                                   kernel_shape=[1, 1], name=base + "_prelu_conv"),
                  helper.make_node("Relu", [base + "_prelu_c"], [base + "_prelu_r"],
                                   name=base + "_prelu_relu"),
                  helper.make_node("Add", [x, base + "_prelu_r"], [y], name=base + "_prelu_add")]
        changed += 1
    if changed:
        nodes = drop_unused_constants(nodes, {o.name for o in g.output})
        del g.node[:]
        g.node.extend(nodes)
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        unused = [i for i in g.initializer if i.name not in used]  # e.g. the old slopes
        for i in unused:
            g.initializer.remove(i)
    return changed


def rewrite_grouped_conv(model) -> int:
    """Rewrite, in place in an ``onnx.ModelProto``, each grouped ``Conv`` whose groups have the
    same number k (2 to 4) of input and output channels -- MobileFaceNet's block 1 is 64 groups
    of 2 -- as k depthwise convolutions summed; return how many were rewritten.

    With ``o`` an output channel, ``g = o // k`` its group and ``p = o % k`` its place in it,
    ``y[o] = sum_c W[o, c] * x[g k + c]`` is ``sum_s DW_s(P_s x)[o]``: ``P_s`` rotates the
    channels within each group by ``s`` (a ``Gather`` on the channel axis; ``P_0`` is the
    identity) and ``DW_s``'s channel ``o`` has the kernel ``W[o, (p + s) % k]`` (the bias goes
    to ``DW_0``). The same products, summed in another order. Why: onnxruntime has fast
    depthwise kernels (fp32 blocked and int8) but none for such a grouped convolution: in int8
    that one node took more time than the rest of the network, and it was the slowest node in
    fp32 too (the profiles: docs/benchmarks.md "eDifFIQA throughput" and "int8 on a CPU with
    AVX-512 VNNI"). Other convolutions are kept.
    """
    import numpy as np

    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, changed = [], 0
    for n in g.node:
        w = inits.get(n.input[1]) if n.op_type == "Conv" and len(n.input) > 1 else None
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        k = int(w.dims[1]) if w is not None and len(w.dims) == 4 else 0
        if group <= 1 or not 2 <= k <= 4 or w.dims[0] != k * group:
            nodes.append(n)
            continue
        weight = numpy_helper.to_array(w)
        c = weight.shape[0]
        o = np.arange(c)
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute if a.name != "group"}
        base, x = (n.name or n.output[0]), n.input[0]
        bias = [n.input[2]] if len(n.input) > 2 and n.input[2] else []
        terms = []
        for shift in range(k):
            src = (o // k) * k + (o % k + shift) % k
            kernel = numpy_helper.from_array(
                np.ascontiguousarray(weight[o, (o % k + shift) % k][:, None]).astype(weight.dtype),
                f"{base}_dw{shift}_w")
            g.initializer.append(kernel)
            inp = x
            if shift:
                idx = numpy_helper.from_array(src.astype(np.int64), f"{base}_rot{shift}")
                g.initializer.append(idx)
                inp = f"{base}_rot{shift}_out"
                nodes.append(helper.make_node("Gather", [x, idx.name], [inp], axis=1,
                                              name=f"{base}_rot{shift}"))
            out = f"{base}_dw{shift}_out"
            nodes.append(helper.make_node("Conv", [inp, kernel.name] + (bias if not shift else []),
                                          [out], group=c, name=f"{base}_dw{shift}", **attrs))
            terms.append(out)
        acc = terms[0]
        for i, t in enumerate(terms[1:], 1):
            dst = n.output[0] if i == len(terms) - 1 else f"{base}_sum{i}"
            nodes.append(helper.make_node("Add", [acc, t], [dst], name=f"{base}_sum{i}"))
            acc = dst
        g.initializer.remove(w)
        changed += 1
    if changed:
        del g.node[:]
        g.node.extend(nodes)
    return changed


def drop_unused_constants(nodes: list, outputs: set) -> list:
    """``nodes`` without the ``Constant`` / ``Unsqueeze`` / ``Identity`` nodes whose outputs no node (and no
    graph output in ``outputs``) reads any more, repeated until none is left (e.g. the slope
    producers of rewritten PReLUs)."""
    while True:
        used = {i for n in nodes for i in n.input} | set(outputs)
        kept = [n for n in nodes if n.op_type not in ("Constant", "Unsqueeze", "Identity")
                or any(o in used for o in n.output)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def rewritten_bytes(source: Union[str, Path, bytes], *rewrites) -> bytes | None:
    """The ONNX model at ``source`` (a path or serialized bytes) after each in-place rewrite
    function of ``rewrites`` (e.g. :func:`rewrite_blocked_prelu`), serialized; None when none of
    them changed anything."""
    onnx = require("onnx", "onnx", "onnx")
    model = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(str(source))
    changed = sum(bool(rewrite(model)) for rewrite in rewrites)
    return model.SerializeToString() if changed else None


def blocked_prelu_bytes(source: Union[str, Path, bytes]) -> bytes | None:
    """The ONNX model at ``source`` (a path or serialized bytes) with its PReLUs in the blocked
    form of :func:`rewrite_blocked_prelu`, serialized; None when there is nothing to rewrite."""
    return rewritten_bytes(source, rewrite_blocked_prelu)
