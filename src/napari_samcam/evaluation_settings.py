"""The settings of a dataset evaluation, each declared once.

:data:`SETTINGS` is the one list of what an evaluation can be told: name, default, help text,
valid values and, where the command line has it, its flag. Everything else is derived from it:

* the keywords :func:`~napari_samcam.evaluation.runner.evaluate` accepts, their checks and the
  *Settings* section of its docstring (:func:`check_settings`, :func:`settings_doc`);
* the fields of :class:`~napari_samcam.evaluation.jobs.EvalSpec` that decide the numbers
  (``group == "job"`` and ``in_spec``), with their defaults (:func:`spec_fields`);
* the arguments of ``samcam evaluate`` and how the parsed values become keywords
  (:mod:`napari_samcam.cli.evaluate`);
* the defaults and tooltips of the napari widget's controls that mirror a setting;
* the settings table of ``docs/evaluation.md`` (:func:`settings_markdown`).

Adding a setting is one :class:`Setting` here, plus the line of code that uses it.

This module imports nothing heavy, so that ``samcam evaluate --help`` stays fast.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .region_sources import DEFAULT_REGION_SOURCES, REGION_SOURCES

__all__ = [
    "GROUPS",
    "SETTINGS",
    "Setting",
    "check_settings",
    "setting",
    "settings_doc",
    "settings_markdown",
    "settings_signature",
    "spec_fields",
]

#: What a setting is about: ``job`` decides the numbers (hashed, part of the resume key),
#: ``output`` what is written from them, ``run`` how and where the run happens.
GROUPS = {
    "job": "what is computed (recorded in config.json; a change starts a new run)",
    "output": "what is written from the results",
    "run": "how and where the run happens",
}


@dataclass(frozen=True)
class Setting:
    """One evaluation setting.

    Attributes
    ----------
    name : str
        The keyword of :func:`~napari_samcam.evaluation.runner.evaluate`.
    default : object
        Its default (immutable).
    help : str
        One or two sentences, used by the command line, the docstring and the docs.
    group : {'job', 'output', 'run'}
        See :data:`GROUPS`.
    type : str
        The numpydoc type.
    flag : str or None
        The ``samcam evaluate`` flag; ``None`` for settings of the Python API only.
    choices : tuple, optional
        Valid values.
    check : {'choice', 'positive', 'positive_or_none', None}
        The check :func:`check_settings` applies; settings without one are checked where they
        are turned into models and options (:func:`~napari_samcam.evaluation.runner.make_spec`).
    in_spec : bool
        Stored as is in :class:`~napari_samcam.evaluation.jobs.EvalSpec` (a field of that name
        and default); job settings that become models or combined options are not.
    record : {'always', 'changed', 'saliency'}
        In ``config.json``: always, only when not the default, or only with a saliency folder,
        so that output folders of runs made before the setting existed still resume.
    arg_type : str, optional
        Name of the argument converter in :mod:`napari_samcam.cli._common`.
    action, nargs, metavar : str, optional
        ``argparse`` options of the flag. ``store_false`` flags are ``--no-...`` switches of a
        setting that defaults to True.
    cli_default : object
        The flag's default when it differs from :attr:`default` (``None``: left to
        :func:`evaluate`).
    from_cli : {'zero_is_none', 'class'}, optional
        How the parsed value becomes the keyword's: ``0`` means ``None``; an integer text is a
        class index, any other a class name.
    widget : str, optional
        The napari widget's control that mirrors this setting.
    """

    name: str
    default: Any
    help: str
    group: str
    type: str
    flag: str | None = None
    choices: tuple | None = None
    check: str | None = None
    in_spec: bool = False
    record: str = "always"
    arg_type: str | None = None
    action: str | None = None
    nargs: str | None = None
    metavar: str | None = None
    cli_default: Any = "same"
    from_cli: str | None = None
    widget: str | None = None

    def flag_default(self) -> Any:
        """The default of the command-line flag."""
        return self.default if self.cli_default == "same" else self.cli_default

    def cli_hint(self) -> str:
        """``" (CLI: --flag)"``, or nothing for an API-only setting."""
        return f" (CLI: {self.flag})" if self.flag else ""


# Valid values owned by modules that import numpy and more: spelled here so that
# ``samcam evaluate --help`` imports none of them (tests/test_evaluation_settings.py holds them
# equal).
_HOLM = ("run", "metric", "pair")  # evaluate.comparisons.HOLM_FAMILIES
_ZEROS = ("wilcox", "pratt")  # agreement.WILCOXON_ZERO_METHODS
_PROTOCOLS = ("samcam", "chexlocalize")  # protocols.PROTOCOLS
_BINARIZE = ("otsu", "fixed", "percentile")  # metrics.BINARIZE_METHODS

#: Every setting of :func:`~napari_samcam.evaluation.runner.evaluate`, in the order of
#: ``samcam evaluate --help``.
SETTINGS: tuple[Setting, ...] = (
    # -- what is computed
    Setting(
        "classifiers",
        None,
        "Classifiers (repeatable flag): lesion-detector, shortcut-detector, xrv:WEIGHTS "
        "(torchxrayvision, e.g. xrv:densenet121-res224-all), torchvision:ARCH / timm:ARCH with "
        "a checkpoint, a TorchScript or .pt2 file, hf:FOLDER_OR_ID; in Python also "
        "torch.nn.Module or Classifier objects. Default: lesion-detector (none with a saliency "
        "folder).",
        "job",
        "sequence, optional",
        flag="--model",
        action="append",
        metavar="NAME",
    ),
    Setting(
        "saliency",
        None,
        "Score the saliency maps in this folder instead of computing them (no classifier): "
        ".npy, .npz, TIFF, PNG, NIfTI named <image>[_<class>].<ext>, or CheXlocalize's "
        "<img_id>_<task>_map.pkl (see SaliencyFolder). Rows name the folder as classifier and "
        "'file' as CAM method.",
        "job",
        "path, optional",
        flag="--saliency",
        metavar="DIR",
        in_spec=True,
        record="changed",
    ),
    Setting(
        "trust_saliency",
        False,
        "Unpickle .pkl saliency maps without restriction (only for files you trust); by "
        "default only pickles of tensors and arrays, as CheXlocalize writes them, are read.",
        "job",
        "bool",
        flag="--trust-saliency",
        action="store_true",
        in_spec=True,
        record="saliency",
    ),
    Setting(
        "protocol",
        "samcam",
        "Metric definitions: samcam (NaN where a score is undefined) or chexlocalize "
        "(CheXlocalize's segmentation, first-maximum hit, iou and iou_true_pos, its bootstrap).",
        "job",
        "{'samcam', 'chexlocalize'}",
        flag="--protocol",
        choices=_PROTOCOLS,
        in_spec=True,
        record="changed",
    ),
    Setting(
        "checkpoint",
        None,
        "State dict for torchvision:, timm: and xrv: classifiers.",
        "job",
        "path, optional",
        flag="--checkpoint",
        arg_type="existing_file",
    ),
    Setting(
        "trust_checkpoint",
        False,
        "Trust the classifier files: open .pt2 (torch.export) and TorchScript files and "
        "checkpoints that need full unpickling, which can run code (only for files whose author "
        "you trust).",
        "job",
        "bool",
        flag="--trust-checkpoint",
        action="store_true",
    ),
    Setting(
        "methods",
        ("gradcam",),
        "CAM methods (repeatable flag), e.g. gradcam, gradcam++, hirescam "
        "(napari_samcam.saliency.CAM_METHODS).",
        "job",
        "sequence of str",
        flag="--method",
        action="append",
        metavar="METHOD",
        arg_type="cam_method_arg",
        cli_default=None,
        in_spec=True,
        widget="method",
    ),
    Setting(
        "aug_smooth",
        False,
        "Smooth each CAM by test-time augmentation (pytorch-grad-cam's aug_smooth: horizontal "
        "flips and scalings averaged; 6 CAM runs instead of 1; not with finercam).",
        "job",
        "bool",
        flag="--aug-smooth",
        action="store_true",
        in_spec=True,
        record="changed",
    ),
    Setting(
        "eigen_smooth",
        False,
        "Smooth each CAM by its first principal component (pytorch-grad-cam's eigen_smooth: "
        "less noise, the map of the dominant pattern).",
        "job",
        "bool",
        flag="--eigen-smooth",
        action="store_true",
        in_spec=True,
        record="changed",
    ),
    Setting(
        "target",
        None,
        "Class to explain (index or name); default: the item's class when the classifier has "
        "it, else class 1 of a 2-class classifier, else the top-scoring class.",
        "job",
        "int or str, optional",
        flag="--target",
        from_cli="class",
        in_spec=True,
        widget="target",
    ),
    Setting(
        "region_sources",
        DEFAULT_REGION_SOURCES,
        f"Region sources, from: {', '.join(REGION_SOURCES)}.",
        "job",
        "sequence of str",
        flag="--regions",
        choices=tuple(REGION_SOURCES),
        nargs="+",
        metavar="SOURCE",
        in_spec=True,
    ),
    Setting(
        "sam",
        "litemedsam",
        "SAM model of the sam-* region sources: litemedsam (built in), vit_b, vit_l, vit_h, "
        "mobile_sam (these with a checkpoint); in Python also a model object.",
        "job",
        "str or object",
        flag="--sam",
        widget="segmenter",
    ),
    Setting(
        "sam_checkpoint",
        None,
        "Checkpoint file of the SAM model (every model but litemedsam needs one).",
        "job",
        "path, optional",
        flag="--sam-checkpoint",
        arg_type="existing_file",
    ),
    Setting(
        "sam_preprocess",
        None,
        "Contrast pre-processing of the image SAM sees: clahe, clahe:CLIP, gamma:G, or steps "
        "joined by + (e.g. clahe+gamma:0.8); recorded in each region's prompt. Default: none.",
        "job",
        "str, optional",
        flag="--sam-preprocess",
        arg_type="sam_preprocess_arg",
        metavar="NAME",
        in_spec=True,
        record="changed",
        widget="sam_preprocess",
    ),
    Setting(
        "context",
        2.5,
        "Zoom factor of SAM box prompts: a crop this many box sizes wide is embedded per box "
        "(better masks for small lesions, one encoder run per box); None (0 on the command line "
        "and in the napari widget) embeds the whole image once.",
        "job",
        "float or None",
        flag="--context",
        arg_type="zoom_factor_or_zero",
        from_cli="zero_is_none",
        in_spec=True,
        widget="context",
    ),
    Setting(
        "binarization",
        "otsu",
        "How saliency maps are binarized for IoU-type metrics and saliency boxes: otsu (as "
        "CheXlocalize), fixed or percentile (with threshold); in Python also a dict of "
        "napari_samcam.metrics.binarize options.",
        "job",
        "{'otsu', 'fixed', 'percentile'} or dict",
        flag="--binarize",
        choices=_BINARIZE,
    ),
    Setting(
        "threshold",
        None,
        "The threshold of binarization 'fixed' (in [0, 1]) or the percentage of pixels kept by "
        "'percentile' (in (0, 100]).",
        "job",
        "float, optional",
        flag="--threshold",
        arg_type="finite_float",
    ),
    Setting(
        "saliency_max_boxes",
        1,
        "Components of the binarized saliency used as sam-saliency-box prompts.",
        "job",
        "int",
        check="positive",
        in_spec=True,
    ),
    Setting(
        "text",
        None,
        "Text prompt of sam-text (default: the item's class).",
        "job",
        "str, optional",
        flag="--text",
        arg_type="text_arg",
        in_spec=True,
    ),
    Setting(
        "clip",
        None,
        "CLIP model of sam-text: a local folder or a hub id; in Python also a ClipEncoder.",
        "job",
        "str or object, optional",
        flag="--clip",
        in_spec=True,
        widget="clip",
    ),
    Setting(
        "text_options",
        None,
        "Options of napari_samcam.clip_regions.segment_text for sam-text (proposals, top_k, "
        "threshold, ...).",
        "job",
        "dict, optional",
        in_spec=True,
    ),
    Setting(
        "device",
        None,
        "Torch device of every model: cpu, cuda, cuda:1, mps ... (default: cuda if available).",
        "job",
        "str, optional",
        flag="--device",
    ),
    # -- how and where it runs
    Setting(
        "image_root",
        None,
        "Folder image paths are relative to (default: the manifest's folder; CheXlocalize: the "
        "CheXpert image folder).",
        "run",
        "path, optional",
        flag="--images",
    ),
    Setting(
        "scheduler",
        None,
        "Address of a running dask.distributed scheduler (e.g. tcp://host:8786); the jobs run on "
        "its workers, which need napari-samcam installed.",
        "run",
        "str, optional",
        flag="--scheduler",
        metavar="ADDR",
    ),
    Setting(
        "n_workers",
        None,
        "Without a scheduler: N >= 2 starts a local Dask cluster of N single-threaded worker "
        "processes (default: run in this process).",
        "run",
        "int, optional",
        flag="--workers",
        arg_type="positive_int",
        check="positive_or_none",
    ),
    Setting(
        "limit",
        None,
        "Evaluate only the first N images (not part of the configuration: raising it extends "
        "a finished run).",
        "run",
        "int, optional",
        flag="--limit",
        arg_type="positive_int",
        check="positive_or_none",
    ),
    Setting(
        "overwrite",
        False,
        "Delete earlier results in the output folder and start afresh.",
        "run",
        "bool",
        flag="--overwrite",
        action="store_true",
    ),
    Setting(
        "keep_arrays",
        True,
        "Keep per image what is needed to draw its items again (parts/<key>.arrays.npz: "
        "saliency maps at the network's resolution, regions as RLE), for the report's gallery "
        "and napari's reader; the flag does not keep them.",
        "run",
        "bool",
        flag="--no-keep-arrays",
        action="store_false",
    ),
    # -- what is written
    Setting(
        "plots",
        True,
        "Write the SVG plots (plots/*.svg); the flag skips them.",
        "output",
        "bool",
        flag="--no-plots",
        action="store_false",
    ),
    Setting(
        "report",
        True,
        "Write report.html; the flag skips it.",
        "output",
        "bool",
        flag="--no-report",
        action="store_false",
    ),
    Setting(
        "gallery",
        3,
        "The report's gallery shows N items with the lowest and the highest IoU and energy per "
        "classifier x method x region source (0: no gallery).",
        "output",
        "int",
        flag="--gallery",
        arg_type="non_negative_int",
        metavar="N",
    ),
    Setting(
        "n_resamples",
        1000,
        "Bootstrap resamples of the confidence intervals.",
        "output",
        "int",
        flag="--bootstrap",
        arg_type="positive_int",
        check="positive",
    ),
    Setting(
        "seed",
        0,
        "Seed of the bootstrap resamples (the same seed gives the same intervals).",
        "output",
        "int",
        flag="--bootstrap-seed",
        arg_type="non_negative_int",
        metavar="SEED",
    ),
    Setting(
        "holm_family",
        "run",
        "The comparisons Holm's correction adjusts together: run (every comparison of the run), "
        "metric (one metric across region sources and pairs) or pair (the pairs of one region "
        "source and metric only).",
        "output",
        "{'run', 'metric', 'pair'}",
        flag="--holm-family",
        choices=_HOLM,
        check="choice",
    ),
    Setting(
        "zero_method",
        "wilcox",
        "Wilcoxon zero differences of the comparisons: wilcox drops them, pratt ranks them.",
        "output",
        "{'wilcox', 'pratt'}",
        flag="--wilcoxon-zeros",
        choices=_ZEROS,
        check="choice",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    """The :class:`Setting` called ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InputError(
            f"{name!r} is not an evaluation setting; valid settings: {', '.join(_BY_NAME)}."
        ) from None


