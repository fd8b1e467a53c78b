"""Write the settings table of docs/evaluation.md from the declaration of the settings.

Usage::

    python scripts/settings_table.py          # rewrite the table in docs/evaluation.md
    python scripts/settings_table.py --check  # exit 1 when the table is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_samcam.evaluation_settings import settings_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"
BEGIN = "<!-- settings table: written by scripts/settings_table.py -->"
END = "<!-- end of settings table -->"


def with_table(text: str) -> str:
    """``text`` with the block between the markers replaced by the current table."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return f"{text[:start]}\n{settings_markdown()}\n{text[end:]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    updated = with_table(text)
    if args.check:
        return int(updated != text)
    if updated != text:
        DOC.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
