"""Opening classifier files a user gives, and what each format is trusted with.

``torch.export`` archives (``.pt2``) and TorchScript files hold pickled Python objects and
programs: opening one can run code its author put there. They are opened only when the caller
says it trusts the file (``trust_checkpoint=True``, CLI ``--trust-checkpoint``, the widget's
*trust this file* box). Before that, only the archive's table of contents is read (no
unpickling), to tell the formats apart and to refuse files that are not archives at all.

See ``docs/security.md`` for every loader of the project.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
import zipfile
from pathlib import Path

from ._files import require_regular_file
from .errors import (
    CheckpointError,
    InputError,
    ModelNotAvailableError,
    SamcamError,
    UntrustedFileError,
)

__all__ = [
    "TRUST_FIX",
    "check_classifier_trust",
    "first_line",
    "hf_pretrained",
    "is_torch_export",
    "is_torchscript",
    "load_exported_program",
    "load_torchscript",
    "refused_global",
    "require_trust",
    "split_revision",
]

#: How a caller says it trusts a file, in every interface.
TRUST_FIX = (
    "If you trust its author, pass trust_checkpoint=True (CLI: --trust-checkpoint; widget: "
    "tick 'trust this file')"
)


def _names(path: Path) -> list[str] | None:
    """The entries of a zip archive (its central directory only), or None for a non-archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``), judged by its entries."""
    names = _names(Path(path))
    return bool(names) and any(name.endswith("constants.pkl") for name in names)


def is_torch_export(path: str | Path) -> bool:
    """Whether ``path`` is a ``torch.export`` archive (``torch.export.save``), by its entries."""
    names = _names(Path(path))
    return bool(names) and any("/models/" in name and name.endswith(".json") for name in names)


def require_trust(path: str | Path, kind: str, *, trusted: bool) -> None:
    """Raise :class:`UntrustedFileError` naming ``path`` unless ``trusted``.

    Parameters
    ----------
    path : path
        The file about to be opened.
    kind : str
        What it is, for the message (``"torch.export archive"``, ``"TorchScript file"``).
    trusted : bool
        The caller's trust flag.
    """
    if trusted:
        return
    raise UntrustedFileError(
        f"{kind} {str(path)!r} was not opened: loading it unpickles Python objects, which can "
        f"run any code its author put in it. {TRUST_FIX}. Otherwise ask for the weights as a "
        "state dict or safetensors file and load them with 'torchvision:ARCH' / 'timm:ARCH' and "
        "checkpoint=PATH (CLI: --checkpoint PATH), which is read without running code."
    )


def check_classifier_trust(spec, *, trusted: bool) -> None:
    """:func:`require_trust` for a classifier spec that names a ``.pt2`` or TorchScript file,
    without opening it: lets a batch run refuse before any work starts."""
    if trusted or not isinstance(spec, (str, Path)):
        return
    path = Path(spec)
    if not path.is_file():
        return
    if path.suffix == ".pt2" and _names(path) is not None:
        require_trust(path, "torch.export archive", trusted=False)
    if is_torchscript(path):
        require_trust(path, "TorchScript file", trusted=False)


class _TorchLog(logging.Filter):
    """Holds back what torch logs while it opens a file: the error raised instead says what
    went wrong (torch's own messages refer to "the warnings above")."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False

    def detail(self, exc: BaseException) -> str:
        """The most telling message: the first exception torch logged, else ``exc``'s."""
        for record in self.records:
            if record.exc_info and record.exc_info[1] is not None:
                return f"{type(record.exc_info[1]).__name__}: {first_line(record.exc_info[1])}"
        return f"{type(exc).__name__}: {first_line(exc)}"


@contextlib.contextmanager
def _quiet_torch():
    # torch's loggers do not all propagate to "torch": filter each one for the call
    names = [n for n in logging.root.manager.loggerDict if n == "torch" or n.startswith("torch.")]
    loggers = [logging.getLogger(n) for n in names]
    log = _TorchLog()
    for logger in loggers:
        logger.addFilter(log)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield log
    finally:
        for logger in loggers:
            logger.removeFilter(log)


def load_exported_program(path: str | Path, *, trusted: bool = False):
    """``torch.export.load`` of a trusted ``.pt2`` archive.

    Raises
    ------
    CheckpointError
        The file is not a ``torch.export`` archive, or torch cannot load it.
    UntrustedFileError
        ``trusted`` is False (nothing was unpickled).
    """
    import torch

    path = Path(path)
    if _names(path) is None:
        raise CheckpointError(
            f"classifier {str(path)!r} is not a torch.export archive (no models/*.json entry in "
            "a zip file); save one with torch.export.save(torch.export.export(model, "
            "(example_input,)), 'model.pt2')."
        )
    require_trust(path, "torch.export archive", trusted=trusted)
    with _quiet_torch() as log:
        try:
            return torch.export.load(str(path))
        except Exception as exc:
            raise CheckpointError(
                f"torch.export archive {str(path)!r} could not be loaded ({log.detail(exc)}); "
                "save it again with this torch version's torch.export.save."
            ) from exc


def load_torchscript(path: str | Path, *, trusted: bool = False):
    """``torch.jit.load`` of a trusted TorchScript archive (on the CPU).

    Raises
    ------
    CheckpointError
        torch cannot load it.
    UntrustedFileError
        ``trusted`` is False (nothing was unpickled).
    """
    import torch

    path = Path(path)
    require_trust(path, "TorchScript file", trusted=trusted)
    with _quiet_torch() as log:
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise CheckpointError(
                f"TorchScript file {str(path)!r} could not be loaded ({log.detail(exc)})."
            ) from exc


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's run to many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def refused_global(exc: BaseException) -> str:
    """`` (it refers to posix.system)``: what torch's ``weights_only`` unpickler refused."""
    match = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return f" (it refers to {match[1]})" if match else ""


# -- transformers folders and hub ids ------------------------------------------------------------
_HF_REVISION = re.compile(r"^(?P<id>[^@]+)@(?P<rev>[A-Za-z0-9._/-]+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def split_revision(spec: str) -> tuple[str, str | None]:
    """``"ORG/NAME@REV"`` -> ``("ORG/NAME", "REV")``; no ``@`` -> ``(spec, None)``."""
    match = _HF_REVISION.match(spec)
    if match and not Path(spec).exists():
        return match["id"], match["rev"]
    return spec, None


def _pickled_weights(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.bin") if p.is_file()) if folder.is_dir() else []


_SAFETENSORS_FIX = (
    "convert the weights to model.safetensors (save_pretrained(FOLDER) writes it), which is "
    "read without running code."
)


def _require_plain_entries(folder: Path, what: str) -> None:
    """Every entry of a model folder is a regular file or a folder (through links): a pipe or a
    device among them would block or never end when transformers opens it."""
    for entry in sorted(folder.rglob("*")):
        if not entry.is_dir():
            require_regular_file(entry, f"{what}: model folder entry", CheckpointError)


def hf_pretrained(
    load,
    source: str,
    *,
    what: str,
    trusted: bool = False,
    download: bool = False,
    revision: str | None = None,
    fix: str = "",
    weights: bool = True,
):
    """Call a transformers ``from_pretrained`` with the project's trust rules.

    A local folder is read as is, from its ``*.safetensors`` weights when it has them. A hub id
    is looked up in the local Hugging Face cache only (no network); with ``download=True`` it is
    fetched at the pinned ``revision`` when the cache misses. Pickled weights
    (``pytorch_model.bin``) are read with ``weights_only=True`` unless ``trusted``; remote code
    is never run.

    Parameters
    ----------
    load : callable
        ``load(source, **kwargs)``, e.g. ``AutoModel.from_pretrained``.
    source : str
        A folder or a hub id (without ``@revision``).
    what : str
        The spec as the user wrote it, for messages.
    trusted, download : bool
        The caller's trust and download flags.
    revision : str, optional
        The hub revision (a commit hash pins it); required for ``download=True``.
    fix : str, optional
        How to get past refused pickled weights (default: the trust flag or safetensors).
    weights : bool
        ``load`` reads model weights (a config, tokenizer or processor does not).

    Raises
    ------
    ModelNotAvailableError
        A hub id that is not cached and may not (or could not) be downloaded.
    UntrustedFileError
        Pickled weights hold objects beyond tensors and ``trusted`` is False.
    CheckpointError
        The folder's files cannot be read as that kind of model.
    """
    import pickle

    folder = Path(source)
    if folder.is_dir():
        _require_plain_entries(folder, what)
    kwargs: dict = {"trust_remote_code": False}
    if weights:
        if trusted:  # transformers reads pickles with weights_only=True by default
            kwargs["weights_only"] = False
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")):
            kwargs["use_safetensors"] = True
    if revision is not None and not folder.is_dir():
        kwargs["revision"] = revision
    try:
        try:
            return load(source, **{**kwargs, "local_files_only": True})
        except OSError as exc:
            if folder.is_dir():
                raise CheckpointError(
                    f"{what}: folder {source!r} could not be loaded ({first_line(exc)}). Pass "
                    "a folder saved with save_pretrained()."
                ) from exc
            if not download:
                raise ModelNotAvailableError(
                    f"{what}: {source!r} is not a folder and not in the local Hugging Face "
                    "cache; nothing is downloaded unless asked. Pass a folder saved with "
                    "save_pretrained(), or download it once with download=True and a pinned "
                    f"revision ('hf:{source}@COMMIT')."
                ) from exc
            if revision is None:
                raise InputError(
                    f"{what}: a download needs a pinned revision, so that the weights cannot "
                    f"change under you; write 'hf:{source}@COMMIT' with the commit hash of the "
                    "hub version you checked."
                ) from exc
            if not _COMMIT.match(revision):
                warnings.warn(
                    f"{what}: revision {revision!r} is a branch or tag, which can move; pin a "
                    "40-digit commit hash instead.",
                    UserWarning,
                    stacklevel=3,
                )
            try:
                return load(source, **{**kwargs, "local_files_only": False})
            except OSError as exc2:
                raise ModelNotAvailableError(
                    f"{what}: downloading {source!r} at revision {revision!r} failed ({exc2})."
                ) from exc2
    except pickle.UnpicklingError as exc:
        files = _pickled_weights(folder)
        named = ", ".join(repr(str(p)) for p in files) or f"the pickled weights of {source!r}"
        raise UntrustedFileError(
            f"{what}: {named} holds Python objects beyond tensors and was not loaded, because "
            "unpickling them can run any code their author put there. "
            + (fix or f"{TRUST_FIX}, or {_SAFETENSORS_FIX}")
            + refused_global(exc)
        ) from exc
    except SamcamError:
        raise
    except ValueError as exc:
        raise CheckpointError(f"{what} could not be loaded ({first_line(exc)}).") from exc
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":
            raise
        named = ", ".join(repr(str(p)) for p in sorted(folder.glob("*.safetensors")))
        raise CheckpointError(
            f"{what}: {named or repr(source)} is not a readable safetensors file "
            f"({first_line(exc)}); save the model again with save_pretrained()."
        ) from None
