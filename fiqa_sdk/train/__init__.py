"""Training: the distilled quality regressors (:func:`train_regressor` with a
:class:`TrainingConfig`, or :func:`train_ediffiqa` with flat keywords; one
:class:`TrainingMethod` per method in :data:`TRAINING_METHODS`), the extended DDPM of DifFIQA
(:mod:`.ddpm`) and its aligned-face data (:mod:`.data`).

    from fiqa_sdk.train import DistillConfig, LabelConfig, TrainingConfig, train_regressor

    cfg = TrainingConfig(distill=DistillConfig("ediffiqa", labels=LabelConfig(eps=1.0)))
    result = train_regressor("my_faces/", "runs/mine", cfg)
"""

from .api import TrainedRegressor, train_ediffiqa, train_regressor, training_config
from .config import (DataConfig, DistillConfig, FreeHeadConfig, LabelConfig, OptimConfig,
                     TeacherConfig, TrainingConfig)
from .methods import (METHODS, TRAINING_METHODS, DifFIQARMethod, EDifFIQAFreeMethod,
                      EDifFIQAMethod, LabelOptimizedMethod, TrainingMethod, get_method,
                      method_names)

__all__ = ["METHODS", "TRAINING_METHODS", "DataConfig", "DifFIQARMethod", "DistillConfig",
           "EDifFIQAFreeMethod", "EDifFIQAMethod", "FreeHeadConfig", "LabelConfig",
           "LabelOptimizedMethod", "OptimConfig", "TeacherConfig", "TrainedRegressor",
           "TrainingConfig", "TrainingMethod", "get_method", "method_names", "train_ediffiqa",
           "train_regressor", "training_config"]
