"""Which runtime makes the eDifFIQA regressor fast on this CPU, and what each costs in fidelity.

    fiqa-bench run regressor_backends --quick              # ~2 min: fp32 variants only
    fiqa-bench run regressor_backends --int8               # + onnxruntime int8 variants
    fiqa-bench run regressor_backends --int8 --lfw-pairs   # + LFW pairs pAUC of 2 int8
    fiqa-bench run regressor_backends --profile [--int8]   # onnxruntime profiler, ~20 s
    fiqa-bench run regressor_backends --bound-only         # only the sgemm bound, seconds

Variants, all on the same aligned celeba-subset faces (``$FIQA_CACHE/celeba-subset-aligned``,
``fiqa train`` builds it): torch eager fp32 (1 / 2 intra-op threads, channels_last, TorchScript
freeze + optimize_for_inference), onnxruntime fp32 of the plain export (``export_onnx``), of
the blocked-PReLU export and of the export the ``backend="onnxruntime"`` scorer runs (blocked
PReLU + block 1's grouped conv split into depthwise convs) (graph optimizations ALL / EXTENDED,
1 / 2 intra-op threads, 2 single-threaded inferences at once = ``threads=2``), the shipped int8
graph that ``precision="int8"`` runs (``fiqa_sdk/weights/ediffiqa_mbf.int8.onnx``, built by
``fiqa_sdk.quality.regressor_onnx.quantize_int8`` from the scorer's export), and with
``--int8`` onnxruntime int8 models built by ``onnxruntime.quantization`` from the plain export:
static (QDQ and QOperator, per-channel, MinMax or Percentile calibration on 256 celeba faces,
optionally reduce_range / uint8 weights / the first conv and the Gemms kept fp32) and dynamic.

Timing: per batch size, every variant runs in turn on the same 64 faces, ``--rounds`` times
after a warm-up; per-face medians (the machine is shared: compare within one run).
Bound: MACs per face and the CPU's torch sgemm rate (1 and 2 threads), i.e. the faces/s an
implementation running every layer at matrix-multiply efficiency would reach. ``--bound-only``
measures and prints just that (no faces needed; nothing written unless ``--out`` is given).
Fidelity: Spearman, max and mean abs difference of each variant's scores from the torch fp32
scores on 1,000 held-out celeba faces (in neither calibration set). ``--lfw-pairs``: normalized
pAUC@0.2/0.3 on LFW pairs.txt with ArcFace comparisons (as ``fiqa-bench quality --protocol
lfw-pairs``; detections and embeddings come from the ``$FIQA_CACHE/lfw`` cache) of torch fp32
and of each int8 variant. Models are written to ``--work`` (default $FIQA_CACHE/regressor-backends).
``--profile``: instead of the timing runs, onnxruntime's profiler (``SessionOptions.enable_profiling``)
on the plain, the blocked-PReLU and the shipped fp32 graph, the shipped int8 graph (and with
``--int8`` the default
static int8 model), one
intra-op thread, ``ORT_ENABLE_ALL``, batch 16 (``--batches``): the median over ``--rounds`` runs
(default 5, after a warm-up run) of the kernel time per op type, in ms per face, the node count
of each op type (source graph and as run), and each graph's slowest nodes with their share of
the multiply-accumulates (MACs of the source graph's Conv / Gemm nodes). It needs only 16 faces:
without the celeba cache, pass ``--faces`` a small file, e.g. the 80 faces that
``fiqa_sdk.train.data.build_aligned_cache(name="celeba-80-aligned", limit=80)`` aligns in seconds.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fiqa_sdk.errors import InvalidArgumentError

from ..faces import astronaut_faces
from ..harness import experiment

#: ``--quick`` without the celeba cache: this many astronaut crops
QUICK_FACES = 64
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


def print_bound(bound: dict) -> None:
    print(f"{bound['gflop_per_face']:.3f} GFLOP/face; sgemm {bound['sgemm_gflops_1_threads']:.0f} / "
          f"{bound['sgemm_gflops_2_threads']:.0f} GFLOP/s on 1 / 2 threads = "
          f"{bound['faces_per_s_at_sgemm_rate_1_threads']:.0f} / "
          f"{bound['faces_per_s_at_sgemm_rate_2_threads']:.0f} faces/s at sgemm efficiency")


def graph_macs(path) -> dict[str, int]:
    """Multiply-accumulates per face of each Conv / Gemm node of an ONNX graph (batch 1)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    m = onnx.load(str(path))
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_param")
    dim.dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(m.graph.value_info) + list(m.graph.output)}
    weights = {t.name: numpy_helper.to_array(t).shape for t in m.graph.initializer}
    macs = {}
    for n in m.graph.node:
        if n.op_type == "Conv" and n.input[1] in weights and n.output[0] in shapes:
            w, out = weights[n.input[1]], shapes[n.output[0]]
            macs[n.name] = int(np.prod(out[1:]) * np.prod(w[1:]))
        elif n.op_type == "Gemm" and n.input[1] in weights:
            w = weights[n.input[1]]  # (out, in) or (in, out): the same product
            macs[n.name] = int(w[0] * w[1])
    return macs


