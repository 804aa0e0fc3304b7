"""Background sets: the reference rows that stand in for the features a perturbation method removes.

KernelSHAP's value of a coalition is the model's output averaged over background rows whose features outside
the coalition replace the probe's; expected gradients integrates from background rows to the probe; LIME's
tabular sampler draws around the background's mean with its spread. Where the rows come from changes the
answer, so every method logs `Background.config()` with its attributions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from tb_xai.methods.base import check_positive_int
from tb_xai.methods.coalitions import joint_probe_keys, probe_generator
from tb_xai.probe import ProbeSet


@dataclasses.dataclass
class Background:
    """Background rows with weights that sum to one.

    Build one with `Background.from_probe`, `Background.from_array` or `Background.kmeans`; methods also
    accept "probe" or a plain array in place of a `Background`. For a multi-input model give one array per
    input (a list in the model's input order, or a dict keyed by input name, as the probe is given): row r of
    every array together is background row r.

    Attributes:
        data: (rows, *features) float32, shaped like probe rows, or a list of such arrays (one per input;
            always a list once bound to a probe); None until a "probe" background is bound.
        weights: (rows,) float64 summing to 1.
        source: "probe", "array" or "kmeans".
        params: how the rows were chosen (logged).
        names: the input names of a background given as a dict, else None.

    Example:
        >>> background = Background.kmeans(x_train, k=50, seed=0)
        >>> KernelShap(background=background)
    """

    data: Optional[Union[np.ndarray, List[np.ndarray]]]
    weights: Optional[np.ndarray]
    source: str
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)
    names: Optional[List[str]] = None

    @classmethod
    def from_probe(cls, max_rows: int = 50, seed: int = 0) -> "Background":
        """The probe set itself; more than `max_rows` probes are subsampled (seeded) when bound.

        Which probes are kept depends on the seed and on their values, never on their positions, and the
        kept rows are put in an order of their values too: permuting the probe set leaves every explanation
        that uses this background unchanged.
        """
        max_rows = check_positive_int(max_rows, "max_rows")
        return cls(None, None, "probe", {"max_rows": max_rows, "seed": int(seed)})

    @classmethod
    def from_array(cls, data, weights=None) -> "Background":
        """User-chosen rows (e.g. a sample of the training data), optionally weighted; one array per input
        (a list or a dict) for a multi-input model."""
        arrays, names = _as_inputs(data, "background")
        rows = len(arrays[0])
        if weights is None:
            weights = np.full(rows, 1.0 / rows)
        else:
            weights = np.asarray(weights, dtype=np.float64)
            if weights.shape != (rows,) or np.any(weights < 0) or not np.isfinite(weights).all() \
                    or weights.sum() <= 0:
                raise ValueError(
                    f"background weights must be {rows} finite non-negative numbers with a positive sum; "
                    f"received shape {weights.shape}"
                )
            weights = weights / weights.sum()
        return cls(_unwrap(arrays, names), weights, "array", {"rows": rows}, names)

    @classmethod
    def kmeans(cls, data, k: int = 50, seed: int = 0) -> "Background":
        """k-means centres of `data` (e.g. the training set), weighted by the share of rows in each cluster.

        A few weighted centres summarize a large training set at the cost of a few rows per model call. For
        a multi-input model (a list or dict of arrays) rows are clustered on all inputs' values together and
        each centre is split back into one row per input.
        """
        from sklearn.cluster import KMeans

        arrays, names = _as_inputs(data, "kmeans data")
        rows = len(arrays[0])
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= rows:
            raise ValueError(f"k must be an integer in [1, {rows}] (the rows given); received: {k!r}")
        flat = np.concatenate([a.reshape(rows, -1) for a in arrays], axis=1).astype(np.float64)
        fitted = KMeans(n_clusters=int(k), n_init=4, random_state=int(seed)).fit(flat)
        counts = np.bincount(fitted.labels_, minlength=int(k)).astype(np.float64)
        centres, start = [], 0
        for a in arrays:
            width = int(np.prod(a.shape[1:]))
            part = fitted.cluster_centers_[:, start:start + width]
            centres.append(part.reshape((int(k),) + a.shape[1:]).astype(np.float32))
            start += width
        return cls(_unwrap(centres, names), counts / counts.sum(), "kmeans",
                   {"k": int(k), "rows": rows, "seed": int(seed)}, names)

    def bind(self, probe: ProbeSet, method: str) -> "Background":
        """The rows for `probe` (resolving "probe"), checked against its inputs' shapes.

        Returns a `Background` whose `data` is a list with one array per probe input.
        """
        if self.source == "probe":
            keys = joint_probe_keys(probe.inputs)
            n = min(len(keys), self.params["max_rows"])
            # Each probe's rank comes from the seed and its values alone: the same probes are chosen, in the
            # same order, however the probe set is permuted.
            scores = np.array([probe_generator(self.params["seed"], k).integers(2 ** 62) for k in keys])
            chosen = np.lexsort((keys, scores))[:n]
            return Background(
                [np.asarray(a[chosen], dtype=np.float32) for a in probe.inputs], np.full(n, 1.0 / n), "probe",
                dict(self.params, rows=n),
            )
        arrays = self.data if isinstance(self.data, list) else [self.data]
        if self.names is not None:
            if sorted(self.names) != sorted(probe.names):
                raise ValueError(
                    f"{method}: the background has inputs {self.names} but the probe has inputs {probe.names}"
                )
            arrays = [arrays[self.names.index(name)] for name in probe.names]
        if len(arrays) != len(probe.inputs):
            raise ValueError(
                f"{method}: the background has {len(arrays)} input array(s) but the probe has "
                f"{len(probe.inputs)} inputs {probe.names}; give one array per input (a list or a dict)"
            )
        for name, array, i in zip(probe.names, arrays, range(len(arrays))):
            expected = probe.feature_shape(i)
            if array.shape[1:] != expected:
                what = "background rows" if len(arrays) == 1 else f"background rows of input {name!r}"
                raise ValueError(
                    f"{method}: {what} have shape {array.shape[1:]} but probe rows have shape {expected}"
                )
        return Background(list(arrays), self.weights, self.source, self.params)

    def input(self, i: int) -> "Background":
        """The rows of probe input `i` alone, with the same weights (of a bound background)."""
        if not isinstance(self.data, list):
            raise RuntimeError("input() needs a background bound to a probe set (see bind)")
        return Background(self.data[i], self.weights, self.source, self.params)

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


def _as_inputs(data, what: str) -> Tuple[List[np.ndarray], Optional[List[str]]]:
    """(one array per input, the input names of a dict or None), the arrays row-aligned."""
    if isinstance(data, Mapping):
        names = [str(k) for k in data]
        arrays = [_as_rows(v, f"{what}[{k!r}]") for k, v in data.items()]
    elif isinstance(data, (list, tuple)) and data and all(hasattr(a, "shape") for a in data):
        names, arrays = None, [_as_rows(a, f"{what}[{i}]") for i, a in enumerate(data)]
    else:
        names, arrays = None, [_as_rows(data, what)]
    if any(len(a) != len(arrays[0]) for a in arrays):
        raise ValueError(f"{what} arrays must have the same number of rows; received {[len(a) for a in arrays]}")
    return arrays, names


def _unwrap(arrays: List[np.ndarray], names: Optional[List[str]]):
    """A single array for a single unnamed input (as users read `Background.data`), else the list."""
    return arrays[0] if len(arrays) == 1 and names is None else arrays
