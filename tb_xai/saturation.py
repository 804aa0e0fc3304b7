"""Telling a user why attributions vanished: a saturated softmax/sigmoid, or a gradient that is zero anyway."""

from __future__ import annotations

from typing import Optional

import numpy as np

#: A probe's attribution counts as vanishing when its largest magnitude is at most this...
ABSOLUTE = 1e-8
#: ...or at most this fraction of the largest magnitude over all probes.
RELATIVE = 1e-6
#: An explained probability this close to 0 or 1 is saturated: its gradient is (nearly) zero.
SATURATED = 1e-4


def vanishing_rows(magnitudes: np.ndarray) -> np.ndarray:
    """Boolean per probe: its attribution (rows of |values|, flattened) is all zero or vanishingly small."""
    peak = magnitudes.max(axis=1) if magnitudes.size else np.zeros(len(magnitudes))
    largest = float(peak.max()) if peak.size else 0.0
    return (peak <= ABSOLUTE) | (peak <= RELATIVE * largest)


def vanishing_reason(dead: int, total: int, explained: dict, predictions: Optional[np.ndarray],
                     targets: np.ndarray) -> str:
    """The warning's text: how many probes, the likely reason, and the remedy."""
    head = (f"the attributions of {dead} of {total} probes are all zero or vanishingly small (at most {ABSOLUTE:g}, "
            f"or {RELATIVE:g} of the largest)")
    activation = explained.get("activation")
    if explained.get("explains") == "outputs" and activation in ("softmax", "sigmoid") and predictions is not None:
        p = _explained_probabilities(predictions, targets, explained)
        saturated = int(np.sum((p >= 1 - SATURATED) | (p <= SATURATED)))
        return (
            f"{head}: the {activation} of layer {explained.get('layer')!r} is saturated (the explained probability "
            f"is within {SATURATED:g} of 0 or 1 for {saturated} of {total} probes), so neither its gradient nor a "
            "perturbation of the input moves it. Pass "
            f"logits=True to AttributionCallback to explain the output before the {activation}."
        )
    if explained.get("explains") == "outputs" and activation is None:
        return (
            f"{head}: the gradient of output {explained.get('output')!r} vanishes for them. If the model applies "
            "a softmax or sigmoid in call() after its last layer, return the logits instead (or apply the "
            "activation with a layer and pass logits=True)."
        )
    return (
        f"{head}: the gradient of the explained {explained.get('explains', 'output')} vanishes for them (dead ReLUs, "
        "a constant or untrained model, or inputs outside the range it responds to). Check that the model's "
        "outputs vary across the probes."
    )


def _explained_probabilities(predictions: np.ndarray, targets: np.ndarray, explained: dict) -> np.ndarray:
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.shape[1] == 1:
        return predictions[:, 0]
    return predictions[np.arange(len(predictions)), np.asarray(targets, dtype=np.int64)]
