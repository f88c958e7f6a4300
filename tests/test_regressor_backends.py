"""The onnxruntime backend of the distilled regressors: parity with torch on real faces, the
export cache, typed errors, the gate option and the runtime throughput mode."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import fiqa_sdk as fq
from fiqa_sdk.errors import GateError, InvalidArgumentError

from conftest import fake_lfw, graded_crops  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def real_crops(astronaut, astronaut_face, lfw_root_or_none) -> np.ndarray:
    """Aligned crops of real faces: the astronaut (jittered, blurred, noisy, downscaled, every
    other one mirrored) and, when LFW is present, a few LFW faces."""
    from fiqa_sdk.align import align_face

    graded = graded_crops(astronaut, astronaut_face, 10, period=5, jitter=3.0, blur=0.7)
    out = [c if k % 2 else np.ascontiguousarray(c[:, ::-1]) for k, c in enumerate(graded)]
    if lfw_root_or_none is not None:
        det = fq.create_detector("retinaface")
        for p in sorted((lfw_root_or_none / "images").glob("A*/*.jpg"))[:6]:
            img = fq.load_image(p)
            faces = det.detect(img)
            if faces:
                out.append(align_face(img, faces[0]))
    return np.stack(out)


@pytest.fixture(scope="module")
def lfw_root_or_none():
    from conftest import LFW_ROOT

    return LFW_ROOT if (LFW_ROOT / "images").is_dir() else None


# -- the export -----------------------------------------------------------------------------
@pytest.mark.parametrize("slopes, rewritten", [
    ([-0.8, -0.1, 0.0, 0.25, 0.5, 0.99], True),   # per channel, all < 1: the blocked form
    ([-0.5, 0.2, 1.0, 1.5, 3.0, 0.9], False),      # slopes >= 1: PRelu kept
    ([0.3], False),                                 # one shared slope: PRelu kept
])
def test_blocked_prelu_rewrite_is_prelu(slopes, rewritten, tmp_path):
    """The graph rewrite (fiqa_sdk._onnx.rewrite_blocked_prelu) on torch's export of a PReLU
    net (slopes as Unsqueeze of a constant): same outputs in onnxruntime, no PRelu left when
    the slopes allow it, and the slope's Unsqueeze removed."""
    onnx = pytest.importorskip("onnx")
    from fiqa_sdk._onnx import blocked_prelu_bytes, make_session

    torch.manual_seed(0)
    prelu = nn.PReLU(len(slopes))
    with torch.no_grad():
        prelu.weight.copy_(torch.tensor(slopes))
    net = nn.Sequential(nn.Conv2d(3, 6, 3), prelu, nn.Conv2d(6, 4, 1)).eval()
    path = tmp_path / "net.onnx"
    with torch.no_grad():
        torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          opset_version=17, do_constant_folding=False, dynamo=False)
    data = blocked_prelu_bytes(path)
    assert (data is not None) == rewritten
    if not rewritten:
        return
    ops = [n.op_type for n in onnx.load_from_string(data).graph.node]
    assert "PRelu" not in ops and "Unsqueeze" not in ops and ops.count("Conv") == 3
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        ref = net(x).numpy()
    for model in (path, data):
        y = make_session(model).run(["y"], {"x": x.numpy()})[0]
        np.testing.assert_allclose(y, ref, atol=1e-5)


def test_onnxruntime_matches_torch_on_real_faces(real_crops):
    """The ORT fp32 scores equal the torch scores within 1e-4 (measured ~4e-7), for every
    threads setting and batch size, and the graph is exported once to $FIQA_CACHE/onnx."""
    from fiqa_sdk.eval.features import default_cache_dir

    ref = fq.create_scorer("ediffiqa", backend="torch").score(real_crops)
    assert ref.std() > 0.01  # the crops are of varied quality
    for threads, bs in ((None, 64), (1, 3), (2, 4), (2, 1)):
        s = fq.create_scorer("ediffiqa", backend="onnxruntime", threads=threads, batch_size=bs)
        np.testing.assert_allclose(s.score(real_crops), ref, atol=1e-4)
    assert isinstance(s._ort.source, Path) and s._ort.source.parent == default_cache_dir() / "onnx"
    assert s._ort.workers == 2 and s.backend == "onnxruntime"
    # the graph is the blocked-PReLU form: no PRelu node left
    import onnx

    ops = {n.op_type for n in onnx.load(str(s._ort.source)).graph.node}
    assert "PRelu" not in ops and {"Conv", "Relu", "Add"} <= ops


