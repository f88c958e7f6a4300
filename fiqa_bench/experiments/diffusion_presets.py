"""CPU cost of the DifFIQA UNet presets: parameters, inference and training step time.

    fiqa-bench run diffusion_presets [--threads 2] [--presets tiny small base] [--repeats 3]
    fiqa-bench run diffusion_presets --quick   # smoke run (CI): tiny preset, 1 repeat

For each preset: the parameter count; the forward time of a batch of 20 (112x112, fp32,
channels-last, inference mode; DifFIQA's defaults need 2 n (t + 1) = 120 such sample passes per
face, i.e. 6 batches of 20); and one training step on a batch of 16 (batch preparation with the
BSRGAN degradations, forward, backward, Adam, EMA). Wall time is the minimum over the repeats;
CPU time (process time, all threads) is given as well because it is less sensitive to other
processes competing for the cores. The machine's load average is printed first.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from ..harness import experiment

#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"presets": ["tiny"], "repeats": 1}


def measure(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (oneDNN primitive creation)
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls) * 1000, float(np.median(cpus)) * 1000


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "base"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast")


@experiment("diffusion_presets", "CPU cost of the DifFIQA UNet presets (parameters, "
            "inference, training step)",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """One row per preset: parameters, forward and training-step times."""
    import tempfile

    import cv2
    import torch

    from fiqa_sdk.diffusion.unet import UNet, count_parameters
    from fiqa_sdk.train.ddpm import DDPMTrainer, TrainConfig

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs, torch threads {args.threads}")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(64, 112, 112, 3), dtype=np.uint8)
    rows = []
    for preset in args.presets:
        torch.manual_seed(0)
        model = UNet(preset).eval().to(memory_format=torch.channels_last)
        x = torch.randn(20, 3, 112, 112).contiguous(memory_format=torch.channels_last)
        t = torch.randint(0, 5, (20,))

        def fwd(bf16=False):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model(x, t)

        fw, fc = measure(fwd, args.repeats)
        tr = DDPMTrainer(faces, tempfile.mkdtemp(prefix="fiqa-bench-"), TrainConfig(preset=preset))
        tw, tc = measure(tr.train_step, args.repeats)
        row = {"preset": preset, "params_M": round(count_parameters(model) / 1e6, 2),
               "fwd20_ms": round(fw), "fwd20_cpu_ms": round(fc),
               "train16_ms": round(tw), "train16_cpu_ms": round(tc),
               "diffiqa_s_per_face": round(fw * 6 / 1000, 1)}
        if args.bf16:
            row["fwd20_bf16_ms"] = round(measure(lambda: fwd(True), args.repeats)[0])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"load average {os.getloadavg()}")
    print("\n| preset | params | fwd batch 20 (ms) | train step batch 16 (ms) | DifFIQA s/face (t=5, n=10) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['params_M']}M | {r['fwd20_ms']} (CPU {r['fwd20_cpu_ms']}) | "
              f"{r['train16_ms']} (CPU {r['train16_cpu_ms']}) | {r['diffiqa_s_per_face']} |")
    return {"threads": args.threads, "repeats": args.repeats, "rows": rows}

