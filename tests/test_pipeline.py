"""The face pipeline end to end, on real faces and on bad inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import fiqa_sdk as fq
from fiqa_sdk.eval.protocols import read_lfw_pairs


@pytest.fixture(scope="module")
def pipe():
    return fq.FacePipeline("retinaface", "arcface")


def test_pipeline_astronaut_all_input_forms(pipe, astronaut, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="PNG")
    p = tmp_path / "a.png"
    p.write_bytes(buf.getvalue())
    forms = [(astronaut, "rgb"), (astronaut[..., ::-1].copy(), "bgr"), (buf.getvalue(), "bgr"),
             (p, "bgr"), (str(p), "bgr"), (Image.fromarray(astronaut), "bgr")]
    embs = []
    for img, color in forms:
        (r,) = pipe.process(img, color=color)
        assert r.ok and r.aligned.shape == (112, 112, 3) and r.embedding.shape == (512,)
        embs.append(r.embedding)
    embs = np.stack(embs)
    assert (embs @ embs[0] > 0.999).all()


def test_pipeline_batch_keeps_order_and_reasons(pipe, astronaut):
    items = [astronaut[..., ::-1], b"garbage", np.zeros((100, 100, 3), np.uint8),
             np.zeros((0, 5, 3), np.uint8), astronaut[..., ::-1]]
    out = list(pipe.process_batch(iter(items), batch_size=2))
    reasons = [rs[0].reason for rs in out]
    assert reasons == [None, "decode_error", "no_face", "invalid_input", None]
    assert out[0][0].embedding @ out[4][0].embedding > 0.999


def test_pipeline_without_embedder(astronaut):
    (r,) = fq.FacePipeline(embedder=None).process(astronaut, color="rgb")
    assert r.ok and r.embedding is None and r.aligned is not None


def test_lfw_sample_pairs_verify(pipe, lfw_root):
    """40 mated and 40 non-mated LFW pairs (fold 0) separate at a fixed ArcFace threshold."""
    proto = read_lfw_pairs(lfw_root)
    sel = np.concatenate([np.flatnonzero(proto.mated)[:40], np.flatnonzero(~proto.mated)[:40]])
    emb = {}
    for i in np.unique(proto.pairs[sel]):
        pipe.face_policy = "central"
        (r,) = pipe.process(proto.paths[i])
        assert r.ok, proto.paths[i]
        emb[i] = r.embedding
    sims = np.array([emb[a] @ emb[b] for a, b in proto.pairs[sel]])
    mated = proto.mated[sel]
    acc = np.mean((sims >= 0.25) == mated)
    assert acc >= 0.95, (acc, sims[mated].min(), sims[~mated].max())
    assert np.median(sims[mated]) > 0.5 and np.median(sims[~mated]) < 0.15


def test_every_detector_agrees_on_astronaut(astronaut):
    """All four backends find her face, with the same five landmarks up to a few pixels."""
    lmks = {}
    for name in fq.list_detectors():
        kw = {"upsample": 0} if name == "dlib" else {}  # HOG at upsample 1 also fires on a patch
        faces = fq.create_detector(name, **kw).detect(astronaut)
        assert faces, name
        lmks[name] = faces[0].landmarks
    ref = np.median(np.stack(list(lmks.values())), axis=0)
    eye_dist = np.linalg.norm(ref[1] - ref[0])
    for name, lm in lmks.items():
        err = np.linalg.norm(lm - ref, axis=1)
        assert err[:2].max() < 0.12 * eye_dist, (name, err)  # eyes agree closely
        assert err.max() < 0.25 * eye_dist, (name, err)  # nose/mouth definitions differ a little
