"""The one validator of ``device=`` arguments (every backend, the gate, the pipeline)."""

from __future__ import annotations

import re

from .errors import InvalidArgumentError

#: The device names every backend accepts (``"auto"``: CUDA when the backend has it, else CPU).
DEVICES = ("cpu", "cuda", "auto")


def check_device(device: object, allow_index: bool = False) -> str:
    """``device`` if it is one of :data:`DEVICES` (or ``"cuda:N"`` with ``allow_index``, for
    torch backends), else :class:`~fiqa_sdk.errors.InvalidArgumentError`."""
    if isinstance(device, str) and (device in DEVICES or (
            allow_index and re.fullmatch(r"cuda:\d+", device))):
        return device
    extra = " or 'cuda:N'" if allow_index else ""
    raise InvalidArgumentError(f"device must be 'cpu', 'cuda' or 'auto'{extra}, got {device!r}")


__all__ = ["DEVICES", "check_device"]
