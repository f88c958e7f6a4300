"""Cost of one DifFIQA UNet pass per sample by pass size, and where its time goes (CPU).

    fiqa-bench run unet_pass_size                        # 2 threads, passes of 8 and 40
    fiqa-bench run unet_pass_size --threads 1 --onnx     # + onnxruntime on the same graph
    fiqa-bench run unet_pass_size --threads 1 --freeze   # + TorchScript freeze
    fiqa-bench run unet_pass_size --quick                # smoke run (CI): seconds

The shipped denoiser (``fiqa_sdk/weights/diffiqa_unet.safetensors``) runs as the ``diffiqa``
scorer runs it on the CPU (eval, ``torch.inference_mode``, channels-last): ``--samples`` seeded
noisy 112x112 inputs (level t = 4, the scorer's first DDIM step at t = 5) are denoised in
passes of B samples for each B of ``--pass-sizes``, all pass sizes side by side in interleaved
rounds after a warm-up; prints the per-sample median time of each (the scorer's ``unet_batch``
picks B; its CPU default is 8). ``--onnx`` also exports the UNet (torch's exporter, dynamic
batch) and times it in onnxruntime (``ORT_ENABLE_ALL``, ``--threads`` intra-op threads) in the
same rounds, after checking that it gives torch's output (max abs difference printed).
``--freeze`` also times the UNet traced with ``torch.jit.trace``, then ``torch.jit.freeze`` and
``torch.jit.optimize_for_inference`` (same inputs, same rounds; max abs difference printed). ``--profile`` adds ``torch.profiler`` over one pass of the first pass size: self CPU
time per op, and the share of GroupNorm, SiLU, add and concatenation. The machine's load average
is printed; on a shared machine compare only rows of one run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from fiqa_sdk.errors import InvalidArgumentError

from ..harness import experiment


#: torch.profiler op names counted as "GroupNorm / SiLU / add / concat" (elementwise and
#: normalisation work over the activations, as opposed to convolutions and matrix products)
ELEMENTWISE = ("group_norm", "silu", "add", "cat", "native_group_norm", "mul")


def inputs(samples: int, seed: int = 0, t: int = 4):
    """Seeded inputs of the denoiser: clean images in [-1, 1] noised to level ``t``."""
    import torch

    from fiqa_sdk.diffusion.schedule import Schedule

    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(samples, 3, 112, 112, generator=g) * 2 - 1
    tt = torch.full((samples,), t, dtype=torch.long)
    return Schedule().q_sample(x0, tt, torch.randn(x0.shape, generator=g)), tt


def torch_runner(model, x, t, pass_size: int):
    import torch

    def run():
        with torch.inference_mode():
            for i in range(0, len(x), pass_size):
                xb = x[i : i + pass_size].contiguous(memory_format=torch.channels_last)
                model(xb, t[i : i + pass_size]).float()
    return run


def onnx_runner(path: Path, x, t, pass_size: int, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    xn, tn = x.numpy(), t.numpy()

    def run():
        for i in range(0, len(xn), pass_size):
            s.run(None, {"x": xn[i : i + pass_size], "t": tn[i : i + pass_size]})
    return run


def onnx_parity(model, path: Path, x, t) -> float:
    """Largest absolute difference between the torch and the onnxruntime output on one pass."""
    import onnxruntime as ort
    import torch

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        ref = model(x.contiguous(memory_format=torch.channels_last), t).float().numpy()
    return float(np.abs(s.run(None, {"x": x.numpy(), "t": t.numpy()})[0] - ref).max())


def export(model, path: Path) -> Path:
    import warnings

    import torch

    x, t = inputs(2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(model, (x, t), str(path), input_names=["x", "t"], output_names=["x0"],
                          dynamic_axes={"x": {0: "n"}, "t": {0: "n"}, "x0": {0: "n"}},
                          opset_version=17, dynamo=False)
    return path


def frozen(model, x, t):
    """The UNet traced on one pass, frozen and optimized for inference (TorchScript)."""
    import torch

    with torch.no_grad():
        tm = torch.jit.trace(model, (x[:2].contiguous(memory_format=torch.channels_last), t[:2]),
                             check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(tm.eval()))


def profile_ops(model, x, t, pass_size: int) -> dict:
    """torch.profiler over one pass: self CPU ms per op (top 12) and the elementwise share."""
    from torch.profiler import ProfilerActivity, profile

    run = torch_runner(model, x[:pass_size], t[:pass_size], pass_size)
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    rows = {}
    for e in prof.key_averages():
        rows[e.key] = rows.get(e.key, 0.0) + e.self_cpu_time_total / 1000
    total = sum(rows.values())
    elem = sum(v for k, v in rows.items() if k.replace("aten::", "").rstrip("_") in ELEMENTWISE)
    top = dict(sorted(rows.items(), key=lambda kv: -kv[1])[:12])
    return {"pass_size": pass_size, "total_ms": total, "elementwise_ms": elem,
            "elementwise_share": elem / total if total else float("nan"), "top_ms": top}


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads (2)")
    ap.add_argument("--pass-sizes", type=int, nargs="+", default=None, help="default 8 40")
    ap.add_argument("--samples", type=int, default=None, help="samples per round (default 40)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7)")
    ap.add_argument("--onnx", action="store_true", help="also time onnxruntime on the export")
    ap.add_argument("--profile", action="store_true", help="also torch.profiler over one pass")
    ap.add_argument("--freeze", action="store_true",
                    help="also time the TorchScript trace + freeze + optimize_for_inference")
    ap.add_argument("--work", default=None, help="folder of the ONNX export (default a temp dir)")


@experiment("unet_pass_size", "cost of one DifFIQA UNet pass per sample by pass size, "
            "and where it goes",
            arguments=arguments)
def run(args, ctx) -> dict:
    """Milliseconds per sample per runtime and pass size, parities and the profile."""
    import torch

    from fiqa_sdk.quality.diffiqa import load_denoiser

    sizes = args.pass_sizes or ([4, 8] if args.quick else [8, 40])
    samples = args.samples or (8 if args.quick else 40)
    rounds = args.rounds or (2 if args.quick else 7)
    if min(sizes) < 1 or samples < max(sizes):
        raise InvalidArgumentError(f"pass sizes must be in 1..--samples ({samples})")
    t_start = time.perf_counter()
    prev = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        model, _ = load_denoiser()
        model = model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        x, t = inputs(samples)
        parity = frozen_parity = None
        runners = {f"torch, pass of {b}": torch_runner(model, x, t, b) for b in sizes}
        if args.freeze:
            fm = frozen(model, x, t)
            runners.update({f"TorchScript frozen, pass of {b}": torch_runner(fm, x, t, b)
                            for b in sizes})
            with torch.inference_mode():
                xb = x[: sizes[0]].contiguous(memory_format=torch.channels_last)
                frozen_parity = float((fm(xb, t[: sizes[0]]).float()
                                       - model(xb, t[: sizes[0]]).float()).abs().max())
        if args.onnx:
            import tempfile

            work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="unet-onnx-"))
            work.mkdir(parents=True, exist_ok=True)
            path = export(model.to(memory_format=torch.contiguous_format), work / "unet.onnx")
            model = model.to(memory_format=torch.channels_last)
            runners.update({f"onnxruntime, pass of {b}": onnx_runner(path, x, t, b, args.threads)
                            for b in sizes})
            parity = onnx_parity(model, path, x[: sizes[0]], t[: sizes[0]])
        for run in runners.values():
            run()  # warm-up
        times = {k: [] for k in runners}
        for _ in range(rounds):
            for k, run in runners.items():
                t0 = time.perf_counter()
                run()
                times[k].append((time.perf_counter() - t0) / samples)
        ms = {k: 1000 * float(np.median(v)) for k, v in times.items()}
        prof = profile_ops(model, x, t, sizes[0]) if args.profile else None
    finally:
        torch.set_num_threads(prev)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {"benchmark": "unet-pass-size", "threads": args.threads, "samples": samples,
              "rounds": rounds, "ms_per_sample": ms, "onnx_max_abs_diff": parity,
              "frozen_max_abs_diff": frozen_parity,
              "profile": prof, "loadavg": load,
              "seconds": round(time.perf_counter() - t_start, 1)}
    print(f"DifFIQA UNet (shipped denoiser), {args.threads} thread(s), {samples} samples, median "
          f"of {rounds} interleaved rounds; load average {load}")
    print("| runtime, pass size | ms per sample |\n|---|---|")
    for k, v in ms.items():
        print(f"| {k} | {v:.2f} |")
    if parity is not None:
        print(f"\nonnxruntime vs torch output: max abs difference {parity:.1e}")
    if frozen_parity is not None:
        print(f"\nTorchScript frozen vs torch output: max abs difference {frozen_parity:.1e}")
    if prof:
        print(f"\ntorch.profiler, one pass of {prof['pass_size']}: {prof['total_ms']:.1f} ms self "
              f"CPU time, GroupNorm / SiLU / add / mul / cat {prof['elementwise_ms']:.1f} ms "
              f"({100 * prof['elementwise_share']:.0f} %)")
        for k, v in prof["top_ms"].items():
            print(f"  {k:32s} {v:8.1f} ms")
    return result

