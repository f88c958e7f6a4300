"""Quality-gate policy maths as plain functions: discard, threshold, calibration, templates.

No model code and no I/O: every function takes scores / embeddings (numpy or lists) and returns
new objects, never modifying its arguments. :class:`fiqa_sdk.QualityGate` wires these to the
face pipeline; they are public so that the same rules can be applied to cached scores.

A score of ``None`` (or NaN) means "could not be scored" (no face, unreadable input).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .errors import GateError

#: Slack added before flooring ``f * n`` so that e.g. ``0.29 * 100`` (28.999999999999996 in
#: binary floating point) counts as 29, as a person would expect.
_FLOOR_EPS = 1e-9

TEMPLATE_METHODS = ("quality_weighted", "mean", "best", "top_k")


def _scored(scores: Sequence[float | None]) -> tuple[list[int], np.ndarray]:
    idx, vals = [], []
    for i, s in enumerate(scores):
        if s is None:
            continue
        s = float(s)
        if math.isnan(s):
            continue
        idx.append(i)
        vals.append(s)
    return idx, np.asarray(vals, dtype=np.float64)


def check_fraction(f: float, name: str = "discard") -> float:
    """Validate a fraction in [0, 1].

    Parameters
    ----------
    f : float
        The value to check.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    float
        ``f`` as a float.

    Raises
    ------
    GateError
        ``f`` is not a number (bools and strings included), NaN, or outside [0, 1].

    Examples
    --------
    >>> from fiqa_sdk.policy import check_fraction
    >>> check_fraction(0.25)
    0.25
    >>> check_fraction(1.5)
    Traceback (most recent call last):
    ...
    fiqa_sdk.errors.GateError: discard must be in [0, 1], got 1.5
    """
    if isinstance(f, (bool, str, bytes)):
        raise GateError(f"{name} must be a number in [0, 1], got {f!r}")
    try:
        f = float(f)
    except (TypeError, ValueError):
        raise GateError(f"{name} must be a number in [0, 1], got {f!r}") from None
    if not 0.0 <= f <= 1.0 or math.isnan(f):
        raise GateError(f"{name} must be in [0, 1], got {f}")
    return f


def check_threshold(t: float, name: str = "threshold") -> float:
    """Validate an absolute quality threshold: a real number, not NaN (+-inf are allowed).

    Parameters
    ----------
    t : float
        The value to check.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    float
        ``t`` as a float.

    Raises
    ------
    GateError
        ``t`` is not a number (bools and strings included) or is NaN.

    Examples
    --------
    >>> from fiqa_sdk.policy import check_threshold
    >>> check_threshold(3), check_threshold(float("-inf"))
    (3.0, -inf)
    """
    if isinstance(t, (bool, str, bytes)):
        raise GateError(f"{name} must be a number, got {t!r}")
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise GateError(f"{name} must be a number, got {t!r}") from None
    if math.isnan(t):
        raise GateError(f"{name} must be a number, got NaN")
    return t


def discard_count(fraction: float, n_scored: int) -> int:
    """``floor(fraction * n_scored)``: how many scored items ``discard=fraction`` rejects.

    A tiny slack is added before flooring so that e.g. ``0.29 * 100`` counts as 29.

    Parameters
    ----------
    fraction : float in [0, 1]
        The discard fraction.
    n_scored : int
        How many items were scored.

    Returns
    -------
    int

    Raises
    ------
    GateError
        ``fraction`` outside [0, 1].

    Examples
    --------
    >>> from fiqa_sdk.policy import discard_count
    >>> discard_count(0.29, 100), discard_count(0.1, 9)
    (29, 0)
    """
    fraction = check_fraction(fraction)
    return int(math.floor(fraction * n_scored + _FLOOR_EPS))


def discard_lowest(scores: Sequence[float | None], fraction: float) -> tuple[list[bool], float]:
    """Keep-mask and applied cut for ``discard=fraction``.

    Rejects the ``floor(fraction * n_scored)`` lowest-scored items plus every unscored item.
    **Ties are broken by input order**: among equal scores the *earlier* item is discarded
    first (a stable sort on ``(score, index)``), so results never depend on sort internals.

    Returns ``(keep, threshold)``: ``threshold`` is the score of the lowest kept item. Edge
    cases: ``+inf`` when no scored item is kept (all discarded, or nothing scored), so that
    ``score >= threshold`` accepts nothing. Because of ties, ``score >= threshold`` may accept
    a discarded item whose score equals the lowest kept one; ``keep`` is the decision.

    Parameters
    ----------
    scores : sequence of float or None
        One score per item; None or NaN: unscored.
    fraction : float in [0, 1]
        The fraction of the scored items to discard.

    Returns
    -------
    keep : list of bool
        One per item.
    threshold : float
        The lowest kept score (``+inf`` when none is kept).

    Raises
    ------
    GateError
        ``fraction`` outside [0, 1].

    Examples
    --------
    >>> from fiqa_sdk.policy import discard_lowest
    >>> discard_lowest([0.9, None, 0.1, 0.5], 0.34)
    ([True, False, False, True], 0.5)
    >>> discard_lowest([0.2, 0.2], 0.5)  # ties: the earlier item goes first
    ([False, True], 0.2)
    """
    idx, vals = _scored(scores)
    k = discard_count(fraction, len(idx))
    order = sorted(range(len(idx)), key=lambda j: (vals[j], idx[j]))
    keep = [False] * len(scores)
    kept_vals = []
    for j in order[k:]:
        keep[idx[j]] = True
        kept_vals.append(vals[j])
    thr = float(min(kept_vals)) if kept_vals else math.inf
    return keep, thr


def apply_threshold(scores: Sequence[float | None], threshold: float) -> list[bool]:
    """Keep-mask of ``score >= threshold``; unscored items are never kept.

    Parameters
    ----------
    scores : sequence of float or None
        One score per item; None or NaN: unscored.
    threshold : float
        The quality cut (not NaN).

    Returns
    -------
    list of bool
        One per item.

    Raises
    ------
    GateError
        ``threshold`` is not a number or is NaN.

    Examples
    --------
    >>> from fiqa_sdk.policy import apply_threshold
    >>> apply_threshold([0.9, None, 0.1, 0.5], 0.5)
    [True, False, False, True]
    """
    threshold = check_threshold(threshold)
    out = [False] * len(scores)
    idx, vals = _scored(scores)
    for i, v in zip(idx, vals):
        out[i] = bool(v >= threshold)
    return out


def calibrate_threshold(scores: Sequence[float | None], fraction: float) -> float:
    """The ``fraction``-quantile of the scored reference scores (numpy's linear interpolation).

    Applied as ``score >= threshold`` to traffic distributed like the reference set, it rejects
    about ``fraction`` of the scored faces. ``fraction=0`` gives the minimum reference score
    (a reference-like face is always accepted), ``1`` the maximum.

    Parameters
    ----------
    scores : sequence of float or None
        Scores of the reference set; None or NaN (unscored) are ignored.
    fraction : float in [0, 1]
        The fraction of reference-like traffic to reject.

    Returns
    -------
    float
        The threshold.

    Raises
    ------
    GateError
        ``fraction`` outside [0, 1], or no scored reference.

    Examples
    --------
    >>> from fiqa_sdk.policy import calibrate_threshold
    >>> calibrate_threshold([1.0, 2.0, None, 3.0, 4.0, 5.0], 0.25)
    2.0
    """
    fraction = check_fraction(fraction)
    _, vals = _scored(scores)
    if len(vals) == 0:
        raise GateError("cannot calibrate: no reference image had a scorable face")
    return float(np.quantile(vals, fraction))


#: ``quality_weighted`` templates: the softmax temperature is this times the scores' std.
DEFAULT_TEMPERATURE_SCALE = 4.0


def template_weights(scores: Sequence[float], method: str = "quality_weighted", k: int = 3,
                     temperature: float | None = None) -> tuple[list[int], np.ndarray]:
    """Which of the (all scored) items a template uses, and their weights (summing to 1).

    - ``"quality_weighted"``: all items, ``softmax(scores / T)``. ``temperature=None`` (the
      default) sets ``T`` to :data:`DEFAULT_TEMPERATURE_SCALE` (4) times the standard deviation
      of the scores: scorers have unrelated units (an embedding norm ~ 20, a cosine <= 1), so a
      fixed ``T`` would be near-uniform for one and near-argmax for another. With ``T = 4 std``
      an image four standard deviations better than another gets ``e`` times its weight,
      whatever the scorer. How ``T`` was chosen and how it compares with the plain mean
      (sharper weights did worse; ``T = 4 std`` stays close to the mean, and beats it where a
      bad image is a large part of the template): docs/benchmarks.md, "Quality-weighted vs
      mean: the temperature". Equal scores (std 0) give uniform weights.
    - ``"mean"``: all items, uniform weights.
    - ``"best"``: the single best-scored item (the earlier one on ties).
    - ``"top_k"``: the ``k`` best-scored items (earlier first on ties), uniform weights.

    Parameters
    ----------
    scores : sequence of float
        The (finite) quality scores of the items.
    method : {"quality_weighted", "mean", "best", "top_k"}
        See above (:data:`TEMPLATE_METHODS`).
    k : int
        For ``"top_k"`` (>= 1).
    temperature : float or None
        For ``"quality_weighted"``: ``T`` (> 0), or None for 4 x the scores' std.

    Returns
    -------
    used : list of int
        The positions (into ``scores``) that take part, ascending.
    weights : ndarray, float64
        Their weights, summing to 1.

    Raises
    ------
    GateError
        No scores, non-finite scores, an unknown ``method``, ``k < 1`` or a non-positive
        ``temperature``.

    Examples
    --------
    >>> from fiqa_sdk.policy import template_weights
    >>> template_weights([0.3, 0.9, 0.5], "top_k", k=2)
    ([1, 2], array([0.5, 0.5]))
    >>> used, w = template_weights([0.3, 0.9, 0.5])
    >>> used, w.round(3).tolist()
    ([0, 1, 2], [0.247, 0.451, 0.302])
    """
    s = np.asarray([float(v) for v in scores], dtype=np.float64)
    n = len(s)
    if n == 0:
        raise GateError("template needs at least one scored face")
    if not np.isfinite(s).all():
        raise GateError("template scores must be finite")
    if method == "mean":
        return list(range(n)), np.full(n, 1.0 / n)
    if method in ("best", "top_k"):
        kk = 1 if method == "best" else int(k)
        if kk < 1:
            raise GateError(f"top_k needs k >= 1, got {k}")
        order = sorted(range(n), key=lambda i: (-s[i], i))[:kk]
        used = sorted(order)
        return used, np.full(len(used), 1.0 / len(used))
    if method == "quality_weighted":
        if temperature is None:
            t = DEFAULT_TEMPERATURE_SCALE * float(s.std())
            if t <= 0.0:
                return list(range(n)), np.full(n, 1.0 / n)
        else:
            t = float(temperature)
            if not t > 0.0:
                raise GateError(f"temperature must be > 0, got {temperature}")
        z = s / t
        w = np.exp(z - z.max())
        return list(range(n)), w / w.sum()
    raise GateError(f"unknown template method {method!r}; use one of {', '.join(TEMPLATE_METHODS)}")


def fuse_embeddings(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """L2-normalised float32 weighted sum of (L2-normalised) embeddings ``(N, D)``.

    Parameters
    ----------
    embeddings : ndarray, shape (N, D)
        L2-normalised embeddings.
    weights : ndarray, shape (N,)
        One weight per embedding.

    Returns
    -------
    ndarray, shape (D,), float32

    Raises
    ------
    GateError
        The weighted sum is the zero vector.

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk.policy import fuse_embeddings
    >>> fuse_embeddings(np.eye(2), np.array([0.5, 0.5]))
    array([0.70710677, 0.70710677], dtype=float32)
    """
    e = np.asarray(embeddings, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64).reshape(-1, 1)
    v = (e * w).sum(axis=0)
    n = np.linalg.norm(v)
    if n <= 1e-12:
        raise GateError("template embeddings cancel out (zero vector)")
    return (v / n).astype(np.float32)


def fuse_template(scores: Sequence[float], embeddings: np.ndarray,
                  method: str = "quality_weighted", k: int = 3,
                  temperature: float | None = None) -> tuple[list[int], np.ndarray, np.ndarray]:
    """One template from the quality scores and L2-normalised embeddings ``(N, D)`` of the
    (all scored) images of one person: :func:`template_weights` then :func:`fuse_embeddings`.

    Returns ``(used, weights, embedding)``: the positions (into ``scores``) that take part,
    their weights (summing to 1) and the fused L2-normalised float32 embedding. This is the one
    code path of :meth:`fiqa_sdk.QualityGate.template` and of the template benchmark
    (:mod:`fiqa_bench.templates`).

    Parameters
    ----------
    scores : sequence of float
        The quality scores, one per embedding row.
    embeddings : ndarray, shape (N, D)
        L2-normalised embeddings.
    method, k, temperature
        As in :func:`template_weights`.

    Returns
    -------
    used : list of int
    weights : ndarray, float64
    embedding : ndarray, float32

    Raises
    ------
    GateError
        Not one embedding row per score, or as in :func:`template_weights` and
        :func:`fuse_embeddings`.

    Examples
    --------
    >>> import numpy as np
    >>> from fiqa_sdk.policy import fuse_template
    >>> used, w, emb = fuse_template([0.2, 0.8], np.eye(2), method="best")
    >>> used, w, emb
    ([1], array([1.]), array([0., 1.], dtype=float32))
    """
    e = np.asarray(embeddings)
    if e.ndim != 2 or e.shape[0] != len(scores):
        raise GateError(f"need one embedding row per score: {len(scores)} scores, "
                        f"embeddings of shape {e.shape}")
    used, w = template_weights(scores, method, k=k, temperature=temperature)
    return used, w, fuse_embeddings(e[used], w)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (normalised here; inputs untouched).

    Parameters
    ----------
    a, b : array_like
        Two vectors of the same size (flattened).

    Returns
    -------
    float
        In [-1, 1].

    Raises
    ------
    GateError
        Vectors of different sizes, or a zero vector.

    Examples
    --------
    >>> from fiqa_sdk.policy import cosine
    >>> round(cosine([1.0, 0.0], [1.0, 1.0]), 6)
    0.707107
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise GateError(f"cannot compare embeddings of sizes {a.size} and {b.size}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na <= 1e-12 or nb <= 1e-12:
        raise GateError("cannot compare a zero embedding")
    return float(a @ b / (na * nb))
