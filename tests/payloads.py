"""Running a hostile file's loader in a child process, measuring what it cost.

A child runs a short script and reports one JSON line: what was raised and its peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before and after the call, so a test can
bound what a file made the loader allocate. ``limit`` caps the child's data segment
(``RLIMIT_DATA``; ``RLIMIT_AS`` cannot be used with CUDA builds of torch, which reserve address
space at import): the unsafe way of reading a file then fails with a ``MemoryError`` instead of
taking the machine's memory, which shows that the allocation was requested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import napari_samcam

SRC = str(Path(napari_samcam.__file__).resolve().parents[1])

#: Peak memory a refusal may add to the child (its imports excluded).
REFUSAL_BYTES = 200 << 20

_PRELUDE = textwrap.dedent(
    """
    import json, resource, sys

    def _peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def report(**fields):
        fields["peak"] = _peak()
        print("RESULT " + json.dumps(fields, default=str), flush=True)

    def attempt(call):
        from napari_samcam.errors import SamcamError

        start = _peak()
        try:
            value = call()
        except SamcamError as exc:
            report(error=type(exc).__name__, message=str(exc), start=start)
        except BaseException as exc:
            report(error="raw " + type(exc).__name__, message=str(exc)[:500], start=start)
        else:
            report(error=None, value=repr(value)[:200], start=start)
    """
)


def run_child(code: str, *, cwd: Path, limit: int | None = None, timeout: float = 180) -> dict:
    """Run ``code`` (which calls ``attempt(...)`` or ``report(...)``) in a fresh interpreter.

    Returns the reported fields plus ``rc`` and ``stderr``; ``{"timed_out": True}`` when it did
    not finish within ``timeout`` seconds.
    """

    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=cap if limit else None,
        )
    except subprocess.TimeoutExpired:
        return {"timed_out": True}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1][7:]) if lines else {}
    return {**result, "rc": done.returncode, "stderr": done.stderr[-2000:]}


def assert_refused(result: dict, path: Path | str, *, kind: str | None = None) -> str:
    """The child raised one SamcamError naming ``path``, and the call stayed within
    :data:`REFUSAL_BYTES` of peak memory; returns the message."""
    assert not result.get("timed_out"), "the loader did not return"
    assert result.get("error"), result
    assert not result["error"].startswith("raw "), result
    if kind is not None:
        assert result["error"] == kind, result
    assert str(path) in result["message"], result["message"]
    assert result["peak"] - result["start"] < REFUSAL_BYTES, result
    return result["message"]
