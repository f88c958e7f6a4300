"""LFW protocols and thresholds shared by the EDC experiments (``random_edc_spread``,
``paired_pauc_ci``): the ``--quick`` subset, cached detections and embeddings, and the decision
threshold over all non-mated pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import fiqa_sdk as fq
from fiqa_sdk.eval.evaluate import pair_scores, threshold_all_nonmated
from fiqa_sdk.eval.features import default_cache_dir, detect_all, embed_all
from fiqa_sdk.eval.protocols import (QUICK_PAIRS_PER_FOLD, identity_protocol, lfw_all_vs_all,
                                     pairs_subset, read_lfw_pairs)


def quick_protocol(name: str, lfw=None):
    """The ``--quick`` protocol: the 200 pairs of the other ``--quick`` experiments
    (``lfw-pairs``), or all-vs-all comparisons over their images (``lfw-all``).

    Parameters
    ----------
    name : {"lfw-pairs", "lfw-all"}
        Protocol.
    lfw : str or Path, optional
        LFW root (default ``$FIQA_LFW``).

    Returns
    -------
    PairsProtocol or IdentityProtocol
    """
    proto = pairs_subset(read_lfw_pairs(lfw), QUICK_PAIRS_PER_FOLD)
    if name == "lfw-pairs":
        return proto
    return identity_protocol(proto.paths, [p.parent.name for p in map(Path, proto.paths)],
                             source="the --quick LFW images")


def protocol_threshold(protocol: str, lfw=None, quick: bool = False, cache=None,
                       detector: str = "retinaface", eval_embedder: str = "arcface",
                       fmr: float = 1e-3):
    """A protocol, its cached detections and embeddings, and its decision threshold.

    Parameters
    ----------
    protocol : {"lfw-pairs", "lfw-all"}
        LFW pairs.txt or all-vs-all over every image.
    lfw : str or Path, optional
        LFW root (default ``$FIQA_LFW``).
    quick : bool
        Use :func:`quick_protocol` instead of the full protocol.
    cache : str or Path, optional
        Feature cache (default ``$FIQA_CACHE/lfw``).
    detector, eval_embedder : str
        Detector (central face) and the embedder of the comparisons.
    fmr : float
        False-match rate of the threshold, over all non-mated pairs.

    Returns
    -------
    tuple
        ``(proto, faces, emb, threshold, n_nonmated)``.
    """
    if quick:
        proto = quick_protocol(protocol, lfw)
    else:
        proto = read_lfw_pairs(lfw) if protocol == "lfw-pairs" else lfw_all_vs_all(lfw)
    cache = Path(cache) if cache else default_cache_dir() / "lfw"
    faces = detect_all([str(p) for p in proto.paths], fq.create_detector(detector),
                       policy="central", cache_dir=cache)
    emb = embed_all(faces, fq.create_embedder(eval_embedder), fallback=True, cache_dir=cache)
    if protocol == "lfw-all":
        thr, k = threshold_all_nonmated(emb, proto.labels, fmr)
    else:
        nm = np.asarray(proto.nonmated_pairs)
        thr, k = fq.eval.threshold_at_fmr(pair_scores(emb, nm), fmr), len(nm)
    return proto, faces, emb, thr, k
