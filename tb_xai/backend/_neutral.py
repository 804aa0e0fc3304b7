"""Keras-level parts of a model adapter that no backend changes: input checks, head choice, layer lookup.

Interim module of the JAX and PyTorch adapters, to be replaced by the shared backend-neutral base.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import keras
import numpy as np

from tb_xai.batching import map_batches
from tb_xai.probe import ProbeSet

CONV_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)


class KerasModel:
    """The backend-independent half of an adapter. Subclasses call `_init_keras_level` then compile."""

    def _init_keras_level(self, model, probe: ProbeSet, output, batch_size: int) -> None:
        self.model = model
        self.probe = probe
        self.batch_size = int(batch_size)
        declared = self._declared_inputs()
        self._check_inputs(declared)
        self.dtypes = [self._input_dtype(i, a, declared) for i, a in enumerate(probe.inputs)]
        self.floating = [np.issubdtype(d, np.floating) for d in self.dtypes]

    def _input_dtype(self, i, array, declared) -> np.dtype:
        if declared is not None and i < len(declared):
            return np.dtype(keras.backend.standardize_dtype(declared[i].dtype))
        if np.issubdtype(array.dtype, np.floating) or array.dtype == bool:
            return np.dtype(np.float32)
        return np.dtype(array.dtype)

    def _declared_inputs(self):
        try:
            inputs = self.model.inputs
        except (AttributeError, ValueError):
            return None
        if not inputs:
            return None
        if self.probe.structure != "dict":
            return list(inputs)
        struct = getattr(self.model, "_inputs_struct", None)
        by_name = dict(struct) if isinstance(struct, dict) else {t.name: t for t in inputs}
        if sorted(by_name) != sorted(self.probe.names):
            raise ValueError(f"the probe has inputs {self.probe.names} but the model's inputs are {list(by_name)}")
        return [by_name[name] for name in self.probe.names]

    def _check_inputs(self, declared) -> None:
        if declared is None:
            return
        probe = self.probe
        if len(declared) != len(probe.inputs):
            raise ValueError(
                f"the probe has {len(probe.inputs)} input(s) {probe.names} but the model expects "
                f"{len(declared)} ({[t.name for t in declared]})"
            )
        for name, array, tensor in zip(probe.names, probe.inputs, declared):
            expected = tuple(tensor.shape)
            got = array.shape
            if not (len(expected) == len(got) and all(e is None or e == g for e, g in zip(expected[1:], got[1:]))):
                raise ValueError(f"probe input {name!r} has shape {got} but the model expects {expected}")

    def as_arrays(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        if len(inputs) != len(self.dtypes):
            raise ValueError(f"expected {len(self.dtypes)} input arrays; received {len(inputs)}")
        return [np.asarray(a, dtype=d) for a, d in zip(inputs, self.dtypes)]

    def pick_head(self, outputs, output: Optional[Union[str, int]]) -> Tuple[object, str]:
        """(key into the model's outputs or None, the head's name) for the requested output."""
        if isinstance(outputs, dict):
            names = list(outputs)
            if output is None:
                if len(names) > 1:
                    raise ValueError(
                        f"the model has {len(names)} outputs {names}; choose one with target=(output, class)"
                    )
                return names[0], names[0]
            key = names[output] if isinstance(output, int) and output < len(names) else output
            if key not in outputs:
                raise ValueError(f"target output {output!r} is not one of the model's outputs {names}")
            return key, str(key)
        if isinstance(outputs, (list, tuple)):
            names = list(getattr(self.model, "output_names", None) or [f"output_{i}" for i in range(len(outputs))])
            if output is None:
                if len(outputs) > 1:
                    raise ValueError(
                        f"the model has {len(outputs)} outputs {names}; choose one with target=(output, class)"
                    )
                return 0, names[0]
            if isinstance(output, str):
                if output not in names:
                    raise ValueError(f"target output {output!r} is not one of the model's outputs {names}")
                index = names.index(output)
            else:
                index = output
            if not 0 <= index < len(outputs):
                raise ValueError(
                    f"target output index {output} is out of range: the model has {len(outputs)} outputs {names}"
                )
            return index, names[index]
        single = self._single_output_name()
        if output not in (None, 0) and output != single:
            raise ValueError(f"target output {output!r} was given but the model has a single output {single!r}")
        return None, single

    def _single_output_name(self) -> str:
        names = getattr(self.model, "output_names", None)
        return str(names[0]) if names else "output"

    def conv_layers(self) -> List[Tuple[str, str]]:
        return [
            (layer.name, type(layer).__name__)
            for layer in self.model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, CONV_TYPES)
        ]

    def find_layer(self, name: str):
        for layer in self.model._flatten_layers(include_self=False, recursive=True):
            if layer.name == name:
                return layer
        raise ValueError(f"the model has no layer named {name!r}")

    def resize(self, maps: np.ndarray, size: Tuple[int, ...]) -> np.ndarray:
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim == 3:  # (rows, h, w)
            out = keras.ops.image.resize(maps[..., None], tuple(size), interpolation="bilinear",
                                         data_format="channels_last")
            return keras.ops.convert_to_numpy(out)[..., 0]
        if maps.ndim == 2:  # (rows, length)
            out = keras.ops.image.resize(maps[:, :, None, None], (size[0], 1), interpolation="bilinear",
                                         data_format="channels_last")
            return keras.ops.convert_to_numpy(out)[:, :, 0, 0]
        raise ValueError(f"maps must be (rows, h, w) or (rows, length); received shape {maps.shape}")


# The smallest padded call: fewer distinct shapes (each one an XLA compilation, about 0.3 s on a CPU) for
# little padding; the calls this small are setup probes and remainders.
MIN_PADDED_ROWS = 32


def padded_rows(n: int, size: int) -> int:
    """Rows a call of `n` rows (at most `size`) is padded to: the next power of two, at least
    `MIN_PADDED_ROWS`, capped at `size`.

    A shape-specialising compiler (XLA) then traces a call at most log2(size) - 4 times in a process, and
    never again between epochs, whatever the number of probes.
    """
    if n > size:
        raise ValueError(f"{n} rows exceed the call size {size}")
    return min(size, max(MIN_PADDED_ROWS, 1 << max(0, int(n - 1).bit_length())))


def map_padded(fn, arrays: Sequence[np.ndarray], size: int) -> List[np.ndarray]:
    """`map_batches` for compilers that specialise on shapes: each slice is zero-padded to `padded_rows`
    and the padding rows are cut from the outputs. Rows are independent, so padding changes no real row."""

    def padded(*parts):
        n = len(parts[0])
        rows = padded_rows(n, size)
        if rows != n:
            parts = [np.concatenate([p, np.zeros((rows - n,) + p.shape[1:], p.dtype)]) for p in parts]
        return [np.asarray(o)[:n] for o in fn(*parts)]

    return map_batches(padded, arrays, size)
