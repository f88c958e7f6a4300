"""``fq.train_ediffiqa`` (the Python API of ``fiqa train ediffiqa|ediffiqa-free|diffiqa-r``):
the two training-set layouts, the whole recipe on a tiny folder, the CLI on top of it, a user's
torch backbone left unmodified, and typed errors for bad input."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
import torch

import fiqa_sdk as fq
from fiqa_sdk.cli import main
from fiqa_sdk.train.data import list_training_images

from conftest import graded_crops  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def face_folder(astronaut, astronaut_face, tmp_path_factory):
    """Three "identities" of four graded astronaut crops each, one sub-folder per identity."""
    import cv2

    root = tmp_path_factory.mktemp("train") / "my_faces"
    for i, person in enumerate(["alice", "bob", "carol"]):
        (root / person).mkdir(parents=True)
        for j, crop in enumerate(graded_crops(astronaut, astronaut_face, 4, period=4, jitter=2.0,
                                              seed=i)):
            cv2.imwrite(str(root / person / f"{j}{'.png' if i == 1 else '.jpg'}"), crop[:, :, ::-1])
    (root / "bob" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_training_set_layouts(face_folder, tmp_path):
    rows, name = list_training_images(face_folder)
    assert [(f, i) for f, _, i in rows][:5] == [("alice/0.jpg", 0), ("alice/1.jpg", 0),
                                                 ("alice/2.jpg", 0), ("alice/3.jpg", 0),
                                                 ("bob/0.png", 1)]
    assert len(rows) == 12 and all(p.is_file() for _, p, _ in rows)
    assert name.startswith("my_faces-") and name.endswith("-aligned")
    # the celeba-subset layout: identities.csv + images/, cache name unchanged
    csv_root = tmp_path / "mine"
    (csv_root / "images").mkdir(parents=True)
    (csv_root / "identities.csv").write_text("file,identity\na.jpg,7\nb.jpg,9\n")
    rows, name = list_training_images(csv_root)
    assert [(f, p, i) for f, p, i in rows] == [("a.jpg", csv_root / "images" / "a.jpg", 7),
                                                ("b.jpg", csv_root / "images" / "b.jpg", 9)]
    assert name == "mine-aligned"


def test_changed_data_gets_a_new_cache_name(face_folder, tmp_path):
    import shutil

    copy = tmp_path / "my_faces"
    shutil.copytree(face_folder, copy)
    _, before = list_training_images(copy)
    assert list_training_images(copy)[1] == before  # deterministic
    os.remove(copy / "carol" / "3.jpg")
    _, after = list_training_images(copy)
    assert after != before


@pytest.mark.parametrize("bad, match", [
    ("missing", "is not a folder"),
    ("empty", "is not a training set"),
    ("lfw", "looks like LFW"),
])
def test_bad_training_folders(tmp_path, bad, match):
    (tmp_path / "empty" / "person").mkdir(parents=True)
    (tmp_path / "empty" / "person" / "readme.txt").write_text("no images")
    (tmp_path / "lfw").mkdir()
    with pytest.raises(fq.InvalidArgumentError, match=match):
        list_training_images(tmp_path / bad)
    with pytest.raises(fq.InvalidArgumentError, match=match):
        fq.train_ediffiqa(tmp_path / bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "ediffiqa-xl"}, "method must be one of"),
    ({"eps": -0.1}, "eps"), ({"theta": 1.5}, "theta"), ({"p": 0.0}, "p="),
    ({"epochs": 0}, "epochs"), ({"min_count": 0}, "min_count"),
    ({"degraded_copies": -1}, "degraded_copies"), ({"degraded_copies": 0.5}, "degraded_copies"),
    ({"degrade_seed": "1"}, "degrade_seed"), ({"split_seed": 0.5}, "split_seed"),
    ({"split_seed": True}, "split_seed"),
])
def test_bad_options(face_folder, tmp_path, kwargs, match):
    with pytest.raises(fq.InvalidArgumentError, match=match):
        fq.train_ediffiqa(face_folder, tmp_path / "out", **kwargs)
    with pytest.raises(fq.InvalidArgumentError, match="folder path or an AlignedFaces"):
        fq.train_ediffiqa(np.zeros((4, 112, 112, 3), np.uint8), tmp_path / "out")


def test_train_ediffiqa_on_a_folder(face_folder, cache, tmp_path):
    """The recipe end to end (1-repeat teacher, 2 epochs) and the scorer it gives."""
    import torch

    logs = []
    threads = torch.get_num_threads()
    result = fq.train_ediffiqa(face_folder, tmp_path / "run", epochs=2, teacher_n=1, min_count=1,
                               threads=threads + 1, cache=cache, log=logs.append)
    assert torch.get_num_threads() == threads  # threads= applied while training only
    assert isinstance(result, fq.TrainedRegressor) and result.method == "ediffiqa"
    assert result.weights == tmp_path / "run" / "ediffiqa_mbf.safetensors"
    assert result.weights.is_file() and result.weights.with_suffix(".json").is_file()
    assert result.aligned.parent == cache and (result.aligned / "faces.npy").is_file()
    assert result.labels["faces"] == 12 and result.labels["identities"] == 3
    assert [h["epoch"] for h in result.history] == [1, 2] and result.final == result.history[-1]
    assert all(math.isfinite(h["loss"]) for h in result.history)
    assert any("aligned faces of 3 identities" in line for line in logs)
    meta = json.loads(result.weights.with_suffix(".json").read_text())
    assert meta["method"] == "ediffiqa" and meta["teacher"]["n"] == 1
    assert meta["config"]["min_count"] == 1 and meta["config"]["epochs"] == 2
    faces = np.load(result.aligned / "faces.npy")
    q = result.create_scorer().score(faces[:4])
    same = fq.create_scorer("ediffiqa", weights=str(result.weights)).score(faces[:4])
    assert q.shape == (4,) and np.isfinite(q).all() and len(set(q.round(6))) > 1
    np.testing.assert_allclose(q, same, atol=1e-6)


def test_degraded_copies(face_folder, cache):
    """Seeded, cached next to the faces, the identities of the originals, a continuum of
    degradation (mix weight a ~ U(0, 1): the larger a, the further from the original), and the
    faces passed are not modified."""
    from fiqa_sdk.train.data import build_aligned_cache, degraded_copies

    aligned = build_aligned_cache(face_folder, cache=cache)
    before = np.array(aligned.faces)
    deg = degraded_copies(aligned, copies=2, seed=5)
    assert deg.path == aligned.path / "degraded-k2-s5-v1" and len(deg) == 24
    assert sorted(f.name for f in deg.path.iterdir()) == ["faces.npy", "index.csv", "meta.json",
                                                          "mix.npy"]  # no temporary files left
    assert deg.files[:2] == [f + "#deg0" for f in aligned.files[:2]]
    assert deg.files[12] == aligned.files[0] + "#deg1"
    assert np.array_equal(deg.identities, np.tile(aligned.identities, 2))
    assert np.array_equal(np.asarray(aligned.faces), before)
    mix = np.load(deg.path / "mix.npy")
    err = np.abs(np.asarray(deg.faces, np.float32) - np.tile(before, (2, 1, 1, 1))).mean((1, 2, 3))
    assert mix.shape == (24,) and 0 <= mix.min() and mix.max() <= 1
    assert np.corrcoef(mix, err)[0, 1] > 0.5  # more mixed in, further from the original
    # reused from the cache; another seed gives other copies (in another folder)
    again = degraded_copies(aligned, copies=2, seed=5)
    assert np.array_equal(np.asarray(again.faces), np.asarray(deg.faces))
    other = degraded_copies(aligned, copies=1, seed=6)
    assert other.path.name == "degraded-k1-s6-v1"
    assert not np.array_equal(np.asarray(other.faces), np.asarray(deg.faces)[:12])
    with pytest.raises(ValueError, match="copies"):
        degraded_copies(aligned, copies=0)


def test_train_with_degraded_copies(face_folder, cache, tmp_path, capsys):
    """``fiqa train labels|ediffiqa --degraded-copies 1``: the copies' labels are cached in
    their own folder, training uses both sets, the held-out EDC only the real faces."""
    rc = main(["train", "labels", "--data", str(face_folder), "--n", "1", "--threads", "1",
               "--cache", str(cache), "--degraded-copies", "1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["total"] == 12 and out["degraded"]["done"] == out["degraded"]["total"] == 12
    assert out["degraded"]["labels"] != out["labels"]
    logs = []
    result = fq.train_ediffiqa(face_folder, tmp_path / "run", epochs=1, teacher_n=1, min_count=1,
                               threads=1, cache=cache, degraded_copies=1, log=logs.append)
    assert result.labels["faces"] == 24 and not any("labels 12/12" in x for x in logs)  # cached
    meta = json.loads(result.weights.with_suffix(".json").read_text())
    assert meta["data"]["faces"] == 12 and meta["data"]["degraded_faces"] == 12
    assert meta["data"]["degraded_copies"] == 1 and meta["data"]["degrade_seed"] == 1
    assert "degrade(x)" in meta["data"]["degraded_recipe"]
    assert main(["train", "labels", "--data", str(face_folder), "--cache", str(cache),
                 "--degraded-copies", "-1"]) == 2
    assert "--degraded-copies must be >= 0" in capsys.readouterr().err


def test_cli_train_uses_the_same_function(face_folder, cache, tmp_path, capsys):
    """``fiqa train diffiqa-r --data FOLDER``: the sub-folder layout, the cached faces and
    labels of the test above, JSON on stdout."""
    rc = main(["train", "diffiqa-r", "--data", str(face_folder), "--out", str(tmp_path / "r"),
               "--epochs", "1", "--n", "1", "--threads", "1", "--cache", str(cache)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["weights"] == str(tmp_path / "r" / "diffiqa_r_mbf.safetensors")
    assert out["labels"]["faces"] == 12 and out["final"]["epoch"] == 1
    assert fq.create_scorer("diffiqa-r", weights=out["weights"]).name == "diffiqa-r"
    rc = main(["train", "diffiqa-r", "--data", str(tmp_path / "nothing"), "--out",
               str(tmp_path / "r2"), "--cache", str(cache)])
    assert rc == 1 and "is not a folder" in capsys.readouterr().err


def test_the_flat_keywords_and_the_config_give_the_same_weights(face_folder, cache, tmp_path):
    """``train_ediffiqa(**kw)`` is ``train_regressor(training_config(**kw))``: the same
    weights; the sidecar's ``training`` record reads back as the result's config, and ``fiqa
    train`` builds the same config from its arguments."""
    import argparse

    from safetensors.numpy import load_file

    from fiqa_sdk.train import (DistillConfig, LabelConfig, OptimConfig, TeacherConfig,
                                TrainingConfig, train_regressor, training_config)
    from fiqa_sdk.train.cli import add_train_parser, config_from_args

    kw = dict(method="ediffiqa", epochs=1, teacher_n=1, min_count=1, eps=1.0, seed=2)
    flat = fq.train_ediffiqa(face_folder, tmp_path / "flat", threads=1, cache=cache, **kw)
    cfg = TrainingConfig(distill=DistillConfig("ediffiqa", labels=LabelConfig(eps=1.0, min_count=1),
                                               optim=OptimConfig(epochs=1, seed=2)),
                         teacher=TeacherConfig(n=1))
    assert training_config(**kw) == cfg and flat.config == cfg
    nested = train_regressor(face_folder, tmp_path / "nested", cfg, threads=1, cache=cache)
    a, b = load_file(str(flat.weights)), load_file(str(nested.weights))
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    meta = json.loads(nested.weights.with_suffix(".json").read_text())
    assert TrainingConfig.from_dict(meta["training"]) == cfg
    assert meta["config"] == cfg.distill.to_dict()
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "ediffiqa", "--out", "x", "--n", "1", "--min-count", "1",
                              "--eps", "1", "--epochs", "1", "--train-seed", "2"])
    assert config_from_args(args) == cfg
    with pytest.raises(fq.InvalidArgumentError, match="config must be a TrainingConfig"):
        train_regressor(face_folder, tmp_path / "bad", cfg.distill)


def test_cli_trains_a_seed_ensemble(face_folder, cache, tmp_path, capsys):
    """``fiqa train diffiqa-r --ensemble-seeds 0 1``: one run per seed in OUT/seed-S/, bundled
    into OUT/diffiqa_r_mbf_x2.safetensors, whose score is the mean of the two runs'."""
    out = tmp_path / "ens"
    rc = main(["train", "diffiqa-r", "--data", str(face_folder), "--out", str(out), "--epochs",
               "1", "--n", "1", "--threads", "1", "--cache", str(cache), "--ensemble-seeds", "0", "1"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["weights"] == str(out / "diffiqa_r_mbf_x2.safetensors") and res["seeds"] == [0, 1]
    assert res["members"] == [str(out / f"seed-{s}" / "diffiqa_r_mbf.safetensors") for s in (0, 1)]
    meta = json.loads((out / "diffiqa_r_mbf_x2.json").read_text())
    assert meta["ensemble"]["seeds"] == [0, 1] and meta["method"] == "diffiqa-r"
    faces = np.load(next(cache.glob("*/faces.npy")))[:4]
    ens = fq.create_scorer("diffiqa-r", weights=res["weights"])
    parts = [fq.create_scorer("diffiqa-r", weights=m).score(faces) for m in res["members"]]
    np.testing.assert_allclose(ens.score(faces), np.mean(parts, 0), atol=1e-5)
    for bad in (["--ensemble-seeds", "3"], ["--ensemble-seeds", "1", "1"],
                ["--ensemble-seeds", "0", "1", "--train-seed", "2"]):
        assert main(["train", "diffiqa-r", "--data", str(face_folder), "--out", str(tmp_path / "x"),
                     "--cache", str(cache), *bad]) == 2
        assert "--ensemble-seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # ediffiqa-free has no tail to fine-tune: no such option
        main(["train", "ediffiqa-free", "--out", str(tmp_path / "y"), "--ensemble-seeds", "0", "1"])


def test_a_user_torch_backbone_is_not_modified(face_folder, cache, tmp_path):
    from fiqa_sdk.train.api import load_backbone_factory

    from test_custom_backbone import FACTORY  # the tiny FR module of those tests

    (tmp_path / "tiny_fr.py").write_text(FACTORY)
    module = load_backbone_factory(f"{tmp_path / 'tiny_fr.py'}:make")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = fq.train_ediffiqa(face_folder, tmp_path / "c", backbone=module, epochs=1,
                               teacher_n=1, min_count=1, threads=1, cache=cache)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert result.backbone is module
    meta = json.loads(result.weights.with_suffix(".json").read_text())
    assert meta["backbone"]["arch"] == "custom" and meta["backbone"]["factory"] == "TinyFR"
    assert result.backbone.training is False
    faces = np.load(result.aligned / "faces.npy")
    q = result.create_scorer().score(faces[:3])
    assert q.shape == (3,) and np.isfinite(q).all()
    # the fine-tuned copy differs from the base module
    scorer = result.create_scorer()
    assert not torch.equal(scorer.model.backbone.fc.weight, module.fc.weight)


def test_every_public_name_is_in_the_api_reference():
    """docs/api.md is the contract: each name of ``fq.__all__`` has an entry there."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    missing = [n for n in fq.__all__ if not re.search(rf"`(fq\.)?{re.escape(n)}[`(\[ ]", doc)]
    assert missing == []


def test_a_limited_alignment_cache_is_not_the_full_one(face_folder, tmp_path):
    from fiqa_sdk.train.data import build_aligned_cache

    part = build_aligned_cache(face_folder, cache=tmp_path, limit=3)
    full = build_aligned_cache(face_folder, cache=tmp_path)
    assert len(part) == 3 and len(full) == 12 and part.path != full.path
    assert "-first3-" in part.path.name
