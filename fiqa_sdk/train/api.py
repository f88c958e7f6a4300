"""Python API of the regressor training: :func:`train_regressor` runs a
:class:`~fiqa_sdk.train.config.TrainingConfig` (what ``fiqa train ediffiqa``, ``fiqa train
ediffiqa-free`` and ``fiqa train diffiqa-r`` run); :func:`train_ediffiqa` is the same with flat
keyword arguments.

    import fiqa_sdk as fq
    from fiqa_sdk.train import DistillConfig, TrainingConfig, train_regressor

    result = fq.train_ediffiqa("my_faces/", "runs/mine")    # one sub-folder per identity
    result = train_regressor("my_faces/", "runs/r", TrainingConfig(DistillConfig("diffiqa-r")))
    scorer = result.create_scorer()                         # or create_scorer("ediffiqa", weights=...)
    gate = fq.QualityGate(scorer=scorer)
"""

from __future__ import annotations

import copy
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..embed.base import TorchModuleEmbedder
from ..errors import InvalidArgumentError
from .config import (DataConfig, DistillConfig, LabelConfig, OptimConfig, TeacherConfig,
                     TrainingConfig)
from .methods import METHODS  # noqa: F401 - the regressors train_ediffiqa trains (re-exported)

__all__ = ["ModuleEmbedder", "TrainedRegressor", "load_backbone_factory", "train_ediffiqa",
           "train_regressor", "training_config"]


@dataclass(frozen=True)
class TrainedRegressor:
    """What :func:`train_ediffiqa` trained.

    ``weights``: the ``.safetensors`` file (its ``.json`` sidecar next to it holds the config,
    the teacher, the label statistics and the history); ``aligned``: the cache folder of the
    aligned training faces (``faces.npy``, ``index.csv``, ``skipped.csv``); ``history``: one dict per epoch (``loss``
    and the validation metrics); ``labels``: label statistics (faces, identities, class centres,
    faces used); ``held_out_verification``: normalized pAUCs on the held-out identities of the
    teacher's labels and, where available, of ``embedding-norm``; ``seconds``: training time;
    ``config``: the :class:`~fiqa_sdk.train.config.TrainingConfig` it ran (None when built by
    hand).
    """

    method: str
    weights: Path
    aligned: Path
    history: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    held_out_verification: dict = field(default_factory=dict)
    seconds: float = 0.0
    backbone: object = field(default=None, repr=False)
    config: TrainingConfig | None = field(default=None, repr=False)

    @property
    def final(self) -> dict:
        """The last epoch's row of :attr:`history` (empty when no epoch ran)."""
        return self.history[-1] if self.history else {}

    def create_scorer(self, **options):
        """The trained scorer: ``fq.create_scorer(method, weights=self.weights, **options)``
        (for a registered method, the scorer it names: :attr:`TrainingMethod.scorer_name`);
        a copy of a user backbone is passed on (a regressor's weights hold only the fine-tuned
        part; the scorer completes that copy)."""
        from ..quality import create_scorer
        from .methods import TRAINING_METHODS, get_method

        if self.backbone is not None:
            options.setdefault("backbone", copy.deepcopy(self.backbone))
        scorer = get_method(self.method).scorer_name if self.method in TRAINING_METHODS else self.method
        return create_scorer(scorer, weights=str(self.weights), **options)


