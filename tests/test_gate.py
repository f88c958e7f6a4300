"""QualityGate: assess, filter (discard / threshold), calibrate, save/load, templates, compare, CLI."""

from __future__ import annotations

import csv
import json
import math
import threading

import cv2
import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk import policy
from fiqa_sdk.gate import DEFAULT_SCORER, FALLBACK_SCORER, QualityGate, default_scorer_name


class ConstScorer(fq.Scorer):
    """Every face gets the same score: exercises tie-breaking."""

    name = "const"

    def _score(self, aligned, faces):
        return np.full(len(aligned), 0.5)


@pytest.fixture(scope="module")
def gate():
    return QualityGate()  # defaults: retinaface, arcface, default scorer, CPU


@pytest.fixture(scope="module")
def batch(astronaut):
    """astronaut (RGB) + strong blur + downscale + blank + garbage bytes + mirror; as BGR."""
    bgr = np.ascontiguousarray(astronaut[..., ::-1])
    blur = cv2.GaussianBlur(bgr, (0, 0), 6)
    small = cv2.resize(cv2.resize(bgr, (48, 48), interpolation=cv2.INTER_AREA), (512, 512))
    blank = np.zeros((200, 200, 3), np.uint8)
    return [bgr, blur, small, blank, b"garbage", np.ascontiguousarray(bgr[:, ::-1])]


def test_default_scorer_fallback(gate):
    from fiqa_sdk.quality.ediffiqa import SHIPPED, shipped_weights

    # the default needs the scorer registered and, for a distilled regressor, its shipped weights
    usable = DEFAULT_SCORER in fq.list_scorers() and (
        DEFAULT_SCORER not in SHIPPED or shipped_weights(DEFAULT_SCORER) is not None)
    assert default_scorer_name() == (DEFAULT_SCORER if usable else FALLBACK_SCORER)
    assert gate.scorer.name == default_scorer_name()
    assert gate.device == "cpu"
    assert QualityGate(device="auto").device in ("cpu", "cuda")


def test_assess_astronaut(gate, astronaut):
    r = gate.assess(astronaut, color="rgb")
    assert isinstance(r, fq.QualityReport)
    assert isinstance(r.score, float) and r.accepted is True and r.reason is None
    assert r.aligned.shape == (112, 112, 3) and r.aligned.dtype == np.uint8
    assert r.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(r.embedding)) - 1.0) < 1e-4
    assert r.face.bbox.shape == (4,) and r.face.landmarks.shape == (5, 2)
    reps = gate.assess(astronaut, color="rgb", faces="all")
    assert isinstance(reps, list) and len(reps) >= 1 and reps[0].score is not None


def test_assess_failures(gate):
    r = gate.assess(np.zeros((120, 120, 3), np.uint8))
    assert r.reason == "no_face" and r.score is None and r.accepted is False
    assert gate.assess(b"garbage").reason == "decode_error"
    assert gate.assess(np.zeros((5, 5, 7), np.uint8)).reason == "invalid_input"


def test_assess_threshold(astronaut):
    g = QualityGate(threshold=1e9)
    r = g.assess(astronaut, color="rgb")
    assert r.score is not None and r.accepted is False and r.reason == "below_threshold"


def test_filter_discard_exact(gate, batch):
    res = gate.filter(batch, discard=0.5)
    assert isinstance(res, fq.FilterResult) and len(res.reports) == len(batch)
    scores = [r.score for r in res.reports]
    scored = [i for i, s in enumerate(scores) if s is not None]
    assert scored == [0, 1, 2, 5]
    n_discard = math.floor(0.5 * len(scored))
    rej = dict(res.rejected)
    assert rej[3] == "no_face" and rej[4] == "decode_error"
    discarded = [i for i, why in res.rejected if why == "discarded"]
    assert len(discarded) == n_discard
    lowest = sorted(scored, key=lambda i: (scores[i], i))[:n_discard]
    assert sorted(discarded) == sorted(lowest)
    # the degraded copies score below the original
    assert scores[1] < scores[0] and scores[2] < scores[0]
    assert res.kept == sorted(res.kept) and set(res.kept) | set(rej) == set(range(len(batch)))
    assert res.threshold == min(scores[i] for i in res.kept)
    assert all(res.reports[i].accepted for i in res.kept)
    assert all(r.aligned is None for r in res.reports)  # keep_crops=False by default
    # discard=0 keeps every scored item; floor rounds down (0.3 * 4 = 1.2 -> 1)
    assert gate.filter(batch, discard=0.0).kept == scored
    assert len([i for i, w in gate.filter(batch, discard=0.3).rejected if w == "discarded"]) == 1
    # discard=1 rejects everything; the cut is +inf
    res1 = gate.filter(batch, discard=1.0)
    assert res1.kept == [] and res1.threshold == math.inf


