"""The one rule for how a map is laid out and named (tb_xai.layout), as the plugin sends it."""

import numpy as np
import pytest

from tb_xai import layout
from tb_xai.modalities import IMAGE, SEQUENCE, TABULAR


def test_map_shape_drops_image_channels_only():
    assert layout.map_shape([8, 8, 3], IMAGE) == (8, 8)
    assert layout.map_shape([8, 8], IMAGE) == (8, 8)
    assert layout.map_shape([20, 4], SEQUENCE) == (20, 4)
    assert layout.map_shape([30], TABULAR) == (30,)


@pytest.mark.parametrize("shape, modality, names, kind, picture, first, last", [
    ([2], TABULAR, ["age", "bmi"], "vector", False, "age", "bmi"),
    ([3], TABULAR, ["age", "bmi"], "vector", False, "feature 0", "feature 2"),  # not one name per element
    ([4, 5, 3], IMAGE, (), "picture", True, "pixel (0, 0)", "pixel (3, 4)"),
    ([7], SEQUENCE, (), "sequence", False, "position 0", "position 6"),
    ([6, 2], SEQUENCE, (), "sequence", True, "position 0, channel 0", "position 5, channel 1"),
    ([2, 3, 4, 5], IMAGE, (), "grid", False, "0,0,0,0", "1,2,3,4"),  # a 4-D "image" attribution keeps its axes
])
def test_layouts_by_modality_and_shape(shape, modality, names, kind, picture, first, last):
    got = layout.map_layout(shape, modality, names)
    assert (got.kind, got.picture) == (kind, picture)
    every = got.names()
    assert len(every) == got.size == int(np.prod(got.map_shape))
    assert (every[0], every[-1]) == (first, last)
    assert [got.name(i) for i in range(got.size)] == every
    sent = got.to_json()
    assert sent["map_shape"] == list(got.map_shape) and sent["kind"] == kind and sent["picture"] is picture
    assert (sent["names"] is None) == (len(got.map_shape) != 1) == (sent["name_pattern"] is not None)


def test_a_pattern_names_row_major_elements_as_the_http_api_documents():
    got = layout.map_layout([3, 4, 1], IMAGE)
    assert got.to_json()["name_pattern"] == "pixel ({0}, {1})"
    # flat index 6 of a 3x4 map is row 1, column 2
    assert got.name(6) == "pixel (1, 2)" == got.names()[6]
    with pytest.raises(IndexError, match=r"element 12 is out of range for a map of shape \(3, 4\)"):
        got.name(12)


def test_a_sequence_keeps_its_position_names_when_features_are_named():
    assert layout.element_names([3], SEQUENCE, ["t0", "t1", "t2"]) == ["t0", "t1", "t2"]
