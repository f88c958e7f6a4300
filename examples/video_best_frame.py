#!/usr/bin/env python3
"""Pick the best frames of a video and build a quality-weighted template from it.

Shows :meth:`fiqa_sdk.QualityGate.template` on a video file: given a path ending in a video
extension (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ...), the gate reads every
``frame_step``-th frame with OpenCV (at most ``max_frames``), scores the face in each, and
fuses the embeddings of the frames with a scorable face, weighted by quality. The template's
``used`` indexes the *sampled* frames, so sampled frame ``j`` is video frame
``j * frame_step``; ``scores`` and ``weights`` are aligned with ``used``. The script prints
every sampled frame's score and weight, writes the ``--top`` best frames as JPEG files, and,
given a probe image, compares it with the quality-weighted and the mean template.

Run::

    python examples/video_best_frame.py                         # a generated test clip
    python examples/video_best_frame.py clip.mp4 --frame-step 5 --max-frames 100 --top 3
    python examples/video_best_frame.py clip.mp4 --probe id_photo.jpg --out-dir best/

With no video, a 30-frame clip (10 fps, 256x256) is written to a new temporary folder: the
sample face that ships with scikit-image, sharpest and brightest at frame 20 and progressively
blurred and darkened away from it. Its probe is a mirrored copy of the original photo. Without
``--out-dir`` the frames go to a new temporary folder (its path is printed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import fiqa_sdk as fq

PEAK_FRAME = 20


def make_demo_video(path: Path, n_frames: int = 30, fps: float = 10.0) -> Path:
    """Write the synthetic clip (see the module docstring); returns the file actually written."""
    import cv2
    from skimage.data import astronaut

    base = cv2.cvtColor(np.ascontiguousarray(astronaut()[12:268, 97:353]), cv2.COLOR_RGB2BGR)
    size = (base.shape[1], base.shape[0])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():  # an OpenCV build without an MPEG-4 encoder: Motion JPEG / AVI
        path = path.with_suffix(".avi")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    try:
        for i in range(n_frames):
            d = abs(i - PEAK_FRAME)
            frame = cv2.GaussianBlur(base, (0, 0), 0.4 * d) if d else base.copy()
            frame = np.clip(frame * (1.0 - 0.025 * d), 0, 255).astype(np.uint8)
            shift = np.float32([[1, 0, i - n_frames // 2], [0, 1, 0]])  # the head drifts
            writer.write(cv2.warpAffine(frame, shift, size, borderMode=cv2.BORDER_REPLICATE))
    finally:
        writer.release()
    return path


def save_frames(video: Path, frame_numbers: list[int], out_dir: Path) -> list[Path]:
    """Write the given frames of ``video`` as JPEG files (OpenCV decodes BGR, writes BGR)."""
    import cv2

    wanted, written = set(frame_numbers), []
    cap = cv2.VideoCapture(str(video))
    try:
        i = 0
        while wanted:
            ok, frame = cap.read()
            if not ok:
                break
            if i in wanted:
                p = out_dir / f"frame_{i:05d}.jpg"
                cv2.imwrite(str(p), frame)
                written.append(p)
                wanted.discard(i)
            i += 1
    finally:
        cap.release()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?", default=None,
                    help="video file (default: a generated 30-frame clip)")
    ap.add_argument("--frame-step", type=int, default=5, help="use every N-th frame (default 5)")
    ap.add_argument("--max-frames", type=int, default=100,
                    help="at most this many sampled frames (default 100)")
    ap.add_argument("--top", type=int, default=1, help="how many best frames to save (default 1)")
    ap.add_argument("--probe", default=None, help="image to compare with the templates")
    ap.add_argument("--out-dir", default=None,
                    help="folder for the best frames (default: a new temporary folder)")
    ap.add_argument("--scorer", default=None, help="quality scorer (default: the gate's default)")
    args = ap.parse_args(argv)

    out_dir = Path(args.out_dir) if args.out_dir else Path(tempfile.mkdtemp(prefix="fiqa-video-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    probe, probe_color = args.probe, "bgr"
    if args.video is None:
        video = make_demo_video(out_dir / "demo_clip.mp4")
        print(f"demo video: {video} (sharpest at frame {PEAK_FRAME})")
        if probe is None:
            from skimage.data import astronaut

            probe, probe_color = np.ascontiguousarray(astronaut()[:, ::-1]), "rgb"
    else:
        video = Path(args.video)

    gate = fq.QualityGate(scorer=args.scorer)
    step = args.frame_step
    tpl = gate.template(video, method="quality_weighted", frame_step=step,
                        max_frames=args.max_frames)

    print(f"scorer: {gate.scorer.name}; {len(tpl.used)} sampled frames with a scorable face")
    for j, w, s in zip(tpl.used, tpl.weights, tpl.scores):
        print(f"  frame {j * step:5d}  score={s:8.4f}  weight={w:.3f}")

    # best first; the earlier frame wins a tie (as in method="best")
    order = sorted(range(len(tpl.used)), key=lambda k: (-tpl.scores[k], k))[: max(args.top, 1)]
    best_frames = [tpl.used[k] * step for k in order]
    print(f"best frame: {best_frames[0]} (score {tpl.scores[order[0]]:.4f})")
    if len(best_frames) > 1:
        print("best frames: " + ", ".join(str(f) for f in best_frames))
    for p in save_frames(video, best_frames, out_dir):
        print(f"wrote {p}")

    if probe is not None:
        mean = gate.template(video, method="mean", frame_step=step, max_frames=args.max_frames)
        print(f"similarity probe vs quality_weighted template: "
              f"{gate.compare(probe, tpl, color=probe_color):.4f}")
        print(f"similarity probe vs mean template: "
              f"{gate.compare(probe, mean, color=probe_color):.4f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except fq.FiqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