def test_filter_ties_by_input_order(batch):
    g = QualityGate(scorer=ConstScorer(), embedder=None)
    res = g.filter(batch, discard=0.5)
    # 4 scored items, all equal: the 2 earliest scored (0, 1) are discarded first
    assert [i for i, w in res.rejected if w == "discarded"] == [0, 1]
    assert res.kept == [2, 5] and res.threshold == 0.5
    assert policy.discard_lowest([1.0, None, 1.0, 0.0, 1.0], 0.5) == (
        [False, False, True, False, True], 1.0)  # drops 0.0 then the earliest 1.0


def test_filter_threshold_and_args(gate, batch):
    scores = [r.score for r in gate.filter(batch, discard=0.0).reports]
    t = scores[1] + 1e-6  # between blurred and original
    res = gate.filter(batch, threshold=t)
    assert res.threshold == t
    assert res.kept == [i for i, s in enumerate(scores) if s is not None and s >= t]
    assert 1 in dict(res.rejected) and dict(res.rejected)[1] == "below_threshold"
    with pytest.raises(fq.GateError):
        gate.filter(batch, discard=0.2, threshold=1.0)
    with pytest.raises(ValueError):
        gate.filter(batch)  # neither, and the gate has no threshold
    with pytest.raises(fq.GateError):
        gate.filter(batch, discard=1.5)


def test_filter_generator_and_directory(gate, batch, tmp_path):
    ref = gate.filter(batch, discard=0.25)
    gen = gate.filter((x for x in batch), discard=0.25)
    assert gen.kept == ref.kept and gen.rejected == ref.rejected
    # a directory: sorted file names
    names = ["c_blur.png", "a_face.jpg", "b_blank.png", "d_junk.jpg"]
    cv2.imwrite(str(tmp_path / names[0]), batch[1])
    cv2.imwrite(str(tmp_path / names[1]), batch[0])
    cv2.imwrite(str(tmp_path / names[2]), batch[3])
    (tmp_path / names[3]).write_bytes(b"garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    res = gate.filter(tmp_path, discard=0.5, progress=True)
    assert [p.rsplit("/", 1)[-1] for p in res.sources] == sorted(names)
    assert res.kept == [0]  # a_face kept, c_blur discarded
    assert dict(res.rejected) == {1: "no_face", 2: "discarded", 3: "decode_error"}


def test_scores_of_a_directory_and_iterables(gate, batch, tmp_path):
    """scores() takes a directory like filter()/calibrate(), not its path's characters."""
    names = ["a_face.jpg", "b_blur.png", "c_blank.png", "d_junk.jpg"]
    for name, img in zip(names, (batch[0], batch[1], batch[3])):
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / names[3]).write_bytes(b"garbage")
    (tmp_path / "notes.txt").write_text("not an image")  # not an image file: not listed
    by_dir = gate.scores(tmp_path)
    assert len(by_dir) == 4
    assert gate.scores(str(tmp_path)) == by_dir
    by_list = gate.scores(sorted(tmp_path.glob("*.[jp][pn]g")))
    assert by_list == by_dir
    assert by_dir[0] is not None and by_dir[2] is None and by_dir[3] is None
    # any iterable: a generator, a stacked (N, H, W, 3) array
    assert gate.scores(x for x in batch[:2]) == gate.scores(batch[:2])
    assert gate.scores(np.stack([batch[0], batch[0]])) == gate.scores([batch[0]] * 2)
    # a single image is a mistake, not a batch of rows / characters
    for bad in (batch[0], b"bytes", str(tmp_path / names[0]), 42):
        with pytest.raises(fq.GateError, match="scores"):
            gate.scores(bad)


