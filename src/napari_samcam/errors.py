"""The project's exception family.

Every error raised on purpose by napari-samcam is a :class:`SamcamError`. The message names the
input, says what is wrong with it and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ImageReadError",
    "InputError",
    "ModelNotAvailableError",
    "OutputBusyError",
    "OutputExistsError",
    "OutputNotWritableError",
    "PromptError",
    "SamcamError",
    "UntrustedFileError",
]


class SamcamError(Exception):
    """Base class of every error napari-samcam raises on purpose."""


class InputError(SamcamError, ValueError):
    """An argument or a piece of data is not what the operation takes."""


class ImageReadError(SamcamError, OSError):
    """A file could not be read as an image (missing, corrupt, unsupported format)."""


class PromptError(InputError):
    """A SAM prompt (point, box, mask, text) is malformed or outside the image."""


class CheckpointError(SamcamError):
    """A model checkpoint cannot be loaded (wrong keys, unsafe pickle, missing file)."""


class UntrustedFileError(CheckpointError):
    """A file that can run code when opened (pickle, ``torch.export``, TorchScript) was not
    opened because the caller did not say it trusts the file."""


class ModelNotAvailableError(SamcamError):
    """A model's weights are not on this machine and cannot be downloaded."""


class OutputExistsError(SamcamError, FileExistsError):
    """An output would overwrite existing results without ``overwrite=True``."""


class OutputNotWritableError(SamcamError, PermissionError):
    """An output folder cannot be created or written (read-only, a file in the way)."""


class OutputBusyError(SamcamError):
    """Another process is writing into the same output folder."""
