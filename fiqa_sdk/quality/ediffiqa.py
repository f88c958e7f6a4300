"""eDifFIQA and DifFIQA(R): DifFIQA distilled into a one-pass quality regressor.

Babnik, Peer, Struc, "eDifFIQA: Towards Efficient Face Image Quality Assessment based on
Denoising Diffusion Probabilistic Models", IEEE T-BIOM 2024. A face-recognition backbone
``M_r`` (here the ArcFace MobileFaceNet ``w600k_mbf``, eDifFIQA's size ``T``) and a regression
head read an aligned crop and output its quality in one forward pass:

- ``ediffiqa``: the backbone's last layers fine-tuned, MLP head 512 -> 1024 -> GELU -> 1, trained
  on label-optimized DifFIQA pseudo-labels with the representation-consistency loss (see
  :mod:`fiqa_sdk.train.distill`). The shipped weights are a seed ensemble
  (:class:`RegressorEnsemble`, :func:`save_ensemble`): three such regressors of one recipe
  (eps 1, theta 0.5, training seeds 0, 1, 2) on one shared frozen stem, scored as the mean of
  their qualities (steadier than any single run; docs/benchmarks.md "Seeds and a seed ensemble");
- ``ediffiqa-free``: the backbone frozen (it *is* the ArcFace embedder), only the MLP head is
  trained, on the raw (un-normalised) ArcFace embedding; a gate whose embedder is the same model
  gets quality from the embedding it already computed (:meth:`RegressorScorer.score_embeddings`);
- ``diffiqa-r``: the paper's baseline, the same backbone with a linear head on the raw labels.

Scores are the head's output (about [0, 1], the scale of the min-max scaled labels; higher =
better). Weights: a safetensors file holding the head and the backbone tensors that training
changed, plus a JSON sidecar (architecture, the base ONNX it starts from and its sha256, the
file's own sha256, training data, labels and measured results). The rest of the backbone is
read from the shipped, checksum-verified ``w600k_mbf.onnx``. An ensemble file holds each
member's tensors under ``members.<i>.`` and their sidecars under ``members``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._paths import WEIGHTS_DIR  # noqa: F401 - importable from here as before
from .._preprocess import insightface_blob
from .._torch import torch_device
from ..errors import InvalidArgumentError, WeightsError
from ..types import Face
from .base import Scorer, model_digest
# The networks, weight files and ensembles live in their own modules (no cycle: the scorers
# import them, never the other way round); their names stay importable from here.
from .regressor_models import (SHIPPED, RegressorEnsemble, load_regressor,  # noqa: F401
                               save_ensemble, save_regressor, shipped_weights, split_regressor)
from .regressor_nets import NormResidualHead, QualityRegressor, build_backbone, make_head  # noqa: F401

class RegressorScorer(Scorer):
    """Quality from a distilled regressor (``ediffiqa``, ``ediffiqa-free``, ``diffiqa-r``).

    Parameters
    ----------
    weights : path, QualityRegressor, RegressorEnsemble or None
        A ``.safetensors`` file with its ``.json`` sidecar (one regressor, or an ensemble
        written by :func:`save_ensemble`), a built :class:`QualityRegressor` or
        :class:`RegressorEnsemble`, or None for the method's shipped weights.
    device : {"cpu", "cuda", "auto"}
    batch_size : int
        Crops per forward pass.
    threads : int or None
        CPU threads for scoring. torch backend: torch's intra-op threads (None: leave torch's
        setting). onnxruntime backend: up to ``threads`` single-threaded inferences at once, each
        on a share of the batch (None with ``backend="onnxruntime"``: one inference with
        onnxruntime's default threads; None with ``backend="auto"``: every usable core).
    verify : bool
        Check the weights' sha256 against the sidecar.
    name : str or None
        Display name (default: the method), e.g. to tell ablation variants apart.
    backend : {"auto", "torch", "onnxruntime"}
        ``"auto"`` (default): onnxruntime on the CPU, torch on CUDA;
        ``self.backend`` tells the choice. ``"torch"``: the torch model. ``"onnxruntime"``: the
        same model exported to ONNX once (cached in ``$FIQA_CACHE/onnx``, see
        :mod:`fiqa_sdk.quality.regressor_onnx`) and run by onnxruntime: the same scores as torch
        in fp32 (within ~1e-6), faster on the CPU (docs/benchmarks.md "eDifFIQA throughput").
        :meth:`score_embeddings` always uses the torch head.
    backbone : torch module or None
        For weights distilled on a user-supplied backbone (``fiqa train ediffiqa --backbone``):
        that backbone's base module (see :func:`build_backbone`).
    precision : {"auto", "fp32", "int8"}
        ``"int8"`` (onnxruntime only) runs a static int8 graph
        (:func:`fiqa_sdk.quality.regressor_onnx.quantize_int8`): the shipped one for the shipped
        weights that have one, else one quantized once from ``calibration`` and cached.
        ``"auto"`` (default): int8 where the CPU has int8 dot-product instructions (AVX-512
        VNNI, AVX-VNNI, Arm dotprod) and the int8 graph's recorded rank fidelity to fp32 is at
        least :data:`~fiqa_sdk.quality.regressor_onnx.MIN_INT8_SPEARMAN`, else fp32
        (:func:`~fiqa_sdk.quality.regressor_onnx.resolve_backend`; ``self.precision`` tells the
        choice). int8 scores differ slightly from fp32 ones; pass ``"fp32"`` to compare with
        scores from a :class:`~fiqa_sdk.QualityGate` (fp32) or from another machine.
    calibration : array, path or None
        For ``precision="int8"`` without a shipped int8 graph: aligned ``(N, 112, 112, 3)``
        uint8 RGB crops (N >= 16; a few hundred faces like those you will score) or a ``.npy``
        file of them.
    """

    method = "ediffiqa"
    #: The FR model the regressors are built on and distilled for (same-model vs cross-model).
    fr_model = "arcface"

    def __init__(self, weights: str | Path | QualityRegressor | None = None, device: str = "cpu",
                 batch_size: int = 64, threads: int | None = None, verify: bool = True,
                 name: str | None = None,
                 backbone: nn.Module | None = None, backend: str = "auto",
                 precision: str = "auto", calibration: Any = None) -> None:
        from .regressor_onnx import check_backend, check_precision, resolve_backend

        self.name = name or self.method
        backend, threads = check_backend(backend, threads)
        precision = check_precision(precision, backend)
        if calibration is not None and precision not in ("int8", "auto"):
            raise InvalidArgumentError("calibration is only used with precision='int8'")
        if isinstance(weights, (QualityRegressor, RegressorEnsemble)):
            self.model, self.meta = weights, {}
        else:
            if weights is None:
                weights = shipped_weights(self.method)
                if weights is None:
                    raise WeightsError(
                        f"{self.method}'s weights are not shipped in this version "
                        f"({SHIPPED[self.method].name} is not in fiqa_sdk/weights); train them "
                        f"with `fiqa train {self.method}` and pass weights='DIR/<file>.safetensors'")
            self.model, self.meta = load_regressor(weights, verify=verify, backbone=backbone)
        if self.meta.get("backbone", {}).get("arch") == "custom":
            self.fr_model = str(self.meta.get("target_model", "custom"))
        self.weights_sha256 = model_digest(self.model, self.meta)  # part of the bench cache key
        self.backend, self.precision, threads = resolve_backend(
            backend, precision, threads, device, self.model, calibration)
        if self.precision == "int8" and self.backend != "onnxruntime":
            raise InvalidArgumentError("precision='int8' needs the onnxruntime backend, not "
                                       f"{self.backend!r}")
        self.device = torch_device(device)
        self.model = self.model.to(self.device).eval().requires_grad_(False)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size!r}")
        self.threads = threads
        self._ort = None
        if self.backend == "onnxruntime":
            from .regressor_onnx import OrtRegressor

            self._ort = OrtRegressor(self.model, device=device, threads=self.threads, tag=self.name,
                                     precision=self.precision, calibration=calibration)
            if self.precision == "int8":  # part of the bench cache key: which int8 graph
                from .._weights import file_sha256, sha256_bytes

                src = self._ort.source
                self.int8_sha256 = (sha256_bytes(src) if isinstance(src, bytes)
                                    else file_sha256(src))

    def torch_quality(self, batch: np.ndarray) -> torch.Tensor:
        """Quality of one batch of validated crops with the torch model: the step the torch
        backend repeats over the batches of :meth:`score` (``threads`` already set). A subclass
        may run the model another way, e.g. the research harness's shared stem
        (``fiqa_bench.stem``)."""
        from .._preprocess import to_model_range

        return self.model.quality(to_model_range(batch, device=self.device))

    @torch.inference_mode()
    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        if self._ort is not None:
            return self._ort.score(aligned, self.batch_size)
        prev = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            out = np.empty(len(aligned))
            for i in range(0, len(aligned), self.batch_size):
                batch = aligned[i : i + self.batch_size]
                out[i : i + len(batch)] = self.torch_quality(batch).float().cpu().numpy()
            return out
        finally:
            if self.threads:
                torch.set_num_threads(prev)

    @property
    def members(self) -> int:
        """How many regressors the score averages (1 unless the weights are an ensemble)."""
        return len(self.model) if isinstance(self.model, RegressorEnsemble) else 1

    @property
    def frozen_backbone(self) -> bool:
        """The backbone is the unchanged base FR model (``ediffiqa-free``): the weights file
        stores no backbone tensor that differs from the base model's."""
        return self.meta.get("backbone", {}).get("stored_tensors", 1) == 0

    def reads_embedding_of(self, embedder: Any) -> bool:
        """Whether :meth:`score_embeddings` may be fed ``embedder``'s raw embeddings: this
        regressor's backbone is frozen and is exactly that embedder's model (same ONNX file)."""
        from ..embed.arcface import is_shipped_arcface

        return (self.frozen_backbone and is_shipped_arcface(embedder)
                and self.meta.get("backbone", {}).get("base") == "w600k_mbf.onnx")

    @torch.inference_mode()
    def score_embeddings(self, raw: np.ndarray) -> np.ndarray:
        """Quality from raw (un-normalised) embeddings of this model's own backbone: the head
        alone. Valid for ``ediffiqa-free``, whose backbone is the unchanged ArcFace model."""
        if not self.frozen_backbone:
            raise InvalidArgumentError(f"{self.name}: the backbone was fine-tuned, so quality cannot be "
                             "read from the base model's embedding; use score()")
        raw = np.asarray(raw, np.float32)
        if raw.ndim != 2:
            raise InvalidArgumentError(f"raw embeddings must be (N, D), got {raw.shape}")
        e = torch.from_numpy(raw).to(self.device)
        return self.model.head(e).squeeze(-1).float().cpu().numpy().astype(np.float64)


class EDifFIQAScorer(RegressorScorer):
    __doc__ = RegressorScorer.__doc__
    method = "ediffiqa"


class EDifFIQAFreeScorer(RegressorScorer):
    __doc__ = RegressorScorer.__doc__
    method = "ediffiqa-free"


class DifFIQARScorer(RegressorScorer):
    __doc__ = RegressorScorer.__doc__
    method = "diffiqa-r"


def export_onnx(model: QualityRegressor | RegressorEnsemble | RegressorScorer, path: str | Path, opset: int = 17,
                blocked_prelu: bool = False) -> Path:
    """Write a regressor as ONNX: input ``input`` ``(N, 3, 112, 112)`` float32 RGB in [-1, 1];
    outputs ``quality`` ``(N,)`` and ``embedding`` ``(N, D)`` (the backbone's raw embedding).

    Uses torch's TorchScript-based exporter with constant folding off: with folding on, the
    exported MobileFaceNet's head gave wrong outputs (measured, torch 2.13).
    ``blocked_prelu=True`` then writes the graph ``backend="onnxruntime"`` runs: each PReLU with
    ops onnxruntime's NCHWc optimizer keeps in its blocked layout
    (:func:`fiqa_sdk._onnx.rewrite_blocked_prelu`) and grouped convolutions split into
    depthwise ones (:func:`fiqa_sdk._onnx.rewrite_grouped_conv`); the same function, faster in
    onnxruntime on one CPU thread (docs/benchmarks.md "eDifFIQA throughput").
    """
    from .regressor_onnx import export_bytes

    if isinstance(model, RegressorScorer):
        model = model.model
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(export_bytes(model, blocked_prelu=blocked_prelu, opset=opset))
    return path


class OnnxRegressorScorer(Scorer):
    """A regressor exported by :func:`export_onnx`, run with onnxruntime (same scores)."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 batch_size: int = 64, name: str = "ediffiqa-onnx") -> None:
        from .._onnx import make_session

        self.name = name
        self.session = make_session(Path(path), device=device, threads=threads)
        self.batch_size = int(batch_size)

    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        out = np.empty(len(aligned))
        for i in range(0, len(aligned), self.batch_size):
            blob = insightface_blob(aligned[i : i + self.batch_size])
            out[i : i + len(blob)] = self.session.run(["quality"], {"input": blob})[0]
        return out
