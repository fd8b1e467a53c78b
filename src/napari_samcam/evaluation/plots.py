"""SVG plots of an evaluation, drawn with matplotlib (no GUI, no pyplot state).

Text stays text in the SVG (``svg.fonttype: none``): the files are small, scale for papers,
and are written without rasterizing, about a third faster than PNG.

* ``scatter_<metric>.svg``: per item, the score against each SAM- or box-based region (y)
  versus the score against the ground truth (x), one panel per region source, one colour per
  classifier x CAM method, with the identity line.
* ``bars_<metric>.svg``: mean with its bootstrap 95 % CI per class (and overall), one group of
  bars per region source, one panel per classifier x CAM method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .summary import paired_scores

__all__ = ["bar_plot", "scatter_plot", "write_plots"]

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
REFERENCE = "ground-truth"
UNIT_TICKS = (0.0, 0.5, 1.0)
#: Metrics plotted by default (the others are in the tables; Dice is a monotone function of
#: IoU, so its plots would repeat IoU's).
PLOT_METRICS = ("iou", "hit", "energy")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasSVG(fig)
    return fig


def _margins(fig, *, left, right, bottom, top, wspace=0.0, hspace=0.0, rows=1, cols=1) -> None:
    """Fixed margins and gaps in inches.

    The labels have fixed font sizes, so fixed margins fit them; matplotlib's constrained
    layout would measure every text first, which took most of the time of writing the plots.
    """
    width, height = fig.get_size_inches()
    panel_w = (width - left - right - wspace * (cols - 1)) / cols
    panel_h = (height - top - bottom - hspace * (rows - 1)) / rows
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=wspace / panel_w,
        hspace=hspace / panel_h,
    )


def _save(fig, path: Path) -> Path:
    import matplotlib

    tmp = path.with_name(f".{path.stem}.tmp.svg")
    # text as text, and ids and metadata that do not change from run to run
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "samcam"}):
        fig.savefig(tmp, format="svg", metadata={"Date": None})
    tmp.replace(path)
    return path


def scatter_plot(metrics, metric: str, path: Path) -> Path | None:
    """Region-source scores vs ground-truth scores of one metric; None without pairs."""
    sources = [s for s in dict.fromkeys(metrics["region_source"]) if s != REFERENCE]
    if REFERENCE not in set(metrics["region_source"]) or not sources:
        return None
    combos = list(dict.fromkeys(zip(metrics["classifier"], metrics["cam_method"], strict=True)))
    fig = _figure(3.2 * len(sources) + 0.4, 3.4)
    axes = fig.subplots(1, len(sources), squeeze=False)[0]
    _margins(fig, left=0.6, right=0.15, bottom=0.5, top=0.6, wspace=0.65, cols=len(sources))
    any_points = False
    tables = {c: paired_scores(metrics, metric, *c) for c in combos}
    for ax, source in zip(axes, sources, strict=True):
        for i, combo in enumerate(combos):
            table = tables[combo]
            if source not in table or REFERENCE not in table:
                continue
            x = table[REFERENCE].to_numpy(dtype=float)
            y = table[source].to_numpy(dtype=float)
            keep = ~(np.isnan(x) | np.isnan(y))
            if not keep.any():
                continue
            any_points = True
            ax.scatter(
                x[keep],
                y[keep],
                s=12,
                alpha=0.6,
                color=COLOURS[i % len(COLOURS)],
                label=" / ".join(combo) if len(combos) > 1 else combo[0],
                edgecolors="none",
            )
        ax.plot([0, 1], [0, 1], color="0.3", lw=1, ls="--", label="identity")
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(UNIT_TICKS)
        ax.set_yticks(UNIT_TICKS)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{metric} vs ground truth")
        ax.set_ylabel(f"{metric} vs {source}")
        ax.set_title(source, fontsize=9)
        ax.grid(alpha=0.3)
    if not any_points:
        return None
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{metric}: region-source scores vs ground-truth scores", fontsize=10)
    return _save(fig, path)


def bar_plot(summary, metric: str, path: Path) -> Path | None:
    """Per-class means with CI whiskers of one metric; None when nothing is defined."""
    sub = summary[summary["metric"] == metric]
    if len(sub) == 0 or sub["mean"].isna().all():
        return None
    combos = list(dict.fromkeys(zip(sub["classifier"], sub["cam_method"], strict=True)))
    sources = list(dict.fromkeys(sub["region_source"]))
    groups = list(dict.fromkeys(sub["group"]))
    fig = _figure(max(4.0, 1.2 * len(groups) * max(1, len(sources)) / 2 + 1.5), 2.8 * len(combos))
    axes = fig.subplots(len(combos), 1, squeeze=False)[:, 0]
    _margins(fig, left=0.6, right=0.15, bottom=0.35, top=0.6, hspace=0.6, rows=len(combos))
    width = 0.8 / max(1, len(sources))
    for ax, (classifier, cam_method) in zip(axes, combos, strict=True):
        part = sub[(sub["classifier"] == classifier) & (sub["cam_method"] == cam_method)]
        for j, source in enumerate(sources):
            rows = part[part["region_source"] == source].set_index("group").reindex(groups)
            mean = rows["mean"].to_numpy(dtype=float)
            low = rows["ci_low"].to_numpy(dtype=float)
            high = rows["ci_high"].to_numpy(dtype=float)
            x = np.arange(len(groups)) + (j - (len(sources) - 1) / 2) * width
            err = np.vstack([np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)])
            ax.bar(
                x,
                np.nan_to_num(mean),
                width,
                yerr=np.nan_to_num(err),
                capsize=2,
                color=COLOURS[j % len(COLOURS)],
                label=source,
            )
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels(groups, fontsize=8)
        ax.set_ylabel(metric)
        ax.set_title(f"{classifier} / {cam_method}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, ncols=min(4, len(sources)), loc="upper right")
    fig.suptitle(f"{metric}: mean and bootstrap 95 % CI per class", fontsize=10)
    return _save(fig, path)


def write_plots(metrics, summary, folder: Path, *, metric_names=None) -> dict[str, Path]:
    """Write the scatter and bar plots into ``folder``; returns ``{file name: path}``.

    ``metric_names`` defaults to :data:`PLOT_METRICS`; pass ``METRIC_NAMES`` for all.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if len(metrics) == 0:
        return written
    present = list(dict.fromkeys(metrics["metric"]))
    names = [m for m in (metric_names or PLOT_METRICS) if m in present]
    for metric in names:
        if metric != "hit":
            path = scatter_plot(metrics, metric, folder / f"scatter_{metric}.svg")
            if path is not None:
                written[path.name] = path
        path = bar_plot(summary, metric, folder / f"bars_{metric}.svg")
        if path is not None:
            written[path.name] = path
    return written