def spec_fields() -> tuple[Setting, ...]:
    """The settings stored as is in :class:`~napari_samcam.evaluation.jobs.EvalSpec`."""
    return tuple(s for s in SETTINGS if s.in_spec)


def _check_value(entry: Setting, value: Any) -> None:
    if entry.check == "choice":
        valid = entry.choices
        if value not in valid:
            raise InputError(
                f"{entry.name}={value!r}: pass one of {', '.join(valid)}{entry.cli_hint()}."
            )
    elif entry.check in ("positive", "positive_or_none"):
        if value is None and entry.check == "positive_or_none":
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            example = "" if entry.default is None else f", e.g. {entry.default}"
            raise InputError(
                f"{entry.name}={value!r}: pass a positive number (a whole number >= 1"
                f"{example}){entry.cli_hint()}."
            )


def check_settings(settings: Mapping[str, Any], *, group: str | None = None) -> dict[str, Any]:
    """Every setting's value: those given, checked, and the defaults of the others.

    Parameters
    ----------
    settings : mapping
        Setting name -> value.
    group : str, optional
        Only the settings of this group (:data:`GROUPS`) are valid and returned.

    Raises
    ------
    InputError
        A keyword that is not a setting (the message lists the valid ones), or a value that is
        not valid (the message names the setting, the valid values and the flag).
    """
    declared = [entry for entry in SETTINGS if group is None or entry.group == group]
    valid = [entry.name for entry in declared]
    unknown = [name for name in settings if name not in valid]
    if unknown:
        what = "setting" if group is None else f"{group} setting"
        raise InputError(
            f"unknown {what}(s) {', '.join(map(repr, unknown))}; valid {what}s: "
            f"{', '.join(valid)}."
        )
    values = {entry.name: entry.default for entry in declared}
    values.update(settings)
    for entry in declared:
        _check_value(entry, values[entry.name])
    return values


