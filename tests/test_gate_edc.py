"""QualityGate.filter and the evaluation toolkit's EDC agree, on real LFW images.

Filtering images at a quality cut removes exactly the mated pairs whose pair quality
``min(q_a, q_b)`` is below the cut. So the FNMR over the mated pairs with both images kept, at
the decision threshold fixed at FMR 1e-3 over all non-mated pairs *before* filtering, must equal
``fq.eval.edc``'s FNMR at the matching pair-discard fraction, for every cut. The subset (8
identities x 4 images) holds LFW images that fail mated comparisons in the all-vs-all protocol
(found with the cached features), so FNMR_0 > 0 and the EDC is not flat.
"""

from __future__ import annotations

import numpy as np
import pytest

import fiqa_sdk as fq
from fiqa_sdk import policy
from fiqa_sdk.gate import QualityGate, default_scorer_name

pytestmark = pytest.mark.lfw

SUBSET = {
    "Britney_Spears": [8, 1, 2, 3], "Saddam_Hussein": [10, 1, 2, 3],
    "Jennifer_Capriati": [42, 30, 1, 2], "Nicole_Kidman": [19, 6, 1, 2],
    "Anna_Kournikova": [7, 10, 1, 2], "Mahmoud_Abbas": [12, 1, 2, 3],
    "Recep_Tayyip_Erdogan": [4, 1, 2, 3], "Tony_Blair": [69, 1, 2, 3],
}
FMR = 1e-3


@pytest.fixture(scope="module")
def gate():
    # the subject of an LFW image is its central face, as in `fiqa-bench quality`
    return QualityGate(face_policy="central")


@pytest.fixture(scope="module")
def data(lfw_root, gate):
    paths = [lfw_root / "images" / n / f"{n}_{i:04d}.jpg" for n, ii in SUBSET.items() for i in ii]
    if not all(p.is_file() for p in paths):
        pytest.skip("LFW images of the subset missing")
    ids = np.array([p.parent.name for p in paths])
    res = gate.filter(paths, discard=0.0)
    assert res.rejected == [], res.rejected  # every face found and scored
    q = np.array([r.score for r in res.reports])
    emb = [r.embedding for r in res.reports]
    assert len(np.unique(q)) == len(q)  # no tied qualities: the cut is unambiguous
    i, j = np.triu_indices(len(paths), 1)
    mated = ids[i] == ids[j]
    s = np.array([gate.compare(emb[a], emb[b]) for a, b in zip(i, j)])
    edc = fq.eval.edc(s[mated], s[~mated], np.stack([q[i[mated]], q[j[mated]]], 1), fmr=FMR)
    return {"paths": paths, "ids": ids, "q": q, "emb": np.stack(emb), "i": i, "j": j,
            "mated": mated, "s": s, "edc": edc}


def _kept_fnmr(d, kept: np.ndarray) -> tuple[float, float]:
    """(pair-discard fraction, FNMR of the mated pairs with both images kept) at the EDC's
    threshold (fixed before filtering)."""
    m = d["mated"]
    both = kept[d["i"]] & kept[d["j"]] & m
    n_m = int(m.sum())
    discard = (n_m - int(both.sum())) / n_m
    fails = int(np.count_nonzero(both & (d["s"] < d["edc"].threshold)))
    fnmr = fails / int(both.sum()) if both.any() else float("nan")
    return discard, fnmr


def test_edc_is_not_trivial(data):
    edc = data["edc"]
    assert edc.n_mated == 48 and edc.n_nonmated == 448
    # threshold fixed once over all non-mated scores, before discarding
    assert edc.threshold == fq.eval.threshold_at_fmr(data["s"][~data["mated"]], FMR).threshold
    assert edc.fnmr0 > 0.1
    assert len(set(np.round(edc.fnmr[:-1], 12))) > 5


@pytest.mark.parametrize("discard", [0.1, 0.5])
def test_filter_discard_matches_edc(gate, data, discard):
    """A real gate.filter(discard=f) call: its kept set gives the EDC's FNMR exactly."""
    res = gate.filter(data["paths"], discard=discard)
    kept = np.zeros(len(data["paths"]), bool)
    kept[res.kept] = True
    assert kept.sum() == len(kept) - int(np.floor(discard * len(kept)))
    assert np.array_equal(sorted(res.kept), np.flatnonzero(data["q"] >= res.threshold))
    d, fnmr = _kept_fnmr(data, kept)
    edc = data["edc"]
    assert d in set(edc.discard_fractions.tolist())  # a discard point of the EDC
    assert edc.fnmr_at(d) == fnmr  # exactly: the same counts divided the same way
    # and the filter's cut is the EDC's quality cut at that point
    k = int(np.flatnonzero(edc.discard_fractions == d)[-1])
    assert edc.quality_cuts[k] < res.threshold
    assert k + 1 == len(edc.quality_cuts) or edc.quality_cuts[k + 1] >= res.threshold


def test_filter_threshold_matches_edc(gate, data):
    q = np.sort(data["q"])
    tau = float((q[9] + q[10]) / 2)  # between the 10th and 11th lowest quality
    res = gate.filter(data["paths"], threshold=tau)
    kept = np.zeros(len(q), bool)
    kept[res.kept] = True
    assert kept.sum() == len(q) - 10
    d, fnmr = _kept_fnmr(data, kept)
    assert data["edc"].fnmr_at(d) == fnmr


def test_every_discard_count_matches_edc(data):
    """All n + 1 discard counts, through policy.discard_lowest (the function filter uses)."""
    edc = data["edc"]
    q = data["q"].tolist()
    seen = set()
    for n_discard in range(len(q) + 1):
        keep, _ = policy.discard_lowest(q, n_discard / len(q))
        d, fnmr = _kept_fnmr(data, np.asarray(keep))
        assert d in set(edc.discard_fractions.tolist())
        if d < 1.0:
            assert edc.fnmr_at(d) == fnmr, (n_discard, d)
        else:
            assert np.isnan(edc.fnmr_at(d)) and np.isnan(fnmr)
        seen.add(d)
    # filtering images reaches every point of the pair EDC (min quality: each point is the
    # removal of one image)
    assert seen == set(edc.discard_fractions.tolist())


def test_gate_matches_toolkit_features(data, tmp_path):
    """`fiqa-bench quality`'s code path (cached features) gives the gate's numbers."""
    from fiqa_sdk.eval import evaluate as bench, protocols

    proto = protocols.identity_protocol(data["paths"], data["ids"])
    out = bench.evaluate_scorers(proto, scorers=[default_scorer_name()],
                                  face_policy="central", fmr=FMR, cache_dir=tmp_path)
    tool = out.rows[0].edc
    edc = data["edc"]
    assert tool.n_mated == edc.n_mated and tool.n_nonmated == edc.n_nonmated
    assert tool.threshold == pytest.approx(edc.threshold, abs=1e-6)
    assert np.array_equal(tool.discard_fractions, edc.discard_fractions)
    assert np.allclose(tool.quality_cuts[1:], edc.quality_cuts[1:], rtol=1e-5)
    assert np.array_equal(tool.fnmr[:-1], edc.fnmr[:-1])
