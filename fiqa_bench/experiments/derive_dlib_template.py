"""Derive the 5-point template of dlib's 150x150 face chips (DlibEmbedder.template).

dlib's face-recognition ResNet was trained on chips cut by ``dlib.get_face_chip(img, shape_68,
size=150, padding=0.25)``: a similarity transform fitted from 51 of the 68 landmarks to dlib's
mean face. fiqa-sdk aligns with five ArcFace-order points instead (eye centres, nose tip, mouth
corners), so the embedder declares where those five points sit, on average, inside dlib's chip.

For a seeded sample of LFW images this script detects the face (HOG), predicts the 68
landmarks, rebuilds the chip's image->chip mapping from ``dlib.get_face_chip_details`` (as
dlib's ``get_mapping_to_chip`` does; checked against ``dlib.get_face_chip`` pixel by pixel),
maps the five derived points into the chip and averages them. It then checks the result:
embeddings of dlib's own chips vs embeddings of ``align_face(img, five, 150, dst=template)``
chips should agree (cosine near 1).

    fiqa-bench run derive_dlib_template --n 300 --seed 0 [--lfw /path/to/lfw]
    fiqa-bench run derive_dlib_template --quick   # smoke run (CI): 10 images, seconds

Prints the template constants (paste them into fiqa_sdk/embed/dlib.py) and the cosines.
"""

from __future__ import annotations

import glob
import time
from pathlib import Path

import cv2
import numpy as np

from fiqa_sdk.align import align_face
from fiqa_sdk.detect.dlib import dlib_model_path, five_from_68, import_dlib, shape_to_array
from fiqa_sdk.errors import DataLocationError
from fiqa_sdk.eval.protocols import default_lfw_root

from ..harness import experiment

SIZE, PADDING = 150, 0.25

#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"n": 10}


def mapping_to_chip(details) -> np.ndarray:
    """(2, 3) image->chip affine of a ``dlib.chip_details``, as dlib's ``get_mapping_to_chip``:
    the rectangle's corners, rotated by ``angle`` about its centre, go to the chip's corners
    (0, 0), (cols-1, 0), (cols-1, rows-1)."""
    r = details.rect
    c = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    ca, sa = np.cos(details.angle), np.sin(details.angle)
    rot = np.array([[ca, -sa], [sa, ca]])
    corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
    src = (corners - c) @ rot.T + c
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]])
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def sample_files(lfw: Path, n: int, seed: int) -> list[str]:
    files = sorted(glob.glob(str(lfw / "images" / "*" / "*.jpg")))
    if not files:
        raise DataLocationError(f"no LFW images under {lfw}/images")
    idx = np.random.default_rng(seed).choice(len(files), min(n, len(files)), replace=False)
    return [files[i] for i in idx]


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--lfw", type=Path, default=None, help="LFW root (default $FIQA_LFW)")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-embed", action="store_true", help="skip the embedding check")


@experiment("derive_dlib_template", "derive the 5-point template of dlib's 150x150 face "
            "chips",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """The derived template, the rebuilt mapping's pixel error and the embedding check."""
    dlib = import_dlib()
    hog = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    records = []  # (image, shape, five points)
    chip_pts, pix_err = [], []
    lfw = Path(args.lfw) if args.lfw else default_lfw_root()
    for f in sample_files(lfw, args.n, args.seed):
        img = cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB)
        rects = hog(img, 0)
        if not rects:
            continue
        # the LFW subject: the detection nearest the image centre
        h, w = img.shape[:2]
        rect = min(rects, key=lambda r: ((r.left() + r.right()) / 2 - w / 2) ** 2
                   + ((r.top() + r.bottom()) / 2 - h / 2) ** 2)
        shape = sp(img, rect)
        five = five_from_68(shape_to_array(shape))
        M = mapping_to_chip(dlib.get_face_chip_details(shape, SIZE, PADDING))
        chip_pts.append(five @ M[:, :2].T + M[:, 2])
        if len(pix_err) < 20:  # check the rebuilt mapping against dlib's own chip
            ours = cv2.warpAffine(img, M, (SIZE, SIZE), flags=cv2.INTER_LINEAR).astype(np.float64)
            theirs = dlib.get_face_chip(img, shape, size=SIZE, padding=PADDING).astype(np.float64)
            pix_err.append(np.abs(ours - theirs)[2:-2, 2:-2].mean())
        records.append((img, shape, five))
    pts = np.stack(chip_pts)
    template = pts.mean(0)
    print(f"faces: {len(pts)} of {args.n} images")
    print(f"rebuilt mapping vs dlib.get_face_chip: mean |pixel diff| {np.mean(pix_err):.2f} (of 255)")
    print("per-point std in the chip (px):", np.round(pts.std(0), 2).tolist())
    print("DLIB_CHIP_TEMPLATE = np.array([")
    for x, y in template:
        print(f"    [{x:.4f}, {y:.4f}],")
    print("], dtype=np.float64)")
    result = {"images": args.n, "faces": len(pts),
              "mapping_mean_abs_pixel_diff": float(np.mean(pix_err)),
              "point_std_px": pts.std(0), "template": template}
    if args.no_embed:
        return result
    from fiqa_sdk.embed.dlib import DLIB_CHIP_TEMPLATE, DlibEmbedder
    emb = DlibEmbedder()
    chips_dlib = np.stack([dlib.get_face_chip(img, shape, size=SIZE, padding=PADDING)
                           for img, shape, _ in records])
    t0 = time.perf_counter()
    e_dlib = emb.embed(chips_dlib)
    dt = time.perf_counter() - t0
    print(f"embedding: {1000 * dt / len(chips_dlib):.1f} ms/chip")
    result["embedding_ms_per_chip"] = 1000 * dt / len(chips_dlib)
    result["cosine_to_dlib_chip"] = {}
    for label, tpl in (("derived (this run)", template), ("hard-coded DLIB_CHIP_TEMPLATE", DLIB_CHIP_TEMPLATE)):
        chips = np.stack([align_face(img, five, SIZE, dst=tpl) for img, _, five in records])
        cos = np.sum(e_dlib * emb.embed(chips), axis=1)
        print(f"cosine(dlib chip, aligned chip) with {label}: mean {cos.mean():.4f}  "
              f"median {np.median(cos):.4f}  p5 {np.percentile(cos, 5):.4f}  min {cos.min():.4f}")
        result["cosine_to_dlib_chip"][label] = {
            "mean": float(cos.mean()), "median": float(np.median(cos)),
            "p5": float(np.percentile(cos, 5)), "min": float(cos.min())}
    return result

