"""The SAM-CAM dock widget: a thin Qt face over :class:`~napari_samcam._napari.SamcamSession`.

Every button forwards to a session job; the :class:`~napari_samcam._qt._runner.JobRunner` runs it
in a worker thread with a progress bar and a Cancel button. The widget holds no state of its own
beyond what its fields show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from magicgui import widgets
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .._napari._choices import TOP_CLASS
from .._napari._layers import leading_shape, samcam_meta
from .._napari._session import (
    PROMPT_KINDS,
    SamcamSession,
    bind_polarity_key,
    builtin_classifier_names,
    clip_status,
)
from .._napari._triton_guard import guard_triton
from ..evaluation_settings import setting
from ..sam_preprocess import PREPROCESS_EXAMPLES
from ._runner import JobRunner
from ._staged import WIDGET_OPENERS, opened_from_the_gui, warm_up_soon

logger = logging.getLogger(__name__)

_PROMPT_LABELS = {
    "boxes": "boxes (Shapes layer)",
    "points": "points (Points layer)",
    "text": "text (CLIP)",
    "saliency": "from saliency",
}
# values of the target drop-down that are not class names
_AUTO_TARGET = "<auto>"
_TOP_TARGET = "<top>"
_AUTO_TARGET_LABEL = "finding class (else top class)"
_AUTO_LAYER = "auto"


#: The prompt layer kinds and the drop-downs that choose them.
_PROMPT_COMBOS = {"box-prompts": "shapes", "point-prompts": "points"}
#: Milliseconds between two stages of the widget's construction.
STAGE_PAUSE_MS = 30
#: Attributes napari looks for on any dock widget (that this one never has): asking for them
#: does not finish the staged build.
_PROBED = frozenset({"native"})


def _cam_methods() -> tuple[str, ...]:
    from ..saliency import CAM_METHODS

    return tuple(CAM_METHODS)


def _sam_models() -> list[str]:
    try:
        from ..sam_models import SAM_MODELS

        names = list(SAM_MODELS)
    except ImportError:
        names = []
    return ["litemedsam", *[n for n in names if n != "litemedsam"]]


def _layers_of(viewer, kind: str, *, ours: str | None = None, exclude_ours: bool = False):
    from napari import layers

    cls = {"image": layers.Image, "shapes": layers.Shapes, "points": layers.Points}[kind]
    out = []
    for layer in viewer.layers:
        if not isinstance(layer, cls):
            continue
        meta_kind = samcam_meta(layer).get("kind")
        if ours is not None and meta_kind != ours:
            continue
        if exclude_ours and meta_kind in ("saliency",):
            continue
        out.append(layer)
    return out


def _saliency_choices(viewer, image=None):
    """Computed saliency layers first, then every other single-channel Image layer (a map
    opened from disk), never the image itself: scoring an image as its own map means nothing."""
    ours = _layers_of(viewer, "image", ours="saliency")
    others = [
        lyr
        for lyr in _layers_of(viewer, "image")
        if lyr not in ours and not lyr.rgb and lyr is not image
    ]
    return ours + others


def _group(title: str, *rows: QWidget) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(6, 6, 6, 6)
    layout.setSpacing(3)
    for row in rows:
        layout.addWidget(row)
    return box


def _row(*items: QWidget) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for item in items:
        layout.addWidget(item)
    return row


class SamcamWidget(QWidget):
    """Grad-CAM saliency, SAM regions and localization metrics for the layers of a viewer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    session : SamcamSession, optional
        The model to drive; a new one for ``napari_viewer`` by default.
    """

    def __init__(self, napari_viewer, session: SamcamSession | None = None):
        super().__init__()
        guard_triton()
        self.viewer = napari_viewer
        self.session = session if session is not None else SamcamSession(napari_viewer)
        self.runner = JobRunner(self.session, self)
        self._buttons: list[QPushButton] = []
        # opened from the Plugins menu, built in stages, one per turn of the event loop (the
        # whole build froze the viewer for 0.4-0.8 s; anything that needs a control before
        # finishes it, see __getattr__); made by code, built at once
        self._stages = self._construct()
        self._building = False
        if opened_from_the_gui(WIDGET_OPENERS):
            self._build_stage()
        else:
            self.finish_building()

    def _construct(self):
        yield from self._build()
        self._connect()
        self.reset_choices()
        self._default_prompt_layers()
        self._default_saliency()  # layers already open (a reopened session) have their map
        yield
        self._sync_settings_from_session()
        self._on_prompt_kind()
        self._check_clip()
        self._update_slice_label()
        self._push_console()
        if self.isVisible():
            self._fit_width()
        warm_up_soon(self.viewer)

    @property
    def built(self) -> bool:
        """Whether every control exists and is connected."""
        return self.__dict__.get("_stages") is None

    def _build_stage(self) -> None:
        """Build the next stage; schedule the one after it on the event loop."""
        if self.built:
            return
        self._building = True
        try:
            next(self._stages)
        except StopIteration:
            self._stages = None
        finally:
            self._building = False
        if not self.built:
            # a pause between stages lets the viewer answer (and draw) in between
            QTimer.singleShot(STAGE_PAUSE_MS, self._build_stage)

    def finish_building(self) -> None:
        """Build the remaining stages now."""
        while not self.built:
            self._build_stage()

    def __getattr__(self, name: str):
        # only for attributes not there (yet): a control asked for before its stage was built
        if self.__dict__.get("_building", True) or self.built or name in _PROBED:
            raise AttributeError(name)
        self.finish_building()
        return object.__getattribute__(self, name)

    # ---------------------------------------------------------------------------------------
    # construction

    def _button(self, text: str, slot, tip: str = "") -> QPushButton:
        button = QPushButton(text)
        # `clicked` carries a `checked` bool that Qt would pass into the slot's first argument
        button.clicked.connect(lambda _checked=False: slot())
        if tip:
            button.setToolTip(tip)
        self._buttons.append(button)
        return button

    def _build(self) -> Iterator[None]:
        viewer = self.viewer
        # -- image
        self.image = widgets.ComboBox(
            label="image",
            choices=lambda _w: [
                (lyr.name, lyr) for lyr in _layers_of(viewer, "image", exclude_ours=True)
            ],
            tooltip="The image to explain and segment (its displayed slice for volumes).",
        )
        self.slice_label = QLabel("")
        self.slice_label.setWordWrap(True)

        yield
        # -- classifier
        self.classifier = QComboBox()
        self.classifier.setEditable(True)
        self.classifier.addItems(list(builtin_classifier_names()))
        self.classifier.setToolTip(
            "A built-in classifier, a TorchScript file, a transformers folder or hub id "
            "('hf:...'), or 'torchvision:ARCH' / 'timm:ARCH' with a checkpoint file."
        )
        self.classifier.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.browse_button = browse = QPushButton("…")
        browse.setToolTip("Choose a classifier file (.pt2, TorchScript) or folder.")
        browse.setMaximumWidth(32)
        browse.clicked.connect(lambda _checked=False: self._browse_classifier())
        self.trust = QCheckBox("trust this file")
        self.trust.setToolTip(
            ".pt2 and TorchScript files (and checkpoints that need full unpickling) can run "
            "code when opened: tick only for a file whose author you trust. Choosing another "
            "classifier clears it."
        )
        self.checkpoint = widgets.FileEdit(
            label="checkpoint",
            mode="r",
            filter="*.pt *.pth *.bin *.safetensors",
            nullable=True,
            tooltip="State dict for 'torchvision:ARCH' / 'timm:ARCH' (leave empty otherwise).",
        )
        self.method = widgets.ComboBox(label="CAM method", choices=list(_cam_methods()))
        self.target = widgets.ComboBox(
            label="target class",
            choices=[(_AUTO_TARGET_LABEL, _AUTO_TARGET), ("top class", _TOP_TARGET)],
            tooltip="The class whose evidence is explained. By default the classifier's finding "
            "class (the built-ins: 'lesion'), which is what a localization check is about.",
        )
        self.target_layer = widgets.ComboBox(label="target layer", choices=[_AUTO_LAYER])
        self.predictions = QLabel("Load a classifier to see its predictions.")
        self.predictions.setWordWrap(True)
        self.load_button = self._button(
            "Load classifier", self.load_classifier, "Load it and predict the displayed image."
        )
        self.explain_button = self._button(
            "Explain", self.explain, "Grad-CAM of the displayed image (slice)."
        )
        self.explain_all_button = self._button(
            "Explain all slices", self.explain_all, "Grad-CAM of every slice of a volume."
        )
        classifier_form = widgets.Container(
            widgets=[self.checkpoint, self.method, self.target, self.target_layer]
        )
        classifier_form.native.layout().setContentsMargins(0, 0, 0, 0)

        yield
        # -- SAM
        self.segmenter = QComboBox()
        self.segmenter.setEditable(True)
        self.segmenter.addItems(_sam_models())
        self.segmenter.setToolTip(
            "SAM model: 'litemedsam' (built in), or vit_b / vit_l / vit_h / mobile_sam with "
            "their checkpoint files."
        )
        self.context = widgets.FloatSpinBox(
            label="box context ×",
            min=0.0,
            max=10.0,
            step=0.5,
            value=setting("context").default,
            tooltip=setting("context").help,
        )
        self.sam_preprocess = widgets.ComboBox(
            label="SAM contrast",
            choices=list(PREPROCESS_EXAMPLES),
            value="none",
            tooltip=setting("sam_preprocess").help,
        )
        self.prompt_kind = widgets.ComboBox(
            label="prompt",
            choices=[(_PROMPT_LABELS[k], k) for k in PROMPT_KINDS],
            value="boxes",
        )
        self.shapes = widgets.ComboBox(
            label="boxes layer",
            choices=lambda _w: [(lyr.name, lyr) for lyr in _layers_of(viewer, "shapes")],
            nullable=True,
        )
        self.points = widgets.ComboBox(
            label="points layer",
            choices=lambda _w: [(lyr.name, lyr) for lyr in _layers_of(viewer, "points")],
            nullable=True,
            tooltip="Positive/negative from the 'positive' feature; press T in the layer to "
            "toggle the selected points.",
        )
        self.text = widgets.LineEdit(label="text", tooltip="What to segment, e.g. 'nodule'.")
        self.clip = widgets.LineEdit(
            label="CLIP model", tooltip="A local CLIP folder or a hub id for text prompts."
        )
        self.clip_message = QLabel("")
        self.clip_message.setWordWrap(True)
        self.sam_form = widgets.Container(
            widgets=[
                self.context,
                self.sam_preprocess,
                self.prompt_kind,
                self.shapes,
                self.points,
                self.text,
                self.clip,
            ]
        )
        self.sam_form.native.layout().setContentsMargins(0, 0, 0, 0)
        self.prompt_layers_button = self._button(
            "Add prompt layers",
            self.add_prompt_layers,
            "A Shapes layer for boxes and a Points layer for points, on the image's grid.",
        )
        self.segment_button = self._button(
            "Segment", self.segment, "SAM on the displayed image (slice) with the prompts."
        )
        self.segment_all_button = self._button(
            "Segment all slices", self.segment_all, "SAM on every slice of a volume."
        )
        self.segment_volume_button = self._button(
            "Segment volume from this box",
            self.segment_volume,
            "One box on the displayed slice, carried through every slice by SAM 2.",
        )
        self._segment_tips = {
            b: b.toolTip() for b in (self.segment_button, self.segment_all_button)
        }
        self._clip_ok, self._clip_message = False, ""

        yield
        # -- metrics
        self.saliency = widgets.ComboBox(
            label="saliency",
            choices=lambda _w: [
                (lyr.name, lyr) for lyr in _saliency_choices(viewer, self.image.value)
            ],
            nullable=True,
            tooltip="Saliency map the metrics score: a computed one, or any Image layer (a map "
            "opened from disk); empty: the newest computed one of the image.",
        )
        metrics_form = widgets.Container(widgets=[self.saliency])
        metrics_form.native.layout().setContentsMargins(0, 0, 0, 0)
        self.table_button = self._button(
            "Show metrics table", self.show_table, "napari's features table of the regions."
        )
        self.export_button = self._button("Export CSV…", self.export_csv)
        self.save_button = self._button(
            "Save session…", self.save_session, "Image, saliency, regions, prompts, metrics."
        )

        # -- status
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda _checked=False: self.cancel())

        image_form = widgets.Container(widgets=[self.image])
        image_form.native.layout().setContentsMargins(0, 0, 0, 0)
        # the forms whose drop-downs list layers; the classifier's (target class, layer) list
        # what the loaded classifier has, and magicgui's reset would forget that
        self._forms = [image_form, self.sam_form, metrics_form]

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(_group("Image", image_form.native, self.slice_label))
        layout.addWidget(
            _group(
                "Classifier (Grad-CAM)",
                _row(QLabel("classifier"), self.classifier, browse),
                self.trust,
                classifier_form.native,
                self.load_button,
                self.predictions,
                _row(self.explain_button, self.explain_all_button),
            )
        )
        layout.addWidget(
            _group(
                "Region (Segment Anything)",
                _row(QLabel("SAM model"), self.segmenter),
                self.sam_form.native,
                self.clip_message,
                self.prompt_layers_button,
                _row(self.segment_button, self.segment_all_button),
                self.segment_volume_button,
            )
        )
        layout.addWidget(
            _group(
                "Localization metrics",
                metrics_form.native,
                self.table_button,
                _row(self.export_button, self.save_button),
            )
        )
        layout.addWidget(_row(self.status, self.cancel_button))
        layout.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self._content, self._scroll = content, scroll
        self.setMinimumWidth(300)

    def _connect(self) -> None:
        session = self.session
        session.predictions_changed.connect(self._show_predictions)
        session.classifier_loaded.connect(self._on_classifier_loaded)
        session.status.connect(self._set_status)
        session.warning.connect(self._warn)
        self.runner.busy.connect(self._on_busy)
        self.runner.finished.connect(self._on_job_finished)
        self.runner.step.connect(self._set_status)
        self.prompt_kind.changed.connect(self._on_prompt_kind)
        self.points.changed.connect(self._on_points_layer)
        self.image.changed.connect(self._update_slice_label)
        self.image.changed.connect(self._default_prompt_layers)
        self.clip.changed.connect(self._check_clip)
        self.classifier.currentTextChanged.connect(self._on_classifier_text)
        self.classifier.currentTextChanged.connect(lambda _text: self.trust.setChecked(False))
        self.trust.toggled.connect(self._on_classifier_text)
        self.checkpoint.changed.connect(self._on_classifier_text)
        self.method.changed.connect(self._push_settings)
        self.target.changed.connect(self._push_settings)
        self.target_layer.changed.connect(self._push_settings)
        self.context.changed.connect(self._push_settings)
        self.sam_preprocess.changed.connect(self._push_settings)
        self.segmenter.currentTextChanged.connect(self._push_settings)
        events = self.viewer.layers.events
        events.inserted.connect(self._on_layer_inserted)
        for event in (events.removed, events.reordered):
            event.connect(self.reset_choices)
        self.image.changed.connect(self._default_saliency)
        self.viewer.dims.events.current_step.connect(self._update_slice_label)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    def _warn(self, text: str) -> None:
        show_warning(text)

    def _push_console(self) -> None:
        """Put the Python API and this widget's session into napari's console namespace (the
        API's functions are imported when first used, see :mod:`.._napari._console`)."""
        from .._napari._console import console_namespace

        namespace = console_namespace(self.session)
        # napari keeps weak references to what waits for the console: hold the stand-ins
        self._console_namespace = namespace
        try:
            self.viewer.update_console(namespace)
        except Exception as exc:  # no console (headless, console plugin missing)
            logger.debug("napari console not available: %s", exc)

    # ---------------------------------------------------------------------------------------
    # state <-> fields

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer drop-downs (napari calls this when layers change)."""
        for form in self._forms:
            form.reset_choices()
        self._default_prompt_layers(force=False)

    def _on_layer_inserted(self, event) -> None:
        """A newly opened image becomes the chosen one; a new saliency map of the chosen image
        becomes the map the metrics score."""
        from napari.layers import Image

        self.reset_choices()
        layer = event.value
        kind = samcam_meta(layer).get("kind")
        if isinstance(layer, Image) and kind is None and layer in self.image.choices:
            self.image.value = layer
        elif kind == "saliency" and layer in self.saliency.choices:
            image = self.image.value
            if image is not None and samcam_meta(layer).get("image_layer") == image.name:
                self.saliency.value = layer
        elif kind in _PROMPT_COMBOS:
            # a sample's box layer comes after its image: the image's prompts, once there
            combo = getattr(self, _PROMPT_COMBOS[kind])
            image = self.image.value
            if (
                image is not None
                and samcam_meta(layer).get("image_layer") == image.name
                and layer in combo.choices
            ):
                combo.value = layer

    def _default_saliency(self, *_: Any) -> None:
        """The newest saliency map of the chosen image (none if it has none)."""
        self.saliency.reset_choices()  # the chosen image is never offered as its own map
        image = self.image.value
        newest = None
        for layer in self.saliency.choices:
            meta = samcam_meta(layer) if layer is not None else {}
            if image is not None and meta.get("image_layer") == image.name:
                newest = layer
        self.saliency.value = newest

    def _default_prompt_layers(self, *_: Any, force: bool = True) -> None:
        """Pick the prompt layers that belong to the chosen image (a sample's lesion box, the
        layers of *Add prompt layers*) when the image changes or nothing is chosen yet."""
        image = self.image.value
        if image is None:
            return
        for kind, attribute in _PROMPT_COMBOS.items():
            combo = getattr(self, attribute)
            if combo.value is not None and not force:
                continue
            for layer in combo.choices:
                if layer is None:
                    continue
                meta = samcam_meta(layer)
                if meta.get("kind") == kind and meta.get("image_layer") == image.name:
                    combo.value = layer
                    break
            else:
                # never another image's prompts (a drawn layer of no image is kept)
                owner = samcam_meta(combo.value).get("image_layer") if combo.value else None
                if owner is not None and owner != image.name:
                    combo.value = None

    def _sync_settings_from_session(self) -> None:
        session = self.session
        trusted = session.trust_checkpoint  # setting the text below clears the box
        if isinstance(session.classifier_spec, str):
            self.classifier.setCurrentText(session.classifier_spec)
        self.trust.setChecked(trusted)
        if session.method in self.method.choices:
            self.method.value = session.method
        self.context.value = float(session.context or 0.0)
        if (session.sam_preprocess or "none") in self.sam_preprocess.choices:
            self.sam_preprocess.value = session.sam_preprocess or "none"
        if isinstance(session.segmenter_spec, str):
            self.segmenter.setCurrentText(session.segmenter_spec)
        if session.clip:
            self.clip.value = session.clip

    def _checkpoint_value(self) -> str | None:
        value = self.checkpoint.value
        text = "" if value is None else str(value)
        return None if text in ("", ".") else text

    def _on_classifier_text(self, *_: Any) -> None:
        spec = self.classifier.currentText().strip()
        if isinstance(self.session.classifier_spec, str) or spec:
            self.session.classifier_spec = spec
        self.session.checkpoint = self._checkpoint_value()
        self.session.trust_checkpoint = self.trust.isChecked()
        self.target.choices = [(_AUTO_TARGET_LABEL, _AUTO_TARGET), ("top class", _TOP_TARGET)]
        self.target_layer.choices = [_AUTO_LAYER]
        self._push_settings()

    def _push_settings(self, *_: Any) -> None:
        """Copy the fields into the session (the single source the jobs read)."""
        session = self.session
        session.method = self.method.value
        target = self.target.value
        session.target = {None: None, _AUTO_TARGET: None, _TOP_TARGET: TOP_CLASS}.get(
            target, target
        )
        layer = self.target_layer.value
        session.target_layer = None if layer in (None, _AUTO_LAYER) else layer
        session.sam_preprocess = (
            None if self.sam_preprocess.value == "none" else (self.sam_preprocess.value)
        )
        context = float(self.context.value)
        session.context = context if context >= 1.0 else None
        segmenter = self.segmenter.currentText().strip()
        if segmenter and isinstance(session.segmenter_spec, str):
            session.segmenter_spec = segmenter
        clip = self.clip.value.strip()
        session.clip = clip or None

    def _on_prompt_kind(self, *_: Any) -> None:
        kind = self.prompt_kind.value
        self.shapes.visible = kind == "boxes"
        self.points.visible = kind == "points"
        self.text.visible = kind == "text"
        self.clip.visible = kind == "text"
        self.clip_message.setVisible(kind == "text")
        self.context.visible = kind in ("boxes", "saliency")
        self._update_segment_buttons()

    def _on_points_layer(self, layer=None) -> None:
        if layer is not None:
            bind_polarity_key(layer)

    def _check_clip(self, *_: Any) -> None:
        self._push_settings()
        ok, message = clip_status(self.session.clip)
        self._clip_ok, self._clip_message = ok, message
        self._update_segment_buttons()
        self.text.enabled = ok
        if ok:
            self.clip_message.setText(f"✓ {_first_sentence(message)}")
        else:
            self.clip_message.setText(
                "Text prompts need CLIP weights: type a local CLIP folder above "
                "(hover here for how to get one)."
            )
        self.clip_message.setToolTip(message)
        self.text.tooltip = message if not ok else "What to segment, e.g. 'nodule'."

    def _update_slice_label(self, *_: Any) -> None:
        image = self.image.value
        if image is None:
            self.slice_label.setText("Open an image or a sample (File > Open Sample).")
            return
        lead = leading_shape(image)
        if not lead:
            self.slice_label.setText(f"2-D image {tuple(image.data.shape)}")
            return
        from .._napari._layers import current_index

        index = current_index(image, tuple(self.viewer.dims.point))
        # numbered as napari's slider and the table's `slice` column: from 0 to the last index
        where = ", ".join(f"{i} / {n - 1}" for i, n in zip(index, lead, strict=True))
        self.slice_label.setText(f"volume {tuple(image.data.shape)}: slice {where} (displayed)")

    def _show_predictions(self, probabilities: dict) -> None:
        if not probabilities:
            self.predictions.setText("")
            return
        ranked = sorted(probabilities.items(), key=lambda kv: -kv[1])[:5]
        index = self.session.predictions_index
        where = f" (slice {', '.join(map(str, index))})" if index else ""
        text = ", ".join(f"{k} {v:.2f}" for k, v in ranked)
        self.predictions.setText(f"predicted{where}: {text}")

    def _on_classifier_loaded(self, classifier) -> None:
        try:
            names = self.session.class_names()
            finding = self.session.finding_class()
            auto, layers = self.session.target_layer_names()
        except Exception as exc:  # a classifier the registry loaded but cannot introspect
            logger.debug("classifier introspection failed: %s", exc)
            return
        chosen = self.target.value
        auto_target = f"{finding} (finding class)" if finding else "top class (no finding class)"
        self.target.choices = [
            (auto_target, _AUTO_TARGET),
            ("top class", _TOP_TARGET),
            *[(n, n) for n in names],
        ]
        self.target.value = chosen if chosen in (*names, _TOP_TARGET) else _AUTO_TARGET
        auto_label = f"{_AUTO_LAYER} ({auto})" if auto else _AUTO_LAYER
        self.target_layer.choices = [(auto_label, _AUTO_LAYER), *[(n, n) for n in layers]]
        self.target_layer.value = _AUTO_LAYER

    def _on_busy(self, busy: bool) -> None:
        self._busy = busy
        for button in self._buttons:
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self._update_segment_buttons()

    def _update_segment_buttons(self) -> None:
        """Segment needs a usable CLIP model for text prompts: disabled (saying which model is
        missing and how to get one) until there is one."""
        blocked = self.prompt_kind.value == "text" and not self._clip_ok
        for button in (self.segment_button, self.segment_all_button):
            button.setEnabled(not getattr(self, "_busy", False) and not blocked)
            button.setToolTip(
                f"Text prompts: {self._clip_message}" if blocked else self._segment_tips[button]
            )

    def _on_job_finished(self, title: str, _value) -> None:
        """After Segment the prompt layer stays the active one: the next click on the canvas
        adds a box or a point, as before (Show metrics table selects the regions)."""
        if not title.startswith("Segment"):
            return
        prompt = {"boxes": self.shapes.value, "points": self.points.value}.get(
            self.prompt_kind.value
        )
        if prompt is not None and prompt in self.viewer.layers:
            self.viewer.layers.selection.active = prompt

    def _browse_classifier(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Classifier file (.pt2, TorchScript)",
            "",
            "Models (*.pt2 *.pt *.pth *.ts);;All files (*)",
        )
        if path:
            self.classifier.setCurrentText(path)

    # ---------------------------------------------------------------------------------------
    # actions (each forwards to the session through the runner)

    def _image(self):
        return self.image.value

    def load_classifier(self) -> bool:
        """Load the classifier in a worker, then predict the displayed image."""
        self._push_settings()
        self._on_classifier_text()
        image = self._image()

        def make():
            load = self.session.load_classifier_job()
            if image is None:
                return load
            predict = self.session.predict_job(image)
            return _chain(load, predict)

        return self.runner.start("Load classifier", make)

    def explain(self, *, all_slices: bool = False) -> bool:
        """Grad-CAM of the displayed slice (or every slice) in a worker."""
        self._push_settings()
        image = self._image()
        return self.runner.start(
            "Explain all slices" if all_slices else "Explain",
            lambda: self.session.explain_job(image, all_slices=all_slices),
        )

    def explain_all(self) -> bool:
        """Grad-CAM of every slice of a volume."""
        return self.explain(all_slices=True)

    def segment(self, *, all_slices: bool = False) -> bool:
        """SAM regions from the chosen prompts, and their metrics, in a worker."""
        self._push_settings()
        kind = self.prompt_kind.value
        image = self._image()
        kwargs: dict[str, Any] = {"prompt": kind, "all_slices": all_slices}
        if kind == "boxes":
            kwargs["shapes"] = self.shapes.value
        elif kind == "points":
            kwargs["points_layer"] = self.points.value
        elif kind == "text":
            kwargs["text"] = self.text.value
        if self.saliency.value is not None:
            kwargs["saliency"] = self.saliency.value
        return self.runner.start(
            "Segment all slices" if all_slices else "Segment",
            lambda: self.session.segment_job(image, **kwargs),
        )

    def segment_all(self) -> bool:
        """SAM on every slice of a volume."""
        return self.segment(all_slices=True)

    def segment_volume(self) -> bool:
        """The box on the displayed slice carried through the volume (SAM 2), in a worker."""
        self._push_settings()
        image = self._image()
        kwargs: dict[str, Any] = {"shapes": self.shapes.value}
        if self.saliency.value is not None:
            kwargs["saliency"] = self.saliency.value
        return self.runner.start(
            "Segment volume from this box",
            lambda: self.session.segment_volume_job(image, **kwargs),
        )

    def cancel(self) -> None:
        """Stop the running job at its next step."""
        self.runner.cancel()

    def add_prompt_layers(self) -> None:
        """Add point and box prompt layers for the chosen image: each built, inserted and shown
        a turn of the event loop apart (each new layer costs napari 0.2-0.4 s of the GUI
        thread: both at once froze the viewer)."""
        image = self._image()
        later = self.runner.later
        try:
            points = self.session.add_point_prompts(image, later)
        except Exception as exc:
            show_error(f"Add prompt layers: {exc}")
            return
        later(lambda: self._choose_layer(self.points, points))
        later(lambda: self._add_box_prompts(image))

    def _add_box_prompts(self, image) -> None:
        if image not in self.viewer.layers:  # removed in between: nothing to draw on
            return
        later = self.runner.later
        shapes = self.session.add_box_prompts(image, later)
        later(lambda: self._choose_layer(self.shapes, shapes))
        later(
            lambda: show_info(
                "Draw boxes with the rectangle tool (R); in the points layer T flips polarity."
            )
        )

    def _choose_layer(self, combo, layer) -> None:
        if layer in self.viewer.layers:
            self.reset_choices()
            combo.value = layer

    def show_table(self) -> None:
        """Dock napari's features table widget below the canvas and select the regions layers
        of the image (all of them: the table then lists every region, with its layer).

        The first layer is selected now, the others and the table a turn of the event loop
        apart: napari builds the layer controls of each newly selected layer (0.1 s each)."""
        regions = []
        try:
            regions = self.session.regions_layers(self._image())
        except Exception as exc:
            logger.debug("no regions layer: %s", exc)
        filled = [layer for layer in regions if len(layer.features)] or regions
        if not filled:
            open_features_table(self.viewer)
            show_info("No regions yet: segment first, the table then lists them with metrics.")
            return
        selection = self.viewer.layers.selection
        selection.active = filled[0]
        steps = [
            lambda layer=layer: layer in self.viewer.layers and selection.add(layer)
            for layer in filled[1:]
        ]
        steps.append(lambda: open_features_table(self.viewer))
        for step in steps:
            self.runner.later(step)

    def export_csv(self, path: str | None = None) -> list[str]:
        """Write the regions table to CSV (asks for a file name without ``path``)."""
        try:
            self.session.metrics(self._image())  # nothing to export: say so before asking
        except Exception as exc:
            show_error(f"Export CSV: {exc}")
            return []
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export metrics", "", "CSV (*.csv)")
            if not path:
                return []
        try:
            written = self.session.export_metrics(path, self._image())
        except Exception as exc:
            show_error(f"Export CSV: {exc}")
            return []
        show_info(f"Metrics written to {written[0]}")
        return written

    def save_session(self, path: str | None = None) -> list[str]:
        """Save all layers as a session folder (asks for a folder name without ``path``)."""
        if not len(self.viewer.layers):
            show_error("Save session: the viewer has no layers to save; open an image first.")
            return []
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Save session (a new folder)", "", "SAM-CAM session (*.samcam)"
            )
            if not path:
                return []
        try:
            written = self.session.save(path)
        except Exception as exc:
            show_error(f"Save session: {exc}")
            return []
        show_info(f"Session saved to {Path(written[0])}")
        return written

    def showEvent(self, event) -> None:
        if self.built:
            self._fit_width()
        super().showEvent(event)

    def _fit_width(self) -> None:
        # wide enough for every row (the scroll area never scrolls sideways); known once shown
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        needed = self._content.minimumSizeHint().width() + bar + 4
        self.setMinimumWidth(max(300, needed))

    def closeEvent(self, event) -> None:
        if self.runner.running:
            self.runner.cancel()
            self.runner.wait(10000)
        super().closeEvent(event)


#: Share of the window's height given to the features table docked below the canvas.
TABLE_HEIGHT = 0.3


def _first_sentence(text: str, limit: int = 90) -> str:
    """The first sentence of a message, cut to ``limit`` characters (the rest is a tooltip)."""
    sentence = text.split(". ")[0].strip()
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def open_features_table(viewer):
    """Dock napari's built-in features table widget (once) below the canvas and return it.

    napari docks it on the right, under the SAM-CAM widget, which it squeezes; below the canvas
    it has the window's width for the metric columns.
    """
    try:
        dock, widget = viewer.window.add_plugin_dock_widget("napari", "Features table widget")
    except Exception as exc:  # an older napari without the widget
        show_warning(f"napari's features table widget is not available ({exc}).")
        return None
    window = dock.parentWidget()
    if isinstance(window, QMainWindow):
        if window.dockWidgetArea(dock) != Qt.DockWidgetArea.BottomDockWidgetArea:
            window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
            height = int(window.height() * TABLE_HEIGHT)
            window.resizeDocks([dock], [height], Qt.Orientation.Vertical)
        dock.show()
        dock.raise_()
    return widget


def _chain(*jobs):
    """Run jobs one after the other as one job; the last one's apply is returned, after the
    earlier ones' applies were chained in front of it."""

    def run():
        applies = []
        for job in jobs:
            apply = yield from job
            applies.append(apply)

        def apply_all():
            value = None
            for apply in applies:
                value = apply() if callable(apply) else apply
            return value

        return apply_all

    return run()
