"""The ``--quick`` mode of the fiqa_bench experiments, with checks of their outputs.

Each test runs ``fiqa-bench run NAME --quick ...`` in this process end to end on its tiny input
and checks the script's outputs: their structure, the counts the tiny input implies, and values
that must hold (finite, in range, consistent with each other). The plain ``--quick`` run of an
experiment is ``conftest.quick_run(NAME)``, the one run that its smoke test in
test_bench_experiments.py also checks; runs with other options go through
``conftest.load_script(NAME).main([...])``. Caches and outputs go to temporary folders; the LFW
scripts share one feature cache (``lfw_quick_cache``, the session's ``$FIQA_CACHE/lfw``: the
200-pair subset of the other ``--quick`` benchmarks), so only the first of them detects and
embeds those images. Real data: ``../shared/data/lfw`` and ``../shared/data/celeba-subset``
(skipped when absent).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
from conftest import CELEBA_ROOT, MICRO_UNET  # noqa: E402
from conftest import fake_lfw as make_fake_lfw  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


from conftest import bench_results, load_script, quick_run  # noqa: E402


def _load_script(name: str):
    return load_script(name, "_bench_quick_")


def _json_blocks(text: str) -> list:
    """Every JSON value printed on stdout that starts at the beginning of a line."""
    dec, out, i = json.JSONDecoder(), [], 0
    for m in re.finditer(r"^[{\[]", text, flags=re.M):
        if m.start() < i:
            continue
        try:
            obj, end = dec.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        out.append(obj)
        i = end
    return out


def _quick_pairs(lfw_root: Path, per_fold: int | None = None):
    from fiqa_sdk.eval import protocols

    return protocols.pairs_subset(protocols.read_lfw_pairs(lfw_root),
                                  per_fold or protocols.QUICK_PAIRS_PER_FOLD)


def _quick_all_vs_all(lfw_root: Path, per_fold: int | None = None):
    from fiqa_sdk.eval import protocols

    p = _quick_pairs(lfw_root, per_fold)
    return protocols.identity_protocol(p.paths, [Path(f).parent.name for f in p.paths])


@pytest.fixture(scope="module")
def celeba_root() -> Path:
    if not (CELEBA_ROOT / "identities.csv").is_file():
        pytest.skip(f"celeba-subset not found at {CELEBA_ROOT}")
    return CELEBA_ROOT


@pytest.fixture(scope="module")
def micro_weights(tmp_path_factory):
    """A very small random DifFIQA denoiser (``conftest.MICRO_UNET``)."""
    import torch

    from fiqa_sdk.diffusion.unet import UNet
    from fiqa_sdk.train.ddpm import export_weights

    torch.manual_seed(0)
    return export_weights(UNet("tiny", **MICRO_UNET), tmp_path_factory.mktemp("w") / "unet.safetensors")


@pytest.fixture(scope="module")
def fake_lfw4(astronaut, tmp_path_factory) -> Path:
    """An LFW-shaped folder of 4 astronaut JPEGs (one per identity)."""
    return make_fake_lfw(tmp_path_factory.mktemp("lfw4"), astronaut, 4)


# -- no data / synthetic data ---------------------------------------------------------------
def test_bench_edc_quick():
    run = quick_run("bench_edc")
    assert run.exit_code == 0
    lines = run.stdout.strip().splitlines()
    pat = re.compile(r"^(.+): ([\d.]+) s median of 1 \(M=2,500, K=100,000; pAUC@0\.2 "
                     r"norm=([\d.]+), threshold=([\d.-]+), fmr_achieved=([\d.e+-]+)\)$")
    rows = [pat.match(line) for line in lines]
    assert all(rows), lines
    assert [r[1] for r in rows] == ["FNMR-EDC", "FNMR-EDC + FMR-EDC"]
    for r in rows:
        assert 0 <= float(r[2]) < 30
        assert 0.5 < float(r[3]) < 1.5  # random qualities: flat EDC, normalized pAUC ~1
        assert 0 < float(r[5]) <= 1e-3
    assert rows[0][3] == rows[1][3] and rows[0][4] == rows[1][4]  # same FNMR-EDC, threshold


def test_arcface_prelu_quick(fake_lfw4, capsys):
    mod = _load_script("arcface_prelu")
    assert mod.main(["--quick", "--lfw", str(fake_lfw4)]) == 0
    (res,) = _json_blocks(capsys.readouterr().out)
    assert res["faces"] == mod.QUICK["faces"] == 4 and res["source"] == "LFW"
    assert set(res["ms_per_face"]) == {"fast_prelu", "plain"}
    assert all(math.isfinite(v) and v > 0 for v in res["ms_per_face"].values())
    assert res["speedup"] == pytest.approx(res["ms_per_face"]["plain"]
                                           / res["ms_per_face"]["fast_prelu"])
    assert res["max_abs_diff"] < 1e-3 and res["min_cosine"] > 0.9999  # the rewrite is exact


def test_diffusion_presets_quick():
    from fiqa_sdk.diffusion.unet import UNet, count_parameters

    run = quick_run("diffusion_presets")
    assert run.exit_code == 0
    out = run.stdout
    (row,) = [b for b in _json_blocks(out) if isinstance(b, dict)]
    assert row["preset"] == "tiny"
    assert row["params_M"] == round(count_parameters(UNet("tiny")) / 1e6, 2)
    for k in ("fwd20_ms", "fwd20_cpu_ms", "train16_ms", "train16_cpu_ms"):
        assert row[k] > 0
    assert row["diffiqa_s_per_face"] == pytest.approx(row["fwd20_ms"] * 6 / 1000, abs=0.051)
    assert f"| tiny | {row['params_M']}M | {row['fwd20_ms']} (CPU" in out
    assert list(run.tmp.glob("fiqa-bench-*"))  # the trainer's scratch went to the tmp folder


# -- celeba-subset --------------------------------------------------------------------------
def test_diffiqa_settings_quick(celeba_root):
    """Held-out celeba identities, the shipped denoiser, one chain and one one-step setting."""
    from fiqa_sdk.train.data import list_training_images
    from fiqa_sdk.train.distill import split_identities

    mod = _load_script("diffiqa_settings")
    run = quick_run("diffiqa_settings")  # $FIQA_CELEBA, a cache of its own
    assert run.exit_code == 0
    out = run.out
    # the tiny set: QUICK_FACES images of each of QUICK_IDENTITIES held-out identities
    rows, _ = list_training_images(celeba_root)
    ident = {path.name: i for _, path, i in rows}
    ids = np.array([i for _, _, i in rows])
    held = set(ids[split_identities(ids, 0.1, 0)].tolist())
    people = sorted((out / "quick-data").glob("*/*"))
    assert len(people) == mod.QUICK_IDENTITIES
    for person in people:
        files = list(person.iterdir())
        assert len(files) == mod.QUICK_FACES
        assert {ident[f.name] for f in files} == {int(person.name)} <= held

    res = json.loads((out / "settings.json").read_text())
    ev = res["evaluation"]
    assert ev["set"] == "held-out celeba-subset identities"
    n = mod.QUICK_IDENTITIES * mod.QUICK_FACES
    assert n - 3 <= ev["faces"] <= n  # an image without a detected face would be skipped
    arc = ev["arcface"]
    assert arc["mated"] > 0 and arc["nonmated"] > 0 and 0 < arc["fnmr0"] < 1
    assert set(res["settings"]) == {"chain:2:1", "fast:5:1"}
    assert res["settings"]["chain:2:1"]["unet_passes_per_face"] == 2 * 3  # 2 DDIM steps + x0
    assert res["settings"]["fast:5:1"]["unet_passes_per_face"] == 2
    for s in res["settings"].values():
        assert s["s_per_face"] > 0
        assert set(s["pauc"]) == set(mod.TERMS)
        for term in mod.TERMS:
            for lim in ("pauc_0.2", "pauc_0.3"):
                assert 0 <= s["pauc"][term]["arcface"][lim] <= 2
        se = s["pauc"]["eq7"]["se_vs_embedding-norm"]["arcface"]
        assert all(math.isfinite(v) and v >= 0 for v in se.values())
        assert all(-1 <= v <= 1 for v in s["mean_cos"].values())
    refs = res["references"]
    assert set(refs) == {"embedding-norm", "random (mean over seeds)", "random (std over seeds)"}
    assert 0.5 < refs["random (mean over seeds)"]["arcface"]["pauc_0.2"] < 1.5
    assert sorted(p.name for p in out.glob("cos_*.npz")) == ["cos_quick_chain_2_1.npz",
                                                             "cos_quick_fast_5_1.npz"]
    md = (out / "settings.md").read_text()
    assert "| chain:2:1 | 6 |" in md and "| fast:5:1 | 2 |" in md


def test_diffiqa_settings_quick_lfw_pairs(lfw_root, lfw_quick_cache, micro_weights, tmp_path):
    """``--lfw-pairs --quick`` with a tiny random denoiser and one setting (explicit options
    win over the quick defaults): 60 LFW pairs, every eq. 7 term, the two FR references."""
    mod = _load_script("diffiqa_settings")
    out = tmp_path / "out"
    assert mod.main(["--quick", "--lfw-pairs", "--lfw", str(lfw_root), "--cache",
                     str(lfw_quick_cache), "--weights", str(micro_weights), "--settings",
                     "fast:5:1", "--out", str(out)]) == 0
    res = json.loads((out / "settings.json").read_text())
    ev = res["evaluation"]
    proto = _quick_pairs(lfw_root, mod.QUICK_LFW_PAIRS_PER_FOLD)
    assert ev["set"] == "LFW pairs.txt" and ev["faces"] == len(proto.paths)
    assert ev["arcface"]["mated"] == ev["arcface"]["nonmated"] == 10 * mod.QUICK_LFW_PAIRS_PER_FOLD
    assert list(res["settings"]) == ["fast:5:1"]  # --settings given: not the quick default
    assert set(res["references"]) == {"embedding-norm", "flip-consistency",
                                      "random (mean over seeds)", "random (std over seeds)"}
    defined = ev["arcface"]["fnmr0"] > 0  # no failing mated pair: normalized pAUC undefined
    s = res["settings"]["fast:5:1"]
    assert set(s["pauc"]) == set(mod.TERMS) and s["unet_passes_per_face"] == 2
    for v in [*s["pauc"].values(), *res["references"].values()]:
        assert all(math.isfinite(x) == defined for x in v["arcface"].values())
    assert all(-1 <= v <= 1 for v in s["mean_cos"].values())
    assert s["mean_cos"]["f"] > 0.9  # flip cosine of real LFW faces
    assert (out / "cos_quick_fast_5_1.npz").is_file()


def test_ediffiqa_ablation_passes_the_training_options(celeba_root, tmp_path, monkeypatch):
    """The ``fiqa train ediffiqa`` command of each setting: the --quick training options and
    ``--degraded-copies``, as the real ``fiqa`` parser reads them (the trainings themselves:
    the test below; training with degraded copies: test_train_api.py)."""
    import fiqa_sdk.cli
    from fiqa_sdk.cli import build_parser

    class Stop(Exception):
        pass

    cmds = []

    def fake_fiqa(argv):
        cmds.append(argv)
        raise Stop

    monkeypatch.setenv("FIQA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fiqa_sdk.cli, "main", fake_fiqa)
    mod = _load_script("ediffiqa_ablation")
    with pytest.raises(Stop):
        mod.main(["--quick", "--data", str(celeba_root), "--out", str(tmp_path / "out"),
                  "--degraded-copies", "2", "--settings", "0.1:0.9"])
    (cmd,) = cmds
    assert cmd[:2] == ["train", "ediffiqa"]
    args = build_parser().parse_args(cmd)
    assert (args.eps, args.theta, args.epochs, args.degraded_copies) == (0.1, 0.9, 1, 2)
    assert (args.n, args.fast, args.threads, args.min_count) == (1, True, 2, 1)
    assert args.out == str(tmp_path / "out" / "eps0.1-theta0.9")
    data = Path(args.data)  # the quick training folder: QUICK_FACES of QUICK_IDENTITIES people
    assert data.parent == tmp_path / "out" / "quick-data"
    assert len(list(data.glob("*/*"))) == mod.QUICK_IDENTITIES * mod.QUICK_FACES


def test_ediffiqa_ablation_quick(celeba_root, lfw_root, lfw_quick_cache, tmp_path, monkeypatch,
                                 capsys):
    """Two eDifFIQA trainings on 30 x 4 celeba faces, their held-out table, then the LFW
    evaluation of ``regressors_lfw.py --quick``."""
    monkeypatch.setenv("FIQA_CACHE", str(tmp_path / "cache"))  # labels, aligned faces
    mod = _load_script("ediffiqa_ablation")
    out = tmp_path / "out"
    assert mod.main(["--quick", "--data", str(celeba_root), "--lfw", str(lfw_root),
                     "--lfw-cache", str(lfw_quick_cache), "--out", str(out)]) == 0
    names = []
    for eps, theta in mod.QUICK["settings"]:
        meta = json.loads((out / f"eps{eps:g}-theta{theta:g}" / "ediffiqa_mbf.json").read_text())
        assert (meta["config"]["eps"], meta["config"]["theta"]) == (eps, theta)
        assert meta["config"]["epochs"] == 1 and meta["config"]["min_count"] == 1
        assert meta["teacher"]["fast"] is True and meta["teacher"]["n"] == 1
        assert meta["data"]["faces"] == mod.QUICK_IDENTITIES * mod.QUICK_FACES
        assert meta["data"]["identities"] == mod.QUICK_IDENTITIES
        assert "degraded_faces" not in meta["data"]  # no --degraded-copies
        assert meta["labels"]["faces"] == meta["data"]["faces"]
        (final,) = meta["history"]
        assert 0 <= final["val_pauc_0.2"] <= 2 and 0 <= final["val_pauc_0.3"] <= 2
        assert -1 <= final["val_spearman_q"] <= 1
        names.append(f"eps={eps:g} theta={theta:g}")
    table = (out / "held_out.md").read_text()
    rows = re.findall(r"^\| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.-]+) \|$", table,
                      flags=re.M)
    assert sorted((float(e), float(t)) for e, t, *_ in rows) == sorted(mod.QUICK["settings"])
    assert [float(r[2]) for r in rows] == sorted(float(r[2]) for r in rows)  # best first
    assert re.search(r"^\| teacher \| \| [\d.]+ \| [\d.]+ \| \|$", table, flags=re.M)
    lfw = bench_results(out / "lfw")
    res = lfw["lfw-pairs-arcface"]
    assert res["n_mated"] == 100 and res["n_nonmated"] == 100
    scorers = {r["scorer"]: r for r in res["results"]}
    assert set(scorers) == {*names, "random", "inter-eye", "embedding-norm"}
    assert all(math.isfinite(r["fnmr0"]) and r["n_mated"] == 100 for r in scorers.values())
    assert set(lfw) == {"lfw-pairs-arcface"}  # --quick: lfw-pairs only
    assert "| eps=0.5 theta=0.5 |" in capsys.readouterr().out


# -- LFW ------------------------------------------------------------------------------------
def test_lfw_verification_quick(lfw_root):
    run = quick_run("lfw_verification")  # $FIQA_LFW, the session's cache
    assert run.exit_code == 0
    (row,) = run.results["rows"]
    assert (row["detector"], row["embedder"]) == ("retinaface", "arcface")
    assert row["pairs"] == 200 and row["images"] == len(_quick_pairs(lfw_root).paths)
    assert row["accuracy"] >= 0.95 and 0 <= row["std"] < 0.1  # ArcFace on LFW: ~99.5 %
    assert row["no_face"] <= 3
    assert row["detection_rate"] == pytest.approx(1 - row["no_face"] / row["images"])


def test_random_edc_spread_quick(lfw_root, lfw_quick_cache, tmp_path):
    mod = _load_script("random_edc_spread")
    # lfw-all over the quick images; at FMR 1e-3 no mated pair fails with ArcFace, so the
    # threshold is taken at FMR 1e-5 (the top non-mated score) for a defined pAUC
    out = tmp_path / "all.json"
    assert mod.main(["--quick", "--lfw", str(lfw_root), "--cache", str(lfw_quick_cache),
                     "--fmr", "1e-5", "--out", str(out)]) == 0
    res = bench_results(out)
    proto = _quick_all_vs_all(lfw_root)
    assert res["protocol"] == "lfw-all" and res["seeds"] == mod.QUICK["seeds"] == 20
    assert res["n_mated"] == proto.n_mated
    assert res["failing_mated_pairs"] >= 1
    assert res["fnmr0"] == pytest.approx(res["failing_mated_pairs"] / res["n_mated"])
    for lim in ("0.2", "0.3"):
        s = res[f"pauc_norm_{lim}"]
        assert all(math.isfinite(v) for v in s.values())
        assert 0 <= s["p5"] <= s["mean"] <= s["p95"] <= 2 and s["std"] >= 0
    # lfw-pairs (200 pairs), the default FMR: NaN exactly when no mated pair fails
    out = tmp_path / "pairs.json"
    assert mod.main(["--quick", "--protocol", "lfw-pairs", "--lfw", str(lfw_root), "--cache",
                     str(lfw_quick_cache), "--out", str(out)]) == 0
    res = bench_results(out)
    assert res["n_mated"] == 100
    assert math.isfinite(res["pauc_norm_0.2"]["mean"]) == (res["failing_mated_pairs"] > 0)


def test_gate_filter_lfw_quick(lfw_root, lfw_quick_cache, tmp_path):
    """QualityGate.filter over the quick lfw-all images, checked against the EDC toolkit."""
    mod = _load_script("gate_filter_lfw")
    out = tmp_path / "gate.json"
    assert mod.main(["--quick", "--edc-protocol", "lfw-all", "--face-policy", "central",
                     "--lfw", str(lfw_root), "--cache", str(lfw_quick_cache),
                     "--out", str(out)]) == 0
    res = bench_results(out)
    proto = _quick_all_vs_all(lfw_root, mod.QUICK_PAIRS_PER_FOLD)
    assert res["images"] == res["scored"] == len(proto.paths)
    assert res["kept"] == res["expected_kept"] == res["scored"] - math.floor(0.2 * res["scored"])
    assert res["kept"] + res["rejected"] == res["images"]
    assert [i for i, _ in res["rss_mb_by_images"]][-1] == res["images"]
    edc = res["edc"]
    assert edc["all_equal"] and edc["images"] == res["images"]
    assert [c["image_discard"] for c in edc["checks"]] == [0.05, 0.1, 0.2, 0.3, 0.5]
    kept = [c["images_kept"] for c in edc["checks"]]
    assert kept == sorted(kept, reverse=True) and kept[2] == res["kept"]
    assert all(0 <= c["pair_discard"] <= 1 and c["equal"] for c in edc["checks"])
    assert edc["gate_edc"]["n_mated"] == proto.n_mated
    assert edc["gate_edc"]["n_nonmated"] == proto.n_nonmated
    # the gate (one joint pass) == `fiqa-bench quality`'s features (embedder and scorer apart),
    # to float tolerance
    g, t = edc["gate_edc"], edc["toolkit_edc"]
    assert (g["n_mated"], g["n_nonmated"], g["mated_fails"]) == (t["n_mated"], t["n_nonmated"],
                                                                  t["mated_fails"])
    assert g["threshold"] == pytest.approx(t["threshold"], abs=1e-5)
    tv = edc["toolkit_vs_gate"]
    assert tv["max_abs_quality_diff"] < 1e-4 and tv["max_abs_embedding_diff"] < 1e-5
    assert tv["max_abs_pauc_diff"] < 1e-3


def test_lfw_detection_rate_quick(lfw_root):
    mod = _load_script("lfw_detection_rate")
    run = quick_run("lfw_detection_rate")
    assert run.exit_code == 0
    rows = run.results["rows"]
    assert [r["detector"] for r in rows] == ["retinaface", "mtcnn"]
    for r in rows:
        assert r["images"] == mod.QUICK_IMAGES == 20
        assert r["rate"] == r["found"] / r["images"] and len(r["missed"]) == r["images"] - r["found"]
        assert r["found"] >= 18  # LFW: one centred face per image
    assert rows[0]["found"] == 20  # RetinaFace finds all 13,233
    assert "| retinaface | 20 | 20 | 100.00 % |" in run.stdout


def test_pipeline_throughput_quick(lfw_root):
    mod = _load_script("pipeline_throughput")
    run = quick_run("pipeline_throughput")
    assert run.exit_code == 0
    rows = run.results["rows"]
    assert [r["detector"] for r in rows] == mod.QUICK["detectors"] == ["retinaface", "scrfd"]
    for r in rows:
        stages = [r[f"{k}_ms"] for k in ("decode", "detect", "align", "embed")]
        assert all(v >= 0 for v in stages) and r["detect_ms"] > 0 and r["embed_ms"] > 0
        assert r["total_ms"] >= sum(stages) - 0.05  # rounded to 0.01 ms each
        assert r["images_per_s"] == pytest.approx(1000 / r["total_ms"], rel=0.01, abs=0.06)


def test_score_ranges_quick(lfw_root):
    import fiqa_sdk as fq

    run = quick_run("score_ranges")
    assert run.exit_code == 0
    out = run.stdout
    assert out.startswith("4 LFW images of 4 identities (seed 0)")
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^\| ([a-z+-]+) \| (.+) \|$", line)
        if m and m[1] != "scorer":
            rows[m[1]] = [float(v) for v in m[2].split(" | ")]
    assert set(rows) == set(fq.list_scorers())
    for name, (lo, med, hi, sharp, blurred) in rows.items():
        assert all(math.isfinite(v) for v in (lo, med, hi, sharp, blurred)), name
        assert lo <= med <= hi, name
    # a Gaussian blur of sigma 8 px is a clearly worse image for every quality measure
    for name in ("sharpness", "embedding-norm", "flip-consistency", "diffiqa", "ediffiqa",
                 "diffiqa-r", "ediffiqa-free", "det-score", "diffiqa-r+norm", "ediffiqa+norm"):
        assert rows[name][4] < rows[name][3], name


def test_xq_severity_spearman_quick(lfw_root):
    from fiqa_sdk.eval.evaluate import BASELINE_SCORERS

    mod = _load_script("xq_severity_spearman")
    run = quick_run("xq_severity_spearman")  # a cache of its own: lfw-xq images and features
    assert run.exit_code == 0
    built = list(run.cache.glob("lfw-xq-*/images/*/*.jpg"))
    assert len(built) == mod.QUICK_IMAGES == 60  # only the quick images were degraded
    m = re.search(r"^lfw-xq lfw-xq-\S+: 60 images, (\d+) degraded$", run.stdout, flags=re.M)
    assert m and 10 <= int(m[1]) <= 50  # about half of lfw-xq is degraded
    rows = {r["scorer"]: r for r in run.results["rows"]}
    assert list(rows) == list(BASELINE_SCORERS)
    for r in rows.values():
        assert -1 <= r["spearman_all"] <= 1 and -1 <= r["spearman_degraded"] <= 1
    # the FR-based baselines do rank the degradation strength
    assert rows["embedding-norm"]["spearman_all"] > 0.2
    assert rows["flip-consistency"]["spearman_all"] > 0.2


# -- one-off derivations / parity checks ----------------------------------------------------
def test_mbf_torch_vs_onnx_quick(lfw_root):
    run = quick_run("mbf_torch_vs_onnx")  # $FIQA_LFW, --threads 1 (the default)
    assert run.exit_code == 0
    out = run.stdout
    assert out.startswith("batch 8 aligned LFW faces, 1 thread(s), median of 1 ")
    res = json.loads(out.strip().splitlines()[-1])
    assert set(res["faces_per_s"]) == {"torch", "onnxruntime"}
    assert all(v > 0 for v in res["faces_per_s"].values())
    assert all(len(v) == 1 for v in res["times_s"].values())
    assert res["min_cos"] > 0.9999  # the torch port is the ONNX model


def test_derive_dlib_template_quick(lfw_root):
    pytest.importorskip("dlib")
    from fiqa_sdk.embed.dlib import DLIB_CHIP_TEMPLATE

    run = quick_run("derive_dlib_template")
    assert run.exit_code == 0
    out = run.stdout
    m = re.search(r"^faces: (\d+) of 10 images$", out, flags=re.M)
    assert m and int(m[1]) >= 8
    m = re.search(r"mean \|pixel diff\| ([\d.]+) \(of 255\)", out)
    assert m and float(m[1]) < 3  # the rebuilt chip mapping is dlib's
    tpl = np.array([[float(x), float(y)] for x, y in
                    re.findall(r"^    \[([\d.]+), ([\d.]+)\],$", out, flags=re.M)])
    assert tpl.shape == (5, 2) and np.abs(tpl - DLIB_CHIP_TEMPLATE).max() < 5
    cos = re.findall(r"^cosine\(dlib chip, aligned chip\) with .+: mean ([\d.]+) ", out, flags=re.M)
    assert len(cos) == 2 and all(float(c) > 0.98 for c in cos)


def test_ensemble_cost_quick(tmp_path, capsys, monkeypatch):
    """``ensemble_cost.py --quick``: the shipped diffiqa-r + ediffiqa-free as a two-member
    ``RegressorEnsemble`` (checked equal to the mean of its members), timed side by side with
    the first member alone, in torch and in onnxruntime."""
    run = quick_run("ensemble_cost")
    assert run.exit_code == 0
    res = run.results
    assert res["members"] == 2 and res["faces"] == 32 and res["rounds"] == 2
    assert all(len(v) == 2 and all(x > 0 for x in v) for v in res["all_ms_per_face"].values())
    assert res["ratio"] == pytest.approx(res["ms_per_face"]["ensemble"] / res["ms_per_face"]["single"],
                                         abs=2e-3)
    assert res["backend"] == "torch"
    # the same through onnxruntime (both exported once), two inferences at once
    monkeypatch.setenv("FIQA_CACHE", str(tmp_path / "cache"))  # the onnxruntime graphs
    mod = _load_script("ensemble_cost")
    out = tmp_path / "cost.json"
    assert mod.main(["--quick", "--backend", "onnxruntime", "--threads", "2", "--out", str(out)]) == 0
    res = bench_results(out)
    assert res["backend"] == "onnxruntime" and res["threads"] == 2 and res["ratio"] > 0
    assert mod.main(["--regressor", "only-one.safetensors"]) == 2  # a usage error
    from fiqa_sdk.quality.ediffiqa import shipped_weights

    # an ensemble file is not a member
    assert mod.main(["--regressor", str(shipped_weights("ediffiqa")),
                     "--regressor", str(shipped_weights("diffiqa-r"))]) == 2


def test_paired_pauc_ci_quick(lfw_root, lfw_quick_cache):
    """``paired_pauc_ci.py --quick``: the identity bootstrap over the quick all-vs-all images."""
    mod = _load_script("paired_pauc_ci")
    run = quick_run("paired_pauc_ci")
    assert run.exit_code == 0
    res = run.results
    assert (res["a"], res["b"], res["boot"]) == ("inter-eye", "random", 50)
    assert res["failing_mated_pairs"] >= 1 and 1 <= res["identities_with_failing_pairs"]
    assert res["identities"] == len(np.unique(_quick_all_vs_all(lfw_root).labels[
        np.asarray(_quick_all_vs_all(lfw_root).mated_pairs)[:, 0]]))
    for r in res["limits"].values():
        assert r["diff"] == pytest.approx(r["a"] - r["b"])
        assert r["ci95_diff"][0] <= r["ci95_diff"][1] and 0 <= r["share_a_lower"] <= 1
    # at FMR 1e-3 no mated pair of these images fails: undefined, said, exit status 2
    assert mod.main(["--quick", "--fmr", "1e-3", "--lfw", str(lfw_root), "--cache",
                     str(lfw_quick_cache)]) == 2



@pytest.mark.lfw
def test_lfw_gate_defaults_quick(lfw_root):
    mod = _load_script("lfw_gate_defaults")
    run = quick_run("lfw_gate_defaults")  # --quick compares --policies largest
    assert run.exit_code == 0 and mod.QUICK == {"policies": ["largest"], "pairs_per_fold": 3}
    r = run.results
    assert r["pairs"] == 60 and 60 < r["images"] <= 120
    default, largest = r["rows"]
    assert default["face_policy"] == "subject (default)" and largest["face_policy"] == "largest"
    assert 0.9 <= default["accuracy"] <= 1.0 and default["differs_from_default"] == 0
    assert 0 <= largest["differs_from_default"] <= r["images_with_several_faces"]
    assert r["ambiguous_images"] <= r["images_with_several_faces"] < r["images"]
    assert "| subject (default) |" in run.stdout


@pytest.mark.lfw
def test_default_speed_quick(lfw_root):
    run = quick_run("default_speed")
    assert run.exit_code == 0
    r = run.results
    assert r["gate"]["joint"] and r["gate"]["face_policy"] == "subject"
    assert r["scorer"]["backend"] == "onnxruntime"
    assert r["pipeline_ms"] > 0 and r["gate_assess_ms"] > 0
    assert r["ratio"] == pytest.approx(r["gate_assess_ms"] / r["pipeline_ms"])
    assert r["scorer_crops"] == 32 and r["scorer_faces_s"] > 0 and r["filter_images_s"] > 0
    assert "ratio gate / pipeline" in run.stdout


@pytest.mark.slow  # three fresh processes, two local Ray instances: ~40 s on 2 busy cores
def test_ray_filter_quick(lfw_root, tmp_path, capsys):
    pytest.importorskip("ray")
    mod = _load_script("ray_filter")
    out, md = tmp_path / "ray.json", tmp_path / "ray.md"
    assert mod.main(["--quick", "--images", "6", "--shard-size", "3", "--lfw", str(lfw_root),
                     "--out", str(out), "--md", str(md)]) == 0
    res = bench_results(out)
    assert res["images"] == 6 and res["quick"] and res["cpus"] >= 1
    rows = {(r["kind"], r["n"]): r for r in res["rows"]}
    assert set(rows) == {("single", 0), ("ray", 1), ("ray", 2)}
    one, two, single = rows[("ray", 1)], rows[("ray", 2)], rows[("single", 0)]
    assert one["shards"] == two["shards"] == 2
    for r in rows.values():
        assert r["images_per_s"] == pytest.approx(6 / r["seconds"], rel=0.01)
        assert 50 < r["driver_peak_rss_mb"] < 4000
    assert one["speedup_vs_1_actor"] == 1.0 and one["scaling_efficiency"] == 1.0
    assert two["speedup_vs_1_actor"] == pytest.approx(two["images_per_s"] / one["images_per_s"],
                                                      abs=1e-3)
    assert two["scaling_efficiency"] == pytest.approx(two["speedup_vs_1_actor"] / 2, abs=1e-3)
    assert two["vs_best_single"] == pytest.approx(two["images_per_s"] / single["images_per_s"],
                                                  abs=1e-3)
    eq = res["equal_to_gate_filter"]
    assert eq["same_kept"] and eq["same_unscored"] and eq["max_abs_score_diff"] < 1e-5
    table = md.read_text()
    assert table.startswith("6 LFW images") and "| ray_filter | 2 x 1 |" in table
    assert table.strip() in capsys.readouterr().out
