"""Evaluation: ISO/IEC 29794-1 Error-versus-Discard Characteristic (EDC) and pAUC."""

from __future__ import annotations

from ._edc import *  # noqa: F401,F403 - the public names are _edc's __all__
from ._edc import __all__ as _edc_all
from .bootstrap import BootstrapResult, bootstrap_pauc  # noqa: F401

__all__ = [*_edc_all, "BootstrapResult", "bootstrap_pauc"]
