"""QualityGate: the one-object face-quality API (see docs/api.md).

Wiring only: :class:`~fiqa_sdk.pipeline.FacePipeline` (detector -> alignment -> embedder) plus
a :class:`~fiqa_sdk.quality.Scorer`; the decision rules live in :mod:`fiqa_sdk.policy`.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, overload

import numpy as np

from .detect import DEFAULT_FACE_POLICY, ambiguous_subject
from .errors import ColorOrderWarning, FolderWarning, GateError
from .io import ImageInput, describe
from .pipeline import FacePipeline, PipelineResult, set_raw_embeddings
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

#: The default scorer: the shipped scorer with the lowest pooled pAUC@0.3 on the hard-data dev
#: benchmark (``fiqa-bench quality --suite dev``; docs/benchmarks.md "Dev benchmark (hard data)"
#: says how it was chosen). The gate, the CLI and the docs follow this one constant.
DEFAULT_SCORER = "diffiqa-r+norm"
#: Used when :data:`DEFAULT_SCORER`'s weights are missing: the FR model's embedding norm.
FALLBACK_SCORER = "embedding-norm"

from .io import IMAGE_EXTENSIONS  # noqa: E402,F401 - one set for every folder reader
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})

_FORMAT = "fiqa-quality-gate"


def default_scorer_name() -> str:
    """:data:`DEFAULT_SCORER` if registered and its weights ship with the package, else
    :data:`FALLBACK_SCORER`."""
    from ._paths import WEIGHTS_DIR

    if DEFAULT_SCORER in SCORERS and all(
            (WEIGHTS_DIR / f).is_file() for f in SCORERS.card(DEFAULT_SCORER).get("weights", ())):
        return DEFAULT_SCORER
    return FALLBACK_SCORER


def scorer_kwargs(name: str, embedder: Any, device: str, resolved_device: str) -> dict[str, Any]:
    """Constructor arguments a gate gives scorer ``name``, read from its registry card
    (:meth:`fiqa_sdk.quality.SCORERS.card`): ``embedder`` (a 112x112 model, e.g. the gate's own
    ArcFace) to a scorer whose card says ``embedder="shared"``; ``device`` as asked to a
    ``device="torch"`` scorer (torch resolves ``"auto"`` itself), the resolved device to a
    ``device="onnxruntime"`` one that builds its own embedder."""
    card = SCORERS.card(name) if name in SCORERS else {}
    kw: dict[str, Any] = {}
    if card.get("embedder") == "shared" and embedder is not None \
            and getattr(embedder, "input_size", None) == 112:
        kw["embedder"] = embedder
    if card.get("device") == "torch":
        kw["device"] = device
    elif card.get("device") == "onnxruntime" and "embedder" not in kw:
        kw["device"] = resolved_device
    return kw


def resolve_device(device: str) -> str:
    """"cpu" / "cuda" as given; "auto": "cuda" when onnxruntime has a CUDA provider, else "cpu"."""
    from ._device import check_device

    if check_device(device) != "auto":
        return device
    from ._onnx import providers_for

    return "cuda" if providers_for("auto")[0] == "CUDAExecutionProvider" else "cpu"


def list_image_files(directory: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files (by extension, case-insensitive) in ``directory``, sorted by path.

    ``recursive=False``: only the files directly in it; a :class:`~fiqa_sdk.errors.FolderWarning`
    says so when there are none but the folder has sub-folders. ``recursive=True``: the files of
    every sub-folder too (hidden ones, starting with ``.``, skipped).
    """
    d = Path(directory)
    if not d.is_dir():
        raise GateError(f"not a directory: {d}")
    if recursive:
        files = [p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                 and not any(part.startswith(".") for part in p.relative_to(d).parts)]
        return sorted(files)
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        subdirs = [p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if subdirs:
            warnings.warn(f"{d} holds no image file but {len(subdirs)} sub-folder(s) (e.g. "
                          f"{subdirs[0].name}/): pass recursive=True (fiqa: --recursive) to "
                          "include their images", FolderWarning, stacklevel=3)
    return files


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
        (the best shipped scorer on the hard-data dev benchmark), or
        :data:`FALLBACK_SCORER` (``"embedding-norm"``) if its weights are missing.
        Embedding-based baselines reuse the gate's embedder instead of loading a second model.
    threshold : float or None
        Absolute quality cut (``score >= threshold`` is accepted), or None to accept every
        scored face. :meth:`calibrate` sets it.
    device : {"cpu", "cuda", "auto"}
        ``"auto"`` picks CUDA when onnxruntime offers it, else CPU; :attr:`device` reports the
        choice.
    face_policy : {"subject", "largest", "central", "confidence", "all"}
        Which face of a multi-face image is assessed. ``"subject"`` (default): the photo's
        subject, by size, closeness to the centre and detector confidence together (see
        :func:`fiqa_sdk.detect.select_faces`); reports say how many faces there were
        (``n_faces``) and whether another one was a plausible subject too (``ambiguous``).
        ``"all"`` makes :meth:`assess` return a list. :meth:`filter` and :meth:`template` use
        one face per image: with ``"all"``, the best-scored one.
    batch_size : int
        Images processed together; bounds memory in :meth:`filter` for any iterable.
    scorer_options : dict or None
        Keyword arguments for the scorer named by ``scorer`` (not for a Scorer object), saved
        with the gate: e.g. ``{"backend": "torch"}``. Default None: the scorer's own defaults,
        and, when the scorer is a regressor distilled from the gate's ``arcface`` model (the
        default scorer is), the joint path: one onnxruntime pass computes the embedding and the
        quality from a shared stem (:mod:`fiqa_sdk.quality.joint`; fp32, the same scores as the
        scorer's torch model to ~1e-6). Giving ``backend`` or ``precision`` here runs the scorer
        on its own instead.

    Raises
    ------
    GateError
        An unknown ``face_policy``, ``batch_size < 1``, ``scorer_options`` that are not a dict,
        are given with a Scorer object or are not accepted by the scorer, or a ``scorer`` that
        is neither a name nor a Scorer.
    UnknownBackendError
        An unknown registry name (detector, embedder or scorer).
    DeviceUnavailableError
        ``device="cuda"`` but onnxruntime or torch has no CUDA device.

    Notes
    -----
    A gate holds no per-call state: the same gate may be used from several threads and gives
    the same results as one thread (the ONNX sessions are thread-safe; dlib backends lock).
    Inputs are never modified.

    Examples
    --------
    >>> import fiqa_sdk as fq
    >>> gate = fq.QualityGate()  # doctest: +SKIP
    >>> gate.scorer.name  # doctest: +SKIP
    'diffiqa-r+norm'
    >>> gate = fq.QualityGate(scorer="embedding-norm", threshold=20.0)  # doctest: +SKIP
    """

    def __init__(self, detector: Any = "retinaface", embedder: Any = "arcface",
                 scorer: Any = None, threshold: float | None = None, device: str = "cpu",
                 face_policy: str = DEFAULT_FACE_POLICY, batch_size: int = 32,
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
            own = self.pipeline.embedder if isinstance(embedder, str) and embedder == "arcface" \
                else None
            kw = scorer_kwargs(scorer, own, device, self.device)
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
        # The joint path: the scorer shares the embedder's stem, so one pass gives both.
        self._joint_wanted = (isinstance(scorer, str) and self.device == "cpu"
                              and not {"backend", "precision"} & set(self.scorer_options)
                              and not self._quality_from_embedding)
        self._joint: Any = None
        self._joint_lock = threading.Lock()
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
    @property
    def joint(self) -> bool:
        """Whether the gate computes embedding and quality in one pass (see ``scorer_options``)."""
        return self._joint_runner() is not None

    def _joint_runner(self):
        """The :class:`~fiqa_sdk.quality.joint.JointRunner`, built on first use (exporting its
        graph takes a few seconds once; it is then cached), or None off the joint path."""
        if not self._joint_wanted:
            return None
        if self._joint is None:
            with self._joint_lock:
                if self._joint is None:
                    from .quality.joint import JointRunner, joint_model

                    # a fusion scorer (diffiqa-r+norm) runs its regressor in the joint pass
                    regressor = getattr(self.scorer, "regressor", self.scorer)
                    model = joint_model(regressor, self.pipeline.embedder)
                    if model is None:
                        self._joint_wanted = False
                        return None
                    # the graph is the regressor's: one cached file whoever asks for it
                    self._joint = JointRunner(model, device=self.device,
                                              tag=f"joint-{regressor.name}")
        return self._joint

    def _reports(self, images: Iterable[ImageInput], color: str | None, keep_crops: bool = True,
                 threshold: float | None = None) -> Iterator[list[QualityReport]]:
        """For each input, in order, its list of reports (one per selected face)."""
        warn_color = color is None
        color = "bgr" if color is None else color
        if color not in ("bgr", "rgb"):
            raise GateError(f"color must be 'bgr' or 'rgb', got {color!r}")
        joint = self._joint_runner()
        it = iter(images)
        while True:
            chunk = list(itertools.islice(it, self.batch_size))
            if not chunk:
                return
            if warn_color and any(isinstance(x, np.ndarray) and x.ndim == 3
                                  and x.shape[2] in (3, 4) for x in chunk):
                warnings.warn("a colour image array was given without color=: it is read as "
                              "BGR (OpenCV's order); pass color='rgb' for arrays from PIL, "
                              "scikit-image or matplotlib, or color='bgr' to silence this",
                              ColorOrderWarning, stacklevel=3)
                warn_color = False
            per_input = list(self.pipeline.process_batch(chunk, color=color,
                                                         batch_size=len(chunk),
                                                         embed=joint is None))
            ok = [r for rs in per_input for r in rs if r.ok]
            scores: dict[int, float] = {}
            if ok and joint is not None:
                raw, vals = joint(np.stack([r.aligned for r in ok]))
                set_raw_embeddings(ok, raw)
                combine = getattr(self.scorer, "combine", None)
                if combine is not None:  # fusion with the embedding norm (quality.fusion)
                    vals = combine(vals, raw)
                scores = {id(r): float(v) for r, v in zip(ok, vals)}
            elif ok:
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
                            aligned=r.aligned if keep_crop else None, embedding=r.embedding,
                            n_faces=len(r.faces),
                            ambiguous=r.face is not None and ambiguous_subject(r.face, r.faces))
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
    @overload
    def assess(self, img: ImageInput, color: str | None = None,
               faces: None = None) -> QualityReport: ...

    @overload
    def assess(self, img: ImageInput, color: str | None = None,
               faces: Literal["all"] = ...) -> list[QualityReport]: ...

    def assess(self, img: ImageInput, color: str | None = None,
               faces: str | None = None) -> QualityReport | list[QualityReport]:
        """Quality report of the face in ``img``.

        Parameters
        ----------
        img : path, bytes, ndarray or PIL.Image
            A file path, encoded bytes, a numpy ``(H, W, 3)`` uint8 array or a PIL image.
        color : {"bgr", "rgb"} or None
            Channel order of an array ``img``. Arrays from OpenCV (``cv2.imread``) are BGR;
            arrays from PIL, scikit-image, imageio or matplotlib are RGB: pass
            ``color="rgb"``, or the face is scored with red and blue swapped. None: BGR, with a
            :class:`~fiqa_sdk.errors.ColorOrderWarning` for a colour array. Paths, bytes and PIL
            images carry their own order.
        faces : {None, "all"}
            ``"all"``: a report per face (as with ``face_policy="all"``).

        Raises
        ------
        GateError
            ``faces`` is neither None nor ``"all"``, or ``color`` is not "bgr" / "rgb".

        Returns
        -------
        QualityReport or list of QualityReport
            One report (the face chosen by the gate's ``face_policy``), or with ``faces="all"``
            (or ``face_policy="all"``) a list, one per face (a single failed report when there is
            none). Never raises for an unreadable image or a missing face: see ``reason``.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> from skimage import data
        >>> gate = fq.QualityGate()  # doctest: +SKIP
        >>> r = gate.assess(data.astronaut(), color="rgb")  # doctest: +SKIP
        >>> r.accepted, r.n_faces, r.ambiguous  # doctest: +SKIP
        (True, 1, False)
        >>> reports = gate.assess("group.jpg", faces="all")  # doctest: +SKIP
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
               color: str | None = None, keep_crops: bool = False, progress: bool = False,
               recursive: bool = False) -> FilterResult:
        """Split a batch into kept and rejected items.

        Give exactly one of ``discard`` and ``threshold``, or neither when the gate has a
        threshold (e.g. from :meth:`calibrate`), which is then used. Items that could not be
        scored are always rejected with their reason (``"no_face"``, ``"decode_error"``, ...);
        they never abort the batch.

        Parameters
        ----------
        batch : iterable of images, or str / os.PathLike directory
            Any iterable of images (list, generator, ...) or a directory path (every image file
            directly in it, sorted by name; with ``recursive=True`` those of its sub-folders
            too, sorted by path).
        discard : float in [0, 1], optional
            Reject the ``floor(discard * n_scored)`` lowest-scored items (ties broken by input
            order: the earlier of equal scores is discarded first), reason ``"discarded"``.
        threshold : float, optional
            Reject scores ``< threshold``, reason ``"below_threshold"``.
        color : {"bgr", "rgb"} or None
            As in :meth:`assess`.
        keep_crops : bool
            Keep each report's aligned crop. Memory stays bounded: images are processed
            ``batch_size`` at a time and reports keep no aligned crop unless
            ``keep_crops=True`` (embeddings are kept: 2 KB per face).
        progress : bool
            Show a tqdm bar on stderr.
        recursive : bool
            With a directory ``batch``, include the images of its sub-folders.

        Returns
        -------
        FilterResult
            ``kept`` indices, ``rejected`` ``(index, reason)`` pairs, one report per input and
            the applied ``threshold``.

        Raises
        ------
        GateError
            Both or neither of ``discard`` / ``threshold`` (without a gate threshold), a
            fraction outside [0, 1], a NaN threshold, a single image instead of a batch, or a
            path that is not a directory.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> gate = fq.QualityGate()  # doctest: +SKIP
        >>> res = gate.filter("photos/", discard=0.1)  # doctest: +SKIP
        >>> [res.sources[i] for i in res.kept]  # doctest: +SKIP
        >>> res = gate.filter(images, threshold=0.0, color="rgb")  # doctest: +SKIP
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
        items, sources = self._batch_items(batch, recursive=recursive)
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

    def _batch_items(self, batch: Any, caller: str = "filter", recursive: bool = False
                     ) -> tuple[Iterable[ImageInput], list[Path] | None]:
        """``(items, files)``: the images of a batch argument (``files``: the sorted image
        files when ``batch`` is a directory, else None). ``caller`` names the method in errors."""
        if isinstance(batch, (str, os.PathLike)):
            if Path(batch).is_dir():
                files = list_image_files(batch, recursive=recursive)
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

    def scores(self, images: Any, color: str | None = None,
               recursive: bool = False) -> list[float | None]:
        """Quality score of each image (None when unscorable), one face per image.

        Parameters
        ----------
        images : iterable of images, (N, H, W, C) ndarray, or directory
            Any iterable of images (list, generator, a stacked ``(N, H, W, C)`` array) or a
            directory path (every image file directly in it, sorted by name, as in
            :meth:`filter`).
        color : {"bgr", "rgb"} or None
            As in :meth:`assess`.
        recursive : bool
            With a directory, include the images of its sub-folders.

        Returns
        -------
        list of float or None
            One score per image, in input order; None where no face could be scored.

        Raises
        ------
        GateError
            A single image (an array, bytes, a file path) instead of a batch: wrap it in a list.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> gate = fq.QualityGate()  # doctest: +SKIP
        >>> gate.scores(["a.jpg", "b.jpg"])  # doctest: +SKIP
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:
            items: Iterable[ImageInput] = iter(images)  # a stack of images: one per row
        else:
            items, _ = self._batch_items(images, "scores", recursive=recursive)
        return [self._best(reps).score
                for reps in self._reports(items, color, keep_crops=False)]

    def calibrate(self, reference_images: Any, discard: float, color: str | None = None,
                  recursive: bool = False) -> float:
        """Set and return :attr:`threshold` so that about ``discard`` of traffic like
        ``reference_images`` is rejected: the ``discard``-quantile of their scores.

        Parameters
        ----------
        reference_images : iterable of images or directory
            Images like the expected traffic. Unscorable references are ignored.
        discard : float in [0, 1]
            The fraction of such traffic to reject.
        color : {"bgr", "rgb"} or None
            As in :meth:`assess`.
        recursive : bool
            With a directory, include the images of its sub-folders.

        Returns
        -------
        float
            The new threshold (:func:`fiqa_sdk.policy.calibrate_threshold` of the scores).

        Raises
        ------
        GateError
            ``discard`` outside [0, 1], or no reference image had a scorable face.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> gate = fq.QualityGate()  # doctest: +SKIP
        >>> t = gate.calibrate("reference_faces/", discard=0.05)  # doctest: +SKIP
        >>> gate.assess("new.jpg").accepted  # doctest: +SKIP
        """
        discard = check_fraction(discard)
        items, _ = self._batch_items(reference_images, "calibrate", recursive=recursive)
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
        """Write the gate's configuration (backend names, threshold, face policy, version).

        Parameters
        ----------
        path : str or os.PathLike
            The JSON file to write (:meth:`config`).

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        GateError
            The gate was built from objects rather than registry names, or its
            ``scorer_options`` are not JSON values.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> gate = fq.QualityGate(threshold=0.5)  # doctest: +SKIP
        >>> gate.save("gate.json")  # doctest: +SKIP
        PosixPath('gate.json')
        """
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
        """A gate from a file written by :meth:`save` (``overrides`` replace saved fields).

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.
        device : {"cpu", "cuda", "auto"}
            As in the constructor (not saved).
        **overrides
            Constructor arguments replacing the saved ones (e.g. ``threshold=None``).

        Returns
        -------
        QualityGate

        Raises
        ------
        GateError
            The file is missing, unreadable or not a gate file, or it has a threshold set for
            other weights than the scorer of that name has now (recalibrate, or load with
            ``threshold=None`` or a new ``threshold=``).

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> gate = fq.QualityGate.load("gate.json")  # doctest: +SKIP
        >>> gate = fq.QualityGate.load("gate.json", threshold=None)  # doctest: +SKIP
        """
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
                 temperature: float | None = None, color: str | None = None, frame_step: int = 5,
                 max_frames: int | None = 100) -> Template:
        """Fuse the embeddings of several images of one person into one template.

        Only images with a scored face and an embedding take part; the others are listed in
        the template's ``skipped`` as ``(index, reason)`` pairs.

        Parameters
        ----------
        images : iterable of images, directory, or video file path
            An iterable of images, a directory, or a video file path (every ``frame_step``-th
            frame, at most ``max_frames``, read with OpenCV; ``used`` then indexes the sampled
            frames).
        method : {"quality_weighted", "mean", "best", "top_k"}
            ``"quality_weighted"``: softmax of score / temperature; ``"mean"``; ``"best"``;
            ``"top_k"``: the ``k`` best, equal weights.
        k : int
            For ``"top_k"``.
        temperature : float or None
            For ``"quality_weighted"``; the default ``None`` uses 4 x the scores' standard
            deviation, see :func:`fiqa_sdk.policy.template_weights`.
        color : {"bgr", "rgb"} or None
            As in :meth:`assess` (video frames are BGR).
        frame_step, max_frames : int
            Video sampling.

        Returns
        -------
        Template

        Raises
        ------
        GateError
            The gate has ``embedder=None``, no image had a scorable face, an unknown
            ``method``, or an unreadable video.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> gate = fq.QualityGate()  # doctest: +SKIP
        >>> tpl = gate.template(["p1.jpg", "p2.jpg", "p3.jpg"])  # doctest: +SKIP
        >>> tpl.used, tpl.weights  # doctest: +SKIP
        >>> gate.compare(tpl, "probe.jpg")  # doctest: +SKIP
        """
        if not self._embedder_given:
            raise GateError("templates need an embedder; this gate has embedder=None")
        if _is_video(images):
            items: Iterable[ImageInput] = iter_video_frames(images, frame_step, max_frames)
            color = "bgr"
        else:
            items, _ = self._batch_items(images, "template")
        idx, scores, embs = [], [], []
        skipped: list[tuple[int, str]] = []
        for i, reps in enumerate(self._reports(items, color, keep_crops=False)):
            r = self._best(reps)
            if r.score is not None and r.embedding is not None:
                idx.append(i)
                scores.append(r.score)
                embs.append(r.embedding)
            else:
                skipped.append((i, r.reason or "no_face"))
        if not idx:
            detail = ", ".join(f"#{i}: {why}" for i, why in skipped[:5])
            raise GateError(f"template: no image had a scorable face ({len(skipped)} skipped"
                            + (f": {detail}" if detail else "") + ")")
        sel, w, emb = fuse_template(scores, np.stack(embs), method, k=k, temperature=temperature)
        return Template(embedding=emb, weights=w, used=[idx[j] for j in sel], method=method,
                        scores=np.asarray([scores[j] for j in sel], dtype=np.float64),
                        skipped=skipped)

    def embedding(self, x: Any, color: str | None = None) -> np.ndarray:
        """Embedding of a Template, a 1-D embedding vector (as is), or an image (its face).

        Parameters
        ----------
        x : Template, 1-D ndarray or image
            What to embed.
        color : {"bgr", "rgb"} or None
            As in :meth:`assess`, for an array image.

        Returns
        -------
        ndarray, float32
            L2-normalised embedding (a 1-D vector given is returned as is).

        Raises
        ------
        GateError
            An image with the gate's ``embedder=None``, or an image without a usable face.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> gate = fq.QualityGate()  # doctest: +SKIP
        >>> gate.embedding("face.jpg").shape  # doctest: +SKIP
        (512,)
        """
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

    def compare(self, a: Any, b: Any, color: str | None = None) -> float:
        """Cosine similarity of two images / Templates / embeddings (any mix).

        Parameters
        ----------
        a, b : image, Template or 1-D ndarray
            What to compare (see :meth:`embedding`).
        color : {"bgr", "rgb"} or None
            As in :meth:`assess`.

        Returns
        -------
        float
            In [-1, 1] (:func:`fiqa_sdk.policy.cosine`).

        Raises
        ------
        GateError
            As in :meth:`embedding`, or embeddings of different sizes.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> gate = fq.QualityGate()  # doctest: +SKIP
        >>> gate.compare("a.jpg", "b.jpg")  # doctest: +SKIP
        """
        return cosine(self.embedding(a, color), self.embedding(b, color))
