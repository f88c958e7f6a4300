#!/usr/bin/env python3
"""Plug your own face-recognition model and your own quality scorer into the gate.

Shows the two extension points of :class:`fiqa_sdk.QualityGate`:

- **Embedder** (``embedder=``). Three ways, chosen with ``--embedder``:

  - ``torch``: a ``torch.nn.Module`` wrapped with :class:`fiqa_sdk.CallableEmbedder`. The
    wrapper feeds it ``(N, 3, 112, 112)`` float tensors scaled to [-1, 1] (the ArcFace
    convention), on the module's device, under ``torch.inference_mode``.
  - ``numpy``: any callable ``(N, 112, 112, 3) uint8 RGB -> (N, D)`` (an ONNX session, a
    remote service, ...), also wrapped with :class:`~fiqa_sdk.CallableEmbedder`.
  - ``subclass``: a subclass of :class:`fiqa_sdk.Embedder` that implements ``embed_raw``, for
    full control of the preprocessing (and ``input_size`` if your model wants other crops).

  Embeddings are L2-normalised by the SDK. The face is always aligned to the ArcFace
  112x112 5-point template first.
- **Scorer** (``scorer=``): a subclass of :class:`fiqa_sdk.Scorer` that implements
  ``_score(aligned, faces)``: ``(N, 112, 112, 3)`` uint8 RGB crops in, ``(N,)`` floats out,
  higher = better. Set ``needs_faces = True`` to receive the detected :class:`~fiqa_sdk.Face`
  objects (bbox, landmarks, det_score) as ``faces``.

The models here are stand-ins so that the script runs anywhere: an **untrained**, seeded
convolutional network and a "pixel" embedding are not face-recognition models, so their
similarities mean nothing; the contrast scorer is a toy. Replace them with your own.

Run::

    python examples/custom_embedder.py                    # torch module (default)
    python examples/custom_embedder.py --embedder numpy
    python examples/custom_embedder.py --embedder subclass
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import fiqa_sdk as fq


# -- embedders ------------------------------------------------------------------------------
def tiny_torch_net(dim: int = 128):
    """A small, untrained, seeded CNN: (N, 3, 112, 112) in [-1, 1] -> (N, dim)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, dim),
    )
    return net.eval()


def pixel_embedding(crops: np.ndarray) -> np.ndarray:
    """(N, 112, 112, 3) uint8 RGB -> (N, 256): the zero-mean 16x16 grey thumbnail."""
    import cv2

    out = []
    for crop in crops:
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        thumb = cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)
        out.append((thumb - thumb.mean()).ravel())
    return np.stack(out)


class NormalisedTorchEmbedder(fq.Embedder):
    """An Embedder subclass: runs a torch module with its own (ImageNet-style) preprocessing."""

    name = "imagenet-norm-cnn"
    input_size = 112  # side of the aligned crop this model takes (ArcFace template scaled)

    def __init__(self, module) -> None:
        self.module = module
        self.dim = 128

    def embed_raw(self, faces: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(255.0)  # RGB, [0, 1]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        with torch.inference_mode():
            return self.module((x - mean) / std).numpy()  # un-normalised; the SDK normalises


# -- scorer ---------------------------------------------------------------------------------
class ContrastScorer(fq.Scorer):
    """Toy quality: RMS contrast of the central face region (grey levels / 255)."""

    name = "contrast"

    def _score(self, aligned, faces):
        grey = aligned[:, 16:104, 16:96].astype(np.float64).mean(axis=3) / 255.0
        return grey.reshape(len(aligned), -1).std(axis=1)


def make_embedder(kind: str):
    if kind == "torch":
        return fq.CallableEmbedder(tiny_torch_net(), name="tiny-cnn")
    if kind == "numpy":
        return fq.CallableEmbedder(pixel_embedding, name="pixels")
    return NormalisedTorchEmbedder(tiny_torch_net())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embedder", choices=["torch", "numpy", "subclass"], default="torch",
                    help="which custom embedder to plug in (default torch)")
    args = ap.parse_args(argv)

    import cv2
    from skimage.data import astronaut

    sharp = astronaut()  # RGB
    images = {
        "sharp": sharp,
        "blurred": cv2.GaussianBlur(sharp, (0, 0), 6),
        "low contrast": (128 + (sharp.astype(np.int16) - 128) // 4).astype(np.uint8),
        "mirrored": np.ascontiguousarray(sharp[:, ::-1]),
    }

    embedder = make_embedder(args.embedder)
    scorer = ContrastScorer()
    gate = fq.QualityGate(embedder=embedder, scorer=scorer)
    print(f"embedder: {embedder!r}; scorer: {scorer!r}")

    r = gate.assess(sharp, color="rgb")
    print(f"assess sharp: score={r.score:.4f} accepted={r.accepted} "
          f"embedding shape={r.embedding.shape} norm={np.linalg.norm(r.embedding):.3f}")
    # a scorer also works on its own, on aligned crops: (N, 112, 112, 3) uint8 RGB -> (N,)
    print(f"scorer on the aligned crop directly: {scorer.score(r.aligned)[0]:.4f}")

    names = list(images)
    res = gate.filter(list(images.values()), discard=0.25, color="rgb")
    for i, rep in enumerate(res.reports):
        score = "None" if rep.score is None else f"{rep.score:.4f}"
        print(f"filter {names[i]:<13} score={score} kept={rep.accepted} reason={rep.reason}")

    tpl = gate.template([images["sharp"], images["blurred"], images["low contrast"]], color="rgb")
    print("template weights: " + ", ".join(f"{w:.3f}" for w in tpl.weights))
    sim = gate.compare(images["mirrored"], tpl, color="rgb")
    print(f"similarity mirrored vs template: {sim:.4f} (stand-in model: the number means nothing)")

    try:  # only gates built from registry names can be saved (gate.save() writes config())
        gate.config()
    except fq.GateError as exc:
        print(f"gate.config() / gate.save() refused: {exc}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fq.FiqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
