"""fiqa-sdk: face image quality assessment (DifFIQA, eDifFIQA) for face-recognition pipelines.

Public names only; see docs/api.md for the contract. Submodules and names load on first use
(``lazy_loader``, as in scikit-image), so that ``import fiqa_sdk`` and the ``fiqa`` command
start fast; ``from fiqa_sdk import X`` and ``fq.X`` work as usual.
"""

from __future__ import annotations

import lazy_loader as _lazy

from ._version import __version__

__getattr__, _dir, _all = _lazy.attach(
    __name__,
    submodules=["align", "detect", "diffusion", "embed", "errors", "eval", "gate", "io", "nets",
                "pipeline", "policy", "quality", "train", "types"],
    submod_attrs={
        "align": ["align_face", "align_faces", "estimate_transform"],
        "detect": ["Detector", "create_detector", "list_detectors"],
        "embed": ["CallableEmbedder", "Embedder", "create_embedder", "list_embedders"],
        "errors": ["AlignmentError", "ColorOrderWarning", "ConsistencyError",
                   "DataLocationError", "DeviceUnavailableError", "EvaluationError", "FiqaError",
                   "FiqaWarning", "FolderWarning", "GateError", "ImageDecodeError",
                   "ImageNotFoundError", "InvalidArgumentError", "InvalidImageError",
                   "InvalidTypeError", "MissingDependencyError", "OutputConflictError",
                   "OutputExistsError", "TrainingDivergedError", "UnknownBackendError",
                   "WeightsError"],
        "io": ["load_image"],
        "pipeline": ["FacePipeline", "PipelineResult"],
        "quality": ["Scorer", "create_scorer", "list_scorers"],
        "types": ["Face", "FilterResult", "QualityReport", "REASONS", "Reason", "Template"],
        "train.api": ["TrainedRegressor", "train_ediffiqa"],
        "gate": ["QualityGate"],
    },
)



def __dir__() -> list[str]:
    return sorted(set(_dir()) | {"__version__"})


__all__ = [
    "__version__",
    "align",
    "io",
    "Face",
    "QualityGate",
    "QualityReport",
    "FilterResult",
    "Template",
    "Reason",
    "REASONS",
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
    "FiqaWarning",
    "ColorOrderWarning",
    "FolderWarning",
    "InvalidImageError",
    "ImageDecodeError",
    "ImageNotFoundError",
    "MissingDependencyError",
    "OutputConflictError",
    "UnknownBackendError",
    "WeightsError",
    "AlignmentError",
    "EvaluationError",
    "InvalidArgumentError",
    "DeviceUnavailableError",
    "InvalidTypeError",
    "ConsistencyError",
    "OutputExistsError",
    "TrainingDivergedError",
    "DataLocationError",
    "eval",
]
