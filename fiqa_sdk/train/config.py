"""Configuration of the regressor training: frozen, validated dataclasses.

- :class:`LabelConfig`: class centres and label optimization (``eps``, ``p``, ``min_count``);
- :class:`OptimConfig`: epochs, batch, learning rates, clipping, flips, seed;
- :class:`DistillConfig`: the method, the two above, the loss weight ``theta``, the first
  fine-tuned block ``cut`` and the held-out split (what :func:`~fiqa_sdk.train.distill.distill`
  takes);
- :class:`TeacherConfig`: the DifFIQA teacher of the pseudo-labels;
- :class:`DataConfig`: which faces (``limit``) and the degraded copies;
- :class:`TrainingConfig`: all of them, what :func:`~fiqa_sdk.train.api.train_regressor` takes;
- :class:`FreeHeadConfig`: the norm-residual ``ediffiqa-free`` v2 head
  (:mod:`fiqa_sdk.train.free_head`, its own trainer).

Every class checks its values when built (:class:`~fiqa_sdk.errors.InvalidArgumentError`
naming the field), has the defaults of the paper's recipe as shipped, and converts to and from
plain dicts (``to_dict`` / ``from_dict``) for sidecars and checkpoints::

    from fiqa_sdk.train.config import DistillConfig, LabelConfig, TrainingConfig

    cfg = TrainingConfig(distill=DistillConfig("ediffiqa", labels=LabelConfig(eps=1.0)))
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import InvalidArgumentError
from .methods import get_method

__all__ = ["DataConfig", "DistillConfig", "FreeHeadConfig", "LabelConfig", "OptimConfig",
           "TeacherConfig", "TrainingConfig"]


# -- checks ----------------------------------------------------------------------------------
def _bad(name: str, value: Any, why: str = "") -> InvalidArgumentError:
    return InvalidArgumentError(f"{name}={value!r} is out of range" + (f" ({why})" if why else ""))


def _int(obj: Any, name: str, lo: int | None = None, none: bool = False) -> None:
    """Check an integer field (``bool`` is not one) and store it as a Python int."""
    value = getattr(obj, name)
    if value is None and none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _bad(name, value, "an integer" + (" or None" if none else ""))
    if lo is not None and value < lo:
        raise _bad(name, value, f">= {lo}")
    object.__setattr__(obj, name, int(value))


def _real(obj: Any, name: str, lo: float | None = None, hi: float | None = None,
          lo_open: bool = False) -> None:
    """Check a finite real field in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); kept as given."""
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise _bad(name, value, "a finite number")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise _bad(name, value, f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None and value > hi:
        raise _bad(name, value, f"<= {hi:g}")


def _from(cls, data: Any):
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InvalidArgumentError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(names)}")
    return cls(**data)


# -- the parts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelConfig:
    """Class centres and eDifFIQA label optimization (:mod:`fiqa_sdk.train.labels`).

    Parameters
    ----------
    eps : float, default 0.5
        Label optimization strength, ``q_o = clamp(q - eps (1 - cos(e, centre)), 0, 1)``; >= 0.
    p : float, default 0.2
        Top fraction of the labels whose faces form the class centres; in (0, 1].
    min_count : int, default 3
        Top-``p`` faces an identity needs for a centre (faces of the others are not trained
        on by the label-optimized methods); >= 1.
    """

    eps: float = 0.5
    p: float = 0.2
    min_count: int = 3

    def __post_init__(self) -> None:
        _real(self, "eps", lo=0.0)
        _real(self, "p", lo=0.0, hi=1.0, lo_open=True)
        _int(self, "min_count", lo=1)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "LabelConfig":
        return _from(cls, data)


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser and the data order.

    Parameters
    ----------
    epochs : int, default 8
    batch_size : int, default 64
    lr_head, lr_backbone : float, default 1e-3, 1e-4
        Adam learning rates of the head and of the fine-tuned backbone blocks; > 0.
    grad_clip : float, default 5.0
        Gradient-norm clipping (0: off).
    hflip : bool, default True
        Random horizontal flips (the target embedding is then the mirror's).
    seed : int, default 0
        Seed of the initialisation, the batch order and the flips (and, unless
        :attr:`DistillConfig.split_seed` is set, of the held-out identities).
    """

    epochs: int = 8
    batch_size: int = 64
    lr_head: float = 1e-3
    lr_backbone: float = 1e-4
    grad_clip: float = 5.0
    hflip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _int(self, "epochs", lo=1)
        _int(self, "batch_size", lo=1)
        _real(self, "lr_head", lo=0.0, lo_open=True)
        _real(self, "lr_backbone", lo=0.0, lo_open=True)
        _real(self, "grad_clip", lo=0.0)
        if not isinstance(self.hflip, bool):
            raise _bad("hflip", self.hflip, "True or False")
        _int(self, "seed")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "OptimConfig":
        return _from(cls, data)


