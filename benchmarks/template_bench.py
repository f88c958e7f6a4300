"""Template benchmark: TAR at FAR 1e-3 / 1e-4 of mean, best, quality-weighted and top-k templates.

    python benchmarks/template_bench.py --out results/bench/templates            # full
    python benchmarks/template_bench.py --quick --out /tmp/templates-quick         # ~1 min cold

The same as ``fiqa bench templates`` (every option is passed through; see
``fiqa bench templates --help`` and ``fiqa_sdk/eval/templates.py``): seeded disjoint templates of
``--k`` (5) images per identity on LFW (identities with >= 10 images), the celeba-subset and
optionally lfw-xq; features (RetinaFace landmarks, ArcFace embeddings, the quality scorer, by
default the gate's: ``fiqa_sdk.gate.default_scorer_name()``) come from the evaluation caches
under ``$FIQA_CACHE``, and templates are fused by ``fiqa_sdk.policy.fuse_template``, the function
``QualityGate.template`` uses. Writes OUT/templates.json and OUT/templates.md; results and
commands are in docs/benchmarks.md ("Templates").
"""

from __future__ import annotations

import sys

from fiqa_sdk.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "templates", *sys.argv[1:]]))
