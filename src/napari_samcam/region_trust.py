"""How far to trust a SAM region, from what SAM and the prompt box already say (no ground truth).

A box-prompted SAM mask can fail in ways its own score hides: on an enlarged heart LiteMedSAM
outlines one side only; inside the box of a thin tube it fills whatever blob is there. What a
reader can check without the truth:

``iou``        SAM's own predicted IoU of the mask
``stability``  overlap of the mask at logit threshold ``+1`` with the mask at ``-1`` (SAM's
               stability score): an unstable mask changes with the threshold
``box_span``   the smaller of the mask's bounding-box height and width over the prompt box's:
               a human box is drawn around the whole finding, so a mask spanning a small part of
               the box has missed some of it
``box_fill``   mask area over box area
``outside``    share of the mask outside the prompt box (a leak into the neighbourhood)

:func:`problems` names the checks a mask fails under a :class:`TrustRule`; :func:`decide` picks
among SAM's candidate masks (its single output and its three multimask outputs) the best one
that passes, or none, in which case the caller re-prompts or falls back to the box. Everything
here is plain numpy on masks and numbers; :mod:`napari_samcam.trusted_box` runs SAM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "Candidate",
    "Decision",
    "TrustRule",
    "decide",
    "mask_signals",
    "problems",
    "quality_of_region",
]


@dataclass(frozen=True)
class TrustRule:
    """Thresholds of a trustworthy box-prompted mask.

    The defaults were chosen on shape-diverse phantoms of one seed (``docs/evaluation.md``,
    "Regions you can trust") and are reported on another.

    Attributes
    ----------
    min_iou : float
        Lowest predicted IoU.
    min_stability : float
        Lowest stability score.
    min_span : float
        Lowest ``box_span``.
    min_fill, max_fill : float
        Range of ``box_fill``.
    max_outside : float
        Highest share of the mask outside the box.
    reprompt_context : float or None
        When no candidate passes, prompt the box again with this zoom factor (one more encoder
        run) before falling back to the box; None: fall back at once.
    """

    min_iou: float = 0.5
    min_stability: float = 0.35
    min_span: float = 0.6
    min_fill: float = 0.3
    max_fill: float = 0.98
    max_outside: float = 0.1
    reprompt_context: float | None = 1.5


@dataclass
class Candidate:
    """One mask SAM proposed for a box, with its signals.

    ``output`` is 0 for SAM's single-mask answer and 1-3 for its multimask outputs.
    """

    mask: np.ndarray
    output: int
    iou: float
    stability: float
    context: float | None
    signals: dict

    def summary(self) -> dict:
        """The candidate's numbers, JSON-friendly and rounded."""
        out = {"output": self.output, "context": self.context}
        out["iou"] = round(float(self.iou), 4)
        out["stability"] = round(float(self.stability), 4)
        out.update({k: round(float(v), 4) for k, v in self.signals.items() if k != "area"})
        out["area"] = int(self.signals["area"])
        return out


@dataclass
class Decision:
    """What the region source did: ``choice`` indexes the candidates (None: no mask passed)."""

    choice: int | None
    action: str
    reason: str


def mask_signals(mask: np.ndarray, box: Sequence[int]) -> dict:
    """``area``, ``box_fill``, ``box_span`` and ``outside`` of a mask against its prompt box.

    Parameters
    ----------
    mask : numpy.ndarray
        bool ``(H, W)``.
    box : sequence of int
        ``(row0, col0, row1, col1)``, end exclusive.

    Returns
    -------
    dict
        ``box_span`` and ``box_fill`` are 0 and ``outside`` is 1 for an empty mask.
    """
    r0, c0, r1, c1 = (int(v) for v in box)
    area = int(np.count_nonzero(mask))
    box_area = max((r1 - r0) * (c1 - c0), 1)
    if area == 0:
        return {"area": 0, "box_fill": 0.0, "box_span": 0.0, "outside": 1.0}
    inside = int(np.count_nonzero(mask[r0:r1, c0:c1]))
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    height = min(rows[-1] + 1, r1) - max(rows[0], r0)
    width = min(cols[-1] + 1, c1) - max(cols[0], c0)
    span = min(max(height, 0) / max(r1 - r0, 1), max(width, 0) / max(c1 - c0, 1))
    return {
        "area": area,
        "box_fill": inside / box_area,
        "box_span": float(span),
        "outside": 1.0 - inside / area,
    }


