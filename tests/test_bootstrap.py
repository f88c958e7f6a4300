"""fq.eval.bootstrap_pauc: the identity bootstrap of normalized pAUCs."""

from __future__ import annotations

import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk.errors import EvaluationError
from fiqa_sdk.eval import FMRThreshold, bootstrap_pauc
from fiqa_sdk.eval.evaluate import edc_at_threshold


def _data(seed=1, m=3000, groups=200):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, groups, m)
    scores = rng.normal(0.6, 0.2, m)
    return ids, scores, rng.random((m, 2)), rng.random((m, 2))


def test_each_redraw_equals_the_edc_of_the_materialised_redraw():
    """The weighted per-tie-group curve is the toolkit's EDC of the redrawn multiset of pairs
    (ties included: qualities rounded to 2 decimals), redraw by redraw, and on all pairs."""
    ids, s, qa, qb = _data()
    qa = np.round(qa, 2)  # many ties
    thr = FMRThreshold(0.3, 1e-3)
    res = bootstrap_pauc(s, {"a": qa, "b": qb}, ids, thr, limits=(0.2, 0.3), boot=5, seed=7)
    for k, q in enumerate((qa, qb)):
        full = edc_at_threshold(s, q, thr, 1e-3, 1000)
        np.testing.assert_allclose(res.point[k], [full.pauc(0.2, True), full.pauc(0.3, True)],
                                   rtol=1e-12)
    _, gid = np.unique(ids, return_inverse=True)
    rng = np.random.default_rng(7)
    n_groups = gid.max() + 1
    for b in range(5):
        counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        idx = np.repeat(np.arange(len(s)), counts[gid])
        for k, q in enumerate((qa, qb)):
            e = edc_at_threshold(s[idx], q[idx], thr, 1e-3, 1000)
            np.testing.assert_allclose(res.draws[b, k], [e.pauc(0.2, True), e.pauc(0.3, True)],
                                       rtol=1e-12)
    assert res.groups == len(np.unique(ids)) and res.undefined == 0


def test_known_cases_and_outputs():
    """Identical qualities differ by exactly 0 in every redraw; a scorer that ranks every
    failing pair lowest beats one that ranks them highest in every redraw."""
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(20), 10)
    mated = rng.uniform(0.6, 1.0, ids.size)
    failing = np.zeros(ids.size, bool)
    failing[[0, 30, 60, 90, 120, 125]] = True
    mated[failing] = 0.1
    good = np.where(failing, 0.0, 1.0 + rng.random(ids.size))
    bad = np.where(failing, 5.0, rng.random(ids.size))
    res = bootstrap_pauc(mated, {"good": good, "same": good, "bad": bad}, ids, 0.5, boot=40)
    for lim in (0.2, 0.3):
        d = res.difference("good", "same", lim)
        assert d["difference"] == 0 and d["se"] == 0 and d["share_a_lower"] == 0
        d = res.difference("good", "bad", lim)
        # perfect: FNMR falls to 0 once the 3 % failing pairs are gone; worst: it rises
        assert res.point[0, res.limits.index(lim)] < 0.25 and res.point[2, res.limits.index(lim)] > 1
        assert d["share_a_lower"] == 1 and d["interval"][1] < 0
        lo, hi = res.interval("bad", lim)
        assert lo <= hi and res.se("bad", lim) >= 0
    assert len(res.draws) + res.undefined == 40
    out = res.as_dict()
    assert set(out["scorers"]) == {"good", "same", "bad"} and out["redraws"] == 40
    assert out["scorers"]["good"]["0.2"]["pauc_norm"] == pytest.approx(res.point[0, 0])
    # same seed, same result; another seed, other redraws
    again = bootstrap_pauc(mated, {"good": good, "same": good, "bad": bad}, ids, 0.5, boot=40)
    np.testing.assert_array_equal(again.draws, res.draws)
    # one failing identity of 10: about a third of the redraws miss it, skipped and counted
    m1 = np.where(np.arange(100) == 0, 0.1, 0.9)
    one = bootstrap_pauc(m1, {"good": good[:100]}, ids[:100], 0.5, boot=40)
    assert one.groups == 10 and 0 < one.undefined < 40
    assert len(one.draws) + one.undefined == 40


def test_bad_inputs_are_typed_errors():
    ids, s, qa, _ = _data(m=50, groups=5)
    thr = 0.3
    with pytest.raises(EvaluationError, match="groups"):
        bootstrap_pauc(s, {"a": qa}, ids[:-1], thr)
    with pytest.raises(EvaluationError, match="boot"):
        bootstrap_pauc(s, {"a": qa}, ids, thr, boot=1)
    with pytest.raises(EvaluationError, match="no scorer"):
        bootstrap_pauc(s, {}, ids, thr)
    with pytest.raises(EvaluationError, match="limit"):
        bootstrap_pauc(s, {"a": qa}, ids, thr, limits=(0.0,))
    with pytest.raises(EvaluationError, match="do not match"):
        bootstrap_pauc(s, {"a": qa[:-1]}, ids, thr)
    with pytest.raises(EvaluationError, match="NaN"):
        bootstrap_pauc(s, {"a": np.full_like(qa, np.nan)}, ids, thr)
    with pytest.raises(EvaluationError, match="finite"):
        bootstrap_pauc(np.full_like(s, np.inf), {"a": qa}, ids, thr)
    with pytest.raises(EvaluationError, match="no mated pair fails"):
        bootstrap_pauc(s, {"a": qa}, ids, -10.0)
    res = bootstrap_pauc(s, {"a": qa}, ids, thr, boot=3)
    with pytest.raises(EvaluationError, match="no scorer"):
        res.se("b")
    with pytest.raises(EvaluationError, match="limit"):
        res.se("a", 0.5)
    with pytest.raises(EvaluationError, match="level"):
        res.interval("a", 0.2, level=1.0)
    assert fq.eval.bootstrap_pauc is bootstrap_pauc
