"""The regressor + embedding-norm fusion (fiqa_sdk.quality.fusion): formula, shipped constants,
the gate's joint pass, folding into the ediffiqa-free head."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fiqa_sdk as fq
from fiqa_sdk.errors import InvalidArgumentError
from fiqa_sdk.quality import SCORERS
from fiqa_sdk.quality.fusion import (CONSTANTS_FILE, NormFusionScorer, fold_norm_fusion,
                                     load_constants)

from conftest import graded_crops  # noqa: E402


@pytest.fixture(scope="module")
def crops(astronaut, astronaut_face):
    return graded_crops(astronaut, astronaut_face, 8, period=4, blur=1.5)


@pytest.fixture(scope="module")
def fusion():
    return fq.create_scorer("diffiqa-r+norm", precision="fp32")


def test_shipped_constants_match_the_shipped_regressors():
    table = load_constants()
    assert table["data"]["faces"] > 6000 and table["log_norm"]["std"] > 0
    for name, entry in table["regressors"].items():
        weights = CONSTANTS_FILE.parent / SCORERS.card(name)["weights"][0]
        sidecar = json.loads(weights.with_suffix(".json").read_text())
        assert entry["weights_sha256"] == sidecar["sha256"]
        assert entry["std"] > 0


def test_score_is_the_z_score_sum_of_regressor_and_log_norm(fusion, crops):
    reg = fq.create_scorer("diffiqa-r", precision="fp32").score(crops)
    norm = fq.create_scorer("embedding-norm").score(crops)
    t = load_constants()
    c, l = t["regressors"]["diffiqa-r"], t["log_norm"]
    want = 0.5 * (reg - c["mean"]) / c["std"] + 0.5 * (np.log(norm) - l["mean"]) / l["std"]
    np.testing.assert_allclose(fusion.score(crops), want, atol=1e-5)
    # on its own it also runs one joint pass (onnxruntime fp32); torch runs the two models
    assert fusion._joint_runner() is not None
    alone = fq.create_scorer("diffiqa-r+norm", backend="torch")
    assert alone._joint_runner() is None
    np.testing.assert_allclose(alone.score(crops), want, atol=1e-4)
    # degraded copies (severities 1-3 of each period of 4) score below the clean ones
    q = fusion.score(crops).reshape(2, 4)
    assert (q[:, 0] > q[:, 3]).all()


def test_weight_one_and_zero_are_the_members(crops):
    reg = fq.create_scorer("diffiqa-r", precision="fp32").score(crops)
    norm = fq.create_scorer("embedding-norm").score(crops)
    r1 = fq.create_scorer("diffiqa-r+norm", weight=1.0, precision="fp32").score(crops)
    r0 = fq.create_scorer("diffiqa-r+norm", weight=0.0, precision="fp32").score(crops)
    assert np.corrcoef(r1, reg)[0, 1] > 0.9999 and np.corrcoef(r0, np.log(norm))[0, 1] > 0.9999


def test_default_gate_fuses_in_the_joint_pass(astronaut):
    g = fq.QualityGate()
    assert g.scorer.name == "diffiqa-r+norm" == fq.gate.DEFAULT_SCORER
    assert g.joint
    rep = g.assess(astronaut, color="rgb")
    alone = fq.create_scorer("diffiqa-r+norm", precision="fp32").score(rep.aligned[None])[0]
    assert rep.score == pytest.approx(alone, abs=1e-4)
    # the embedding the gate reports is the ArcFace one
    raw = g.pipeline.embedder.embed_raw(rep.aligned[None])[0]
    np.testing.assert_allclose(rep.embedding, raw / np.linalg.norm(raw), atol=1e-5)


def test_other_weights_need_their_own_constants(tmp_path, crops):
    from fiqa_sdk.quality.ediffiqa import SHIPPED

    reg = fq.create_scorer("ediffiqa-free")  # weights with no fusion constants
    with pytest.raises(InvalidArgumentError, match="constants"):
        NormFusionScorer(reg)
    with pytest.raises(InvalidArgumentError, match="regressor must be one of"):
        NormFusionScorer(regressor="sharpness")
    with pytest.raises(InvalidArgumentError, match="fixes its regressor"):
        fq.create_scorer("diffiqa-r+norm", regressor="ediffiqa")
    with pytest.raises(InvalidArgumentError, match="weight"):
        fq.create_scorer("diffiqa-r+norm", weight=1.5)
    c = {"regressor": {"mean": 0.0, "std": 1.0}, "log_norm": {"mean": 0.0, "std": 1.0}}
    sc = NormFusionScorer(fq.create_scorer("diffiqa-r", weights=SHIPPED["diffiqa-r"]), constants=c)
    assert np.isfinite(sc.score(crops)).all()
    with pytest.raises(InvalidArgumentError, match="positive"):
        NormFusionScorer("diffiqa-r", constants={"regressor": {"mean": 0, "std": 0},
                                                 "log_norm": {"mean": 0, "std": 1}})


def test_fold_norm_fusion_is_exact():
    from fiqa_sdk.quality.ediffiqa import NormResidualHead

    torch.manual_seed(0)
    head = NormResidualHead(512, 16)
    torch.nn.init.normal_(head.mlp[2].weight)
    e = torch.randn(64, 512) * 3
    hs, ls = {"mean": 0.3, "std": 1.7}, {"mean": 3.0, "std": 0.2}
    folded = fold_norm_fusion(head, hs, ls, 0.5)
    with torch.no_grad():
        h = head(e).squeeze(-1)
        want = 0.5 * (h - 0.3) / 1.7 + 0.5 * (torch.log(e.norm(dim=1)) - 3.0) / 0.2
        torch.testing.assert_close(folded(e).squeeze(-1), want, atol=1e-5, rtol=1e-5)
    assert head.scale.item() == 1.0  # the input head is not modified


def test_shipped_free_head_is_the_folded_v2():
    meta = json.loads((CONSTANTS_FILE.parent / "ediffiqa_free_mbf.json").read_text())
    assert meta["free_head_version"] == 3
    f = meta["fusion"]
    assert f["weight"] == 0.5 and f["head"]["std"] > 0 and f["log_norm"]["std"] > 0
    assert f["from_sha256"] != meta["sha256"]


def test_cards_drive_the_gate():
    from fiqa_sdk.gate import scorer_kwargs

    emb = fq.create_embedder("arcface")
    assert scorer_kwargs("diffiqa-r+norm", emb, "auto", "cpu") == {"embedder": emb, "device": "auto"}
    assert scorer_kwargs("embedding-norm", None, "auto", "cpu") == {"device": "cpu"}
    assert scorer_kwargs("embedding-norm", emb, "cpu", "cpu") == {"embedder": emb}
    assert scorer_kwargs("sharpness", emb, "cpu", "cpu") == {}
    for name in fq.list_scorers():
        card = SCORERS.card(name)
        assert card.get("score") and card.get("licence"), name


def test_fiqa_list_prints_the_cards(capsys):
    from fiqa_sdk.cli import main

    assert main(["list", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    card = cards["scorers"]["diffiqa-r+norm"]
    assert card["embedder"] == "shared" and "arcface" in card["fr_model"]
    assert any(w.startswith("diffiqa_r_mbf.safetensors (sha256 83f7f334") for w in card["weights"])
    assert "cuda" in cards["detectors"]["retinaface"]["device"]
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "norm_fusion.json (sha256" in out and "licence:" in out


@pytest.mark.parametrize("name, expected", [
    ("diffiqa-r+norm", (0.354358, 0.084817)),
    ("ediffiqa+norm", (-0.175536, -0.444804)),
])
def test_shipped_fusions_reproduce_recorded_scores(name, expected, astronaut, astronaut_face):
    """The astronaut's aligned crop and its mirror, as recorded when the fusion shipped."""
    from fiqa_sdk.align import align_face

    crop = align_face(astronaut, astronaut_face)
    s = fq.create_scorer(name, backend="torch")
    np.testing.assert_allclose(s.score(np.stack([crop, crop[:, ::-1]])), expected, atol=5e-4)
