"""Faces/s of the torch MobileFaceNet port vs onnxruntime on w600k_mbf.onnx, side by side.

    OMP_NUM_THREADS=1 fiqa-bench run mbf_torch_vs_onnx --repeats 5
    fiqa-bench run mbf_torch_vs_onnx --quick   # smoke run (CI): batch 8, 1 repeat

One aligned batch (LFW faces when LFW is present, else the astronaut's face with mirrored and
brightness-shifted copies) goes through both: torch fp32, eval mode, ``torch.inference_mode``;
onnxruntime CPU; both with --threads threads. The two are interleaved over --repeats rounds
(after one warm-up call each) so that machine noise hits both alike; the median time of a
batch gives faces/s. Also prints the batch's parity (min cosine, max raw difference). ``--channels-last`` adds a third contender,
torch with channels-last (NHWC) memory format, which speeds up the depthwise convolutions.
"""

from __future__ import annotations

import json
import time

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.protocols import default_lfw_root

from ..harness import experiment

#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"batch": 8, "repeats": 1}


def aligned_batch(n: int) -> tuple[np.ndarray, str]:
    pipe = fq.FacePipeline("retinaface", embedder=None, face_policy="central")
    images = default_lfw_root() / "images"
    faces = []
    if images.is_dir():
        paths = sorted(images.glob("*/*.jpg"))
        for p in paths[:: max(1, len(paths) // n)]:
            (r,) = pipe.process(p)
            if r.ok:
                faces.append(r.aligned)
            if len(faces) == n:
                return np.stack(faces), "LFW"
    from skimage.data import astronaut

    (r,) = pipe.process(astronaut(), color="rgb")
    base = [r.aligned, r.aligned[:, ::-1]]
    faces = [np.clip(base[i % 2].astype(np.int16) + (i // 2) % 40 - 20, 0, 255).astype(np.uint8)
             for i in range(n)]
    return np.stack(faces), "astronaut"


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--channels-last", action="store_true", help="also time torch in NHWC layout")


@experiment("mbf_torch_vs_onnx", "faces/s of the torch MobileFaceNet port vs onnxruntime",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Faces/s of each runtime, their ratio and the parity of the embeddings."""
    import torch

    from fiqa_sdk.nets import faces_to_tensor, load_mobilefacenet

    torch.set_num_threads(args.threads)
    faces, source = aligned_batch(args.batch)
    model = load_mobilefacenet().eval()
    onnx = fq.create_embedder("arcface", batch_size=args.batch, threads=args.threads)
    x = faces_to_tensor(faces)

    def run_torch():
        with torch.inference_mode():
            return model(x).numpy()

    nhwc = load_mobilefacenet().eval().to(memory_format=torch.channels_last) if args.channels_last else None
    x_nhwc = x.contiguous(memory_format=torch.channels_last)

    def run_torch_nhwc():
        with torch.inference_mode():
            return nhwc(x_nhwc).numpy()

    def run_onnx():
        return onnx.embed_raw(faces)  # includes its uint8 -> [-1, 1] conversion, as torch's x does not

    t_raw, o_raw = run_torch(), run_onnx()  # warm-up, and the parity of this batch
    cos = np.sum(fq.embed.l2_normalize(t_raw) * fq.embed.l2_normalize(o_raw), axis=1)
    runners = {"torch": run_torch, "onnxruntime": run_onnx}
    if args.channels_last:
        runners["torch-nhwc"] = run_torch_nhwc
        run_torch_nhwc()
    times = {k: [] for k in runners}
    for _ in range(args.repeats):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    fps = {k: len(faces) / float(np.median(v)) for k, v in times.items()}
    print(f"batch {len(faces)} aligned {source} faces, {args.threads} thread(s), "
          f"median of {args.repeats} interleaved repeats, torch {torch.__version__}")
    for k in times:
        print(f"  {k:12s} {fps[k]:8.1f} faces/s  ({1e3 * np.median(times[k]) / len(faces):.2f} ms/face)")
    print(f"  torch / onnxruntime throughput ratio: {fps['torch'] / fps['onnxruntime']:.2f}")
    print(f"  parity: min cosine {cos.min():.8f}, max |raw diff| {np.abs(t_raw - o_raw).max():.2e}")
    if args.channels_last:
        print(f"  torch-nhwc / onnxruntime throughput ratio: {fps['torch-nhwc'] / fps['onnxruntime']:.2f}")
    result = {"faces": len(faces), "source": source, "threads": args.threads,
              "faces_per_s": fps, "ratio_torch_over_onnx": fps["torch"] / fps["onnxruntime"],
              "times_s": times, "min_cos": float(cos.min()),
              "max_abs_raw_diff": float(np.abs(t_raw - o_raw).max())}
    print(json.dumps(result))
    return result