def load_backbone_factory(spec: str):
    """``"pkg.module:factory"`` or ``"path/to/file.py:factory"`` -> ``factory()``, a torch module;
    ``"path/to/model.onnx"`` (an insightface-format FR model) -> its
    :class:`~fiqa_sdk.nets.onnx_graph.OnnxGraphModule`.

    Raises :class:`~fiqa_sdk.errors.InvalidArgumentError` with the reason when the spec is
    malformed, the module or the factory cannot be found, or the result is not a torch module.
    """
    import importlib
    import importlib.util

    from torch import nn

    from ..errors import InvalidArgumentError, WeightsError

    if str(spec).lower().endswith(".onnx"):
        from ..nets.onnx_graph import load_onnx_backbone

        try:
            return load_onnx_backbone(Path(spec).expanduser())
        except WeightsError as exc:
            raise InvalidArgumentError(f"--backbone: {exc}") from None
    module_name, sep, attr = str(spec).rpartition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise InvalidArgumentError(f"--backbone takes MODULE:FACTORY or MODEL.onnx, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser()
            if not path.is_file():
                raise InvalidArgumentError(f"--backbone: file not found: {path}")
            mspec = importlib.util.spec_from_file_location(f"fiqa_user_backbone_{path.stem}", path)
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidArgumentError(f"--backbone: cannot import {module_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InvalidArgumentError(f"--backbone: {module_name!r} has no callable {attr!r}")
    net = factory()
    if not isinstance(net, nn.Module):
        raise InvalidArgumentError(f"--backbone: {spec}() returned {type(net).__name__}, "
                                   "not a torch module")
    return net.eval()


class ModuleEmbedder(TorchModuleEmbedder):
    """A torch FR module as the target model ``M`` for :func:`~.labels.target_embeddings`:
    raw ``(N, D)`` outputs of ArcFace-style 112x112 RGB crops scaled to [-1, 1]
    (:class:`~fiqa_sdk.embed.TorchModuleEmbedder`, named ``name``)."""

    def __init__(self, module, name: str) -> None:
        super().__init__(module, name)


def diffiqa_teacher(weights=None, t: int = 5, n: int | None = None, fast: bool = False,
                    seed: int = 0, threads: int = 2):
    """The DifFIQA scorer whose scores are the pseudo-labels (``threads``: torch's and its
    ArcFace embedder's CPU threads)."""
    import torch

    from ..quality.diffiqa import DifFIQAScorer

    torch.set_num_threads(threads)
    return DifFIQAScorer(weights=weights, t=t, n=n, fast=fast, seed=seed, threads=threads)


def _aligned(data, cache, progress):
    from .data import AlignedFaces, build_aligned_cache

    if isinstance(data, AlignedFaces):
        return data
    if not isinstance(data, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"data must be a folder path or an AlignedFaces, got {type(data).__name__}")
    return build_aligned_cache(Path(data), cache=cache, progress=progress)


def _backbone(backbone, threads: int):
    """(backbone module, target embedder, sidecar description, target model name)."""
    from .._weights import sha256_file
    from ..embed import create_embedder
    from ..quality.base import model_digest

    if backbone is None:
        from ..nets.mobilefacenet import load_mobilefacenet

        emb = create_embedder("arcface", threads=threads)
        meta = {"arch": "mobilefacenet", "base": "w600k_mbf.onnx",
                "base_sha256": sha256_file(emb.model_path)}
        return load_mobilefacenet(), emb, meta, "arcface:w600k_mbf", False
    import torch

    if isinstance(backbone, (str, os.PathLike)):
        spec = str(backbone)
        module = load_backbone_factory(spec)
    elif isinstance(backbone, torch.nn.Module):
        spec, module = type(backbone).__name__, backbone.eval()
    else:
        raise InvalidArgumentError("backbone must be None (the shipped ArcFace MobileFaceNet), "
                                   "'MODULE:FACTORY', a .onnx path or a torch module, got "
                                   f"{type(backbone).__name__}")
    digest = model_digest(module)
    meta = {"arch": "custom", "factory": spec, "base_digest": digest}
    return module, ModuleEmbedder(module, f"custom-{digest}"), meta, f"custom:{spec}", True


def _degraded(faces_set, n: int, copies: int, seed: int, log):
    """The cached degraded copies of the first ``n`` faces of ``faces_set``."""
    from .data import AlignedFaces, degraded_copies

    if n < len(faces_set):  # a truncated set (limit) gets its own cache folder
        faces_set = AlignedFaces(faces_set.faces[:n], faces_set.files[:n],
                                 faces_set.identities[:n], faces_set.det_scores[:n], 0,
                                 Path(faces_set.path) / f"first{n}")
    log(f"{copies} degraded cop{'y' if copies == 1 else 'ies'} of each of {n} faces (seed {seed}; cached)")
    return degraded_copies(faces_set, copies, seed)


def _restores_torch_threads(fn):
    """``fn`` (which sets torch's process-wide intra-op threads to its ``threads=``) with
    torch's thread count put back as it was when ``fn`` returns or raises."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        prev = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(prev)

    return wrapper


@_restores_torch_threads
def train_regressor(
    data,
    out: str | os.PathLike,
    config: TrainingConfig | None = None,
    *,
    backbone=None,
    threads: int = 2,
    cache: str | os.PathLike | None = None,
    name: str | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainedRegressor:
    """Train a distilled quality regressor on your faces, as ``config`` says.

    Every step of the recipe (docs/ediffiqa.md): detect and align the faces (RetinaFace, ArcFace
    5-point template; cached), DifFIQA pseudo-labels from the teacher (cached under
    ``<cache>/labels``, keyed by the teacher and the faces), target embeddings of the FR model
    ``M``, the method's training targets (:mod:`~fiqa_sdk.train.methods`: raw or
    label-optimized labels), then the regressor (backbone blocks ``[cut:]`` + head) with a
    held-out identity split for validation.

    Parameters
    ----------
    data : str, path or AlignedFaces
        A training-set folder -- ``identities.csv`` + ``images/``, or one sub-folder of face
        images per identity (:func:`fiqa_sdk.train.data.list_training_images`) -- or an
        :class:`~fiqa_sdk.train.data.AlignedFaces`. Never the data you evaluate on (LFW).
    out : str or path
        Folder for ``<name>.safetensors`` + ``.json`` (+ ``.history.json``).
    config : TrainingConfig, optional
        Method, hyper-parameters, teacher and data options
        (:class:`~fiqa_sdk.train.config.TrainingConfig`; default: ``TrainingConfig()``, the
        ``ediffiqa`` recipe). The sidecar records it under ``training``
        (``TrainingConfig.from_dict`` reads it back).
    backbone : None, str or torch module
        ``None`` (the shipped ArcFace MobileFaceNet, w600k_mbf), ``"MODULE:FACTORY"`` /
        ``"file.py:FACTORY"``, an insightface-format ``.onnx`` path, or a torch module mapping
        ``(N, 3, 112, 112)`` RGB crops in [-1, 1] to ``(N, D)`` embeddings. It is also the
        target model ``M``. A copy is fine-tuned: the module passed is not modified.
    threads : int, default 2
        CPU threads of torch and onnxruntime while training (torch's process-wide thread
        count is put back when this returns).
    cache : str or path, optional
        Cache folder (default ``$FIQA_CACHE`` or ``~/.cache/fiqa-sdk``).
    name : str, optional
        File name stem of the weights (default: the method's, e.g. ``ediffiqa_mbf``).
    log, progress : callable, optional
        Callbacks for status lines and alignment progress ``(done, total)``.

    Returns
    -------
    TrainedRegressor

    Raises
    ------
    InvalidArgumentError
        A bad option, or unusable data (not a training-set folder, LFW, too few aligned faces
        or identities).

    Examples
    --------
    >>> from fiqa_sdk.train import (DistillConfig, LabelConfig, TeacherConfig, TrainingConfig,
    ...                             train_regressor)
    >>> cfg = TrainingConfig(distill=DistillConfig("ediffiqa", labels=LabelConfig(eps=1.0)),
    ...                      teacher=TeacherConfig(n=1))
    >>> result = train_regressor("my_faces/", "runs/mine", cfg)  # doctest: +SKIP
    >>> scorer = result.create_scorer()  # doctest: +SKIP
    """
    from .data import cache_root
    from .distill import distill
    from .labels import pseudo_labels, target_embeddings
    from .methods import get_method

    cfg = TrainingConfig() if config is None else config
    if not isinstance(cfg, TrainingConfig):
        raise InvalidArgumentError(f"config must be a TrainingConfig, got {type(cfg).__name__}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidArgumentError(f"threads={threads!r} is out of range")
    method = get_method(cfg.method)
    dcfg, tcfg = cfg.data, cfg.teacher
    log = log or (lambda msg: None)
    faces_set = _aligned(data, cache, progress)
    n = len(faces_set) if dcfg.limit is None else min(dcfg.limit, len(faces_set))
    ids = faces_set.identities[:n]
    n_ids = len(np.unique(ids))
    if n < 4 or n_ids < 2:
        raise InvalidArgumentError(
            f"{faces_set.path}: {n} aligned faces of {n_ids} identities "
            f"({faces_set.skipped} images skipped); training needs several identities with "
            "several faces each")
    log(f"{n} aligned faces of {n_ids} identities ({faces_set.path})")
    sets = [(faces_set, n)]
    if dcfg.degraded_copies:
        deg = _degraded(faces_set, n, dcfg.degraded_copies, dcfg.degrade_seed, log)
        sets.append((deg, len(deg)))

    teacher = diffiqa_teacher(tcfg.weights, tcfg.t, tcfg.n, tcfg.fast, tcfg.seed, threads)
    module, embedder, backbone_meta, target_model, custom = _backbone(backbone, threads)
    parts: list[tuple[np.ndarray, ...]] = []
    for fs, m in sets:
        faces = np.asarray(fs.faces[:m])
        q, folder = pseudo_labels(faces, teacher, cache_root(cache) / "labels", log=log)
        if not np.isfinite(q).all():  # pragma: no cover - pseudo_labels finishes unless limited
            raise InvalidArgumentError(f"{int((~np.isfinite(q)).sum())} of {m} pseudo-labels "
                                       f"are missing in {folder}")
        log(f"target embeddings ({target_model}, crops and mirrors; cached)")
        e, ef = target_embeddings(faces, embedder, cache_dir=fs.path)
        parts.append((faces, fs.identities[:m], q, e, ef))
    faces, ids, q, e, ef = (np.concatenate(x) for x in zip(*parts))
    real = np.arange(len(faces)) < n
    meta = {
        "backbone": backbone_meta,
        "target_model": target_model,
        "teacher": json.loads((folder / "meta.json").read_text())["teacher"],
        "data": {"source": str(faces_set.path), "faces": n, "identities": n_ids},
        "training": cfg.to_dict(),
    }
    if dcfg.degraded_copies:
        meta["data"].update(degraded_copies=dcfg.degraded_copies, degrade_seed=dcfg.degrade_seed,
                            degraded_faces=int(len(faces) - n),
                            degraded_recipe=json.loads((deg.path / "meta.json").read_text())["recipe"])
    # frozen-stem activations are worth caching only for a backbone that can be split
    features = faces_set.path / "stem-features" if hasattr(module, "split") else None
    # a copy is fine-tuned; the base module stays as it was (a user's module is not modified,
    # and the scorer of a custom backbone needs the base, checked by its digest)
    summary = distill(faces, ids, q, e, ef, copy.deepcopy(module), out, cfg.distill, meta=meta,
                      log=log, name=name, feature_cache=features, raw_target=True, verify=real)
    return TrainedRegressor(method=method.name, weights=Path(summary["weights"]),
                            aligned=faces_set.path, history=summary["history"],
                            labels=summary["labels"],
                            held_out_verification=summary["held_out_verification"],
                            seconds=summary["seconds"], backbone=module if custom else None,
                            config=cfg)


def training_config(
    *,
    method: str = "ediffiqa",
    eps: float = 0.5,
    theta: float = 0.5,
    p: float = 0.2,
    min_count: int = 3,
    epochs: int = 8,
    cut: int = 15,
    seed: int = 0,
    split_seed: int | None = None,
    teacher_weights: str | os.PathLike | None = None,
    teacher_t: int = 5,
    teacher_n: int | None = None,
    teacher_fast: bool = False,
    teacher_seed: int = 0,
    limit: int | None = None,
    degraded_copies: int = 0,
    degrade_seed: int = 1,
) -> TrainingConfig:
    """The :class:`~fiqa_sdk.train.config.TrainingConfig` of :func:`train_ediffiqa`'s flat
    keyword arguments (the same names and defaults; ``fiqa train`` builds its config with it).

    Raises :class:`~fiqa_sdk.errors.InvalidArgumentError` for an unknown method or a value out
    of range.

    Examples
    --------
    >>> cfg = training_config(method="diffiqa-r", epochs=2, teacher_n=1)
    >>> cfg.distill.optim.epochs, cfg.teacher.n
    (2, 1)
    """
    return TrainingConfig(
        distill=DistillConfig(method=method, labels=LabelConfig(eps=eps, p=p, min_count=min_count),
                              optim=OptimConfig(epochs=epochs, seed=seed), theta=theta, cut=cut,
                              split_seed=split_seed),
        teacher=TeacherConfig(weights=teacher_weights, t=teacher_t, n=teacher_n,
                              fast=teacher_fast, seed=teacher_seed),
        data=DataConfig(limit=limit, degraded_copies=degraded_copies, degrade_seed=degrade_seed))


def train_ediffiqa(
    data,
    out: str | os.PathLike,
    *,
    method: str = "ediffiqa",
    backbone=None,
    eps: float = 0.5,
    theta: float = 0.5,
    p: float = 0.2,
    min_count: int = 3,
    epochs: int = 8,
    cut: int = 15,
    seed: int = 0,
    teacher_weights: str | os.PathLike | None = None,
    teacher_t: int = 5,
    teacher_n: int | None = None,
    teacher_fast: bool = False,
    teacher_seed: int = 0,
    threads: int = 2,
    cache: str | os.PathLike | None = None,
    name: str | None = None,
    limit: int | None = None,
    degraded_copies: int = 0,
    degrade_seed: int = 1,
    split_seed: int | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainedRegressor:
    """Train an eDifFIQA (or ``ediffiqa-free`` / DifFIQA(R)) quality regressor on your faces.

    The flat-keyword form of :func:`train_regressor`: it builds the
    :class:`~fiqa_sdk.train.config.TrainingConfig` (:func:`training_config`) and runs it, so
    ``train_ediffiqa(data, out, **kw)`` and ``train_regressor(data, out, training_config(**kw))``
    give the same weights.

    Parameters
    ----------
    data : a training-set folder -- ``identities.csv`` + ``images/``, or one sub-folder of face
        images per identity (:func:`fiqa_sdk.train.data.list_training_images`) -- or an
        :class:`~fiqa_sdk.train.data.AlignedFaces`. Never the data you evaluate on (LFW).
    out : folder for ``<name>.safetensors`` + ``.json`` (+ ``.history.json``).
    method : ``"ediffiqa"`` (MLP head, label optimization, representation-consistency loss),
        ``"ediffiqa-free"`` (head on the frozen backbone's embedding), ``"diffiqa-r"``
        (linear head on the raw labels), or a method you registered in
        :data:`~fiqa_sdk.train.methods.TRAINING_METHODS`.
    backbone : ``None`` (the shipped ArcFace MobileFaceNet, w600k_mbf), ``"MODULE:FACTORY"`` /
        ``"file.py:FACTORY"``, an insightface-format ``.onnx`` path, or a torch module mapping
        ``(N, 3, 112, 112)`` RGB crops in [-1, 1] to ``(N, D)`` embeddings. It is also the target
        model ``M``. Training fine-tunes a copy: the module passed is not modified.
    eps, p, min_count : :class:`~fiqa_sdk.train.config.LabelConfig` (label optimization
        strength, top label fraction and minimum top faces per identity for a class centre).
    theta, cut : :class:`~fiqa_sdk.train.config.DistillConfig` (consistency-loss weight, first
        fine-tuned block).
    epochs, seed : :class:`~fiqa_sdk.train.config.OptimConfig` (epochs; training + split seed).
    split_seed : seed of the held-out identities alone (default None: ``seed``). Runs that
        differ only in ``seed`` with one ``split_seed`` share their held-out faces, so a seed
        ensemble of them can be evaluated on faces none of its members trained on.
    teacher_weights, teacher_t, teacher_n, teacher_fast, teacher_seed :
        :class:`~fiqa_sdk.train.config.TeacherConfig`, the DifFIQA teacher (default: the
        shipped denoiser, t = 5, n = 10 or 2 with ``teacher_fast``, seed 0).
    limit, degraded_copies, degrade_seed : :class:`~fiqa_sdk.train.config.DataConfig`: use
        only the first ``limit`` aligned faces (quick trials); also train on
        ``degraded_copies`` synthetically degraded copies of every face
        (:func:`~fiqa_sdk.train.data.degraded_copies`: a random BSRGAN-style chain mixed in with
        a random weight, seeded; cached), labelled by the same teacher, so the regressor sees
        the low end of the quality range a small, mostly high-quality set lacks. The held-out
        verification EDC stays on the real faces.
    threads, cache, name, log, progress : as :func:`train_regressor`.

    Returns
    -------
    TrainedRegressor

    Raises
    ------
    InvalidArgumentError
        An unknown method, a bad option or unusable data (not a training-set folder, LFW, too
        few aligned faces or identities).

    Examples
    --------
    >>> import fiqa_sdk as fq
    >>> result = fq.train_ediffiqa("my_faces/", "runs/mine", epochs=8)  # doctest: +SKIP
    >>> gate = fq.QualityGate(scorer=result.create_scorer())  # doctest: +SKIP
    """
    cfg = training_config(
        method=method, eps=eps, theta=theta, p=p, min_count=min_count, epochs=epochs, cut=cut,
        seed=seed, split_seed=split_seed, teacher_weights=teacher_weights, teacher_t=teacher_t,
        teacher_n=teacher_n, teacher_fast=teacher_fast, teacher_seed=teacher_seed, limit=limit,
        degraded_copies=degraded_copies, degrade_seed=degrade_seed)
    return train_regressor(data, out, cfg, backbone=backbone, threads=threads, cache=cache,
                           name=name, log=log, progress=progress)
