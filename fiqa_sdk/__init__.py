"""fiqa-sdk: face image quality assessment (DifFIQA, eDifFIQA) for face-recognition pipelines.

Public names only; see docs/api.md for the contract.
"""

from __future__ import annotations

from . import align, eval, io  # noqa: A004 - fq.eval is the contract's name
from .align import align_face, align_faces, estimate_transform
from .detect import Detector, create_detector, list_detectors
from .embed import CallableEmbedder, Embedder, create_embedder, list_embedders
from .errors import (
    AlignmentError,
    DeviceUnavailableError,
    EvaluationError,
    FiqaError,
    GateError,
    ImageDecodeError,
    InvalidArgumentError,
    InvalidImageError,
    MissingDependencyError,
    OutputConflictError,
    UnknownBackendError,
    WeightsError,
)
from .io import load_image
from .pipeline import FacePipeline, PipelineResult
from .quality import Scorer, create_scorer, list_scorers
from .types import Face, FilterResult, QualityReport, Template
from .train.api import TrainedRegressor, train_ediffiqa
from .gate import QualityGate  # noqa: E402 - after the names it uses
from . import policy  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "align",
    "io",
    "Face",
    "QualityGate",
    "QualityReport",
    "FilterResult",
    "Template",
    "GateError",
    "policy",
    "Detector",
    "Embedder",
    "CallableEmbedder",
    "FacePipeline",
    "Scorer",
    "create_scorer",
    "list_scorers",
    "train_ediffiqa",
    "TrainedRegressor",
    "PipelineResult",
    "create_detector",
    "list_detectors",
    "create_embedder",
    "list_embedders",
    "load_image",
    "align_face",
    "align_faces",
    "estimate_transform",
    "FiqaError",
    "InvalidImageError",
    "ImageDecodeError",
    "MissingDependencyError",
    "OutputConflictError",
    "UnknownBackendError",
    "WeightsError",
    "AlignmentError",
    "EvaluationError",
    "InvalidArgumentError",
    "DeviceUnavailableError",
    "eval",
]
