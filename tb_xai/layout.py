"""How one probe's attribution map is laid out and what its elements are called.

The one owner of that rule: the plugin sends a :class:`MapLayout` with every answer holding maps, and
``tb_xai.load`` (``ranking``, ``map_names``, ``to_dataframe``) and ``tb_xai.plot`` name elements through it, so
the dashboard, the CSV export, the DataFrame and the figures show the same strings.

A *map* is a probe's attribution after channel reduction: an image ``[H, W, C]`` becomes ``[H, W]``, every other
shape is kept (see :func:`map_shape`).

Example:
    >>> layout = map_layout([2, 3, 1], "image")
    >>> layout.kind, layout.map_shape, layout.names()[:2]
    ('picture', (2, 3), ['pixel (0, 0)', 'pixel (0, 1)'])
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional, Sequence

import numpy as np

from tb_xai.modalities import IMAGE, SEQUENCE, TABULAR, TEXT

VECTOR, PICTURE, SEQUENCE_KIND, GRID, TEXT_KIND = "vector", "picture", "sequence", "grid", "text"
#: The layout kinds, as the HTTP API sends them (``layout.kind``).
KINDS = (VECTOR, PICTURE, SEQUENCE_KIND, GRID, TEXT_KIND)

_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def map_shape(attribution_shape: Sequence[int], modality: str) -> tuple:
    """Shape of one probe's map: an image ``[H, W, C]`` loses its channel axis, every other shape is kept.

    Args:
        attribution_shape: the per-probe attribution shape.
        modality: the logged modality (one of `tb_xai.modalities.MODALITIES`).
    """
    shape = tuple(int(d) for d in attribution_shape)
    if modality == IMAGE and len(shape) == 3:
        return shape[:2]
    return shape


@dataclasses.dataclass(frozen=True)
class MapLayout:
    """A map's layout: its `kind`, `map_shape`, and the rule naming its elements.

    A 1-D map carries its element names (`vector_names`); a map of more axes, and a text map (whose positions
    hold another token in each probe), a `name_pattern` in which ``{d}`` stands for the element's index along
    axis ``d``.
    """

    kind: str
    map_shape: tuple
    vector_names: Optional[tuple] = None
    name_pattern: Optional[str] = None

    @property
    def picture(self) -> bool:
        """Whether the map is drawn as a 2-D picture (else one row per element, flattened row-major)."""
        return len(self.map_shape) == 2

    @property
    def size(self) -> int:
        return int(np.prod(self.map_shape, dtype=np.int64))

    def names(self) -> list:
        """Every element's name, flattened row-major."""
        if self.vector_names is not None:
            return list(self.vector_names)
        return [format_name(self.name_pattern, index) for index in np.ndindex(*self.map_shape)]

    def name(self, flat_index: int) -> str:
        """The name of the element at `flat_index` (row-major)."""
        if not 0 <= flat_index < self.size:
            raise IndexError(f"element {flat_index} is out of range for a map of shape {self.map_shape}")
        if self.vector_names is not None:
            return self.vector_names[flat_index]
        return format_name(self.name_pattern, np.unravel_index(flat_index, self.map_shape))

    def to_json(self) -> dict:
        """The ``layout`` object of the HTTP API (docs/http_api.md)."""
        return {
            "kind": self.kind,
            "map_shape": list(self.map_shape),
            "picture": self.picture,
            "names": None if self.vector_names is None else list(self.vector_names),
            "name_pattern": self.name_pattern,
        }


def format_name(pattern: str, index: Sequence[int]) -> str:
    """`pattern` with every ``{d}`` replaced by ``index[d]``: the one way a name pattern is applied."""
    return _PLACEHOLDER.sub(lambda match: str(int(index[int(match.group(1))])), pattern)


def map_layout(attribution_shape: Sequence[int], modality: str, feature_names: Sequence[str] = ()) -> MapLayout:
    """The layout of the map of an attribution of `attribution_shape`.

    Args:
        attribution_shape: the per-probe attribution shape as logged.
        modality: the logged modality.
        feature_names: the feature names logged with the probe, if any (used when there is one per element).
    """
    return layout_of_map(map_shape(attribution_shape, modality), modality, feature_names)


def layout_of_map(shape: Sequence[int], modality: str, feature_names: Sequence[str] = ()) -> MapLayout:
    """The layout of a map (or any per-probe array) of `shape`; see :func:`map_layout`."""
    shape = tuple(int(d) for d in shape)
    if modality == TEXT and len(shape) == 1:
        # One value per token position; the tokens themselves are per probe, so the names are the positions'.
        return MapLayout(TEXT_KIND, shape, name_pattern="token {0}")
    if modality == SEQUENCE:
        kind = SEQUENCE_KIND
    elif modality == IMAGE and len(shape) == 2:
        kind = PICTURE
    elif modality in (TABULAR, "") and len(shape) == 1:
        kind = VECTOR
    else:
        kind = GRID
    if len(shape) == 1:
        if len(feature_names) == shape[0]:
            names = tuple(str(name) for name in feature_names)
        else:
            word = "position" if kind == SEQUENCE_KIND else "feature"
            names = tuple(f"{word} {i}" for i in range(shape[0]))
        return MapLayout(kind, shape, vector_names=names)
    if kind == PICTURE:
        pattern = "pixel ({0}, {1})"
    elif kind == SEQUENCE_KIND and len(shape) == 2:
        pattern = "position {0}, channel {1}"
    else:
        pattern = ",".join(f"{{{axis}}}" for axis in range(len(shape)))
    return MapLayout(kind, shape, name_pattern=pattern)


def element_names(shape: Sequence[int], modality: str, feature_names: Sequence[str] = ()) -> list:
    """Names of the elements of a map of `shape`, flattened row-major (:func:`layout_of_map`'s names).

    Example:
        >>> element_names([2, 2], "image")
        ['pixel (0, 0)', 'pixel (0, 1)', 'pixel (1, 0)', 'pixel (1, 1)']
    """
    return layout_of_map(shape, modality, feature_names).names()
