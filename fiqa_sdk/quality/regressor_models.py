"""Distilled regressors as files and as groups: weight files (a safetensors file with the head
and the backbone tensors training changed, plus a JSON sidecar), the seed ensemble
(:class:`RegressorEnsemble`, one shared frozen stem) and how a regressor splits into that stem
and its tail (:func:`split_regressor`). The scorers that run them: :mod:`fiqa_sdk.quality.ediffiqa`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .._paths import WEIGHTS_DIR
from .._weights import read_sidecar, sidecar_path, write_sidecar
from ..errors import InvalidArgumentError, WeightsError
from .regressor_nets import QualityRegressor, build_backbone

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


def save_regressor(model: QualityRegressor, path: str | Path, meta: dict,
                   base_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the head and every backbone tensor that differs from ``base_state`` (all of them
    if None) to ``path`` (safetensors) and ``meta`` + the file's sha256 to its ``.json``."""
    from safetensors.torch import save_file

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
    write_sidecar(path, meta)
    return path


def load_regressor(weights: str | Path, verify: bool = True, backbone: nn.Module | None = None
                   ) -> tuple[QualityRegressor | RegressorEnsemble, dict]:
    """A :class:`QualityRegressor` (or, for an ensemble file from :func:`save_ensemble`, a
    :class:`RegressorEnsemble`) from a safetensors file and its JSON sidecar (``backbone``:
    the base module of a regressor distilled on a user-supplied backbone, see
    :func:`build_backbone`; it is modified in place)."""
    from safetensors.torch import load_file

    path = Path(weights).expanduser()
    meta = read_sidecar(path, verify=verify, what="regressor weights")
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
            if not same_weights(ref, nn.Sequential(*m.backbone.blocks[:cut])):
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
    write_sidecar(path, out)
    return path


def _load_ensemble(path: Path, meta: dict) -> RegressorEnsemble:
    from safetensors.torch import load_file

    spec = meta["ensemble"]
    members_meta = meta.get("members") or []
    k = int(spec.get("members", 0))
    if k < 2 or len(members_meta) != k:
        raise WeightsError(f"{sidecar_path(path).name}: an ensemble sidecar needs 'members' "
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
                           f"{sidecar_path(path).name}: {str(exc).splitlines()[0]}") from exc
    if unexpected:
        raise WeightsError(f"regressor weights {path} hold tensors the backbone does not have: "
                           f"{unexpected[:3]}")


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules hold the same tensors under the same names (on any device)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def split_regressor(model: nn.Module, cut: int) -> tuple[nn.Module, Any] | None:
    """``(stem, tail)`` of a MobileFaceNet regressor or ensemble cut before block ``cut``
    (e.g. to run one frozen stem for several regressors, as the research harness does):
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
