"""Dataset evaluation: how well is each classifier's saliency localized, region source by source?

:func:`evaluate` (also ``napari_samcam.evaluate``) reads a manifest (CSV, COCO JSON,
CheXlocalize JSON), runs each image's job (classifiers x CAM methods, regions from annotations
and Segment Anything, every metric) in this process or on Dask, stores results per image
(resumable), and writes the tidy table, summaries with bootstrap CIs, agreement of SAM-based
with ground-truth-based scores, plots and an HTML report.

Submodules: :mod:`.manifests`, :mod:`.regions`, :mod:`.jobs`, :mod:`.runner`, :mod:`.summary`,
:mod:`.comparisons`, :mod:`.plots`, :mod:`.report`.
"""

from __future__ import annotations

from .comparisons import comparison_table
from .jobs import COLUMNS, REGION_COLUMNS, EvalSpec, ImageJob, JobResult, run_image_job
from .manifests import Item, decode_rle, encode_rle, load_manifest
from .regions import DEFAULT_REGION_SOURCES, REGION_SOURCES
from .runner import OUTPUT_NAMES, EvaluationResult, evaluate, make_spec
from .summary import agreement_table, region_summary, sam_vs_box, summarize

__all__ = [
    "COLUMNS",
    "DEFAULT_REGION_SOURCES",
    "OUTPUT_NAMES",
    "REGION_COLUMNS",
    "REGION_SOURCES",
    "EvalSpec",
    "EvaluationResult",
    "ImageJob",
    "Item",
    "JobResult",
    "agreement_table",
    "comparison_table",
    "decode_rle",
    "encode_rle",
    "evaluate",
    "load_manifest",
    "make_spec",
    "region_summary",
    "run_image_job",
    "sam_vs_box",
    "summarize",
]
