"""Run a command with a cap on its memory: ``python scripts/memory_limit.py 4G -- CMD ARGS...``.

The cap is ``RLIMIT_DATA`` (the process's heap and anonymous mappings, which is where numpy and
torch allocate), inherited by every child the command starts: an allocation past it fails with
``MemoryError`` instead of taking the machine's memory. ``RLIMIT_AS`` is not used: CUDA builds of
torch reserve many gigabytes of address space when imported and abort under it.

Examples::

    python scripts/memory_limit.py 4G -- python -m pytest
    python scripts/memory_limit.py 3G -- python my_fuzz_driver.py
"""

from __future__ import annotations

import os
import resource
import sys

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """``"3G"`` -> bytes (suffixes K, M, G; none: bytes)."""
    text = text.strip().upper().removesuffix("B")
    factor = _UNITS.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in _UNITS else text
    return int(float(number) * factor)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit(__doc__)
    limit = parse_size(argv[0])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    command = argv[2:]
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
