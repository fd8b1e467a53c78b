"""Running a hostile file's loader in a child process, measuring what it cost.

A child runs a short script and reports one JSON line: what was raised, its resident memory
before the call and its peak during it, so a test can bound what a file made the loader
allocate. On Linux the peak (``VmHWM``) is reset to the current size just before the call
(``/proc/self/clear_refs``), so memory the imports used and freed cannot hide the call's own
peak; elsewhere the lifetime peak (``ru_maxrss``) is used. ``limit`` caps the child's data segment
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
REFUSAL_BYTES = 64 << 20

_PRELUDE = textwrap.dedent(
    """
    import json, resource, sys

    def _status(key):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024

    def _peak():
        try:  # Linux: the high-water mark, which _restart_peak resets
            return _status("VmHWM:")
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _restart_peak():
        # reset the high-water mark to the current size (Linux), so that the call's own peak
        # is measured, not the imports' before it; elsewhere the lifetime peak is used
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            return _status("VmRSS:")
        except OSError:
            return _peak()

    def report(**fields):
        fields["peak"] = _peak()
        print("RESULT " + json.dumps(fields, default=str), flush=True)

    def attempt(call):
        from napari_samcam.errors import SamcamError

        start = _restart_peak()
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
    grown = result["peak"] - result["start"]
    print(f"refusal of {Path(path).name}: peak memory grew by {grown / 2**20:.1f} MiB")
    assert grown < REFUSAL_BYTES, result
    return result["message"]
