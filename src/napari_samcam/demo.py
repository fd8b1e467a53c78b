"""The demonstration: does a classifier look at the lesion or at a shortcut?

:func:`run_demo` generates a handful of phantom radiographs with synthetic lesions (and the
burned-in corner marker that the built-in ``shortcut-detector`` learned to rely on), explains
both built-in classifiers with Grad-CAM, segments the lesion with LiteMedSAM prompted by the
box annotation and by a box derived from each saliency map, and scores every saliency map
against the ground-truth mask and both SAM regions. The lesion detector's saliency lands on the
lesion; the shortcut detector's on the marker, and its localization scores show it.

It then runs a real chest radiograph (``RG1_UNCI.dcm`` from pydicom-data) through the same
pipeline — Grad-CAM and SAM from the saliency box; there is no ground truth there.

The per-image work is :func:`napari_samcam.evaluation.run_image_job`, the same code as
``samcam evaluate``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._folders import check_writable
from .errors import InputError, OutputExistsError
from .evaluation.jobs import ImageJob, make_jobs, rows_frame, run_image_job
from .evaluation.manifests import Item, load_manifest
from .evaluation.runner import make_spec
from .evaluation.summary import (
    agreement_table,
    region_summary,
    sam_vs_box,
    summarize,
    summary_record,
)
from .overlays import save_overlay
from .phantoms import write_phantoms

__all__ = ["DEMO_OUTPUTS", "DemoResult", "headline", "run_demo"]

#: What :func:`run_demo` writes into its output folder.
DEMO_OUTPUTS = (
    "phantoms",
    "metrics.csv",
    "radiograph.csv",
    "regions.csv",
    "summary.csv",
    "summary.json",
    "overlays",
)

DEMO_CLASSIFIERS = ("lesion-detector", "shortcut-detector")
DEMO_REGIONS = ("ground-truth", "sam-box", "sam-saliency-box")
RADIOGRAPH = "RG1_UNCI.dcm"


@dataclass
class DemoResult:
    """What :func:`run_demo` computed and wrote.

    Attributes
    ----------
    out : Path
    metrics : pandas.DataFrame
        Phantom rows: image x classifier x region source x metric (the evaluate table).
    radiograph : pandas.DataFrame
        Rows of the real chest radiograph (region source ``sam-saliency-box`` only).
    summary : pandas.DataFrame
        Mean and bootstrap CI per classifier x region source x metric (and per label).
    regions : pandas.DataFrame
        Every SAM region's Dice / IoU with the ground-truth lesion mask.
    region_summary : pandas.DataFrame
        Mean Dice / IoU per region source (and classifier for saliency-prompted regions).
    table : pandas.DataFrame
        The headline: per classifier and region source, hit rate, energy in the region, IoU.
    paths : dict
        Output name -> path.
    seconds : float
    """

    out: Path
    metrics: Any
    radiograph: Any
    summary: Any
    table: Any
    regions: Any = None
    region_summary: Any = None
    paths: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def headline(summary) -> Any:
    """Hit rate, energy and IoU means per classifier x region source (overall group)."""
    overall = summary[
        (summary["group"] == "all") & summary["metric"].isin(["hit", "energy", "iou"])
    ]
    table = overall.pivot_table(
        index=["classifier", "region_source"], columns="metric", values="mean", sort=False
    )
    return table.reindex(columns=["hit", "energy", "iou"]).reset_index()


def _fmt(value: float) -> str:
    return "  nan" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _overlay_lines(rows, classifier: str, item: int) -> list[str]:
    sub = rows[(rows["classifier"] == classifier) & (rows["item"] == item)]
    lines = []
    for source in dict.fromkeys(sub["region_source"]):
        values = sub[sub["region_source"] == source].set_index("metric")["value"]
        lines.append(
            f"{source:<17} hit {_fmt(values.get('hit'))}  energy {_fmt(values.get('energy'))}"
            f"  IoU {_fmt(values.get('iou'))}"
        )
    return lines


def _write_overlays(result, rows, folder: Path, stem: str, boxes) -> list[Path]:
    written = []
    for (classifier, _method, _target), saliency in result.saliencies.items():
        item = int(rows["item"].iloc[0]) if len(rows) else 0
        regions = [
            region
            for (it, name, *_rest, _source), region in result.regions.items()
            if it == item and name == classifier
        ]
        path = folder / f"{stem}_{classifier}.png"
        save_overlay(
            path,
            result.image,
            saliency=saliency.map,
            regions=regions,
            boxes=boxes,
            title=f"{classifier} Grad-CAM: p({saliency.class_name})={saliency.probability:.2f}",
            lines=_overlay_lines(rows, classifier, item),
            window=result.window,
        )
        written.append(path)
    return written


def run_demo(
    out: str | os.PathLike,
    *,
    n: int = 8,
    seed: int = 2024,
    classifiers: Sequence[Any] = DEMO_CLASSIFIERS,
    sam: Any = "litemedsam",
    marker: str | None = "correlated",
    radiograph: bool = True,
    overwrite: bool = False,
    device: Any = None,
    n_resamples: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Run the demonstration into ``out``.

    Parameters
    ----------
    out : path
        Output folder: ``phantoms/`` (images, masks, manifest.csv), ``metrics.csv`` (one row
        per image x classifier x region source x metric, with provenance), ``summary.csv`` /
        ``summary.json`` (means with bootstrap CIs, agreement with the ground truth),
        ``radiograph.csv`` and ``overlays/*.png``.
    n : int
        Number of phantom images (all with a lesion).
    seed : int
        Phantom seed; the default gives the documented numbers.
    classifiers : sequence
        Classifiers to compare (default: both built-ins).
    sam : str or object
        SAM model (default: the built-in LiteMedSAM).
    marker : str or None
        Burned-in marker mode of the phantoms (default ``"correlated"``: the shortcut's cue
        is on almost every positive image, as in its training data).
    radiograph : bool
        Also run the real chest radiograph.
    overwrite : bool
        Replace an earlier demo in ``out``.
    device : optional
        Torch device (default CUDA when available, else CPU).
    n_resamples : int
        Bootstrap resamples of the confidence intervals.
    progress : callable, optional
        ``progress(done, total)`` over the images (phantoms, then the radiograph).

    Returns
    -------
    DemoResult

    Raises
    ------
    OutputExistsError
        ``out`` holds an earlier demo and ``overwrite`` is False.
    """
    import time

    import pandas as pd

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n={n!r}: pass the number of phantom images as a positive integer.")
    started = time.perf_counter()
    out = check_writable(out)
    existing = [name for name in DEMO_OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"output folder {str(out)!r} already holds {', '.join(existing)}; choose another "
            "folder or pass overwrite=True (CLI: --overwrite)."
        )
    spec = make_spec(classifiers=classifiers, region_sources=DEMO_REGIONS, sam=sam, device=device)
    total = int(n) + (1 if radiograph else 0)
    if progress is not None:
        progress(0, total)
    manifest = write_phantoms(
        int(n),
        out / "phantoms",
        seed=seed,
        positive_fraction=1.0,
        marker=marker,
        overwrite=overwrite,
    )
    overlays = out / "overlays"
    overlays.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"manifest": manifest}
    frames = []
    region_frames = []
    done = 0
    for job in make_jobs(load_manifest(manifest), spec):
        result = run_image_job(job, spec, keep_arrays=True)
        rows = result.frame()
        frames.append(rows)
        region_frames.append(result.region_frame())
        boxes = [b for item in job.items for b in item.boxes]
        for path in _write_overlays(result, rows, overlays, Path(job.image).stem, boxes):
            paths[f"overlays/{path.name}"] = path
        done += 1
        if progress is not None:
            progress(done, total)
    metrics = pd.concat(frames, ignore_index=True)
    regions = pd.concat(region_frames, ignore_index=True)

    radiograph_rows = rows_frame([])
    if radiograph:
        import pydicom.data

        source = Path(pydicom.data.get_testdata_file(RADIOGRAPH, download=False))
        item = Item(image=RADIOGRAPH, path=source, index=0, where=f"radiograph {RADIOGRAPH}")
        chest_spec = make_spec(
            classifiers=classifiers, region_sources=("sam-saliency-box",), sam=sam, device=device
        )
        result = run_image_job(ImageJob(source, RADIOGRAPH, (item,)), chest_spec, keep_arrays=True)
        radiograph_rows = result.frame()
        for path in _write_overlays(result, radiograph_rows, overlays, "chest_radiograph", []):
            paths[f"overlays/{path.name}"] = path
        done += 1
        if progress is not None:
            progress(done, total)

    summary = summarize(metrics, n_resamples=n_resamples, seed=0)
    agreement = agreement_table(metrics)
    versus = sam_vs_box(agreement)
    quality = region_summary(regions, n_resamples=n_resamples, seed=0)
    table = headline(summary)
    for name, frame in (
        ("metrics.csv", metrics),
        ("radiograph.csv", radiograph_rows),
        ("regions.csv", regions),
        ("summary.csv", summary),
    ):
        tmp = out / f".{name}.tmp"
        frame.to_csv(tmp, index=False)
        os.replace(tmp, out / name)
        paths[name] = out / name
    import json

    info = {
        "demo": {
            "n_phantoms": int(n),
            "seed": int(seed),
            "marker": marker,
            "manifest": str(manifest),
            "radiograph": RADIOGRAPH if radiograph else None,
        },
        "config": spec.config(),
        "headline": table.to_dict("records"),
    }
    record = summary_record(info, summary, agreement, versus, quality)
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, out / "summary.json")
    paths["summary.json"] = out / "summary.json"
    return DemoResult(
        out=out,
        metrics=metrics,
        radiograph=radiograph_rows,
        summary=summary,
        table=table,
        regions=regions,
        region_summary=quality,
        paths=paths,
        seconds=time.perf_counter() - started,
    )
