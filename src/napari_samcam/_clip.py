"""CLIP models for text prompts: loaded from a local folder or the local Hugging Face cache.

Nothing is downloaded unless asked (``download=True``), and a missing model is an error that says
how to get the weights onto the machine — never a randomly initialised stand-in.

Specs understood by :func:`load_clip`:

* a local folder saved with ``save_pretrained`` holding a ``transformers`` CLIP-family model
  (``config.json``, weights, tokenizer files; ``preprocessor_config.json`` optional);
* a Hugging Face hub id such as ``"openai/clip-vit-base-patch32"``, found in the local cache;
* ``"hf-hub:ORG/NAME"`` (e.g. a BiomedCLIP-style model), ``"open_clip:ARCH:PRETRAINED"`` or a
  local folder holding ``open_clip_config.json``: an ``open_clip`` model (needs the
  ``open_clip_torch`` package);
* any object with ``encode_images``, ``encode_texts`` and ``logit_scale`` (a
  :class:`ClipEncoder`), used as is.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .devices import default_device
from .errors import CheckpointError, InputError, ModelNotAvailableError, UntrustedFileError
from .model_files import hf_pretrained, split_revision

__all__ = [
    "ClipEncoder",
    "HFClipEncoder",
    "OpenClipEncoder",
    "clear_clip_cache",
    "clip_available",
    "load_clip",
]

#: OpenAI CLIP's normalisation, used when a folder has no ``preprocessor_config.json``.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
_OPEN_CLIP_WEIGHTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)
_EXAMPLE_ID = "openai/clip-vit-base-patch32"


class ClipEncoder:
    """The interface text prompts need from a CLIP model.

    Subclasses (or any object with the same attributes) embed square RGB crops and texts into
    one space. Embeddings are L2-normalised rows, so a dot product is a cosine similarity.

    Attributes
    ----------
    name : str
        Model name for provenance (and cache keys).
    image_size : int
        Side of the square input the image encoder takes; crops are resized to it.
    logit_scale : float
        CLIP's learned temperature: softmax inputs are ``logit_scale * cosine``.
    """

    name: str = "clip"
    image_size: int = 224
    logit_scale: float = 100.0

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed ``(S, S, 3)`` float32 RGB crops in ``[0, 1]``; returns ``(N, D)`` unit rows."""
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; returns ``(T, D)`` float32 unit rows."""
        raise NotImplementedError


def _normalise_rows(features) -> np.ndarray:
    array = features.detach().float().cpu().numpy() if hasattr(features, "detach") else features
    array = np.asarray(array, dtype=np.float32)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


def _embedding_tensor(output: Any, what: str):
    """The embedding tensor of ``get_*_features``: a tensor (transformers 4) or an output object
    whose ``pooler_output`` holds the projected embedding (transformers 5)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(output, tuple) and len(output) > 1 and isinstance(output[1], torch.Tensor):
        return output[1]
    raise InputError(
        f"{what} returned {type(output).__name__} without an embedding tensor; the model is "
        "not a CLIP-style dual encoder this version of napari-samcam understands."
    )


def _to_pixel_tensor(images: Sequence[np.ndarray], size: int, mean, std, device):
    """Square ``[0, 1]`` RGB crops -> normalised ``(N, 3, size, size)`` tensor."""
    import torch
    import torch.nn.functional as F

    batch = []
    for image in images:
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        tensor = tensor.permute(2, 0, 1)[None]
        if tensor.shape[-2:] != (size, size):
            tensor = F.interpolate(
                tensor, size=(size, size), mode="bicubic", antialias=True, align_corners=False
            ).clamp_(0.0, 1.0)
        batch.append(tensor)
    pixels = torch.cat(batch).to(device)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t


