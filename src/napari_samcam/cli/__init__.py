"""The ``samcam`` command line: thin subcommands over the Python API.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and ``run(args)``;
modules import heavy libraries (torch, models) inside ``run`` so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import SamcamError

#: Subcommand name -> module in this package.
SUBCOMMANDS = {
    "explain": "explain",
    "segment": "segment",
    "phantoms": "phantoms",
    "evaluate": "evaluate",
    "demo": "demo",
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (every subcommand's parser is one too)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``samcam`` argument parser."""
    parser = _Parser(
        prog="samcam",
        description="Grad-CAM saliency, Segment Anything regions and localization scores.",
    )
    parser.add_argument("--version", action="version", version=f"samcam {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(f".{module_name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(f"cli.{module_name}"):
                continue  # subcommand not available in this build
            raise
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samcam`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except SamcamError as exc:
        print(f"samcam {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"samcam {args.command}: interrupted; finished work was kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
