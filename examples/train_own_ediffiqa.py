#!/usr/bin/env python3
"""Train your own eDifFIQA quality regressor on your own face images, then use it in a gate.

Your data: a folder with one sub-folder per identity (person), images inside::

    my_faces/
        alice/ 001.jpg 002.jpg ...
        bob/   001.jpg ...

The script calls ``fq.train_ediffiqa`` (what ``fiqa train ediffiqa --data my_faces/`` runs),
which does every step of the eDifFIQA recipe (docs/ediffiqa.md): detect and align the faces
(RetinaFace, ArcFace 5-point template; cached), DifFIQA pseudo-labels from the shipped denoiser
(the teacher; cached), ArcFace target embeddings, label optimization with class centres, and
the regressor training (MobileFaceNet backbone + MLP head). Finally it loads the weights it
trained (``result.create_scorer()``, i.e. ``fq.create_scorer("ediffiqa", weights=...)``) and
scores a few of your images with a ``fq.QualityGate``.

Without ``--data`` it trains on a small generated demo set (the scikit-image astronaut, cropped,
rotated and degraded by blur, downscaling and noise, split into pretend identities) so that the
script runs anywhere in about 15 seconds. That set has a single real person: the regressor it
gives is a demonstration, not a useful model. For a real one use thousands of faces of hundreds
of identities (the shipped `ediffiqa` used 6,275 faces of 299 CelebA identities) and the
defaults of ``fiqa train ediffiqa`` (``--epochs 8``, teacher ``--n 10`` or ``--n 1``). Never
train on the data you evaluate on (e.g. LFW).

Run::

    python examples/train_own_ediffiqa.py                                 # demo set, ~15 s
    python examples/train_own_ediffiqa.py --data my_faces/ --out runs/mine --epochs 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import fiqa_sdk as fq

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}  # the ones fq.train_ediffiqa reads


def demo_folder(root: Path, identities: int = 5, per_identity: int = 8) -> Path:
    """Identity sub-folders of degraded astronaut crops (a stand-in for your data)."""
    import cv2
    from skimage.data import astronaut

    face = np.ascontiguousarray(astronaut()[0:320, 90:370, ::-1])  # BGR for cv2.imwrite
    h, w = face.shape[:2]
    rng = np.random.default_rng(0)
    for i in range(identities):
        folder = root / f"person_{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_identity):
            m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-12, 12), rng.uniform(0.85, 1.1))
            img = cv2.warpAffine(face, m, (w, h), borderMode=cv2.BORDER_REFLECT)
            level = j / max(per_identity - 1, 1)  # 0 = clean ... 1 = heavily degraded
            kind = (i + j) % 3
            if kind == 0 and level > 0:
                img = cv2.GaussianBlur(img, (0, 0), 0.5 + 6 * level)
            elif kind == 1 and level > 0:
                f = 1 + int(9 * level)
                img = cv2.resize(cv2.resize(img, (w // f, h // f), interpolation=cv2.INTER_AREA),
                                 (w, h), interpolation=cv2.INTER_LINEAR)
            elif level > 0:
                img = np.clip(img + rng.normal(0, 50 * level, img.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{j:03d}.jpg"), img)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="folder with one sub-folder of face images per identity "
                         "(default: a generated demo set)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: a new temporary folder)")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    ap.add_argument("--teacher-n", type=int, default=1,
                    help="DifFIQA repeats per face for the pseudo-labels (default 1; the "
                         "paper's is 10: better labels, 10x the time)")
    ap.add_argument("--min-count", type=int, default=1,
                    help="top-20%% faces an identity needs for a class centre (default 1 here, "
                         "for small sets; fiqa train's default is 3)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    args = ap.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="fiqa-train-"))
    out.mkdir(parents=True, exist_ok=True)
    data = args.data or demo_folder(out / "demo-faces")
    if not data.is_dir():
        ap.error(f"--data {data} is not a folder")
    print(f"training on {data} -> {out / 'ediffiqa'}", flush=True)
    result = fq.train_ediffiqa(data, out / "ediffiqa", epochs=args.epochs,
                               teacher_n=args.teacher_n, min_count=args.min_count,
                               threads=args.threads, cache=out / "cache",
                               log=lambda msg: print(f"  {msg}", flush=True))
    labels, first, last = result.labels, result.history[0], result.final
    print(f"weights: {result.weights}")
    print(f"aligned faces: {result.aligned}")
    print(f"faces aligned: {labels['faces']} of {labels['identities']} identities, trained on: "
          f"{labels['train_used']}, class centres: {labels.get('centres', 0)}")
    print(f"loss: epoch {first['epoch']} {first['loss']:.4f} -> epoch {last['epoch']} "
          f"{last['loss']:.4f}")

    gate = fq.QualityGate(scorer=result.create_scorer())
    files = sorted(f for f in data.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)[:6]
    print(f"quality of {len(files)} training images with the new scorer:")
    for f in files:
        report = gate.assess(str(f))
        score = "n/a" if report.score is None else f"{report.score:.4f}"
        print(f"  {f.relative_to(data)}  score={score}  reason={report.reason}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fq.FiqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