def test_gate_passes_its_device_to_scorers_it_creates(monkeypatch):
    import fiqa_sdk.gate as gate_mod

    seen = {}

    def fake_create_scorer(name, **kw):
        seen[name] = kw
        return ConstScorer()

    monkeypatch.setattr(gate_mod, "create_scorer", fake_create_scorer)
    for name in ("diffiqa", "ediffiqa", "ediffiqa-free", "diffiqa-r"):
        QualityGate(embedder=None, scorer=name, device="cpu")
        assert seen[name].get("device") == "cpu", (name, seen[name])
    QualityGate(embedder=None, scorer="diffiqa-r", device="auto")
    assert seen["diffiqa-r"]["device"] == "auto"  # torch makes its own CUDA choice
    QualityGate(embedder=None, scorer="sharpness", device="cpu")
    assert "device" not in seen["sharpness"]  # its constructor takes no device
    # diffiqa and embedding-norm reuse the gate's arcface embedder (already on the device)
    QualityGate(scorer="embedding-norm", device="cpu")
    assert "embedder" in seen["embedding-norm"] and "device" not in seen["embedding-norm"]
    QualityGate(scorer="diffiqa", device="cpu")
    assert "embedder" in seen["diffiqa"] and seen["diffiqa"]["device"] == "cpu"
    # without the gate's embedder, embedding-norm builds its own ArcFace on the gate's device
    QualityGate(embedder=None, scorer="embedding-norm", device="cpu")
    assert seen["embedding-norm"] == {"device": "cpu"}


def test_unknown_face_policy_is_a_gate_error():
    with pytest.raises(fq.GateError, match="face_policy") as exc:
        QualityGate(embedder=None, scorer="sharpness", face_policy="biggest")
    assert isinstance(exc.value, ValueError)


def test_caller_arrays_unchanged(gate, batch):
    copies = [x.copy() if isinstance(x, np.ndarray) else x for x in batch]
    gate.filter(batch, discard=0.2)
    gate.template([b for b in batch if isinstance(b, np.ndarray)])
    gate.assess(batch[0])
    for a, b in zip(batch, copies):
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b)


def test_calibrate(gate, batch):
    g = QualityGate(scorer=gate.scorer)
    scores = [s for s in g.scores(batch) if s is not None]
    t = g.calibrate(batch, discard=0.25)
    assert g.threshold == t == pytest.approx(float(np.quantile(scores, 0.25)))
    # filter with neither argument now uses the calibrated threshold
    res = g.filter(batch)
    assert res.threshold == t and res.kept == [i for i, r in enumerate(res.reports)
                                               if r.score is not None and r.score >= t]
    assert g.assess(batch[0]).accepted is True
    assert g.assess(batch[1]).reason == "below_threshold"
    with pytest.raises(fq.GateError):
        g.calibrate([np.zeros((64, 64, 3), np.uint8)], discard=0.1)


def test_save_load(tmp_path, astronaut):
    g = QualityGate(scorer="sharpness", threshold=12.5, face_policy="central")
    p = g.save(tmp_path / "gate.json")
    cfg = json.loads(p.read_text())
    assert cfg["scorer"] == "sharpness" and cfg["threshold"] == 12.5
    assert cfg["detector"] == "retinaface" and cfg["embedder"] == "arcface"
    assert cfg["fiqa_sdk_version"] == fq.__version__ and cfg["face_policy"] == "central"
    g2 = QualityGate.load(p)
    assert g2.threshold == 12.5 and g2.face_policy == "central" and g2.scorer.name == "sharpness"
    assert g2.assess(astronaut, color="rgb").score == g.assess(astronaut, color="rgb").score
    with pytest.raises(fq.GateError, match="registry names"):
        QualityGate(scorer=ConstScorer()).save(tmp_path / "x.json")
    with pytest.raises(fq.GateError):
        QualityGate.load(tmp_path / "missing.json")


def test_saved_threshold_is_tied_to_the_scorer_weights(tmp_path):
    """A threshold is in the units of one set of weights: a gate file saved with other weights
    under the same scorer name (e.g. the single-regressor ediffiqa shipped before the seed
    ensemble, sha256 9418afed...) is refused with its threshold, and loads without it."""
    g = QualityGate(scorer="ediffiqa", threshold=0.4)
    p = g.save(tmp_path / "gate.json")
    cfg = json.loads(p.read_text())
    assert cfg["scorer_weights"] == g.scorer.weights_sha256
    assert QualityGate.load(p).threshold == 0.4  # same weights: fine
    cfg["scorer_weights"] = "9418afedf7795e30"
    p.write_text(json.dumps(cfg))
    with pytest.raises(fq.GateError, match="recalibrate"):
        QualityGate.load(p)
    assert QualityGate.load(p, threshold=None).threshold is None
    assert QualityGate.load(p, threshold=0.45).threshold == 0.45
    # no threshold, nothing in the scorer's units: loads as it is
    cfg["threshold"] = None
    p.write_text(json.dumps(cfg))
    assert QualityGate.load(p).scorer.name == "ediffiqa"
    # scorers without weights record none
    assert "scorer_weights" not in QualityGate(scorer="sharpness").config()


