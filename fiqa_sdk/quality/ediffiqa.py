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

import copy
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._paths import WEIGHTS_DIR
from .._torch import torch_device
from .._weights import verify_file
from ..errors import InvalidArgumentError, WeightsError
from ..types import Face
from .base import Scorer, model_digest

#: Shipped weights of each registered regressor (absent until trained and shipped).
SHIPPED = {
    "ediffiqa": WEIGHTS_DIR / "ediffiqa_mbf_x3.safetensors",
    "ediffiqa-free": WEIGHTS_DIR / "ediffiqa_free_mbf.safetensors",
    "diffiqa-r": WEIGHTS_DIR / "diffiqa_r_mbf.safetensors",
}


def shipped_weights(method: str) -> Path | None:
    """The shipped weights file of ``method`` if it is in the package, else None."""
    p = SHIPPED.get(method)
    return p if p is not None and p.is_file() else None


class NormResidualHead(nn.Module):
    """``a * log ||e|| + b + MLP(e / ||e||)`` (``ediffiqa-free`` v2, :mod:`fiqa_sdk.train.free_head`):
    the embedding norm as an explicit input, so the head can always reproduce the
    ``embedding-norm`` ranking (its MLP's last layer starts at zero), plus a correction from the
    embedding's direction."""

    def __init__(self, dim: int = 512, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)
        self.scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        n = torch.linalg.vector_norm(e, dim=-1, keepdim=True).clamp_min(1e-6)
        return self.scale * torch.log(n) + self.bias + self.mlp(e / n)


def make_head(kind: str, dim: int = 512, hidden: int = 1024) -> nn.Module:
    """``"mlp"``: Linear(dim, hidden) -> GELU -> Linear(hidden, 1) (eDifFIQA); ``"linear"``:
    Linear(dim, 1) (DifFIQA(R)); ``"norm-mlp"``: :class:`NormResidualHead`."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
    if kind == "linear":
        return nn.Linear(dim, 1)
    if kind == "norm-mlp":
        return NormResidualHead(dim, hidden)
    raise InvalidArgumentError(f"head must be 'mlp', 'linear' or 'norm-mlp', got {kind!r}")


class QualityRegressor(nn.Module):
    """FR backbone + quality head.

    ``forward(x)``: ``x`` ``(N, 3, 112, 112)`` float32 RGB in [-1, 1] -> ``(embedding, quality)``,
    the backbone's raw ``(N, D)`` embedding and the ``(N,)`` quality predicted from it.
    """

    def __init__(self, backbone: nn.Module, head: str = "mlp", dim: int = 512, hidden: int = 1024) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_kind = head
        self.head = make_head(head, dim, hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.backbone(x)
        return e, self.head(e).squeeze(-1)

    def quality(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[1]


def build_backbone(spec: dict, backbone: nn.Module | None = None) -> nn.Module:
    """The backbone described by a sidecar's ``backbone`` entry, with its base weights.

    A regressor distilled on a user-supplied backbone (``arch: "custom"``) needs that backbone
    passed back as ``backbone`` (the module as it was *before* distillation, e.g. a fresh call
    of the same factory); its tensors are checked against the sidecar's ``base_digest``.
    """
    arch = spec.get("arch")
    if backbone is not None:
        if arch != "custom":
            raise WeightsError(f"these weights were distilled on the {arch!r} backbone, which "
                               "the package builds itself: do not pass backbone=")
        want, got = spec.get("base_digest"), model_digest(backbone)
        if want and got != want:
            raise WeightsError(f"the backbone passed is not the one these weights were distilled "
                               f"from (tensor digest {got}, expected {want}; factory "
                               f"{spec.get('factory', '?')})")
        return backbone
    if arch == "custom":
        raise WeightsError(f"these weights were distilled on a user-supplied backbone (factory "
                           f"{spec.get('factory', '?')}): pass that module as backbone=")
    if arch == "mobilefacenet":
        from ..embed.arcface import default_model_path
        from ..nets.mobilefacenet import load_mobilefacenet

        base = spec.get("base", "w600k_mbf.onnx")
        if base != "w600k_mbf.onnx":
            raise WeightsError(f"unknown base model {base!r} for the mobilefacenet backbone")
        return load_mobilefacenet(default_model_path(), verify=True)
    raise WeightsError(f"unknown backbone architecture {arch!r}")


def save_regressor(model: QualityRegressor, path: str | Path, meta: dict,
                   base_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the head and every backbone tensor that differs from ``base_state`` (all of them
    if None) to ``path`` (safetensors) and ``meta`` + the file's sha256 to its ``.json``."""
    from safetensors.torch import save_file

    from .._weights import sha256_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
    changed = []
    for k, v in model.backbone.state_dict().items():
        if base_state is None or k not in base_state or not torch.equal(base_state[k].cpu(), v.cpu()):
            tensors[f"backbone.{k}"] = v.detach().cpu().contiguous()
            changed.append(k)
    save_file(tensors, str(path))
    meta = dict(meta)
    meta["head"] = {"kind": model.head_kind, **meta.get("head", {})}
    meta["backbone"] = {**meta.get("backbone", {}), "stored_tensors": len(changed)}
    meta["sha256"] = sha256_file(path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_regressor(weights: str | Path, verify: bool = True, backbone: nn.Module | None = None
                   ) -> tuple[QualityRegressor | RegressorEnsemble, dict]:
    """A :class:`QualityRegressor` (or, for an ensemble file from :func:`save_ensemble`, a
    :class:`RegressorEnsemble`) from a safetensors file and its JSON sidecar (``backbone``:
    the base module of a regressor distilled on a user-supplied backbone, see
    :func:`build_backbone`; it is modified in place)."""
    from safetensors.torch import load_file

    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"regressor weights file not found: {path}")
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise WeightsError(f"regressor weights {path} have no sidecar {sidecar.name} "
                           "(architecture and sha256)")
    meta = json.loads(sidecar.read_text())
    if verify:
        if not meta.get("sha256"):
            raise WeightsError(f"{sidecar} has no sha256; pass verify=False to load it anyway")
        verify_file(path, meta["sha256"])
    if meta.get("ensemble"):
        if backbone is not None:
            raise WeightsError(f"{path.name} is an ensemble of MobileFaceNet regressors: do not "
                               "pass backbone=")
        return _load_ensemble(path, meta).eval(), meta
    head = meta.get("head", {})
    model = QualityRegressor(build_backbone(meta.get("backbone", {}), backbone),
                             head=head.get("kind", "mlp"),
                             dim=int(head.get("dim", 512)), hidden=int(head.get("hidden", 1024)))
    _load_member_state(model, load_file(str(path)), path)
    return model.eval(), meta


