"""ISO/IEC 29794-1 Error-versus-Discard Characteristic (EDC) and its partial area (pAUC).

Conventions (fixed; the tests pin every one of them):

* **Scores** are comparison similarity scores, higher = more similar. A comparison is a *match*
  when ``score >= threshold``.
* **Threshold.** One decision threshold is fixed once, at the target FMR, over *all* non-mated
  scores and before any discarding. It is the smallest float64 value ``tau`` such that
  ``count(nonmated >= tau) / K <= fmr``. With ``k`` the largest integer with ``k / K <= fmr``
  and ``s`` the ``(k + 1)``-th highest non-mated score, ``tau = nextafter(s, +inf)``: every
  non-mated score equal to ``s`` (ties included) is a non-match, so the achieved FMR never exceeds
  the target, and it is below the target when ties straddle the cut. The achieved FMR is returned.
* **Pair quality** = ``min(q_a, q_b)`` by default (``"mean"``, ``"product"`` or a callable are
  accepted). A 1-D quality array is taken as already-combined pair qualities.
* **Discarding.** Pairs are discarded in ascending pair quality and pairs with equal pair quality
  are discarded together, so the discard points are 0 and the points where the quality value
  changes; the last point is always 1 (everything discarded). At a discard point,
  ``discard fraction = discarded pairs / all pairs`` and
  ``error rate = errors among the remaining pairs / remaining pairs`` (FNMR over mated pairs, or
  FMR over non-mated pairs, with the fixed threshold). At discard 1 nothing remains and the rate
  is 0/0, reported as ``nan``. The curve is step-wise: each rate holds from its discard fraction
  up to the next discard point; nothing is interpolated.
* **pAUC** up to a discard limit ``L`` in (0, 1] is the area under that step function over
  ``[0, L]`` (the last step is clipped at ``L``). Normalized pAUC = ``pAUC / (L * FNMR_0)``:
  random discarding gives about 1.0, lower is better.
* **FNMR_0 == 0** (no mated pair fails at the threshold): the raw pAUC is 0.0, the normalized
  pAUC is undefined and returned as ``nan`` (no exception, no warning), and the result's
  ``normalizable`` flag is False. Aggregating code should check that flag.

Everything is vectorized: one ``np.partition`` for the threshold, one sort of the pair qualities
and one (small) sort of the qualities of the erroneous pairs per curve; memory is linear in the
number of pairs.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass
from typing import Callable, NamedTuple, Union

import numpy as np

from ..errors import EvaluationError

__all__ = [
    "EDCCurve",
    "EDCResult",
    "FMRThreshold",
    "combine_pair_qualities",
    "edc",
    "fmr_edc",
    "pauc",
    "threshold_at_fmr",
]

PairQuality = Union[str, Callable[[np.ndarray], np.ndarray]]

# Column by column: much faster than reducing along a short axis=1 (numpy reduces row by row).
def _columns(q: np.ndarray):
    return (q[:, j] for j in range(q.shape[1]))


_COMBINERS = {
    "min": lambda q: functools.reduce(np.minimum, _columns(q)),
    "mean": lambda q: functools.reduce(np.add, _columns(q)) / q.shape[1],
    "product": lambda q: functools.reduce(np.multiply, _columns(q)),
}


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_float_array(x, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"{name} must be numeric, got {type(x).__name__}: {exc}") from None
    return a


def _scores(x, name: str) -> np.ndarray:
    a = _as_float_array(x, name)
    if a.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D (N,), got shape {a.shape}")
    if a.size == 0:
        raise EvaluationError(f"{name} is empty: need at least one pair")
    if not np.isfinite(a).all():
        bad = "NaN" if np.isnan(a).any() else "infinite"
        raise EvaluationError(f"{name} contains {bad} values; scores must be finite")
    return a


def _check_fmr(fmr) -> float:
    if isinstance(fmr, bool) or not isinstance(fmr, numbers.Real):
        raise EvaluationError(f"fmr must be a real number in (0, 1), got {fmr!r}")
    fmr = float(fmr)
    if not 0.0 < fmr < 1.0:  # also rejects NaN
        raise EvaluationError(f"fmr must be in the open interval (0, 1), got {fmr!r}")
    return fmr


def _check_limit(limit) -> float:
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real):
        raise EvaluationError(f"limit must be a real number in (0, 1], got {limit!r}")
    limit = float(limit)
    if not 0.0 < limit <= 1.0:  # also rejects NaN
        raise EvaluationError(f"limit must be in (0, 1], got {limit!r}")
    return limit


def combine_pair_qualities(qualities, pair_quality: PairQuality = "min", *, name="qualities"):
    """Combine per-sample qualities into one quality per pair.

    Parameters
    ----------
    qualities : array_like, shape (N, 2) or (N,)
        Qualities of the two samples of each pair (any (N, S) with S >= 1 is accepted), or
        (N,) pair qualities that are already combined (returned as float64).
    pair_quality : {"min", "mean", "product"} or callable
        "min" (ISO/IEC 29794-1 default), "mean", "product", or a callable that takes the
        (N, S) float64 array and returns an (N,) array.
    name : str
        The argument's name, for error messages (keyword only).

    Returns
    -------
    ndarray, shape (N,), float64
        Pair qualities.

    Raises
    ------
    EvaluationError
        Wrong shape, NaN values, unknown combiner, or a callable that returns the wrong shape
        or NaN.

    Examples
    --------
    >>> from fiqa_sdk.eval import combine_pair_qualities
    >>> combine_pair_qualities([[0.2, 0.9], [0.5, 0.4]])
    array([0.2, 0.4])
    >>> combine_pair_qualities([[0.2, 0.9], [0.5, 0.4]], "mean")
    array([0.55, 0.45])
    """
    q = _as_float_array(qualities, name)
    if np.isnan(q).any():
        raise EvaluationError(f"{name} contains NaN values")
    if q.ndim == 1:
        return q
    if q.ndim != 2 or q.shape[1] < 1:
        raise EvaluationError(f"{name} must have shape (N,) or (N, 2), got {q.shape}")
    if callable(pair_quality):
        out = _as_float_array(pair_quality(q), f"pair_quality({name})")
        if out.shape != (q.shape[0],):
            raise EvaluationError(
                f"pair_quality callable must return shape ({q.shape[0]},), got {out.shape}"
            )
        if np.isnan(out).any():
            raise EvaluationError(f"pair_quality callable returned NaN for {name}")
        return out
    try:
        combine = _COMBINERS[pair_quality]
    except (KeyError, TypeError):
        raise EvaluationError(
            f"pair_quality must be one of {sorted(_COMBINERS)} or a callable, got {pair_quality!r}"
        ) from None
    return combine(q)


def _pair_qualities(qualities, n: int, pair_quality: PairQuality, name: str) -> np.ndarray:
    q = _as_float_array(qualities, name)
    if q.ndim not in (1, 2) or q.shape[0] != n:
        raise EvaluationError(
            f"{name} must have shape ({n},) or ({n}, 2) to match the scores, got {q.shape}"
        )
    return combine_pair_qualities(q, pair_quality, name=name)


# --------------------------------------------------------------------------------------------
# Threshold
# --------------------------------------------------------------------------------------------


class FMRThreshold(NamedTuple):
    """Decision threshold at a target FMR; a comparison matches when ``score >= threshold``."""

    threshold: float
    fmr_achieved: float  # count(nonmated >= threshold) / K, always <= the target


def _threshold(nonmated: np.ndarray, fmr: float) -> FMRThreshold:
    k_total = nonmated.size
    # Largest k with k / K <= fmr, computed as the comparison itself so that e.g. fmr=0.29,
    # K=100 allows 29 false matches although 0.29 * 100 rounds to 28.999999999999996.
    k = min(int(np.floor(fmr * k_total)), k_total - 1)
    if k + 1 <= k_total - 1 and (k + 1) / k_total <= fmr:
        k += 1
    while k > 0 and k / k_total > fmr:
        k -= 1
    idx = k_total - 1 - k  # ascending position of the (k + 1)-th highest score
    kth = np.partition(nonmated, idx)[idx]
    tau = float(np.nextafter(kth, np.inf))
    n_false = int(np.count_nonzero(nonmated >= tau))
    return FMRThreshold(tau, n_false / k_total)


def threshold_at_fmr(nonmated_scores, fmr: float = 1e-3) -> FMRThreshold:
    """Decision threshold at a target false-match rate.

    Parameters
    ----------
    nonmated_scores : array_like, shape (K,)
        Similarity scores of non-mated pairs (higher = more similar), finite.
    fmr : float
        Target FMR in (0, 1).

    Returns
    -------
    FMRThreshold
        ``FMRThreshold(threshold, fmr_achieved)``: ``threshold`` is the smallest float64 ``tau``
        with ``count(nonmated >= tau) / K <= fmr`` (a match is ``score >= tau``); it is
        ``nextafter(s, +inf)`` where ``s`` is the ``(k+1)``-th highest non-mated score and ``k``
        the largest integer with ``k / K <= fmr``. Ties at ``s`` are all non-matches, so
        ``fmr_achieved <= fmr`` always (it is 0 when ``fmr * K < 1``).

    Raises
    ------
    EvaluationError
        Empty, NaN or infinite scores, or ``fmr`` outside (0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk.eval import threshold_at_fmr
    >>> t = threshold_at_fmr(np.linspace(0.0, 0.5, 101), fmr=0.01)
    >>> round(t.threshold, 6), round(t.fmr_achieved, 6)  # one false match of 101 at >= 0.495
    (0.495, 0.009901)
    """
    return _threshold(_scores(nonmated_scores, "nonmated_scores"), _check_fmr(fmr))


# --------------------------------------------------------------------------------------------
# Curves
# --------------------------------------------------------------------------------------------


def _step_curve(quality: np.ndarray, is_error: np.ndarray):
    """Discard fractions, error rates and quality cuts of the step-wise EDC (see module doc)."""
    n = quality.size
    q_sorted = np.sort(quality)
    # Last index of each run of equal qualities (ties are discarded together).
    is_last = np.empty(n, dtype=bool)
    np.not_equal(q_sorted[1:], q_sorted[:-1], out=is_last[:-1])
    is_last[-1] = True
    group_last = np.flatnonzero(is_last)
    del is_last
    n_points = group_last.size + 1

    quality_cuts = np.empty(n_points)
    quality_cuts[0] = -np.inf
    np.take(q_sorted, group_last, out=quality_cuts[1:])
    del q_sorted

    # Errors per tie group without an argsort of all pairs: locate each erroneous pair's
    # quality among the distinct cuts (exact matches), count per group, accumulate.
    q_err = quality[is_error]
    n_err = q_err.size
    group_of_err = np.searchsorted(quality_cuts[1:], q_err)
    errors_left = np.bincount(group_of_err, minlength=n_points - 1)
    np.cumsum(errors_left, out=errors_left)
    np.subtract(n_err, errors_left, out=errors_left)  # errors among the remaining pairs

    discard = np.empty(n_points)
    discard[0] = 0.0
    np.add(group_last, 1, out=discard[1:])  # pairs discarded, exact in float64
    discard[1:] /= n

    rates = np.empty(n_points)
    rates[0] = n_err / n
    np.subtract(n - 1, group_last, out=group_last)  # pairs remaining
    with np.errstate(invalid="ignore"):  # the last point is 0/0 -> nan (nothing remains)
        np.divide(errors_left, group_last, out=rates[1:])
    return discard, rates, quality_cuts


def _pauc_steps(discard: np.ndarray, rates: np.ndarray, limit: float) -> float:
    clipped = np.minimum(discard, limit)
    widths = clipped[1:] - clipped[:-1]
    used = widths > 0  # skips zero-width steps, including the nan step at discard 1
    return float(np.dot(rates[:-1][used], widths[used]))


def _normalize(area: float, limit: float, rate0: float) -> float:
    return area / (limit * rate0) if rate0 > 0 else float("nan")


def _rate_at(discard: np.ndarray, rates: np.ndarray, at):
    x = _as_float_array(at, "discard")
    if np.isnan(x).any() or (x < 0).any() or (x > 1).any():
        raise EvaluationError(f"discard fractions must be in [0, 1], got {at!r}")
    idx = np.searchsorted(discard, x, side="right") - 1
    out = rates[idx]
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True, eq=False)
class EDCCurve:
    """One step-wise EDC (FNMR over mated pairs or FMR over non-mated pairs).

    Attributes
    ----------
    discard_fractions : ndarray, shape (P,), float64
        Non-decreasing from 0.0 to 1.0; P - 1 distinct pair quality values.
    error_rates : ndarray, shape (P,), float64
        Error rate of the pairs remaining at each discard point; the last entry (discard 1.0,
        nothing remains) is nan.
    quality_cuts : ndarray, shape (P,), float64
        At point i every pair with pair quality <= quality_cuts[i] is discarded.
        quality_cuts[0] = -inf (nothing discarded at point 0).
    kind : {"fnmr", "fmr"}
    threshold : float
        The fixed decision threshold (match = score >= threshold).
    n_pairs : int
        Number of pairs the curve was computed over.
    """

    discard_fractions: np.ndarray
    error_rates: np.ndarray
    quality_cuts: np.ndarray
    kind: str
    threshold: float
    n_pairs: int

    @property
    def error0(self) -> float:
        """Error rate at discard 0 (FNMR_0 or FMR_0)."""
        return float(self.error_rates[0])

    @property
    def normalizable(self) -> bool:
        """False when error0 == 0, where the normalized pAUC is undefined (returned as nan)."""
        return self.error0 > 0

    def pauc(self, limit: float = 0.2, normalized: bool = False) -> float:
        """Step-wise area under the curve over discard [0, limit]; normalized divides by
        ``limit * error0`` (nan when error0 == 0)."""
        limit = _check_limit(limit)
        area = _pauc_steps(self.discard_fractions, self.error_rates, limit)
        return _normalize(area, limit, self.error0) if normalized else area

    def error_at(self, discard):
        """Error rate of the step in force at discard fraction(s) in [0, 1] (scalar or array):
        the rate at the last discard point <= ``discard``. nan at 1.0."""
        return _rate_at(self.discard_fractions, self.error_rates, discard)


@dataclass(frozen=True, eq=False)
class EDCResult:
    """FNMR-EDC of mated pairs at one threshold fixed at a target FMR (see module doc).

    Attributes
    ----------
    discard_fractions : ndarray, shape (P,), float64
        Discard points, 0.0 first and 1.0 last.
    fnmr : ndarray, shape (P,), float64
        FNMR of the remaining mated pairs; nan at discard 1.0.
    quality_cuts : ndarray, shape (P,), float64
        At point i mated pairs with pair quality <= quality_cuts[i] are discarded (-inf at
        point 0).
    threshold : float
        Decision threshold; a match is ``score >= threshold``.
    fmr_achieved : float
        FMR of all non-mated pairs at ``threshold`` (<= fmr_target).
    fmr_target : float
        The requested FMR.
    fnmr0 : float
        FNMR at discard 0 (all mated pairs).
    n_mated, n_nonmated : int
        Pair counts M and K.
    fmr_curve : EDCCurve or None
        The FMR-EDC of the non-mated pairs at the same threshold, or None when no non-mated
        qualities were given.
    """

    discard_fractions: np.ndarray
    fnmr: np.ndarray
    quality_cuts: np.ndarray
    threshold: float
    fmr_achieved: float
    fmr_target: float
    fnmr0: float
    n_mated: int
    n_nonmated: int
    fmr_curve: EDCCurve | None = None

    @property
    def curve(self) -> EDCCurve:
        """The FNMR-EDC as an :class:`EDCCurve` (shares the arrays)."""
        return EDCCurve(
            self.discard_fractions, self.fnmr, self.quality_cuts, "fnmr", self.threshold,
            self.n_mated,
        )

    @property
    def normalizable(self) -> bool:
        """False when fnmr0 == 0: the normalized pAUC is undefined and returned as nan."""
        return self.fnmr0 > 0

    def pauc(self, limit: float = 0.2, normalized: bool = False) -> float:
        """Step-wise area under the FNMR-EDC over discard [0, limit], limit in (0, 1].

        ``normalized=True`` returns ``pAUC / (limit * fnmr0)`` (about 1.0 for random quality,
        lower is better), or nan when fnmr0 == 0.
        """
        return self.curve.pauc(limit, normalized)

    def fnmr_at(self, discard):
        """FNMR of the EDC step in force at discard fraction(s) in [0, 1] (scalar or array):
        the FNMR at the last discard point <= ``discard``; nan at 1.0."""
        return _rate_at(self.discard_fractions, self.fnmr, discard)


def edc(
    mated_scores,
    nonmated_scores,
    mated_qualities,
    nonmated_qualities=None,
    fmr: float = 1e-3,
    pair_quality: PairQuality = "min",
) -> EDCResult:
    """ISO/IEC 29794-1 FNMR Error-versus-Discard Characteristic.

    Parameters
    ----------
    mated_scores : array_like, shape (M,)
        Similarity scores of mated pairs (higher = more similar), finite.
    nonmated_scores : array_like, shape (K,)
        Similarity scores of non-mated pairs, finite. They fix the threshold (see
        :func:`threshold_at_fmr`) before any discarding.
    mated_qualities : array_like, shape (M, 2) or (M,)
        Qualities of both samples of each mated pair, or pair qualities already combined
        (then ``pair_quality`` is not applied).
    nonmated_qualities : array_like, shape (K, 2) or (K,), optional
        When given, ``result.fmr_curve`` holds the FMR-EDC at the same threshold.
    fmr : float
        Target FMR in (0, 1) for the threshold.
    pair_quality : {"min", "mean", "product"} or callable
        "min" (default), "mean", "product", or a callable (N, 2) -> (N,).

    Returns
    -------
    EDCResult

    Raises
    ------
    EvaluationError
        Empty score arrays, NaN/inf scores, NaN qualities, mismatched shapes, fmr outside
        (0, 1), or an unknown ``pair_quality``.

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk.eval import edc
    >>> nonmated = np.linspace(0.0, 0.5, 101)
    >>> mated = np.array([0.9, 0.3, 0.8, 0.2, 0.7, 0.6])
    >>> quality = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.5])  # pair qualities
    >>> res = edc(mated, nonmated, quality, fmr=0.01)
    >>> res.fnmr0, res.fnmr_at(1 / 3)  # the two failing pairs have the lowest quality
    (0.3333333333333333, 0.0)
    """
    fmr = _check_fmr(fmr)
    mated = _scores(mated_scores, "mated_scores")
    nonmated = _scores(nonmated_scores, "nonmated_scores")
    q_mated = _pair_qualities(mated_qualities, mated.size, pair_quality, "mated_qualities")
    q_nonmated = None
    if nonmated_qualities is not None:
        q_nonmated = _pair_qualities(
            nonmated_qualities, nonmated.size, pair_quality, "nonmated_qualities"
        )

    tau, fmr_achieved = _threshold(nonmated, fmr)
    discard, fnmr, cuts = _step_curve(q_mated, mated < tau)
    fmr_curve = None
    if q_nonmated is not None:
        fmr_curve = EDCCurve(*_step_curve(q_nonmated, nonmated >= tau), "fmr", tau, nonmated.size)
    return EDCResult(
        discard_fractions=discard,
        fnmr=fnmr,
        quality_cuts=cuts,
        threshold=tau,
        fmr_achieved=fmr_achieved,
        fmr_target=fmr,
        fnmr0=float(fnmr[0]),
        n_mated=int(mated.size),
        n_nonmated=int(nonmated.size),
        fmr_curve=fmr_curve,
    )


def fmr_edc(
    nonmated_scores,
    nonmated_qualities,
    fmr: float = 1e-3,
    pair_quality: PairQuality = "min",
    threshold: float | None = None,
) -> EDCCurve:
    """FMR Error-versus-Discard Characteristic of non-mated pairs.

    The threshold is fixed before discarding: ``threshold`` if given (e.g. ``result.threshold``
    of :func:`edc`), else :func:`threshold_at_fmr` of all ``nonmated_scores`` at ``fmr``. A false
    match is ``score >= threshold``. Discarding, ties and steps follow the module conventions.

    Parameters
    ----------
    nonmated_scores : array_like, shape (K,)
        Similarity scores, finite.
    nonmated_qualities : array_like, shape (K, 2) or (K,)
        Per-sample qualities, or pair qualities.
    fmr : float
        Target FMR in (0, 1), used only when ``threshold`` is None.
    pair_quality : {"min", "mean", "product"} or callable
        "min" (default), "mean", "product", or a callable (N, 2) -> (N,).
    threshold : float, optional
        A finite decision threshold.

    Returns
    -------
    EDCCurve
        With ``kind == "fmr"``.

    Raises
    ------
    EvaluationError
        Empty or non-finite scores, NaN qualities, mismatched shapes, ``fmr`` outside (0, 1),
        or a threshold that is not a finite real number.

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk.eval import fmr_edc
    >>> scores = np.linspace(0.0, 0.5, 101)
    >>> curve = fmr_edc(scores, scores, threshold=0.45)  # quality = score here
    >>> curve.kind, curve.n_pairs, round(curve.error0, 4)
    ('fmr', 101, 0.1089)
    """
    fmr = _check_fmr(fmr)
    nonmated = _scores(nonmated_scores, "nonmated_scores")
    q = _pair_qualities(nonmated_qualities, nonmated.size, pair_quality, "nonmated_qualities")
    if threshold is None:
        tau = _threshold(nonmated, fmr).threshold
    else:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise EvaluationError(f"threshold must be a real number, got {threshold!r}")
        tau = float(threshold)
        if not np.isfinite(tau):
            raise EvaluationError(f"threshold must be finite, got {threshold!r}")
    return EDCCurve(*_step_curve(q, nonmated >= tau), "fmr", tau, int(nonmated.size))


def pauc(edc_result_or_curve, limit: float = 0.2, normalized: bool = True) -> float:
    """Partial area under a step-wise EDC over discard [0, limit].

    Note that this function normalizes by default while the ``pauc`` methods of
    :class:`EDCResult` and :class:`EDCCurve` return the raw area by default.

    Parameters
    ----------
    edc_result_or_curve : EDCResult, EDCCurve or (discard_fractions, error_rates)
        An :class:`EDCResult`, an :class:`EDCCurve`, or a pair of equal-length 1-D arrays
        with ``discard_fractions`` non-decreasing in [0, 1] starting at 0.
    limit : float
        Discard limit in (0, 1] (the papers use 0.2 and 0.3).
    normalized : bool
        Divide by ``limit * error_rates[0]`` (default True, as the papers report it); nan
        when ``error_rates[0] == 0``.

    Returns
    -------
    float
        The raw or normalized pAUC. Each error rate holds from its discard fraction up to the
        next discard point; the last step is clipped at ``limit``.

    Raises
    ------
    EvaluationError
        Not a result, a curve or a valid pair of arrays, or ``limit`` outside (0, 1].

    Examples
    --------
    >>> from fiqa_sdk.eval import pauc
    >>> curve = ([0.0, 0.1, 0.2, 1.0], [0.2, 0.1, 0.05, float("nan")])
    >>> round(pauc(curve, limit=0.2, normalized=False), 6)  # 0.1 * 0.2 + 0.1 * 0.1
    0.03
    >>> round(pauc(curve, limit=0.2), 6)  # / (0.2 * 0.2); random quality gives about 1.0
    0.75
    """
    if isinstance(edc_result_or_curve, EDCResult):
        return edc_result_or_curve.pauc(limit, normalized)
    if isinstance(edc_result_or_curve, EDCCurve):
        return edc_result_or_curve.pauc(limit, normalized)
    try:
        discard, rates = edc_result_or_curve
    except (TypeError, ValueError):
        raise EvaluationError(
            "pauc expects an EDCResult, an EDCCurve or a (discard_fractions, error_rates) pair"
        ) from None
    discard = _as_float_array(discard, "discard_fractions")
    rates = _as_float_array(rates, "error_rates")
    if discard.ndim != 1 or discard.shape != rates.shape or discard.size == 0:
        raise EvaluationError(
            "discard_fractions and error_rates must be non-empty 1-D arrays of equal length, got "
            f"{discard.shape} and {rates.shape}"
        )
    if (
        np.isnan(discard).any()
        or discard[0] != 0.0
        or (np.diff(discard) < 0).any()
        or discard[-1] > 1.0
    ):
        raise EvaluationError("discard_fractions must start at 0 and be non-decreasing in [0, 1]")
    limit = _check_limit(limit)
    area = _pauc_steps(discard, rates, limit)
    if discard[-1] < limit:  # a curve that stops early: its last rate holds up to the limit
        area += float(rates[-1]) * (limit - discard[-1])
    return _normalize(area, limit, float(rates[0])) if normalized else area