class HFClipEncoder(ClipEncoder):
    """A ``transformers`` CLIP-family model (``get_image_features`` / ``get_text_features``).

    Parameters
    ----------
    model : transformers.PreTrainedModel
    tokenizer : transformers tokenizer
    name : str
    mean, std : tuple of float
        Image normalisation (from the folder's ``preprocessor_config.json``).
    device : torch.device
    batch_size : int
        Crops per image-encoder call.
    """

    def __init__(self, model, tokenizer, *, name: str, mean, std, device, batch_size: int = 32):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.device = device
        self.batch_size = int(batch_size)
        vision = getattr(model.config, "vision_config", None)
        self.image_size = int(getattr(vision, "image_size", 224))
        text = getattr(model.config, "text_config", None)
        self.max_length = int(getattr(text, "max_position_embeddings", 77))
        scale = getattr(model, "logit_scale", None)
        self.logit_scale = float(scale.detach().exp()) if scale is not None else 100.0

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(images), self.batch_size):
            pixels = _to_pixel_tensor(
                images[start : start + self.batch_size],
                self.image_size,
                self.mean,
                self.std,
                self.device,
            )
            with torch.inference_mode():
                output = self.model.get_image_features(pixel_values=pixels)
            out.append(_normalise_rows(_embedding_tensor(output, "get_image_features")))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k != "token_type_ids"}
        with torch.inference_mode():
            output = self.model.get_text_features(**tokens)
        return _normalise_rows(_embedding_tensor(output, "get_text_features"))


class OpenClipEncoder(ClipEncoder):
    """An ``open_clip`` model (``encode_image`` / ``encode_text``), e.g. a BiomedCLIP-style one.

    Parameters
    ----------
    model : open_clip model
    preprocess : callable
        open_clip's evaluation transform (PIL image -> tensor).
    tokenizer : callable
        ``tokenizer(list_of_texts) -> LongTensor``.
    name : str
    device : torch.device
    batch_size : int
    """

    def __init__(self, model, preprocess, tokenizer, *, name: str, device, batch_size: int = 32):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self.batch_size = int(batch_size)
        size = getattr(getattr(model, "visual", None), "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        scale = getattr(model, "logit_scale", None)
        self.logit_scale = float(scale.detach().exp()) if scale is not None else 100.0

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        out = []
        for start in range(0, len(images), self.batch_size):
            pils = [
                Image.fromarray(np.round(np.clip(im, 0, 1) * 255).astype(np.uint8))
                for im in images[start : start + self.batch_size]
            ]
            pixels = torch.stack([self.preprocess(p) for p in pils]).to(self.device)
            with torch.inference_mode():
                features = self.model.encode_image(pixels)
            out.append(_normalise_rows(features))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            features = self.model.encode_text(tokens)
        return _normalise_rows(features)


# -- specs ---------------------------------------------------------------------------------------
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+(@[\w.\-/]+)?$")


def _is_encoder(spec: Any) -> bool:
    return all(hasattr(spec, a) for a in ("encode_images", "encode_texts", "logit_scale"))


def _kind(spec: str) -> tuple[str, str]:
    """``(kind, target)``: kind is ``folder``, ``hub``, ``open_clip-folder``, ``open_clip-hub``,
    ``open_clip`` or ``missing-folder``."""
    if spec.startswith("hf-hub:"):
        return "open_clip-hub", spec[len("hf-hub:") :]
    if spec.startswith("open_clip:"):
        target = spec[len("open_clip:") :]
        if target.startswith("hf-hub:"):
            return "open_clip-hub", target[len("hf-hub:") :]
        if Path(target).expanduser().is_dir():
            return "open_clip-folder", str(Path(target).expanduser())
        return "open_clip", target
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "open_clip_config.json").is_file() and not (path / "config.json").is_file():
            return "open_clip-folder", str(path)
        return "folder", str(path)
    if path.exists():
        return "missing-folder", str(path)  # a file, not a folder
    if _HUB_ID.match(spec) and not spec.startswith((".", "~")):
        return "hub", spec
    return "missing-folder", str(path)


_PICKLE_FIX = (
    "napari-samcam reads CLIP weights as tensors only: where you trust the file, convert it to "
    "model.safetensors with CLIPModel.from_pretrained(FOLDER, weights_only=False)"
    ".save_pretrained(FOLDER)."
)


