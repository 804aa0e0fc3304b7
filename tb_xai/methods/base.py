"""The base every attribution method shares: one signature, one batching path, one validation hook."""

from __future__ import annotations

import abc
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tb_xai import metadata
from tb_xai.batching import map_batches
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
    #: True for a method whose attribution asks the adapter's `gradients` at the probe itself for the step's
    #: targets (saliency): the callback then computes those with the step's predictions, in one model call.
    probe_gradients: bool = False

    def __init__(self, name: Optional[str] = None):
        self.name = metadata.check_name(name or type(self).name, "method name")
        self.model = None
        self.probe: Optional[ProbeSet] = None
        self.space: Optional["GradientSpace"] = None

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
            if probe.explained(i) and probe.modality(i) not in self.modalities:
                raise ValueError(
                    f"{self.name} explains {' or '.join(self.modalities)} inputs, but probe input {name!r} has "
                    f"shape {probe.inputs[i].shape} ({probe.modality(i)})"
                )
        if self.requires_gradients:
            for name, array in zip(probe.names, probe.inputs):
                if name in probe.text or name in probe.held:
                    continue  # explained at its Embedding's output (text), or not at all (held)
                if not (np.issubdtype(array.dtype, np.floating)):
                    raise ValueError(
                        f"{self.name} needs gradients, but probe input {name!r} has dtype {array.dtype}: "
                        "integer inputs that feed no Embedding layer (categories) have no gradient. Explain them "
                        "with a perturbation method (kernel_shap, lime, occlusion), or pass float inputs; token ids "
                        "that feed an Embedding are text, explained at its output."
                    )
        self.model = model
        self.probe = probe
        #: where a gradient method differentiates each input (text inputs: at their Embedding's output).
        self.space = GradientSpace(model, probe) if self.requires_gradients else None

    def attribute(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        """Attributions for `inputs` (one array per model input) explaining class `target[i]` of row i."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: call setup(model, probe) before attribute()")
        per_call = max(1, self.model.batch_size // max(1, self.rows_per_probe()))
        arrays = list(inputs) + [np.asarray(target, dtype=np.int32)]
        return map_batches(lambda *a: self._attribute(list(a[:-1]), a[-1]), arrays, per_call)

    @abc.abstractmethod
    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[Optional[np.ndarray]]:
        """Attributions for a slice of probes whose model rows fit in one batch (None for an input the method
        does not explain)."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}(name={self.name!r}{', ' if params else ''}{params})"


class GradientSpace:
    """Where a gradient method differentiates each probe input: a float input at its own values, a text input at
    the output of its Embedding layer call ([rows, T, D] embeddings; the model's masks still follow the real ids),
    a held input (a padding mask, segment ids) nowhere.

    A gradient method moves, perturbs and multiplies `points` (one float32 array per input, None for a held
    input), asks `gradients` at them, and `reduce`s its result to the map logged per input: unchanged for a float
    input, one value per token for a text input (exactly 0 at padding), None for a held input. A model without
    text inputs costs nothing more than the adapter's input gradients.
    """

    def __init__(self, model, probe: ProbeSet):
        self.model = model
        self.probe = probe
        self.text = [probe.text.get(name) for name in probe.names]
        self.held = [name in probe.held for name in probe.names]
        self.calls = [model.embedding_call(name) if t is not None else None for name, t in zip(probe.names, self.text)]
        self.has_text = any(t is not None for t in self.text)

    def is_text(self, i: int) -> bool:
        return self.text[i] is not None

    def points(self, inputs: Sequence[np.ndarray]) -> List[Optional[np.ndarray]]:
        """Each input's coordinates: float32 values, embeddings for a text input, None for a held input."""
        out: List[Optional[np.ndarray]] = []
        for i, x in enumerate(inputs):
            if self.held[i]:
                out.append(None)
            elif self.text[i] is not None:
                out.append(self.model.embeddings(self.calls[i], inputs))
            else:
                out.append(np.asarray(x, dtype=np.float32))
        return out

    def embed(self, inputs: Sequence[np.ndarray], i: int, ids: np.ndarray) -> np.ndarray:
        """The embeddings of text input `i` with its ids replaced by `ids` (other inputs as in `inputs`)."""
        changed = list(inputs)
        changed[i] = np.asarray(ids).astype(np.asarray(inputs[i]).dtype)
        return self.model.embeddings(self.calls[i], changed)

    def gradients(self, inputs: Sequence[np.ndarray], points: Sequence[Optional[np.ndarray]], target: np.ndarray):
        """(selected output per row, d output / d point per input, None for a held input) at `points`; `inputs`
        gives the rows' token ids and held inputs (the masks)."""
        if not self.has_text:
            return self.model.gradients(list(points), target)
        xs = [x if (self.held[i] or self.text[i] is not None) else p for i, (x, p) in enumerate(zip(inputs, points))]
        text = [i for i, t in enumerate(self.text) if t is not None]
        selected, embedding_grads, input_grads = self.model.joint_gradients(
            [self.calls[i] for i in text], xs, [points[i] for i in text], target)
        grads = list(input_grads)
        for i, g in zip(text, embedding_grads):
            grads[i] = g
        return selected, [None if self.held[i] else g for i, g in enumerate(grads)]

    def padding(self, inputs: Sequence[np.ndarray], i: int) -> np.ndarray:
        """bool [rows, T]: the padding positions of text input `i` in `inputs`."""
        text = self.text[i]
        mask = None
        if text.padding_input is not None:
            mask = inputs[self.probe.names.index(text.padding_input)]
        return text.padding_of(inputs[i], mask)

    def reduce(self, values: Sequence[Optional[np.ndarray]], inputs: Sequence[np.ndarray],
               how: str = "sum") -> List[Optional[np.ndarray]]:
        """The logged maps: a text input's [rows, T, D] values reduced over the embedding dimension ("sum":
        signed sum, which keeps completeness; "norm": L2 norm) and set to exactly 0 at padding."""
        out: List[Optional[np.ndarray]] = []
        for i, v in enumerate(values):
            if self.held[i] or v is None:
                out.append(None)
            elif self.text[i] is not None:
                v = np.asarray(v, dtype=np.float32)
                per_token = v.sum(axis=-1) if how == "sum" else np.sqrt(np.square(v).sum(axis=-1))
                out.append(np.where(self.padding(inputs, i), np.float32(0), per_token).astype(np.float32))
            else:
                out.append(v)
        return out
