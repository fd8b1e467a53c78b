"""Dataset evaluation: run the per-image jobs locally or on Dask, store, summarize, report.

Output folder layout (``out``):

``config.json``
    The configuration and the manifest's identity. It decides what a re-run does (below).
``parts/<key>.metrics.parquet``
    The rows of one image, written as soon as the image is done. ``key`` hashes the
    configuration, the image file's bytes and its annotations.
``metrics.parquet``, ``metrics.csv``
    The tidy table (:data:`~napari_samcam.evaluation.jobs.COLUMNS`), in manifest order.
``parts/<key>.arrays.npz``
    What is needed to draw the image's items again (saliency maps at the network's resolution,
    regions as RLE; :mod:`~napari_samcam.evaluation.arrays`), written before the metric rows
    unless ``keep_arrays=False``. The report's gallery and napari's reader use it.
``regions.parquet``, ``regions.csv``
    Every region's area and its Dice / IoU with the ground-truth mask
    (:data:`~napari_samcam.evaluation.jobs.REGION_COLUMNS`); ``parts/<key>.regions.parquet`` per
    image.
``summary.csv``, ``agreement.csv``, ``sam_vs_box.csv``, ``region_summary.csv``,
``comparison.csv``,
``summary.json``, ``plots/``, ``report.html``
    See :mod:`~napari_samcam.evaluation.summary`, :mod:`~napari_samcam.evaluation.plots`,
    :mod:`~napari_samcam.evaluation.report`.

Resume and overwrite
--------------------
* A new or empty folder: the run starts.
* A folder whose ``config.json`` holds the same configuration and manifest: the run *resumes*;
  images with a stored part are not computed again (their rows are read back), so an
  interrupted run (crash, Ctrl-C) loses at most the images in flight. ``limit`` is not part of
  the configuration: raising it extends a finished run.
* A folder with another configuration or manifest, or with results but no ``config.json``:
  :class:`~napari_samcam.errors.OutputExistsError`, unless ``overwrite=True``.
* ``overwrite=True`` always starts afresh: stored parts and outputs are deleted first (other
  files in the folder are left alone).
* One run at a time: a run holds ``.samcam.lock`` (an operating-system file lock, released when
  its process ends, even by a crash) and a second run into the same folder raises
  :class:`~napari_samcam.errors.OutputBusyError` at once.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._csv_cells import neutralised_frame
from .._folders import atomic_path, check_writable, output_lock, refuse_link
from ..errors import InputError, ModelNotAvailableError, OutputExistsError
from ..evaluation_settings import (
    SETTINGS,
    check_settings,
    settings_doc,
    settings_signature,
    spec_fields,
)
from ..hashing import file_digest as _file_digest
from ..model_files import check_classifier_trust
from .arrays import arrays_path, pack_job_arrays
from .jobs import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    EvalSpec,
    ImageJob,
    classifier_ref,
    make_jobs,
    region_frame,
    rows_frame,
    run_image_job,
    sam_ref,
    with_optional_columns,
)
from .manifests import load_manifest
from .regions import SAM_SOURCES, check_region_sources

__all__ = ["OUTPUT_NAMES", "EvaluationResult", "evaluate", "make_spec"]

#: Files and folders an evaluation writes into its output folder.
OUTPUT_NAMES = (
    "config.json",
    "parts",
    "metrics.parquet",
    "metrics.csv",
    "summary.csv",
    "agreement.csv",
    "sam_vs_box.csv",
    "regions.parquet",
    "regions.csv",
    "region_summary.csv",
    "comparison.csv",
    "reader_agreement.csv",
    "reader_regions.csv",
    "summary.json",
    "plots",
    "report.html",
)


@dataclass
class EvaluationResult:
    """What :func:`evaluate` computed and where it wrote it.

    Attributes
    ----------
    out : Path
    metrics : pandas.DataFrame
        The tidy table, one row per image item x classifier x method x region source x metric.
    summary : pandas.DataFrame
        Mean and bootstrap CI per classifier x method x region source x metric x group.
    agreement : pandas.DataFrame
        Agreement of every non-reference source with ``ground-truth``.
    sam_vs_box : pandas.DataFrame
        ``sam-box`` against the raw ``box``: which agrees better with ``ground-truth``.
    regions : pandas.DataFrame
        One row per region: area, Dice and IoU with the ground-truth mask.
    region_summary : pandas.DataFrame
        Mean Dice / IoU of each region source with the ground truth (bootstrap CIs).
    comparison : pandas.DataFrame
        Paired comparisons of classifiers and of CAM methods
        (:func:`~napari_samcam.evaluation.comparisons.comparison_table`).
    reader_agreement, reader_regions : pandas.DataFrame
        With several readers per item: the readers' agreement of scores next to every other
        source's agreement with the readers, and of regions
        (:mod:`~napari_samcam.evaluation.readers`); empty otherwise.
    paths : dict
        Output name -> path.
    n_images : int
        Images (jobs) in this run.
    n_computed, n_reused : int
        Images computed now / read back from an earlier run.
    config : dict
    seconds : float
        Wall time of the computation.
    """

    out: Path
    metrics: Any
    summary: Any
    agreement: Any
    sam_vs_box: Any
    regions: Any = None
    region_summary: Any = None
    comparison: Any = None
    reader_agreement: Any = None
    reader_regions: Any = None
    paths: dict[str, Path] = field(default_factory=dict)
    n_images: int = 0
    n_computed: int = 0
    n_reused: int = 0
    config: dict = field(default_factory=dict)
    seconds: float = 0.0


def _binarization(binarization: Any, threshold: float | None) -> dict:
    from ..metrics import BINARIZE_METHODS

    if isinstance(binarization, dict):
        options = dict(binarization)
    else:
        method = str(binarization)
        if method not in BINARIZE_METHODS:
            raise InputError(
                f"binarization {method!r} is unknown; choose one of {', '.join(BINARIZE_METHODS)}."
            )
        options = {"method": method}
        if method == "fixed":
            if threshold is None:
                raise InputError(
                    "binarization 'fixed' needs threshold= (CLI: --threshold T, T in [0, 1])."
                )
            options["threshold"] = float(threshold)
        elif method == "percentile":
            if threshold is None:
                raise InputError(
                    "binarization 'percentile' needs threshold= as the percentage of pixels "
                    "kept (CLI: --threshold P, P in (0, 100])."
                )
            options["percentile"] = float(threshold)
        elif threshold is not None:
            raise InputError(
                "threshold= applies to binarization 'fixed' or 'percentile', not 'otsu'."
            )
    # Validate now, once, rather than in every job.
    import numpy as np

    from ..metrics import binarize

    binarize(np.arange(4.0).reshape(2, 2), **options)
    return options


def make_spec(**settings: Any) -> EvalSpec:
    """Check the job settings and turn them into an
    :class:`~napari_samcam.evaluation.jobs.EvalSpec`.

    Parameters
    ----------
    **settings
        The settings of group ``job`` in
        :data:`~napari_samcam.evaluation_settings.SETTINGS` (``classifiers``, ``methods``,
        ``region_sources``, ``sam``, ...; see :func:`evaluate`); the others take their defaults.

    Raises
    ------
    InputError
        An unknown or invalid setting (the message names it and what is valid).
    """
    from ..metric_protocols import get_protocol
    from ..saliency import CAM_METHODS
    from ..saliency import cam_method_key as _key
    from ..sam_preprocess import canonical_name

    values = check_settings(settings, group="job")
    classifiers, methods = values["classifiers"], values["methods"]
    saliency, sam, device = values["saliency"], values["sam"], values["device"]
    trust_checkpoint = values["trust_checkpoint"]
    context = values["context"]

    protocol_name = get_protocol(values["protocol"]).name
    preprocess = canonical_name(values["sam_preprocess"])
    folder = None
    if saliency is not None:
        if classifiers:
            raise InputError(
                "pass either saliency= (maps read from files) or classifiers= (maps computed), "
                "not both (CLI: --saliency DIR or --model NAME)."
            )
        folder = Path(saliency)
        if not folder.is_dir():
            raise InputError(
                f"saliency={str(saliency)!r} is not a folder; pass the folder holding the map "
                "files (CLI: --saliency DIR)."
            )
        classifiers, methods = [], ["file"]
    if classifiers is None:
        classifiers = ("lesion-detector",)
    if isinstance(classifiers, (str, bytes)) or not isinstance(classifiers, Sequence):
        classifiers = [classifiers]
    if not classifiers and folder is None:
        raise InputError("no classifier given; pass at least one, e.g. 'lesion-detector'.")
    if isinstance(methods, str):
        methods = [methods]
    known = {_key(m) for m in CAM_METHODS}
    for method in methods:
        if folder is None and _key(method) not in known:
            raise InputError(
                f"method {method!r} is not a CAM method; choose from {', '.join(CAM_METHODS)}."
            )
    if not methods:
        raise InputError("no CAM method given; pass at least one, e.g. 'gradcam'.")
    sources = check_region_sources(values["region_sources"])
    if context is not None and not float(context) >= 1.0:
        raise InputError(f"context={context!r}: the zoom factor must be >= 1 (e.g. 2.5).")
    refs = []
    for spec in classifiers:
        check_classifier_trust(spec, trusted=trust_checkpoint)
        options: dict[str, Any] = {"device": device, "trust_checkpoint": trust_checkpoint or None}
        if isinstance(spec, str) and spec.startswith(("torchvision:", "timm:", "xrv:")):
            options.update(checkpoint=values["checkpoint"])
        refs.append(classifier_ref(spec, **options))
    if "sam-text" in sources:
        from ..clip_regions import clip_available

        ok, message = clip_available(values["clip"])
        if not ok:
            raise ModelNotAvailableError(f"region source 'sam-text': {message}")
    needs_sam = any(s in SAM_SOURCES for s in sources)
    sam_reference = None
    if needs_sam:
        if sam is None:
            raise InputError(
                f"region sources {[s for s in sources if s in SAM_SOURCES]} need a SAM model; "
                "pass sam='litemedsam' (CLI: --sam litemedsam)."
            )
        sam_reference = sam_ref(sam, checkpoint=values["sam_checkpoint"], device=device)
    stored = {entry.name: values[entry.name] for entry in spec_fields()}
    stored.update(
        methods=tuple(methods),
        region_sources=sources,
        context=None if context is None else float(context),
        saliency_max_boxes=int(values["saliency_max_boxes"]),
        text_options=dict(values["text_options"] or {}),
        saliency=None if folder is None else str(folder.resolve()),
        trust_saliency=bool(values["trust_saliency"]) and folder is not None,
        protocol=protocol_name,
        sam_preprocess=preprocess,
    )
    return EvalSpec(
        classifiers=tuple(refs),
        sam=sam_reference,
        binarization=_binarization(values["binarization"], values["threshold"]),
        **stored,
    )


# --------------------------------------------------------------------------------------------
# The output folder
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str), encoding="utf-8")


def _clear(out: Path) -> None:
    for name in OUTPUT_NAMES:
        target = out / name
        if target.is_symlink():  # remove the link, never what it points to
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _prepare_store(out: Path, record: dict, overwrite: bool) -> bool:
    """Create or check the output folder; return True when resuming."""
    if out.exists() and not out.is_dir():
        raise InputError(f"out={str(out)!r} is a file; pass a folder for the results.")
    config_file = out / "config.json"
    existing = [n for n in OUTPUT_NAMES if (out / n).exists()]
    resume = False
    if overwrite:
        _clear(out)
    elif config_file.exists():
        try:
            stored = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            stored = {}
        if stored.get("store_id") == record["store_id"]:
            resume = True
        else:
            raise OutputExistsError(
                f"output folder {str(out)!r} holds results of another configuration or manifest "
                f"(see {str(config_file)!r}); choose another folder, or pass overwrite=True "
                "(CLI: --overwrite) to delete them and start afresh."
            )
    elif existing:
        raise OutputExistsError(
            f"output folder {str(out)!r} already holds {', '.join(existing)} without a "
            "config.json; choose another folder or pass overwrite=True (CLI: --overwrite)."
        )
    refuse_link(out / "parts", "parts folder")
    (out / "parts").mkdir(parents=True, exist_ok=True)
    if not resume:
        _write_json(config_file, record)
    return resume


def _part_path(out: Path, job: ImageJob) -> Path:
    return out / "parts" / f"{job.key}.metrics.parquet"


def _regions_path(out: Path, job: ImageJob) -> Path:
    return out / "parts" / f"{job.key}.regions.parquet"


def _write_part(out: Path, job: ImageJob, frames) -> None:
    """Write the arrays, the region rows, then the metric rows: the last marks the image done."""
    metrics, regions, arrays = frames
    if arrays is not None:
        with atomic_path(arrays_path(out, job.key)) as tmp:
            tmp.write_bytes(arrays)
    for frame, path in ((regions, _regions_path(out, job)), (metrics, _part_path(out, job))):
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)


def _part_done(out: Path, job: ImageJob) -> bool:
    """Whether a stored part of ``job`` can be reused; a damaged one (truncated, empty, not
    Parquet, other columns) is deleted so that the job runs again."""
    import pyarrow.parquet as pq

    path, regions = _part_path(out, job), _regions_path(out, job)
    if not path.exists():
        return False
    try:
        names = set(pq.read_schema(path).names)
        names_regions = set(pq.read_schema(regions).names) if regions.exists() else {"item"}
    except Exception:  # pyarrow raises several types for damaged files
        names = names_regions = set()
    if set(COLUMNS) - {"protocol", "image_id", *OPTIONAL_COLUMNS} <= names and names_regions >= {
        "item"
    }:
        return True
    for stale in (path, regions, arrays_path(out, job.key)):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    return False


def _read_part(out: Path, job: ImageJob):
    import pandas as pd

    path = _part_path(out, job)
    try:
        metrics = pd.read_parquet(path)
        if "protocol" not in metrics:  # a part written before protocols were recorded
            metrics = metrics.assign(image_id=metrics["image"], protocol="samcam")
        metrics = with_optional_columns(metrics)[list(COLUMNS)]
        path = _regions_path(out, job)
        regions = pd.read_parquet(path) if path.exists() else region_frame([])
    except Exception as exc:  # damaged after the check at the start of the run
        raise InputError(
            f"stored part {str(path)!r} cannot be read ({type(exc).__name__}); delete it and "
            "run again to redo that image."
        ) from None
    return metrics, regions


def _forget_empty_store(out: Path) -> None:
    """After a failed fresh run: remove its config.json and parts/ if no part was written."""
    parts = out / "parts"
    with contextlib.suppress(OSError):
        if parts.is_dir() and not parts.is_symlink() and not any(parts.iterdir()):
            parts.rmdir()
            (out / "config.json").unlink()


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------


def _job_frame(job: ImageJob, spec: EvalSpec, keep_arrays: bool = True):
    """Worker entry point: the metric and region rows of one job, and its arrays' bytes."""
    result = run_image_job(job, spec, keep_arrays=keep_arrays)
    arrays = pack_job_arrays(job, result) if keep_arrays else None
    return result.frame(), result.region_frame(), arrays


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(int(n))


