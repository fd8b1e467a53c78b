"""The evaluation results dock widget: a sortable table of scores; a click shows the item.

One row per item x classifier x CAM method x region source, one column per metric; clicking a
header sorts by it. Clicking a row replaces the shown evaluation item with that row's item
(:func:`~napari_samcam._napari._evaluation.item_layers`), shows that row's saliency map and
region only, and selects the region layer. The table follows an evaluation opened by the
reader, or one chosen with *Open evaluation...*.
"""

from __future__ import annotations

import math
from pathlib import Path

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._napari._evaluation import EVALUATION_KEY, item_layers
from ..errors import SamcamError

#: Columns of the table before the metrics.
KEY_COLUMNS = ("item", "image", "classifier", "cam_method", "region_source")


class _Cell(QTableWidgetItem):
    """A read-only cell that sorts by its number (``UserRole``; NaN first), else by text."""

    def __lt__(self, other) -> bool:
        mine, theirs = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if mine is not None and theirs is not None:
            return mine < theirs
        return super().__lt__(other)


#: The role holding a cell's number for sorting.
SORT_ROLE = Qt.ItemDataRole.UserRole


def _cell(value) -> QTableWidgetItem:
    cell = _Cell()
    if isinstance(value, str):
        cell.setText(value)
    else:
        number = float(value)
        cell.setData(SORT_ROLE, -math.inf if math.isnan(number) else number)
        if math.isnan(number):
            cell.setText("–")
            cell.setToolTip("undefined for this item")
        elif number.is_integer() and abs(number) < 2**53:
            cell.setText(str(int(number)))
        else:
            cell.setText(f"{number:.4f}")
    cell.setFlags(cell.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return cell


class ResultsWidget(QWidget):
    """Scores of an evaluation output folder; a row click shows its item in the viewer."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.stored = None
        self.shown_item: int | None = None
        self.open_button = QPushButton("Open evaluation...")
        self.open_button.setToolTip("Choose a folder written by `samcam evaluate`.")
        self.open_button.clicked.connect(self._choose_folder)
        self.status = QLabel("No evaluation open.")
        self.status.setWordWrap(True)
        self.table = QTableWidget()
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.cellClicked.connect(self._on_cell_clicked)
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addStretch()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
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
        if tag and self.stored is None:
            self.open_folder(tag["folder"], show=False)
            self.shown_item = int(tag["item"])

    def open_folder(self, folder, *, show: bool = True) -> None:
        """Fill the table from ``folder``; show its lowest-IoU item when ``show``."""
        from ..evaluate.stored import open_evaluation

        try:
            stored = open_evaluation(folder)
        except SamcamError as exc:
            show_error(str(exc))
            return
        self.stored = stored
        scores = stored.scores
        scores = scores[scores["item"].isin(list(stored.arrays))]
        metrics = [c for c in scores.columns if c not in (*KEY_COLUMNS, "image_key")]
        columns = [*KEY_COLUMNS, *metrics]
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(columns)
        self.table.setRowCount(len(scores))
        for row, record in enumerate(scores[columns].itertuples(index=False)):
            for column, value in enumerate(record):
                self.table.setItem(row, column, _cell(value))
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self.status.setText(
            f"{Path(folder).name}: {scores['item'].nunique()} items, {len(scores)} rows. "
            "Click a header to sort, a row to show its item."
        )
        if show and len(stored.arrays):
            self.show_item(stored.items()[0])

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
        try:
            self.show_item(int(key["item"]))
        except SamcamError as exc:
            show_error(str(exc))
            return
        self._focus(key)

    def _evaluation_layers(self) -> list:
        folder = str(self.stored.folder) if self.stored is not None else None
        return [
            layer
            for layer in self.viewer.layers
            if layer.metadata.get(EVALUATION_KEY, {}).get("folder") == folder
        ]

    def show_item(self, item: int) -> None:
        """Replace the shown evaluation item's layers with ``item``'s."""
        from napari.layers import Layer

        if self.stored is None:
            return
        if item == self.shown_item and self._evaluation_layers():
            return
        layers = item_layers(self.stored, item)
        for layer in self._evaluation_layers():
            self.viewer.layers.remove(layer)
        for data, kwargs, kind in layers:
            self.viewer.add_layer(Layer.create(data, kwargs, kind))
        self.shown_item = item

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
