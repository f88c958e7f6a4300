"""Image -> faces -> aligned crops -> embeddings: the face half of the quality pipeline.

:class:`FacePipeline` wires a detector, the ArcFace aligner and an embedder. It holds no model
code of its own. Every input is processed independently: a bad image yields a result with a
``reason`` instead of raising, so one broken file never loses a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .align import ARCFACE_SIZE, align_face, as_face_batch, template
from .detect import DEFAULT_FACE_POLICY, DETECTORS, Detector, create_detector, select_faces
from .embed import EMBEDDERS, Embedder, create_embedder
from .embed.base import l2_normalize
from .errors import AlignmentError, ImageDecodeError, ImageNotFoundError, InvalidImageError
from .io import ImageInput, load_image
from .types import Face

# backends created by name that take a ``device`` argument
def device_kwargs(registry: Any, name: Any, device: str) -> dict[str, str]:
    """``{"device": device}`` for a backend created by name whose registry card lists CUDA among
    its devices, when the device is not the CPU; else ``{}``."""
    if device == "cpu" or not isinstance(name, str) or name not in registry:
        return {}
    return {"device": device} if "cuda" in registry.card(name).get("device", ()) else {}


@dataclass
class PipelineResult:
    """What the pipeline made of one input image (one face of it).

    ``reason`` is None on success, else one of ``"not_found"``, ``"decode_error"``,
    ``"invalid_input"``, ``"no_face"``, ``"alignment_error"``; ``message`` says more.
    """

    face: Face | None = None
    aligned: np.ndarray | None = None  # (112, 112, 3) uint8 RGB, ArcFace template
    embedding: np.ndarray | None = None  # (D,) float32, L2-normalised
    embedding_norm: float | None = None  # norm of the raw embedding (raw = embedding * norm)
    faces: list[Face] = field(default_factory=list)  # every face the detector found
    image_shape: tuple[int, int] | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def set_raw_embeddings(results: list[PipelineResult], raw: np.ndarray) -> None:
    """Give each of ``results`` its L2-normalised embedding and the norm of its raw one
    (``raw``: ``(N, D)`` un-normalised embeddings, one row per result)."""
    raw = np.asarray(raw, dtype=np.float32)
    for r, e, n in zip(results, l2_normalize(raw), np.linalg.norm(raw, axis=1)):
        r.embedding, r.embedding_norm = e, float(n)


class FacePipeline:
    """Detector -> 5-point ArcFace alignment -> embedder.

    Parameters
    ----------
    detector : str or Detector
        Registry name (see :func:`fiqa_sdk.list_detectors`) or an instance.
    embedder : str, Embedder, callable or None
        Registry name, instance, wrapped callable, or None to skip embedding.
    face_policy : {"subject", "largest", "central", "confidence", "all"}
        Which face(s) of a multi-face image to keep (see :func:`fiqa_sdk.detect.select_faces`);
        default ``"subject"``.
    device : {"cpu", "cuda", "auto"}
        Passed to backends created by name.

    Raises
    ------
    InvalidArgumentError
        An unknown ``face_policy`` or ``device``.
    UnknownBackendError
        An unknown detector or embedder name.

    Examples
    --------
    >>> import fiqa_sdk as fq
    >>> pipe = fq.FacePipeline(embedder=None)  # doctest: +SKIP
    >>> [r.face for r in pipe.process("face.jpg")]  # doctest: +SKIP
    """

    def __init__(self, detector: str | Detector = "retinaface", embedder: Any = "arcface",
                 face_policy: str = DEFAULT_FACE_POLICY, device: str = "cpu") -> None:
        self.detector = create_detector(detector, **device_kwargs(DETECTORS, detector, device))
        self.embedder = None if embedder is None else create_embedder(
            embedder, **device_kwargs(EMBEDDERS, embedder, device))
        # crops for an embedder trained on the ArcFace template are the scored crops themselves
        self._reuse_crop = self.embedder is not None and (
            self.embedder.input_size == ARCFACE_SIZE
            and np.allclose(self.embedder.template, template(ARCFACE_SIZE)))
        select_faces([], face_policy)  # validates the policy name early
        self.face_policy = face_policy

    # -- single stages -------------------------------------------------------------------
    def faces(self, image: np.ndarray) -> list[Face]:
        """Faces of a decoded RGB image chosen by the face policy."""
        return select_faces(self.detector.detect(image), self.face_policy, image.shape)

    def embedder_crop(self, image: np.ndarray, face: Face, aligned: np.ndarray) -> np.ndarray:
        """The crop the embedder wants: the ArcFace crop itself, or its own template's."""
        if self._reuse_crop:
            return aligned
        return align_face(image, face, self.embedder.input_size, self.embedder.template)

    # -- whole pipeline ------------------------------------------------------------------
    def process(self, img: ImageInput, color: str = "bgr") -> list[PipelineResult]:
        """Results for one image: one per selected face, or one failed result with a reason.

        Parameters
        ----------
        img : path, bytes, ndarray or PIL.Image
            Any input :func:`fiqa_sdk.load_image` accepts.
        color : {"bgr", "rgb"}
            Channel order of an array ``img``.

        Returns
        -------
        list of PipelineResult
            One per face selected by the face policy, or one failed result whose ``reason``
            says why (``"no_face"``, ``"decode_error"``, ...); an unreadable image never raises.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> pipe = fq.FacePipeline()  # doctest: +SKIP
        >>> res = pipe.process("face.jpg")[0]  # doctest: +SKIP
        >>> res.ok, res.aligned.shape, res.embedding.shape  # doctest: +SKIP
        (True, (112, 112, 3), (512,))
        """
        return next(iter(self.process_batch([img], color=color)))

    def process_batch(self, images: Iterable[ImageInput], color: str = "bgr",
                      batch_size: int = 32, embed: bool = True) -> Iterator[list[PipelineResult]]:
        """Yield, for each input in order, its list of results (see :meth:`process`).

        Parameters
        ----------
        images : iterable of images
            Any iterable (generators included) of inputs :func:`fiqa_sdk.load_image` accepts.
        color : {"bgr", "rgb"}
            Channel order of array inputs.
        batch_size : int
            Embeddings are computed ``batch_size`` images at a time; memory stays bounded for
            any iterable.
        embed : bool
            ``False``: detect and align only (the results' ``embedding`` stays None), for a
            caller that embeds the crops itself.

        Yields
        ------
        list of PipelineResult
            The results of one input, in input order.

        Examples
        --------
        >>> import fiqa_sdk as fq
        >>> pipe = fq.FacePipeline()  # doctest: +SKIP
        >>> for results in pipe.process_batch(["a.jpg", "b.jpg"], batch_size=16):  # doctest: +SKIP
        ...     print([r.reason for r in results])
        """
        pending: list[tuple[np.ndarray, list[PipelineResult]]] = []
        for img in images:
            pending.append(self._prepare(img, color))
            if len(pending) >= batch_size:
                yield from self._finish(pending, embed)
                pending = []
        if pending:
            yield from self._finish(pending, embed)

    def _prepare(self, img: ImageInput, color: str) -> tuple[np.ndarray | None, list[PipelineResult]]:
        try:
            rgb = load_image(img, color=color)
        except ImageNotFoundError as exc:
            return None, [PipelineResult(reason="not_found", message=str(exc))]
        except ImageDecodeError as exc:
            return None, [PipelineResult(reason="decode_error", message=str(exc))]
        except InvalidImageError as exc:
            return None, [PipelineResult(reason="invalid_input", message=str(exc))]
        shape = rgb.shape[:2]
        all_faces = self.detector.detect(rgb)
        chosen = select_faces(all_faces, self.face_policy, rgb.shape)
        if not chosen:
            return rgb, [PipelineResult(faces=all_faces, image_shape=shape, reason="no_face",
                                        message="no face detected")]
        results = []
        for face in chosen:
            try:
                crop = align_face(rgb, face)
            except AlignmentError as exc:
                results.append(PipelineResult(face=face, faces=all_faces, image_shape=shape,
                                              reason="alignment_error", message=str(exc)))
                continue
            results.append(PipelineResult(face=face, aligned=crop, faces=all_faces, image_shape=shape))
        return rgb, results

    def _finish(self, pending: list[tuple[np.ndarray | None, list[PipelineResult]]],
                embed: bool = True):
        if self.embedder is not None and embed:
            todo = [(rgb, r) for rgb, rs in pending for r in rs if r.ok]
            if todo:
                crops = np.stack([self.embedder_crop(rgb, r.face, r.aligned) for rgb, r in todo])
                if type(self.embedder).embed is Embedder.embed:  # keep the raw norm too
                    set_raw_embeddings([r for _, r in todo], self.embedder.embed_raw(
                        as_face_batch(crops, self.embedder.input_size)))
                else:  # an embedder that overrides embed(): its own normalisation
                    for (_, r), e in zip(todo, self.embedder.embed(crops)):
                        r.embedding, r.embedding_norm = e, None
        for _, rs in pending:
            yield rs
