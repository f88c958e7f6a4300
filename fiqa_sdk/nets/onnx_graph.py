"""Run an insightface-format ONNX face-recognition model as a trainable torch module.

``OnnxGraphModule(path)`` reads the graph with the ``onnx`` package and executes its nodes with
torch operations, so an ArcFace model such as ``w600k_mbf.onnx`` or buffalo_l's ``w600k_r50.onnx``
can be the backbone of an eDifFIQA regressor (``fiqa train ediffiqa --backbone MODEL.onnx``)
without torchvision or onnx2torch. Float initializers become parameters (named after the ONNX
initializers, ``.`` replaced by ``_``), integer ones and BatchNormalization's running statistics
buffers. BatchNormalization always uses the stored statistics (frozen BN: right for fine-tuning
with small batches).

Supported operators (what insightface's recognition models use, plus a few common ones): Conv,
BatchNormalization, PRelu, Relu, LeakyRelu, Sigmoid, Add, Sub, Mul, Div, Flatten, Gemm, MatMul,
Reshape, Transpose, Concat, Identity, Dropout, Constant, GlobalAveragePool, AveragePool, MaxPool.
Anything else raises :class:`~fiqa_sdk.errors.WeightsError` naming the operator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError

SUPPORTED = frozenset({
    "Conv", "BatchNormalization", "PRelu", "Relu", "LeakyRelu", "Sigmoid", "Add", "Sub", "Mul",
    "Div", "Flatten", "Gemm", "MatMul", "Reshape", "Transpose", "Concat", "Identity", "Dropout",
    "Constant", "GlobalAveragePool", "AveragePool", "MaxPool",
})


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(pads, n: int = 2) -> tuple[list[int], bool]:
    """ONNX pads (begin..., end...) -> torch's symmetric padding, or (F.pad order, False)."""
    pads = list(pads or [0] * (2 * n))
    begin, end = pads[:n], pads[n:]
    if begin == end:
        return begin, True
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end)):
        out += [b, e]
    return out, False


class OnnxGraphModule(nn.Module):
    """A torch module equivalent to an ONNX FR graph (one input, first output).

    Parameters
    ----------
    path : an ``.onnx`` file (e.g. insightface's ``w600k_r50.onnx``); input ``(N, 3, H, W)``.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError as exc:  # pragma: no cover - onnx ships with the package's deps
            raise WeightsError(f"reading ONNX graphs needs the 'onnx' package: {exc}") from None
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"ONNX model not found: {path}")
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 - protobuf raises many kinds
            raise WeightsError(f"{path.name} is not a readable ONNX model: {exc}") from None
        graph = model.graph
        bad = sorted({n.op_type for n in graph.node} - SUPPORTED)
        if bad:
            raise WeightsError(f"{path.name}: operators not supported by OnnxGraphModule: "
                               f"{', '.join(bad)}")
        self.source = path.name
        self._names: dict[str, str] = {}  # ONNX tensor name -> attribute name
        stats = {i for n in graph.node if n.op_type == "BatchNormalization" for i in n.input[3:5]}
        for init in graph.initializer:
            arr = numpy_helper.to_array(init)
            attr = "w_" + "".join(c if c.isalnum() else "_" for c in init.name)
            while hasattr(self, attr):
                attr += "_"
            t = torch.from_numpy(np.array(arr))
            if t.is_floating_point() and init.name not in stats:
                self.register_parameter(attr, nn.Parameter(t.float()))
            else:
                self.register_buffer(attr, t)
            self._names[init.name] = attr
        inits = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise WeightsError(f"{path.name}: expected one image input, found {len(inputs)}")
        self.input_name = inputs[0].name
        self.output_name = graph.output[0].name
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n)) for n in graph.node]
        for op, _, outs, at in self.nodes:  # Constant nodes become buffers too
            if op == "Constant":
                value = at.get("value")
                arr = numpy_helper.to_array(value) if value is not None else np.array(at.get("value_float", 0.0))
                attr = f"c_{len(self._names)}"
                self.register_buffer(attr, torch.from_numpy(np.array(arr)))
                self._names[outs[0]] = attr

    def extra_repr(self) -> str:
        return f"source={self.source!r}, nodes={len(self.nodes)}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self.input_name: x}

        def get(name: str) -> torch.Tensor:
            if name in env:
                return env[name]
            return getattr(self, self._names[name])

        for op, ins, outs, at in self.nodes:
            if op == "Constant":
                continue
            a = [get(i) if i else None for i in ins]
            env[outs[0]] = self._run(op, a, at)
        return env[self.output_name]

    @staticmethod
    def _run(op: str, a: list, at: dict) -> torch.Tensor:
        x = a[0]
        if op == "Conv":
            pads, sym = _pads(at.get("pads"), len(at.get("kernel_shape", [1, 1])))
            if not sym:
                x, pads = F.pad(x, pads), 0
            return F.conv2d(x, a[1], a[2] if len(a) > 2 else None, stride=at.get("strides", 1),
                            padding=pads, dilation=at.get("dilations", 1), groups=at.get("group", 1))
        if op == "BatchNormalization":
            return F.batch_norm(x, a[3], a[4], a[1], a[2], training=False,
                                eps=at.get("epsilon", 1e-5))
        if op == "PRelu":
            slope = a[1]
            if x.dim() == 4 and slope.numel() == x.shape[1]:
                slope = slope.reshape(1, -1, 1, 1)
            return torch.where(x >= 0, x, x * slope)
        if op == "Relu":
            return F.relu(x)
        if op == "LeakyRelu":
            return F.leaky_relu(x, at.get("alpha", 0.01))
        if op == "Sigmoid":
            return torch.sigmoid(x)
        if op in ("Add", "Sub", "Mul", "Div"):
            return {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op](x, a[1])
        if op == "Flatten":
            return torch.flatten(x, at.get("axis", 1))
        if op == "Gemm":
            aa = x.t() if at.get("transA", 0) else x
            b = a[1].t() if at.get("transB", 0) else a[1]
            y = at.get("alpha", 1.0) * (aa @ b)
            return y + at.get("beta", 1.0) * a[2] if len(a) > 2 and a[2] is not None else y
        if op == "MatMul":
            return x @ a[1]
        if op == "Reshape":
            shape = [int(v) for v in a[1].tolist()]
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return x.reshape(shape)
        if op == "Transpose":
            return x.permute(*at["perm"]) if "perm" in at else x.permute(*reversed(range(x.dim())))
        if op == "Concat":
            return torch.cat(a, dim=at["axis"])
        if op in ("Identity", "Dropout"):
            return x
        if op == "GlobalAveragePool":
            return x.mean(dim=(2, 3), keepdim=True)
        if op in ("AveragePool", "MaxPool"):
            pads, sym = _pads(at.get("pads"), len(at["kernel_shape"]))
            if not sym:
                x, pads = F.pad(x, pads, value=-float("inf") if op == "MaxPool" else 0.0), 0
            fn = F.max_pool2d if op == "MaxPool" else F.avg_pool2d
            return fn(x, at["kernel_shape"], stride=at.get("strides", 1), padding=pads,
                      ceil_mode=bool(at.get("ceil_mode", 0)))
        raise WeightsError(f"operator {op} is not supported")  # pragma: no cover - checked in init


def load_onnx_backbone(path: str | Path) -> OnnxGraphModule:
    """:class:`OnnxGraphModule` of ``path`` in eval mode (a backbone for ``fiqa train``)."""
    return OnnxGraphModule(path).eval()
