import subprocess
import sys

from napari_samcam.cli import main


def test_core_and_cli_do_not_import_napari_or_qt():
    code = (
        "import sys, napari_samcam, napari_samcam.cli, napari_samcam.segment, "
        "napari_samcam.saliency, napari_samcam.images\n"
        "from napari_samcam.cli import build_parser; build_parser()\n"
        "napari_samcam.load_segmenter; napari_samcam.explain\n"
        "bad = [m for m in ('napari', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'magicgui') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_subcommand_has_help(capsys):
    from napari_samcam.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"explain", "segment"} <= set(commands)
    for name in commands:
        try:
            main([name, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        assert "usage: samcam " + name in capsys.readouterr().out


def test_module_dependencies_point_one_way():
    """segment knows nothing of text prompts or saliency prompts (both are built on it)."""
    from test_import_graph import import_graph

    graph = import_graph()

    def uses(name: str) -> set[str]:
        """The top-level modules of the package that ``name`` (a module or package) imports."""
        prefix = f"napari_samcam.{name}"
        found = set()
        for module, targets in graph.items():
            if module == prefix or module.startswith(prefix + "."):
                found |= {t.split(".")[1] for t in targets if t.count(".") >= 1}
        return found - {name}

    assert "napari_samcam.metrics.definitions" in graph  # a package: its modules are walked
    text_side = {"text", "clip_regions", "region_proposals"}
    assert not uses("segment") & (text_side | {"box_prompts", "metrics"}), uses("segment")
    assert not uses("box_prompts") & text_side, uses("box_prompts")
    assert not uses("region_proposals") & {"clip_regions", "text"}, uses("region_proposals")
    assert not uses("metrics") & (text_side | {"segment", "box_prompts"}), uses("metrics")
