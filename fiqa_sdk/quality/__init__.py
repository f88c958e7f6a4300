"""Face image quality scorers, created by name: ``create_scorer("flip-consistency")``."""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .base import Scorer

SCORERS: Registry[Scorer] = Registry("scorer")


def _lazy(module: str, cls: str):
    def factory(**kw: Any) -> Scorer:
        import importlib

        return getattr(importlib.import_module(module, __name__), cls)(**kw)

    return factory


# Each entry's card says what the scorer needs and offers; QualityGate, the pipeline, the CLI
# and the benchmarks read it instead of lists of names (docs/architecture.md, "Scorer cards"):
#   embedder   "shared": takes ``embedder=`` (a gate gives it its own 112x112 ArcFace model);
#              "own": otherwise builds an ArcFace model of its own (onnxruntime)
#   device     "torch": takes ``device=`` as asked ("auto" resolved by torch);
#              "onnxruntime": takes the resolved device for the embedder it builds
#   weights    files shipped in fiqa_sdk/weights (their sha256 is in the .json sidecar)
#   precisions ``precision=`` values it accepts
#   fr_model   the FR model it is tied to (same-model vs cross-model evaluation)
#   score      what the number means (range and units); higher is always better quality
#   kind       "baseline", "teacher" (DifFIQA), "regressor" (distilled: ONNX export, int8),
#              "fusion" (a regressor fused with the embedding norm)
#   paper, licence
_BASELINE = {"kind": "baseline", "licence": "MIT (fiqa-sdk)"}
_ARC = {"kind": "baseline", "fr_model": "arcface:w600k_mbf", "embedder": "shared",
        "device": "onnxruntime",
        "licence": "MIT (fiqa-sdk); ArcFace w600k_mbf weights: insightface's non-commercial terms"}
for _name, _cls, _doc, _card in [
    ("random", "RandomScorer", "seeded pseudo-random score (the EDC floor)",
     {**_BASELINE, "score": "[0, 1), a seeded hash of the crop's pixels"}),
    ("det-score", "DetScoreScorer", "detector confidence",
     {**_BASELINE, "score": "[0, 1], the detector's confidence", "needs_faces": True}),
    ("inter-eye", "InterEyeScorer", "inter-eye distance in source pixels",
     {**_BASELINE, "score": "pixels (>= 0) in the source image", "needs_faces": True}),
    ("face-area", "FaceAreaScorer", "bounding-box area in source pixels",
     {**_BASELINE, "score": "square pixels (>= 0) in the source image", "needs_faces": True}),
    ("sharpness", "SharpnessScorer", "variance of the Laplacian of the grey crop",
     {**_BASELINE, "score": ">= 0, variance of the Laplacian (grey levels squared)"}),
    ("embedding-norm", "EmbeddingNormScorer", "norm of the un-normalised FR embedding",
     {**_ARC, "score": "> 0, the L2 norm of the raw embedding (about 10-30 for ArcFace)",
      "paper": "MagFace (Meng et al., CVPR 2021) for the norm as quality"}),
    ("flip-consistency", "FlipConsistencyScorer", "cosine of the embeddings of crop and mirror",
     {**_ARC, "score": "[-1, 1], cosine similarity"}),
]:
    SCORERS.register(_name, _doc, **_card)(_lazy(".baselines", _cls))

_PAPER_DIFFIQA = "Babnik et al., DifFIQA, IJCB 2023"
_PAPER_EDIFFIQA = "Babnik et al., eDifFIQA, IEEE T-BIOM 2024"
SCORERS.register("diffiqa", "DifFIQA: FR-embedding stability under DDPM noising + restoration "
                 "(weights= a trained denoiser)", kind="teacher", embedder="shared", device="torch",
                 weights=("diffiqa_unet.safetensors",), fr_model="arcface:w600k_mbf",
                 score="[-1, 1], mean cosine similarity of embeddings (eq. 7)",
                 paper=_PAPER_DIFFIQA, licence="MIT (fiqa-sdk, weights trained by the project)"
                 )(_lazy(".diffiqa", "DifFIQAScorer"))
_REG = {"kind": "regressor", "precisions": ("auto", "fp32", "int8"), "device": "torch",
        "fr_model": "arcface:w600k_mbf",
        "licence": "MIT (fiqa-sdk); weights trained by the project from ArcFace w600k_mbf, whose "
                   "weights are insightface's (non-commercial research use)"}
