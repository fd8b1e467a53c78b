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
    import ast
    from pathlib import Path

    import napari_samcam

    package = Path(napari_samcam.__file__).parent
    imports: dict[str, set[str]] = {}
    for name in ("segment", "prompts", "text", "metrics"):
        tree = ast.parse((package / f"{name}.py").read_text())
        imports[name] = {
            (node.module or "").lstrip(".").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1
        }
    assert not imports["segment"] & {"text", "prompts", "metrics"}, imports["segment"]
    assert "text" not in imports["prompts"], imports["prompts"]
    assert not imports["metrics"] & {"segment", "text", "prompts"}, imports["metrics"]
