"""onnxruntime backend of the distilled quality regressors (``backend="onnxruntime"``).

:class:`~fiqa_sdk.quality.ediffiqa.RegressorScorer` (``ediffiqa``, ``diffiqa-r``,
``ediffiqa-free``) runs its torch :class:`~fiqa_sdk.quality.ediffiqa.QualityRegressor` by default.
With ``backend="onnxruntime"`` the same model is exported once to ONNX (cached under
``$FIQA_CACHE/onnx``, keyed by a digest of the model's tensors; built in memory when the cache
cannot be written) and run by onnxruntime's CPU (or CUDA) provider. Scores agree with torch to
about 1e-6 (fp32 both; tested within 1e-4 on real faces).

Why it is faster (the timings and profiles: docs/benchmarks.md "eDifFIQA throughput" and
"Runtime per face"):

- **PReLU in the blocked layout.** onnxruntime's ``ORT_ENABLE_ALL`` optimizer runs the
  MobileFaceNet convolutions in its NCHWc (8-channel blocked) layout, but its ``PRelu`` kernel
  has no NCHWc form: every one of the 34 PReLUs costs a reorder out of and back into the blocked
  layout plus a slow broadcast kernel (a large share of the plain export's time). The export
  here writes each PReLU with slopes ``a < 1`` (all of the shipped models') as
  ``y + Relu((a - 1) * y)`` -- a 1x1 depthwise ``Conv`` with a fused ``Relu`` and an ``Add``,
  ops the NCHWc optimizer keeps blocked; it equals ``PReLU(y)`` (``y > 0``: ``y``; ``y < 0``:
  ``y - (1 - a) y = a y``). Other PReLUs stay. The rewrite is on the exported graph
  (:func:`fiqa_sdk._onnx.rewrite_blocked_prelu`), the one the ArcFace embedder applies to
  ``w600k_mbf.onnx``.
- **No grouped convolution.** MobileFaceNet's block 1 is a 3x3 convolution in 64 groups of 2
  channels, which onnxruntime runs with a slow generic kernel (slowest in int8, where that one
  node took more than the rest of the network); :func:`fiqa_sdk._onnx.rewrite_grouped_conv`
  writes it as two depthwise convolutions (one on the channels swapped within each pair, a
  ``Gather``) and an ``Add``.
- **Data-parallel threads.** ``threads=k`` runs ``k`` single-threaded inferences at once, each
  on a share of the batch (onnxruntime releases the GIL); on the 2-core machine of the
  benchmarks that beat one inference with ``k`` intra-op threads (docs/benchmarks.md "eDifFIQA
  throughput", "Two cores: two inferences beat two intra-op threads"). A call with a single
  crop still runs on one thread.

``precision="int8"``: a static int8 graph (:func:`quantize_int8`; QDQ, per-channel int8
weights with ``reduce_range``, uint8 activations calibrated by the 99.999th percentile). The
shipped ``ediffiqa`` weights come with their int8 graph (``fiqa_sdk/weights/*.int8.onnx``,
sha256-checked, calibrated on 256 aligned celeba-subset faces); other weights are quantized once
from a ``calibration`` set of aligned crops and cached. It quantizes the graph above (blocked
PReLU, block 1 split into depthwise convolutions: every layer int8); a grouped convolution that
cannot be split would stay fp32 (:func:`int8_fp32_nodes`). On a CPU with AVX-512 VNNI this runs
faster than fp32 with a rank fidelity to the fp32 scores above 0.99 (docs/benchmarks.md "int8 on
a CPU with AVX-512 VNNI", docs/models.md "`ediffiqa` int8 graph"). It was not timed on a CPU
without VNNI, where onnxruntime's plain int8 models were *slower* than fp32 (docs/benchmarks.md
"eDifFIQA throughput"); fp32 stays the default.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .._onnx import blocked_prelu_bytes, constant_value, drop_unused_constants  # noqa: F401 (re-exported)
from .._paths import WEIGHTS_DIR, default_cache_dir
from .._preprocess import to_blob  # noqa: F401 (re-exported)
from ..errors import InvalidArgumentError

#: The backends of :class:`~fiqa_sdk.quality.ediffiqa.RegressorScorer` (``"auto"``: see
#: :func:`resolve_backend`).
BACKENDS = ("auto", "torch", "onnxruntime")
#: Numeric precisions of the onnxruntime backend (``"auto"``: see :func:`resolve_backend`).
PRECISIONS = ("auto", "fp32", "int8")
#: Lowest Spearman correlation between an int8 graph's scores and the fp32 model's, as recorded
#: in the int8 graph's sidecar (``fidelity``), for ``precision="auto"`` to pick that graph.
MIN_INT8_SPEARMAN = 0.99
#: How :func:`quantize_int8` quantizes (recorded in the int8 graphs' sidecars; part of the
#: cache key through :data:`INT8_VERSION`).
INT8_RECIPE = {"format": "QDQ", "weights": "int8 per-channel, reduce_range",
               "activations": "uint8 per-tensor", "calibration": "percentile 99.999",
               "source": "export_bytes (blocked PReLU, grouped convolutions split)",
               "fp32_nodes": "grouped convolutions that could not be split, and their PReLUs"}
#: Version of :data:`INT8_RECIPE` (bump when the recipe changes).
INT8_VERSION = 1
#: Fewest calibration crops :func:`quantize_int8` accepts.
MIN_CALIBRATION = 16
#: Version of the exported graph's form: part of the cache key (bump when the export changes).
GRAPH_VERSION = 4
OPSET = 17


class QualityOutputs(nn.Module):
    """Export wrapper of a regressor or ensemble: ``x -> (quality, embedding)``.

    Parameters
    ----------
    model : torch.nn.Module
        A :class:`~fiqa_sdk.quality.ediffiqa.QualityRegressor` or
        :class:`~fiqa_sdk.quality.ediffiqa.RegressorEnsemble` (``x -> (embedding, quality)``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e, q = self.model(x)
        return q, e


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


def check_precision(precision: object, backend: str) -> str:
    """``precision`` validated: one of :data:`PRECISIONS`; int8 only with the onnxruntime
    backend (or ``"auto"``). Raises :class:`~fiqa_sdk.errors.InvalidArgumentError` otherwise."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InvalidArgumentError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and backend not in ("onnxruntime", "auto"):
        raise InvalidArgumentError(f"precision={precision!r} needs backend='onnxruntime' "
                                   f"(got backend={backend!r})")
    return precision


def resolve_backend(backend: str, precision: str, threads: int | None, device: str,
                    model: nn.Module, calibration: object = None) -> tuple[str, str, int | None]:
    """The concrete ``(backend, precision, threads)`` of validated arguments.

    ``backend="auto"`` is ``"torch"`` on CUDA (``device="cuda"``, or ``"auto"`` with a CUDA
    device) and ``"onnxruntime"`` on the CPU, the faster of the two there (docs/benchmarks.md
    "eDifFIQA throughput"), with ``threads`` (when None) every core the process may use
    (:func:`fiqa_sdk.cpu.usable_cpus`). ``precision="auto"`` is ``"int8"`` when ``backend`` was
    ``"auto"`` too and chose the onnxruntime CPU backend, the CPU has int8 dot-product
    instructions (:func:`fiqa_sdk.cpu.has_int8_dot`) and the shipped int8 graph of these weights
    records a rank fidelity to the fp32 scores of at least :data:`MIN_INT8_SPEARMAN`; with
    ``calibration`` (crops only an int8 graph uses) and the onnxruntime backend it is
    ``"int8"`` too; else ``"fp32"``. A backend the caller named keeps fp32 unless int8 is asked
    for; plain int8 kernels were slower than fp32 on a CPU without those instructions.
    """
    from ..cpu import has_int8_dot, usable_cpus
    from .._torch import torch_device

    chosen_backend = backend == "auto"
    if backend == "auto":
        if torch_device(device).type == "cuda":
            backend = "torch"
        else:
            try:
                import onnxruntime  # noqa: F401
            except ImportError:
                backend = "torch"
            else:
                backend = "onnxruntime"
                if threads is None:
                    threads = usable_cpus()
    if precision == "auto":
        precision = "fp32"
        if backend == "onnxruntime" and calibration is not None:
            precision = "int8"  # calibration crops are only for an int8 graph
        elif chosen_backend and backend == "onnxruntime" and device == "cpu" and has_int8_dot():
            meta = shipped_int8_meta(model)
            spearman = (meta or {}).get("fidelity", {}).get("spearman")
            if spearman is not None and spearman >= MIN_INT8_SPEARMAN:
                precision = "int8"
    return backend, precision, threads


def export_bytes(model: nn.Module, blocked_prelu: bool = True, opset: int = OPSET) -> bytes:
    """The ONNX graph of a :class:`~fiqa_sdk.quality.ediffiqa.QualityRegressor` (input
    ``input``, outputs ``quality`` and ``embedding``; see
    :func:`~fiqa_sdk.quality.ediffiqa.export_onnx`), serialized; ``blocked_prelu``: in the form
    onnxruntime's CPU kernels run fastest, the same function: PReLUs rewritten by
    :func:`fiqa_sdk._onnx.rewrite_blocked_prelu` and grouped convolutions split into depthwise
    ones by :func:`fiqa_sdk._onnx.rewrite_grouped_conv`. ``model`` is not changed."""
    import warnings

    from .._onnx import rewrite_blocked_prelu, rewrite_grouped_conv, rewritten_bytes

    wrapper = QualityOutputs(copy.deepcopy(model).cpu().eval()).eval()
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
    if not blocked_prelu:
        return data
    return rewritten_bytes(data, rewrite_blocked_prelu, rewrite_grouped_conv) or data


def tensor_digest(model: nn.Module) -> str:
    """sha256 (16 hex chars) of a module's tensors, names included."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _cache_path(model: nn.Module, tag: str, cache_dir: str | Path | None, suffix: str = "") -> Path:
    """``<cache_dir or $FIQA_CACHE/onnx>/<tag>-<tensor digest>-g<GRAPH_VERSION>-op<OPSET><suffix>.onnx``:
    where :func:`cached_graph` and :func:`int8_graph` keep a model's graphs."""

    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tag)
    return folder / f"{safe}-{tensor_digest(model)}-g{GRAPH_VERSION}-op{OPSET}{suffix}.onnx"