for _name, _cls, _doc, _card in [
    ("ediffiqa", "EDifFIQAScorer", "eDifFIQA: DifFIQA distilled with label optimization into a "
     "one-pass MobileFaceNet regressor (shipped weights or weights=)",
     {"weights": ("ediffiqa_mbf_x3.safetensors", "ediffiqa_mbf_x3.int8.onnx"),
      "score": "the regressed label (z-scored DifFIQA quality, about -3 to 3)",
      "paper": _PAPER_EDIFFIQA}),
    ("ediffiqa-free", "EDifFIQAFreeScorer", "eDifFIQA head on the frozen ArcFace embedding "
     "(quality at the cost of an MLP when the gate embeds with the same model)",
     {"weights": ("ediffiqa_free_mbf.safetensors",), "reads_embedding": True,
      "score": "z-score units: equal-weight fusion of the head's output and log ||e|| "
               "(0 = a typical training face)",
      "paper": _PAPER_EDIFFIQA + " (the frozen-backbone variant)"}),
    ("diffiqa-r", "DifFIQARScorer", "DifFIQA(R): MobileFaceNet + linear head regressed on raw "
     "DifFIQA labels (the papers' distillation baseline)",
     {"weights": ("diffiqa_r_mbf.safetensors",),
      "score": "the regressed DifFIQA quality (about 0.5-1)", "paper": _PAPER_DIFFIQA}),
]:
    SCORERS.register(_name, _doc, **_REG, **_card)(_lazy(".ediffiqa", _cls))


def _fusion(regressor: str):
    def factory(**kw: Any) -> Scorer:
        from .fusion import NormFusionScorer

        if "regressor" in kw:
            from ..errors import InvalidArgumentError

            raise InvalidArgumentError(f"{regressor}+norm fixes its regressor; for another one "
                                       "use fiqa_sdk.quality.fusion.NormFusionScorer(regressor=...)")
        return NormFusionScorer(regressor, **kw)

    return factory


for _reg in ("diffiqa-r", "ediffiqa"):  # fiqa_sdk.quality.fusion.FUSABLE
    _of = SCORERS.card(_reg)  # the fusion needs the regressor's weights (fp32) and the constants
    SCORERS.register(
        f"{_reg}+norm", f"{_reg} fused with the ArcFace embedding norm (z-score sum rule, equal "
        "weights, constants from the training faces)",
        **{**_REG, "kind": "fusion"}, embedder="shared",
        weights=(_of["weights"][0], "norm_fusion.json"),
        score="z-score units: 0 = a typical training face, about -6 to 3",
        paper=f"{_of['paper']} + the norm (MagFace); fusion: fiqa-sdk (docs/benchmarks.md, "
              "dev benchmark)",
    )(_fusion(_reg))


def scorer_cards() -> dict[str, dict[str, Any]]:
    """Every scorer's card (:meth:`Registry.cards`), each shipped weights file named with the
    first 16 hex digits of its sha256 (from its ``.json`` sidecar, or of the file itself)."""
    from .._paths import WEIGHTS_DIR
    from .._weights import read_sidecar, sha256_file

    out = SCORERS.cards()
    for card in out.values():
        files = []
        for f in card.get("weights", ()):
            path = WEIGHTS_DIR / f
            if not path.is_file():
                files.append(f"{f} (missing)")
                continue
            digest = None
            if path.suffix != ".json":
                digest = read_sidecar(path, verify=False, missing_ok=True).get("sha256")
            files.append(f"{f} (sha256 {(digest or sha256_file(path))[:16]})")
        if files:
            card["weights"] = tuple(files)
    return out


def create_scorer(name: str | Scorer = "flip-consistency", /, **kwargs: Any) -> Scorer:
    """A scorer by registry name (keyword arguments go to its constructor), or pass one through.

    Note that the default name here is ``"flip-consistency"``, while the gate's default scorer
    is :data:`fiqa_sdk.gate.DEFAULT_SCORER`.

    Parameters
    ----------
    name : str or Scorer
        A registry name (:func:`list_scorers`; ``fiqa list`` describes each) or a
        :class:`Scorer`, returned as is.
    **kwargs
        Constructor arguments of the named scorer (e.g. ``embedder=`` for
        ``"embedding-norm"``, ``weights=`` for ``"diffiqa"``; the regressors take
        ``backend=``, ``threads=`` and ``precision=``).

    Returns
    -------
    Scorer

    Raises
    ------
    UnknownBackendError
        An unknown name (the message lists the registered ones).
    InvalidTypeError
        ``name`` is neither a string nor a Scorer.
    WeightsError
        The scorer's weights are missing or fail their checksum.

    Examples
    --------
    >>> import numpy as np
    >>> import fiqa_sdk as fq
    >>> scorer = fq.create_scorer("sharpness")  # doctest: +SKIP
    >>> scorer.score(np.zeros((2, 112, 112, 3), np.uint8)).shape  # doctest: +SKIP
    (2,)
    """
    if isinstance(name, Scorer):
        return name
    return SCORERS.create(name, **kwargs)


def scorers_of_kind(*kinds: str) -> tuple[str, ...]:
    """Names of the registered scorers whose card's ``kind`` is one of ``kinds`` (``"baseline"``,
    ``"teacher"``, ``"regressor"``, ``"fusion"``), in registration order."""
    return tuple(n for n in SCORERS.registered() if SCORERS.card(n).get("kind") in kinds)


def list_scorers() -> list[str]:
    """Names of the registered quality scorers.

    Returns
    -------
    list of str

    Examples
    --------
    >>> import fiqa_sdk as fq
    >>> "diffiqa-r+norm" in fq.list_scorers()
    True
    """
    return SCORERS.names()


__all__ = ["Scorer", "SCORERS", "create_scorer", "list_scorers", "scorer_cards", "scorers_of_kind"]
