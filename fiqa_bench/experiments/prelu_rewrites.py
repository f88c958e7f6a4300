"""PReLU written three ways in the exported eDifFIQA regressor: speed in onnxruntime and fidelity.

    fiqa-bench run prelu_rewrites --faces /work/cache/celeba-subset-aligned/faces.npy
    fiqa-bench run prelu_rewrites --quick     # smoke run (CI): the astronaut, seconds

onnxruntime's CPU optimizer runs convolutions in its 8-channel blocked (NCHWc) layout, but its
``PRelu`` kernel has none. The shipped ``backend="onnxruntime"`` graph writes each per-channel
PReLU y -> PReLU(y; a) (slopes a < 1) as ``y + Relu(Conv1x1_depthwise(y; a - 1))``
(:func:`fiqa_sdk._onnx.rewrite_blocked_prelu`). This script builds, from the same plain export
of the shipped ``ediffiqa`` model (:func:`fiqa_sdk.quality.ediffiqa.export_onnx`), the graphs

- ``plain``: ``PRelu`` nodes as exported;
- ``blocked`` (shipped): the rewrite above (the shipped export also splits block 1's grouped
  convolution, :func:`fiqa_sdk._onnx.rewrite_grouped_conv`; left out here to compare the PReLU
  forms alone);
- ``max``: ``Max(y, a * y)`` (``Mul`` by the slope constant, then ``Max``);
- ``relu-min``: ``Relu(y) + a * Min(y, 0)``;

and reports, for each, the max abs difference of its quality scores from the torch model on the
first ``--fidelity-faces`` faces, and its per-face time in onnxruntime (``ORT_ENABLE_ALL``,
``--threads`` intra-op threads, batch ``--batch``, all graphs in turn for ``--rounds``
interleaved rounds after a warm-up; median). Faces: an aligned-face ``.npy`` (``--faces``,
default ``$FIQA_CACHE/celeba-subset-aligned/faces.npy``); ``--quick``: crops of the astronaut.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fiqa_sdk.errors import EvaluationError, InvalidArgumentError

from ..faces import astronaut_faces
from ..harness import experiment


VARIANTS = ("plain", "blocked", "max", "relu-min")
#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"rounds": 2, "batch": 4, "fidelity_faces": 8}


def rewrite_prelu(model, form: str) -> int:
    """Rewrite, in place, each per-channel PReLU (slopes < 1) of an ``onnx.ModelProto`` as
    ``max`` (``Max(y, a*y)``) or ``relu-min`` (``Relu(y) + a*Min(y, 0)``); returns the count.
    Uses the same slope detection as :func:`fiqa_sdk._onnx.rewrite_blocked_prelu`."""
    from onnx import helper, numpy_helper

    from fiqa_sdk.quality.regressor_onnx import constant_value, drop_unused_constants

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    nodes, changed = [], 0
    zero = numpy_helper.from_array(np.zeros((), np.float32), "prelu_zero")
    for n in g.node:
        a = (constant_value(n.input[1], inits, producers)
             if n.op_type == "PRelu" and len(n.input) == 2 else None)
        if a is None or a.size < 2 or not (a < 1).all():
            nodes.append(n)
            continue
        base, y, out = (n.name or n.output[0]), n.input[0], n.output[0]
        slope = numpy_helper.from_array(a.astype(np.float32).reshape(1, -1, 1, 1), base + "_slope")
        g.initializer.append(slope)
        if form == "max":
            nodes += [helper.make_node("Mul", [y, slope.name], [base + "_ay"], name=base + "_mul"),
                      helper.make_node("Max", [y, base + "_ay"], [out], name=base + "_max")]
        elif form == "relu-min":
            nodes += [helper.make_node("Relu", [y], [base + "_pos"], name=base + "_relu"),
                      helper.make_node("Min", [y, zero.name], [base + "_neg"], name=base + "_min"),
                      helper.make_node("Mul", [base + "_neg", slope.name], [base + "_aneg"],
                                       name=base + "_mul"),
                      helper.make_node("Add", [base + "_pos", base + "_aneg"], [out],
                                       name=base + "_add")]
        else:
            raise InvalidArgumentError(f"unknown form {form!r}")
        changed += 1
    if changed:
        g.initializer.append(zero)
        nodes = drop_unused_constants(nodes, {o.name for o in g.output})
        del g.node[:]
        g.node.extend(nodes)
    return changed


def build_graphs(model, work: Path) -> dict[str, Path]:
    import onnx

    from fiqa_sdk.quality.regressor_onnx import blocked_prelu_bytes
    from fiqa_sdk.quality.ediffiqa import export_onnx

    plain = export_onnx(model, work / "plain.onnx")
    blocked = work / "blocked.onnx"
    blocked.write_bytes(blocked_prelu_bytes(plain))
    paths = {"plain": plain, "blocked": blocked}
    for form in ("max", "relu-min"):
        m = onnx.load(str(plain))
        if not rewrite_prelu(m, form):
            raise EvaluationError("no PReLU rewritten")
        onnx.checker.check_model(m)
        paths[form] = work / f"{form}.onnx"
        onnx.save(m, str(paths[form]))
    return paths


def op_count(path: Path, op: str) -> int:
    import onnx

    return sum(n.op_type == op for n in onnx.load(str(path)).graph.node)


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--faces", default=None, help="aligned faces .npy (default the celeba cache)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--fidelity-faces", type=int, default=256)


@experiment("prelu_rewrites", "PReLU written three ways in the exported regressor: "
            "speed and fidelity",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Per-face time, fidelity and op counts of each PReLU form."""
    import onnxruntime as ort
    import torch

    from fiqa_sdk.quality.ediffiqa import load_regressor, shipped_weights
    from fiqa_sdk.quality.regressor_onnx import to_blob
    from fiqa_sdk.train.ddpm import to_model_range

    if args.quick and args.faces is None:
        faces, source = astronaut_faces(max(args.batch, args.fidelity_faces)), "astronaut (--quick)"
    else:
        from fiqa_sdk.eval.features import default_cache_dir

        path = Path(args.faces) if args.faces else (
            default_cache_dir() / "celeba-subset-aligned" / "faces.npy")
        faces, source = np.load(path, mmap_mode="r"), str(path)
    t_start = time.perf_counter()
    model, _ = load_regressor(shipped_weights("ediffiqa"))
    model.eval().requires_grad_(False)
    fid = np.ascontiguousarray(faces[: args.fidelity_faces])
    pool = np.ascontiguousarray(faces[: max(args.batch, 4 * args.batch)])
    prev = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with torch.inference_mode():
            ref = np.concatenate([model(to_model_range(fid[i : i + 64]))[1].numpy()
                                  for i in range(0, len(fid), 64)])
    finally:
        torch.set_num_threads(prev)
    with tempfile.TemporaryDirectory(prefix="prelu-rewrites-") as tmp:
        paths = build_graphs(model, Path(tmp))
        counts = {k: {op: op_count(p, op) for op in ("PRelu", "Max", "Min", "Relu", "Conv")}
                  for k, p in paths.items()}
        sessions = {}
        for k, p in paths.items():
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.intra_op_num_threads = args.threads
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sessions[k] = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])

    def infer(k, b):
        return sessions[k].run(["quality"], {"input": to_blob(b)})[0]

    max_abs = {k: float(np.abs(np.concatenate([infer(k, fid[i : i + 64]) for i in range(0, len(fid), 64)])
                               - ref).max()) for k in sessions}
    chunks = [pool[i : i + args.batch] for i in range(0, len(pool) - args.batch + 1, args.batch)]
    for k in sessions:
        infer(k, chunks[0])  # warm-up
    per = {k: [] for k in sessions}
    for _ in range(args.rounds):
        for k in sessions:
            t0 = time.perf_counter()
            for c in chunks:
                infer(k, c)
            per[k].append((time.perf_counter() - t0) / (len(chunks) * args.batch))
    ms = {k: 1000 * float(np.median(v)) for k, v in per.items()}
    result = {"benchmark": "prelu-rewrites", "faces": source, "threads": args.threads,
              "batch": args.batch, "rounds": args.rounds, "fidelity_faces": len(fid),
              "ms_per_face": ms, "faces_per_s": {k: 1000 / v for k, v in ms.items()},
              "max_abs_diff_vs_torch": max_abs, "op_counts": counts,
              "seconds": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(result, indent=2))
    print(f"\nonnxruntime, {args.threads} thread(s), batch {args.batch}, median of {args.rounds} "
          f"interleaved rounds; fidelity on {len(fid)} faces ({source})", file=sys.stderr)
    print("| PReLU written as | ms/face | faces/s | max abs diff vs torch |\n|---|---|---|---|",
          file=sys.stderr)
    for k in sessions:
        print(f"| {k} | {ms[k]:.2f} | {1000 / ms[k]:.1f} | {max_abs[k]:.1e} |", file=sys.stderr)
    return result

