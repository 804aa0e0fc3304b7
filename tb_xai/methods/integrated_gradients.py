"""Integrated gradients (Sundararajan, Taly & Yan, 2017, arXiv:1703.01365)."""

from __future__ import annotations

from typing import List, Sequence, Union

import numpy as np

from tb_xai.methods.base import AttributionMethod

BaselineLike = Union[str, float, np.ndarray, Sequence[np.ndarray]]


def integration_nodes(steps: int, rule: str):
    """Points in [0, 1] and their weights for the path integral."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "riemann_trapezoid":
        nodes = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return nodes, weights
    raise ValueError(f"rule must be 'gausslegendre' or 'riemann_trapezoid'; received: {rule!r}")


class IntegratedGradients(AttributionMethod):
    """Path integral of the gradient from a baseline to the input, times (input - baseline).

    Attributions of a probe sum to f(input) - f(baseline) (completeness) up to the integration error, which
    falls with `steps`; Gauss-Legendre nodes reach a given error with far fewer steps than a Riemann sum.

    Args:
        baseline: "zeros", a number (every feature), or an array shaped like one probe row (a list of
            arrays for multi-input models).
        steps: number of points on the path.
        rule: "gausslegendre" or "riemann_trapezoid".
        name: the logged name.

    Example:
        >>> IntegratedGradients(baseline=0.0, steps=64)
    """

    name = "integrated_gradients"

    def __init__(self, baseline: BaselineLike = "zeros", steps: int = 50, rule: str = "gausslegendre", name=None):
        super().__init__(name)
        if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 2:
            raise ValueError(f"steps must be an integer >= 2; received: {steps!r}")
        self.steps = int(steps)
        self.rule = rule
        self.alphas, self.weights = integration_nodes(self.steps, rule)
        if isinstance(baseline, str) and baseline != "zeros":
            raise ValueError(f"baseline must be 'zeros', a number or an array; received: {baseline!r}")
        self.baseline = baseline
        self._baselines: List[np.ndarray] = []

    def config(self):
        if isinstance(self.baseline, str):
            baseline = self.baseline
        elif np.isscalar(self.baseline):
            baseline = float(self.baseline)
        else:
            baseline = "array"
        return {"baseline": baseline, "steps": self.steps, "rule": self.rule}

    def rows_per_probe(self) -> int:
        return self.steps

    def setup(self, model, probe) -> None:
        super().setup(model, probe)
        self._baselines = self._resolve_baselines(probe)

    def _resolve_baselines(self, probe) -> List[np.ndarray]:
        shapes = [probe.feature_shape(i) for i in range(len(probe.inputs))]
        if isinstance(self.baseline, str):
            return [np.zeros(s, dtype=np.float32) for s in shapes]
        if np.isscalar(self.baseline):
            return [np.full(s, float(self.baseline), dtype=np.float32) for s in shapes]
        given = list(self.baseline) if isinstance(self.baseline, (list, tuple)) else [self.baseline]
        if len(given) != len(shapes):
            raise ValueError(
                f"{self.name}: baseline has {len(given)} array(s) but the probe has {len(shapes)} input(s)"
            )
        baselines = []
        for name, b, s in zip(probe.names, given, shapes):
            b = np.asarray(b, dtype=np.float32)
            if b.shape != s:
                raise ValueError(
                    f"{self.name}: baseline for input {name!r} has shape {b.shape}; expected {s} (one probe row)"
                )
            baselines.append(b)
        return baselines

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        m, s = len(target), self.steps
        alphas = self.alphas.astype(np.float32)
        deltas = [x.astype(np.float32) - b for x, b in zip(inputs, self._baselines)]
        # Row (i, j) of the batch is probe i at path point j: probe-major, so a reshape regroups it.
        path = []
        for b, d in zip(self._baselines, deltas):
            along = alphas.reshape((1, s) + (1,) * (d.ndim - 1))
            path.append((b + along * d[:, None]).reshape((m * s,) + d.shape[1:]))
        _, grads = self.model.gradients(path, np.repeat(target, s))
        out = []
        for g, d in zip(grads, deltas):
            w = self.weights.astype(np.float32).reshape((1, s) + (1,) * (d.ndim - 1))
            out.append((g.reshape((m, s) + d.shape[1:]) * w).sum(axis=1) * d)
        return out
