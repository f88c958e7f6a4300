"""What the running CPU offers: usable cores and int8 dot-product instructions.

Read once per process; both answers decide the default scorer backend
(:func:`fiqa_sdk.quality.regressor_onnx.resolve_backend`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

#: CPU feature names (numpy's spelling, then Linux ``/proc/cpuinfo`` flags) of instructions
#: that make onnxruntime's u8 x s8 int8 kernels faster than fp32: x86 AVX-512 VNNI and AVX-VNNI,
#: Arm's SDOT/UDOT (``asimddp``).
INT8_DOT_FEATURES = ("AVX512VNNI", "AVX_VNNI", "AVXVNNI", "ASIMDDP")
_CPUINFO_FLAGS = ("avx512_vnni", "avx_vnni", "asimddp")


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one), at most
    ``$FIQA_NUM_THREADS`` when set (:mod:`fiqa_sdk.distributed` sets it in each Ray actor, so
    that N one-thread actors on N cores do not each use every core)."""
    try:
        n = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        n = max(1, os.cpu_count() or 1)
    from ._onnx import default_threads

    cap = default_threads()
    return min(n, cap) if cap else n


@functools.lru_cache(maxsize=1)
def has_int8_dot() -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, Arm dotprod).

    Uses numpy's run-time CPU dispatch table, then the Linux ``/proc/cpuinfo`` flags; False when
    neither can tell. ``FIQA_INT8=0`` / ``1`` overrides the answer (e.g. to compare backends).
    """
    forced = os.environ.get("FIQA_INT8")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2 keeps it in numpy.core
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            features = {}
    if any(features.get(name) for name in INT8_DOT_FEATURES):
        return True
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            flags.update(line.split(":", 1)[1].split())
    return any(f in flags for f in _CPUINFO_FLAGS)


__all__ = ["INT8_DOT_FEATURES", "has_int8_dot", "usable_cpus"]
