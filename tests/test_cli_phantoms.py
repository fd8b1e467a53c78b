"""``samcam phantoms``: a thin command over ``write_phantoms``."""

from __future__ import annotations

import csv

import pytest

from napari_samcam.cli import main


def _rows(folder):
    with open(folder / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_phantoms_command_writes_a_manifest(tmp_path, capsys):
    out = tmp_path / "ph"
    args = ["phantoms", "--n", "3", "--seed", "4", "--size", "96", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert "manifest.csv" in capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 3
    for row in rows:
        assert (out / row["image"]).is_file()
        if row["label"] == "1":
            assert (out / row["mask"]).is_file() and row["box_r0"] != ""
    first = (out / rows[0]["image"]).read_bytes()
    # an existing set is not replaced without --overwrite
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert (out / rows[0]["image"]).read_bytes() == first  # same seed, same images


def test_phantoms_options(tmp_path):
    out = tmp_path / "ph"
    args = ["phantoms", "--n", "4", "--size", "96", "--out", str(out), "--quiet"]
    args += ["--positive-fraction", "1", "--marker", "always"]
    assert main(args) == 0
    rows = _rows(out)
    assert {row["label"] for row in rows} == {"1"}
    assert {row["marker"] for row in rows} == {"1"}


def test_phantoms_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["phantoms", "--n", "0", "--out", str(tmp_path / "x"), "--quiet"])
    assert exit_info.value.code == 2
    assert "argument --n: '0' is not a positive whole number" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_phantoms_shapes_option(tmp_path, capsys):
    out = tmp_path / "ph"
    args = ["phantoms", "--n", "3", "--size", "128", "--out", str(out), "--quiet"]
    assert main([*args, "--positive-fraction", "1", "--shapes", "tube,heart"]) == 0
    assert [row["lesion_kind"] for row in _rows(out)] == ["tube", "heart", "tube"]
    with pytest.raises(SystemExit):
        main([*args, "--shapes", "tub", "--overwrite"])
    assert "tube" in capsys.readouterr().err