def _run_local(jobs, spec, on_done, *, keep_arrays) -> None:
    for job in jobs:
        on_done(job, _job_frame(job, spec, keep_arrays))


def _run_dask(jobs, spec, on_done, *, scheduler, n_workers, keep_arrays) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is not None:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=int(n_workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
        client.run(_set_torch_threads, 1)
    futures = {}
    try:
        [spec_future] = client.scatter([spec], broadcast=True)
        for job in jobs:
            futures[client.submit(_job_frame, job, spec_future, keep_arrays, pure=False)] = job
        for future in as_completed(futures):
            on_done(futures[future], future.result())
    finally:
        if futures:
            client.cancel(list(futures))
        client.close()
        if cluster is not None:
            cluster.close()


def evaluate(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    *,
    progress: Callable[[int, int], None] | None = None,
    **settings: Any,
) -> EvaluationResult:
    """Score classifiers' saliency against regions from several sources over a dataset.

    Parameters
    ----------
    manifest : path
        CSV, COCO JSON or CheXlocalize ground-truth JSON
        (see :mod:`~napari_samcam.evaluation.manifests`).
    out : path
        Output folder (see the module docstring for its layout and for resume / overwrite).
    progress : callable, optional
        ``progress(done, total)`` over the images still to compute (``(0, total)`` first).
    **settings
        Any of the settings below, by keyword; each is declared once in
        :data:`~napari_samcam.evaluation_settings.SETTINGS` (which ``samcam evaluate`` and the
        settings table of ``docs/evaluation.md`` are made from). An unknown keyword raises
        :class:`~napari_samcam.errors.InputError` listing the valid ones.

    Other Parameters
    ----------------
    SETTINGS_DOC

    Returns
    -------
    EvaluationResult

    Raises
    ------
    InputError
        Bad options or a bad manifest (the message names the file, row and column).
    OutputExistsError
        ``out`` holds results of another configuration and ``overwrite`` is False.
    OutputNotWritableError
        ``out`` cannot be written (checked before any model is loaded).
    OutputBusyError
        Another run is writing into ``out``.
    """
    started = time.perf_counter()
    out = check_writable(out)
    values = check_settings(settings)
    _check_device(values["device"], values["scheduler"])
    spec = make_spec(
        **{entry.name: values[entry.name] for entry in SETTINGS if entry.group == "job"}
    )
    image_root, limit = values["image_root"], values["limit"]
    manifest = Path(manifest)
    items = load_manifest(manifest, image_root=image_root)
    jobs = make_jobs(items, spec)
    if limit is not None:
        jobs = jobs[:limit]
    config = spec.config()
    record = {
        "config": config,
        "config_hash": spec.digest(),
        "manifest": {"path": str(manifest.resolve()), "digest": _file_digest(manifest)},
        "image_root": None if image_root is None else str(Path(image_root).resolve()),
    }
    record["store_id"] = f"{record['config_hash']}:{record['manifest']['digest']}"
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out, what="evaluation"):
        resume = _prepare_store(out, record, values["overwrite"])
        outputs = {name: values[name] for name in ("plots", "report", "gallery", "seed")}
        outputs["n_resamples"] = values["n_resamples"]
        outputs["comparisons"] = {
            "holm_family": values["holm_family"],
            "zero_method": values["zero_method"],
        }
        run = {"progress": progress, "scheduler": values["scheduler"]}
        run.update(n_workers=values["n_workers"], keep_arrays=values["keep_arrays"])
        try:
            return _compute(out, jobs, spec, manifest, started, outputs, **run)
        except BaseException:
            if not resume:
                _forget_empty_store(out)
            raise