class RegressorEnsemble(nn.Module):
    """Several regressors distilled from one base backbone with the same ``cut`` (e.g. training
    seeds of one recipe) as one module: the frozen stem ``blocks[:cut]``, which all members
    share, runs once; each member's fine-tuned tail ``blocks[cut:]`` and head run on its output.

    ``forward(x)`` -> ``(embedding, quality)``: the mean of the members' raw embeddings and the
    mean of their qualities (a seed ensemble; docs/benchmarks.md "Seeds and a seed ensemble").
    :meth:`member_qualities` gives each member's score. The members are not modified: their
    blocks and heads are shared, not copied.
    """

    def __init__(self, members: Sequence[QualityRegressor], cut: int) -> None:
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise InvalidArgumentError(f"an ensemble needs at least 2 members, got {len(members)}")
        cut = int(cut)
        for i, m in enumerate(members):
            if not isinstance(m, QualityRegressor) or not hasattr(m.backbone, "blocks"):
                raise InvalidArgumentError(f"ensemble member {i} is not a MobileFaceNet "
                                           "QualityRegressor")
            if not 0 < cut < len(m.backbone.blocks):
                raise InvalidArgumentError(f"cut must be in [1, {len(m.backbone.blocks) - 1}], "
                                           f"got {cut}")
        ref = nn.Sequential(*members[0].backbone.blocks[:cut])
        for i, m in enumerate(members[1:], 1):
            if not _same_weights(ref, nn.Sequential(*m.backbone.blocks[:cut])):
                raise WeightsError(f"ensemble member {i}'s first {cut} blocks differ from member "
                                   "0's: the members must share the frozen stem")
        self.cut = cut
        self.stem = nn.Sequential(*members[0].backbone.blocks[:cut])
        self.tails = nn.ModuleList(nn.Sequential(*m.backbone.blocks[cut:]) for m in members)
        self.heads = nn.ModuleList(m.head for m in members)

    @classmethod
    def from_files(cls, paths: Sequence[str | Path], verify: bool = True) -> "RegressorEnsemble":
        """The ensemble of single-regressor weights files (``fiqa train ediffiqa`` outputs of one
        recipe), cut where they were trained (their ``config.cut``), without writing a file
        (:func:`save_ensemble` writes one)."""
        return cls.from_regressors([load_regressor(p, verify=verify) for p in paths],
                                   [str(p) for p in paths])

    @classmethod
    def from_regressors(cls, loaded: Sequence[tuple[nn.Module, dict]],
                        names: Sequence[str] | None = None) -> "RegressorEnsemble":
        """The ensemble of regressors already loaded (``(model, sidecar)`` pairs as
        :func:`load_regressor` returns them), cut where they were trained. ``names`` (e.g. the
        files) only label the errors."""
        names = list(names) if names is not None else [f"member {i}" for i in range(len(loaded))]
        for name, (_, meta) in zip(names, loaded):
            if meta.get("ensemble"):
                raise InvalidArgumentError(f"{name} is already an ensemble; give its members")
        cuts = {int(meta.get("config", {}).get("cut", 15)) for _, meta in loaded}
        if len(cuts) > 1:
            raise InvalidArgumentError(f"the members were trained with different cuts {sorted(cuts)}")
        return cls([m for m, _ in loaded], cuts.pop() if cuts else 15)

    def __len__(self) -> int:
        return len(self.heads)

    def _members_from(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        es, qs = [], []
        for tail, head in zip(self.tails, self.heads):
            e = tail(h)
            es.append(e)
            qs.append(head(e).squeeze(-1))
        return torch.stack(es), torch.stack(qs, -1)

    def forward_from(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedding, quality)`` from the stem's output ``h``."""
        es, qs = self._members_from(h)
        return es.mean(0), qs.mean(-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_from(self.stem(x))

    def quality(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[1]

    def member_qualities(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, k)``: each member's quality."""
        return self._members_from(self.stem(x))[1]


def save_ensemble(members: Sequence[str | Path], path: str | Path, meta: dict | None = None,
                  verify: bool = True) -> Path:
    """Bundle regressor weights files (``fiqa train ediffiqa`` outputs of one recipe, e.g.
    several ``--train-seed``) into one ensemble weights file: ``path`` (safetensors) holds
    member ``i``'s stored tensors as ``members.<i>.<name>``; its ``.json`` sidecar keeps each
    member's sidecar (config, labels, history) and source sha256 under ``members``.

    The members must be MobileFaceNet regressors with the same base model, cut, method and
    target model, storing no tensor before the cut (the stem stays the shipped base model's,
    read from ``w600k_mbf.onnx`` at load time, as for one regressor)."""
    from safetensors.torch import load_file, save_file

    from .._weights import sha256_file

    paths = [Path(m).expanduser() for m in members]
    if len(paths) < 2:
        raise InvalidArgumentError(f"an ensemble needs at least 2 members, got {len(paths)}")
    tensors: dict[str, torch.Tensor] = {}
    metas = []
    for i, p in enumerate(paths):
        model, m = load_regressor(p, verify=verify)  # checks sha256 and the architecture
        del model
        if m.get("ensemble"):
            raise InvalidArgumentError(f"{p} is already an ensemble")
        bb = m.get("backbone", {})
        if bb.get("arch") != "mobilefacenet":
            raise InvalidArgumentError(f"{p}: ensembles are built from MobileFaceNet regressors "
                                       f"(backbone {bb.get('arch')!r})")
        cut = int(m.get("config", {}).get("cut", -1))
        for k, v in load_file(str(p)).items():
            if k.startswith("backbone.blocks."):
                block = int(k.split(".")[2])
                if block < cut:
                    raise InvalidArgumentError(f"{p} changes block {block}, before its cut {cut}: "
                                               "its stem is not the base model's")
            tensors[f"members.{i}.{k}"] = v.contiguous()
        metas.append({**m, "source": {"file": p.name, "sha256": m.get("sha256")}})
        metas[-1].pop("sha256", None)
    first = metas[0]
    for i, m in enumerate(metas[1:], 1):
        for key in ("method", "target_model"):
            if m.get(key) != first.get(key):
                raise InvalidArgumentError(f"ensemble member {i} has {key} {m.get(key)!r}, "
                                           f"member 0 {first.get(key)!r}")
        if m["backbone"].get("base_sha256") != first["backbone"].get("base_sha256"):
            raise InvalidArgumentError(f"ensemble member {i} starts from another base model")
        if m["config"].get("cut") != first["config"].get("cut"):
            raise InvalidArgumentError(f"ensemble member {i} has cut {m['config'].get('cut')}, "
                                       f"member 0 {first['config'].get('cut')}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    out = {
        "method": first.get("method"),
        "target_model": first.get("target_model"),
        "backbone": {k: v for k, v in first["backbone"].items() if k != "stored_tensors"}
        | {"stored_tensors": sum(m["backbone"].get("stored_tensors", 0) for m in metas)},
        "head": {"kind": "ensemble", "members": [m.get("head", {}) for m in metas]},
        "ensemble": {"members": len(metas), "cut": int(first["config"]["cut"]), "combine": "mean",
                     "seeds": [m.get("config", {}).get("seed") for m in metas]},
        **(meta or {}),
        "members": metas,
    }
    out["sha256"] = sha256_file(path)
    path.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    return path


def _load_ensemble(path: Path, meta: dict) -> RegressorEnsemble:
    from safetensors.torch import load_file

    spec = meta["ensemble"]
    members_meta = meta.get("members") or []
    k = int(spec.get("members", 0))
    if k < 2 or len(members_meta) != k:
        raise WeightsError(f"{path.with_suffix('.json').name}: an ensemble sidecar needs 'members' "
                           f"with {k} entries (found {len(members_meta)})")
    state = load_file(str(path))
    base = build_backbone(meta.get("backbone", {}))
    models = []
    for i, mm in enumerate(members_meta):
        head = mm.get("head", {})
        model = QualityRegressor(copy.deepcopy(base), head=head.get("kind", "mlp"),
                                 dim=int(head.get("dim", 512)), hidden=int(head.get("hidden", 1024)))
        pre = f"members.{i}."
        _load_member_state(model, {n[len(pre):]: v for n, v in state.items() if n.startswith(pre)},
                           path)
        models.append(model)
    known = tuple(f"members.{i}." for i in range(k))
    extra = [n for n in state if not n.startswith(known)]
    if extra:
        raise WeightsError(f"ensemble weights {path} hold tensors of no member: {extra[:3]}")
    return RegressorEnsemble(models, int(spec.get("cut", 15)))


def _load_member_state(model: QualityRegressor, state: dict[str, torch.Tensor], path: Path) -> None:
    head_state = {k[5:]: v for k, v in state.items() if k.startswith("head.")}
    bb_state = {k[9:]: v for k, v in state.items() if k.startswith("backbone.")}
    try:
        model.head.load_state_dict(head_state, strict=True)
        missing, unexpected = model.backbone.load_state_dict(bb_state, strict=False)
    except RuntimeError as exc:
        raise WeightsError(f"regressor weights {path} do not match the architecture in "
                           f"{path.with_suffix('.json').name}: {str(exc).splitlines()[0]}") from exc
    if unexpected:
        raise WeightsError(f"regressor weights {path} hold tensors the backbone does not have: "
                           f"{unexpected[:3]}")


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules hold the same tensors under the same names (on any device)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _split_at(model: nn.Module, cut: int) -> tuple[nn.Module, Any] | None:
    """``(stem, tail)`` of a MobileFaceNet regressor or ensemble cut before block ``cut``:
    ``stem`` runs ``blocks[:cut]`` and ``tail(h)`` maps its output to the quality. None when the
    model cannot be cut there (another backbone, or an ensemble cut elsewhere)."""
    if isinstance(model, RegressorEnsemble):
        if model.cut != cut:
            return None
        return model.stem, lambda h: model.forward_from(h)[1]
    blocks = getattr(getattr(model, "backbone", None), "blocks", None)
    if blocks is None or not 0 < cut < len(blocks):
        return None
    tail = nn.Sequential(*blocks[cut:])
    return nn.Sequential(*blocks[:cut]), lambda h: model.head(tail(h)).squeeze(-1)


class SharedStem:
    """The frozen front ``blocks[:cut]`` of the base MobileFaceNet, shared by several regressors.

    Regressors distilled with the same ``cut`` differ only after it; scoring one batch with
    several of them (ablations, ``fiqa bench quality`` over many regressors) then runs the stem
    once: the last batch's activations are memoised, keyed by a hash of its pixels.
    """

    def __init__(self, cut: int, device: str = "cpu") -> None:
        from ..embed.arcface import default_model_path
        from ..nets.mobilefacenet import load_mobilefacenet

        self.cut = int(cut)
        self.device = torch_device(device)
        self.stem = load_mobilefacenet(default_model_path()).split(self.cut)[0].to(self.device).eval()
        self._key: bytes | None = None
        self._value: torch.Tensor | None = None

    def matches(self, model: nn.Module) -> bool:
        """Whether ``model`` (a :class:`QualityRegressor` or :class:`RegressorEnsemble`) can be
        cut at this stem's block and its front holds exactly this stem's weights."""
        split = _split_at(model, self.cut)
        return split is not None and _same_weights(self.stem, split[0])

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> torch.Tensor:
        import hashlib

        key = hashlib.blake2b(np.ascontiguousarray(batch).tobytes(), digest_size=16).digest()
        if key != self._key:
            from .._preprocess import to_model_range

            self._value = self.stem(to_model_range(batch).to(self.device))
            self._key = key
        return self._value


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
    shared_stem : SharedStem or None
        Run the frozen front of the backbone through a :class:`SharedStem` (same scores, one
        stem pass for several regressors). Refused if this model's front differs from it.
    name : str or None
        Display name (default: the method), e.g. to tell ablation variants apart.
    backend : {"auto", "torch", "onnxruntime"}
        ``"auto"`` (default): onnxruntime on the CPU, torch on CUDA (and with ``shared_stem``);
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
                 shared_stem: SharedStem | None = None, name: str | None = None,
                 backbone: nn.Module | None = None, backend: str = "auto",
                 precision: str = "auto", calibration: Any = None) -> None:
        from .regressor_onnx import check_backend, check_precision, resolve_backend

        self.name = name or self.method
        backend, threads = check_backend(backend, threads)
        precision = check_precision(precision, backend)
        if calibration is not None and precision not in ("int8", "auto"):
            raise InvalidArgumentError("calibration is only used with precision='int8'")
        if shared_stem is not None:
            if backend == "auto":
                backend = "torch"
            if backend != "torch":
                raise InvalidArgumentError("shared_stem runs the torch model; it cannot be "
                                           f"combined with backend={backend!r}")
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
        self._stem = shared_stem
        self._tail = None
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
        if shared_stem is not None:
            if not shared_stem.matches(self.model):
                own = getattr(self.model, "cut", None) or self.meta.get("config", {}).get("cut")
                raise InvalidArgumentError(f"{self.name} (trained with cut {own}) cannot run on the "
                                 f"shared stem (cut {shared_stem.cut}): its first "
                                 f"{shared_stem.cut} blocks differ from the stem's; score "
                                 "without shared_stem")
            self._tail = _split_at(self.model, shared_stem.cut)[1]

    @torch.inference_mode()
    def _score(self, aligned: np.ndarray, faces: Sequence[Face] | None) -> np.ndarray:
        from .._preprocess import to_model_range

        if self._ort is not None:
            return self._ort.score(aligned, self.batch_size)
        prev = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            out = np.empty(len(aligned))
            for i in range(0, len(aligned), self.batch_size):
                batch = aligned[i : i + self.batch_size]
                if self._stem is not None:
                    q = self._tail(self._stem(batch).to(self.device))
                else:
                    q = self.model.quality(to_model_range(batch).to(self.device))
                out[i : i + len(batch)] = q.float().cpu().numpy()
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
        from ..embed.arcface import ArcFaceEmbedder, default_model_path

        if not self.frozen_backbone or not isinstance(embedder, ArcFaceEmbedder):
            return False
        base = self.meta.get("backbone", {})
        return (base.get("base") == "w600k_mbf.onnx"
                and Path(embedder.model_path).resolve() == default_model_path().resolve())

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
            blob = (aligned[i : i + self.batch_size].astype(np.float32) - 127.5) / 127.5
            out[i : i + len(blob)] = self.session.run(
                ["quality"], {"input": np.ascontiguousarray(blob.transpose(0, 3, 1, 2))})[0]
        return out
