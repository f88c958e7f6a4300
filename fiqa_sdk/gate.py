"""QualityGate: the one-object face-quality API (see docs/api.md).

Wiring only: :class:`~fiqa_sdk.pipeline.FacePipeline` (detector -> alignment -> embedder) plus
a :class:`~fiqa_sdk.quality.Scorer`; the decision rules live in :mod:`fiqa_sdk.policy`.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .errors import GateError
from .io import ImageInput, describe
from .pipeline import FacePipeline, PipelineResult
from .policy import (
    apply_threshold,
    calibrate_threshold,
    check_fraction,
    check_threshold,
    cosine,
    discard_lowest,
    fuse_template,
)
from .quality import SCORERS, Scorer, create_scorer
from .types import FilterResult, QualityReport, Template

#: The intended default scorer (eDifFIQA, the distilled regressor). Used as soon as a scorer of
#: this name is registered; change this one constant to switch the default.
DEFAULT_SCORER = "ediffiqa"
#: Used while :data:`DEFAULT_SCORER` is not registered: the best measured baseline on LFW.
FALLBACK_SCORER = "embedding-norm"

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff",
                              ".ppm", ".pgm", ".gif"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})

# scorers built on a 112x112 FR embedder: given the gate's own embedder to avoid a second model
_SHARES_EMBEDDER = frozenset({"embedding-norm", "flip-consistency", "diffiqa"})
# torch scorers whose constructor takes ``device=`` (given the device the gate was asked for:
# "auto" stays "auto", so torch makes its own CUDA choice)
_DEVICE_AWARE_SCORERS = frozenset({"diffiqa", "ediffiqa", "ediffiqa-free", "diffiqa-r"})
# scorers that build their own ArcFace (onnxruntime) when not given the gate's embedder
_OWN_EMBEDDER_SCORERS = frozenset({"embedding-norm", "flip-consistency"})

_FORMAT = "fiqa-quality-gate"


def default_scorer_name() -> str:
    """:data:`DEFAULT_SCORER` if registered and its weights ship with the package, else
    :data:`FALLBACK_SCORER`."""
    from .quality.ediffiqa import SHIPPED, shipped_weights

    if DEFAULT_SCORER in SCORERS and (DEFAULT_SCORER not in SHIPPED or shipped_weights(DEFAULT_SCORER)):
        return DEFAULT_SCORER
    return FALLBACK_SCORER


def resolve_device(device: str) -> str:
    """"cpu" / "cuda" as given; "auto": "cuda" when onnxruntime has a CUDA provider, else "cpu"."""
    if device not in ("cpu", "cuda", "auto"):
        raise GateError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if device != "auto":
        return device
    from ._onnx import providers_for

    return "cuda" if providers_for("auto")[0] == "CUDAExecutionProvider" else "cpu"


def list_image_files(directory: str | os.PathLike) -> list[Path]:
    """Image files (by extension, case-insensitive) directly in ``directory``, sorted by name."""
    d = Path(directory)
    if not d.is_dir():
        raise GateError(f"not a directory: {d}")
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def iter_video_frames(path: str | os.PathLike, frame_step: int = 5,
                      max_frames: int | None = 100) -> Iterator[np.ndarray]:
    """BGR frames of a video file (OpenCV), every ``frame_step``-th, at most ``max_frames``."""
    import cv2

    if frame_step < 1:
        raise GateError(f"frame_step must be >= 1, got {frame_step}")
    if not Path(path).is_file():
        raise GateError(f"video file not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise GateError(f"cannot open video file: {path}")
    try:
        n = 0
        for i in itertools.count():
            ok, frame = cap.read()
            if not ok:
                break
            if i % frame_step:
                continue
            yield frame
            n += 1
            if max_frames is not None and n >= max_frames:
                break
    finally:
        cap.release()


def _is_video(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike)) and Path(obj).suffix.lower() in VIDEO_EXTENSIONS


class QualityGate:
    """Detect, align, embed and quality-score faces; accept, filter, calibrate, fuse templates.

    Parameters
    ----------
    detector : str or Detector
        ``"retinaface"`` (default), ``"mtcnn"``, ``"dlib"``, ``"scrfd"`` or a detector object.
    embedder : str, Embedder, callable or None
        ``"arcface"`` (default), ``"dlib"``, an object, or None (no embeddings: no templates
        or comparisons).
    scorer : str or Scorer
        Registry name or a :class:`~fiqa_sdk.Scorer`. The default is :data:`DEFAULT_SCORER`
        (``"ediffiqa"``) once such a scorer is registered; until then it is
        :data:`FALLBACK_SCORER` (``"embedding-norm"``, the best measured baseline on LFW).
        Embedding-based baselines reuse the gate's embedder instead of loading a second model.
    threshold : float or None
        Absolute quality cut (``score >= threshold`` is accepted), or None to accept every
        scored face. :meth:`calibrate` sets it.
    device : {"cpu", "cuda", "auto"}
        ``"auto"`` picks CUDA when onnxruntime offers it, else CPU; :attr:`device` reports the
        choice.
    face_policy : {"largest", "central", "confidence", "all"}
        Which face of a multi-face image is assessed; ``"all"`` makes :meth:`assess` return a
        list. :meth:`filter` and :meth:`template` use one face per image: with ``"all"``, the
        best-scored one.
    batch_size : int
        Images processed together; bounds memory in :meth:`filter` for any iterable.
    scorer_options : dict or None
        Keyword arguments for the scorer named by ``scorer`` (not for a Scorer object), saved
        with the gate: e.g. ``{"backend": "onnxruntime", "threads": 2}`` runs the ``ediffiqa``
        regressor with onnxruntime (same scores, ~2x the faces/s of torch on one thread, see
        docs/benchmarks.md). Default None: the scorer's own defaults.

    A gate holds no per-call state: the same gate may be used from several threads and gives
    the same results as one thread (the ONNX sessions are thread-safe; dlib backends lock).
    Inputs are never modified.
    """

    def __init__(self, detector: Any = "retinaface", embedder: Any = "arcface",
                 scorer: Any = None, threshold: float | None = None, device: str = "cpu",
                 face_policy: str = "largest", batch_size: int = 32,
                 scorer_options: dict | None = None) -> None:
        from .detect import FACE_POLICIES

        if not isinstance(face_policy, str) or face_policy not in FACE_POLICIES:
            raise GateError(f"unknown face_policy {face_policy!r}; choose one of "
                            f"{', '.join(FACE_POLICIES)}")
        self.device = resolve_device(device)
        if int(batch_size) < 1:
            raise GateError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.pipeline = FacePipeline(detector=detector, embedder=embedder,
                                     face_policy=face_policy, device=self.device)
        if scorer_options is not None and not isinstance(scorer_options, dict):
            raise GateError(f"scorer_options must be a dict, got {type(scorer_options).__name__}")
        self.scorer_options = dict(scorer_options or {})
        if scorer is None:
            scorer = default_scorer_name()
        if self.scorer_options and not isinstance(scorer, str):
            raise GateError("scorer_options go to a scorer created by name; configure a Scorer "
                            "object when creating it")
        if isinstance(scorer, str):
            kw: dict[str, Any] = {}
            emb = self.pipeline.embedder
            if scorer in _SHARES_EMBEDDER:
                if emb is not None and emb.input_size == 112 and isinstance(embedder, str) \
                        and embedder == "arcface":
                    kw["embedder"] = emb
            if scorer in _DEVICE_AWARE_SCORERS:
                kw["device"] = device  # as asked: torch resolves "auto" itself
            elif scorer in _OWN_EMBEDDER_SCORERS and "embedder" not in kw:
                kw["device"] = self.device  # goes to the scorer's own ArcFace (onnxruntime)
            kw.update(self.scorer_options)
            try:
                self.scorer = create_scorer(scorer, **kw)
            except TypeError as exc:  # an option the scorer does not take
                if not self.scorer_options:
                    raise
                raise GateError(f"scorer {scorer!r} does not accept the options "
                                f"{sorted(self.scorer_options)}: {exc}") from None
        elif isinstance(scorer, Scorer):
            self.scorer = scorer
        else:
            raise GateError(f"scorer must be a registry name or a Scorer, got {type(scorer).__name__}")
        # A regressor whose backbone is the gate's embedder reads the embedding already
        # computed: quality costs one MLP (ediffiqa-free with the default arcface embedder).
        reads = getattr(self.scorer, "reads_embedding_of", None)
        self._quality_from_embedding = bool(reads and reads(self.pipeline.embedder))
        self.threshold = None if threshold is None else check_threshold(threshold)
        self.face_policy = face_policy
        self._names = {
            "detector": detector if isinstance(detector, str) else None,
            "embedder": embedder if (embedder is None or isinstance(embedder, str)) else None,
            "scorer": scorer if isinstance(scorer, str) else None,
        }
        self._embedder_given = embedder is not None

    def __repr__(self) -> str:
        return (f"QualityGate(detector={self.pipeline.detector!r}, scorer={self.scorer!r}, "
                f"threshold={self.threshold}, face_policy={self.face_policy!r}, "
                f"device={self.device!r})")

    # -- core ----------------------------------------------------------------------------
    def _reports(self, images: Iterable[ImageInput], color: str, keep_crops: bool = True,
                 threshold: float | None = None) -> Iterator[list[QualityReport]]:
        """For each input, in order, its list of reports (one per selected face)."""
        if color not in ("bgr", "rgb"):
            raise GateError(f"color must be 'bgr' or 'rgb', got {color!r}")
        it = iter(images)
        while True:
            chunk = list(itertools.islice(it, self.batch_size))
            if not chunk:
                return
            per_input = list(self.pipeline.process_batch(chunk, color=color,
                                                         batch_size=len(chunk)))
            ok = [r for rs in per_input for r in rs if r.ok]
            scores: dict[int, float] = {}
            if ok:
                if self._quality_from_embedding:  # ediffiqa-free on the gate's own embedder
                    raw = np.stack([r.embedding * r.embedding_norm for r in ok])
                    vals = self.scorer.score_embeddings(raw)
                else:
                    crops = np.stack([r.aligned for r in ok])
                    faces = [r.face for r in ok]
                    vals = self.scorer.score(crops, faces if self.scorer.needs_faces else None)
                scores = {id(r): float(v) for r, v in zip(ok, vals)}
            for rs in per_input:
                yield [self._report(r, scores.get(id(r)), keep_crops, threshold) for r in rs]

    def _report(self, r: PipelineResult, score: float | None, keep_crop: bool,
                threshold: float | None) -> QualityReport:
        rep = QualityReport(face=r.face, reason=r.reason, message=r.message,
                            aligned=r.aligned if keep_crop else None, embedding=r.embedding)
        if score is not None:
            rep.score = score
            if threshold is not None and not score >= threshold:
                rep.reason, rep.accepted = "below_threshold", False
                rep.message = f"score {score:.6g} < threshold {threshold:.6g}"
            else:
                rep.reason, rep.accepted = None, True
        return rep

    @staticmethod
    def _best(reports: list[QualityReport]) -> QualityReport:
        """One report per image: the best-scored face, else the first (failed) one."""
        scored = [r for r in reports if r.score is not None]
        if not scored:
            return reports[0]
        return max(scored, key=lambda r: r.score)  # max keeps the first on ties

    # -- public API ----------------------------------------------------------------------
    def assess(self, img: ImageInput, color: str = "bgr", faces: str | None = None):
        """Quality report of the face in ``img`` (see :class:`~fiqa_sdk.QualityReport`).

        ``img``: path, encoded bytes, numpy HxWx3 uint8 (BGR unless ``color="rgb"``) or PIL
        image. Returns one report, or with ``faces="all"`` (or ``face_policy="all"``) a list of
        reports, one per face (a single failed report when there is none).
        """
        if faces not in (None, "all"):
            raise GateError(f"faces must be None or 'all', got {faces!r}")
        gate = self
        if faces == "all" and self.face_policy != "all":
            gate = self._with_policy("all")
        reps = next(gate._reports([img], color, keep_crops=True, threshold=self.threshold))
        if faces == "all" or self.face_policy == "all":
            return reps
        return reps[0]

    def _with_policy(self, policy: str) -> "QualityGate":
        g = object.__new__(QualityGate)
        g.__dict__.update(self.__dict__)
        g.pipeline = object.__new__(FacePipeline)
        g.pipeline.__dict__.update(self.pipeline.__dict__)
        g.pipeline.face_policy = policy
        g.face_policy = policy
        return g

    def filter(self, batch: Any, discard: float | None = None, threshold: float | None = None,
               color: str = "bgr", keep_crops: bool = False, progress: bool = False) -> FilterResult:
        """Split a batch into kept and rejected items.

        ``batch``: any iterable of images (list, generator, ...) or a directory path (every
        image file directly in it, sorted by name). Give exactly one of

        - ``discard=f``: reject the ``floor(f * n_scored)`` lowest-scored items (ties broken by
          input order: the earlier of equal scores is discarded first), reason ``"discarded"``;
        - ``threshold=t``: reject scores ``< t``, reason ``"below_threshold"``;

        or neither when the gate has a threshold (e.g. from :meth:`calibrate`), which is then
        used. Items that could not be scored are always rejected with their reason
        (``"no_face"``, ``"decode_error"``, ...); they never abort the batch.

        Memory stays bounded: images are processed ``batch_size`` at a time and reports keep
        no aligned crop unless ``keep_crops=True`` (embeddings are kept: 2 KB per face).
        ``progress=True`` shows a tqdm bar on stderr.
        """
        if discard is not None and threshold is not None:
            raise GateError("give exactly one of discard= and threshold=, not both")
        if discard is None and threshold is None:
            if self.threshold is None:
                raise GateError("give exactly one of discard= and threshold= (the gate has no "
                                "threshold; see calibrate())")
            threshold = self.threshold
        if discard is not None:
            discard = check_fraction(discard)
        else:
            threshold = check_threshold(threshold)
        items, sources = self._batch_items(batch)
        if progress:
            from tqdm import tqdm

            items = tqdm(items, desc="fiqa filter", unit="img", mininterval=1.0,
                         total=len(sources) if sources else None)
        reports: list[QualityReport] = []
        src_names: list[str] = []
        if sources is None:
            def remember(xs):
                for x in xs:
                    src_names.append(describe(x))
                    yield x
            items = remember(items)
        for reps in self._reports(items, color, keep_crops=keep_crops, threshold=None):
            reports.append(self._best(reps))
        scores = [r.score for r in reports]
        if discard is not None:
            keep, cut = discard_lowest(scores, discard)
            why = "discarded"
        else:
            keep, cut = apply_threshold(scores, threshold), float(threshold)
            why = "below_threshold"
        kept, rejected = [], []
        for i, (r, k) in enumerate(zip(reports, keep)):
            if k:
                kept.append(i)
                r.accepted, r.reason = True, None
            else:
                r.accepted = False
                if r.score is not None:
                    r.reason = why
                    r.message = f"score {r.score:.6g}" + (
                        f" < threshold {cut:.6g}" if why == "below_threshold"
                        else f" among the lowest {discard:g} of the batch")
                rejected.append((i, r.reason))
        return FilterResult(kept=kept, rejected=rejected, reports=reports, threshold=cut,
                            sources=[str(s) for s in sources] if sources is not None else src_names)

    def _batch_items(self, batch: Any, caller: str = "filter"
                     ) -> tuple[Iterable[ImageInput], list[Path] | None]:
        """``(items, files)``: the images of a batch argument (``files``: the sorted image
        files when ``batch`` is a directory, else None). ``caller`` names the method in errors."""
        if isinstance(batch, (str, os.PathLike)):
            if Path(batch).is_dir():
                files = list_image_files(batch)
                return files, files
            raise GateError(f"{caller}() takes an iterable of images or a directory; {batch} is "
                            "not a directory (wrap a single image in a list)")
        if isinstance(batch, (np.ndarray, bytes, bytearray, memoryview)):
            raise GateError(f"{caller}() takes an iterable of images (a list, a generator, a "
                            "directory), not a single image; use assess() or wrap it in a list")
        try:
            return iter(batch), None
        except TypeError:
            raise GateError(f"{caller}() needs an iterable of images, got "
                            f"{type(batch).__name__}") from None

    def scores(self, images: Any, color: str = "bgr") -> list[float | None]:
        """Quality score of each image (None when unscorable), one face per image.

        ``images``: any iterable of images (list, generator, a stacked ``(N, H, W, C)`` array)
        or a directory path (every image file directly in it, sorted by name, as in
        :meth:`filter`).
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:
            items: Iterable[ImageInput] = iter(images)  # a stack of images: one per row
        else:
            items, _ = self._batch_items(images, "scores")
        return [self._best(reps).score
                for reps in self._reports(items, color, keep_crops=False)]

    def calibrate(self, reference_images: Any, discard: float, color: str = "bgr") -> float:
        """Set and return :attr:`threshold` so that about ``discard`` of traffic like
        ``reference_images`` is rejected: the ``discard``-quantile of their scores.

        ``reference_images``: an iterable of images or a directory. Unscorable references are
        ignored.
        """
        discard = check_fraction(discard)
        items, _ = self._batch_items(reference_images, "calibrate")
        self.threshold = calibrate_threshold(self.scores(items, color), discard)
        return self.threshold

    # -- persistence ---------------------------------------------------------------------
    def config(self) -> dict:
        """The JSON-able configuration :meth:`save` writes."""
        from . import __version__

        bad = [k for k, v in self._names.items() if v is None and
               not (k == "embedder" and not self._embedder_given)]
        if bad:
            raise GateError(f"cannot save a gate built from objects ({', '.join(bad)}); only "
                            "registry names can be saved; recreate such a gate in code")
        return {
            "format": _FORMAT,
            "fiqa_sdk_version": __version__,
            "detector": self._names["detector"],
            "embedder": self._names["embedder"],
            "scorer": self._names["scorer"],
            "threshold": self.threshold,
            # which weights the threshold is in the units of (regressors, DifFIQA): checked
            # by load(), since a new version may ship other weights under the same name
            **({"scorer_weights": str(self.scorer.weights_sha256)}
               if getattr(self.scorer, "weights_sha256", None) else {}),
            "face_policy": self.face_policy,
            "batch_size": self.batch_size,
            **({"scorer_options": self.scorer_options} if self.scorer_options else {}),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the gate's configuration (backend names, threshold, face policy, version)."""
        cfg = self.config()
        try:
            text = json.dumps(cfg, indent=2) + "\n"
        except TypeError as exc:  # e.g. scorer_options={"calibration": <array>}
            raise GateError(f"the gate cannot be saved: scorer_options must hold JSON values "
                            f"(numbers, strings, lists; e.g. calibration as a .npy file path "
                            f"string): {exc}") from None
        p = Path(path)
        p.write_text(text)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", **overrides: Any) -> "QualityGate":
        """A gate from a file written by :meth:`save` (``overrides`` replace saved fields)."""
        p = Path(path)
        try:
            cfg = json.loads(p.read_text())
        except FileNotFoundError:
            raise GateError(f"gate file not found: {p}") from None
        except (OSError, ValueError) as exc:
            raise GateError(f"cannot read gate file {p}: {exc}") from None
        if not isinstance(cfg, dict) or cfg.get("format") != _FORMAT:
            raise GateError(f"{p} is not a fiqa QualityGate file")
        kw = {k: cfg[k] for k in ("detector", "embedder", "scorer", "threshold", "face_policy",
                                  "batch_size", "scorer_options") if k in cfg}
        kw.update(overrides)
        gate = cls(device=device, **kw)
        saved = cfg.get("scorer_weights")
        now = getattr(gate.scorer, "weights_sha256", None)
        if (saved and now and str(saved) != str(now) and gate.threshold is not None
                and "threshold" not in overrides and "scorer" not in overrides):
            raise GateError(
                f"{p}: its threshold {gate.threshold:g} was set for scorer {cfg.get('scorer')!r} "
                f"with weights {saved}, but this fiqa-sdk's {cfg.get('scorer')!r} has weights "
                f"{now} (scores on another scale): recalibrate (gate.calibrate(...)) or load "
                "with threshold=None (or a new threshold=)")
        return gate

    # -- templates and comparison --------------------------------------------------------
    def template(self, images: Any, method: str = "quality_weighted", k: int = 3,
                 temperature: float | None = None, color: str = "bgr", frame_step: int = 5,
                 max_frames: int | None = 100) -> Template:
        """Fuse the embeddings of several images of one person into one template.

        ``images``: an iterable of images, a directory, or a video file path (every
        ``frame_step``-th frame, at most ``max_frames``, read with OpenCV; ``used`` then indexes
        the sampled frames). Only images with a scored face and an embedding take part.
        ``method``: ``"quality_weighted"`` (softmax of score / temperature; the default
        ``temperature=None`` uses 4 x the scores' standard deviation, see
        :func:`fiqa_sdk.policy.template_weights`), ``"mean"``, ``"best"`` or ``"top_k"`` (``k``).
        """
        if not self._embedder_given:
            raise GateError("templates need an embedder; this gate has embedder=None")
        if _is_video(images):
            items: Iterable[ImageInput] = iter_video_frames(images, frame_step, max_frames)
            color = "bgr"
        else:
            items, _ = self._batch_items(images, "template")
        idx, scores, embs = [], [], []
        for i, reps in enumerate(self._reports(items, color, keep_crops=False)):
            r = self._best(reps)
            if r.score is not None and r.embedding is not None:
                idx.append(i)
                scores.append(r.score)
                embs.append(r.embedding)
        if not idx:
            raise GateError("template: no image had a scorable face")
        sel, w, emb = fuse_template(scores, np.stack(embs), method, k=k, temperature=temperature)
        return Template(embedding=emb, weights=w, used=[idx[j] for j in sel], method=method,
                        scores=np.asarray([scores[j] for j in sel], dtype=np.float64))

    def embedding(self, x: Any, color: str = "bgr") -> np.ndarray:
        """Embedding of a Template, a 1-D embedding vector (as is), or an image (its face)."""
        if isinstance(x, Template):
            return x.embedding
        if isinstance(x, np.ndarray) and x.ndim == 1:
            return x
        if not self._embedder_given:
            raise GateError("comparing images needs an embedder; this gate has embedder=None")
        r = self._best(next(self._reports([x], color, keep_crops=False)))
        if r.embedding is None:
            raise GateError(f"cannot compare {describe(x)}: {r.reason or 'no embedding'}"
                            + (f" ({r.message})" if r.message else ""))
        return r.embedding

    def compare(self, a: Any, b: Any, color: str = "bgr") -> float:
        """Cosine similarity of two images / Templates / embeddings (any mix)."""
        return cosine(self.embedding(a, color), self.embedding(b, color))
