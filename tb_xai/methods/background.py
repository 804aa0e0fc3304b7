"""Background sets: the reference rows that stand in for the features a perturbation method removes.

KernelSHAP's value of a coalition is the model's output averaged over background rows whose features outside
the coalition replace the probe's; expected gradients integrates from background rows to the probe; LIME's
tabular sampler draws around the background's mean with its spread. Where the rows come from changes the
answer, so every method logs `Background.config()` with its attributions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Union

import numpy as np

from tb_xai.methods.base import check_positive_int
from tb_xai.probe import ProbeSet


@dataclasses.dataclass
class Background:
    """Background rows with weights that sum to one.

    Build one with `Background.from_probe`, `Background.from_array` or `Background.kmeans`; methods also
    accept "probe" or a plain array in place of a `Background`.

    Attributes:
        data: (rows, *features) float32, shaped like probe rows; None until a "probe" background is bound.
        weights: (rows,) float64 summing to 1.
        source: "probe", "array" or "kmeans".
        params: how the rows were chosen (logged).

    Example:
        >>> background = Background.kmeans(x_train, k=50, seed=0)
        >>> KernelShap(background=background)
    """

    data: Optional[np.ndarray]
    weights: Optional[np.ndarray]
    source: str
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_probe(cls, max_rows: int = 50, seed: int = 0) -> "Background":
        """The probe set itself; more than `max_rows` probes are subsampled (seeded) when bound."""
        max_rows = check_positive_int(max_rows, "max_rows")
        return cls(None, None, "probe", {"max_rows": max_rows, "seed": int(seed)})

    @classmethod
    def from_array(cls, data, weights=None) -> "Background":
        """User-chosen rows (e.g. a sample of the training data), optionally weighted."""
        data = _as_rows(data, "background")
        if weights is None:
            weights = np.full(len(data), 1.0 / len(data))
        else:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (len(data),) or np.any(weights < 0) or not np.isfinite(weights).all() \
                    or weights.sum() <= 0:
                raise ValueError(
                    f"background weights must be {len(data)} finite non-negative numbers with a positive sum; "
                    f"received shape {weights.shape}"
                )
            weights = weights / weights.sum()
        return cls(data, weights, "array", {"rows": len(data)})

    @classmethod
    def kmeans(cls, data, k: int = 50, seed: int = 0) -> "Background":
        """k-means centres of `data` (e.g. the training set), weighted by the share of rows in each cluster.

        A few weighted centres summarize a large training set at the cost of a few rows per model call.
        """
        from sklearn.cluster import KMeans

        data = _as_rows(data, "kmeans data")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= len(data):
            raise ValueError(f"k must be an integer in [1, {len(data)}] (the rows given); received: {k!r}")
        flat = data.reshape(len(data), -1).astype(np.float64)
        fitted = KMeans(n_clusters=int(k), n_init=4, random_state=int(seed)).fit(flat)
        counts = np.bincount(fitted.labels_, minlength=int(k)).astype(np.float64)
        centres = fitted.cluster_centers_.reshape((int(k),) + data.shape[1:]).astype(np.float32)
        return cls(centres, counts / counts.sum(), "kmeans", {"k": int(k), "rows": len(data), "seed": int(seed)})

    def bind(self, probe: ProbeSet, method: str) -> "Background":
        """The rows for `probe` (resolving "probe"), checked against its feature shape."""
        if len(probe.inputs) != 1:
            raise ValueError(
                f"{method} explains a single-input model; the probe has {len(probe.inputs)} inputs {probe.names}"
            )
        if self.source == "probe":
            rows = probe.inputs[0]
            n = min(len(rows), self.params["max_rows"])
            chosen = np.sort(np.random.default_rng(self.params["seed"]).choice(len(rows), n, replace=False))
            return Background(
                np.asarray(rows[chosen], dtype=np.float32), np.full(n, 1.0 / n), "probe",
                dict(self.params, rows=n),
            )
        expected = probe.feature_shape(0)
        if self.data.shape[1:] != expected:
            raise ValueError(
                f"{method}: background rows have shape {self.data.shape[1:]} but probe rows have shape {expected}"
            )
        return self

    def config(self) -> Dict[str, Any]:
        return {"background": self.source, **{f"background_{k}": v for k, v in self.params.items()}}


BackgroundLike = Union[str, np.ndarray, Background]


def as_background(value: BackgroundLike) -> Background:
    """A `Background` from "probe", an array of rows, or a `Background`."""
    if isinstance(value, Background):
        return value
    if isinstance(value, str):
        if value != "probe":
            raise ValueError(f"background must be 'probe', an array of rows or a Background; received: {value!r}")
        return Background.from_probe()
    return Background.from_array(value)


def _as_rows(data, what: str) -> np.ndarray:
    array = np.asarray(data)
    if array.ndim < 2 or len(array) == 0 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"{what} must be a numeric array of rows (rows, *features) with at least one row; received "
            f"shape {array.shape} and dtype {array.dtype}"
        )
    return array.astype(np.float32)
