"""Training methods of the distilled regressors: one :class:`TrainingMethod` per method, by name.

A method owns what differs between ``ediffiqa``, ``ediffiqa-free`` and ``diffiqa-r``: the
training targets (raw or label-optimized pseudo-labels), the head, which part of the backbone
is trained, the loss terms, whether a seed ensemble of it makes sense, and the default file
name. The trainer (:func:`fiqa_sdk.train.distill.distill`) asks the method and never branches
on its name, so that a new method is one subclass registered in :data:`TRAINING_METHODS`
(docs/architecture.md, "Adding a training method")::

    from fiqa_sdk.train.methods import TRAINING_METHODS, get_method

    get_method("diffiqa-r").head                  # 'linear'
    TRAINING_METHODS.describe()                   # {name: one-line description}

This module is the bottom of :mod:`fiqa_sdk.train`'s own layering: it imports only numpy, the
registry and :mod:`~fiqa_sdk.train.labels`, so that the configs, the trainer, the Python API
and the CLI can all import it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._registry import Registry
from ..errors import InvalidArgumentError

__all__ = ["METHODS", "TRAINING_METHODS", "DifFIQARMethod", "EDifFIQAFreeMethod",
           "EDifFIQAMethod", "LabelOptimizedMethod", "TrainingMethod", "get_method",
           "method_names"]


class TrainingMethod:
    """What one distillation method decides; the trainer does the rest.

    Class attributes (override them in a subclass):

    - ``name``: the registry name (also the ``method`` of the config and of the sidecar);
    - ``scorer``: the scorer name that loads the weights (default: ``name``);
    - ``description``: one line, shown by ``fiqa train --help``;
    - ``weights_stem``: the default file name stem of the weights;
    - ``head``: the head kind of :class:`~fiqa_sdk.quality.ediffiqa.QualityRegressor`
      (``"mlp"`` or ``"linear"``), ``head_hidden`` the MLP's hidden width (1024);
    - ``frozen_backbone``: train the head alone on the frozen backbone's output (no fine-tuned
      tail; with raw target embeddings the backbone is not even run);
    - ``consistency_loss``: add ``theta * (1 - cos(M_r(x), M(x)))`` to the L1 quality loss;
    - ``supports_ensemble``: seed ensembles of it make sense (``--ensemble-seeds``).

    The default :meth:`targets` are the raw (min-max scaled) labels.
    """

    name: str = ""
    scorer: str | None = None
    description: str = ""
    weights_stem: str = "regressor"
    head: str = "mlp"
    head_hidden: int = 1024
    frozen_backbone: bool = False
    consistency_loss: bool = True
    supports_ensemble: bool = True

    def targets(self, q: np.ndarray, target_emb: np.ndarray, ids: np.ndarray,
                config: Any) -> tuple[np.ndarray, dict]:
        """Training targets of every face and their statistics.

        Parameters
        ----------
        q : (N,) float64 labels scaled to [0, 1].
        target_emb : (N, D) embeddings of the target FR model.
        ids : (N,) identity labels.
        config : the :class:`~fiqa_sdk.train.config.DistillConfig` of the run.

        Returns
        -------
        (targets, stats) : (N,) float64 targets, NaN for a face that must not be trained on,
            and a dict merged into the sidecar's ``labels`` record.
        """
        return q, {}

    def consistency_weight(self, config: Any) -> float:
        """``theta`` of the loss: ``config.theta`` with the consistency term, else 0."""
        return float(config.theta) if self.consistency_loss else 0.0

    def split(self, backbone: Any, cut: int) -> tuple[Any, Any]:
        """``(frozen stem, trainable tail)`` of ``backbone``: the whole backbone is the stem
        for a frozen-backbone method; else ``backbone.split(cut)`` where the backbone offers
        it, and the whole backbone as the tail where it does not."""
        from torch import nn

        if self.frozen_backbone:
            return backbone, nn.Identity()
        if hasattr(backbone, "split"):
            return backbone.split(cut)
        return nn.Identity(), backbone

    @property
    def scorer_name(self) -> str:
        return self.scorer or self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LabelOptimizedMethod(TrainingMethod):
    """Targets: the eDifFIQA label-optimized labels ``clamp(q - eps (1 - cos(e, centre)), 0, 1)``
    with class centres over the top ``p`` labels (:mod:`fiqa_sdk.train.labels`); faces of an
    identity without a centre get NaN (not trained on)."""

    def targets(self, q, target_emb, ids, config):
        from .labels import centre_cosines, class_centres, optimize_labels

        lab = config.labels
        centres = class_centres(target_emb, ids, q, p=lab.p, min_count=lab.min_count)
        cos = centre_cosines(target_emb, ids, centres)
        q_o = optimize_labels(q, cos, lab.eps)
        return q_o, {"centres": len(centres), "no_centre_faces": int((~np.isfinite(q_o)).sum()),
                     "centre_cos_median": float(np.nanmedian(cos))}


class EDifFIQAMethod(LabelOptimizedMethod):
    """eDifFIQA: label optimization, the backbone's blocks ``[cut:]`` fine-tuned, MLP head,
    representation-consistency loss."""

    name = "ediffiqa"
    description = "eDifFIQA: label-optimized distillation into MobileFaceNet + MLP head"
    weights_stem = "ediffiqa_mbf"


class EDifFIQAFreeMethod(LabelOptimizedMethod):
    """eDifFIQA-free: the MLP head alone on the frozen backbone's embedding, optimized labels
    (the consistency term is zero by construction)."""

    name = "ediffiqa-free"
    description = "eDifFIQA head on the frozen ArcFace embedding"
    weights_stem = "ediffiqa_free_mbf"
    frozen_backbone = True
    consistency_loss = False
    supports_ensemble = False  # no fine-tuned tail: nothing for a seed ensemble to share


class DifFIQARMethod(TrainingMethod):
    """DifFIQA(R): the raw labels, linear head, L1 loss only."""

    name = "diffiqa-r"
    description = "DifFIQA(R): MobileFaceNet + linear head on the raw labels"
    weights_stem = "diffiqa_r_mbf"
    head = "linear"
    consistency_loss = False


TRAINING_METHODS: Registry[TrainingMethod] = Registry("training method")
"""Name -> :class:`TrainingMethod` factory (``TRAINING_METHODS.create(name)``)."""

for _cls in (EDifFIQAMethod, EDifFIQAFreeMethod, DifFIQARMethod):
    TRAINING_METHODS.register(_cls.name, _cls.description)(_cls)

METHODS: tuple[str, ...] = ("ediffiqa", "ediffiqa-free", "diffiqa-r")
"""The shipped methods, in the order the CLI lists them (:func:`method_names` adds the ones
registered later)."""


def method_names() -> tuple[str, ...]:
    """The shipped methods first, then any registered since, by name."""
    return METHODS + tuple(n for n in TRAINING_METHODS.names() if n not in METHODS)


def get_method(method: str | TrainingMethod) -> TrainingMethod:
    """The :class:`TrainingMethod` registered as ``method`` (an instance is returned as is).

    Raises
    ------
    InvalidArgumentError
        ``method`` is neither a registered name nor a :class:`TrainingMethod`.

    Examples
    --------
    >>> get_method("ediffiqa-free").frozen_backbone
    True
    """
    if isinstance(method, TrainingMethod):
        return method
    if not isinstance(method, str) or method not in TRAINING_METHODS:
        raise InvalidArgumentError(
            f"method must be one of {', '.join(method_names())}, got {method!r}")
    return TRAINING_METHODS.create(method)
