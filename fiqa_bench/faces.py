"""Face crops shared by the experiments that need a few real faces without a data set."""

from __future__ import annotations

import numpy as np


def astronaut_faces(n: int) -> np.ndarray:
    """``n`` aligned crops of the astronaut, landmarks jittered by up to 3 px (seeded).

    Parameters
    ----------
    n : int
        Number of crops; crop 0 uses the detected landmarks unjittered.

    Returns
    -------
    numpy.ndarray
        ``(n, 112, 112, 3)`` uint8 RGB.
    """
    from skimage.data import astronaut

    import fiqa_sdk as fq
    from fiqa_sdk.align import align_face, jitter_landmarks

    img = astronaut()
    face = fq.create_detector("retinaface").detect(img)[0]
    return np.stack([align_face(img, jitter_landmarks(face, 3.0, k) if k else face)
                     for k in range(n)])
