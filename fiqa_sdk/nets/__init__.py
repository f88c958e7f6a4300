"""Trainable torch networks: ports of the face-recognition backbones the SDK runs as ONNX.

:class:`MobileFaceNet` reproduces insightface's ``w600k_mbf.onnx`` (the ``arcface`` embedder);
:func:`load_mobilefacenet` reads its weights from that file. It is the backbone that the
eDifFIQA quality regressor fine-tunes.
"""

from .mobilefacenet import MobileFaceNet, faces_to_tensor, load_mobilefacenet

__all__ = ["MobileFaceNet", "load_mobilefacenet", "faces_to_tensor"]