def problems(iou: float, stability: float, signals: dict, rule: TrustRule) -> list[str]:
    """The checks of ``rule`` a mask fails, as short reasons (empty: trusted).

    A NaN ``iou`` or ``stability`` (not known) is not held against the mask.
    """
    found = []
    if signals["area"] == 0:
        return ["empty mask"]
    if iou < rule.min_iou:
        found.append(f"predicted IoU {iou:.2f} < {rule.min_iou:g}")
    if stability < rule.min_stability:
        found.append(f"stability {stability:.2f} < {rule.min_stability:g}")
    if signals["box_span"] < rule.min_span:
        found.append(f"spans {signals['box_span']:.2f} of the box < {rule.min_span:g}")
    if signals["box_fill"] < rule.min_fill:
        found.append(f"fills {signals['box_fill']:.2f} of the box < {rule.min_fill:g}")
    if signals["box_fill"] > rule.max_fill:
        found.append(f"fills {signals['box_fill']:.2f} of the box > {rule.max_fill:g}")
    if signals["outside"] > rule.max_outside:
        found.append(f"{signals['outside']:.2f} of it outside the box > {rule.max_outside:g}")
    return found


def decide(candidates: Sequence[Candidate], rule: TrustRule) -> Decision:
    """Pick the best candidate that passes every check of ``rule``.

    Among the passing candidates the one with the highest ``iou * stability`` wins; SAM's
    single-mask answer (output 0) wins ties. With none passing, ``choice`` is None and the
    reason lists what the single-mask answer failed.
    """
    if not candidates:
        return Decision(None, "no candidate", "SAM gave no mask")
    failed = [problems(c.iou, c.stability, c.signals, rule) for c in candidates]
    passing = [i for i, f in enumerate(failed) if not f]
    if not passing:
        return Decision(None, "none passed", "; ".join(failed[0]))

    def merit(i: int) -> tuple:
        c = candidates[i]
        return (c.iou * c.stability, c.output == 0)

    best = max(passing, key=merit)
    chosen = candidates[best]
    if chosen.output == 0 and failed[0] == [] and best == 0:
        return Decision(best, "kept", "SAM's mask passed every check")
    action = f"chose output {chosen.output}"
    first_failed = failed[0] and "; ".join(failed[0])
    reason = f"SAM's mask: {first_failed}" if first_failed else "a better-scored output passed"
    if chosen.context != candidates[0].context:
        action = f"re-prompted (context {chosen.context:g}), {action}"
    return Decision(best, action, reason)


def quality_of_region(region, rule: TrustRule | None = None) -> dict:
    """Trust columns of any region: what the trusted source recorded, else what can be checked.

    For a ``sam-trust`` region the prompt's ``trust`` record is summarised (every box's action;
    NaN-free signals of the region's chosen masks); for another SAM region prompted by boxes the
    mask's signals against the union of its boxes, its predicted IoU and ``stability`` NaN
    (not recorded). Annotation regions get empty actions and no flag.

    Returns
    -------
    dict
        ``region_action``, ``region_reason``, ``region_stability``, ``region_box_fill``,
        ``region_box_span``, ``region_unreliable`` (bool: the region fails a check of ``rule``).
    """
    rule = rule or TrustRule()
    empty = {
        "region_action": "",
        "region_reason": "",
        "region_stability": math.nan,
        "region_box_fill": math.nan,
        "region_box_span": math.nan,
        "region_unreliable": False,
    }
    prompt = region.prompt or {}
    trust = prompt.get("trust")
    if trust:
        chosen = [t for t in trust if t.get("action") != "fell back to the box"]
        out = dict(empty)
        out["region_action"] = "; ".join(t["action"] for t in trust)
        out["region_reason"] = "; ".join(t["reason"] for t in trust)
        if chosen:
            out["region_stability"] = float(np.mean([t["stability"] for t in chosen]))
            out["region_box_fill"] = float(np.mean([t["box_fill"] for t in chosen]))
            out["region_box_span"] = float(np.mean([t["box_span"] for t in chosen]))
        return out
    boxes = prompt.get("boxes") or ([prompt["box"]] if prompt.get("box") is not None else None)
    if not region.source.startswith("sam-") or not boxes or len(boxes) != 1:
        return empty
    signals = mask_signals(region.mask, boxes[0])
    failed = problems(float(region.score), math.nan, signals, rule)
    out = dict(empty)
    out["region_action"] = "kept"
    out["region_reason"] = "; ".join(failed)
    out["region_box_fill"] = signals["box_fill"]
    out["region_box_span"] = signals["box_span"]
    out["region_unreliable"] = bool(failed)
    return out


def candidate_record(candidate: Candidate | None, decision: Decision) -> dict:
    """One box's entry in a trusted region's ``prompt["trust"]`` list."""
    record = {"action": decision.action, "reason": decision.reason}
    if candidate is not None:
        record.update(candidate.summary())
    return record


def rule_dict(rule: TrustRule) -> dict:
    """The rule as a JSON-friendly dict (recorded in the prompt)."""
    return asdict(rule)
