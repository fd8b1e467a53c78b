"""Dice of LiteMedSAM's box-prompted masks with and without contrast pre-processing, per shape.

The masks come from a held-out run of ``scripts/measure_region_trust.py``, which prompts every
positive phantom's box annotation in zoom mode (``context=2.5``) without pre-processing and with
each of ``clahe`` and ``gamma:0.5`` (rows ``sam-box``, ``sam-box+clahe``, ``sam-box+gamma:0.5``)::

    python scripts/measure_region_trust.py heldout --seeds 202 303 --n 60 --out heldout.csv
    python scripts/measure_preprocess.py heldout.csv

Prints per option the mean Dice and, against no pre-processing, the mean paired difference with
a percentile-bootstrap 95 % CI (1000 resamples, seed 0) and how many items got better / worse,
overall and per shape class.
"""

from __future__ import annotations

import sys

import pandas as pd

OPTIONS = ("clahe", "gamma:0.5")


def table(paths: list[str]) -> None:
    from napari_samcam.agreement import bootstrap_ci

    data = pd.concat([pd.read_csv(p) for p in paths])
    data = data[data["source"].str.startswith("sam-box")]
    wide = data.pivot_table(index=["index", "shape"], columns="source", values="dice")
    groups = [("all", wide), *wide.groupby(level="shape")]
    print("| shape | n | option | mean Dice | Dice − none [95 % CI] | better / worse |")
    print("|---|---|---|---|---|---|")
    for name, frame in groups:
        print(f"| {name} | {len(frame)} | none | {frame['sam-box'].mean():.3f} | — | — |")
        for option in OPTIONS:
            d = (frame[f"sam-box+{option}"] - frame["sam-box"]).to_numpy()
            ci = bootstrap_ci(d, n_resamples=1000, seed=0)
            print(
                f"| {name} | {len(frame)} | {option} | {frame[f'sam-box+{option}'].mean():.3f} | "
                f"{ci.estimate:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] | "
                f"{int((d > 0).sum())} / {int((d < 0).sum())} |"
            )


if __name__ == "__main__":
    table(sys.argv[1:])
    sys.exit(0)
