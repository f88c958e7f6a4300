"""The training API's configs and methods (fiqa_sdk.train.config, fiqa_sdk.train.methods):
defaults equal to the flat keywords', validation, dict round trips (also of the shipped
sidecars' records), the method registry, a user-registered method, and results unchanged by
the redesign (golden values recorded with the code before it)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk.train import (METHODS, TRAINING_METHODS, DataConfig, DifFIQARMethod, DistillConfig,
                            EDifFIQAFreeMethod, EDifFIQAMethod, FreeHeadConfig, LabelConfig,
                            OptimConfig,
                            TeacherConfig, TrainingConfig, TrainingMethod, get_method,
                            train_ediffiqa, training_config)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

WEIGHTS = Path(fq.__file__).resolve().parent / "weights"


# -- defaults --------------------------------------------------------------------------------
def test_defaults_are_the_flat_keywords_defaults():
    assert training_config() == TrainingConfig()
    sig = inspect.signature(train_ediffiqa).parameters
    cfg = TrainingConfig()
    flat = {**cfg.distill.to_dict(), **{f"teacher_{k}": v for k, v in cfg.teacher.to_dict().items()},
            **cfg.data.to_dict()}
    for name, param in sig.items():
        if name in flat:
            assert param.default == flat[name], name
    # the recipe as shipped (docs/ediffiqa.md)
    assert DistillConfig().to_dict() == {
        "method": "ediffiqa", "eps": 0.5, "theta": 0.5, "p": 0.2, "min_count": 3, "cut": 15,
        "epochs": 8, "batch_size": 64, "lr_head": 1e-3, "lr_backbone": 1e-4, "grad_clip": 5.0,
        "hflip": True, "val_fraction": 0.1, "seed": 0, "split_seed": None}
    assert TeacherConfig() == TeacherConfig(weights=None, t=5, n=None, fast=False, seed=0)
    assert DataConfig() == DataConfig(limit=None, degraded_copies=0, degrade_seed=1)


def test_flat_keywords_of_the_earlier_distill_config():
    cfg = DistillConfig(method="diffiqa-r", epochs=3, batch_size=8, min_count=1, p=0.5, seed=4)
    assert cfg.optim == OptimConfig(epochs=3, batch_size=8, seed=4)
    assert cfg.labels == LabelConfig(p=0.5, min_count=1)
    assert (cfg.epochs, cfg.batch_size, cfg.seed, cfg.p, cfg.min_count, cfg.eps) == (3, 8, 4, 0.5, 1, 0.5)
    assert cfg == DistillConfig("diffiqa-r", labels=LabelConfig(p=0.5, min_count=1),
                                optim=OptimConfig(epochs=3, batch_size=8, seed=4))
    with pytest.raises(fq.InvalidArgumentError, match="not both"):
        DistillConfig(eps=1.0, labels=LabelConfig())
    with pytest.raises(fq.InvalidArgumentError, match="unknown options"):
        DistillConfig(epoch=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.theta = 0.1  # type: ignore[misc]
    assert dataclasses.replace(cfg, theta=0.25).theta == 0.25


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("build, match", [
    (lambda: LabelConfig(eps=-0.1), "eps="), (lambda: LabelConfig(p=0.0), "p="),
    (lambda: LabelConfig(p=1.5), "p="), (lambda: LabelConfig(min_count=0), "min_count="),
    (lambda: LabelConfig(eps=float("nan")), "eps="),
    (lambda: OptimConfig(epochs=0), "epochs="), (lambda: OptimConfig(batch_size=0), "batch_size="),
    (lambda: OptimConfig(lr_head=0.0), "lr_head="), (lambda: OptimConfig(grad_clip=-1), "grad_clip="),
    (lambda: OptimConfig(hflip=1), "hflip="), (lambda: OptimConfig(seed=1.5), "seed="),
    (lambda: OptimConfig(seed=True), "seed="),
    (lambda: DistillConfig(method="ediffiqa-xl"), "method must be one of"),
    (lambda: DistillConfig(theta=1.5), "theta="), (lambda: DistillConfig(cut=-1), "cut="),
    (lambda: DistillConfig(val_fraction=1.0), "val_fraction="),
    (lambda: DistillConfig(split_seed=0.5), "split_seed="),
    (lambda: DistillConfig(split_seed=True), "split_seed="),
    (lambda: DistillConfig(labels={"eps": 1}), "labels must be a LabelConfig"),
    (lambda: TeacherConfig(t=0), "t="), (lambda: TeacherConfig(n=0), "n="),
    (lambda: TeacherConfig(fast="yes"), "fast="), (lambda: TeacherConfig(weights=3), "weights="),
    (lambda: DataConfig(degraded_copies=-1), "degraded_copies="),
    (lambda: DataConfig(degraded_copies=0.5), "degraded_copies="),
    (lambda: DataConfig(degrade_seed="1"), "degrade_seed="), (lambda: DataConfig(limit=0), "limit="),
    (lambda: TrainingConfig(distill=LabelConfig()), "distill must be a DistillConfig"),
    (lambda: FreeHeadConfig(epochs=0), "epochs="), (lambda: FreeHeadConfig(label_scorer=""), "label_scorer="),
    (lambda: FreeHeadConfig(weight_decay=-1.0), "weight_decay="),
])
def test_bad_values_raise_invalid_argument(build, match):
    with pytest.raises(fq.InvalidArgumentError, match=match):
        build()


def test_numpy_integers_are_accepted_and_stored_as_int():
    cfg = OptimConfig(epochs=np.int64(2), seed=np.int32(5))
    assert type(cfg.epochs) is int and type(cfg.seed) is int
    assert json.dumps(cfg.to_dict())


# -- dict round trips -----------------------------------------------------------------------
@pytest.mark.parametrize("obj", [
    LabelConfig(eps=1.0, p=0.5, min_count=1), OptimConfig(epochs=2, hflip=False, grad_clip=0.0),
    DistillConfig("ediffiqa-free", theta=0.0, cut=10, val_fraction=0.0, split_seed=3, eps=1),
    TeacherConfig(weights="runs/ddpm/diffiqa_unet.safetensors", t=7, n=1, fast=True, seed=2),
    DataConfig(limit=100, degraded_copies=2, degrade_seed=5),
    FreeHeadConfig(label_scorer="ediffiqa", epochs=3, lr=1e-2, hidden=16, weight_decay=0.0, seed=1),
    TrainingConfig(DistillConfig("diffiqa-r", epochs=2), TeacherConfig(n=1), DataConfig(limit=8)),
])
def test_to_dict_from_dict_round_trip(obj):
    data = json.loads(json.dumps(obj.to_dict()))  # through JSON, as in a sidecar
    assert type(obj).from_dict(data) == obj
    with pytest.raises(fq.InvalidArgumentError, match="unknown"):
        type(obj).from_dict({**data, "bogus": 1})


def test_nested_distill_dict_and_partial_training_dict():
    cfg = DistillConfig("diffiqa-r", labels=LabelConfig(eps=1.0), optim=OptimConfig(epochs=2))
    assert DistillConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    assert TrainingConfig.from_dict({"teacher": {"n": 1}}) == TrainingConfig(teacher=TeacherConfig(n=1))
    with pytest.raises(fq.InvalidArgumentError, match="needs a dict"):
        DistillConfig.from_dict([1, 2])


def test_the_shipped_sidecars_config_records_read_back():
    """The ``config`` record of every shipped regressor sidecar (written by the flat
    DistillConfig of earlier versions) reads back into a DistillConfig and writes the same."""
    records = []
    for name in ("ediffiqa_mbf_x3.json", "diffiqa_r_mbf.json"):
        path = WEIGHTS / name
        if not path.is_file():
            continue
        meta = json.loads(path.read_text())
        records += [m["config"] for m in meta.get("members", [])] + (
            [meta["config"]] if "config" in meta else [])
    if not records:
        pytest.skip("no shipped regressor sidecars")
    for rec in records:  # records older than split_seed lack it: it takes its default
        out = DistillConfig.from_dict(rec).to_dict()
        assert {k: out[k] for k in rec} == rec and set(out) - set(rec) <= {"split_seed"}


# -- methods -----------------------------------------------------------------------------------
def test_the_registered_methods():
    assert METHODS == ("ediffiqa", "ediffiqa-free", "diffiqa-r")
    assert set(METHODS) <= set(TRAINING_METHODS.names())
    e, f, r = (get_method(m) for m in METHODS)
    assert isinstance(e, EDifFIQAMethod) and isinstance(f, EDifFIQAFreeMethod)
    assert isinstance(r, DifFIQARMethod)
    assert (e.head, f.head, r.head) == ("mlp", "mlp", "linear")
    assert (e.frozen_backbone, f.frozen_backbone, r.frozen_backbone) == (False, True, False)
    assert (e.supports_ensemble, f.supports_ensemble, r.supports_ensemble) == (True, False, True)
    assert (e.weights_stem, f.weights_stem, r.weights_stem) == (
        "ediffiqa_mbf", "ediffiqa_free_mbf", "diffiqa_r_mbf")
    cfg = DistillConfig(theta=0.3)
    assert [get_method(m).consistency_weight(cfg) for m in METHODS] == [0.3, 0.0, 0.0]
    assert get_method(r) is r
    with pytest.raises(fq.InvalidArgumentError, match="method must be one of ediffiqa, "):
        get_method("nope")
    with pytest.raises(fq.InvalidArgumentError, match="method must be one of"):
        get_method(None)


def test_method_targets():
    rng = np.random.default_rng(1)
    q = rng.random(12)
    emb = rng.normal(size=(12, 8))
    ids = np.arange(12) // 4
    raw, stats = get_method("diffiqa-r").targets(q, emb, ids, DistillConfig("diffiqa-r"))
    assert raw is q and stats == {}
    cfg = DistillConfig(labels=LabelConfig(eps=1.0, p=0.5, min_count=2))
    opt, stats = get_method("ediffiqa").targets(q, emb, ids, cfg)
    from fiqa_sdk.train.labels import centre_cosines, class_centres, optimize_labels

    cos = centre_cosines(emb, ids, class_centres(emb, ids, q, p=0.5, min_count=2))
    np.testing.assert_array_equal(opt, optimize_labels(q, cos, 1.0))
    assert stats["centres"] == len(class_centres(emb, ids, q, p=0.5, min_count=2))
    assert stats["no_centre_faces"] == int(np.isnan(opt).sum())


# -- results unchanged ----------------------------------------------------------------------
def _tiny_problem():
    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.embed.base import run_torch_module

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (16, 112, 112, 3), dtype=np.uint8)
    ids = np.arange(16) // 4
    labels = rng.random(16)
    bb = load_mobilefacenet()
    return (faces, ids, labels, run_torch_module(bb, faces).numpy(),
            run_torch_module(bb, faces, flip=True).numpy())


#: distill() on :func:`_tiny_problem` with ``DistillConfig(method=M, epochs=2, batch_size=8,
#: val_fraction=0.25, min_count=1, p=0.5, seed=3)``, ``raw_target=True``: per-epoch losses,
#: sum of |head tensors|, sum of |all saved tensors|, saved tensors, trainable parameters,
#: recorded with the code before the config / method redesign (commit 3f87b97; its weights
#: files had the same sha256 as the redesigned code's on the machine that recorded them).
GOLDEN = {
    "ediffiqa": ([0.5146998018026352, 0.5254750847816467], 11637.818265466489,
                 50532.839517836765, 30, 2567809),
    "ediffiqa-free": ([0.7385394722223282, 0.7666345089673996], 11631.754406661703,
                      11631.754406661703, 4, 526337),
    "diffiqa-r": ([1.097482055425644, 1.130087971687317], 10.817769426575978,
                  38905.248633840114, 28, 2041985),
}


def test_same_seed_and_arguments_give_the_same_weights_as_before(tmp_path):
    from safetensors.numpy import load_file

    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.train.distill import distill

    faces, ids, labels, e, ef = _tiny_problem()
    for method, (losses, head_sum, total_sum, n_tensors, trainable) in GOLDEN.items():
        cfg = DistillConfig(method=method, epochs=2, batch_size=8, val_fraction=0.25, min_count=1,
                            p=0.5, seed=3)
        s = distill(faces, ids, labels, e, ef, load_mobilefacenet(), tmp_path / method, cfg,
                    raw_target=True)
        t = load_file(s["weights"])
        np.testing.assert_allclose([h["loss"] for h in s["history"]], losses, rtol=1e-5)
        np.testing.assert_allclose(
            sum(np.abs(v.astype(np.float64)).sum() for k, v in t.items() if k.startswith("head.")),
            head_sum, rtol=1e-6)
        np.testing.assert_allclose(sum(np.abs(v.astype(np.float64)).sum() for v in t.values()),
                                   total_sum, rtol=1e-6)
        assert len(t) == n_tensors and s["trainable_params"] == trainable
        meta = json.loads(Path(s["weights"]).with_suffix(".json").read_text())
        assert meta["config"] == cfg.to_dict() and meta["method"] == method
        assert meta["backbone"]["frozen"] is get_method(method).frozen_backbone
        assert meta["head"]["kind"] == get_method(method).head
        assert Path(s["weights"]).name == f"{get_method(method).weights_stem}.safetensors"


def test_free_head_config_is_the_keywords():
    from fiqa_sdk.train.free_head import train_head

    rng = np.random.default_rng(0)
    e = rng.normal(size=(80, 512)).astype(np.float32)
    feats = {"ids": np.arange(40) // 4, "emb_orig": e[:40], "emb_deg": e[40:],
             "label_orig": rng.random(40), "label_deg": rng.random(40)}
    a, hist_a, _ = train_head(feats, epochs=2, hidden=8, seed=1)
    b, hist_b, _ = train_head(feats, config=FreeHeadConfig(epochs=2, hidden=8, seed=1))
    assert hist_a == hist_b
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert np.array_equal(v.numpy(), w.numpy()), k
    with pytest.raises(fq.InvalidArgumentError, match="epochs="):
        train_head(feats, epochs=0)


# -- a user's method --------------------------------------------------------------------------
class RawLabelsMLP(TrainingMethod):
    """DifFIQA(R)'s raw labels with eDifFIQA's MLP head and consistency loss (the worked
    example of docs/architecture.md)."""

    name = "test-raw-mlp"
    scorer = "diffiqa-r"
    description = "raw labels, MLP head, consistency loss"
    weights_stem = "raw_mlp_mbf"
    head = "mlp"


def test_a_registered_method_trains_and_loads(tmp_path):
    from fiqa_sdk.nets.mobilefacenet import load_mobilefacenet
    from fiqa_sdk.train.distill import distill

    TRAINING_METHODS.register(RawLabelsMLP.name, RawLabelsMLP.description)(RawLabelsMLP)
    try:
        faces, ids, labels, e, ef = _tiny_problem()
        cfg = DistillConfig(RawLabelsMLP.name, epochs=1, batch_size=8, val_fraction=0.0)
        s = distill(faces, ids, labels, e, ef, load_mobilefacenet(), tmp_path, cfg, raw_target=True,
                    meta={"backbone": {"arch": "mobilefacenet", "base": "w600k_mbf.onnx"}})
        assert Path(s["weights"]).name == "raw_mlp_mbf.safetensors"
        assert s["labels"]["train_used"] == 16 and "centres" not in s["labels"]
        meta = json.loads(Path(s["weights"]).with_suffix(".json").read_text())
        assert meta["method"] == RawLabelsMLP.name and meta["head"]["kind"] == "mlp"
        q = fq.create_scorer(get_method(RawLabelsMLP.name).scorer_name,
                             weights=s["weights"]).score(faces[:3])
        assert q.shape == (3,) and np.isfinite(q).all()
        from fiqa_sdk.train.methods import method_names

        assert method_names()[-1] == RawLabelsMLP.name
    finally:
        TRAINING_METHODS._factories.pop(RawLabelsMLP.name, None)
        TRAINING_METHODS._docs.pop(RawLabelsMLP.name, None)
        TRAINING_METHODS._cards.pop(RawLabelsMLP.name, None)
    assert RawLabelsMLP.name not in TRAINING_METHODS


def test_cli_options_out_of_range_exit_1_naming_the_field(tmp_path, capsys):
    """``fiqa train`` builds its TrainingConfig before it reads any data: a bad option is one
    error line naming the field, exit 1."""
    from fiqa_sdk.cli import main

    for opt, field_name in ((["--eps", "-1"], "eps="), (["--theta", "2"], "theta="),
                            (["--n", "0"], "n="), (["--degraded-copies", "-2"], "degraded_copies=")):
        rc = main(["train", "diffiqa-r", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *opt])
        assert rc == 1 and field_name in capsys.readouterr().err, opt
    assert not (tmp_path / "o").exists()
