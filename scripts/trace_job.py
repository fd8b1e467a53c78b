"""Follow one dataset job through the calls: which source files it enters, how often.

Builds a tiny dataset (phantoms, 96 px), a tiny random-weight classifier and a tiny random-weight
SAM (as the tests do), loads both once, then traces one call of the per-image job with
``sys.setprofile`` and prints:

* ``files``: distinct files of the package in which a function ran;
* ``cross-file calls``: calls from a function in one file into a function in another file;
* ``re-entries``: those of them into a file the job had already entered and left: how often
  the work goes back down to a level it has been at before;
* ``into images.py`` / ``into segment.py``: cross-file calls into those two files;
* ``validate_image``: calls of :func:`napari_samcam.images.validate_image`, and the files
  they were made from.

Usage::

    python scripts/trace_job.py [--sources ground-truth box sam-box sam-saliency-box]

The numbers are deterministic for a given code base (no timing).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

_FRESH = {-1, 0}  # a generator frame's f_lasti on its first call (later ones resume it)
_GENERATOR_FLAGS = 0x20 | 0x80 | 0x200  # generator, coroutine, async generator


def _evaluation_modules():
    """The dataset-evaluation package's job and runner modules (either package name)."""
    for package in ("napari_samcam.evaluation", "napari_samcam.evaluate"):
        try:
            jobs = importlib.import_module(f"{package}.jobs")
            runner = importlib.import_module(f"{package}.runner")
        except ImportError:
            continue
        return jobs, runner
    raise SystemExit("no dataset-evaluation package found")


def _job_runner(jobs):
    for name in ("run_image_job", "run_job"):
        if hasattr(jobs, name):
            return getattr(jobs, name)
    raise SystemExit("no per-image job function found")


class CallTrace:
    """Counts calls between the files under ``root`` while active."""

    def __init__(self, root: Path):
        self.root = str(root)
        self.files: set[str] = set()
        self.cross = 0
        self.reentries = 0
        self.into: collections.Counter = collections.Counter()
        self.validate_from: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()
        self._left: set[str] = set()

    def _name(self, filename: str) -> str | None:
        if not filename.startswith(self.root):
            return None
        return filename[len(self.root) + 1 :]

    def __call__(self, frame, event, _arg):
        if event != "call":
            return
        code = frame.f_code
        if code.co_flags & _GENERATOR_FLAGS and frame.f_lasti not in _FRESH:
            return
        callee = self._name(code.co_filename)
        if callee is None:
            return
        self.files.add(callee)
        caller_frame = frame.f_back
        # the nearest caller inside the package (library frames in between are skipped)
        while caller_frame is not None and self._name(caller_frame.f_code.co_filename) is None:
            caller_frame = caller_frame.f_back
        caller = None if caller_frame is None else self._name(caller_frame.f_code.co_filename)
        if code.co_name == "validate_image" and callee == "images.py":
            self.validate_from[caller or "-"] += 1
        if caller is None or caller == callee:
            return
        self.cross += 1
        self.into[callee] += 1
        self.calls[f"{caller} -> {callee}:{code.co_name}"] += 1
        if callee in self._left:
            self.reentries += 1
        self._left.add(caller)

    def report(self) -> dict:
        return {
            "files": len(self.files),
            "cross-file calls": self.cross,
            "re-entries": self.reentries,
            "into images.py": self.into["images.py"],
            "into segment.py": self.into["segment.py"],
            "validate_image": sum(self.validate_from.values()),
            "validate_image from": dict(sorted(self.validate_from.items())),
            "file list": sorted(self.files),
        }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sources", nargs="+", default=["ground-truth", "box", "sam-box", "sam-saliency-box"]
    )
    parser.add_argument(
        "--calls", action="store_true", help="also list every cross-file call and its count"
    )
    args = parser.parse_args(argv)

    import napari_samcam
    from conftest import TinyCNN, build_tiny_sam
    from napari_samcam.classifiers import load_classifier
    from napari_samcam.phantoms import write_phantoms

    jobs_module, runner = _evaluation_modules()
    run = _job_runner(jobs_module)
    classifier = load_classifier(
        TinyCNN.build(), class_names=["no lesion", "lesion"], input_size=(32, 32), device="cpu"
    )
    with tempfile.TemporaryDirectory() as folder:
        manifest = write_phantoms(2, folder, seed=3, size=96, positive_fraction=1.0)
        spec = runner.make_spec(
            classifiers=[classifier],
            region_sources=args.sources,
            sam=build_tiny_sam(),
            device="cpu",
        )
        items = importlib.import_module(runner.__package__ + ".manifests").load_manifest(manifest)
        job = jobs_module.make_jobs(items, spec)[0]
        for ref in spec.classifiers:  # models load once per process: not part of a job
            jobs_module.get_classifier(ref)
        if spec.sam is not None:
            jobs_module.get_segmenter(spec.sam)
        trace = CallTrace(Path(napari_samcam.__file__).parent)
        sys.setprofile(trace)
        try:
            result = run(job, spec)
        finally:
            sys.setprofile(None)
    report = trace.report()
    print(f"job: {job.image} ({len(job.items)} item(s)), sources {' '.join(args.sources)}")
    print(f"rows: {len(result.rows)}")
    for key, value in report.items():
        if key == "file list":
            print(f"{key}: {', '.join(value)}")
        else:
            print(f"{key}: {value}")
    if args.calls:
        for call, count in sorted(trace.calls.items()):
            print(f"  {count:3d}  {call}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