def test_export_cache_is_reused_and_optional(tmp_path, monkeypatch):
    from fiqa_sdk.quality import regressor_onnx as ro

    s = fq.create_scorer("diffiqa-r", backend="onnxruntime")
    path = s._ort.source
    assert path.is_file() and path.name.startswith("diffiqa-r-")
    monkeypatch.setattr(ro, "export_bytes", lambda *a, **k: pytest.fail("exported again"))
    again = fq.create_scorer("diffiqa-r", backend="onnxruntime")
    assert again._ort.source == path
    monkeypatch.undo()
    # a damaged cache file is exported again
    ref = s.score(np.zeros((1, 112, 112, 3), np.uint8))
    path.write_bytes(b"not an onnx graph")
    fixed = fq.create_scorer("diffiqa-r", backend="onnxruntime")
    assert fixed._ort.source == path and np.allclose(fixed.score(np.zeros((1, 112, 112, 3), np.uint8)), ref)
    # a cache folder that cannot be created: the graph is built in memory
    blocker = tmp_path / "file"
    blocker.write_text("x")
    data = ro.cached_graph(s.model, "diffiqa-r", cache_dir=blocker / "sub")
    assert isinstance(data, bytes) and len(data) > 1_000_000


@pytest.mark.parametrize("name, expected", [
    ("ediffiqa", (0.409936, 0.357258)),
    ("diffiqa-r", (0.902806, 0.880866)),
    ("ediffiqa-free", (0.027179, -0.297197)),  # v3 (v2: 0.289866, -0.031372)
])
def test_onnxruntime_reproduces_recorded_scores(name, expected, astronaut, astronaut_face):
    """The recorded scores of tests/test_ediffiqa.py, with backend="onnxruntime"."""
    from fiqa_sdk.align import align_face

    crop = align_face(astronaut, astronaut_face)
    s = fq.create_scorer(name, backend="onnxruntime", threads=2)
    np.testing.assert_allclose(s.score(np.stack([crop, crop[:, ::-1]])), expected, atol=5e-4)


def test_bad_options_raise_typed_errors():
    for bad in ("tensorrt", "ONNXRUNTIME", None, 1):
        with pytest.raises(InvalidArgumentError, match="backend"):
            fq.create_scorer("ediffiqa", backend=bad)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(InvalidArgumentError, match="threads"):
            fq.create_scorer("ediffiqa", backend="onnxruntime", threads=bad)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        fq.create_scorer("ediffiqa", batch_size=0)


# -- the gate -------------------------------------------------------------------------------
def test_gate_scorer_options(astronaut, tmp_path):
    gate = fq.QualityGate(scorer="ediffiqa", scorer_options={"backend": "onnxruntime", "threads": 2})
    assert gate.scorer.name == "ediffiqa" and gate.scorer.backend == "onnxruntime"
    r = gate.assess(astronaut, color="rgb")
    assert r.score == pytest.approx(0.409936, abs=5e-4)
    p = gate.save(tmp_path / "gate.json")
    assert json.loads(p.read_text())["scorer_options"] == {"backend": "onnxruntime", "threads": 2}
    loaded = fq.QualityGate.load(p)
    assert loaded.scorer.backend == "onnxruntime" and loaded.scorer.threads == 2
    assert "scorer_options" not in fq.QualityGate(scorer="inter-eye").config()  # default: as before
    with pytest.raises(GateError, match="scorer_options"):
        fq.QualityGate(scorer=gate.scorer, scorer_options={"threads": 1})
    with pytest.raises(GateError, match="does not accept"):
        fq.QualityGate(scorer="inter-eye", scorer_options={"backend": "onnxruntime"})
    with pytest.raises(GateError, match="dict"):
        fq.QualityGate(scorer_options=[("backend", "onnxruntime")])
    with pytest.raises(InvalidArgumentError, match="backend"):
        fq.QualityGate(scorer_options={"backend": "nope"})


