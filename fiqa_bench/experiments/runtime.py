"""Runtime breakdown per face (issue 7; DifFIQA supplementary Table 4 style).

    fiqa-bench run runtime --quick          # 2 images, 1 run, DifFIQA n = 2, gate on 1 image
    fiqa-bench run runtime                  # 20 images, 5 runs (~25 min on 1 thread)
    fiqa-bench run runtime --regressor ediffiqa=RUN/ediffiqa_mbf.safetensors \
        --regressor ediffiqa-free=RUN/ediffiqa_free_mbf.safetensors
    fiqa-bench runtime --quick --out DIR          # the same from the CLI
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
be shared) to --out (default results/runtime.json). Details: fiqa_bench/runtime.py.
--weights defaults as in the diffiqa_acceptance experiment.
"""

from __future__ import annotations

from ..harness import experiment


class _WithoutQuick:
    """An argument parser that ignores ``--quick`` (the harness's own option, also added by
    :func:`fiqa_bench.runtime.add_runtime_arguments`) and passes everything else on."""

    def __init__(self, parser) -> None:
        self._parser = parser

    def add_argument(self, *names, **kwargs):
        if names == ("--quick",):
            return None
        return self._parser.add_argument(*names, **kwargs)

    def __getattr__(self, name):
        return getattr(self._parser, name)


def arguments(ap) -> None:
    """The experiment's own options (the harness adds ``--quick`` and ``--out``)."""
    from .. import runtime as rt

    rt.add_runtime_arguments(_WithoutQuick(ap), threads_default=1)  # `fiqa-bench runtime`'s


def default_out(args) -> str:
    """``results/runtime.json`` (``--throughput``: ``results/runtime_throughput.json``)."""
    return "results/runtime_throughput.json" if args.throughput else "results/runtime.json"


@experiment("runtime", "runtime breakdown per face (DifFIQA supplementary Table 4 style)",
            arguments=arguments, default_out=default_out)
def run(args, ctx) -> dict:
    """The result of :func:`fiqa_bench.runtime.run_from_args` (its ``--quick`` sizes with
    ``--quick``)."""
    from .. import runtime as rt

    result = rt.run_from_args(args, ctx.log)
    print(rt.render(result))
    return result

