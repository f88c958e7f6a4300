"""Evaluation: ISO/IEC 29794-1 Error-versus-Discard Characteristic (EDC) and pAUC."""

from __future__ import annotations

from ._edc import (
    EDCCurve,
    EDCResult,
    FMRThreshold,
    combine_pair_qualities,
    edc,
    fmr_edc,
    pauc,
    threshold_at_fmr,
)

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
