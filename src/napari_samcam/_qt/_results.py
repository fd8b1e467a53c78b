"""The evaluation results dock widget: a sortable table of scores; a click shows the item.

One row per item x classifier x CAM method x region source, one column per metric; clicking a
header sorts by it. Clicking a row replaces the shown evaluation item with that row's item
(:func:`~napari_samcam._napari._evaluation.item_layers`), shows that row's saliency map and
region only, and selects the region layer. The table follows an evaluation opened by the
reader, or one chosen with *Open evaluation...*.

A shown item gets a box (Shapes) and a click (Points) prompt layer. *Re-segment* prompts SAM
with them (off the GUI thread), replaces the clicked row's region and re-scores it against the
shown saliency maps (:mod:`~napari_samcam.evaluation.corrections`): the Labels layer's features
and the table's rows are updated and marked edited. *Save as ground truth...* writes the region
as a PNG mask and a row of a CSV manifest that ``samcam evaluate`` reads.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._napari._evaluation import (
    EVALUATION_KEY,
    PROMPT_KINDS,
    add_item_prompts,
    clear_prompts,
    item_layers,
    item_prompt_steps,
    item_prompts,
)
from .._napari._layer_update import in_place_steps
from ..errors import InputError, SamcamError
from ._staged import warm_up_soon

#: Columns of the table before the metrics.
KEY_COLUMNS = ("item", "image", "classifier", "cam_method", "region_source")
#: The widest a text column gets (longer names are elided; the tooltip has them whole).
TEXT_COLUMN_WIDTH = 120
#: The largest share of the window's width a side dock takes to show every column; a wider
#: table moves below the canvas and takes :data:`BOTTOM_DOCK_SHARE` of the window's height.
MAX_DOCK_SHARE = 0.5
BOTTOM_DOCK_SHARE = 0.45


class _Cell(QTableWidgetItem):
    """A read-only cell that sorts by its number (``SORT_ROLE``), else by its text.

    Undefined scores (NaN) sort last in either direction: a sorted column starts with the
    worst (or best) defined scores, not with the rows that have none.
    """

    def __lt__(self, other) -> bool:
        mine, theirs = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if mine is None or theirs is None:
            return super().__lt__(other)
        mine_nan, theirs_nan = math.isnan(mine), math.isnan(theirs)
        if mine_nan or theirs_nan:
            # Qt shows a descending sort as the ascending order reversed
            ascending = self._order() == Qt.SortOrder.AscendingOrder
            return (not mine_nan and theirs_nan) if ascending else (mine_nan and not theirs_nan)
        return mine < theirs

    def _order(self):
        table = self.tableWidget()
        if table is None:
            return Qt.SortOrder.AscendingOrder
        return table.horizontalHeader().sortIndicatorOrder()


def _layer_key(kind: str, metadata: dict) -> tuple:
    """Which shown layer may take an item's layer data: the same kind of result and source
    (a layer that the shown item has no data for keeps what it showed as ``"was"``)."""
    tag = metadata.get(EVALUATION_KEY, {})
    return (
        kind,
        tag.get("was", tag.get("kind")),
        tag.get("region_source"),
        tag.get("classifier"),
        tag.get("cam_method"),
    )


def _retire(layer, item: int) -> None:
    """Empty and hide a layer that item ``item`` has nothing for; a later item may reuse it."""
    tag = layer.metadata[EVALUATION_KEY]
    layer.data = np.zeros_like(layer.data)
    if "features" in dir(layer):
        layer.features = layer.features.iloc[:0]
    was = tag.get("was", tag["kind"])
    layer.metadata = {
        **layer.metadata,
        EVALUATION_KEY: dict(tag, kind="absent", was=was, item=int(item)),
    }
    layer.visible = False
    if not layer.name.endswith(ABSENT_SUFFIX):
        layer.name = layer.name + ABSENT_SUFFIX


#: Appended to the name of a layer the shown item has nothing for.
ABSENT_SUFFIX = " (none in this item)"
#: How many steps adding an item's prompt layers takes (see ``item_prompt_steps``).
PROMPT_STEP_COUNT = 5
#: Milliseconds between the steps that show an item (one layer each).
STEP_PAUSE_MS = 30
#: The role holding a cell's number for sorting.
SORT_ROLE = Qt.ItemDataRole.UserRole
#: The role of a row's first cell that is true once the row's region was corrected.
EDITED_ROLE = Qt.ItemDataRole.UserRole + 1


def _cell(value, reason: str = "") -> QTableWidgetItem:
    """A table cell showing ``value``; a NaN score's tooltip says ``reason`` when known."""
    cell = _Cell()
    if isinstance(value, str):
        cell.setText(value)
        cell.setToolTip(value)
    else:
        number = float(value)
        cell.setData(SORT_ROLE, number)
        if math.isnan(number):
            cell.setText("–")
            cell.setToolTip(f"undefined: {reason}" if reason else "undefined for this item")
        elif number.is_integer() and abs(number) < 2**53:
            cell.setText(str(int(number)))
        else:
            cell.setText(f"{number:.3f}")
            cell.setToolTip(repr(number))
    cell.setFlags(cell.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return cell


class ResultsWidget(QWidget):
    """Scores of an evaluation output folder; a row click shows its item in the viewer."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        warm_up_soon(napari_viewer)
        self.viewer = napari_viewer
        self.stored = None
        self.shown_item: int | None = None
        #: The clicked row's key (see :meth:`row_key`) and region layer.
        self.focused: dict | None = None
        self.region_layer = None
        #: The SAM segmenter used to re-segment; ``None``: the evaluation's, loaded on first use.
        self.segmenter = None
        self.worker = None
        self._pending: object | None = None  # the newest read's token
        self._summary = "No evaluation open."
        self._readers: list = []  # running read workers (kept alive until they finish)
        self.open_button = QPushButton("Open evaluation...")
        self.open_button.setToolTip("Choose a folder written by `samcam evaluate`.")
        self.open_button.clicked.connect(self._choose_folder)
        self.status = QLabel("No evaluation open.")
        self.status.setWordWrap(True)
        self.table = QTableWidget()
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.cellClicked.connect(self._on_cell_clicked)
        self.resegment_button = QPushButton("Re-segment")
        self.resegment_button.setToolTip(
            "Segment the clicked row's region again from the boxes and clicks drawn on the item, "
            "and re-score it."
        )
        self.resegment_button.clicked.connect(self._resegment)
        self.save_button = QPushButton("Save as ground truth...")
        self.save_button.setToolTip(
            "Write the clicked row's region as a PNG mask and a row of a CSV manifest for a "
            "later `samcam evaluate`."
        )
        self.save_button.clicked.connect(self._save_ground_truth)
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addStretch()
        bottom = QHBoxLayout()
        bottom.addWidget(self.resegment_button)
        bottom.addWidget(self.save_button)
        bottom.addStretch()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addLayout(bottom)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        for layer in self.viewer.layers:
            self._follow(layer)

    # ---------------------------------------------------------------- opening
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an evaluation output folder")
        if folder:
            self.open_folder(folder)

    def _on_layer_inserted(self, event) -> None:
        self._follow(event.value)

    def _follow(self, layer) -> None:
        """Load the evaluation a layer (from the reader) belongs to, unless one is loaded."""
        tag = layer.metadata.get(EVALUATION_KEY) if hasattr(layer, "metadata") else None
        if tag and self.stored is None and self._pending is None:
            self.shown_item = int(tag["item"])
            self.open_folder(tag["folder"], show=False)

    @property
    def loading(self) -> bool:
        """Whether an evaluation or an item is being read (off the GUI thread)."""
        return self._pending is not None

    def _read(self, what: str, read, done) -> None:
        """Run ``read()`` in a worker; on the GUI thread ``done(result)`` returns the steps
        that show it, run one per turn of the event loop (so that the viewer never waits for
        more than one layer's update). A later request supersedes an earlier one, whose result
        or remaining steps are dropped."""
        from napari.qt.threading import create_worker

        token = object()
        self._pending = token

        def returned(result):
            if self._pending is token:
                self._run_steps(token, list(done(result) or []), what)

        def errored(exc):
            if self._pending is token:
                self._pending = None
                self.status.setText(f"{what} failed.")
                show_error(f"{what}: {exc}")

        self.status.setText(f"{what}…")
        worker = create_worker(read, _progress={"desc": what})
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        self._readers.append(worker)
        worker.finished.connect(lambda: self._readers.remove(worker))
        worker.start()

    def _run_steps(self, token, steps: list, what: str) -> None:
        from qtpy.QtCore import QTimer

        if self._pending is not token:
            return
        if not steps:
            self._pending = None
            self.status.setText(self._summary)
            return
        try:
            steps.pop(0)()
        except Exception as exc:
            self._pending = None
            show_error(f"{what}: {exc}")
            return
        # a pause between steps lets the canvas draw (and compile the new layer's shaders) in
        # between, instead of once for all the new layers at the end
        QTimer.singleShot(STEP_PAUSE_MS, lambda: self._run_steps(token, steps, what))

    def open_folder(self, folder, *, show: bool = True) -> None:
        """Fill the table from ``folder`` and show its lowest-IoU item (when ``show``); the
        folder is read off the GUI thread."""
        from ..evaluation.stored import open_evaluation

        def read():
            stored = open_evaluation(folder)
            drawable = stored.scores["item"].isin(list(stored.arrays))
            scores, reasons = stored.scores[drawable], stored.nan_reasons[drawable]
            first = stored.items()[0] if show and len(stored.arrays) else None
            layers = None if first is None else item_layers(stored, first)
            return stored, scores, reasons, first, layers

        def done(result):
            stored, scores, reasons, first, layers = result
            self.stored = stored
            self._fill_table(folder, scores, reasons)
            return [] if first is None else self._item_steps(first, layers)

        self._read(f"Opening {Path(folder).name}", read, done)

    def _fill_table(self, folder, scores, reasons=None) -> None:
        """One row per score row; ``reasons`` (same rows and columns, optional) holds why a
        NaN score is undefined, shown in its cell's tooltip."""
        metrics = [c for c in scores.columns if c not in (*KEY_COLUMNS, "image_key")]
        columns = [*KEY_COLUMNS, *metrics]
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(columns)
        self.table.setRowCount(len(scores))
        image_column = columns.index("image")
        why = (scores[[]] if reasons is None else reasons).reindex(columns=columns, fill_value="")
        records = zip(
            scores[columns].itertuples(index=False), why.itertuples(index=False), strict=True
        )
        for row, (record, record_why) in enumerate(records):
            for column, (value, reason) in enumerate(zip(record, record_why, strict=True)):
                cell = _cell(value, "" if column < len(KEY_COLUMNS) else str(reason))
                if column == image_column:  # the file name; the tooltip has the whole path
                    cell.setText(Path(str(value)).name)
                self.table.setItem(row, column, cell)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self._fit_width()
        self._summary = (
            f"{Path(folder).name}: {scores['item'].nunique()} items, {len(scores)} rows. "
            "Click a header to sort, a row to show its item."
        )
        self.status.setText(self._summary)

    def _fit_width(self) -> None:
        """Cap the text columns and widen the dock so that every metric column shows."""
        table = self.table
        for column in range(min(len(KEY_COLUMNS), table.columnCount())):
            table.setColumnWidth(column, min(table.columnWidth(column), TEXT_COLUMN_WIDTH))
        needed = table.verticalHeader().width() + table.verticalScrollBar().sizeHint().width()
        needed += sum(table.columnWidth(c) for c in range(table.columnCount())) + 24
        self._wanted_width = needed
        self.updateGeometry()
        dock, window = self.parentWidget(), self.window()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        if not isinstance(window, QMainWindow) or dock is None or dock.width() >= needed:
            return
        if needed <= window.width() * MAX_DOCK_SHARE:
            window.resizeDocks([dock], [needed], Qt.Orientation.Horizontal)
        elif window.dockWidgetArea(dock) != Qt.DockWidgetArea.BottomDockWidgetArea:
            # too wide for a side dock next to the canvas: below it, with the window's width
            window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
            height = int(window.height() * BOTTOM_DOCK_SHARE)
            window.resizeDocks([dock], [height], Qt.Orientation.Vertical)

    def sizeHint(self):
        hint = super().sizeHint()
        wanted = getattr(self, "_wanted_width", 0)
        if wanted > hint.width():
            hint.setWidth(wanted)
        return hint

    # ---------------------------------------------------------------- showing
    def row_key(self, row: int) -> dict:
        """The row's item, classifier, cam_method and region_source as shown in the table."""
        headers = [self.table.horizontalHeaderItem(c).text() for c in range(len(KEY_COLUMNS))]
        cells = [self.table.item(row, c).text() for c in range(len(KEY_COLUMNS))]
        key = dict(zip(headers, cells, strict=True))
        key["item"] = int(key["item"])
        return key

    def _on_cell_clicked(self, row: int, _column: int) -> None:
        key = self.row_key(row)
        self.show_item(int(key["item"]), then=lambda: self._focus(key))

    def _evaluation_layers(self) -> list:
        folder = str(self.stored.folder) if self.stored is not None else None
        return [
            layer
            for layer in self.viewer.layers
            if layer.metadata.get(EVALUATION_KEY, {}).get("folder") == folder
        ]

    def show_item(self, item: int, then=None) -> None:
        """Show ``item`` in the evaluation's layers (its arrays are read off the GUI thread,
        its layers updated in place), then call ``then()``."""
        if self.stored is None:
            return
        if item == self.shown_item and self._evaluation_layers() and self._pending is None:
            self._add_prompt_layers()
            if then is not None:
                then()
            return
        stored = self.stored

        def done(layers):
            return self._item_steps(item, layers) + ([then] if then is not None else [])

        self._read(f"Reading item {item}", lambda: item_layers(stored, item), done)

    def _item_steps(self, item: int, layers) -> list:
        """Steps that put an item's layer data into the shown item's layers (in place)."""
        shown = [
            lay
            for lay in self._evaluation_layers()
            if lay.metadata[EVALUATION_KEY]["kind"] not in PROMPT_KINDS
        ]
        steps, _ = in_place_steps(
            self.viewer, shown, layers, _layer_key, lambda lay: _retire(lay, item)
        )

        image = self._layer_of("image")
        before = None if image is None else tuple(image.data.shape)

        def finish():
            image = self._layer_of("image")
            if image is not None and tuple(image.data.shape) != before:
                self.viewer.reset_view()  # a new item of another size is shown whole
            for prompts in (self._layer_of(kind) for kind in PROMPT_KINDS):
                if prompts is not None:
                    clear_prompts(prompts, item)
            self.shown_item = item
            self.focused = self.region_layer = None

        return [*steps, finish, *self._prompt_steps()]

    def _prompt_steps(self) -> list:
        """Steps that add the item's prompt layers unless they are there, one layer each."""
        missing = {}

        def step(index: int) -> None:
            if index == 0:
                missing["image"] = (
                    self._layer_of("image") if self._layer_of(PROMPT_KINDS[0]) is None else None
                )
            if missing.get("image") is not None:
                item_prompt_steps(self.viewer, missing["image"])[index]()

        return [lambda index=index: step(index) for index in range(PROMPT_STEP_COUNT)]

    def _add_prompt_layers(self) -> None:
        if self._layer_of(PROMPT_KINDS[0]) is None:
            add_item_prompts(self.viewer, self._layer_of("image"))

    def _layer_of(self, kind: str):
        return next(
            (
                lay
                for lay in self._evaluation_layers()
                if lay.metadata[EVALUATION_KEY]["kind"] == kind
            ),
            None,
        )

    def _focus(self, key: dict) -> None:
        """Show only the row's saliency map and region; select the region layer."""
        chosen = None
        for layer in self._evaluation_layers():
            tag = layer.metadata[EVALUATION_KEY]
            if tag["kind"] == "saliency":
                layer.visible = (tag["classifier"], tag["cam_method"]) == (
                    key["classifier"],
                    key["cam_method"],
                )
            elif tag["kind"] == "region":
                mine = tag["region_source"] == key["region_source"] and (
                    not tag["classifier"]
                    or (tag["classifier"], tag["cam_method"])
                    == (key["classifier"], key["cam_method"])
                )
                layer.visible = mine
                if mine:
                    chosen = layer
        if chosen is not None:
            self.viewer.layers.selection.active = chosen
        self.focused, self.region_layer = key, chosen

    # ---------------------------------------------------------------- correcting
    def _resegment(self) -> None:
        """Prompt SAM with the drawn boxes and clicks; the result replaces the focused region."""
        from napari.qt.threading import create_worker

        from ..evaluation.corrections import evaluation_segmenter, rescore_item, resegment

        if self.worker is not None:
            return
        try:
            layer = self._focused_region()
            image_layer = self._layer_of("image")
            shapes, points = (self._layer_of(kind) for kind in PROMPT_KINDS)
            if shapes is None or points is None:
                shapes, points = add_item_prompts(self.viewer, image_layer)
            prompts = item_prompts(image_layer, shapes, points)
            if not len(prompts["boxes"]) and not len(prompts["points"]):
                raise InputError(
                    f"no prompt to segment from: draw a box in {shapes.name!r} or click in "
                    f"{points.name!r} first."
                )
        except SamcamError as exc:
            show_error(str(exc))
            return
        config = self.stored.config
        record = layer.metadata[EVALUATION_KEY]
        image, window = image_layer.data, image_layer.metadata[EVALUATION_KEY].get("window")
        saliencies = [
            (lay.metadata[EVALUATION_KEY], lay.data)
            for lay in self._evaluation_layers()
            if lay.metadata[EVALUATION_KEY]["kind"] == "saliency"
        ]
        segmenter = self.segmenter
        context = config.get("config", config).get("context")

        def job():
            nonlocal segmenter
            if segmenter is None:
                segmenter = evaluation_segmenter(config)
            mask = resegment(segmenter, image, context=context, window=window, **prompts)
            return segmenter, mask, rescore_item(config, record, mask, saliencies)

        self.worker = create_worker(job, _progress={"desc": "Re-segmenting"})
        self.worker.returned.connect(lambda out: self._apply(layer, *out))
        self.worker.errored.connect(lambda exc: show_error(f"Re-segmenting failed: {exc}"))
        self.worker.finished.connect(self._on_worker_finished)
        self.resegment_button.setEnabled(False)
        self.worker.start()

    def _on_worker_finished(self) -> None:
        self.worker = None
        self.resegment_button.setEnabled(True)

    def _focused_region(self):
        if self.region_layer is None or self.region_layer not in self.viewer.layers:
            raise InputError("click a row of the table first: its region is the one corrected.")
        return self.region_layer

    def _apply(self, layer, segmenter, mask, scores) -> None:
        """Write a corrected region and its scores into its Labels layer and the table."""
        self.segmenter = segmenter
        layer.data = mask.astype(layer.data.dtype)
        features = layer.features.copy()
        features["edited"] = False
        for _, row in scores.iterrows():
            mine = (features["classifier"] == row["classifier"]) & (
                features["cam_method"] == row["cam_method"]
            )
            for metric, value in row.items():
                if metric in features.columns and metric not in ("classifier", "cam_method"):
                    features.loc[mine, metric] = value
            features.loc[mine, "edited"] = True
        features["region_area"] = int(mask.sum())
        layer.features = features
        self._update_rows(layer.metadata[EVALUATION_KEY], scores)

    def _update_rows(self, record: dict, scores) -> None:
        headers = [
            self.table.horizontalHeaderItem(c).text() for c in range(self.table.columnCount())
        ]
        self.table.setSortingEnabled(False)
        for row in range(self.table.rowCount()):
            key = self.row_key(row)
            if key["item"] != record["item"] or key["region_source"] != record["region_source"]:
                continue
            match = scores[
                (scores["classifier"] == key["classifier"])
                & (scores["cam_method"] == key["cam_method"])
            ]
            if not len(match):
                continue
            reasons = match["nan_reasons"].iloc[0] if "nan_reasons" in match else {}
            for column, name in enumerate(headers):
                if name in match.columns and name not in KEY_COLUMNS:
                    value = float(match[name].iloc[0])
                    self.table.setItem(row, column, _cell(value, reasons.get(name, "")))
            first = self.table.item(row, 0)
            first.setData(EDITED_ROLE, True)
            first.setToolTip("re-segmented: scores of the corrected region (not saved)")
            for column in range(self.table.columnCount()):
                self.table.item(row, column).setBackground(QBrush(QColor(255, 200, 0, 60)))
        self.table.setSortingEnabled(True)

    def _save_ground_truth(self) -> None:
        """Ask for a PNG path; write the focused region there and add it to a CSV manifest."""
        from ..evaluation.corrections import save_ground_truth

        try:
            layer = self._focused_region()
        except SamcamError as exc:
            show_error(str(exc))
            return
        tag = layer.metadata[EVALUATION_KEY]
        stored = self.stored.job_arrays(tag["item"])
        info = stored.item_info(tag["item"])
        image_path = stored.image_path
        suggested = image_path.with_name(f"{image_path.stem}-item{tag['item']}-mask.png")
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the region as a ground-truth mask", str(suggested), "PNG image (*.png)"
        )
        if not path:
            return
        try:
            manifest = save_ground_truth(
                layer.data != 0, path, image_path, cls=str(info.get("class") or "")
            )
        except (SamcamError, OSError) as exc:
            show_error(f"Could not save the ground truth: {exc}")
            return
        show_info(f"Saved {Path(path).name}; manifest {str(manifest)!r} names it.")
