"""The metrics written on boxes stay inside the image and take a colour readable on it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.layers import Image

from napari_samcam._napari._result_layers import label_placement, text_style


def _image():
    data = np.full((100, 120), 10, np.uint8)
    data[:50] = 220  # bright upper half, dark lower half
    return Image(data, contrast_limits=(0, 255))


def _rect(r0, c0, r1, c1, lead=()):
    return np.array([[*lead, r0, c0], [*lead, r0, c1], [*lead, r1, c1], [*lead, r1, c0]], float)


def test_a_label_above_a_box_reads_on_the_bright_image_there():
    placement = label_placement(_image(), [_rect(40, 20, 70, 60)], below=False)
    assert placement == {"below": False, "bright": True}  # rows 24-40: bright
    assert text_style(2, **placement)["color"] == "navy"


def test_a_label_below_a_box_on_the_dark_image_stays_yellow_orange():
    placement = label_placement(_image(), [_rect(40, 20, 60, 60)], below=True)
    assert placement == {"below": True, "bright": False}  # rows 60-76: dark
    style = text_style(2, **placement)
    assert style["color"] == "orange" and style["anchor"] == "lower_left"


def test_a_box_at_the_top_edge_gets_its_label_below_it():
    placement = label_placement(_image(), [_rect(3, 20, 30, 60)], below=False)
    assert placement["below"] is True  # above it, the label would leave the image
    assert placement["bright"] is True  # rows 30-46
    assert text_style(2, **placement)["anchor"] == "lower_left"


def test_a_box_at_the_bottom_edge_gets_its_label_above_it():
    placement = label_placement(_image(), [_rect(70, 20, 96, 60)], below=True)
    assert placement == {"below": False, "bright": False}  # rows 54-70: dark


def test_the_slice_of_a_volume_box_decides():
    volume = np.stack([np.full((100, 120), 230, np.uint8), np.full((100, 120), 5, np.uint8)])
    image = Image(volume, contrast_limits=(0, 255))
    assert label_placement(image, [_rect(40, 20, 60, 60, (0,))], below=False)["bright"]
    assert not label_placement(image, [_rect(40, 20, 60, 60, (1,))], below=False)["bright"]
