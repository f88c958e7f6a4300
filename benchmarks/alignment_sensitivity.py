"""Alignment sensitivity of quality scorers on LFW pairs.txt (eDifFIQA paper, section 5.4).

    python benchmarks/alignment_sensitivity.py --out results/bench/alignment       # full
    python benchmarks/alignment_sensitivity.py --quick --out /tmp/alignment-quick  # ~1 min

The same as ``fiqa bench alignment`` (every option is passed through; see
``fiqa bench alignment --help`` and ``fiqa_sdk/eval/alignment.py``): faces detected and aligned
by RetinaFace, MTCNN, dlib and SCRFD, and the RetinaFace landmarks moved by seeded uniform noise
of +-k pixels (original image) per coordinate for k = 2, 4, 6; per condition the ArcFace 10-fold
accuracy and, per quality scorer (scored on the condition's own crops), the normalized pAUC at
discard 0.2 / 0.3 of the FNMR-EDC at FMR 1e-3 and its change against RetinaFace without jitter.
Features are cached under ``$FIQA_CACHE/lfw``. Writes OUT/alignment.json and OUT/alignment.md;
results and commands are in docs/benchmarks.md ("Alignment sensitivity").
"""

from __future__ import annotations

import sys

from fiqa_sdk.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "alignment", *sys.argv[1:]]))
