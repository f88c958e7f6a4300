#!/usr/bin/env python3
"""Calibrate an absolute quality threshold, save the gate to JSON, load it back and apply it.

A discard rate (``filter(batch, discard=0.2)``) is relative to each batch. For a stream of
single images (an enrolment kiosk, an upload check) you want an absolute threshold instead:
:meth:`fiqa_sdk.QualityGate.calibrate` scores reference images that look like your traffic and
sets the threshold to the ``discard``-quantile of their scores, so that about that fraction of
similar traffic is rejected. :meth:`~fiqa_sdk.QualityGate.save` writes the gate's backend names,
threshold and face policy to JSON; :meth:`fiqa_sdk.QualityGate.load` rebuilds the same gate
elsewhere. Thresholds are in the units of one scorer: the saved file pins the scorer name, so a
threshold is never applied to another scorer's scores.

Run::

    python examples/calibrate_threshold.py                 # generated reference and test images
    python examples/calibrate_threshold.py --reference refs/ --test new1.jpg new2.jpg
    python examples/calibrate_threshold.py --reference refs/ --test new*.jpg --discard 0.1

With no ``--reference``, the reference set is 10 copies of the sample face that ships with
scikit-image, each degraded by a seeded random amount of blur and noise; the test images are a
sharp copy, a heavily blurred copy and an image without a face. Without ``--config`` the JSON
goes to a new temporary folder (its path is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import fiqa_sdk as fq


def demo_sets(n_reference: int = 10, seed: int = 0):
    """(reference images, {name: test image}); RGB arrays made from the astronaut photo."""
    import cv2
    from skimage.data import astronaut

    face = np.ascontiguousarray(astronaut()[0:320, 90:370])
    rng = np.random.default_rng(seed)
    refs = []
    for _ in range(n_reference):
        img = cv2.GaussianBlur(face, (0, 0), rng.uniform(0.3, 4.0))
        img = np.clip(img + rng.normal(0, rng.uniform(0, 20), img.shape), 0, 255)
        refs.append(img.astype(np.uint8))
    tests = {
        "sharp": face,
        "heavy blur": cv2.GaussianBlur(face, (0, 0), 9),
        "no face": np.full((240, 240, 3), 90, np.uint8),
    }
    return refs, tests


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", default=None,
                    help="folder of reference images like your traffic (default: generated)")
    ap.add_argument("--discard", type=float, default=0.2,
                    help="fraction of reference-like traffic to reject (default 0.2)")
    ap.add_argument("--test", nargs="+", default=None,
                    help="images to accept or reject with the loaded gate (default: generated)")
    ap.add_argument("--config", default=None,
                    help="JSON file to write (default: gate.json in a new temporary folder)")
    ap.add_argument("--scorer", default=None, help="quality scorer (default: the gate's default)")
    args = ap.parse_args(argv)

    if args.reference is None:
        refs, generated = demo_sets()
        color = "rgb"  # the generated images are RGB arrays
    else:
        # calibrate() also takes the folder itself; scores() below needs a list of files
        refs = sorted(p for p in Path(args.reference).iterdir() if p.is_file())
        generated, color = None, "bgr"  # files: colour order is known
    if args.test:
        tests, test_color = {Path(p).name: p for p in args.test}, "bgr"
    elif generated is not None:
        tests, test_color = generated, "rgb"
    else:
        ap.error("--reference needs --test")
    config = Path(args.config) if args.config else (
        Path(tempfile.mkdtemp(prefix="fiqa-calibrate-")) / "gate.json")

    # 1. calibrate: the discard-quantile of the reference scores
    gate = fq.QualityGate(scorer=args.scorer)
    threshold = gate.calibrate(refs, discard=args.discard, color=color)
    ref_scores = [s for s in gate.scores(refs, color=color) if s is not None]
    print(f"scorer {gate.scorer.name}: {len(ref_scores)} reference scores in "
          f"[{min(ref_scores):.4f}, {max(ref_scores):.4f}]")
    print(f"calibrated threshold (discard={args.discard:g}): {threshold:.6f}")
    below = sum(s < threshold for s in ref_scores)
    print(f"reference images below it: {below} of {len(ref_scores)}")

    # 2. save, 3. load (e.g. in another process or on another machine)
    gate.save(config)
    print(f"wrote {config}:")
    print(json.dumps(json.loads(config.read_text()), indent=2))
    loaded = fq.QualityGate.load(config)
    print(f"loaded gate: scorer {loaded.scorer.name}, threshold {loaded.threshold:.6f}")

    # 4. apply: assess() accepts score >= threshold; filter() without discard=/threshold=
    #    uses the gate's own threshold
    names, images = list(tests), list(tests.values())
    for name, img in tests.items():
        r = loaded.assess(img, color=test_color)
        score = "None" if r.score is None else f"{r.score:.4f}"
        print(f"assess {name:<12} score={score}  accepted={r.accepted}  reason={r.reason}")
    res = loaded.filter(images, color=test_color)
    print(f"filter: kept {[names[i] for i in res.kept]}, "
          f"rejected {[(names[i], why) for i, why in res.rejected]}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fq.FiqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
