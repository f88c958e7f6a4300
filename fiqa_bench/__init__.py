"""fiqa_bench: the research harness of fiqa-sdk, apart from the SDK.

Every number quoted in ``docs/`` comes from an experiment registered here
(:mod:`fiqa_bench.experiments`) and run through one harness (:mod:`fiqa_bench.harness`)::

    fiqa-bench list
    fiqa-bench run default_speed --quick --out /tmp/speed.json
    python -m fiqa_bench run default_speed --quick      # the same without the console script

fiqa_bench uses only public :mod:`fiqa_sdk` names; fiqa_sdk never imports fiqa_bench.
"""

from __future__ import annotations

from .harness import (REGISTRY, Experiment, RunContext, experiment, load_experiments, main,
                      run_experiment)

__all__ = ["REGISTRY", "Experiment", "RunContext", "experiment", "load_experiments", "main",
           "run_experiment"]
