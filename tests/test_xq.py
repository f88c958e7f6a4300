"""lfw-xq (cross-quality LFW): determinism, the distribution, the build, the protocols on it."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fiqa_sdk.errors import FiqaError
from fiqa_sdk.eval.protocols import lfw_all_vs_all, read_lfw_pairs
from fiqa_bench.xq import (
    PARAM_FIELDS,
    XQ_SPEC,
    XQ_VERSION,
    apply_xq,
    build_lfw_xq,
    degrade_xq,
    lfw_xq_root,
    read_xq_params,
    xq_params,
    xq_seed,
)


def synthetic_image(seed: int = 20261122, size: int = 250) -> np.ndarray:
    """A textured 250x250 RGB test image from integer arithmetic and a fixed PCG64 seed."""
    rng = np.random.Generator(np.random.PCG64(seed))
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([(xx * 3 + yy) % 256, (yy * 2 + 40) % 256,
                     ((xx // 25 + yy // 25) % 2) * 160 + 40], axis=-1)
    tex = rng.integers(0, 48, size=(size, size, 3))
    return np.clip(base * 3 // 4 + tex, 0, 255).astype(np.uint8)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _sharpness(a: np.ndarray) -> float:
    g = a.astype(np.float64).mean(axis=2)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


# Pinned once (numpy 2.4, Pillow 13): sha256 of the degraded uint8 arrays.
SYNTH_SHA = "5465e7594c58e68e51eded0f5126868ed49ece3e82da4b7136c986b71e973d36"
SYNTH_PINNED = {
    "Synthetic_Face/Synthetic_Face_0004.jpg":  # exposure + noise + JPEG
        "f4ec2c83be1e4f32eba792212313db35cfeaf99cc8da0c17bbcf42e96dfaa525",
    "Synthetic_Face/Synthetic_Face_0006.jpg":  # Gaussian blur + JPEG
        "5ddc977a3600645f472d68032427a11f88d888825853cc955c4114164af57d4d",
    "Synthetic_Face/Synthetic_Face_0015.jpg":  # motion blur + JPEG
        "72403f655298cbbefa49e9cb109960e08ae27ea572c77e9fe21d897aed19e39b",
}
# (source pixels sha256, degraded pixels sha256) of three real LFW deep-funneled images.
LFW_PINNED = {
    "AJ_Cook/AJ_Cook_0001.jpg": (
        "2e9c5ea370620ada352d737ac1b0098bc0f0baae6f714eb18e0978934784980a",
        "7001ab068a4a67b82e6578bb8ae3eb30ba1d556fec86bc908b08d9ea91ddb273"),
    "Aaron_Pena/Aaron_Pena_0001.jpg": (
        "80c32c56da1cff230928db0acfdb3cf0859511caa891a7467cf9ab8d71691ab8",
        "070a1c8d9545b51a3cb417ec7e14b2e0a492b241c4eecbcf0c5afa55087c5e97"),
    "Abdel_Madi_Shabneh/Abdel_Madi_Shabneh_0001.jpg": (
        "cd1efdb4a8751492140752da8b5851b01ddaa308ab53edebd7fc09facad06d3b",
        "3a05c197df2337b1854c902490eb8a65cb2fb68bfc98b31e8fb3636c3518cfbc"),
}


def _names(n: int) -> list[str]:
    return [f"Person_{i // 4:04d}/Person_{i // 4:04d}_{i % 4 + 1:04d}.jpg" for i in range(n)]


# ---------------------------------------------------------------------------------------------
# determinism and the distribution
# ---------------------------------------------------------------------------------------------

def test_version_and_seed_is_sha256_of_name():
    assert XQ_VERSION == "v1" and XQ_SPEC["version"] == XQ_VERSION
    rel = "AJ_Cook/AJ_Cook_0001.jpg"
    expect = int.from_bytes(hashlib.sha256(f"lfw-xq/v1/{rel}".encode()).digest()[:16], "big")
    assert xq_seed(rel) == expect
    # only the last two path components matter, and the separator style does not
    assert xq_seed(Path("/some/where/images") / rel) == expect


def test_synthetic_pinned_checksums():
    img = synthetic_image()
    assert _sha(img) == SYNTH_SHA
    for rel, sha in SYNTH_PINNED.items():
        out, params = degrade_xq(img, rel)
        assert params["degraded"]
        assert out.shape == img.shape and out.dtype == np.uint8
        assert _sha(out) == sha, rel
        # the same again (no hidden state)
        assert _sha(degrade_xq(img, rel)[0]) == sha


def test_lfw_pinned_checksums(lfw_root):
    for rel, (src_sha, sha) in LFW_PINNED.items():
        img = np.asarray(Image.open(lfw_root / "images" / rel).convert("RGB"))
        if _sha(img) != src_sha:
            pytest.skip(f"{rel} decodes differently here (another libjpeg?)")
        out, params = degrade_xq(img, rel)
        assert params["degraded"]
        assert _sha(out) == sha, rel


def test_clean_images_are_unchanged():
    img = synthetic_image()
    rel = "Synthetic_Face/Synthetic_Face_0001.jpg"
    out, params = degrade_xq(img, rel)
    assert not params["degraded"] and params["severity"] == 0.0
    assert np.array_equal(out, img) and out is not img


def test_about_half_degraded_from_names_only():
    names = _names(600)
    flags = np.array([xq_params(n)["degraded"] for n in names])
    assert 0.43 < flags.mean() < 0.57  # binomial(600, 0.5): sd 0.02
    # the decision depends on the name only: the same answer again
    assert [xq_params(n)["degraded"] for n in names] == flags.tolist()


def test_parameters_within_documented_ranges():
    s = XQ_SPEC
    ps = [xq_params(n) for n in _names(800)]
    deg = [p for p in ps if p["degraded"]]
    assert len(deg) > 300
    for p in ps:
        assert set(p) == set(PARAM_FIELDS)
        assert 0.0 <= p["severity"] <= 1.0
        if not p["degraded"]:
            assert p["severity"] == 0.0 and p["blur"] == "none"
            others = [k for k in PARAM_FIELDS if k not in ("degraded", "severity", "blur")]
            assert all(p[k] is None for k in others)
            continue
        assert p["eye_dist_px"] is not None  # resolution: probability 1
        lo, hi = s["resolution"]["eye_dist_px"]
        assert lo <= p["eye_dist_px"] <= hi
        assert p["scale"] == pytest.approx(p["eye_dist_px"] / s["nominal_eye_dist_px"])
        assert p["down_interp"] in s["resolution"]["down_interp"]
        assert p["up_interp"] in s["resolution"]["up_interp"]
        assert p["blur"] in ("none", "gaussian", "motion")
        if p["blur"] == "gaussian":
            lo, hi = s["blur"]["gaussian_sigma"]
            assert lo <= p["blur_sigma"] <= hi
        if p["blur"] == "motion":
            lo, hi = s["blur"]["motion_length"]
            assert lo <= p["motion_length"] <= hi
            assert 0 <= p["motion_angle"] < 180
        if p["noise_sigma"] is not None:
            assert s["noise"]["sigma"][0] <= p["noise_sigma"] <= s["noise"]["sigma"][1]
            assert p["noise_mode"] in ("grey", "colour")
        if p["jpeg_quality"] is not None:
            assert isinstance(p["jpeg_quality"], int)
            assert s["jpeg"]["quality"][0] <= p["jpeg_quality"] <= s["jpeg"]["quality"][1]
        if p["exposure_ev"] is not None:
            assert s["exposure"]["ev"][0] <= p["exposure_ev"] <= s["exposure"]["ev"][1]
    # each component is applied about as often as documented (loose bounds)
    n = len(deg)
    rate = {
        "exposure": sum(p["exposure_ev"] is not None for p in deg) / n,
        "blur": sum(p["blur"] != "none" for p in deg) / n,
        "noise": sum(p["noise_sigma"] is not None for p in deg) / n,
        "jpeg": sum(p["jpeg_quality"] is not None for p in deg) / n,
    }
    for comp, r in rate.items():
        assert abs(r - s[comp]["p"]) < 0.1, (comp, r)
    sev = np.array([p["severity"] for p in deg])
    assert 0.15 < sev.mean() < 0.5 and sev.max() < 1.0 and sev.min() > 0.0


def test_degraded_images_are_worse():
    img = synthetic_image()
    worse_sharp = 0
    checked = 0
    for rel in _names(40):
        out, p = degrade_xq(img, rel)
        if not p["degraded"]:
            continue
        assert _psnr(out, img) < 30.0, rel
        if p["noise_sigma"] is None and (p["blur"] != "none" or p["eye_dist_px"] < 30):
            checked += 1
            worse_sharp += _sharpness(out) < 0.8 * _sharpness(img)
    assert checked >= 3 and worse_sharp == checked


def test_lfw_degraded_lower_psnr_and_sharpness(lfw_root):
    for rel in LFW_PINNED:
        img = np.asarray(Image.open(lfw_root / "images" / rel).convert("RGB"))
        out, p = degrade_xq(img, rel)
        assert _psnr(out, img) < 30.0
    # Aaron_Pena_0001: Gaussian blur and an inter-eye distance of ~10 px
    rel = "Aaron_Pena/Aaron_Pena_0001.jpg"
    img = np.asarray(Image.open(lfw_root / "images" / rel).convert("RGB"))
    assert _sharpness(degrade_xq(img, rel)[0]) < 0.5 * _sharpness(img)


def test_apply_rejects_non_rgb_uint8():
    p = xq_params("Synthetic_Face/Synthetic_Face_0004.jpg")
    with pytest.raises(FiqaError):
        apply_xq(np.zeros((10, 10), np.uint8), p, "Synthetic_Face/Synthetic_Face_0004.jpg")


# ---------------------------------------------------------------------------------------------
# building the folder
# ---------------------------------------------------------------------------------------------

@pytest.fixture()
def small_lfw(tmp_path) -> Path:
    """A tiny LFW-layout folder: 4 identities (3, 3, 2, 1 images) of synthetic JPEGs + pairs."""
    root = tmp_path / "lfw"
    counts = {"Alice_Able": 3, "Bob_Baker": 3, "Carol_Cole": 2, "Dan_Dunn": 1}
    seed = 0
    for name, k in counts.items():
        (root / "images" / name).mkdir(parents=True)
        for i in range(1, k + 1):
            seed += 1
            dst = root / "images" / name / f"{name}_{i:04d}.jpg"
            Image.fromarray(synthetic_image(seed)).save(dst, quality=90)
    (root / "pairs.txt").write_text(
        "2\nAlice_Able\t1\t2\nBob_Baker\t2\t3\n"
        "Alice_Able\t3\tDan_Dunn\t1\nCarol_Cole\t1\tBob_Baker\t1\n")
    return root


def test_build_layout_params_and_protocols(small_lfw, tmp_path):
    cache = tmp_path / "cache"
    out = build_lfw_xq(small_lfw, cache)
    assert out == lfw_xq_root(cache) == cache / f"lfw-xq-{XQ_VERSION}"
    src = sorted(p.relative_to(small_lfw / "images").as_posix()
                 for p in (small_lfw / "images").rglob("*.jpg"))
    got = sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.jpg"))
    assert got == src and len(got) == 9
    for rel in got:  # every stored file is a JPEG of the original size
        with Image.open(out / "images" / rel) as im:
            assert im.format == "JPEG" and im.size == (250, 250)
    # params.csv: one row per image, matching xq_params
    rows = read_xq_params(out)
    assert sorted(rows) == src
    with open(out / "params.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ["file", *PARAM_FIELDS]
    for rel, row in rows.items():
        p = xq_params(rel)
        assert row["degraded"] == ("1" if p["degraded"] else "0")
        assert float(row["severity"]) == pytest.approx(p["severity"], abs=1e-6)
    man = json.loads((out / "manifest.json").read_text())
    assert man["version"] == XQ_VERSION and man["n_images"] == 9 and sorted(man["files"]) == src
    # the existing protocols work on the built folder
    pp = read_lfw_pairs(out)
    assert len(pp.pairs) == 4 and pp.mated.sum() == 2
    assert all(p.is_file() and out in p.parents for p in pp.paths)
    av = lfw_all_vs_all(out)
    assert len(av.paths) == 9 and av.n_mated == 3 + 3 + 1
    assert all(out in p.parents for p in av.paths)


def test_build_is_idempotent_and_repairs(small_lfw, tmp_path):
    cache = tmp_path / "cache"
    out = build_lfw_xq(small_lfw, cache)
    files = sorted((out / "images").rglob("*.jpg"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    params_before = (out / "params.csv").read_bytes()
    build_lfw_xq(small_lfw, cache)  # nothing to do
    for p, (data, mtime) in before.items():
        assert p.read_bytes() == data and p.stat().st_mtime_ns == mtime
    assert (out / "params.csv").read_bytes() == params_before
    # a deleted or altered image is rewritten, identically
    files[0].unlink()
    files[1].write_bytes(b"broken")
    build_lfw_xq(small_lfw, cache)
    assert files[0].read_bytes() == before[files[0]][0]
    assert files[1].read_bytes() == before[files[1]][0]
    # a rebuild from scratch elsewhere gives the same bytes
    out2 = build_lfw_xq(small_lfw, tmp_path / "cache2")
    for p in files:
        assert (out2 / p.relative_to(out)).read_bytes() == before[p][0]


def test_build_rejects_foreign_manifest_and_bad_places(small_lfw, tmp_path):
    cache = tmp_path / "cache"
    out = build_lfw_xq(small_lfw, cache, relpaths=["Alice_Able/Alice_Able_0001.jpg"])
    assert [p.name for p in (out / "images").rglob("*.jpg")] == ["Alice_Able_0001.jpg"]
    man = json.loads((out / "manifest.json").read_text())
    man["spec"]["p_degrade"] = 0.9
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(FiqaError, match="another distribution"):
        build_lfw_xq(small_lfw, cache)
    with pytest.raises(FiqaError, match="inside the source"):
        build_lfw_xq(small_lfw, small_lfw / "cache")
    with pytest.raises(FiqaError, match="not found"):
        build_lfw_xq(tmp_path / "nowhere", cache)


def test_build_on_real_lfw_subset(lfw_root, tmp_path):
    """A few real LFW identities copied to tmp_path: same names, pairs.txt-compatible."""
    names = ["AJ_Cook", "Aaron_Pena", "Abdel_Madi_Shabneh", "Abdoulaye_Wade", "Abdel_Nasser_Assidi"]
    src = tmp_path / "lfw"
    for n in names:
        shutil.copytree(lfw_root / "images" / n, src / "images" / n)
    (src / "pairs.txt").write_text(
        "1\nAbdoulaye_Wade\t1\t2\nAJ_Cook\t1\tAaron_Pena\t1\n")
    out = build_lfw_xq(src, tmp_path / "cache")
    pp = read_lfw_pairs(out)
    assert len(pp.pairs) == 2 and all(p.is_file() for p in pp.paths)
    av = lfw_all_vs_all(out)
    assert sorted(av.identities) == sorted(names)
    rows = read_xq_params(out)
    for rel in LFW_PINNED:
        assert rows[rel]["degraded"] == "1"
        stored = np.asarray(Image.open(out / "images" / rel).convert("RGB"))
        clean = np.asarray(Image.open(src / "images" / rel).convert("RGB"))
        assert _psnr(stored, clean) < 30.0
