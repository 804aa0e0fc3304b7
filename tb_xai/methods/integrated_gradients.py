"""Integrated gradients (Sundararajan, Taly & Yan, 2017, arXiv:1703.01365)."""

from __future__ import annotations

import functools
from typing import List, Optional, Sequence, Union

import numpy as np

from tb_xai.methods.base import AttributionMethod, check_positive_int

BaselineLike = Union[str, float, np.ndarray, Sequence[np.ndarray]]


@functools.lru_cache(maxsize=32)
def integration_nodes(steps: int, rule: str):
    """Points in [0, 1] and their weights for the path integral (cached: Gauss-Legendre nodes cost O(steps^3))."""
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

    Attributions of a probe sum to f(input) - f(baseline) (completeness) up to the integration error. The
    error is checked for every probe; where it exceeds `tolerance` (relative to |f(input) - f(baseline)|),
    that probe is integrated again with 4x the steps, up to `max_steps`. Smooth models converge at the first
    pass; ReLU paths with many kinks get the steps they need, and only those probes pay for them.

    Args:
        baseline: "zeros", a number (every feature), or an array shaped like one probe row (a list of
            arrays for multi-input models).
        steps: points on the path in the first pass.
        rule: "gausslegendre" (default: far fewer steps than a Riemann sum for smooth paths) or
            "riemann_trapezoid".
        tolerance: completeness error, relative to |f(input) - f(baseline)|, above which a probe is refined;
            None never refines.
        max_steps: the most steps a refined probe gets.
        name: the logged name.

    Example:
        >>> IntegratedGradients(baseline=0.0, steps=32, tolerance=0.005)
    """

    name = "integrated_gradients"

    def __init__(self, baseline: BaselineLike = "zeros", steps: int = 50, rule: str = "gausslegendre",
                 tolerance: Optional[float] = 0.005, max_steps: int = 3200, name=None):
        super().__init__(name)
        steps = check_positive_int(steps, "steps", minimum=2)
        max_steps = check_positive_int(max_steps, "max_steps", minimum=2)
        if tolerance is not None and not (np.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance must be a number > 0 or None; received: {tolerance!r}")
        integration_nodes(2, rule)  # validates the rule name
        if isinstance(baseline, str) and baseline != "zeros":
            raise ValueError(f"baseline must be 'zeros', a number or an array; received: {baseline!r}")
        self.steps = int(steps)
        self.max_steps = max(int(max_steps), self.steps)
        self.rule = rule
        self.tolerance = tolerance
        self.baseline = baseline
        self._baselines: List[np.ndarray] = []

    def config(self):
        if isinstance(self.baseline, str):
            baseline = self.baseline
        elif np.isscalar(self.baseline):
            baseline = float(self.baseline)
        else:
            baseline = "array"
        return {"baseline": baseline, "steps": self.steps, "rule": self.rule, "tolerance": self.tolerance,
                "max_steps": self.max_steps}

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

    def completeness_error(self, inputs: List[np.ndarray], target: np.ndarray, attributions: List[np.ndarray]):
        """(|sum of attributions - (f(input) - f(baseline))|, the error `tolerance` allows) per probe."""
        delta, allowed = self._expected_sums(inputs, target)
        return _sum_error(attributions, delta), allowed

    def _expected_sums(self, inputs: List[np.ndarray], target: np.ndarray):
        """(f(input) - f(baseline), the error allowed on it) per probe.

        The allowance is `tolerance` x |f(input) - f(baseline)|, plus what float32 outputs can resolve
        (1e-5 of the larger output): a confident classifier's 0.99998 - 0.99990 is not known better than that.
        """
        rows = np.arange(len(target))
        f_input = self.model.predict(inputs)[rows, target].astype(np.float64)
        f_base = self.model.predict([b[None] for b in self._baselines])[0, target].astype(np.float64)
        delta = f_input - f_base
        return delta, self.tolerance * np.abs(delta) + 1e-5 * np.maximum(np.abs(f_input), np.abs(f_base))

    def attribute(self, inputs, target) -> List[np.ndarray]:
        out = super().attribute(inputs, target)
        if self.tolerance is None:
            return out
        target = np.asarray(target, dtype=np.int32)
        delta, allowed = self._expected_sums(inputs, target)
        error = _sum_error(out, delta)
        steps = self.steps
        rows = np.flatnonzero(error > allowed)
        while rows.size and steps < self.max_steps:
            steps = min(steps * 4, self.max_steps)
            per_call = max(1, self.model.batch_size // steps)
            for start in range(0, rows.size, per_call):
                chunk = rows[start:start + per_call]
                refined = self._integrate([x[chunk] for x in inputs], target[chunk], steps)
                # Quadrature error on a ReLU path does not fall steadily with the steps: keep the better answer.
                refined_error = _sum_error(refined, delta[chunk])
                better = refined_error < error[chunk]
                for o, r in zip(out, refined):
                    o[chunk[better]] = r[better]
                error[chunk[better]] = refined_error[better]
            rows = rows[error[rows] > allowed[rows]]
        return out

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[np.ndarray]:
        return self._integrate(inputs, target, self.steps)

    def _integrate(self, inputs: List[np.ndarray], target: np.ndarray, steps: int) -> List[np.ndarray]:
        alphas, weights = integration_nodes(steps, self.rule)
        m = len(target)
        deltas = [x.astype(np.float32) - b for x, b in zip(inputs, self._baselines)]
        # Row (i, j) of the batch is probe i at path point j: probe-major, so a reshape regroups it.
        path = []
        for b, d in zip(self._baselines, deltas):
            along = alphas.astype(np.float32).reshape((1, steps) + (1,) * (d.ndim - 1))
            path.append((b + along * d[:, None]).reshape((m * steps,) + d.shape[1:]))
        _, grads = self.model.gradients(path, np.repeat(target, steps))
        out = []
        for g, d in zip(grads, deltas):
            w = weights.astype(np.float32).reshape((1, steps) + (1,) * (d.ndim - 1))
            out.append((g.reshape((m, steps) + d.shape[1:]) * w).sum(axis=1) * d)
        return out


def _sum_error(attributions: List[np.ndarray], delta: np.ndarray) -> np.ndarray:
    """|sum of each probe's attributions over every input - delta|."""
    total = sum(a.reshape(len(delta), -1).sum(axis=1, dtype=np.float64) for a in attributions)
    return np.abs(total - delta)
