"""How much would a normalized pAUC move with another sample of people? An identity bootstrap.

An FNMR-EDC at a low FMR often rests on few failing mated pairs, and those come from few
identities (LFW all-vs-all with ArcFace: docs/benchmarks.md, "Is random close to 1.0? The
noise floor", gives the counts), so two scorers' pAUCs can differ by more than the
random-quality noise floor without the difference meaning anything.
:func:`bootstrap_pauc` redraws the *groups* of mated pairs (identities: every mated pair of a
drawn identity comes with it; an identity drawn twice counts twice) with replacement, keeps
the decision threshold (fixed over the non-mated pairs, as the EDC does), and recomputes every
scorer's normalized pAUC on each redraw. All scorers see the same redraws, so
:meth:`BootstrapResult.difference` gives a *paired* standard error of a difference.

Each redraw is exact, not an approximation: the curve of a redrawn multiset of pairs is
computed from per-tie-group weighted counts, which equals :func:`fiqa_sdk.eval.edc` on the
materialised redraw (tested), in O(M) per scorer and redraw.

    >>> res = bootstrap_pauc(mated_scores, {"a": qa, "b": qb}, identities, threshold, boot=1000)  # doctest: +SKIP
    >>> res.se("a", 0.2), res.interval("a", 0.2), res.difference("a", "b", 0.2)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import EvaluationError
from .metrics import FMRThreshold, _check_limit, _normalize, _pauc_steps, combine_pair_qualities

__all__ = ["BootstrapResult", "bootstrap_pauc"]


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Normalized pAUCs of several scorers on all pairs (``point``) and on each redraw.

    Attributes
    ----------
    names : tuple of str
        The scorers, in the order given.
    limits : tuple of float
        The discard limits.
    point : ndarray, shape (S, L)
        Normalized pAUC of each scorer at each limit on all mated pairs.
    draws : ndarray, shape (B, S, L)
        The same on each redraw that has a failing pair.
    groups : int
        How many groups (identities) were redrawn.
    undefined : int
        Redraws without a failing mated pair (normalized pAUC undefined), skipped.
    seed : int
        The generator seed.
    """

    names: tuple[str, ...]
    limits: tuple[float, ...]
    point: np.ndarray
    draws: np.ndarray
    groups: int
    undefined: int
    seed: int

    def _at(self, name: str, limit: float) -> tuple[int, int]:
        if name not in self.names:
            raise EvaluationError(f"no scorer {name!r} in this bootstrap ({', '.join(self.names)})")
        hits = [j for j, lim in enumerate(self.limits) if np.isclose(lim, float(limit))]
        if not hits:
            raise EvaluationError(f"limit {limit!r} was not bootstrapped ({self.limits})")
        return self.names.index(name), hits[0]

    def _values(self, name: str, limit: float) -> np.ndarray:
        i, j = self._at(name, limit)
        if len(self.draws) < 2:
            raise EvaluationError(f"only {len(self.draws)} redraw(s) had a failing mated pair")
        return self.draws[:, i, j]

    def se(self, name: str, limit: float = 0.2) -> float:
        """Bootstrap standard error of ``name``'s normalized pAUC at ``limit``."""
        return float(np.std(self._values(name, limit), ddof=1))

    def interval(self, name: str, limit: float = 0.2, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of ``name``'s normalized pAUC at ``limit``."""
        if not 0 < level < 1:
            raise EvaluationError(f"level must be in (0, 1), got {level!r}")
        v = self._values(name, limit)
        tail = 100 * (1 - level) / 2
        return float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))

    def difference(self, a: str, b: str, limit: float = 0.2, level: float = 0.95) -> dict:
        """``a - b`` on all pairs, its paired bootstrap standard error and percentile interval,
        and the share of redraws in which ``a`` is lower (better) than ``b``."""
        ia, j = self._at(a, limit)
        d = self._values(a, limit) - self._values(b, limit)
        ib = self.names.index(b)
        tail = 100 * (1 - level) / 2
        return {"a": a, "b": b, "limit": float(self.limits[j]),
                "difference": float(self.point[ia, j] - self.point[ib, j]),
                "se": float(np.std(d, ddof=1)),
                "interval": [float(np.percentile(d, tail)), float(np.percentile(d, 100 - tail))],
                "level": float(level), "share_a_lower": float(np.mean(d < 0))}

    def as_dict(self, level: float = 0.95) -> dict:
        """Per scorer and limit: the pAUC, its standard error and interval (JSON-ready)."""
        out: dict = {"redraws": int(len(self.draws) + self.undefined), "groups": self.groups,
                     "undefined_redraws": self.undefined, "seed": self.seed, "level": level,
                     "scorers": {}}
        for i, name in enumerate(self.names):
            out["scorers"][name] = {
                f"{lim:g}": {"pauc_norm": float(self.point[i, j]),
                             "se": self.se(name, lim) if len(self.draws) > 1 else None,
                             "interval": list(self.interval(name, lim, level))
                             if len(self.draws) > 1 else None}
                for j, lim in enumerate(self.limits)}
        return out


