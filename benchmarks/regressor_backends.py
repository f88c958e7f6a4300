"""Which runtime makes the eDifFIQA regressor fast on this CPU, and what each costs in fidelity.

    python benchmarks/regressor_backends.py --quick              # ~2 min: fp32 variants only
    python benchmarks/regressor_backends.py --int8               # + onnxruntime int8 variants
    python benchmarks/regressor_backends.py --int8 --lfw-pairs   # + LFW pairs pAUC of 2 int8

Variants, all on the same aligned celeba-subset faces (``$FIQA_CACHE/celeba-subset-aligned``,
``fiqa train`` builds it): torch eager fp32 (1 / 2 intra-op threads, channels_last, TorchScript
freeze + optimize_for_inference), onnxruntime fp32 of the plain export (``export_onnx``) and of
the blocked-PReLU export the ``backend="onnxruntime"`` scorer runs (graph optimizations ALL /
EXTENDED, 1 / 2 intra-op threads, 2 single-threaded inferences at once = ``threads=2``), and with
``--int8`` onnxruntime int8 models built by ``onnxruntime.quantization`` from the plain export:
static (QDQ and QOperator, per-channel, MinMax or Percentile calibration on 256 celeba faces,
optionally reduce_range / uint8 weights / the first conv and the Gemms kept fp32) and dynamic.

Timing: per batch size, every variant runs in turn on the same 64 faces, ``--rounds`` times
after a warm-up; per-face medians (the machine is shared: compare within one run).
Bound: MACs per face and the CPU's torch sgemm rate (1 and 2 threads), i.e. the faces/s an
implementation running every layer at matrix-multiply efficiency would reach.
Fidelity: Spearman, max and mean abs difference of each variant's scores from the torch fp32
scores on 1,000 held-out celeba faces (not in the calibration set). ``--lfw-pairs``: normalized
pAUC@0.2/0.3 on LFW pairs.txt with ArcFace comparisons (as ``fiqa bench quality --protocol
lfw-pairs``; detections and embeddings come from the ``$FIQA_CACHE/lfw`` cache) of torch fp32
and of each int8 variant. Models are written to ``--work`` (default $FIQA_CACHE/regressor-backends).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: int8 variants: name -> quantize options (see build_int8)
INT8 = {
    "int8-static-qdq": dict(fmt="qdq"),
    "int8-static-qoperator": dict(fmt="qop"),
    "int8-static-qdq-percentile": dict(fmt="qdq", method="percentile"),
    "int8-static-qdq-s8s8": dict(fmt="qdq", act="s8"),
    "int8-static-qdq-reduce-range": dict(fmt="qdq", reduce_range=True),
    "int8-static-qdq-u8u8": dict(fmt="qdq", weight="u8"),
    "int8-static-qdq-edges-fp32": dict(fmt="qdq", edges_fp32=True),
    "int8-dynamic": dict(fmt="dynamic"),
}
#: int8 variants scored on LFW pairs by default: the default static settings and the most
#: faithful variant
LFW_DEFAULT = ("int8-static-qdq", "int8-static-qdq-edges-fp32")


def blob(b: np.ndarray) -> np.ndarray:
    from fiqa_sdk.quality.regressor_onnx import to_blob

    return to_blob(b)


def ort_session(path, threads: int, level: str = "all"):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}[level]
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_fn(path, threads: int = 1, level: str = "all", workers: int = 1):
    s = ort_session(path, threads, level)

    def run(b):
        return s.run(["quality"], {"input": blob(b)})[0]

    if workers == 1:
        return run
    ex = ThreadPoolExecutor(workers)

    def par(b):
        if len(b) < workers:
            return run(b)
        return np.concatenate(list(ex.map(run, np.array_split(b, workers))))
    return par


def torch_fn(model, threads: int, channels_last: bool = False, script: bool = False):
    import torch

    from fiqa_sdk.train.ddpm import to_model_range

    m = model
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    if script:
        with torch.no_grad():
            tm = torch.jit.trace(m, torch.zeros(4, 3, 112, 112), check_trace=False)
            m = torch.jit.optimize_for_inference(torch.jit.freeze(tm.eval()))

    def f(b):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            x = to_model_range(b)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return m(x)[1].numpy()
    return f


def build_int8(src: Path, out: Path, calib: np.ndarray, fmt: str, method: str = "minmax",
               act: str = "u8", weight: str = "s8", reduce_range: bool = False,
               edges_fp32: bool = False) -> Path:
    import onnx
    from onnxruntime import quantization as Q

    if out.is_file():
        return out
    pre = src.with_name(src.stem + "-pre.onnx")
    if not pre.is_file():
        Q.quant_pre_process(str(src), str(pre))
    qt = {"u8": Q.QuantType.QUInt8, "s8": Q.QuantType.QInt8}
    if fmt == "dynamic":
        Q.quantize_dynamic(str(pre), str(out), weight_type=Q.QuantType.QInt8, per_channel=True)
        return out

    class Reader(Q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": blob(calib[i : i + 16])} for i in range(0, len(calib), 16)])

        def get_next(self):
            return next(self.it, None)

    exclude = []
    if edges_fp32:
        nodes = onnx.load(str(pre)).graph.node
        exclude = [n.name for n in nodes if n.op_type == "Conv"][:1]
        exclude += [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    Q.quantize_static(str(pre), str(out), Reader(),
                      quant_format=Q.QuantFormat.QDQ if fmt == "qdq" else Q.QuantFormat.QOperator,
                      per_channel=True, reduce_range=reduce_range, activation_type=qt[act],
                      weight_type=qt[weight], nodes_to_exclude=exclude,
                      calibrate_method={"minmax": Q.CalibrationMethod.MinMax,
                                        "percentile": Q.CalibrationMethod.Percentile}[method])
    return out


def time_variants(variants: dict, pool: np.ndarray, batches, rounds: int, log) -> list[dict]:
    rows = []
    for bs in batches:
        calls = max(1, len(pool) // bs)
        chunks = [pool[i * bs : (i + 1) * bs] for i in range(calls)]
        for f in variants.values():
            f(chunks[0])
        per = {k: [] for k in variants}
        for _ in range(rounds):
            for k, f in variants.items():
                t0 = time.perf_counter()
                for c in chunks:
                    f(c)
                per[k].append((time.perf_counter() - t0) / (calls * bs))
        for k in variants:
            ms = 1000 * float(np.median(per[k]))
            rows.append({"variant": k, "batch": bs, "ms_per_face": ms, "faces_per_s": 1000 / ms})
            log(f"{k:42s} batch {bs:3d}: {ms:7.2f} ms/face {1000 / ms:7.1f} faces/s")
    return rows


def roofline(model) -> dict:
    """The bound: multiply-accumulates per face (Conv2d and Linear layers of the regressor) and
    the CPU's fp32 matrix-multiply rate (torch sgemm 1024^3, median of 20, 1 and 2 threads)."""
    import torch
    from torch import nn

    macs = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            macs[0] += out.numel() * mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        elif isinstance(mod, nn.Linear):
            macs[0] += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.inference_mode():
        model(torch.zeros(1, 3, 112, 112))
    for h in handles:
        h.remove()
    out = {"macs_per_face": macs[0], "gflop_per_face": 2 * macs[0] / 1e9}
    prev = torch.get_num_threads()
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            for _ in range(3):
                a @ b
            ts = []
            for _ in range(20):
                t0 = time.perf_counter()
                a @ b
                ts.append(time.perf_counter() - t0)
            gf = 2 * 1024**3 / float(np.median(ts)) / 1e9
            out[f"sgemm_gflops_{t}_threads"] = gf
            out[f"faces_per_s_at_sgemm_rate_{t}_threads"] = gf / out["gflop_per_face"]
    finally:
        torch.set_num_threads(prev)
    return out


