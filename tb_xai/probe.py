"""The probe set: the fixed inputs explained at every logged step, normalized once."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from tb_xai import metadata

ProbeLike = Union[np.ndarray, Sequence[np.ndarray], Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class TextInput:
    """How an integer token input of the probe is read; decided once the model is known (see the callback).

    Attributes:
        padding_id: the id at padding positions (None: no id marks padding).
        mask_id: the id a perturbation method puts in place of a removed token (by default `padding_id`).
        padding_input: the name of a padding-mask input whose zeros mark padding (keras_hub's
            ``padding_mask``), or None.
        vocabulary: token strings by id, or None (tokens are then written as ``#<id>``).
        embedding: the path of the Embedding layer call the gradient methods attribute at.
    """

    padding_id: Optional[int]
    mask_id: int
    padding_input: Optional[str] = None
    vocabulary: Optional[Tuple[str, ...]] = None
    embedding: Optional[str] = None

    def padding_of(self, ids: np.ndarray, padding_mask: Optional[np.ndarray] = None) -> np.ndarray:
        """bool, shaped like `ids`: the padding positions of these token ids (and of their padding mask, whose
        zeros mark padding, when `padding_input` names one)."""
        ids = np.asarray(ids)
        padding = np.zeros(ids.shape, dtype=bool) if self.padding_id is None else ids == self.padding_id
        if padding_mask is not None:
            padding = padding | (np.asarray(padding_mask).reshape(ids.shape) == 0)
        return padding

    def token(self, token_id: int) -> str:
        """The string of one token id."""
        token_id = int(token_id)
        if self.vocabulary is not None and 0 <= token_id < len(self.vocabulary):
            return self.vocabulary[token_id]
        return f"#{token_id}"


@dataclasses.dataclass
class ProbeSet:
    """Probe inputs as a list of arrays (one per model input), with names and optional labels.

    `structure` remembers how the user passed them ("array", "list" or "dict") so the model is called with
    the same structure it was trained with.
    """

    inputs: List[np.ndarray]
    names: List[str]
    structure: str
    labels: Optional[np.ndarray] = None
    feature_names: Optional[List[str]] = None
    class_names: Optional[List[str]] = None
    #: the text inputs (input name -> how its token ids are read); empty until the callback knows the model.
    text: Dict[str, TextInput] = dataclasses.field(default_factory=dict)
    #: inputs that follow a text input and are never explained themselves (padding masks, segment ids).
    held: Tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.inputs[0])

    def feature_shape(self, i: int = 0) -> Tuple[int, ...]:
        return tuple(self.inputs[i].shape[1:])

    def modality(self, i: int = 0) -> str:
        """"text" for a text input (see `text`), else "tabular" for vectors, "image" for (H, W, C) with C in
        1..4, "sequence" otherwise."""
        if self.names[i] in self.text:
            return metadata.TEXT
        shape = self.feature_shape(i)
        if len(shape) == 1:
            return metadata.TABULAR
        if len(shape) == 3 and shape[-1] in (1, 3, 4):
            return metadata.IMAGE
        return metadata.SEQUENCE

    def explained(self, i: int) -> bool:
        """Whether the methods explain input `i` (held inputs follow a text input instead)."""
        return self.names[i] not in self.held

    def padding(self, i: int) -> Optional[np.ndarray]:
        """bool [probes, positions]: the padding positions of text input `i` (None for other inputs)."""
        text = self.text.get(self.names[i])
        if text is None:
            return None
        mask = None if text.padding_input is None else self.inputs[self.names.index(text.padding_input)]
        return text.padding_of(self.inputs[i], mask)

    def tokens(self, i: int) -> Optional[np.ndarray]:
        """str [probes, positions]: text input `i`'s tokens as strings (None for other inputs)."""
        text = self.text.get(self.names[i])
        if text is None:
            return None
        ids = self.inputs[i]
        strings = [text.token(t) for t in ids.reshape(-1)]
        return np.asarray(strings, dtype=object).reshape(ids.shape)

    def feature_names_for(self, i: int) -> Optional[List[str]]:
        # Feature names describe the single tabular input; multi-input models name inputs instead.
        return self.feature_names if (i == 0 and self.modality(0) == metadata.TABULAR) else None

    def structured(self, arrays: Sequence[np.ndarray]):
        """Returns `arrays` in the structure the user gave the probe in."""
        if self.structure == "array":
            return arrays[0]
        if self.structure == "dict":
            return dict(zip(self.names, arrays))
        return list(arrays)


def as_probe_set(
    probe: ProbeLike,
    labels=None,
    feature_names: Optional[Sequence[str]] = None,
    class_names: Optional[Sequence[str]] = None,
) -> ProbeSet:
    """Validates and normalizes a user's probe set. Raises ValueError/TypeError naming the bad value."""
    if isinstance(probe, Mapping):
        if not probe:
            raise ValueError("probe is an empty dict; expected one array per model input")
        names = [metadata.check_name(str(k), "probe input name") for k in probe]
        arrays = [_as_array(v, f"probe[{k!r}]") for k, v in probe.items()]
        structure = "dict"
    elif isinstance(probe, (list, tuple)) and probe and not np.isscalar(probe[0]) and _is_arraylike(probe[0]) \
            and np.ndim(probe[0]) >= 2:
        arrays = [_as_array(v, f"probe[{i}]") for i, v in enumerate(probe)]
        names = [f"input_{i}" for i in range(len(arrays))]
        structure = "list"
    else:
        arrays = [_as_array(probe, "probe")]
        names = ["input"]
        structure = "array"
    for name, a in zip(names, arrays):
        if a.ndim < 2:
            raise ValueError(
                f"probe input {name!r} has shape {a.shape}; expected (probes, *features) with at least 2 "
                "dimensions (use x[None] for a single probe, x[:, None] for one feature)"
            )
        if len(a) == 0:
            raise ValueError(f"probe input {name!r} has no rows; expected at least one probe")
    n = len(arrays[0])
    for name, a in zip(names, arrays):
        if len(a) != n:
            raise ValueError(
                f"probe inputs must have the same number of rows; {names[0]!r} has {n}, {name!r} has {len(a)}"
            )
    label_array = None
    if labels is not None:
        label_array = np.asarray(labels)
        if label_array.ndim == 0 or len(label_array) != n:
            raise ValueError(
                f"labels has shape {label_array.shape} but the probe has {n} rows; expected {n} labels"
            )
    if feature_names is not None:
        feature_names = [str(f) for f in feature_names]
        if structure != "array" or arrays[0].ndim != 2:
            raise ValueError(
                "feature_names applies to a single tabular input of shape (probes, features); the probe has "
                f"shapes {[a.shape for a in arrays]}"
            )
        if len(feature_names) != arrays[0].shape[1]:
            raise ValueError(
                f"feature_names has {len(feature_names)} names but the probe has {arrays[0].shape[1]} features"
            )
    return ProbeSet(
        inputs=arrays,
        names=names,
        structure=structure,
        labels=label_array,
        feature_names=feature_names,
        class_names=[str(c) for c in class_names] if class_names is not None else None,
    )


def _is_arraylike(value) -> bool:
    return hasattr(value, "shape") or isinstance(value, (list, tuple))


def _as_array(value, what: str) -> np.ndarray:
    if hasattr(value, "element_spec") or _is_batch_stream(value):
        raise TypeError(
            f"{what} is a {type(value).__name__}; the probe is a fixed set of arrays explained at every step, so "
            "pass arrays: e.g. `x, y = next(iter(dataset.unbatch().batch(32)))`, then probe=x, labels=y"
        )
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"{what} could not be converted to an array: {error}") from error
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(
            f"{what} has dtype {array.dtype}; complex inputs are not supported (Keras layers compute on real "
            "numbers): pass the real and imaginary parts as separate channels"
        )
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{what} has dtype {array.dtype}; expected a numeric array")
    if np.issubdtype(array.dtype, np.floating):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            nan = int(np.count_nonzero(np.isnan(array)))
            raise ValueError(
                f"{what} holds {bad} non-finite value(s) ({nan} NaN, {bad - nan} inf) in {array.size}; every "
                "prediction and attribution of such a probe is meaningless. Replace or drop those rows"
            )
    return array


def _is_batch_stream(value) -> bool:
    """A generator, iterator or data loader: something that yields batches rather than holding them."""
    return (hasattr(value, "__next__") or hasattr(value, "__iter__") and not hasattr(value, "__len__")
            and not hasattr(value, "__array__") and not hasattr(value, "shape"))