_LABEL_KEYS = tuple(f.name for f in fields(LabelConfig))
_OPTIM_KEYS = tuple(f.name for f in fields(OptimConfig))


@dataclass(frozen=True, init=False)
class DistillConfig:
    """Hyper-parameters of one distillation run (:func:`fiqa_sdk.train.distill.distill`).

    Parameters
    ----------
    method : str, default "ediffiqa"
        A name of :data:`~fiqa_sdk.train.methods.TRAINING_METHODS` (``"ediffiqa"``,
        ``"ediffiqa-free"``, ``"diffiqa-r"`` or one registered by you).
    labels : LabelConfig, default LabelConfig()
    optim : OptimConfig, default OptimConfig()
    theta : float, default 0.5
        Weight of the representation-consistency loss, in [0, 1] (used by the methods that
        have that term).
    cut : int, default 15
        Backbone blocks ``[cut:]`` are fine-tuned, ``[:cut]`` frozen (MobileFaceNet: 20 blocks).
    val_fraction : float, default 0.1
        Fraction of the identities held out for validation, in [0, 1).
    split_seed : int or None, default None
        Seed of the held-out identities alone (None: ``optim.seed``).
    **flat
        The fields of :class:`LabelConfig` and :class:`OptimConfig` by name (``eps=``,
        ``epochs=``, ``seed=``, ...), as the flat ``DistillConfig`` of earlier versions took
        them; not together with ``labels=`` / ``optim=``. They read back as attributes too
        (``cfg.eps``, ``cfg.epochs``).

    Raises
    ------
    InvalidArgumentError
        An unknown method or key, or a value out of range.

    Examples
    --------
    >>> cfg = DistillConfig("diffiqa-r", optim=OptimConfig(epochs=2))
    >>> cfg.epochs, cfg.to_dict()["method"]
    (2, 'diffiqa-r')
    >>> DistillConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    method: str = "ediffiqa"
    labels: LabelConfig = field(default_factory=LabelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    theta: float = 0.5
    cut: int = 15
    val_fraction: float = 0.1
    split_seed: int | None = None

    def __init__(self, method: str = "ediffiqa", labels: LabelConfig | None = None,
                 optim: OptimConfig | None = None, theta: float = 0.5, cut: int = 15,
                 val_fraction: float = 0.1, split_seed: int | None = None, **flat: Any) -> None:
        unknown = sorted(set(flat) - set(_LABEL_KEYS) - set(_OPTIM_KEYS))
        if unknown:
            raise InvalidArgumentError(f"DistillConfig: unknown options {unknown}")
        lab = {k: v for k, v in flat.items() if k in _LABEL_KEYS}
        opt = {k: v for k, v in flat.items() if k in _OPTIM_KEYS}
        if lab and labels is not None or opt and optim is not None:
            raise InvalidArgumentError("DistillConfig: give labels= / optim= or their fields "
                                       f"({sorted(lab or opt)}), not both")
        for name, value, kind in (("labels", labels, LabelConfig), ("optim", optim, OptimConfig)):
            if value is not None and not isinstance(value, kind):
                raise InvalidArgumentError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "labels", labels if labels is not None else LabelConfig(**lab))
        object.__setattr__(self, "optim", optim if optim is not None else OptimConfig(**opt))
        object.__setattr__(self, "theta", theta)
        object.__setattr__(self, "cut", cut)
        object.__setattr__(self, "val_fraction", val_fraction)
        object.__setattr__(self, "split_seed", split_seed)
        self.__post_init__()

    def __post_init__(self) -> None:
        get_method(self.method)  # a registered name
        if not isinstance(self.method, str):
            raise InvalidArgumentError(f"method must be a registered name, got {self.method!r}")
        _real(self, "theta", lo=0.0, hi=1.0)
        _int(self, "cut", lo=0)
        _real(self, "val_fraction", lo=0.0, hi=1.0)
        if self.val_fraction >= 1:
            raise _bad("val_fraction", self.val_fraction, "< 1")
        _int(self, "split_seed", none=True)

    # the flat names of earlier versions, read-only
    eps = property(lambda self: self.labels.eps)
    p = property(lambda self: self.labels.p)
    min_count = property(lambda self: self.labels.min_count)
    epochs = property(lambda self: self.optim.epochs)
    batch_size = property(lambda self: self.optim.batch_size)
    lr_head = property(lambda self: self.optim.lr_head)
    lr_backbone = property(lambda self: self.optim.lr_backbone)
    grad_clip = property(lambda self: self.optim.grad_clip)
    hflip = property(lambda self: self.optim.hflip)
    seed = property(lambda self: self.optim.seed)

    def to_dict(self) -> dict:
        """The flat record of the sidecar's ``config`` (the same keys as before the nested
        configs: ``method, eps, theta, p, min_count, cut, epochs, batch_size, lr_head,
        lr_backbone, grad_clip, hflip, val_fraction, seed, split_seed``)."""
        return {"method": self.method, "eps": self.eps, "theta": self.theta, "p": self.p,
                "min_count": self.min_count, "cut": self.cut, "epochs": self.epochs,
                "batch_size": self.batch_size, "lr_head": self.lr_head,
                "lr_backbone": self.lr_backbone, "grad_clip": self.grad_clip,
                "hflip": self.hflip, "val_fraction": self.val_fraction, "seed": self.seed,
                "split_seed": self.split_seed}

    @classmethod
    def from_dict(cls, data: dict) -> "DistillConfig":
        """Inverse of :meth:`to_dict`; also reads the nested form (``labels`` / ``optim`` as
        dicts). Unknown keys raise :class:`~fiqa_sdk.errors.InvalidArgumentError`."""
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"DistillConfig.from_dict needs a dict, got {type(data).__name__}")
        data = dict(data)
        for key, kind in (("labels", LabelConfig), ("optim", OptimConfig)):
            if isinstance(data.get(key), dict):
                data[key] = kind.from_dict(data[key])
        return cls(**data)


@dataclass(frozen=True)
class TeacherConfig:
    """The DifFIQA teacher whose scores are the pseudo-labels
    (:func:`~fiqa_sdk.train.api.diffiqa_teacher`; its labels are cached by its identity).

    Parameters
    ----------
    weights : path or None, default None
        Denoiser ``.safetensors`` (None: the shipped one).
    t : int, default 5
        Forward diffusion steps.
    n : int or None, default None
        Repeats (None: 10, or 2 with ``fast``).
    fast : bool, default False
        One-step restoration.
    seed : int, default 0
    """

    weights: str | None = None
    t: int = 5
    n: int | None = None
    fast: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.weights is not None:
            if not isinstance(self.weights, (str, os.PathLike)):
                raise _bad("weights", self.weights, "a path or None")
            object.__setattr__(self, "weights", os.fspath(self.weights))
        _int(self, "t", lo=1)
        _int(self, "n", lo=1, none=True)
        if not isinstance(self.fast, bool):
            raise _bad("fast", self.fast, "True or False")
        _int(self, "seed")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "TeacherConfig":
        return _from(cls, data)


@dataclass(frozen=True)
class DataConfig:
    """Which aligned faces are trained on.

    Parameters
    ----------
    limit : int or None, default None
        Only the first ``limit`` aligned faces (quick trials).
    degraded_copies : int, default 0
        Also train on that many seeded, synthetically degraded copies of every face
        (:func:`~fiqa_sdk.train.data.degraded_copies`), labelled by the same teacher.
    degrade_seed : int, default 1
        Seed of the degraded copies.
    """

    limit: int | None = None
    degraded_copies: int = 0
    degrade_seed: int = 1

    def __post_init__(self) -> None:
        _int(self, "limit", lo=1, none=True)
        _int(self, "degraded_copies", lo=0)
        _int(self, "degrade_seed")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "DataConfig":
        return _from(cls, data)


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a trained regressor, for
    :func:`~fiqa_sdk.train.api.train_regressor`. Where the files go, the CPU threads and the
    callbacks are arguments of that function, not part of the config.

    Parameters
    ----------
    distill : DistillConfig, default DistillConfig()
        Method and hyper-parameters of the regressor.
    teacher : TeacherConfig, default TeacherConfig()
    data : DataConfig, default DataConfig()

    Examples
    --------
    >>> cfg = TrainingConfig(DistillConfig("diffiqa-r", epochs=2), TeacherConfig(n=1))
    >>> cfg.method
    'diffiqa-r'
    >>> TrainingConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    distill: DistillConfig = field(default_factory=DistillConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        for name, kind in (("distill", DistillConfig), ("teacher", TeacherConfig),
                           ("data", DataConfig)):
            if not isinstance(getattr(self, name), kind):
                raise InvalidArgumentError(
                    f"{name} must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")

    @property
    def method(self) -> str:
        return self.distill.method

    def to_dict(self) -> dict:
        """``{"distill": {...flat...}, "teacher": {...}, "data": {...}}`` (JSON-ready)."""
        return {"distill": self.distill.to_dict(), "teacher": self.teacher.to_dict(),
                "data": self.data.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainingConfig":
        """Inverse of :meth:`to_dict` (a missing part takes its defaults)."""
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"TrainingConfig.from_dict needs a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - {"distill", "teacher", "data"})
        if unknown:
            raise InvalidArgumentError(f"TrainingConfig: unknown keys {unknown}")
        return cls(distill=DistillConfig.from_dict(data.get("distill", {})),
                   teacher=TeacherConfig.from_dict(data.get("teacher", {})),
                   data=DataConfig.from_dict(data.get("data", {})))


@dataclass(frozen=True)
class FreeHeadConfig:
    """The ``ediffiqa-free`` v2 norm-residual head (:func:`fiqa_sdk.train.free_head.train_head`,
    ``python -m fiqa_sdk.train.free_head``): AdamW on the frozen backbone's raw embeddings, MSE
    to the standardised scores of a label scorer.

    Parameters
    ----------
    label_scorer : str, default "diffiqa-r"
        Scorer whose scores are the targets.
    epochs : int, default 30
    lr : float, default 1e-3
    hidden : int, default 256
        Hidden width of the head's MLP.
    weight_decay : float, default 1e-4
    seed : int, default 0
    """

    label_scorer: str = "diffiqa-r"
    epochs: int = 30
    lr: float = 1e-3
    hidden: int = 256
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.label_scorer, str) or not self.label_scorer:
            raise _bad("label_scorer", self.label_scorer, "a scorer name")
        _int(self, "epochs", lo=1)
        _real(self, "lr", lo=0.0, lo_open=True)
        _int(self, "hidden", lo=1)
        _real(self, "weight_decay", lo=0.0)
        _int(self, "seed")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "FreeHeadConfig":
        return _from(cls, data)
