"""The eDifFIQA regressor's ONNX export: what ``backend="onnxruntime"`` costs to set up, and why
torch's exporter runs with constant folding off.

    fiqa-bench run onnx_export_checks
    fiqa-bench run onnx_export_checks --quick    # smoke run (CI): 1 repeat, 4 faces

1. **Set-up time.** In one process, after a warm-up ``fq.create_scorer("ediffiqa")`` (torch,
   which also pays the imports and the weights' first read): ``fq.create_scorer("ediffiqa",
   backend="onnxruntime")`` with ``$FIQA_CACHE`` pointing at an *empty* folder (the graph is
   exported to ``$FIQA_CACHE/onnx`` and an onnxruntime session opened), then ``--repeats`` more
   times with that folder filled (the cached graph is loaded). Wall seconds of each call, and of
   ``fq.create_scorer("ediffiqa")`` (torch) for reference. ``$FIQA_CACHE`` is restored after.
2. **Constant folding.** The shipped model exported the way
   :func:`fiqa_sdk.quality.regressor_onnx.export_bytes` does (TorchScript-based exporter, opset
   17, no PReLU rewrite) with ``do_constant_folding`` False (shipped) and True, each run in
   onnxruntime on ``--faces`` aligned faces (seeded crops of the astronaut, landmarks jittered
   by up to 3 px): max abs difference of the raw embedding and of the quality from torch.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ..faces import astronaut_faces
from ..harness import experiment


#: ``--quick`` defaults (options given explicitly still win)
QUICK = {"repeats": 1, "faces": 4}


def setup_times(repeats: int) -> dict:
    """Seconds of create_scorer("ediffiqa", backend="onnxruntime"): cold cache, then cached."""
    import fiqa_sdk as fq

    old = os.environ.get("FIQA_CACHE")
    try:
        with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
            os.environ["FIQA_CACHE"] = tmp
            t0 = time.perf_counter()
            fq.create_scorer("ediffiqa", backend="torch")  # warm-up: imports, weights
            warm_up = time.perf_counter() - t0
            torch_s = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                fq.create_scorer("ediffiqa", backend="torch")
                torch_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fq.create_scorer("ediffiqa", backend="onnxruntime", precision="fp32")
            cold = time.perf_counter() - t0
            files = sorted(p.name for p in Path(tmp, "onnx").glob("*.onnx"))
            cached = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                fq.create_scorer("ediffiqa", backend="onnxruntime", precision="fp32")
                cached.append(time.perf_counter() - t0)
    finally:
        if old is None:
            os.environ.pop("FIQA_CACHE", None)
        else:
            os.environ["FIQA_CACHE"] = old
    return {"warm_up_torch_s": warm_up, "torch_s": float(np.median(torch_s)),
            "onnxruntime_empty_cache_s": cold, "onnxruntime_cached_s": float(np.median(cached)),
            "onnxruntime_cached_all_s": cached, "cache_files": files}


def export_with_folding(model, folding: bool) -> bytes:
    """The graph of :func:`~fiqa_sdk.quality.regressor_onnx.export_bytes` (no PReLU rewrite),
    with torch's constant folding on or off."""
    import copy

    import torch

    from fiqa_sdk.quality.regressor_onnx import QualityOutputs

    wrapper = QualityOutputs(copy.deepcopy(model).cpu().eval()).eval()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (torch.zeros(2, 3, 112, 112),), buf, input_names=["input"],
                          output_names=["quality", "embedding"],
                          dynamic_axes={"input": {0: "n"}, "quality": {0: "n"},
                                        "embedding": {0: "n"}},
                          opset_version=17, do_constant_folding=folding, dynamo=False)
    return buf.getvalue()


def folding_check(n_faces: int) -> dict:
    import onnxruntime as ort
    import torch

    from fiqa_sdk.quality.ediffiqa import load_regressor, shipped_weights
    from fiqa_sdk.quality.regressor_onnx import to_blob
    from fiqa_sdk.train.ddpm import to_model_range

    faces = astronaut_faces(n_faces)
    model, _ = load_regressor(shipped_weights("ediffiqa"))
    model.eval().requires_grad_(False)
    with torch.inference_mode():
        emb, q = model(to_model_range(faces))
    emb, q = emb.numpy(), q.numpy()
    out = {"faces": int(n_faces), "torch": torch.__version__, "embedding_abs_max": float(np.abs(emb).max())}
    for folding in (False, True):
        s = ort.InferenceSession(export_with_folding(model, folding), providers=["CPUExecutionProvider"])
        oq, oe = s.run(["quality", "embedding"], {"input": to_blob(faces)})
        key = "folding_on" if folding else "folding_off"
        out[key] = {"embedding_max_abs_diff": float(np.abs(oe - emb).max()),
                    "quality_max_abs_diff": float(np.abs(oq - q).max())}
    return out


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    ap.add_argument("--repeats", type=int, default=3, help="cached create_scorer calls (median)")
    ap.add_argument("--faces", type=int, default=16, help="astronaut crops for the folding check")


@experiment("onnx_export_checks", "the eDifFIQA regressor's ONNX export: setup cost and "
            "constant folding",
            arguments=arguments, quick=QUICK)
def run(args, ctx) -> dict:
    """Setup times of the onnxruntime backend and the constant-folding check."""
    t_start = time.perf_counter()
    setup = setup_times(args.repeats)
    fold = folding_check(args.faces)
    result = {"benchmark": "onnx-export-checks", "setup": setup, "constant_folding": fold,
              "seconds": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(result, indent=2))
    print(f"\ncreate_scorer('ediffiqa', backend='onnxruntime'): {setup['onnxruntime_empty_cache_s']:.2f} s "
          f"with an empty cache (export), {setup['onnxruntime_cached_s']:.2f} s cached; torch backend "
          f"{setup['torch_s']:.2f} s", file=sys.stderr)
    for k in ("folding_off", "folding_on"):
        print(f"{k}: max abs diff from torch: embedding {fold[k]['embedding_max_abs_diff']:.2g}, "
              f"quality {fold[k]['quality_max_abs_diff']:.2g} (|embedding| <= "
              f"{fold['embedding_abs_max']:.2f}, torch {fold['torch']})", file=sys.stderr)
    return result