def op_counts(path) -> dict[str, int]:
    """Node count per op type of an ONNX graph as stored (before onnxruntime's optimizer)."""
    import onnx

    counts: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        if n.op_type != "Constant":
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def profile_graph(path, faces: np.ndarray, runs: int, prefix: Path) -> dict:
    """onnxruntime's profiler on one graph: 1 intra-op thread, ORT_ENABLE_ALL, one warm-up run
    then ``runs`` profiled runs of the batch ``faces``. Per op type, the median over the runs of
    the summed kernel time, in ms per face; the node count per op type as run; the slowest nodes
    (median ms per face)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = str(prefix)
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = blob(faces)
    for _ in range(runs + 1):
        s.run(["quality"], {"input": x})
    trace = Path(s.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    spans = spans[1:]  # the first run is the warm-up
    per_op = [dict() for _ in spans]
    per_node = [dict() for _ in spans]
    node_op: dict[str, str] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        i = next((k for k, (a, b) in enumerate(spans) if a <= e["ts"] <= b), None)
        if i is None:
            continue
        op, node = e["args"]["op_name"], e["name"][: -len("_kernel_time")]
        node_op[node] = op
        per_op[i][op] = per_op[i].get(op, 0.0) + e["dur"]
        per_node[i][node] = per_node[i].get(node, 0.0) + e["dur"]
    n = len(faces)

    def med(dicts, key):  # microseconds per run -> ms per face
        return float(np.median([d.get(key, 0.0) for d in dicts])) / 1000 / n

    ops = {op: med(per_op, op) for op in sorted({k for d in per_op for k in d})}
    nodes = {k: med(per_node, k) for k in node_op}
    counts: dict[str, int] = {}
    for op in node_op.values():
        counts[op] = counts.get(op, 0) + 1
    return {"graph": str(path), "batch": n, "runs": len(spans),
            "ms_per_face": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
            "total_ms_per_face": float(sum(ops.values())),
            "nodes_as_run": counts, "node_op": node_op,
            "slowest_nodes": dict(sorted(nodes.items(), key=lambda kv: -kv[1])[:8])}


def render_profile(profiles: dict[str, dict], macs: dict[str, int], sources: dict[str, dict]) -> str:
    """Markdown tables of :func:`profile_graph` results (graph name -> result)."""
    names = list(profiles)
    ops = sorted({op for p in profiles.values() for op in p["ms_per_face"]},
                 key=lambda op: -max(p["ms_per_face"].get(op, 0.0) for p in profiles.values()))
    first = next(iter(profiles.values()))
    lines = [f"onnxruntime profiler, 1 thread, ORT_ENABLE_ALL, batch {first['batch']}, median of "
             f"{first['runs']} runs: kernel time per op type, ms per face (nodes as run)", "",
             "| op type | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for op in ops:
        cells = []
        for p in profiles.values():
            ms, c = p["ms_per_face"].get(op), p["nodes_as_run"].get(op, 0)
            cells.append("-" if ms is None else f"{ms:.2f} ({c})")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    re = [sum(p["ms_per_face"].get(k, 0.0) for k in ("ReorderInput", "ReorderOutput"))
          for p in profiles.values()]
    lines.append("| layout reorders (ReorderInput + ReorderOutput) | "
                 + " | ".join(f"{v:.2f}" for v in re) + " |")
    lines.append("| total | " + " | ".join(f"{p['total_ms_per_face']:.2f}"
                                          for p in profiles.values()) + " |")
    lines += ["", "Source graphs, nodes per op type (before onnxruntime's optimizer):"]
    for k, c in sources.items():
        lines.append(f"- {k}: " + ", ".join(f"{op} {v}" for op, v in sorted(c.items())))
    total = sum(macs.values())
    lines += ["", f"MACs of the source graph: {total / 1e6:.1f} M per face "
                  f"= {2 * total / 1e9:.3f} GFLOP", ""]
    for name, p in profiles.items():
        lines += [f"Slowest nodes, {name} (ms per face, share of the MACs):", ""]
        for node, ms in p["slowest_nodes"].items():
            src = max((m for m in macs if node.startswith(m)), key=len, default=None)
            share = f"{100 * macs[src] / total:.1f} % of the MACs" if src else "-"
            lines.append(f"- {node} ({p['node_op'][node]}): {ms:.2f} ms, {share}")
        lines.append("")
    return "\n".join(lines)


def lfw_pairs_pauc(variants: dict[str, Path | None], log) -> dict:
    """Normalized pAUC@0.2/0.3 (LFW pairs.txt, ArcFace comparisons) of the torch ediffiqa
    (``None``) and of ONNX graphs run by onnxruntime (registered under temporary names)."""
    from fiqa_sdk.eval import evaluate as bench, protocols
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
    res = bench.evaluate_scorers(proto, scorers=names, cache_dir=default_cache_dir() / "lfw",
                                  protocol_name="lfw-pairs", log=log)
    out = {}
    for r in res.rows:
        d = r.as_dict()
        out[r.scorer] = {"pauc_0.2": d["pauc_norm_0.2"], "pauc_0.3": d["pauc_norm_0.3"]}
    return out


def run_profile(args, plain: Path, blocked: Path, split: Path, int8_shipped: Path | None,
                calib, pool, batch: int, runs: int, work: Path, faces_path: Path, t_start: float,
                log) -> dict:
    """``--profile``: onnxruntime's profiler on the graphs; prints Markdown, returns the
    result."""
    import onnxruntime as ort

    graphs = {"plain": plain, "blocked-PReLU": blocked, "fp32-shipped": split}
    if args.int8:
        name = "int8-static-qdq"
        log(f"building {name}")
        graphs[name] = build_int8(plain, work / f"ediffiqa-{name}.onnx", calib, **INT8[name])
    if int8_shipped is not None:  # what precision="int8" runs
        graphs["int8-shipped"] = int8_shipped
    faces = np.ascontiguousarray(pool[:batch])
    if len(faces) < batch:
        raise InvalidArgumentError(f"regressor_backends: --profile needs {batch} faces, {faces_path} has "
                         f"{len(faces)}")
    profiles = {}
    for name, path in graphs.items():
        log(f"profiling {name} ({runs} runs of batch {batch})")
        profiles[name] = profile_graph(path, faces, runs, work / f"profile-{name}")
    macs = graph_macs(plain)
    sources = {"plain": op_counts(plain), "blocked-PReLU": op_counts(blocked),
               "fp32-shipped": op_counts(split)}
    result = {"benchmark": "regressor-backends-profile", "faces": str(faces_path),
              "onnxruntime": ort.__version__, "batch": batch, "runs": runs,
              "profiles": profiles, "source_op_counts": sources,
              "macs_per_face": sum(macs.values()),
              "seconds": round(time.perf_counter() - t_start, 1)}
    print(render_profile(profiles, macs, sources))
    return result


def default_out(args) -> str | None:
    """``results/regressor_backends.json`` (``--profile``: ``..._profile.json``; ``--bound-only``
    and ``--quick``: no file)."""
    if args.bound_only or args.quick:
        return None
    return ("results/regressor_backends_profile.json" if args.profile
            else "results/regressor_backends.json")


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--int8", action="store_true", help="also build and measure int8 variants")
    ap.add_argument("--lfw-pairs", nargs="*", default=None, metavar="INT8_VARIANT",
                    help="with --int8: LFW pairs pAUC of torch and of these int8 variants "
                         f"(default {' '.join(LFW_DEFAULT)}; each scores 7,701 images)")
    ap.add_argument("--lfw-only", action="store_true",
                    help="with --lfw-pairs: skip the fidelity and timing runs")
    ap.add_argument("--profile", action="store_true",
                    help="only onnxruntime's profiler on the plain and blocked-PReLU graphs (with "
                         "--int8 also int8-static-qdq): ms per face per op type, 1 thread, batch 16")
    ap.add_argument("--bound-only", action="store_true",
                    help="only the bound: MACs per face and the sgemm rate on 1 / 2 threads")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="default 1 16 64")
    ap.add_argument("--rounds", type=int, default=None,
                    help="default 7 (quick 3, profile 5)")
    ap.add_argument("--faces", default=None, help="aligned faces .npy (default the celeba cache)")
    ap.add_argument("--work", default=None, help="model folder")


@experiment("regressor_backends", "runtimes of the eDifFIQA regressor on this CPU: speed "
            "and fidelity",
            arguments=arguments, default_out=default_out)
def run(args, ctx) -> dict:
    """Fidelity and timing of every variant (``--profile``: the profiles; ``--bound-only``:
    the bound only)."""
    import torch
    from scipy.stats import spearmanr

    from fiqa_sdk.eval.features import default_cache_dir
    from fiqa_sdk.quality.ediffiqa import export_onnx, load_regressor, shipped_weights

    if args.bound_only:
        model, _ = load_regressor(shipped_weights("ediffiqa"))
        bound = roofline(model.eval().requires_grad_(False))
        print_bound(bound)
        return {"benchmark": "regressor-backends-bound", "bound": bound}
    log = ctx.log
    t_start = time.perf_counter()
    faces_path = Path(args.faces) if args.faces else (
        default_cache_dir() / "celeba-subset-aligned" / "faces.npy")
    if args.quick and args.faces is None and not faces_path.is_file():
        # no celeba cache (a fresh CI cache): the astronaut's jittered crops
        faces, faces_path = astronaut_faces(QUICK_FACES), Path("astronaut (--quick)")
    else:
        faces = np.load(faces_path, mmap_mode="r")
    calib = np.ascontiguousarray(faces[0::24][:256])  # every 24th face
    from fiqa_sdk.quality.regressor_onnx import calibration_indices, shipped_int8

    shipped_calib = set(calibration_indices(len(faces), 256).tolist())
    held_idx = [i for i in range(1, len(faces), 4) if i not in shipped_calib][:1000]
    if not held_idx:  # a tiny face set (--quick's astronaut crops): all in the calibration
        held_idx = list(range(1, len(faces), 4))
    held = np.ascontiguousarray(faces[held_idx])  # 1 mod 4: disjoint from calib (0 mod 4)
    pool = np.ascontiguousarray(faces[3000:3064] if len(faces) >= 3064 else faces[-64:])
    work = Path(args.work) if args.work else default_cache_dir() / "regressor-backends"
    work.mkdir(parents=True, exist_ok=True)
    model, _ = load_regressor(shipped_weights("ediffiqa"))
    model.eval().requires_grad_(False)
    int8_shipped = shipped_int8(model)  # the graph precision="int8" runs (None: not shipped)
    plain = work / "ediffiqa-fp32-plain.onnx"
    from fiqa_sdk.quality.regressor_onnx import GRAPH_VERSION, blocked_prelu_bytes

    blocked = work / "ediffiqa-fp32-blocked-prelu-only.onnx"  # PReLU rewrite only
    split = work / f"ediffiqa-fp32-shipped-g{GRAPH_VERSION}.onnx"  # + block 1 split
    if not plain.is_file():
        export_onnx(model, plain)
    if not blocked.is_file():
        blocked.write_bytes(blocked_prelu_bytes(plain))
    if not split.is_file():
        export_onnx(model, split, blocked_prelu=True)
    quick = args.quick
    batches = args.batches or ([16] if quick or args.profile else [1, 16, 64])
    rounds = args.rounds or (3 if quick else 5 if args.profile else 7)
    if args.profile:
        return run_profile(args, plain, blocked, split, int8_shipped, calib, pool,
                           batches[0], rounds, work, faces_path, t_start, log)
    variants = {
        "torch t1": torch_fn(model, 1),
        "torch t2": torch_fn(model, 2),
        "onnxruntime plain t1": ort_fn(plain, 1),
        "onnxruntime blocked-PReLU t1": ort_fn(blocked, 1),
        "onnxruntime blocked-PReLU t2 (intra-op)": ort_fn(blocked, 2),
        "onnxruntime blocked-PReLU 2x t1": ort_fn(blocked, 1, workers=2),
        "onnxruntime fp32 shipped (blocked-PReLU + split block 1) t1": ort_fn(split, 1),
        "onnxruntime fp32 shipped 2x t1 (threads=2)": ort_fn(split, 1, workers=2),
    }
    if int8_shipped is not None:
        variants["onnxruntime int8 shipped t1"] = ort_fn(int8_shipped, 1)
        variants["onnxruntime int8 shipped 2x t1 (threads=2)"] = ort_fn(int8_shipped, 1, workers=2)
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
            raise InvalidArgumentError(f"unknown int8 variants {unknown}; choose from {sorted(int8_paths)}")
        lfw = lfw_pairs_pauc({"torch": None, **{k: int8_paths[k] for k in chosen}}, log)
    from ..diffiqa_checks import machine_info
    from ..runtime import process_priority

    result = {"benchmark": "regressor-backends", "faces": str(faces_path), "rounds": rounds,
              "batches": batches, "held_out_faces": len(held), "calibration_faces": len(calib),
              "machine": {**machine_info(), **process_priority()}, "timing": rows,
              "fidelity_vs_torch_fp32": fidelity, "lfw_pairs": lfw, "bound": bound,
              "seconds": round(time.perf_counter() - t_start, 1)}
    print("| variant | batch | ms/face | faces/s | Spearman vs torch | max abs diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        fd = fidelity[r["variant"]]
        print(f"| {r['variant']} | {r['batch']} | {r['ms_per_face']:.2f} | {r['faces_per_s']:.1f} "
              f"| {fd['spearman']:.4f} | {fd['max_abs']:.1e} |")
    print()
    print_bound(bound)
    if lfw:
        print("\n| scorer | LFW pairs pAUC@0.2 | @0.3 |\n|---|---|---|")
        for k, v in lfw.items():
            print(f"| {k} | {v['pauc_0.2']:.3f} | {v['pauc_0.3']:.3f} |")
    return result

