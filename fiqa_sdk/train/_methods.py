"""The regressors :func:`fiqa_sdk.train.train_ediffiqa` trains (a bottom module of
:mod:`fiqa_sdk.train`, so that :mod:`~fiqa_sdk.train.api` and :mod:`~fiqa_sdk.train.distill`
need not import each other for it)."""

from __future__ import annotations

METHODS = ("ediffiqa", "ediffiqa-free", "diffiqa-r")
