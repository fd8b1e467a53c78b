"""A self-contained HTML report of an evaluation: tables as HTML, plots embedded as base64."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; margin: 0.5em 0; border: 1px solid #eee; }
pre { background: #f7f7f7; padding: 0.8em; font-size: 0.8em; overflow-x: auto; }
.note { color: #555; font-size: 0.9em; }
.row { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 6px; margin: 4px 0; }
.rank { width: 8em; font-size: 0.8em; color: #555; padding-top: 2em; }
figure.thumb { margin: 0; font-size: 0.7em; max-width: 170px; }
figure.thumb img { margin: 0; display: block; }
"""


def html_table(frame, *, digits: int = 3) -> str:
    if frame is None or len(frame) == 0:
        return "<p class='note'>(nothing to show)</p>"
    return frame.to_html(
        index=False, float_format=lambda v: f"{v:.{digits}f}", na_rep="–", border=0
    )


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(Path(path).name)}' src='data:image/svg+xml;base64,{data}'>"


def write_report(
    path: Path,
    info: dict,
    metrics,
    summary,
    agreement,
    versus,
    *,
    plots: bool = True,
    regions=None,
    comparison=None,
    gallery: str = "",
    readers: str = "",
) -> Path:
    """Write ``report.html`` next to the evaluation outputs and return its path.

    ``gallery``: the HTML of :func:`~napari_samcam.evaluation.gallery.gallery_html`, placed after
    the tables. ``readers``: the HTML of :func:`~napari_samcam.evaluation.readers.reader_html`.
    """
    path = Path(path)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>napari-samcam evaluation</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Saliency localization report</h1>",
        f"<p>Manifest <code>{html.escape(str(info.get('manifest', '')))}</code>: "
        f"{info.get('n_images', 0)} images, {info.get('n_items', 0)} annotated items, "
        f"{info.get('n_rows', 0)} metric values; metric definitions: protocol "
        f"<code>{html.escape(str(info.get('protocol', 'samcam')))}</code>.</p>",
    ]
    if len(summary):
        overall = summary[summary["group"] == "all"]
        chex = overall[overall["metric"].isin(["iou", "hit", "energy"])]
        chex = chex.pivot_table(
            index=["classifier", "cam_method", "region_source"],
            columns="metric",
            values=["mean", "ci_low", "ci_high"],
            sort=False,
        )
        chex.columns = [f"{metric} {stat}" for stat, metric in chex.columns]
        chex = chex[sorted(chex.columns, key=lambda c: (c.split()[0], c.split()[1]))]
        parts += [
            "<h2>mIoU, hit rate and energy in the region</h2>",
            "<p class='note'>Means over items with a defined value, with percentile-bootstrap "
            "95 % CIs (CheXlocalize's mIoU and hit rate are the <code>iou</code> and "
            "<code>hit</code> means).</p>",
            html_table(chex.reset_index()),
        ]
    if len(versus):
        shown = versus[
            [
                c
                for c in versus.columns
                if c.split("_")[0] in ("classifier", "cam", "metric", "n", "mad", "pearson")
                or c == "closer"
            ]
        ]
        parts += [
            "<h2>SAM(box annotation) vs the raw box</h2>",
            "<p class='note'>Mean absolute difference (MAD) and Pearson r of per-item scores "
            "against the ground-truth-mask scores. <code>mad_ratio</code> &lt; 1: SAM's region "
            "gives scores closer to the ground truth's than the box does.</p>",
            html_table(shown),
        ]
    if regions is not None and len(regions):
        parts += [
            "<h2>Regions against the ground-truth mask</h2>",
            "<p class='note'>Mean Dice and IoU of each region with the annotated mask, over "
            "items with a non-empty mask; <code>area_ratio</code>: median region area / mask "
            "area.</p>",
            html_table(regions),
        ]
    if len(agreement):
        parts += [
            "<h2>Agreement with the ground truth</h2>",
            "<p class='note'>Per region source and metric: Pearson and Spearman correlation, "
            "mean absolute difference, Bland-Altman bias and 95 % limits of agreement "
            "(source minus ground truth), Cohen's kappa for pointing-game hits.</p>",
            html_table(agreement),
        ]
    if comparison is not None and len(comparison):
        parts += [
            "<h2>Paired comparisons</h2>",
            "<p class='note'>Every pair of classifiers (same CAM method) and of CAM methods "
            "(same classifier), on the items both scored: mean difference a &minus; b with a "
            "paired-bootstrap 95 % CI, two-sided Wilcoxon signed-rank p-value "
            f"({_zero_note(comparison)}), Holm-adjusted within its family "
            "(<code>holm_family</code>: <code>run</code> = every comparison of this run, "
            "<code>metric</code> = one metric across region sources and pairs, "
            "<code>pair</code> = the pairs of one region source and metric); "
            "<code>family_size</code> is the number of tests adjusted together. "
            "<code>agrees_with_reference</code>: the same conclusion as with the ground-truth "
            "regions.</p>",
            html_table(comparison),
        ]
    if readers:
        parts.append(readers)
    if gallery:
        parts.append(gallery)
    parts += ["<h2>All summaries</h2>", html_table(summary)]
    if plots:
        folder = path.parent / "plots"
        images = sorted(folder.glob("*.svg")) if folder.is_dir() else []
        if images:
            parts.append("<h2>Plots</h2>")
            parts += [_image(p) for p in images]
    parts += [
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(json.dumps(info.get('config', {}), indent=2, default=str))}</pre>",
        "</body></html>",
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _zero_note(comparison) -> str:
    methods = sorted(set(comparison["zero_method"])) if "zero_method" in comparison else []
    zeros = int(comparison["n_zero"].sum()) if "n_zero" in comparison else 0
    return (
        f"zero differences: <code>{', '.join(methods) or 'wilcox'}</code> (wilcox drops them, "
        f"pratt keeps their ranks); <code>n_zero</code> counts them per row, {zeros} in all"
    )