evaluate.__doc__ = evaluate.__doc__.replace("    SETTINGS_DOC", settings_doc())
# help(evaluate) and editors show every setting as a keyword with its default
evaluate.__signature__ = settings_signature(evaluate)


def _check_device(device: Any, scheduler: str | None) -> None:
    """A device this machine has; with a scheduler, only its name (the workers may differ)."""
    if device is None:
        return
    if scheduler is None:
        from ..devices import check_device

        check_device(device)
        return
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(
            f"device {str(device)!r} is not a torch device name; pass cpu, cuda, cuda:N or mps."
        ) from None


def _compute(
    out, jobs, spec, manifest, started, outputs, *, progress, scheduler, n_workers, keep_arrays
):
    """Run the pending jobs of an evaluation, then write its tables (the folder is locked)."""
    pending = [job for job in jobs if not _part_done(out, job)]
    n_reused = len(jobs) - len(pending)
    done = 0
    if progress is not None:
        progress(0, len(pending))

    def on_done(job: ImageJob, frame) -> None:
        nonlocal done
        _write_part(out, job, frame)
        done += 1
        if progress is not None:
            progress(done, len(pending))

    if pending:
        if scheduler is None and (n_workers is None or int(n_workers) <= 1):
            _run_local(pending, spec, on_done, keep_arrays=keep_arrays)
        else:
            _run_dask(
                pending,
                spec,
                on_done,
                scheduler=scheduler,
                n_workers=n_workers or 1,
                keep_arrays=keep_arrays,
            )
    seconds = time.perf_counter() - started
    with _gc_paused():
        return _finish(out, jobs, spec, manifest, (len(pending), n_reused, seconds), **outputs)


