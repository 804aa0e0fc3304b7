"""The base every attribution method shares: one signature, one batching path, one validation hook."""

from __future__ import annotations

import abc
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tb_xai import metadata
from tb_xai.methods.batching import map_batches
from tb_xai.probe import ProbeSet


def check_positive_int(value: Any, what: str, minimum: int = 1, *, alternative: str = "") -> int:
    """`value` as an int if it is an integer >= `minimum` (bools are not), else ValueError naming it.

    Args:
        value: the value to check.
        what: its name in the message.
        minimum: the smallest value allowed.
        alternative: what the caller also accepts instead (checked by the caller), for the message:
            "None" gives "batch_size must be None or an integer >= 1; received: 0".

    Example:
        >>> check_positive_int(16, "steps", minimum=2)
        16
    """
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        accepted = f"{alternative} or an integer" if alternative else "an integer"
        raise ValueError(f"{what} must be {accepted} >= {minimum}; received: {value!r}")
    return int(value)


def perturbation_map_shape(shape: Tuple[int, ...], modality: Optional[str] = None) -> Tuple[int, ...]:
    """The map a perturbation method gives one probe input of `shape`: a value per column (tabular), per
    pixel (an (H, W, C) image), or per step of the first axis (a sequence); `modality` as `ProbeSet.modality`."""
    shape = tuple(int(d) for d in shape)
    if modality is None:
        modality = ProbeSet([np.empty((0,) + shape)], ["input"], "array").modality(0)
    if modality == metadata.TABULAR:
        return shape
    return shape[:2] if modality == metadata.IMAGE else shape[:1]


class AttributionMethod(abc.ABC):
    """An attribution method: `attribute(inputs, target)` returns one array per input, one row per probe.

    Subclasses set `name` (the registry name), implement `_attribute` for a slice of probes, and declare
    how many model rows one probe costs (`rows_per_probe`) so the shared batching keeps every model call
    within the adapter's `batch_size`.

    Lifecycle: `setup(model, probe)` once before the first logged step — it validates everything it can
    and raises ValueError on a configuration mistake — then `attribute` at every logged step.

    Args:
        name: the name logged for this configured method; defaults to the registry name. Give two
            configurations of one method different names to log both.
    """

    name: str = ""
    #: False for methods that only evaluate the model (perturbation methods); those accept integer inputs.
    requires_gradients: bool = True
    #: Probe modalities the method can explain (see `ProbeSet.modality`).
    modalities: Tuple[str, ...] = metadata.MODALITIES

    def __init__(self, name: Optional[str] = None):
        self.name = metadata.check_name(name or type(self).name, "method name")
        self.model = None
        self.probe: Optional[ProbeSet] = None

    def config(self) -> Dict[str, Any]:
        """The parameters logged with the attributions (JSON-serializable)."""
        return {}

    def rows_per_probe(self) -> int:
        """Model rows evaluated per probe by one call of `_attribute`."""
        return 1

    def attribution_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """Shape of one probe's attribution for an input of `input_shape` (default: the same)."""
        return input_shape

    def setup(self, model, probe: ProbeSet) -> None:
        """Binds the method to a model adapter and probe set; validates them."""
        for i, name in enumerate(probe.names):
            if probe.modality(i) not in self.modalities:
                raise ValueError(
                    f"{self.name} explains {' or '.join(self.modalities)} inputs, but probe input {name!r} has "
                    f"shape {probe.inputs[i].shape} ({probe.modality(i)})"
                )
        if self.requires_gradients:
            for name, array in zip(probe.names, probe.inputs):
                if not (np.issubdtype(array.dtype, np.floating)):
                    raise ValueError(
                        f"{self.name} needs gradients, but probe input {name!r} has dtype {array.dtype}: "
                        "integer inputs (token ids, categories) have no gradient. Explain them with a "
                        "perturbation method (kernel_shap, lime, occlusion), or pass float inputs."
                    )
        self.model = model
        self.probe = probe

    def attribute(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        """Attributions for `inputs` (one array per model input) explaining class `target[i]` of row i."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: call setup(model, probe) before attribute()")
        per_call = max(1, self.model.batch_size // max(1, self.rows_per_probe()))
        arrays = list(inputs) + [np.asarray(target, dtype=np.int32)]
        return map_batches(lambda *a: self._attribute(list(a[:-1]), a[-1]), arrays, per_call)

    @abc.abstractmethod
    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        """Attributions for a slice of probes whose model rows fit in one batch."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}(name={self.name!r}{', ' if params else ''}{params})"