def test_cli_assess_scorer_backend(capsys):
    from fiqa_sdk.cli import main

    assert main(["assess", "--scorer-backend", "onnxruntime", "--scorer-threads", "2"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["score"] == pytest.approx(0.354357, abs=5e-4)  # the default scorer, diffiqa-r+norm


# -- the runtime throughput mode ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_lfw(astronaut, tmp_path_factory) -> Path:
    return fake_lfw(tmp_path_factory.mktemp("lfw"), astronaut, 2)


def test_runtime_throughput(tiny_lfw, tmp_path, capsys):
    from fiqa_bench.cli import main as bench_main
    from fiqa_bench import runtime as rt

    res = rt.run_regressor_throughput(images=2, rounds=1, batch_sizes=(1, 2), threads=(1, 2),
                                      lfw_root=tiny_lfw, cache_dir=tmp_path / "c")
    json.dumps(res)
    assert res["benchmark"] == "regressor-throughput" and res["images"] == 2
    rows = res["rows"]
    assert len(rows) == 2 * 2 * 2  # backends x threads x batch sizes
    for r in rows:
        assert r["ms_per_face"] > 0 and r["faces_per_s"] > 0
        assert r["max_abs_diff_vs_torch_1_thread"] < 1e-4 and r["speedup_vs_torch_1_thread"] > 0
    assert torch.get_num_threads() == 1  # restored
    assert "| ediffiqa | onnxruntime | 2 | 2 |" in rt.throughput_markdown(res)
    out = tmp_path / "out"
    assert bench_main(["runtime", "--throughput", "--quick", "--images", "2", "--batch-sizes",
                 "2", "--thread-counts", "1", "--backends", "onnxruntime", "--lfw", str(tiny_lfw),
                 "--out", str(out)]) == 0
    got = json.loads((out / "runtime-throughput.json").read_text())
    assert got["command"].startswith("fiqa-bench runtime --throughput") and len(got["rows"]) == 1
    assert "faces/s" in (out / "runtime-throughput.md").read_text()
    with pytest.raises(fq.errors.EvaluationError):
        rt.run_regressor_throughput(images=0)
    with pytest.raises(InvalidArgumentError):
        rt.run_regressor_throughput(backends=("tvm",))


# -- int8 (precision="int8") ----------------------------------------------------------------
def _tiny_regressor():
    """A small QualityRegressor with the structures the export and the int8 recipe care about:
    PReLUs (the blocked rewrite), a grouped convolution of 4 groups of 2 -> 2 channels (split
    into depthwise ones) and one of 4 groups of 2 -> 4 channels (cannot be split: kept fp32)."""
    from fiqa_sdk.quality.ediffiqa import QualityRegressor

    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.PReLU(8),
        nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.PReLU(8),
        nn.Conv2d(8, 16, 3, padding=1, groups=4), nn.PReLU(16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 512))
    return QualityRegressor(backbone).eval()


@pytest.mark.parametrize("k, groups", [(2, 4), (3, 2), (4, 3)])
def test_grouped_conv_rewrite_is_the_conv(k, groups):
    """fiqa_sdk._onnx.rewrite_grouped_conv on torch's export of a grouped conv with k -> k
    channels per group (bias, stride 2, padding): k depthwise convs, same outputs; a group of
    other shape is kept."""
    import onnx

    from fiqa_sdk._onnx import make_session, rewrite_grouped_conv, rewritten_bytes

    torch.manual_seed(0)
    c = k * groups
    net = nn.Sequential(nn.Conv2d(c, c, 3, stride=2, padding=1, groups=groups),
                        nn.Conv2d(c, 2 * c, 3, padding=1, groups=groups)).eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(net, (torch.zeros(1, c, 9, 9),), buf, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          opset_version=17, do_constant_folding=False, dynamo=False)
    data = rewritten_bytes(buf.getvalue(), rewrite_grouped_conv)
    g = onnx.load_from_string(data).graph
    groups_seen = sorted(next((a.i for a in n.attribute if a.name == "group"), 1)
                         for n in g.node if n.op_type == "Conv")
    assert groups_seen == [groups] + [c] * k  # the second conv kept, the first split in k
    assert [n.op_type for n in g.node].count("Gather") == k - 1
    x = torch.randn(3, c, 9, 9)
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_allclose(make_session(data).run(["y"], {"x": x.numpy()})[0], ref, atol=1e-5)


def test_int8_recipe_on_a_tiny_regressor(real_crops, tmp_path, monkeypatch):
    """quantize_int8 via the scorer: the splittable grouped conv is split and int8, the other
    one and its PReLU stay fp32, the rest is
    QDQ int8, scores follow fp32, the graph is cached by model + calibration, and the model
    and crops passed are not modified."""
    import onnx

    # a temporary-file folder of this test's own: "nothing left behind" below must not see
    # what other processes on the machine create in the shared /tmp
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    from fiqa_sdk.quality import regressor_onnx as ro

    model = _tiny_regressor()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    calib = np.concatenate([real_crops, real_crops[:, :, ::-1]])  # >= 16 crops
    before = calib.copy()
    ref = fq.create_scorer("ediffiqa", weights=model, backend="torch").score(real_crops)
    s = fq.create_scorer("ediffiqa", weights=model, backend="onnxruntime", precision="int8",
                         calibration=calib)
    assert s.precision == "int8" and isinstance(s.int8_sha256, str)
    path = s._ort.source
    from fiqa_sdk.eval.features import default_cache_dir

    assert path.parent == default_cache_dir() / "onnx" and "-int8v1-c" in path.name
    g = onnx.load(str(path)).graph
    inits = {i.name for i in g.initializer}
    grouped = [n for n in g.node if n.op_type == "Conv"
               and any(a.name == "group" and a.i == 4 for a in n.attribute)]
    assert len(grouped) == 1 and grouped[0].input[1] in inits  # fp32 weights, no DequantizeLinear
    split = [n for n in g.node if n.op_type == "Conv" and "_dw" in n.name]
    assert len(split) == 2 and all(n.input[1] not in inits for n in split)  # int8 (via DQ)
    ops = [n.op_type for n in g.node]
    assert ops.count("QuantizeLinear") >= 5 and "PRelu" not in ops
    got = s.score(real_crops)
    assert np.isfinite(got).all() and np.abs(got - ref).max() < 0.01
    # the random head's quality hardly varies; the embedding shows the int8 backbone's fidelity
    blob = ro.to_blob(real_crops)
    e8 = s._ort.session.run(["embedding"], {"input": blob})[0]
    with torch.no_grad():
        e32 = model.backbone(torch.from_numpy(blob)).numpy()
    cos = (e8 * e32).sum(1) / np.linalg.norm(e8, axis=1) / np.linalg.norm(e32, axis=1)
    assert cos.min() > 0.98
    assert np.array_equal(calib, before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    # cached: a second scorer with the same model and crops reuses the file
    again = fq.create_scorer("ediffiqa", weights=model, backend="onnxruntime", precision="int8",
                             calibration=calib)
    assert again._ort.source == path
    # a damaged cache file is quantized again (once), not an error
    path.write_bytes(b"not an onnx graph")
    fixed = fq.create_scorer("ediffiqa", weights=model, backend="onnxruntime", precision="int8",
                             calibration=calib)
    assert fixed._ort.source == path and np.allclose(fixed.score(real_crops), got)
    assert fixed.int8_sha256 == s.int8_sha256  # rewritten file: hashed anew, same recipe
    # a cache folder that cannot be created: quantized in a temporary folder, kept as bytes
    blocker = tmp_path / "file"
    blocker.write_text("x")
    tmp_root = Path(tempfile.gettempdir())
    before_tmp = set(tmp_root.glob("fiqa-int8-*"))
    data = ro.int8_graph(model, "ediffiqa", calib, cache_dir=blocker / "sub")
    assert isinstance(data, bytes) and data == path.read_bytes()
    assert set(tmp_root.glob("fiqa-int8-*")) == before_tmp  # nothing left behind
    # the kept nodes, by name, on the fp32 graph
    pre = onnx.load_from_string(ro.export_bytes(model))
    kept = ro.int8_fp32_nodes(pre)
    assert len(kept) == 4 and all("/backbone.4/" in k or "/backbone.5/" in k for k in kept)


def test_int8_shipped_graph(real_crops, astronaut, astronaut_face):
    """precision="int8" on the shipped ediffiqa: the sha256-checked shipped graph, scores close
    to fp32 (measured: Spearman 0.993, max abs diff 0.046 on 1,000 held-out faces)."""
    import onnx
    from scipy.stats import spearmanr

    from fiqa_sdk.align import align_face
    from fiqa_sdk.quality.ediffiqa import WEIGHTS_DIR

    s = fq.create_scorer("ediffiqa", backend="onnxruntime", precision="int8", threads=2)
    assert s._ort.source == WEIGHTS_DIR / "ediffiqa_mbf_x3.int8.onnx"
    side = json.loads((WEIGHTS_DIR / "ediffiqa_mbf_x3.int8.json").read_text())
    assert side["sha256"] == s.int8_sha256 and side["calibration"]["crops"] == 256
    ops = {n.op_type for n in onnx.load(str(s._ort.source)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    ref = fq.create_scorer("ediffiqa", backend="torch").score(real_crops)
    got = s.score(real_crops)
    assert spearmanr(got, ref)[0] > 0.9 and np.abs(got - ref).max() < 0.1
    crop = align_face(astronaut, astronaut_face)
    # the recorded fp32 score of tests/test_ediffiqa.py, within int8's error
    assert s.score(crop[None])[0] == pytest.approx(0.409936, abs=0.03)


def test_int8_bad_options():
    from fiqa_sdk.quality import regressor_onnx as ro

    with pytest.raises(InvalidArgumentError, match="backend='onnxruntime'"):
        fq.create_scorer("ediffiqa", backend="torch", precision="int8")
    for bad in ("bf16", "INT8", None):
        with pytest.raises(InvalidArgumentError, match="precision"):
            fq.create_scorer("ediffiqa", backend="onnxruntime", precision=bad)
    with pytest.raises(InvalidArgumentError, match="calibration"):
        fq.create_scorer("ediffiqa", backend="onnxruntime", precision="fp32",
                         calibration=np.zeros((16, 112, 112, 3), np.uint8))
    with pytest.raises(InvalidArgumentError, match="no int8 graph ships"):
        fq.create_scorer("ediffiqa-free", backend="onnxruntime", precision="int8")
    ok = np.zeros((20, 112, 112, 3), np.uint8)
    assert ro.calibration_crops(ok, count=16).shape == (16, 112, 112, 3)
    for bad in (ok[:15], ok.astype(np.float32), ok[..., :1], "faces.txt", [1, 2]):
        with pytest.raises(InvalidArgumentError):
            ro.calibration_crops(bad)
    with pytest.raises(InvalidArgumentError, match="count"):
        ro.calibration_crops(ok, count=0)


def test_int8_cli_and_gate(capsys, tmp_path):
    from fiqa_sdk.cli import main

    assert main(["assess", "--scorer", "ediffiqa", "--scorer-backend", "onnxruntime",
                 "--scorer-precision", "int8"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["score"] == pytest.approx(0.409936, abs=0.03)
    assert main(["export", "onnx", "--scorer", "ediffiqa", "--int8", "--out",
                 str(tmp_path / "x.onnx")]) == 1
    assert "--calibration" in capsys.readouterr().err
    gate = fq.QualityGate(scorer="ediffiqa",
                          scorer_options={"backend": "onnxruntime", "precision": "int8"})
    loaded = fq.QualityGate.load(gate.save(tmp_path / "gate.json"))
    assert loaded.scorer.precision == "int8"
    # options the scorer accepts but JSON cannot hold (e.g. calibration crops as an array, or
    # a numpy integer): the gate works, saving it is a clear GateError
    odd = fq.QualityGate(scorer_options={"backend": "onnxruntime", "threads": np.int64(2)})
    with pytest.raises(GateError, match="JSON"):
        odd.save(tmp_path / "odd.json")
    assert not (tmp_path / "odd.json").exists()


def test_runtime_throughput_int8(tiny_lfw, tmp_path):
    from fiqa_bench import runtime as rt

    res = rt.run_regressor_throughput(images=2, rounds=1, batch_sizes=(2,), threads=(1,),
                                      backends=("torch", "onnxruntime-int8"), lfw_root=tiny_lfw,
                                      cache_dir=tmp_path / "c")
    rows = {r["backend"]: r for r in res["rows"]}
    assert set(rows) == {"torch", "onnxruntime-int8"}
    assert 0 < rows["onnxruntime-int8"]["max_abs_diff_vs_torch_1_thread"] < 0.1
    with pytest.raises(fq.errors.EvaluationError, match="no int8 graph"):
        from fiqa_sdk.quality.ediffiqa import shipped_weights

        rt.run_regressor_throughput(regressors={"diffiqa-r": str(shipped_weights("diffiqa-r"))},
                                    images=2, rounds=1, batch_sizes=(2,),
                                    threads=(1,), backends=("onnxruntime-int8",),
                                    lfw_root=tiny_lfw, cache_dir=tmp_path / "c")
