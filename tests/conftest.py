"""Test configuration: caches and HOME go to a temporary folder, never the user's home."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_TMP = tempfile.mkdtemp(prefix="fiqa-tests-")
os.environ["HOME"] = _TMP
os.environ["FIQA_CACHE"] = os.path.join(_TMP, "cache")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

LFW_ROOT = Path(os.environ.get("FIQA_LFW", Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"))
CELEBA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-subset"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real face photo shipped with scikit-image (RGB uint8)."""
    from skimage.data import astronaut as _a

    img = _a()
    img.setflags(write=False)
    return img


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    if not (LFW_ROOT / "pairs.txt").is_file():
        pytest.skip(f"LFW not found at {LFW_ROOT}")
    return LFW_ROOT


@pytest.fixture(scope="session")
def lfw_quick_cache(tmp_path_factory) -> Path:
    """One feature cache for the benchmarks' ``--quick`` smoke tests: they use the same 200
    LFW pairs (``protocols.pairs_subset(pairs, 10)``), so detections and embeddings computed by
    the first are reused by the next."""
    return tmp_path_factory.mktemp("lfw-quick-cache")


@pytest.fixture(scope="session")
def retinaface():
    import fiqa_sdk as fq

    return fq.create_detector("retinaface")


@pytest.fixture(scope="session")
def arcface():
    import fiqa_sdk as fq

    return fq.create_embedder("arcface")


#: A very small UNet (the same 112 -> 7 layout as the presets) so that DifFIQA training and
#: scoring tests stay fast: ``UNet("tiny", **MICRO_UNET)``.
MICRO_UNET = dict(dim=8, mults=(1, 1, 2, 2), num_res_blocks=1, attn_resolutions=(7,), attn_heads=2,
                  residual=False)


@pytest.fixture
def torch_one_thread():
    """One torch thread for the test: the models are small, and two threads on a busy 2-core
    machine run 4x slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
