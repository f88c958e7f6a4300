"""Evaluation: ISO/IEC 29794-1 Error-versus-Discard Characteristic (EDC) and pAUC.

The public names (docs/api.md, "fq.eval"): :func:`edc` (FNMR-EDC at a threshold fixed at a
target FMR), :func:`fmr_edc`, :func:`pauc`, :func:`threshold_at_fmr`,
:func:`combine_pair_qualities`, the result types :class:`EDCResult`, :class:`EDCCurve` and
:class:`FMRThreshold` (from :mod:`fiqa_sdk.eval.metrics`, whose module docstring fixes the
conventions), the identity bootstrap :func:`bootstrap_pauc` / :class:`BootstrapResult`, and
:func:`evaluate_scorers` (detect, embed and score the images of a protocol, with the feature
cache of :mod:`fiqa_sdk.eval.features`, and return each scorer's EDC as a
:class:`ScorerEvaluation`; it writes no report).
Comparison scores are similarities (a match is ``score >= threshold``); invalid inputs raise
:class:`~fiqa_sdk.errors.EvaluationError`. Definitions: docs/concepts.md; results:
docs/benchmarks.md.

Examples
--------
>>> import numpy as np
>>> from fiqa_sdk.eval import edc, pauc
>>> nonmated = np.linspace(0.0, 0.5, 101)
>>> mated = np.array([0.9, 0.3, 0.8, 0.2, 0.7, 0.6])
>>> quality = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.5])
>>> round(pauc(edc(mated, nonmated, quality, fmr=0.01), limit=0.5), 4)
0.5333
"""

from __future__ import annotations

from .metrics import *  # noqa: F401,F403 - the public names are metrics' __all__
from .metrics import __all__ as _metrics_all
from .bootstrap import BootstrapResult, bootstrap_pauc  # noqa: F401
from .evaluate import ScorerEvaluation, ScorerRow, evaluate_scorers  # noqa: F401

__all__ = [*_metrics_all, "BootstrapResult", "bootstrap_pauc", "ScorerEvaluation", "ScorerRow",
           "evaluate_scorers"]
