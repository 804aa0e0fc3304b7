"""Which output, and which class of it, each probe's attribution explains (captum's `target`, per step)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import numpy as np

TargetLike = Union[str, int, tuple]

_MODES = ("predicted", "label")


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """A parsed target.

    Attributes:
        output: the explained output head (name or index); None for single-output models.
        mode: "predicted" (the class the model predicts at that step), "label" (the probe's label) or
            "index" (always `index`).
        index: the fixed class index when mode is "index".
    """

    output: Optional[Union[str, int]] = None
    mode: str = "predicted"
    index: int = 0

    def as_config(self) -> dict:
        return {"output": self.output, "mode": self.mode, "index": self.index}


def parse_target(target: TargetLike) -> TargetSpec:
    """Parses "predicted", "label", a class index, or (output, one of those) for multi-output models."""
    output = None
    spec = target
    if isinstance(target, tuple):
        if len(target) != 2 or not isinstance(target[0], (str, int)) or isinstance(target[0], bool):
            raise ValueError(
                f"target tuple must be (output_name_or_index, class); received: {target!r}"
            )
        output, spec = target
    if isinstance(spec, str):
        if spec not in _MODES:
            raise ValueError(
                f"target must be 'predicted', 'label', a class index or (output, class); received: {spec!r}"
            )
        return TargetSpec(output=output, mode=spec)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        if spec < 0:
            raise ValueError(f"target class index must be >= 0; received: {spec}")
        return TargetSpec(output=output, mode="index", index=int(spec))
    raise ValueError(
        f"target must be 'predicted', 'label', a class index or (output, class); received: {target!r}"
    )


def check_target(spec: TargetSpec, n_outputs: int, labels: Optional[np.ndarray]) -> None:
    """Fails fast when the target cannot be resolved for an output with `n_outputs` units."""
    if spec.mode == "index" and spec.index >= n_outputs:
        raise ValueError(
            f"target class {spec.index} is out of range: the explained output has {n_outputs} unit(s), "
            f"so expected 0..{n_outputs - 1}"
        )
    if spec.mode == "label":
        if labels is None:
            raise ValueError("target='label' needs labels=...; none were given")
        classes = label_classes(labels, n_outputs)
        bad = classes[(classes < 0) | (classes >= max(n_outputs, 1))]
        if bad.size:
            raise ValueError(
                f"labels contain class {int(bad[0])}, out of range for an output with {n_outputs} unit(s)"
            )


def label_classes(labels: np.ndarray, n_outputs: int) -> np.ndarray:
    """Class index per probe from integer labels or one-hot rows; 0 for single-unit outputs."""
    labels = np.asarray(labels)
    if n_outputs == 1:
        return np.zeros(len(labels), dtype=np.int64)
    if labels.ndim == 2 and labels.shape[1] == n_outputs:
        return np.argmax(labels, axis=1)
    flat = labels.reshape(len(labels), -1)
    if flat.shape[1] != 1:
        raise ValueError(
            f"labels have shape {labels.shape}; expected class indices (probes,) or one-hot (probes, {n_outputs})"
        )
    if not np.all(np.equal(np.mod(flat, 1), 0)):
        raise ValueError("labels must be integer class indices to use target='label'")
    return flat[:, 0].astype(np.int64)


def resolve_targets(spec: TargetSpec, predictions: np.ndarray, labels: Optional[np.ndarray]) -> np.ndarray:
    """The class index explained for each probe at this step, int32 of shape (probes,)."""
    n, k = predictions.shape
    if spec.mode == "index":
        return np.full(n, spec.index, dtype=np.int32)
    if spec.mode == "label":
        return label_classes(labels, k).astype(np.int32)
    if k == 1:
        # A single unit (sigmoid or regression): its value is what is explained.
        return np.zeros(n, dtype=np.int32)
    return np.argmax(predictions, axis=1).astype(np.int32)