def _download_recipe(hub_id: str) -> str:
    return (
        "On a machine with internet, run:\n"
        '    python -c "from transformers import CLIPModel, CLIPProcessor; '
        f"CLIPModel.from_pretrained('{hub_id}').save_pretrained('clip-model'); "
        f"CLIPProcessor.from_pretrained('{hub_id}').save_pretrained('clip-model')\"\n"
        "copy the folder clip-model to this machine and pass it: clip='clip-model' "
        "(CLI: --clip clip-model)."
    )


def _no_clip_message() -> str:
    return (
        "text prompts need a CLIP model to score SAM's proposals, and none was given. Pass "
        "clip=FOLDER (a transformers CLIP model saved with save_pretrained), a Hugging Face hub "
        f"id already in the local cache (e.g. {_EXAMPLE_ID!r}), or an open_clip 'hf-hub:ID' "
        "(CLI: --clip FOLDER_OR_ID). No CLIP weights ship with napari-samcam. "
        + _download_recipe(_EXAMPLE_ID)
    )


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - very old huggingface_hub
        return "the Hugging Face cache"


def _not_cached_message(hub_id: str, missing: str = "") -> str:
    what = f" ({missing})" if missing else ""
    return (
        f"CLIP model {hub_id!r} is not on this machine{what}: there is no folder of that name and "
        f"it is not in the Hugging Face cache ({_hf_cache_dir()}); napari-samcam does not "
        "download models unless asked. "
        + _download_recipe(hub_id)
        + f" Or set HF_HOME to a Hugging Face cache that holds {hub_id!r}, or pass "
        "download=True where internet is available."
    )


def _open_clip_message(spec: str) -> str:
    return (
        f"CLIP model {spec!r} is an open_clip model, and open_clip is not installed: "
        "pip install open_clip_torch (or pip install 'napari-samcam[open-clip]'), or use a "
        "transformers CLIP folder instead."
    )


def _folder_problem(path: Path) -> str:
    """Why ``path`` is not a loadable transformers CLIP folder, or ``""``."""
    if not path.is_dir():
        return f"folder {str(path)!r} does not exist"
    config = path / "config.json"
    if not config.is_file():
        return f"folder {str(path)!r} has no config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        return f"{str(config)!r} is not readable JSON ({exc})"
    if "vision_config" not in data or "text_config" not in data:
        kind = data.get("model_type", "unknown")
        return (
            f"{str(config)!r} describes a {kind!r} model, not a CLIP-style model with "
            "vision_config and text_config"
        )
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        return f"folder {str(path)!r} has no weights ({' or '.join(_WEIGHT_FILES[:2])})"
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        return (
            f"folder {str(path)!r} has no tokenizer (tokenizer.json or vocab.json + merges.txt); "
            "save the processor beside the model: CLIPProcessor.from_pretrained(ID)"
            ".save_pretrained(FOLDER)"
        )
    return ""


