"""CSV cells that a spreadsheet would run as a formula, neutralised.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by
spreadsheet programs (Excel, LibreOffice, Google Sheets) as a formula, which can fetch URLs or
run commands when the file is opened. Ids, class names and paths come from other people's
manifests, so every text cell napari-samcam writes to a CSV file that starts so gets a leading
apostrophe, the way spreadsheets mark text: ``=HYPERLINK(...)`` is written ``'=HYPERLINK(...)``
and shown as the text it is. Numbers (``-0.5``) are numeric columns and are written as numbers.
The manifest reader removes that apostrophe again, so a CSV napari-samcam wrote reads back as the
values it was given.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FORMULA_STARTS", "neutralise_cell", "neutralised_frame", "restore_cell"]

#: First characters that make a spreadsheet cell a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading apostrophe when it is text that starts like a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def restore_cell(text: str) -> str:
    """The inverse of :func:`neutralise_cell` for a cell read back from a CSV file."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


def neutralised_frame(frame):
    """A copy of a pandas DataFrame whose text cells are neutralised (numbers untouched)."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_object_dtype(out[column]) or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(neutralise_cell)
    return out
