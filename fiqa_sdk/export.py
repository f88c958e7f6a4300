"""Export a distilled quality regressor to ONNX, fp32 or static int8, and check the graph.

What ``fiqa export onnx`` does, as library functions: :func:`export_regressor_onnx` writes the
graph of a regressor scorer (``ediffiqa``, ``ediffiqa-free``, ``diffiqa-r``; the shipped or given
weights) and scores the bundled sample face and its mirror with onnxruntime and with torch;
:func:`export_int8_onnx` writes the int8 graph with its sidecar ``FILE.json`` (checksum, source
weights, recipe, calibration, fidelity on held-out faces), the form
:func:`~fiqa_sdk.quality.regressor_onnx.resolve_backend` reads for ``precision="int8"``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._weights import sidecar_path, write_sidecar
from .errors import InvalidArgumentError
from .quality import scorers_of_kind

#: Scorers :func:`export_regressor_onnx` can export: the distilled regressors (card
#: ``kind="regressor"``).
EXPORT_SCORERS = scorers_of_kind("regressor")
#: Largest |ONNX - torch| quality difference an fp32 export passes with.
EXPORT_TOLERANCE = 1e-4
#: ... an int8 export: a sanity bound that catches a broken graph, not a fidelity measure (the
#: shipped int8 ediffiqa differs from fp32 by up to ~0.06 on held-out faces; docs/benchmarks.md).
INT8_EXPORT_TOLERANCE = 0.1


def _signature(args: Any) -> dict:
    """``{name: shape}`` of onnxruntime inputs or outputs (symbolic dimensions by name)."""
    return {a.name: [d if isinstance(d, int) else str(d) for d in a.shape] for a in args}


@dataclass
class OnnxExport:
    """Outcome of :func:`export_regressor_onnx`.

    ``max_abs_diff``: the largest |ONNX - torch| quality on the sample face and its mirror;
    ``tolerance``: the bound it is checked against (:data:`EXPORT_TOLERANCE`, or
    :data:`INT8_EXPORT_TOLERANCE` for int8); ``inputs`` / ``outputs``: the graph's signature
    (``{name: shape}``); ``sidecar``: the int8 graph's sidecar fields (None for fp32).
    """

    onnx: Path
    scorer: str
    precision: str
    max_abs_diff: float
    tolerance: float
    inputs: dict
    outputs: dict
    sidecar: dict | None = None

    @property
    def passed(self) -> bool:
        """True when ``max_abs_diff <= tolerance``."""
        return self.max_abs_diff <= self.tolerance

    def as_dict(self) -> dict:
        """The JSON-able record ``fiqa export onnx`` prints (int8: also ``sidecar``,
        ``sha256``, ``calibration_crops`` and ``fidelity``)."""
        rec = {"onnx": str(self.onnx), "scorer": self.scorer, "precision": self.precision,
               "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
               "inputs": self.inputs, "outputs": self.outputs}
        if self.sidecar is not None:
            rec.update(sidecar=str(sidecar_path(self.onnx)),
                       sha256=self.sidecar["sha256"],
                       calibration_crops=self.sidecar["calibration"]["crops"],
                       fidelity=self.sidecar["fidelity"])
        return rec


def export_int8_onnx(scorer: Any, out: str | os.PathLike, calibration: str | os.PathLike,
                     calibration_count: int | None = None) -> dict:
    """Quantize a regressor scorer's model to a static int8 ONNX graph, with its sidecar.

    Parameters
    ----------
    scorer : RegressorScorer
        The fp32 regressor (e.g. ``create_scorer("ediffiqa", backend="torch")``).
    out : path
        The ``.onnx`` file to write; the sidecar is ``out`` with the suffix ``.json``.
    calibration : path
        A ``.npy`` file of aligned ``(N, 112, 112, 3)`` uint8 RGB crops to calibrate the
        activations on (e.g. a training cache's ``faces.npy``; never the test set).
    calibration_count : int or None
        Calibrate on this many crops evenly spaced over the file (None: all). Every 4th face
        from index 1 not calibrated on (up to 1,000) measures the fidelity.

    Returns
    -------
    dict
        The sidecar: ``file``, ``sha256``, ``scorer``, ``source_tensor_digest``,
        ``source_weights_sha256``, ``int8_version``, ``recipe``, ``graph_version``, ``opset``,
        ``calibration`` (``file``, ``crops``, ``selection``, ``sha256``), ``fidelity``
        (``spearman``, ``max_abs``, ``faces``, ``selection``; None values when fewer than 2
        faces are left over, so that ``precision="auto"`` never picks the graph) and
        ``onnxruntime``.

    Examples
    --------
    >>> import fiqa_sdk as fq
    >>> from fiqa_sdk.export import export_int8_onnx
    >>> sc = fq.create_scorer("ediffiqa", backend="torch")
    >>> side = export_int8_onnx(sc, "ediffiqa.int8.onnx", "cache/faces.npy")  # doctest: +SKIP
    >>> side["fidelity"]["spearman"]  # doctest: +SKIP
    0.993
    """
    import numpy as np
    import onnxruntime

    from .quality import regressor_onnx as ro

    out = Path(out)
    crops = ro.calibration_crops(calibration, calibration_count)
    ro.quantize_int8(ro.export_bytes(scorer.model), crops, out)
    everything = np.load(calibration, mmap_mode="r")
    held = everything[ro.held_out_indices(len(everything), calibration_count)]
    selection = "every 4th face of the calibration file from index 1, not calibrated on"
    if len(held) >= 2:
        fidelity = {**ro.int8_fidelity(scorer.model, out, held), "selection": selection}
    else:  # too few faces left over: no fidelity, so precision="auto" never picks this graph
        fidelity = {"spearman": None, "max_abs": None, "faces": len(held), "selection": selection}
    # "sha256" (second, as in the shipped sidecar) is filled in by write_sidecar
    side = {"file": out.name, "sha256": None, "scorer": scorer.name,
            "source_tensor_digest": ro.tensor_digest(scorer.model),
            "source_weights_sha256": scorer.weights_sha256, "int8_version": ro.INT8_VERSION,
            "recipe": ro.INT8_RECIPE, "graph_version": ro.GRAPH_VERSION, "opset": ro.OPSET,
            "calibration": {"file": "/".join(Path(calibration).parts[-2:]), "crops": len(crops),
                            "selection": "all" if calibration_count is None
                            else f"{calibration_count} evenly spaced",
                            "sha256": hashlib.sha256(crops.tobytes()).hexdigest()},
            "fidelity": fidelity, "onnxruntime": onnxruntime.__version__}
    return write_sidecar(out, side)


def export_regressor_onnx(scorer: str, out: str | os.PathLike, *,
                          weights: str | os.PathLike | None = None, int8: bool = False,
                          calibration: str | os.PathLike | None = None,
                          calibration_count: int | None = None) -> OnnxExport:
    """Export a distilled regressor to ONNX and check the graph against torch.

    The graph has input ``input`` ``(N, 3, 112, 112)`` float32 RGB in [-1, 1] and outputs
    ``quality`` ``(N,)`` and ``embedding`` ``(N, D)``. The bundled sample face, detected and
    aligned as the gate does, and its mirror are then scored with onnxruntime and with torch.

    Parameters
    ----------
    scorer : str
        One of :data:`EXPORT_SCORERS`.
    out : path
        The ``.onnx`` file to write (its folder is created).
    weights : path or None
        A regressor ``.safetensors`` with its ``.json`` sidecar; None: the shipped weights.
    int8 : bool
        A static int8 graph (QDQ) and its sidecar, by :func:`export_int8_onnx`; needs
        ``calibration``.
    calibration, calibration_count
        As in :func:`export_int8_onnx` (int8 only).

    Returns
    -------
    OnnxExport
        The file, the parity check (``passed`` is False when the difference exceeds the
        tolerance: the file is written all the same) and the graph's signature.

    Raises
    ------
    InvalidArgumentError
        An unknown scorer, ``out`` a folder, ``calibration`` without ``int8`` or the reverse.
    WeightsError
        No weights: the scorer's are not shipped, or ``weights`` is missing.

    Examples
    --------
    >>> from fiqa_sdk.export import export_regressor_onnx
    >>> res = export_regressor_onnx("ediffiqa", "ediffiqa.onnx")  # doctest: +SKIP
    >>> res.passed, res.outputs  # doctest: +SKIP
    (True, {'quality': ['n'], 'embedding': ['n', 512]})
    """
    import numpy as np

    from .errors import GateError
    from .io import sample_image
    from .pipeline import FacePipeline
    from .quality import create_scorer
    from .quality.ediffiqa import OnnxRegressorScorer, export_onnx

    if scorer not in EXPORT_SCORERS:
        raise InvalidArgumentError(f"cannot export {scorer!r}: only the regressors "
                                   f"{', '.join(EXPORT_SCORERS)} are exportable")
    out = Path(out)
    if out.is_dir():
        raise InvalidArgumentError(f"out must be a file, but {out} is a folder")
    if int8 != (calibration is not None):
        raise InvalidArgumentError("int8=True and calibration= go together")
    if calibration_count is not None and not int8:
        raise InvalidArgumentError("calibration_count= needs int8=True")
    kw = {"weights": weights} if weights else {}
    # the torch model: the reference the exported graph is checked against
    model = create_scorer(scorer, backend="torch", **kw)  # WeightsError without weights
    side = None
    if int8:
        out.parent.mkdir(parents=True, exist_ok=True)
        side = export_int8_onnx(model, out, calibration, calibration_count)
    else:
        export_onnx(model, out)
    # parity on the bundled sample face, detected and aligned like the gate does, plus its mirror
    res = FacePipeline(embedder=None).process(sample_image(), color="rgb")[0]
    if not res.ok:  # pragma: no cover - the sample face is always found
        raise GateError(f"parity check: no face in the sample image ({res.reason})")
    crops = np.stack([res.aligned, np.ascontiguousarray(res.aligned[:, ::-1])])
    ref = model.score(crops)
    onnx = OnnxRegressorScorer(out, name=f"{scorer}-onnx")
    got = onnx.score(crops)
    return OnnxExport(onnx=out, scorer=scorer, precision="int8" if int8 else "fp32",
                      max_abs_diff=float(np.max(np.abs(got - ref))),
                      tolerance=INT8_EXPORT_TOLERANCE if int8 else EXPORT_TOLERANCE,
                      inputs=_signature(onnx.session.get_inputs()),
                      outputs=_signature(onnx.session.get_outputs()), sidecar=side)