def _cached(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    repo_id, revision = split_revision(repo_id)
    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return isinstance(found, str)


def _hub_problem(repo_id: str, weights: Sequence[str], config: str) -> str:
    if not _cached(repo_id, config):
        return f"{config} not cached"
    if not any(_cached(repo_id, f) for f in weights):
        return "weights not cached"
    return ""


def _open_clip_installed() -> bool:
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"] is not None
    return importlib.util.find_spec("open_clip") is not None


def clip_available(spec: Any) -> tuple[bool, str]:
    """Whether a CLIP model can be loaded offline, without loading it.

    Checks that a folder holds a CLIP config, weights and tokenizer files, or that the local
    Hugging Face cache holds a hub id (no network access).

    Parameters
    ----------
    spec : str, Path, ClipEncoder or None
        As for :func:`load_clip`.

    Returns
    -------
    (bool, str)
        ``(True, description)`` when loadable, else ``(False, message)`` saying what is missing
        and how to provide it (meant to be shown to the user as is).
    """
    if spec is None:
        return False, _no_clip_message()
    if _is_encoder(spec):
        return True, f"CLIP model {getattr(spec, 'name', type(spec).__name__)!r} (Python object)"
    kind, target = _kind(str(spec))
    if kind.startswith("open_clip") and not _open_clip_installed():
        return False, _open_clip_message(str(spec))
    if kind == "folder":
        problem = _folder_problem(Path(target))
        if problem:
            return False, f"CLIP model {str(spec)!r}: {problem}. " + _download_recipe(_EXAMPLE_ID)
        return True, f"transformers CLIP model in {target!r}"
    if kind == "hub":
        problem = _hub_problem(target, _WEIGHT_FILES, "config.json")
        if problem:
            return False, _not_cached_message(target, problem)
        return True, f"transformers CLIP model {target!r} (Hugging Face cache)"
    if kind == "open_clip-hub":
        problem = _hub_problem(target, _OPEN_CLIP_WEIGHTS, "open_clip_config.json")
        if problem:
            return False, (
                f"open_clip model 'hf-hub:{target}' is not in the Hugging Face cache "
                f"({_hf_cache_dir()}; {problem}). On a machine with internet run: python -c "
                f"\"import open_clip; open_clip.create_model_from_pretrained('hf-hub:{target}')\""
                " and copy its cache folder here (or set HF_HOME to it), or pass download=True "
                "where internet is available."
            )
        return True, f"open_clip model 'hf-hub:{target}' (Hugging Face cache)"
    if kind == "open_clip-folder":
        path = Path(target)
        if not (path / "open_clip_config.json").is_file() or not any(
            (path / f).is_file() for f in _OPEN_CLIP_WEIGHTS
        ):
            return False, (
                f"open_clip folder {target!r} needs open_clip_config.json and "
                f"{' or '.join(_OPEN_CLIP_WEIGHTS)}."
            )
        return True, f"open_clip model in {target!r}"
    if kind == "open_clip":
        return True, f"open_clip model {target!r} (availability is checked when loading)"
    return False, (
        f"CLIP model {str(spec)!r}: the folder does not exist (and the name is not a Hugging "
        "Face hub id ORG/NAME). Pass the folder a CLIP model was saved to. "
        + _download_recipe(_EXAMPLE_ID)
    )


# -- loading -------------------------------------------------------------------------------------
_CLIPS: dict[tuple, ClipEncoder] = {}
_CLIPS_LOCK = threading.Lock()


def clear_clip_cache() -> None:
    """Forget the CLIP models loaded so far in this process."""
    with _CLIPS_LOCK:
        _CLIPS.clear()


def load_clip(spec: Any, *, device: Any = None, download: bool = False) -> ClipEncoder:
    """Load a CLIP model for text prompts (once per process per spec and device).

    Parameters
    ----------
    spec : str, Path or ClipEncoder
        A folder saved with ``save_pretrained``, a Hugging Face hub id in the local cache,
        ``"hf-hub:ORG/NAME"`` / ``"open_clip:ARCH:PRETRAINED"`` / an open_clip folder (needs
        ``open_clip_torch``), or an encoder object (returned as is).
    device : optional
        CUDA when available, else CPU.
    download : bool
        Allow fetching a hub id from the internet. Off by default: only local files are used.

    Raises
    ------
    ModelNotAvailableError
        ``spec`` is None, the folder or cache entry is missing or incomplete, or open_clip is
        needed and not installed; the message says how to provide the weights.
    """
    if spec is None:
        raise ModelNotAvailableError(_no_clip_message())
    if _is_encoder(spec):
        return spec
    if not isinstance(spec, (str, Path)):
        raise InputError(
            f"clip={spec!r}: pass a folder, a hub id, 'hf-hub:ID' or an object with "
            "encode_images / encode_texts / logit_scale."
        )

    device = default_device(device)
    spec_str = str(spec)
    key = (spec_str, str(device))
    with _CLIPS_LOCK:
        if key in _CLIPS:
            return _CLIPS[key]
    kind, target = _kind(spec_str)
    if kind.startswith("open_clip"):
        encoder = _load_open_clip(spec_str, kind, target, device, download)
    elif kind == "folder":
        problem = _folder_problem(Path(target))
        if problem:
            raise ModelNotAvailableError(
                f"CLIP model {spec_str!r}: {problem}. " + _download_recipe(_EXAMPLE_ID)
            )
        encoder = _load_transformers(target, target, device, download=False)
    elif kind == "hub":
        encoder = _load_transformers(target, target, device, download=download)
    else:
        raise ModelNotAvailableError(clip_available(spec_str)[1])
    with _CLIPS_LOCK:
        return _CLIPS.setdefault(key, encoder)


def _load_transformers(source: str, name: str, device, *, download: bool) -> HFClipEncoder:
    from transformers import AutoModel, AutoTokenizer

    source, revision = split_revision(source)
    options = {"what": f"CLIP model {name!r}", "download": download, "revision": revision}
    try:
        model = hf_pretrained(AutoModel.from_pretrained, source, fix=_PICKLE_FIX, **options)
        tokenizer = hf_pretrained(AutoTokenizer.from_pretrained, source, weights=False, **options)
    except ModelNotAvailableError as exc:
        raise ModelNotAvailableError(_not_cached_message(source)) from exc
    except CheckpointError as exc:
        if isinstance(exc, UntrustedFileError) or not Path(source).is_dir():
            raise
        raise ModelNotAvailableError(f"{exc} " + _download_recipe(_EXAMPLE_ID)) from exc
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise InputError(
            f"CLIP model {name!r} is a {type(model).__name__}, which has no "
            "get_image_features / get_text_features: pass a CLIP-style dual encoder."
        )
    mean, std = CLIP_MEAN, CLIP_STD
    try:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(
            source, local_files_only=True, revision=revision
        )
        mean = tuple(getattr(processor, "image_mean", None) or mean)
        std = tuple(getattr(processor, "image_std", None) or std)
    except Exception:  # no preprocessor_config.json: every CLIP uses OpenAI's constants
        pass
    model.to(device).eval()
    return HFClipEncoder(model, tokenizer, name=name, mean=mean, std=std, device=device)


def _load_open_clip(spec: str, kind: str, target: str, device, download: bool):
    try:
        import open_clip
    except ImportError as exc:
        raise ModelNotAvailableError(_open_clip_message(spec)) from exc
    if kind == "open_clip-hub" and not download:
        problem = _hub_problem(target, _OPEN_CLIP_WEIGHTS, "open_clip_config.json")
        if problem:
            raise ModelNotAvailableError(clip_available(f"hf-hub:{target}")[1])
    if kind == "open_clip":
        arch, _, pretrained = target.partition(":")
        # a name open_clip knows as a release tag is fetched by open_clip, whatever local file
        # shares the name: only a name open_clip does not know can be a local file
        if pretrained and open_clip.get_pretrained_cfg(arch, pretrained):
            raise ModelNotAvailableError(
                f"CLIP model {spec!r}: {pretrained!r} is one of open_clip's released weights, "
                "which open_clip fetches from the internet without a pinned digest; they are "
                f"not downloaded. Fetch the file yourself, check it, and pass it: "
                f"'open_clip:{arch}:PATH/TO/FILE'."
            )
        if pretrained and not Path(pretrained).expanduser().is_file():
            raise ModelNotAvailableError(
                f"CLIP model {spec!r}: {pretrained!r} is not a file; pass a local checkpoint "
                f"file: 'open_clip:{arch}:FILE'."
            )
    try:
        if kind == "open_clip":
            arch, _, pretrained = target.partition(":")
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained or None, device=device
            )
            tokenizer = open_clip.get_tokenizer(arch)
            name = target
        else:
            name = f"hf-hub:{target}" if kind == "open_clip-hub" else f"local-dir:{target}"
            model, preprocess = open_clip.create_model_from_pretrained(name, device=device)
            tokenizer = open_clip.get_tokenizer(name)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelNotAvailableError(
            f"open_clip model {spec!r} could not be loaded ({type(exc).__name__}: {exc}). Check "
            "the name, or fetch its weights on a machine with internet and point HF_HOME to "
            "that cache."
        ) from exc
    model.eval()
    return OpenClipEncoder(model, preprocess, tokenizer, name=name, device=device)
