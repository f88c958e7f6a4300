"""Score-level fusion of a distilled quality regressor with the FR embedding's norm.

The norm of the un-normalised ArcFace embedding is a quality signal every face-recognition
application already has (``embedding-norm``); the regressors distilled from DifFIQA
(``diffiqa-r``, ``ediffiqa``) carry a different one. :class:`NormFusionScorer` adds the two
after z-score normalisation (the sum rule of biometric score fusion)::

    q = w * (r - mean_r) / std_r + (1 - w) * (log ||e|| - mean_l) / std_l

where ``r`` is the regressor's score, ``e`` the raw ArcFace embedding and the means and
standard deviations are fixed constants measured once on the training faces (celeba-subset,
never the evaluation data) and shipped in ``fiqa_sdk/weights/norm_fusion.json``. The weight
``w`` is 0.5 (equal weights, not tuned). The score is in units of those standard deviations:
0 is a typical training face, higher is better.

In a :class:`~fiqa_sdk.QualityGate` with the default ``arcface`` embedder the fusion costs
nothing on top of the regressor: one joint pass gives the raw embedding (hence its norm) and
the regressor's score (:mod:`fiqa_sdk.quality.joint`), and :meth:`NormFusionScorer.combine`
adds them.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._paths import WEIGHTS_DIR
from ..errors import InvalidArgumentError, WeightsError
from ..types import Face
from .base import Scorer

#: The shipped fusion constants (per regressor, keyed by its weights' sha256).
CONSTANTS_FILE = WEIGHTS_DIR / "norm_fusion.json"
#: The regressors the fusion is defined for: they are distilled from the ArcFace model whose
#: embedding norm the fusion reads, and share its stem (the joint pass).
FUSABLE = ("diffiqa-r", "ediffiqa")


def _regressor_class(name: str) -> type:
    """The scorer class of a fusable regressor name (:data:`FUSABLE`)."""
    from .ediffiqa import DifFIQARScorer, EDifFIQAScorer

    return {"diffiqa-r": DifFIQARScorer, "ediffiqa": EDifFIQAScorer}[name]


def _check_fusion(weight: float, *stds: float) -> float:
    """``weight`` as a float in [0, 1], and every standard deviation positive."""
    w = float(weight)
    if not 0.0 <= w <= 1.0:
        raise InvalidArgumentError(f"weight must be in [0, 1], got {weight!r}")
    if not all(s > 0 for s in stds):
        raise InvalidArgumentError("fusion constants need positive standard deviations")
    return w


def load_constants(path: str | Path | None = None) -> dict[str, Any]:
    """The fusion constants file (default: the shipped ``norm_fusion.json``)."""
    p = Path(path) if path is not None else CONSTANTS_FILE
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read the fusion constants {p}: {exc}") from None


def fusion_constants(regressor: Scorer, embedder: Any, crops: np.ndarray,
                     batch_size: int = 256) -> dict[str, Any]:
    """Measure the fusion constants of ``regressor`` and ``embedder`` on ``crops``.

    Parameters
    ----------
    regressor : Scorer
        The regressor to fuse (e.g. ``create_scorer("diffiqa-r", precision="fp32")``).
    embedder : Embedder
        The FR model whose embedding norm is fused.
    crops : ndarray
        ``(N, 112, 112, 3)`` uint8 RGB aligned training faces (not evaluation data), N >= 100.

    Returns
    -------
    dict
        ``{"regressor": {"mean", "std"}, "log_norm": {"mean", "std"}, "faces": N}``.

    Examples
    --------
    >>> import fiqa_sdk as fq, numpy as np                                # doctest: +SKIP
    >>> faces = np.load("celeba-aligned/faces.npy")                        # doctest: +SKIP
    >>> c = fusion_constants(fq.create_scorer("diffiqa-r", precision="fp32"),
    ...                      fq.create_embedder("arcface"), faces)         # doctest: +SKIP
    """
    crops = np.asarray(crops)
    if crops.ndim != 4 or len(crops) < 100:
        raise InvalidArgumentError(f"fusion constants need at least 100 aligned crops (N, 112, "
                                   f"112, 3), got shape {crops.shape}")
    r, ln = [], []
    for i in range(0, len(crops), int(batch_size)):
        c = crops[i:i + int(batch_size)]
        r.append(regressor.score(c))
        ln.append(np.log(np.linalg.norm(embedder.embed_raw(c), axis=1)))
    rv, lv = np.concatenate(r), np.concatenate(ln)
    return {"regressor": {"mean": float(rv.mean()), "std": float(rv.std())},
            "log_norm": {"mean": float(lv.mean()), "std": float(lv.std())},
            "faces": int(len(crops))}


def write_constants(path: str | Path, crops: np.ndarray, regressors: Sequence[str] = FUSABLE,
                    embedder: Any = "arcface") -> Path:
    """Measure the fusion constants of the shipped ``regressors`` (fp32, onnxruntime) and the
    ArcFace log-norm on training ``crops`` (:func:`fusion_constants`) and write them as JSON:
    the format of the shipped ``norm_fusion.json``."""
    from ..embed import create_embedder

    emb = create_embedder(embedder) if isinstance(embedder, str) else embedder
    out: dict[str, Any] = {
        "description": "z-score constants of NormFusionScorer (fiqa_sdk/quality/fusion.py): mean "
                       "and std of each regressor's fp32 score and of log ||e|| (ArcFace "
                       "w600k_mbf raw embedding) over every aligned celeba-subset training face",
        "data": {"source": "celeba-subset, RetinaFace-aligned (the training cache of fiqa train)",
                 "faces": int(len(crops))},
        "embedder": {"model": Path(getattr(emb, "model_path", "")).name},
        "regressors": {}}
    for name in regressors:
        sc = _regressor_class(name)(precision="fp32", backend="onnxruntime")
        c = fusion_constants(sc, emb, crops)
        out["regressors"][name] = {**c["regressor"], "weights_sha256": sc.meta["sha256"]}
        out["log_norm"] = c["log_norm"]
    path = Path(path)
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


def fold_norm_fusion(head: Any, head_stats: dict, log_norm_stats: dict, weight: float = 0.5) -> Any:
    """A copy of a :class:`~fiqa_sdk.quality.ediffiqa.NormResidualHead` (``a log||e|| + b +
    MLP(e/||e||)``) whose output is the fusion ``w z(head) + (1 - w) z(log||e||)``.

    The fusion of such a head with the log-norm is again such a head, exactly: the new
    ``a' = w a / s_h + (1 - w) / s_l``, ``b' = w (b - m_h) / s_h - (1 - w) m_l / s_l`` and the
    MLP's last layer scaled by ``w / s_h`` (``m``, ``s``: the means and standard deviations in
    ``head_stats`` / ``log_norm_stats``). ``ediffiqa-free`` v3 is v2 folded this way.
    """
    import copy

    import torch

    mh, sh = float(head_stats["mean"]), float(head_stats["std"])
    ml, sl = float(log_norm_stats["mean"]), float(log_norm_stats["std"])
    w = _check_fusion(weight, sh, sl)
    out = copy.deepcopy(head)
    with torch.no_grad():
        a, b = float(head.scale), float(head.bias)
        out.scale.fill_(w * a / sh + (1 - w) / sl)
        out.bias.fill_(w * (b - mh) / sh - (1 - w) * ml / sl)
        out.mlp[2].weight.mul_(w / sh)
        out.mlp[2].bias.mul_(w / sh)
    return out


def fuse_free_head(weights: str | Path, out: str | Path, crops: np.ndarray,
                   weight: float = 0.5, embedder: Any = "arcface") -> Path:
    """Write ``ediffiqa-free`` weights whose head outputs its fusion with the log-norm.

    Parameters
    ----------
    weights : path
        A frozen-backbone regressor with a ``norm-mlp`` head (``ediffiqa-free`` v2).
    out : path
        The new ``.safetensors`` (its ``.json`` sidecar is written beside it).
    crops : ndarray
        ``(N, 112, 112, 3)`` uint8 RGB aligned training faces for the constants.
    weight : float
        The head's share ``w``.
    """
    from ..embed import create_embedder
    from .ediffiqa import NormResidualHead, QualityRegressor, load_regressor, save_regressor

    model, meta = load_regressor(weights)
    if not isinstance(model, QualityRegressor) or not isinstance(model.head, NormResidualHead) \
            or meta.get("backbone", {}).get("stored_tensors", 1) != 0:
        raise InvalidArgumentError(f"{weights}: not a frozen-backbone regressor with a norm-mlp head")
    if meta.get("fusion"):
        raise InvalidArgumentError(f"{weights}: its head is already fused with the norm")
    emb = create_embedder(embedder) if isinstance(embedder, str) else embedder
    crops = np.asarray(crops)
    raw = np.concatenate([emb.embed_raw(crops[i:i + 256]) for i in range(0, len(crops), 256)])
    import torch

    with torch.no_grad():
        h = model.head(torch.from_numpy(raw.astype(np.float32))).squeeze(-1).double().numpy()
    ln = np.log(np.linalg.norm(raw.astype(np.float64), axis=1))
    hs = {"mean": float(h.mean()), "std": float(h.std())}
    ls = {"mean": float(ln.mean()), "std": float(ln.std())}
    model.head = fold_norm_fusion(model.head, hs, ls, weight)
    base = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    new_meta = {k: v for k, v in meta.items() if k not in ("sha256",)}
    new_meta["free_head_version"] = int(meta.get("free_head_version", 2)) + 1
    new_meta["fusion"] = {"rule": "w * z(head) + (1 - w) * z(log ||e||), folded into the head",
                          "weight": float(weight), "head": hs, "log_norm": ls,
                          "faces": int(len(crops)), "from_sha256": meta.get("sha256")}
    return save_regressor(model, out, new_meta, base)


class NormFusionScorer(Scorer):
    """A distilled regressor fused with the ArcFace embedding norm (see the module doc).

    Parameters
    ----------
    regressor : {"diffiqa-r", "ediffiqa"} or Scorer
        The regressor, by name (created with ``regressor_options``) or a built one.
    embedder : str or Embedder
        The FR model whose raw embedding norm is fused: the shipped ``arcface``
        (``w600k_mbf``) unless ``constants`` are given for another.
    weight : float
        ``w``, the regressor's share in [0, 1] (0.5: equal weights).
    constants : dict or None
        ``{"regressor": {"mean", "std"}, "log_norm": {"mean", "std"}}`` (see
        :func:`fusion_constants`); None: the shipped constants of the shipped regressor
        weights. Required for other regressor weights or another embedder.
    device : str
        Passed to the regressor and to an embedder created by name.
    name : str or None
        Display name (default ``"<regressor>+norm"``).
    **regressor_options
        Keyword arguments for a regressor created by name (``weights``, ``backend``,
        ``precision``, ``threads`` ...).

    Examples
    --------
    >>> import fiqa_sdk as fq
    >>> sc = fq.create_scorer("diffiqa-r+norm")                     # doctest: +SKIP
    >>> sc.score(aligned_crops)                                      # doctest: +SKIP
    """

    needs_faces = False

    def __init__(self, regressor: str | Scorer = "diffiqa-r", embedder: Any = "arcface",
                 weight: float = 0.5, constants: dict | None = None, device: str = "cpu",
                 name: str | None = None, **regressor_options: Any) -> None:
        from ..embed import create_embedder
        from ..embed.arcface import is_shipped_arcface

        self.weight = _check_fusion(weight)
        if isinstance(regressor, str):
            if regressor not in FUSABLE:
                raise InvalidArgumentError(f"regressor must be one of {', '.join(FUSABLE)} or a "
                                           f"Scorer, got {regressor!r}")
            regressor = _regressor_class(regressor)(device=device, **regressor_options)
        elif regressor_options:
            raise InvalidArgumentError("regressor options go to a regressor created by name")
        if not isinstance(regressor, Scorer):
            raise InvalidArgumentError(f"regressor must be a name or a Scorer, got "
                                       f"{type(regressor).__name__}")
        self.regressor = regressor
        self._device = device
        self._joint: list = []  # [JointRunner or None], built on first use
        self._joint_lock = threading.Lock()
        self.embedder = (create_embedder(embedder, **({"device": device} if device != "cpu" else {}))
                         if isinstance(embedder, str) else embedder)
        if getattr(self.embedder, "input_size", 112) != 112:
            raise InvalidArgumentError("the fusion needs an embedder of 112x112 ArcFace crops")
        self.name = name or f"{regressor.name}+norm"
        self.regressor_name = str(regressor.name)
        self.regressor_sha256 = str(getattr(regressor, "weights_sha256", ""))
        if constants is None:
            table = load_constants()
            entry = table.get("regressors", {}).get(self.regressor_name)
            if not is_shipped_arcface(self.embedder) or entry is None \
                    or entry.get("weights_sha256", "")[:16] != self.regressor_sha256[:16]:
                raise InvalidArgumentError(
                    f"no shipped fusion constants for {self.regressor_name!r} with these weights "
                    "and this embedder; measure them on your training faces with "
                    "fiqa_sdk.quality.fusion.fusion_constants and pass constants=")
            constants = {"regressor": entry, "log_norm": table["log_norm"]}
        try:
            self.mean_r = float(constants["regressor"]["mean"])
            self.std_r = float(constants["regressor"]["std"])
            self.mean_l = float(constants["log_norm"]["mean"])
            self.std_l = float(constants["log_norm"]["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"constants must hold regressor/log_norm mean and std: "
                                       f"{exc}") from None
        _check_fusion(self.weight, self.std_r, self.std_l)

    @property
    def backend(self) -> str:
        return str(getattr(self.regressor, "backend", "torch"))

    @property
    def precision(self) -> str:
        return str(getattr(self.regressor, "precision", "fp32"))

    @property
    def threads(self) -> int | None:
        return getattr(self.regressor, "threads", None)

    def combine(self, regressor_scores: np.ndarray, raw_embeddings: np.ndarray) -> np.ndarray:
        """The fused quality of regressor scores ``(N,)`` and raw embeddings ``(N, D)`` of the
        same faces (the embedder's un-normalised output)."""
        r = np.asarray(regressor_scores, np.float64).reshape(-1)
        n = np.linalg.norm(np.asarray(raw_embeddings, np.float64), axis=1)
        if len(n) != len(r):
            raise InvalidArgumentError(f"{len(r)} regressor scores but {len(n)} embeddings")
        ln = np.log(np.maximum(n, 1e-12))
        return (self.weight * (r - self.mean_r) / self.std_r
                + (1.0 - self.weight) * (ln - self.mean_l) / self.std_l)

    def _joint_runner(self) -> Any:
        """One onnxruntime pass for the raw embedding and the regressor's score
        (:mod:`fiqa_sdk.quality.joint`) when the regressor runs on onnxruntime in fp32 and shares
        the embedder's stem (the shipped ones with the shipped ArcFace); else None."""
        if not self._joint:
            with self._joint_lock:
                if not self._joint:
                    runner = None
                    if self.backend == "onnxruntime" and self.precision == "fp32":
                        from .joint import JointRunner, joint_model

                        model = joint_model(self.regressor, self.embedder)
                        if model is not None:
                            runner = JointRunner(model, device=self._device,
                                                 threads=self.threads,
                                                 tag=f"joint-{self.regressor_name}")
                    self._joint.append(runner)
        return self._joint[0]

    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        joint = self._joint_runner()
        if joint is not None:
            raw, q = joint(aligned)
            return self.combine(q, raw)
        return self.combine(self.regressor.score(aligned), self.embedder.embed_raw(aligned))

    def __repr__(self) -> str:
        return (f"NormFusionScorer(name={self.name!r}, regressor={self.regressor_name!r}, "
                f"weight={self.weight})")


__all__ = ["CONSTANTS_FILE", "FUSABLE", "NormFusionScorer", "fold_norm_fusion", "fuse_free_head",
           "fusion_constants", "load_constants", "write_constants"]