class PairQualityCurve:
    """One scorer's mated pairs sorted into tie groups of pair quality, once; a redraw's
    normalized pAUCs from per-group weighted counts."""

    def __init__(self, quality: np.ndarray, is_error: np.ndarray) -> None:
        _, self.group = np.unique(quality, return_inverse=True)  # tie groups, ascending quality
        self.n_groups = int(self.group.max()) + 1
        self.err_group = self.group[is_error]

    def paucs(self, w: np.ndarray, w_err: np.ndarray, limits: Sequence[float]) -> list[float]:
        n_g = np.bincount(self.group, weights=w, minlength=self.n_groups)
        e_g = np.bincount(self.err_group, weights=w_err, minlength=self.n_groups)
        n, n_err = n_g.sum(), e_g.sum()
        discard = np.concatenate([[0.0], np.cumsum(n_g) / n])
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.concatenate([[n_err / n], (n_err - np.cumsum(e_g)) / (n - np.cumsum(n_g))])
        return [_normalize(_pauc_steps(discard, rates, lim), lim, rates[0]) for lim in limits]


def bootstrap_pauc(mated_scores, mated_qualities: Mapping[str, np.ndarray], groups,
                   threshold: float | FMRThreshold, limits: Sequence[float] = (0.2, 0.3),
                   boot: int = 1000, seed: int = 0, pair_quality: str = "min") -> BootstrapResult:
    """Identity bootstrap of the normalized pAUC of one or more scorers (see the module doc).

    Redraws the groups (identities) of the mated pairs with replacement, the threshold held
    fixed, and computes every scorer's normalized pAUC on the same redraws (exactly the EDC of
    each redrawn multiset of pairs).

    Parameters
    ----------
    mated_scores : array_like, shape (M,)
        Comparison scores of the mated pairs.
    mated_qualities : mapping of str to array_like
        Scorer name -> ``(M, 2)`` qualities of each pair's two images (combined by
        ``pair_quality``) or ``(M,)`` pair qualities.
    groups : array_like, shape (M,)
        The unit of resampling of each mated pair (its identity).
    threshold : float or FMRThreshold
        The decision threshold (a match is ``score >= threshold``), fixed beforehand over the
        non-mated pairs, e.g. :func:`fiqa_sdk.eval.threshold_at_fmr`.
    limits : sequence of float
        Discard limits of the pAUC, each in (0, 1].
    boot : int
        Number of redraws (>= 2).
    seed : int
        Seed of ``numpy.random.default_rng``.
    pair_quality : {"min", "mean", "product"}
        How two sample qualities combine (:func:`fiqa_sdk.eval.combine_pair_qualities`).

    Returns
    -------
    BootstrapResult
        Point estimates and redraws; ``se``, ``interval`` and the paired ``difference``.

    Raises
    ------
    EvaluationError
        Shapes that do not match, non-finite values, no failing mated pair (the normalized
        pAUC is undefined), ``boot < 2``, bad limits.

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk.eval import bootstrap_pauc
    >>> mated = np.array([0.9, 0.3, 0.8, 0.2, 0.7, 0.6])
    >>> qualities = {"a": np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.5]),
    ...              "b": np.array([0.1, 0.9, 0.2, 0.8, 0.5, 0.7])}
    >>> identities = np.array([0, 0, 1, 1, 2, 2])
    >>> res = bootstrap_pauc(mated, qualities, identities, threshold=0.5, limits=(0.5,),
    ...                      boot=200)
    >>> res.point.round(3).tolist()  # (scorers, limits)
    [[0.533], [1.233]]
    >>> res.se("a", 0.5), res.interval("a", 0.5), res.difference("a", "b", 0.5)  # doctest: +SKIP
    """
    scores = np.asarray(mated_scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0 or not np.isfinite(scores).all():
        raise EvaluationError("mated scores must be a non-empty 1-D array of finite values")
    g = np.asarray(groups)
    if g.shape != scores.shape:
        raise EvaluationError(f"groups {g.shape} do not match the mated scores {scores.shape}")
    if not mated_qualities:
        raise EvaluationError("no scorer qualities given")
    if int(boot) < 2:
        raise EvaluationError(f"boot must be at least 2, got {boot!r}")
    limits = tuple(_check_limit(lim) for lim in limits)
    if not limits:
        raise EvaluationError("no discard limits given")
    thr = float(threshold.threshold if isinstance(threshold, FMRThreshold) else threshold)
    is_error = scores < thr
    if not is_error.any():
        raise EvaluationError("no mated pair fails at the threshold: the normalized pAUC is "
                              "undefined")
    names = tuple(mated_qualities)
    curves = []
    for name in names:
        q = combine_pair_qualities(mated_qualities[name], pair_quality, name=f"qualities of {name}")
        if q.shape != scores.shape:
            raise EvaluationError(f"qualities of {name} {q.shape} do not match the mated scores "
                                  f"{scores.shape}")
        curves.append(PairQualityCurve(q, is_error))
    _, gid = np.unique(g, return_inverse=True)
    n_groups = int(gid.max()) + 1
    ones = np.ones(scores.size)
    point = np.array([c.paucs(ones, ones[is_error], limits) for c in curves])
    rng = np.random.default_rng(int(seed))
    draws, undefined = [], 0
    for _ in range(int(boot)):
        w = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)[gid].astype(float)
        w_err = w[is_error]
        if not w_err.any():
            undefined += 1
            continue
        draws.append([c.paucs(w, w_err, limits) for c in curves])
    return BootstrapResult(names, limits, point,
                           np.asarray(draws, dtype=float).reshape(len(draws), len(names), len(limits)),
                           n_groups, undefined, int(seed))
