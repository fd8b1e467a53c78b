"""SAM 2 (Meta's ``sam2`` package, an optional extra): the image backend and volume propagation.

The backend calls upstream code: the model's ``forward_image`` and ``_prepare_backbone_features``
for an embedding, its prompt encoder and mask decoder for a prompt (as
``SAM2ImagePredictor`` does), and ``SAM2VideoPredictor``'s ``add_new_points_or_box`` /
``propagate_in_video`` to carry a box on one slice of a volume through the others.

SAM 2 resizes every image to a ``image_size`` square (no padding), normalises ``[0, 1]``
intensities with ImageNet's mean and standard deviation, and resizes its 256 x 256 logits
straight to the image size.

Install: ``pip install wheel setuptools`` then
``SAM2_BUILD_CUDA=0 pip install --no-build-isolation "sam2==1.1.0" hydra-core iopath`` (its
source distribution imports torch when built, so it must see the installed one).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelNotAvailableError
from ..torch_loading import load_checkpoint, load_state_strict
from .backend import Prompts, SamBackend
from .types import SamModel
from .upsample import MaskUpsampler

__all__ = [
    "FAMILY",
    "NAMES",
    "SAM2_MODELS",
    "Sam2Backend",
    "adopt",
    "backend",
    "build_sam2_model",
    "load",
    "load_sam2",
    "owns",
    "propagate_box",
]

#: :attr:`~napari_samcam.sam.types.SamModel.family` of SAM 2 models.
FAMILY = "sam2"

#: Name -> (config inside the sam2 package, checkpoint file name). The files are published at
#: https://dl.fbaipublicfiles.com/segment_anything_2/092824/<file> (Apache-2.0).
SAM2_MODELS = {
    "sam2.1_hiera_tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "sam2.1_hiera_small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "sam2.1_hiera_base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "sam2.1_hiera_large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}
#: Model name -> one line (listed by :data:`napari_samcam.sam_models.SAM_MODELS`).
NAMES = {
    name: f"SAM 2.1 {name.split('_hiera_')[1]} (the sam2 extra; checkpoint {file})"
    for name, (_, file) in SAM2_MODELS.items()
}
_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/{}"
_INSTALL = (
    "pip install wheel setuptools && SAM2_BUILD_CUDA=0 pip install --no-build-isolation "
    "sam2==1.1.0 hydra-core iopath"
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _require_sam2():
    try:
        import sam2  # noqa: F401
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"SAM 2 needs Meta's sam2 package, an optional extra installed in two steps: "
            f"{_INSTALL}"
        ) from exc


def build_sam2_model(name: str, *, device: Any = "cpu", overrides: tuple[str, ...] = ()):
    """The random-weight ``SAM2VideoPredictor`` of ``name`` from the sam2 package's config.

    ``overrides``: extra Hydra overrides (e.g. ``"++model.image_size=512"``).
    """
    _require_sam2()
    from sam2.build_sam import build_sam2_video_predictor

    if name not in SAM2_MODELS:
        raise InputError(
            f"SAM 2 model {name!r} is unknown; choose one of {', '.join(SAM2_MODELS)}."
        )
    config, _ = SAM2_MODELS[name]
    return build_sam2_video_predictor(
        config, ckpt_path=None, device=str(device), hydra_overrides_extra=list(overrides)
    )


def _checkpoint_state(path: Path) -> dict:
    """The state dict in a SAM 2 checkpoint (``{"model": state}``), read as data only."""
    state = load_checkpoint(path)  # weights_only; errors name the file
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise InputError(
            f"SAM 2 checkpoint {str(path)!r}: expected a state dict (or {{'model': state}}), "
            f"found {type(state).__name__}."
        )
    return state


def load_sam2(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    device: Any = "cpu",
    cache: Path,
    overrides: tuple[str, ...] = (),
) -> SamModel:
    """Build ``name`` and load its checkpoint strictly (``weights_only``; errors name the file).

    No SHA-256 of the published SAM 2.1 files is pinned here, so they are never downloaded:
    download the file from :data:`_URL` yourself, check it, and pass ``checkpoint=`` (or put
    it in ``cache``). ``overrides``: Hydra overrides of the config (e.g. a MedSAM2 checkpoint
    trained at another ``++model.image_size``).
    """
    _require_sam2()
    if name not in SAM2_MODELS:
        raise InputError(
            f"SAM 2 model {name!r} is unknown; choose one of {', '.join(SAM2_MODELS)}."
        )
    filename = SAM2_MODELS[name][1]
    path = Path(checkpoint) if checkpoint is not None else cache / filename
    if checkpoint is None and not path.is_file():
        raise ModelNotAvailableError(
            f"SAM 2 model {name!r} needs {filename} ({_URL.format(filename)}): put it at {path} "
            "or pass checkpoint=PATH (CLI: --sam-checkpoint PATH). It is not downloaded "
            "automatically because no SHA-256 of it is pinned."
        )
    model = build_sam2_model(name, device="cpu", overrides=overrides)
    load_state_strict(model, _checkpoint_state(path), what=f"SAM 2 checkpoint {str(path)!r}")
    model.to(str(device)).eval()
    return SamModel(
        sam=model,
        name=name,
        image_size=int(model.image_size),
        source=str(path),
        family=FAMILY,
    )


def load(name: str, *, checkpoint=None, device: Any = "cpu", cache: Path) -> SamModel:
    """:func:`load_sam2` (the family interface of :func:`napari_samcam.sam.sam_families`)."""
    return load_sam2(name, checkpoint=checkpoint, device=device, cache=cache)


def owns(module: Any) -> bool:
    """Whether ``module`` is a ``sam2`` ``SAM2Base`` (False when sam2 is not installed)."""
    try:
        from sam2.modeling.sam2_base import SAM2Base
    except ImportError:
        return False
    return isinstance(module, SAM2Base)


def adopt(module: Any) -> SamModel:
    """A :class:`SamModel` around a ``SAM2Base`` built elsewhere (e.g. random weights)."""
    return SamModel(
        sam=module,
        name=type(module).__name__,
        image_size=int(module.image_size),
        source="python",
        family=FAMILY,
    )


def backend(model: SamModel) -> Sam2Backend:
    """The backend of a SAM 2 :class:`SamModel`."""
    return Sam2Backend(model)


class Sam2Backend(SamBackend):
    """A SAM 2 model behind :class:`~napari_samcam.sam.backend.SamBackend`."""

    mask_threshold = 0.0
    propagates = True

    def __init__(self, model: SamModel):
        super().__init__(model)
        self.sam = model.sam

    @property
    def module(self):
        return self.sam

    def input_size(self, original_size):
        return self.image_size, self.image_size

    def low_res_extent(self, low, input_size):
        return low, low

    def upsampler(self, low, input_size, original_size) -> MaskUpsampler:
        return MaskUpsampler.direct(low, original_size)

    def upsampler_key(self, low, input_size, original_size) -> tuple:
        return ("direct", low, tuple(original_size))

    def normalized(self, image):
        """``(B, 3, S, S)`` 0-255 intensities -> SAM 2's input (ImageNet-normalised [0, 1])."""
        import torch

        mean = torch.tensor(_IMAGENET_MEAN, device=image.device).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=image.device).view(1, 3, 1, 1)
        return (image / 255.0 - mean) / std

    def embed(self, image):
        """``SAM2ImagePredictor.set_image``'s features: the lowest-resolution embedding (with
        the no-memory embedding added) and the high-resolution feature maps."""
        import torch

        model = self.sam
        with torch.inference_mode():
            backbone_out = model.forward_image(self.normalized(image))
            _, vision_feats, _, sizes = model._prepare_backbone_features(backbone_out)
            if model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
            feats = [
                feat.permute(1, 2, 0).reshape(1, -1, *size)
                for feat, size in zip(vision_feats, sizes, strict=True)
            ]
        return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}

    def decode(self, features, prompts: Prompts, *, multimask: bool, workers: int = 1):
        """``SAM2ImagePredictor._predict``'s decoder call: box corners first (labels 2, 3),
        then the points, all as points."""
        import torch

        n = prompts.count
        points = None
        if prompts.points is not None:
            coords, labels = (t.expand(n, *t.shape[1:]) for t in prompts.points)
            points = (coords, labels.int())
        if prompts.boxes is not None:
            corners = prompts.boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=corners.device)
            corner_labels = corner_labels.repeat(corners.shape[0], 1)
            if points is None:
                points = (corners, corner_labels)
            else:
                points = (
                    torch.cat([corners, points[0]], dim=1),
                    torch.cat([corner_labels, points[1]], dim=1),
                )
        model = self.sam
        mask = prompts.mask
        sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask)
        low, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=features["image_embed"],
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=points is not None and points[0].shape[0] > 1,
            high_res_features=features["high_res_feats"],
        )
        return low, iou

    def propagate(self, frames, key_index, box_xyxy, size, *, progress=None):
        return propagate_box(
            self, self.normalized(frames), key_index, box_xyxy, size, progress=progress
        )

    def mask_generator(self, **options):
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        return SAM2AutomaticMaskGenerator(self.sam, **options)