def lfw_pairs_pauc(variants: dict[str, Path | None], log) -> dict:
    """Normalized pAUC@0.2/0.3 (LFW pairs.txt, ArcFace comparisons) of the torch ediffiqa
    (``None``) and of ONNX graphs run by onnxruntime (registered under temporary names)."""
    from fiqa_sdk.eval import bench, protocols
    from fiqa_sdk.eval.features import default_cache_dir
    from fiqa_sdk.quality import SCORERS
    from fiqa_sdk.quality.ediffiqa import OnnxRegressorScorer

    names = []
    for name, path in variants.items():
        if path is None:
            names.append("ediffiqa")
            continue
        reg = f"ediffiqa-{name}"
        if reg not in SCORERS:
            import hashlib

            sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]

            def factory(_p=path, _n=reg, _sha=sha):
                sc = OnnxRegressorScorer(_p, threads=1, name=_n)
                sc.graph_sha256 = _sha  # part of the quality cache key
                return sc
            SCORERS.register(reg, f"experiment: {name}")(factory)
        names.append(reg)
    proto = protocols.read_lfw_pairs()
    res = bench.run_quality_bench(proto, scorers=names, cache_dir=default_cache_dir() / "lfw",
                                  protocol_name="lfw-pairs", log=log)
    out = {}
    for r in res.rows:
        d = r.as_dict()
        out[r.scorer] = {"pauc_0.2": d["pauc_norm_0.2"], "pauc_0.3": d["pauc_norm_0.3"]}
    return out


