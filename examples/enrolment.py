#!/usr/bin/env python3
"""Quality-weighted enrolment: fuse several images of one person into one template.

Shows :meth:`fiqa_sdk.QualityGate.template` and :meth:`~fiqa_sdk.QualityGate.compare`. A
template fuses the face-recognition embeddings of several images of one person. With
``method="quality_weighted"`` each image's weight is a softmax of its quality score (scaled by
the scores' standard deviation), so that a blurred or tiny face contributes little; with
``method="mean"`` every image counts the same; ``"best"`` keeps only the best-scored image.
The script prints each enrolment image's score and weight, then the cosine similarity of a
probe image to each template.

Run::

    python examples/enrolment.py                                   # generated demo images
    python examples/enrolment.py --images a1.jpg a2.jpg a3.jpg --probe a4.jpg
    python examples/enrolment.py --images a*.jpg --probe a9.jpg --impostor b1.jpg

With no ``--images``, the enrolment set is made from the sample face that ships with
scikit-image: one good copy and four degraded ones (blur, low resolution, noise), each slightly
rotated; the probe is a mirrored, rotated, rescaled copy. Such a set is what quality weighting
is for: the mean template is pulled towards the degraded images, the quality-weighted one much
less. When the enrolment images are all of similar quality (e.g. a few good photos), the two
templates are close and either may match a given probe slightly better.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import fiqa_sdk as fq

METHODS = ("quality_weighted", "mean", "best")


def demo_images():
    """(names, enrolment images, probe) made from ``skimage.data.astronaut()``; RGB arrays."""
    import cv2
    from skimage.data import astronaut

    face = np.ascontiguousarray(astronaut()[0:320, 90:370])
    h, w = face.shape[:2]

    def rotate(img, deg, scale=1.0):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, scale)
        return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)

    def lowres(img, f):
        small = cv2.resize(img, (w // f, h // f), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    rng = np.random.default_rng(0)
    enrol = {
        "good (rotated 6 deg)": rotate(face, 6),
        "blur sigma 5": cv2.GaussianBlur(rotate(face, -3), (0, 0), 5),
        "low resolution 1/10": lowres(face, 10),
        "noise sigma 45": np.clip(rotate(face, 3) + rng.normal(0, 45, face.shape), 0, 255)
        .astype(np.uint8),
        "blur sigma 8": cv2.GaussianBlur(face, (0, 0), 8),
    }
    probe = rotate(np.ascontiguousarray(face[:, ::-1]), -5, 0.9)
    return list(enrol), list(enrol.values()), probe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", nargs="+", default=None,
                    help="enrolment image files of one person (default: generated demo set)")
    ap.add_argument("--probe", default=None,
                    help="another image of the same person (required with --images)")
    ap.add_argument("--impostor", default=None, help="optional image of a different person")
    ap.add_argument("--scorer", default=None, help="quality scorer (default: the gate's default)")
    args = ap.parse_args(argv)

    if args.images:
        if not args.probe:
            ap.error("--images needs --probe")
        from pathlib import Path

        names = [Path(p).name for p in args.images]
        images, probe, color = args.images, args.probe, "bgr"  # files: colour order is known
    else:
        if args.probe:
            ap.error("--probe needs --images")
        names, images, probe = demo_images()
        color = "rgb"  # the demo images are RGB arrays

    gate = fq.QualityGate(scorer=args.scorer)
    # one pass over the images per method: simple, and cheap for a handful of images
    templates = {m: gate.template(images, method=m, color=color) for m in METHODS}

    qw = templates["quality_weighted"]
    print(f"scorer: {gate.scorer.name}; {len(qw.used)} of {len(images)} enrolment images "
          "have a scorable face")
    for j, i in enumerate(qw.used):
        print(f"  [{i}] {names[i]:<24} score={qw.scores[j]:8.4f}  weight={qw.weights[j]:.3f}")
    unused = sorted(set(range(len(images))) - set(qw.used))
    for i in unused:
        print(f"  [{i}] {names[i]:<24} not used (no scorable face)")
    print(f"best-scored image: [{templates['best'].used[0]}]")

    sims = {m: gate.compare(probe, t, color=color) for m, t in templates.items()}
    for m in METHODS:
        print(f"similarity probe vs {m} template: {sims[m]:.4f}")
    if args.impostor:
        for m in METHODS:
            print(f"similarity impostor vs {m} template: "
                  f"{gate.compare(args.impostor, templates[m]):.4f}")
    gain = sims["quality_weighted"] - sims["mean"]
    print(f"quality weighting changed the probe similarity by {gain:+.4f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fq.FiqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
