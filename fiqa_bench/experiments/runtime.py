"""Runtime breakdown per face (issue 7; DifFIQA supplementary Table 4 style).

    fiqa-bench run runtime --quick          # ~1 min: 2 images, 2 runs, gate on 1 image
    fiqa-bench run runtime                  # 20 images, 5 runs (~25 min on 1 thread)
    fiqa-bench run runtime --regressor ediffiqa=RUN/ediffiqa_mbf.safetensors \
        --regressor ediffiqa-free=RUN/ediffiqa_free_mbf.safetensors
    fiqa bench runtime --quick --out DIR          # the same from the CLI
    fiqa-bench run runtime --throughput     # regressors only: torch / onnxruntime x
        # threads 1, 2 x batch 1, 16, 64 on 64 aligned LFW crops, 7 interleaved rounds (~4 min)
    fiqa-bench run runtime --throughput --quick   # 16 crops, 2 rounds, batches 1 and 16

Per-face medians over --repeats runs, every stage timed side by side in each run: decode,
detect (RetinaFace), align, embed (ArcFace onnxruntime); DifFIQA default (t = 5, n = 10) and
fast mode split into forward diffusion, backward diffusion and quality computation; the
baselines and each --regressor (one forward pass per face, batch 64; --regressor-backend
torch onnxruntime adds NAME@onnxruntime rows); the eDifFIQA-free head on
the raw embedding; and QualityGate.filter end to end for each scorer. Prints ms/face per stage,
s/face, faces/s and speed ratios; writes JSON (with threads and load average: the machine may
be shared) to --out (default results/runtime.json). Details: fiqa_sdk/eval/runtime.py.
--weights defaults as in benchmarks/diffiqa_acceptance.py.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from ..harness import experiment

REPO = Path(__file__).resolve().parents[1]


def arguments(ap) -> None:
    pass


@experiment("runtime", "runtime breakdown per face (DifFIQA supplementary Table"
            " 4 style)",
            arguments=arguments)
def run(args, ctx) -> dict:
    from fiqa_sdk.eval import runtime as rt

    rt.add_runtime_arguments(ap, threads_default=1)  # the options of `fiqa bench runtime`
    if args.out is None:
        args.out = str(REPO / "results" / ("runtime_throughput.json" if args.throughput
                                           else "runtime.json"))
    def log(msg: str) -> None:
        print(f"runtime: {msg}", file=sys.stderr, flush=True)
    result = rt.run_from_args(args, log)
    result["command"] = "fiqa-bench run runtime " + shlex.join(
        sys.argv[1:] if argv is None else list(argv))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(rt.render(result))
    log(f"wrote {out} ({result['seconds']} s)")
    return 0

