"""Verification accuracy as customary on LFW: 10-fold cross-validated threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EvaluationError


@dataclass(frozen=True)
class VerificationResult:
    accuracy: float  # mean over folds
    std: float
    fold_accuracies: np.ndarray
    thresholds: np.ndarray  # chosen on the other folds, per test fold

    def __str__(self) -> str:
        return f"{100 * self.accuracy:.2f}% +- {100 * self.std:.2f}"


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Similarity threshold maximising accuracy (match if score >= threshold)."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.int64)
    # threshold between s[i-1] and s[i]: below it rejected; accuracy = TN(below) + TP(at/above)
    tn_below = np.concatenate([[0], np.cumsum(1 - y)])
    tp_above = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    acc = tn_below + tp_above
    # only cut between distinct values
    valid = np.ones(len(s) + 1, dtype=bool)
    valid[1:-1] = s[1:] != s[:-1]
    k = int(np.argmax(np.where(valid, acc, -1)))
    if k == 0:
        return float(s[0])
    if k == len(s):
        return float(np.nextafter(s[-1], np.inf))
    return float((s[k - 1] + s[k]) / 2)


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> VerificationResult:
    """Accuracy with the threshold chosen on the other folds (LFW's standard protocol)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    folds = np.asarray(folds)
    if len(np.unique(folds)) < 2:
        raise EvaluationError("k-fold accuracy needs at least two folds")
    accs, ths = [], []
    for f in np.unique(folds):
        test = folds == f
        th = best_threshold(scores[~test], labels[~test])
        accs.append(float(np.mean((scores[test] >= th) == labels[test])))
        ths.append(th)
    accs_arr = np.asarray(accs)
    return VerificationResult(float(accs_arr.mean()), float(accs_arr.std()), accs_arr, np.asarray(ths))