def main(argv=None) -> int:
    import torch

    from fiqa_sdk.eval.features import default_cache_dir
    from fiqa_sdk.quality.ediffiqa import export_onnx, load_regressor, shipped_weights
    from scipy.stats import spearmanr

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fp32 variants, batch 16, 3 rounds")
    ap.add_argument("--int8", action="store_true", help="also build and measure int8 variants")
    ap.add_argument("--lfw-pairs", nargs="*", default=None, metavar="INT8_VARIANT",
                    help="with --int8: LFW pairs pAUC of torch and of these int8 variants "
                         f"(default {' '.join(LFW_DEFAULT)}; each scores 7,701 images)")
    ap.add_argument("--lfw-only", action="store_true",
                    help="with --lfw-pairs: skip the fidelity and timing runs")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 16 64")
    ap.add_argument("--rounds", type=int, default=None, help="default 7 (quick 3)")
    ap.add_argument("--faces", default=None, help="aligned faces .npy (default the celeba cache)")
    ap.add_argument("--work", default=None, help="model folder")
    ap.add_argument("--out", default=str(REPO / "results" / "regressor_backends.json"))
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(f"regressor_backends: {msg}", file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    faces_path = Path(args.faces) if args.faces else (
        default_cache_dir() / "celeba-subset-aligned" / "faces.npy")
    faces = np.load(faces_path, mmap_mode="r")
    calib = np.ascontiguousarray(faces[0::24][:256])  # every 24th face
    held = np.ascontiguousarray(faces[1::4][:1000])  # disjoint from calib (1 mod 4 vs 0 mod 4)
    pool = np.ascontiguousarray(faces[3000:3064])
    work = Path(args.work) if args.work else default_cache_dir() / "regressor-backends"
    work.mkdir(parents=True, exist_ok=True)
    model, _ = load_regressor(shipped_weights("ediffiqa"))
    model.eval().requires_grad_(False)
    plain = work / "ediffiqa-fp32-plain.onnx"
    blocked = work / "ediffiqa-fp32-blocked-prelu.onnx"
    if not plain.is_file():
        export_onnx(model, plain)
    if not blocked.is_file():
        export_onnx(model, blocked, blocked_prelu=True)
    quick = args.quick
    batches = args.batches or ([16] if quick else [1, 16, 64])
    rounds = args.rounds or (3 if quick else 7)

    variants = {
        "torch t1": torch_fn(model, 1),
        "torch t2": torch_fn(model, 2),
        "onnxruntime plain t1": ort_fn(plain, 1),
        "onnxruntime blocked-PReLU t1": ort_fn(blocked, 1),
        "onnxruntime blocked-PReLU t2 (intra-op)": ort_fn(blocked, 2),
        "onnxruntime blocked-PReLU 2x t1 (threads=2)": ort_fn(blocked, 1, workers=2),
    }
    if not quick:
        variants.update({
            "torch t1 channels_last": torch_fn(model, 1, channels_last=True),
            "torch t1 torchscript": torch_fn(model, 1, script=True),
            "torch 2x t1 (2 inferences at once)": None,
            "onnxruntime plain t2 (intra-op)": ort_fn(plain, 2),
            "onnxruntime plain t1 EXTENDED (no NCHWc)": ort_fn(plain, 1, level="extended"),
        })
        t1 = torch_fn(model, 1)
        ex = ThreadPoolExecutor(2)
        variants["torch 2x t1 (2 inferences at once)"] = lambda b: (
            t1(b) if len(b) < 2 else np.concatenate(list(ex.map(t1, np.array_split(b, 2)))))
    int8_paths: dict[str, Path] = {}
    if args.int8:
        for name, opts in INT8.items():
            log(f"building {name}")
            int8_paths[name] = build_int8(plain, work / f"ediffiqa-{name}.onnx", calib, **opts)
            variants[f"onnxruntime {name} t1"] = ort_fn(int8_paths[name], 1)

    if args.lfw_only:
        variants = {k: v for k, v in variants.items() if k == "torch t1"}
    # fidelity on held-out faces
    log(f"fidelity on {len(held)} held-out faces")
    ref = np.concatenate([variants["torch t1"](held[i : i + 64]) for i in range(0, len(held), 64)])
    fidelity = {}
    for k, f in variants.items():
        q = np.concatenate([f(held[i : i + 64]) for i in range(0, len(held), 64)])
        d = np.abs(q - ref)
        fidelity[k] = {"spearman": float(spearmanr(q, ref)[0]), "max_abs": float(d.max()),
                       "mean_abs": float(d.mean())}
        log(f"{k:42s} spearman {fidelity[k]['spearman']:.5f} max abs {d.max():.2e} "
            f"mean abs {d.mean():.2e}")
    bound = roofline(model)
    log(f"bound: {bound}")
    prev = torch.get_num_threads()
    try:
        rows = [] if args.lfw_only else time_variants(variants, pool, batches, rounds, log)
    finally:
        torch.set_num_threads(prev)
    lfw = None
    if args.int8 and args.lfw_pairs is not None:
        chosen = args.lfw_pairs or list(LFW_DEFAULT)
        unknown = sorted(set(chosen) - set(int8_paths))
        if unknown:
            ap.error(f"unknown int8 variants {unknown}; choose from {sorted(int8_paths)}")
        lfw = lfw_pairs_pauc({"torch": None, **{k: int8_paths[k] for k in chosen}}, log)

    from fiqa_sdk.eval.diffiqa_checks import machine_info
    from fiqa_sdk.eval.runtime import _priority

    result = {"benchmark": "regressor-backends", "faces": str(faces_path), "rounds": rounds,
              "batches": batches, "held_out_faces": len(held), "calibration_faces": len(calib),
              "machine": {**machine_info(), **_priority()}, "timing": rows,
              "fidelity_vs_torch_fp32": fidelity, "lfw_pairs": lfw, "bound": bound,
              "command": "python benchmarks/regressor_backends.py " + shlex.join(
                  sys.argv[1:] if argv is None else list(argv)),
              "seconds": round(time.perf_counter() - t_start, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| variant | batch | ms/face | faces/s | Spearman vs torch | max abs diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        fd = fidelity[r["variant"]]
        print(f"| {r['variant']} | {r['batch']} | {r['ms_per_face']:.2f} | {r['faces_per_s']:.1f} "
              f"| {fd['spearman']:.4f} | {fd['max_abs']:.1e} |")
    print(f"\n{bound['gflop_per_face']:.3f} GFLOP/face; sgemm {bound['sgemm_gflops_1_threads']:.0f} / "
          f"{bound['sgemm_gflops_2_threads']:.0f} GFLOP/s on 1 / 2 threads = "
          f"{bound['faces_per_s_at_sgemm_rate_1_threads']:.0f} / "
          f"{bound['faces_per_s_at_sgemm_rate_2_threads']:.0f} faces/s at sgemm efficiency")
    if lfw:
        print("\n| scorer | LFW pairs pAUC@0.2 | @0.3 |\n|---|---|---|")
        for k, v in lfw.items():
            print(f"| {k} | {v['pauc_0.2']:.3f} | {v['pauc_0.3']:.3f} |")
    log(f"wrote {out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
