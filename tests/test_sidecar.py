"""The weights sidecar helpers (fiqa_sdk._weights: sidecar_path, write_sidecar, read_sidecar):
every weights file the SDK writes or loads goes through them. No model or data is read."""

from __future__ import annotations

import hashlib
import json

import pytest

from fiqa_sdk._weights import read_sidecar, sidecar_path, write_sidecar
from fiqa_sdk.errors import FiqaError, WeightsError


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"not really tensors, but bytes to hash")
    return path


def test_sidecar_path():
    assert sidecar_path("a/b/model.safetensors").as_posix() == "a/b/model.json"
    assert sidecar_path("w/ediffiqa_mbf_x3.int8.onnx").name == "ediffiqa_mbf_x3.int8.json"


def test_round_trip_records_the_sha256(weights):
    rec = write_sidecar(weights, {"unet": {"base": 8}, "notes": "x"})
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert rec == {"unet": {"base": 8}, "notes": "x", "sha256": digest}
    assert read_sidecar(weights) == rec
    text = sidecar_path(weights).read_text()
    assert text == json.dumps(rec, indent=2) + "\n"  # the format of the shipped sidecars


def test_sha256_keeps_its_place_and_newline_is_optional(weights):
    rec = write_sidecar(weights, {"file": weights.name, "sha256": None, "z": 1}, newline=False)
    assert list(rec) == ["file", "sha256", "z"] and rec["sha256"]
    assert not sidecar_path(weights).read_text().endswith("\n")


def test_missing_weights_and_missing_sidecar(tmp_path, weights):
    with pytest.raises(WeightsError, match="regressor weights file not found"):
        read_sidecar(tmp_path / "nope.safetensors", what="regressor weights")
    with pytest.raises(WeightsError, match=r"have no sidecar model\.json.*; write one"):
        read_sidecar(weights, hint="; write one")
    assert read_sidecar(weights, verify=False, missing_ok=True) == {}
    assert read_sidecar(tmp_path / "nope.safetensors", verify=False, missing_ok=True) == {}


def test_tampered_file_fails_unless_verify_false(weights):
    write_sidecar(weights, {"k": 1})
    weights.write_bytes(weights.read_bytes() + b"!")
    with pytest.raises(WeightsError, match="fail their sha256 check") as info:
        read_sidecar(weights)
    assert isinstance(info.value, FiqaError) and "verify=False" in str(info.value)
    assert read_sidecar(weights, verify=False)["k"] == 1


def test_sidecar_without_sha256(weights):
    sidecar_path(weights).write_text(json.dumps({"k": 1}))
    with pytest.raises(WeightsError, match="has no sha256; pass verify=False"):
        read_sidecar(weights)
    assert read_sidecar(weights, verify=False) == {"k": 1}
