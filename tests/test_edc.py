"""ISO/IEC 29794-1 EDC / pAUC: vectorized implementation vs. a brute-force reference, hand-worked
cases, behaviour on synthetic data, and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fiqa_sdk as fq
import fiqa_sdk.eval  # noqa: F401  (makes fq.eval available)
from fiqa_sdk.errors import EvaluationError, FiqaError
from fiqa_sdk.eval import EDCCurve, edc, fmr_edc, pauc, threshold_at_fmr

# ---------------------------------------------------------------------------------------------
# Brute-force reference: written from the definitions, loops everywhere, no shared code.
# ---------------------------------------------------------------------------------------------


def ref_threshold(nonmated, fmr):
    """Smallest float64 tau with count(nonmated >= tau) / K <= fmr. The fraction only changes at
    observed scores, so the smallest such tau is an observed score or the next float above one."""
    k = len(nonmated)
    candidates = sorted(set(nonmated.tolist()) | {float(np.nextafter(v, np.inf)) for v in nonmated})
    for tau in candidates:  # ascending: the first that satisfies the bound is the smallest
        if np.count_nonzero(nonmated >= tau) / k <= fmr:
            return tau, np.count_nonzero(nonmated >= tau) / k
    raise AssertionError("unreachable for fmr < 1")


def ref_curve(quality, is_error):
    """Cut at every distinct quality value; recompute the remaining pairs from scratch."""
    n = len(quality)
    discard = [0.0]
    rates = [sum(is_error) / n]
    for cut in sorted(set(quality.tolist())):
        keep = [i for i in range(n) if quality[i] > cut]
        discard.append((n - len(keep)) / n)
        rates.append(sum(is_error[i] for i in keep) / len(keep) if keep else math.nan)
    return np.array(discard), np.array(rates)


def ref_pauc(discard, rates, limit):
    area = 0.0
    for i in range(len(discard) - 1):
        if discard[i] >= limit:
            break
        area += rates[i] * (min(discard[i + 1], limit) - discard[i])
    return area


def tied_data(seed, m, k, levels=5):
    """Scores on a coarse grid (many ties) and integer qualities from a few levels."""
    rng = np.random.default_rng(seed)
    mated = np.round(rng.normal(0.6, 0.2, m), 1)
    nonmated = np.round(rng.normal(0.0, 0.2, k), 1)
    q_mated = rng.integers(0, levels, size=(m, 2)).astype(float)
    q_nonmated = rng.integers(0, levels, size=(k, 2)).astype(float)
    return mated, nonmated, q_mated, q_nonmated


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fmr", [1e-3, 0.01, 0.05, 0.29])
def test_matches_brute_force_with_ties(seed, fmr):
    rng = np.random.default_rng(1000 + seed)
    m, k = int(rng.integers(1, 2500)), int(rng.integers(1, 3000))
    mated, nonmated, q_mated, q_nonmated = tied_data(seed, m, k, levels=int(rng.integers(1, 8)))

    res = edc(mated, nonmated, q_mated, q_nonmated, fmr=fmr)

    tau, fmr_achieved = ref_threshold(nonmated, fmr)
    assert res.threshold == tau
    assert res.fmr_achieved == fmr_achieved <= fmr
    pq_mated = np.array([min(a, b) for a, b in q_mated])
    d_ref, f_ref = ref_curve(pq_mated, [s < tau for s in mated])
    np.testing.assert_array_equal(res.discard_fractions, d_ref)
    np.testing.assert_allclose(res.fnmr, f_ref, rtol=1e-12, atol=0, equal_nan=True)
    assert res.fnmr0 == f_ref[0]
    assert (res.n_mated, res.n_nonmated) == (m, k)

    for limit in (0.05, 0.2, 0.3, 0.77, 1.0):
        raw = ref_pauc(d_ref, f_ref, limit)
        assert res.pauc(limit) == pytest.approx(raw, rel=1e-12, abs=1e-15)
        if f_ref[0] > 0:
            assert pauc(res, limit) == pytest.approx(raw / (limit * f_ref[0]), rel=1e-12)
        else:
            assert math.isnan(pauc(res, limit))

    # FNMR at fixed fractions: the step in force = last discard point <= x.
    for x in np.linspace(0, 1, 41):
        i = max(j for j in range(len(d_ref)) if d_ref[j] <= x)
        got = res.fnmr_at(x)
        assert (math.isnan(got) and math.isnan(f_ref[i])) or got == pytest.approx(f_ref[i])

    # FMR-EDC over the non-mated pairs at the same threshold.
    pq_nonmated = np.array([min(a, b) for a, b in q_nonmated])
    d_ref, e_ref = ref_curve(pq_nonmated, [s >= tau for s in nonmated])
    np.testing.assert_array_equal(res.fmr_curve.discard_fractions, d_ref)
    np.testing.assert_allclose(res.fmr_curve.error_rates, e_ref, rtol=1e-12, equal_nan=True)
    standalone = fmr_edc(nonmated, q_nonmated, fmr=fmr)
    np.testing.assert_array_equal(standalone.error_rates, res.fmr_curve.error_rates)
    assert standalone.pauc(0.3) == pytest.approx(ref_pauc(d_ref, e_ref, 0.3), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "combiner, fn",
    [
        ("mean", lambda a, b: (a + b) / 2),
        ("product", lambda a, b: a * b),
        (lambda q: q.max(axis=1), max),
    ],
)
def test_other_pair_quality_combiners_match_brute_force(combiner, fn):
    mated, nonmated, q_mated, _ = tied_data(7, 800, 2000)
    res = edc(mated, nonmated, q_mated, pair_quality=combiner, fmr=0.01)
    tau, _ = ref_threshold(nonmated, 0.01)
    d_ref, f_ref = ref_curve(np.array([fn(a, b) for a, b in q_mated]), [s < tau for s in mated])
    np.testing.assert_array_equal(res.discard_fractions, d_ref)
    np.testing.assert_allclose(res.fnmr, f_ref, rtol=1e-12, equal_nan=True)


def test_continuous_scores_and_qualities_match_brute_force():
    rng = np.random.default_rng(3)
    mated, nonmated = rng.normal(0.5, 0.3, 1500), rng.normal(0, 0.2, 3000)
    q = rng.random(1500)  # already-combined pair qualities, all distinct
    res = edc(mated, nonmated, q, fmr=1e-3)
    tau, _ = ref_threshold(nonmated, 1e-3)
    d_ref, f_ref = ref_curve(q, [s < tau for s in mated])
    assert len(res.discard_fractions) == 1501
    np.testing.assert_allclose(res.fnmr, f_ref, rtol=1e-12, equal_nan=True)
    assert res.pauc(0.2) == pytest.approx(ref_pauc(d_ref, f_ref, 0.2), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Hand-worked cases
# ---------------------------------------------------------------------------------------------

# Non-mated scores 0.00, 0.05, ..., 0.45 (K = 10). fmr = 0.1 allows k = 1 false match, so the
# threshold is just above the 2nd highest score 0.40: tau = nextafter(0.40), achieved FMR = 1/10.
NONMATED = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45]
# Mated scores: pairs 1 (0.2) and 3 (0.1) are non-matches, FNMR_0 = 2/5 = 0.4.
MATED = [0.9, 0.2, 0.8, 0.1, 0.7]


def test_hand_worked_with_tied_pair_qualities():
    # min pair qualities: [3, 1, 1, 2, 3]. Discard q<=1 -> pairs 1 (non-match) and 2 (match) go
    # together: discard 2/5 = 0.4, remaining {0, 3, 4} hold 1 non-match -> FNMR 1/3.
    # Discard q<=2 -> pair 3: discard 0.6, remaining {0, 4} -> FNMR 0. Discard q<=3: 1.0, nan.
    q = [[3, 4], [1, 9], [2, 1], [2, 2], [7, 3]]
    res = edc(MATED, NONMATED, q, fmr=0.1)
    assert res.threshold == np.nextafter(0.4, 1)
    assert res.fmr_achieved == 0.1
    np.testing.assert_array_equal(res.discard_fractions, [0.0, 0.4, 0.6, 1.0])
    np.testing.assert_allclose(res.fnmr, [0.4, 1 / 3, 0.0, np.nan], equal_nan=True)
    np.testing.assert_array_equal(res.quality_cuts, [-np.inf, 1, 2, 3])
    assert res.fnmr0 == 0.4
    # L = 0.2: 0.4 * 0.2 = 0.08; normalized 0.08 / (0.2 * 0.4) = 1.0 (no change before 0.4).
    assert res.pauc(0.2) == pytest.approx(0.08)
    assert res.pauc(0.2, normalized=True) == pytest.approx(1.0)
    # L = 0.5: 0.4 * 0.4 + (1/3) * 0.1 = 0.19333...; normalized 0.19333 / (0.5 * 0.4) = 0.96667.
    assert res.pauc(0.5) == pytest.approx(0.16 + 0.1 / 3)
    assert pauc(res, 0.5) == pytest.approx((0.16 + 0.1 / 3) / 0.2)
    # L = 1.0: 0.16 + (1/3) * 0.2 + 0 * 0.4 = 0.22667.
    assert res.pauc(1.0) == pytest.approx(0.16 + 0.2 / 3)
    assert res.fnmr_at(0.0) == 0.4
    assert res.fnmr_at(0.39) == 0.4
    assert res.fnmr_at(0.4) == pytest.approx(1 / 3)
    assert res.fnmr_at(0.7) == 0.0
    assert math.isnan(res.fnmr_at(1.0))
    np.testing.assert_allclose(res.fnmr_at([0.1, 0.5]), [0.4, 1 / 3])


def test_hand_worked_perfect_quality():
    # Pair qualities [5, 1, 3, 2, 5]: the two non-matches have the two lowest qualities.
    # Points: d=0 FNMR 2/5=0.4; d=0.2 (q<=1) 1/4=0.25; d=0.4 (q<=2) 0/3; d=0.6 (q<=3) 0/2;
    # d=1.0 nan. pAUC(0.3) = 0.4*0.2 + 0.25*0.1 = 0.105, normalized 0.105/(0.3*0.4) = 0.875.
    # pAUC(0.5) = 0.08 + 0.25*0.2 + 0*0.1 = 0.13, normalized 0.13/(0.5*0.4) = 0.65.
    res = edc(MATED, NONMATED, [5, 1, 3, 2, 5], fmr=0.1)
    np.testing.assert_array_equal(res.discard_fractions, [0.0, 0.2, 0.4, 0.6, 1.0])
    np.testing.assert_allclose(res.fnmr, [0.4, 0.25, 0.0, 0.0, np.nan], equal_nan=True)
    assert res.pauc(0.3) == pytest.approx(0.105)
    assert res.pauc(0.3, normalized=True) == pytest.approx(0.875)
    assert pauc(res, limit=0.5) == pytest.approx(0.65)
    assert pauc(res.curve, limit=0.5, normalized=False) == pytest.approx(0.13)
    assert pauc((res.discard_fractions, res.fnmr), limit=0.5) == pytest.approx(0.65)


def test_all_qualities_tied_gives_points_0_and_1():
    res = edc(MATED, NONMATED, np.full((5, 2), 7.0), np.full(10, 7.0), fmr=0.1)
    np.testing.assert_array_equal(res.discard_fractions, [0.0, 1.0])
    np.testing.assert_allclose(res.fnmr, [0.4, np.nan], equal_nan=True)
    assert res.pauc(0.2) == pytest.approx(0.08)
    assert res.pauc(0.2, normalized=True) == pytest.approx(1.0)
    assert res.pauc(1.0, normalized=True) == pytest.approx(1.0)
    assert res.fnmr_at(0.999) == 0.4
    np.testing.assert_array_equal(res.fmr_curve.discard_fractions, [0.0, 1.0])
    assert res.fmr_curve.error_rates[0] == 0.1


def test_single_mated_pair():
    res = edc([0.1], NONMATED, [[1.0, 2.0]], fmr=0.1)
    np.testing.assert_array_equal(res.discard_fractions, [0.0, 1.0])
    assert res.fnmr0 == 1.0
    assert res.pauc(0.3, normalized=True) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Threshold convention
# ---------------------------------------------------------------------------------------------


def test_threshold_distinct_scores_allows_floor_fmr_k_false_matches():
    s = np.random.default_rng(0).permutation(np.arange(1000.0))
    tau, achieved = threshold_at_fmr(s, 1e-3)
    assert tau == np.nextafter(998.0, np.inf)  # only 999 >= tau
    assert achieved == 1e-3
    tau, achieved = threshold_at_fmr(s, 0.0105)  # floor(10.5) = 10 false matches allowed
    assert np.count_nonzero(s >= tau) == 10 and achieved == 0.01


def test_threshold_ties_never_exceed_target():
    # The top three scores are tied: allowing 1 or 2 false matches cannot include any of them.
    s = np.array([5.0, 5.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0])
    assert threshold_at_fmr(s, 0.2) == (np.nextafter(5.0, np.inf), 0.0)
    assert threshold_at_fmr(s, 0.3) == (np.nextafter(4.0, np.inf), 0.3)
    # fewer than one false match allowed -> above the maximum
    assert threshold_at_fmr(s, 0.05) == (np.nextafter(5.0, np.inf), 0.0)


def test_threshold_float_rounding_of_fmr_times_k():
    # 0.29 * 100 == 28.999999999999996 in floating point, yet 29 / 100 <= 0.29.
    s = np.arange(100.0)
    tau, achieved = threshold_at_fmr(s, 0.29)
    assert achieved == 0.29 and np.count_nonzero(s >= tau) == 29


def test_mated_score_equal_to_threshold_is_a_match():
    # A mated score equal to the (k+1)-th highest non-mated score is a non-match; anything
    # >= tau = nextafter(that score) is a match.
    res = edc([0.4, np.nextafter(0.4, 1)], NONMATED, [1.0, 2.0], fmr=0.1)
    assert res.fnmr0 == 0.5


# ---------------------------------------------------------------------------------------------
# Behaviour on synthetic data
# ---------------------------------------------------------------------------------------------


def synthetic(seed, m=20_000, k=50_000, fail_rate=0.05):
    rng = np.random.default_rng(seed)
    fails = rng.random(m) < fail_rate
    mated = np.where(fails, rng.normal(0.0, 0.1, m), rng.normal(0.7, 0.1, m))
    nonmated = rng.normal(0.0, 0.1, k)
    return mated, nonmated, fails, rng


def test_random_quality_gives_normalized_pauc_near_one():
    mated, nonmated, fails, rng = synthetic(11)
    res = edc(mated, nonmated, rng.random((mated.size, 2)))
    assert 0.03 < res.fnmr0 < 0.07
    for limit in (0.2, 0.3):
        assert pauc(res, limit) == pytest.approx(1.0, abs=0.1)


def test_perfect_quality_gives_low_normalized_pauc():
    mated, nonmated, fails, rng = synthetic(12)
    q = rng.random(mated.size)
    q[fails] -= 1.0  # every failure ranks below every success
    res = edc(mated, nonmated, q)
    # ~5% failures discarded first -> FNMR drops to ~0 after ~fnmr0 discard: pAUC/(L fnmr0) ~ 0.25
    assert pauc(res, 0.2) < 0.5
    assert pauc(res, 0.3) < pauc(res, 0.2)
    # inverted quality (failures kept to the end) gets worse than random
    assert pauc(edc(mated, nonmated, -q), 0.2) > 1.1


def test_fq_eval_namespace():
    assert fq.eval.edc is edc and fq.eval.pauc is pauc


# ---------------------------------------------------------------------------------------------
# FNMR_0 == 0 and errors
# ---------------------------------------------------------------------------------------------


def test_zero_fnmr0_normalized_pauc_is_nan_and_flagged():
    res = edc([0.9, 0.8, 0.7], NONMATED, [1.0, 2.0, 2.0], fmr=0.1)
    assert res.fnmr0 == 0.0 and not res.normalizable
    assert res.pauc(0.2) == 0.0
    assert math.isnan(res.pauc(0.2, normalized=True))
    assert math.isnan(pauc(res, 0.2))
    curve = fmr_edc(NONMATED, np.arange(10.0), fmr=0.05)  # zero false matches allowed
    assert curve.error0 == 0.0 and not curve.normalizable and math.isnan(pauc(curve))


def _good():
    return dict(
        mated_scores=[0.9, 0.2], nonmated_scores=[0.1, 0.0, 0.3], mated_qualities=[[1, 2], [3, 4]]
    )


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(mated_scores=[]), "mated_scores is empty"),
        (dict(nonmated_scores=[]), "nonmated_scores is empty"),
        (dict(mated_scores=[0.9, np.nan]), "mated_scores contains NaN"),
        (dict(nonmated_scores=[0.1, np.nan, 0.3]), "nonmated_scores contains NaN"),
        (dict(nonmated_scores=[0.1, np.inf, 0.3]), "infinite"),
        (dict(mated_qualities=[[1, np.nan], [3, 4]]), "mated_qualities contains NaN"),
        (dict(mated_qualities=[[1, 2], [3, 4], [5, 6]]), r"shape \(2,\) or \(2, 2\)"),
        (dict(mated_qualities=[1.0]), r"shape \(2,\) or \(2, 2\)"),
        (dict(mated_qualities=np.ones((2, 2, 2))), "shape"),
        (dict(mated_scores=[[0.9, 0.2]]), "1-D"),
        (dict(nonmated_qualities=[1.0, 2.0]), "nonmated_qualities must have shape"),
        (dict(nonmated_qualities=[1.0, np.nan, 2.0]), "nonmated_qualities contains NaN"),
        (dict(fmr=0.0), r"fmr must be in the open interval \(0, 1\)"),
        (dict(fmr=1.0), r"open interval"),
        (dict(fmr=-0.1), r"open interval"),
        (dict(fmr=float("nan")), r"open interval"),
        (dict(fmr="0.1"), "fmr must be a real number"),
        (dict(pair_quality="median"), "pair_quality must be one of"),
        (dict(pair_quality=lambda q: q[:1, 0]), "must return shape"),
        (dict(mated_scores=["a", "b"]), "must be numeric"),
    ],
)
def test_invalid_inputs_raise_clear_errors(change, match):
    kwargs = {**_good(), **change}
    with pytest.raises(EvaluationError, match=match) as info:
        edc(**kwargs)
    assert isinstance(info.value, FiqaError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("limit", [0.0, -0.2, 1.0001, float("nan"), "0.2"])
def test_invalid_limit(limit):
    res = edc(**_good())
    with pytest.raises(EvaluationError, match="limit"):
        res.pauc(limit)
    with pytest.raises(EvaluationError, match="limit"):
        pauc(res, limit)


def test_invalid_discard_fraction_and_curve():
    res = edc(**_good())
    for bad in (-0.01, 1.01, np.nan):
        with pytest.raises(EvaluationError, match=r"\[0, 1\]"):
            res.fnmr_at(bad)
    with pytest.raises(EvaluationError, match="start at 0"):
        pauc(([0.1, 0.5], [0.2, 0.1]))
    with pytest.raises(EvaluationError, match="equal length"):
        pauc(([0.0, 0.5], [0.2]))
    with pytest.raises(EvaluationError, match="EDCResult"):
        pauc(3.0)
    with pytest.raises(EvaluationError, match="threshold must be finite"):
        fmr_edc([0.1, 0.2], [1.0, 2.0], threshold=float("inf"))
    assert isinstance(fmr_edc([0.1, 0.2], [1.0, 2.0], threshold=0.15), EDCCurve)