def cached_graph(model: nn.Module, tag: str = "regressor", cache_dir: str | Path | None = None,
                 refresh: bool = False) -> Path | bytes:
    """The exported graph of ``model``: a file under ``cache_dir`` (default ``$FIQA_CACHE/onnx``),
    written once (atomically) and reused while the model's tensors and :data:`GRAPH_VERSION`
    are unchanged; the serialized bytes when the folder cannot be written."""
    path = _cache_path(model, tag, cache_dir)
    if path.is_file() and not refresh:
        return path
    data = export_bytes(model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        return data
    return path


def int8_fp32_nodes(model) -> list[str]:
    """Names of the nodes of an ``onnx.ModelProto`` that :func:`quantize_int8` keeps in fp32:
    every grouped convolution that is neither dense nor depthwise (``group > 1`` and more than
    one input channel per group) and the blocked PReLU (:func:`fiqa_sdk._onnx.rewrite_blocked_prelu`)
    that reads its output. In graphs from :func:`export_bytes` such convolutions are already
    split by :func:`fiqa_sdk._onnx.rewrite_grouped_conv` where their shape allows (all of
    MobileFaceNet's), so this is the fallback for the others.

    Why: onnxruntime's int8 kernel for such a convolution was several times slower than its
    fp32 one (MobileFaceNet's block 1, profiled on an AVX-512 VNNI EPYC: docs/benchmarks.md
    "int8 on a CPU with AVX-512 VNNI"), taking more than the whole rest of the int8 network;
    keeping its PReLU in fp32 too leaves no quantize /
    dequantize pair between the two, so onnxruntime does not fuse the convolution back into an
    int8 ``QLinearConv``."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    keep: list[str] = []
    for n in g.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if group <= 1 or inits[n.input[1]].dims[1] <= 1:
            continue
        keep.append(n.name)
        for c in consumers.get(n.output[0], []):
            if c.name.endswith(("_prelu_conv", "_prelu_add")):
                keep.append(c.name)
                keep += [r.name for r in consumers.get(c.output[0], [])
                         if r.name.endswith("_prelu_relu")]
    return keep


def calibration_indices(n: int, count: int) -> np.ndarray:
    """Indices of ``count`` crops evenly spaced over a set of ``n`` (``calibration_crops``'s
    selection, ``count < n``)."""
    return np.linspace(0, n - 1, int(count)).round().astype(np.int64)


def calibration_crops(calibration: object, count: int | None = None) -> np.ndarray:
    """Calibration crops for :func:`quantize_int8`: ``(N, 112, 112, 3)`` uint8 RGB aligned faces,
    as an array or a ``.npy`` file of one (e.g. a training cache's ``faces.npy``); ``count``:
    that many crops evenly spaced over the set (all when None). At least
    :data:`MIN_CALIBRATION` crops; :class:`~fiqa_sdk.errors.InvalidArgumentError` otherwise."""
    if isinstance(calibration, (str, Path)):
        path = Path(calibration)
        if path.suffix != ".npy" or not path.is_file():
            raise InvalidArgumentError(f"calibration must be aligned crops or a .npy file of "
                                       f"them; {path} is not a .npy file")
        calibration = np.load(path, mmap_mode="r")
    if not isinstance(calibration, np.ndarray):
        raise InvalidArgumentError("calibration must be a (N, 112, 112, 3) uint8 array of "
                                   f"aligned crops or a .npy file, got {type(calibration).__name__}")
    if calibration.ndim != 4 or calibration.shape[1:] != (112, 112, 3) or calibration.dtype != np.uint8:
        raise InvalidArgumentError("calibration crops must be (N, 112, 112, 3) uint8, got "
                                   f"{calibration.shape} {calibration.dtype}")
    n = len(calibration)
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise InvalidArgumentError(f"count must be an int >= 1, got {count!r}")
        if count < n:
            calibration = calibration[calibration_indices(n, count)]
    if len(calibration) < MIN_CALIBRATION:
        raise InvalidArgumentError(f"int8 calibration needs at least {MIN_CALIBRATION} aligned "
                                   f"crops, got {len(calibration)}")
    return np.ascontiguousarray(calibration)


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's quantizer prints its progress to stdout and warns on the root logger (which
    would also configure logging for the whole application): neither while it runs."""
    import logging

    root = logging.getLogger()
    null = logging.NullHandler() if not root.handlers else None

    def not_onnxruntime(record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname

    if null is not None:
        root.addHandler(null)
    root.addFilter(not_onnxruntime)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(not_onnxruntime)
        if null is not None:
            root.removeHandler(null)


def quantize_int8(graph: str | Path | bytes, calibration: object, out: str | Path) -> Path:
    """Write a static int8 version of an fp32 regressor graph (from :func:`export_bytes`) to
    ``out`` and return its path, by :data:`INT8_RECIPE`: onnxruntime's ``quant_pre_process``,
    then ``quantize_static`` in QDQ format, per-channel int8 weights with ``reduce_range``
    (7-bit: no saturation in the u8 x s8 products of CPUs without VNNI), uint8 activations
    calibrated on ``calibration`` (see :func:`calibration_crops`) by the 99.999th percentile,
    the nodes of :func:`int8_fp32_nodes` left in fp32. Deterministic for the same inputs and
    onnxruntime version. Its speed and its fidelity to the fp32 scores on the shipped
    ``ediffiqa``: docs/benchmarks.md "int8 on a CPU with AVX-512 VNNI" and docs/models.md
    "`ediffiqa` int8 graph"."""
    import tempfile

    from .._deps import require

    require("onnxruntime", "onnx", "onnxruntime")
    onnx = require("onnx", "onnx", "onnx")
    from onnxruntime import quantization as Q

    crops = calibration_crops(calibration)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="fiqa-int8-") as tmp:
        src = Path(graph) if not isinstance(graph, bytes) else Path(tmp) / "fp32.onnx"
        if isinstance(graph, bytes):
            src.write_bytes(graph)
        pre = Path(tmp) / "pre.onnx"
        Q.quant_pre_process(str(src), str(pre))
        keep = int8_fp32_nodes(onnx.load(str(pre)))

        class Reader(Q.CalibrationDataReader):
            """Batches of 16 crops; onnxruntime's strided calibration reads them one batch at
            a time (``set_range``), merging histograms, so memory stays bounded instead of
            growing with the calibration set (the peaks: docs/benchmarks.md "int8 on a CPU with
            AVX-512 VNNI")."""

            def __init__(self) -> None:
                self.batches = list(range(0, len(crops), 16))
                self.set_range(0, len(self.batches))

            def __len__(self) -> int:
                return len(self.batches)

            def set_range(self, start_index: int, end_index: int) -> None:
                self.starts = iter(self.batches[start_index:end_index])

            def get_next(self):
                i = next(self.starts, None)
                return None if i is None else {"input": to_blob(crops[i : i + 16])}

        tmp_out = Path(tmp) / "int8.onnx"
        with _quiet_quantizer():
            Q.quantize_static(str(pre), str(tmp_out), Reader(), quant_format=Q.QuantFormat.QDQ,
                              per_channel=True, reduce_range=True,
                              activation_type=Q.QuantType.QUInt8, weight_type=Q.QuantType.QInt8,
                              nodes_to_exclude=keep,
                              calibrate_method=Q.CalibrationMethod.Percentile,
                              extra_options={"CalibStridedMinMax": 1})
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        part.write_bytes(tmp_out.read_bytes())
        os.replace(part, out)
    return out


def shipped_int8_meta(model: nn.Module) -> dict | None:
    """The sidecar of the shipped int8 graph of ``model`` (a ``fiqa_sdk/weights/*.int8.json``
    whose ``source_tensor_digest`` is the model's :func:`tensor_digest`), with ``path`` added;
    None if none ships for these weights."""
    from .._weights import read_sidecar

    digest = tensor_digest(model)
    for side in sorted(WEIGHTS_DIR.glob("*.int8.json")):  # the sidecar of <name>.int8.onnx
        meta = read_sidecar(side.with_suffix(".onnx"), verify=False, missing_ok=True)
        if meta.get("source_tensor_digest") == digest:
            return {**meta, "path": str(side.with_name(meta["file"]))}
    return None


def shipped_int8(model: nn.Module) -> Path | None:
    """The shipped int8 graph of ``model`` (see :func:`shipped_int8_meta`), sha256-checked; None
    if none ships for these weights."""
    from .._weights import verify_file

    meta = shipped_int8_meta(model)
    return None if meta is None else verify_file(Path(meta["path"]), meta["sha256"])


def int8_graph(model: nn.Module, tag: str = "regressor", calibration: object = None,
               cache_dir: str | Path | None = None, refresh: bool = False) -> Path | bytes:
    """The int8 graph of ``model``: with ``calibration`` (see :func:`calibration_crops`),
    quantized by :func:`quantize_int8` once and cached under ``cache_dir`` (default
    ``$FIQA_CACHE/onnx``), keyed by the model's tensors, the calibration crops and
    :data:`INT8_VERSION` (``refresh``: quantize again even if cached), or the serialized bytes
    when that folder cannot be written; without, the shipped graph of these weights
    (:func:`shipped_int8`) or :class:`~fiqa_sdk.errors.InvalidArgumentError`."""
    import tempfile

    if calibration is None:
        path = shipped_int8(model)
        if path is None:
            raise InvalidArgumentError(
                "no int8 graph ships for these weights: pass calibration= (aligned "
                "(N, 112, 112, 3) uint8 crops of faces like the ones you will score, or a .npy "
                "file of them) to quantize them, or use precision='fp32'")
        return path
    crops = calibration_crops(calibration)
    cdig = hashlib.sha256(crops.tobytes()).hexdigest()[:12]
    path = _cache_path(model, tag, cache_dir, f"-int8v{INT8_VERSION}-c{cdig}")
    if path.is_file() and not refresh:
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable cache: quantize in a temporary folder, keep the bytes
        with tempfile.TemporaryDirectory(prefix="fiqa-int8-") as tmp:
            return quantize_int8(export_bytes(model), crops, Path(tmp) / path.name).read_bytes()
    return quantize_int8(export_bytes(model), crops, path)


def held_out_indices(n: int, calibration_count: int | None, count: int = 1000) -> np.ndarray:
    """Indices of up to ``count`` crops of a set of ``n`` that :func:`calibration_crops` with
    ``calibration_count`` did not select (every 4th from index 1, the calibration ones
    skipped): the faces an int8 graph's fidelity is measured on."""
    calib = set(range(n)) if calibration_count is None or calibration_count >= n else \
        set(calibration_indices(n, calibration_count).tolist())
    return np.array([i for i in range(1, n, 4) if i not in calib][:count], dtype=np.int64)


def int8_fidelity(model: nn.Module, int8_source: str | Path | bytes, crops: np.ndarray) -> dict:
    """How an int8 graph of ``model`` ranks ``crops`` against the fp32 model (torch):
    ``{"spearman", "max_abs", "faces"}``; :func:`resolve_backend` reads ``spearman`` from the
    int8 graph's sidecar."""
    from scipy.stats import spearmanr

    from .._onnx import make_session

    crops = np.ascontiguousarray(crops)
    if len(crops) < 2:
        raise InvalidArgumentError("int8 fidelity needs at least 2 crops")
    ref = np.empty(len(crops))
    with torch.inference_mode():
        m = model.cpu().eval()
        for i in range(0, len(crops), 64):
            ref[i : i + 64] = m(torch.from_numpy(to_blob(crops[i : i + 64])))[1].numpy()
    sess = make_session(int8_source, device="cpu")
    got = np.concatenate([sess.run(["quality"], {"input": to_blob(crops[i : i + 64])})[0]
                          for i in range(0, len(crops), 64)])
    return {"spearman": round(float(spearmanr(got, ref)[0]), 5),
            "max_abs": round(float(np.max(np.abs(got - ref))), 5), "faces": int(len(crops))}


class OrtRegressor:
    """A regressor run by onnxruntime.

    ``threads=None``: one inference at a time with onnxruntime's default intra-op threads;
    ``threads=k``: a session with one intra-op thread and up to ``k`` inferences at once, each
    on a share of the batch (CPU only; on CUDA ``k`` is ignored). ``precision="int8"``: the
    graph of :func:`int8_graph` (shipped, or quantized with ``calibration``)."""

    def __init__(self, model: nn.Module, device: str = "cpu", threads: int | None = None,
                 tag: str = "regressor", cache_dir: str | Path | None = None,
                 precision: str = "fp32", calibration: object = None) -> None:
        from .._onnx import make_session

        self.threads = threads
        self.precision = check_precision(precision, "onnxruntime")
        n_threads = 1 if threads else None
        if self.precision == "int8":
            def graph(refresh: bool = False) -> Path | bytes:
                return int8_graph(model, tag, calibration, cache_dir, refresh=refresh)
        else:
            def graph(refresh: bool = False) -> Path | bytes:
                return cached_graph(model, tag, cache_dir, refresh=refresh)
        self.source: Path | bytes = graph()
        try:
            self.session = make_session(self.source, device=device, threads=n_threads)
        except Exception:  # noqa: BLE001 - a damaged cache file: export / quantize again, once
            # (bytes and the shipped int8 graph, sha256-checked, are not cache files)
            if not isinstance(self.source, Path) or (self.precision == "int8" and calibration is None):
                raise
            self.source = graph(refresh=True)
            self.session = make_session(self.source, device=device, threads=n_threads)
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


__all__ = ["BACKENDS", "GRAPH_VERSION", "INT8_RECIPE", "INT8_VERSION", "MIN_CALIBRATION",
           "MIN_INT8_SPEARMAN", "OrtRegressor", "PRECISIONS", "cached_graph", "calibration_crops", "calibration_indices",
           "check_backend",
           "check_precision", "export_bytes", "held_out_indices", "int8_fidelity", "int8_fp32_nodes",
           "int8_graph", "quantize_int8",
           "resolve_backend", "shipped_int8", "shipped_int8_meta", "tensor_digest", "to_blob"]