_STATE_LOCK = threading.Lock()


def _video_state(predictor, images, height: int, width: int) -> dict:
    """``SAM2VideoPredictor.init_state`` on frames already prepared in memory.

    Upstream's ``init_state`` reads frames from a JPEG folder or an MP4 file; a volume's slices
    are arrays, so the same inference state is made here around the ``(T, 3, S, S)`` frames.
    """
    device = images.device
    state = {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": int(height),
        "video_width": int(width),
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    predictor._get_image_feature(state, frame_idx=0, batch_size=1)
    return state


def propagate_box(
    backend: Sam2Backend,
    frames,
    key_index: int,
    box_xyxy: np.ndarray,
    size: tuple[int, int],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of every frame from one box on frame ``key_index`` (``SAM2VideoPredictor``).

    Parameters
    ----------
    backend : Sam2Backend
    frames : torch.Tensor
        ``(T, 3, S, S)`` SAM 2 inputs (:meth:`Sam2Backend.normalized`).
    key_index : int
        The frame the box is drawn on; propagation runs forward, then backward, from it.
    box_xyxy : numpy.ndarray
        ``(x0, y0, x1, y1)`` pixel indices on the key frame.
    size : (int, int)
        ``(H, W)`` of the original frames.
    progress : callable, optional
        ``progress(done, total)`` over frames.

    Returns
    -------
    masks : numpy.ndarray
        bool ``(T, H, W)``.
    scores : numpy.ndarray
        float ``(T,)``: the object score logit of each frame (SAM 2's "is the object here").
    """
    import torch

    predictor = backend.sam
    count = int(frames.shape[0])
    masks = np.zeros((count, *size), dtype=bool)
    scores = np.full(count, np.nan)
    done = 0
    with _STATE_LOCK, torch.inference_mode():
        state = _video_state(predictor, frames, *size)
        predictor.add_new_points_or_box(
            state, frame_idx=int(key_index), obj_id=1, box=np.asarray(box_xyxy, dtype=np.float32)
        )
        for reverse in (False, True):
            for index, _, logits in predictor.propagate_in_video(
                state, start_frame_idx=int(key_index), reverse=reverse
            ):
                if not np.isnan(scores[index]):
                    continue  # the key frame comes back in both directions
                masks[index] = (logits[0, 0] > backend.mask_threshold).cpu().numpy()
                per_obj = state["output_dict_per_obj"][0]
                out = per_obj["cond_frame_outputs"].get(index) or per_obj[
                    "non_cond_frame_outputs"
                ].get(index)
                scores[index] = float(out["object_score_logits"].flatten()[0])
                done += 1
                if progress:
                    progress(done, count)
    return masks, scores
