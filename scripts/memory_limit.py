"""Run a command with a cap on its memory: ``python scripts/memory_limit.py 4G -- CMD ARGS...``.

The cap is ``RLIMIT_DATA`` (the process's heap and anonymous mappings, which is where numpy and
torch allocate), inherited by every child the command starts: an allocation past it fails with
``MemoryError`` instead of taking the machine's memory. ``RLIMIT_AS`` is not used: CUDA builds of
torch reserve many gigabytes of address space when imported and abort under it.

``RLIMIT_DATA`` counts address space mapped for writing, used or not, so the script sets two
allocator options (a value already in the environment is kept) that make it track the memory
actually in use:

- ``ARROW_DEFAULT_MEMORY_POOL=system``: pyarrow (which pandas uses for the evaluation's Parquet
  files) allocates with ``malloc``; its default, mimalloc, reserves 1 GiB the first time it is
  used, which would count against the cap while holding almost no memory.
- ``MALLOC_MMAP_THRESHOLD_=131072``: glibc gives every block of 128 KiB or more its own mapping
  and unmaps it when freed. Its default threshold grows with the blocks a program frees, after
  which freed blocks stay mapped (and counted) though their pages are released.

Together they lowered the mapped-for-writing size after the first 176 tests from 3.3 GiB to
2.0 GiB (1.6 GiB resident) in one pytest process.

Examples::

    python scripts/memory_limit.py 4G -- python -m pytest
    python scripts/memory_limit.py 3G -- python my_fuzz_driver.py
"""

from __future__ import annotations

import os
import resource
import sys

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

#: Environment the command gets unless it sets these itself (see the module docstring).
ALLOCATOR_SETTINGS = {"ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_MMAP_THRESHOLD_": "131072"}


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
    for name, value in ALLOCATOR_SETTINGS.items():
        os.environ.setdefault(name, value)
    command = argv[2:]
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