@contextlib.contextmanager
def _gc_paused():
    """No cyclic garbage collection inside the block.

    Writing tables and plots allocates many small objects, which triggers full collections;
    with models loaded (half a million objects) one takes about 0.4 s. Reference counting
    still frees nearly everything; cycles wait for the next collection after the block.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _finish(
    out, jobs, spec, manifest, counts, *, plots, report, gallery, n_resamples, seed, comparisons
) -> EvaluationResult:
    """Tables, summaries, plots and the report from the per-image parts in ``out``.

    ``counts``: images computed and reused in this run, and the seconds the jobs took.
    """
    import pandas as pd

    from .comparisons import comparison_table
    from .readers import reader_html, reader_record
    from .summary import agreement_table as agreement_of
    from .summary import region_summary, sam_vs_box, summarize, summary_record

    n_computed, n_reused, seconds = counts
    config = spec.config()

    parts = [_read_part(out, job) for job in jobs]
    frames = [m for m, _ in parts if len(m)]
    metrics = pd.concat(frames, ignore_index=True) if frames else rows_frame([])
    frames = [r for _, r in parts if len(r)]
    regions = pd.concat(frames, ignore_index=True) if frames else region_frame([])
    del parts, frames
    paths: dict[str, Path] = {}
    paths["metrics.parquet"] = _atomic(out / "metrics.parquet", metrics.to_parquet, index=False)
    paths["metrics.csv"] = _write_csv(out / "metrics.csv", metrics)
    paths["regions.parquet"] = _atomic(out / "regions.parquet", regions.to_parquet, index=False)
    paths["regions.csv"] = _write_csv(out / "regions.csv", regions)

    summary = summarize(metrics, n_resamples=n_resamples, seed=seed, protocol=spec.protocol)
    agreement = agreement_of(metrics)
    versus = sam_vs_box(agreement)
    quality = region_summary(regions, n_resamples=n_resamples, seed=seed)
    comparison = comparison_table(metrics, n_resamples=n_resamples, seed=seed, **comparisons)
    paths["comparison.csv"] = _write_csv(out / "comparison.csv", comparison)
    paths["region_summary.csv"] = _write_csv(out / "region_summary.csv", quality)
    paths["summary.csv"] = _write_csv(out / "summary.csv", summary)
    paths["agreement.csv"] = _write_csv(out / "agreement.csv", agreement)
    paths["sam_vs_box.csv"] = _write_csv(out / "sam_vs_box.csv", versus)
    readers = _reader_tables(out, metrics, regions, paths, n_resamples=n_resamples, seed=seed)
    info = {
        "manifest": str(manifest),
        "n_images": len(jobs),
        "n_items": int(metrics["item"].nunique()) if len(metrics) else 0,
        "n_rows": len(metrics),
        "protocol": spec.protocol,
        "config": config,
    }
    summary_file = out / "summary.json"
    record = summary_record(info, summary, agreement, versus, quality, comparison)
    _write_json(summary_file, {**record, **reader_record(*readers)})
    paths["summary.json"] = summary_file
    if plots:
        from .plots import write_plots

        for name, path in write_plots(metrics, summary, out / "plots").items():
            paths[f"plots/{name}"] = path
    if report:
        from .gallery import gallery_html
        from .report import write_report

        paths["report.html"] = write_report(
            out / "report.html",
            info,
            metrics,
            summary,
            agreement,
            versus,
            plots=plots,
            regions=quality,
            comparison=comparison,
            gallery=gallery_html(out, jobs, metrics, per_end=gallery) if gallery else "",
            readers=reader_html(*readers),
        )
    return EvaluationResult(
        out=out,
        metrics=metrics,
        summary=summary,
        agreement=agreement,
        sam_vs_box=versus,
        regions=regions,
        region_summary=quality,
        comparison=comparison,
        reader_agreement=readers[0],
        reader_regions=readers[1],
        paths=paths,
        n_images=len(jobs),
        n_computed=n_computed,
        n_reused=n_reused,
        config=config,
        seconds=seconds,
    )


def _write_csv(path: Path, frame) -> Path:
    """``frame`` as CSV, text cells that a spreadsheet would run as formulas neutralised."""
    return _atomic(path, neutralised_frame(frame).to_csv, index=False)


def _reader_tables(out: Path, metrics, regions, paths: dict, *, n_resamples: int, seed: int):
    """The inter-reader tables (empty without ``reader:*`` regions), written when not empty."""
    from .readers import reader_region_agreement, reader_score_agreement

    scores = reader_score_agreement(metrics, n_resamples=n_resamples, seed=seed)
    boxes = reader_region_agreement(regions, n_resamples=n_resamples, seed=seed)
    for name, frame in (("reader_agreement.csv", scores), ("reader_regions.csv", boxes)):
        if len(frame):
            paths[name] = _write_csv(out / name, frame)
    return scores, boxes


def _atomic(path: Path, writer: Callable, **kwargs) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp, **kwargs)
    return path