def test_template_methods(gate, batch):
    imgs = [batch[0], batch[1], batch[3], batch[2]]  # index 2 has no face
    scores = [r.score for r in gate.filter(imgs, discard=0.0).reports]
    tq = gate.template(imgs)
    assert tq.used == [0, 1, 3] and abs(tq.weights.sum() - 1) < 1e-9
    assert tq.embedding.dtype == np.float32 and abs(np.linalg.norm(tq.embedding) - 1) < 1e-5
    assert tq.weights[0] == max(tq.weights)  # the original gets the largest weight
    tm = gate.template(imgs, method="mean")
    assert np.allclose(tm.weights, 1 / 3)
    tb = gate.template(imgs, method="best")
    assert tb.used == [int(np.nanargmax(np.array(scores, dtype=float)))] == [0]
    assert np.allclose(tb.embedding, gate.assess(imgs[0]).embedding, atol=1e-6)
    tk = gate.template(imgs, method="top_k", k=2)
    assert len(tk.used) == 2 and 0 in tk.used and abs(tk.weights.sum() - 1) < 1e-9
    # temperature: large T -> near uniform
    w = policy.template_weights([1.0, 2.0, 3.0], temperature=1e6)[1]
    assert np.allclose(w, 1 / 3, atol=1e-5)
    with pytest.raises(fq.GateError):
        gate.template([batch[3]])
    with pytest.raises(fq.GateError):
        gate.template(imgs, method="median")


def test_template_video(gate, batch, tmp_path):
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    if not w.isOpened():
        pytest.skip("OpenCV cannot write MJPG video here")
    for i in range(6):
        w.write(batch[0] if i % 2 == 0 else batch[3])
    w.release()
    t = gate.template(path, frame_step=2, max_frames=2)
    assert t.used == [0, 1]


def test_compare_lfw(lfw_root):
    g = QualityGate(face_policy="central")
    img = lfw_root / "images"
    a1, a2 = img / "George_W_Bush" / "George_W_Bush_0001.jpg", img / "George_W_Bush" / "George_W_Bush_0002.jpg"
    b = img / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
    if not all(p.is_file() for p in (a1, a2, b)):
        pytest.skip("LFW images missing")
    same, diff = g.compare(a1, a2), g.compare(a1, b)
    assert same > diff
    t = g.template([a1, a2])
    assert g.compare(t, a1) > g.compare(t, b)
    e = g.assess(a1).embedding
    assert g.compare(e, a1) == pytest.approx(1.0, abs=1e-5)


def test_threads_match_single(gate, batch):
    ref = gate.filter(batch, discard=0.25)
    out = [None, None]

    def run(k):
        out[k] = gate.filter(batch, discard=0.25)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for res in out:
        assert res.kept == ref.kept and res.rejected == ref.rejected
        assert [r.score for r in res.reports] == [r.score for r in ref.reports]


def test_policy_functions():
    assert policy.discard_count(0.29, 100) == 29
    assert policy.apply_threshold([1.0, None, 3.0], 2.0) == [False, False, True]
    assert policy.calibrate_threshold([3.0, 1.0, 2.0, None], 0.5) == 2.0
    assert policy.cosine([1, 0], [2, 0]) == pytest.approx(1.0)


def test_cli_filter(tmp_path, astronaut, capsys):
    from fiqa_sdk.cli import main

    cv2.imwrite(str(tmp_path / "a.jpg"), astronaut[..., ::-1])
    cv2.imwrite(str(tmp_path / "b.png"), cv2.GaussianBlur(astronaut[..., ::-1], (0, 0), 6))
    cv2.imwrite(str(tmp_path / "c.png"), np.zeros((80, 80, 3), np.uint8))
    out = tmp_path / "result.csv"
    rc = main(["filter", str(tmp_path), "--discard", "0.5", "--out", str(out), "--json",
               "--no-progress"])
    assert rc == 0
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "score", "kept", "reason", "n_faces", "ambiguous"]
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["a.jpg", "b.png", "c.png"]
    assert [r["kept"] for r in rows] == ["True", "False", "False"]
    assert [r["reason"] for r in rows] == ["", "discarded", "no_face"]
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 3 and lines[0]["kept"] is True
    assert main(["filter", str(tmp_path), "--discard", "0.5", "--threshold", "1"]) == 1
    assert main(["filter", str(tmp_path / "nope"), "--discard", "0.5"]) == 1
    assert "Traceback" not in capsys.readouterr().err
