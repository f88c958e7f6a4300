"""Typed errors raised by fiqa-sdk.

Every error the SDK raises on purpose derives from :class:`FiqaError`, so an application can
catch one class. The concrete classes also derive from the matching built-in (``ValueError``,
``ImportError``, ...) so that generic handlers keep working.
"""

from __future__ import annotations


class FiqaError(Exception):
    """Base class of every error raised by fiqa-sdk."""


class InvalidImageError(FiqaError, ValueError):
    """An image argument has the wrong type, dtype, shape, size or values (e.g. NaN)."""


class ImageDecodeError(InvalidImageError):
    """Encoded image data (a file or bytes) could not be read or decoded."""


class ImageNotFoundError(ImageDecodeError, FileNotFoundError):
    """An image file does not exist (per-image reason ``"not_found"`` in the gate)."""


class MissingDependencyError(FiqaError, ImportError):
    """An optional backend needs a package that is not installed; the message names the extra."""


class UnknownBackendError(FiqaError, KeyError):
    """A registry was asked for a name it does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsError(FiqaError, RuntimeError):
    """A weights file is missing or fails its checksum."""


class AlignmentError(FiqaError, ValueError):
    """Landmarks are degenerate (e.g. all at one point) so no similarity transform exists."""


class EvaluationError(FiqaError, ValueError):
    """Evaluation inputs are invalid (empty, NaN, mismatched shapes, FMR or limit out of range)."""


class InvalidArgumentError(FiqaError, ValueError):
    """An argument other than the image has an invalid value: an unknown option name (a
    ``face_policy``, a ``color``, a ``device``), or a required companion argument is missing
    (``faces=`` for a scorer that reads the detections). Gate methods raise :class:`GateError`
    for their own arguments instead."""


class DeviceUnavailableError(FiqaError, ValueError, RuntimeError):
    """``device="cuda"`` was asked for but the runtime has no CUDA support here (torch sees no
    CUDA device, or onnxruntime has no CUDA execution provider). Also a ``RuntimeError`` (what
    this check raised before it was typed) and a ``ValueError`` (a bad ``device=`` argument)."""


class FiqaWarning(UserWarning):
    """Base class of the warnings fiqa-sdk issues."""


class ColorOrderWarning(FiqaWarning):
    """A colour image array reached the gate without ``color=``: it is read as BGR (OpenCV's
    order); pass ``color="bgr"`` or ``color="rgb"`` (PIL, scikit-image, matplotlib) to say which."""


class FolderWarning(FiqaWarning):
    """A folder given as a batch holds no image file directly but has sub-folders (see
    ``recursive=True``)."""


class GateError(FiqaError, ValueError):
    """A :class:`~fiqa_sdk.QualityGate` was called wrongly (e.g. both or neither of
    ``discard=`` / ``threshold=``), or cannot do what was asked (no scorable face, an
    unsaveable configuration)."""


class OutputConflictError(FiqaError, ValueError):
    """A resumable job's output (:func:`fiqa_sdk.distributed.ray_filter`) already holds results
    of a different gate configuration, input list or shard size: rerun with ``overwrite=True``
    (``--overwrite``) to discard them, or choose another output path."""


class InvalidTypeError(FiqaError, TypeError):
    """An argument has the wrong type (e.g. a registry name that is not a string, an embedder
    that is neither a name, an :class:`~fiqa_sdk.embed.Embedder` nor a callable)."""


class ConsistencyError(FiqaError, RuntimeError):
    """Stored or computed data disagree with themselves (a cache whose files do not match its
    index, an internal count check): a corrupted cache or a bug, not a bad argument."""


class OutputExistsError(FiqaError, FileExistsError):
    """An output file already exists and overwriting it was not asked for."""


class TrainingDivergedError(FiqaError, FloatingPointError):
    """Training produced a non-finite loss."""


class DataLocationError(FiqaError, FileNotFoundError):
    """No location was given for a data set and its environment variable (``$FIQA_LFW``,
    ``$FIQA_CELEBA``) is not set; the message names the argument and the variable."""