def settings_signature(function) -> inspect.Signature:
    """``function``'s signature with ``**settings`` spelled out: one keyword-only parameter per
    setting, with its default (what ``help()`` and editors show)."""
    signature = inspect.signature(function)
    kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    spelled = [
        inspect.Parameter(entry.name, inspect.Parameter.KEYWORD_ONLY, default=entry.default)
        for entry in SETTINGS
    ]
    return signature.replace(parameters=kept + spelled)


def settings_doc(indent: str = "    ") -> str:
    """The settings as a numpydoc parameter list (for :func:`evaluate`'s docstring)."""
    import textwrap

    lines = []
    for entry in SETTINGS:
        lines.append(f"{indent}{entry.name} : {entry.type}")
        default = "" if entry.default is None else f" Default: ``{entry.default!r}``."
        body = f"{entry.help}{default}{' CLI: ``' + entry.flag + '``.' if entry.flag else ''}"
        lines.extend(
            textwrap.wrap(body, 92, initial_indent=indent * 2, subsequent_indent=indent * 2)
        )
    return "\n".join(lines)


def settings_markdown() -> str:
    """The settings as a Markdown table (the settings section of ``docs/evaluation.md``)."""
    rows = ["| Python keyword | `samcam evaluate` | default | group | what it does |"]
    rows.append("| --- | --- | --- | --- | --- |")
    for entry in SETTINGS:
        flag = f"`{entry.flag}`" if entry.flag else "(Python only)"
        default = "" if entry.default is None else f"`{entry.default!r}`"
        text = entry.help.replace("|", "\\|").replace("<", "&lt;")
        rows.append(f"| `{entry.name}` | {flag} | {default} | {entry.group} | {text} |")
    return "\n".join(rows)
