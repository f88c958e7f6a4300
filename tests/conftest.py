"""Test configuration: caches and HOME go to a temporary folder, never the user's home."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_TMP = tempfile.mkdtemp(prefix="fiqa-tests-")
os.environ["HOME"] = _TMP
os.environ["FIQA_CACHE"] = os.path.join(_TMP, "cache")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The library reads data locations from arguments and environment variables only; the tests
# know the checkout layout (../shared/data beside the repository) and set the variables, which
# the experiment (fiqa-bench) and CLI subprocesses inherit.
_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("FIQA_LFW", str(_DATA / "lfw"))
os.environ.setdefault("FIQA_CELEBA", str(_DATA / "celeba-subset"))
LFW_ROOT = Path(os.environ["FIQA_LFW"])
CELEBA_ROOT = Path(os.environ["FIQA_CELEBA"])


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real face photo shipped with scikit-image (RGB uint8)."""
    from skimage.data import astronaut as _a

    img = _a()
    img.setflags(write=False)
    return img


@pytest.fixture(scope="session")
def astronaut_face(astronaut):
    """RetinaFace's detection of the sample face (landmarks for the crops below)."""
    import fiqa_sdk as fq

    return fq.create_detector("retinaface").detect(astronaut)[0]


def graded_crops(img: np.ndarray, face, count: int, *, period: int = 1, jitter: float = 3.0,
                 blur: float = 0.6, seed: int = 0) -> np.ndarray:
    """``count`` aligned crops of ``face`` in ``img``: crop k uses the landmarks jittered by
    ``jitter`` px (seed k; crop 0 unjittered) and severity ``k % period`` of a graded
    degradation (Gaussian blur ``blur x s``, downscale by ``s + 1`` and back, Gaussian noise
    ``3 s``). ``period=1``: jittered, undegraded crops."""
    import cv2

    from fiqa_sdk.align import align_face, jitter_landmarks

    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        crop = align_face(img, jitter_landmarks(face, jitter, k) if k else face)
        s = k % period
        if s:
            crop = cv2.GaussianBlur(crop, (0, 0), blur * s)
            small = cv2.resize(crop, (112 // (s + 1),) * 2, interpolation=cv2.INTER_AREA)
            crop = cv2.resize(small, (112, 112), interpolation=cv2.INTER_LINEAR)
            crop = np.clip(crop + rng.normal(0, 3 * s, crop.shape), 0, 255).astype(np.uint8)
        out.append(crop)
    return np.stack(out)


def fake_lfw(root: Path, img: np.ndarray, identities: int) -> Path:
    """An LFW-shaped folder ``root/images/Person_i/Person_i_0001.jpg`` of ``img`` (RGB) at
    slightly different sizes, one image per identity."""
    import cv2

    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    for i in range(identities):
        d = root / "images" / f"Person_{i}"
        d.mkdir(parents=True)
        cv2.imwrite(str(d / f"Person_{i}_0001.jpg"), cv2.resize(bgr, (256 - 16 * i,) * 2))
    return root


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    if not (LFW_ROOT / "pairs.txt").is_file():
        pytest.skip(f"LFW not found at {LFW_ROOT}")
    return LFW_ROOT


@pytest.fixture(scope="session")
def lfw_quick_cache() -> Path:
    """One feature cache for the benchmarks' ``--quick`` smoke tests: they use the same 200
    LFW pairs (``protocols.pairs_subset(pairs, 10)``), so detections and embeddings computed by
    the first are reused by the next. It is the session's ``$FIQA_CACHE/lfw``, the default
    cache of the experiments' plain ``--quick`` runs (:func:`quick_run`), so those images are
    detected and embedded once per session, not once per cache."""
    path = Path(_TMP) / "cache" / "lfw"
    path.mkdir(parents=True, exist_ok=True)
    return path


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


class ExperimentModule:
    """The module of the fiqa_bench experiment ``name`` (its helpers and constants as
    attributes) with ``main(argv)``: ``fiqa-bench run NAME ARGV`` in this process, returning
    the exit status."""

    def __init__(self, name: str) -> None:
        import importlib

        self.name = name
        self.module = importlib.import_module(f"fiqa_bench.experiments.{name}")

    def __getattr__(self, attr: str):
        return getattr(self.module, attr)

    def main(self, argv=()) -> int:
        from fiqa_bench.harness import main

        return main(["run", self.name, *argv])


def load_script(name: str, prefix: str = "") -> ExperimentModule:
    """The experiment ``name`` of fiqa_bench (formerly ``benchmarks/<name>.py``), with
    ``main(argv)`` (``prefix``: unused, kept for the callers)."""
    return ExperimentModule(name)


#: Experiments that build derived data in ``$FIQA_CACHE`` (lfw-xq images, training folders and
#: their label / aligned-face caches, exported graphs): their quick runs get a cache of their own,
#: so that e.g. the 60 lfw-xq images of xq_severity_spearman do not become the lfw-xq copy that
#: another test builds from a small LFW folder (``lfw-xq-v1`` is keyed by version, not source).
OWN_CACHE = {"xq_severity_spearman", "ediffiqa_ablation", "diffiqa_settings", "regressor_backends",
             "lfw_xq_stats"}


@dataclass
class QuickRun:
    """One ``fiqa-bench run NAME --quick --out OUT`` in this process (:func:`quick_run`)."""

    name: str
    out: Path  # the --out folder (OUT/NAME.json and the extra files)
    cache: Path  # its $FIQA_CACHE
    tmp: Path  # its tempfile.gettempdir()
    exit_code: int
    stdout: str
    stderr: str
    env_after: dict  # os.environ as the run left it (restored after)

    @property
    def record(self) -> dict:
        """The result file (harness fields and ``results``)."""
        import json

        return json.loads((self.out / f"{self.name}.json").read_text())

    @property
    def results(self) -> dict:
        return self.record["results"]


@dataclass
class Captured:
    """What a run under :func:`in_process` printed, and the environment it left."""

    stdout: io.StringIO = field(default_factory=io.StringIO)
    stderr: io.StringIO = field(default_factory=io.StringIO)
    env_after: dict = field(default_factory=dict)


@contextlib.contextmanager
def in_process(captured: Captured, env: dict, cwd: Path, tempdir: str | None, *,
               argv: list[str] | None = None, torch_threads: int | None = None):
    """Run the body as a fresh process would, in this one: ``env`` added to the environment,
    working folder ``cwd``, ``tempfile.tempdir`` = ``tempdir`` (None: re-read from
    ``$TMPDIR``), ``sys.argv`` = ``argv`` if given, torch's threads = ``torch_threads`` if
    given, stdout and stderr into ``captured``. The environment (whole), working folder,
    temporary folder, ``sys.argv`` and torch / OpenCV threads are put back afterwards, also when
    the body raises; ``captured.env_after`` keeps the environment the body left.

    Shared by :func:`quick_run` (the experiments' ``--quick`` runs) and
    tests/test_examples.py (the examples)."""
    import cv2
    import torch

    saved = (dict(os.environ), os.getcwd(), tempfile.tempdir, list(sys.argv),
             torch.get_num_threads(), cv2.getNumThreads())
    os.environ.update(env)
    os.chdir(cwd)
    tempfile.tempdir = tempdir
    if argv is not None:
        sys.argv = list(argv)
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        with contextlib.redirect_stdout(captured.stdout), \
                contextlib.redirect_stderr(captured.stderr):
            yield captured
    finally:
        captured.env_after = dict(os.environ)
        environ, cwd0, tempfile.tempdir, sys.argv, threads, cv_threads = saved
        os.chdir(cwd0)
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)


_QUICK_RUNS: dict[str, QuickRun | BaseException] = {}
_QUICK_ROOT = Path(_TMP) / "quick-runs"


def quick_run(name: str) -> QuickRun:
    """``fiqa-bench run NAME --quick --out OUT`` run once per test session, in this process.

    The smoke test of every experiment (tests/test_bench_experiments.py) and the tests that
    check an experiment's ``--quick`` numbers share this one run instead of running it twice.
    It runs with the session's ``$FIQA_CACHE`` (LFW detections and embeddings computed by one
    experiment are reused by the next), or a cache of its own for :data:`OWN_CACHE`; in a
    temporary working folder and temporary-file folder; with one torch thread. What an
    experiment changes in the process (environment, working folder, torch / OpenCV threads) is
    restored after it (:func:`in_process`), and its stdout and stderr are kept in the returned
    :class:`QuickRun`."""
    if name in _QUICK_RUNS:
        run = _QUICK_RUNS[name]
        if isinstance(run, BaseException):
            pytest.fail(f"fiqa-bench run {name} --quick raised {run!r} in an earlier test")
        return run
    from fiqa_bench.harness import main

    base = _QUICK_ROOT / name
    out, work, tmp = base / "out", base / "work", base / "tmp"
    work.mkdir(parents=True)
    tmp.mkdir()
    cache = base / "cache" if name in OWN_CACHE else Path(_TMP) / "cache"  # the session's
    cap = Captured()
    try:
        with in_process(cap, {"FIQA_CACHE": str(cache)}, work, str(tmp), torch_threads=1):
            rc = main(["run", name, "--quick", "--out", str(out)])
    except BaseException as e:
        _QUICK_RUNS[name] = e
        print(cap.stdout.getvalue()[-4000:])
        print(cap.stderr.getvalue()[-4000:], file=sys.stderr)
        raise
    run = _QUICK_RUNS[name] = QuickRun(name=name, out=out, cache=cache, tmp=tmp, exit_code=rc,
                                       stdout=cap.stdout.getvalue(),
                                       stderr=cap.stderr.getvalue(), env_after=cap.env_after)
    return run


def bench_results(path) -> dict:
    """The ``results`` of a fiqa-bench result file (or of the one result file in a folder)."""
    from fiqa_bench.harness import read_results

    return read_results(path)
