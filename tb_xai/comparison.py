"""Runs side by side: one method's importance in two or more runs, aligned by step value, and each run's
difference from the first (the baseline) at the steps both logged. What the dashboard draws when runs are
compared, for notebooks (`tb_xai.compare`) and `tb_xai.plot.compare`.

Example:
    >>> comparison = tb_xai.compare(["runs/baseline", "runs/fix"], "integrated_gradients")
    >>> comparison.difference[0, -1]      # fix minus baseline at the last step both logged
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import List, Optional, Sequence

import numpy as np

from tb_xai import aggregate
from tb_xai.reader import Run, RunLike, as_run


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One method's importance in several runs on one step axis.

    Attributes:
        method, input, signed: what was compared.
        runs: each run's path, the baseline first.
        steps: the union of the runs' logged steps, ascending.
        importance: ``(runs, steps, *map_shape)``; NaN where a run did not log that step.
        common_steps: the steps every run logged.
        difference: ``(runs - 1, common_steps, *map_shape)``: run ``i + 1`` minus the baseline.
        names: the map elements' names (as `Run.map_names`).
        order: element indices by the baseline's importance at its last step, largest first (`Run.ranking`).
    """

    method: str
    input: Optional[str]
    signed: bool
    runs: List[str]
    steps: np.ndarray
    importance: np.ndarray
    common_steps: np.ndarray
    difference: np.ndarray
    names: List[str]
    order: np.ndarray


def compare(
    runs: Sequence[RunLike], method: str, *, input: Optional[str] = None, signed: bool = False, target: Optional[int] = None
) -> Comparison:
    """Aligns `method`'s importance across `runs` by step value (runs of different lengths included).

    Args:
        runs: two or more `tb_xai.Run` objects or log directories; the first is the baseline.
        method: a method logged in every run.
        input: the probe input, for multi-input models.
        signed: signed mean attributions instead of mean magnitudes.
        target: only average the probes explained for this class.

    Raises:
        ValueError: fewer than two runs, or runs whose maps differ in shape.
        KeyError: a run did not log `method`.
    """
    if isinstance(runs, (str, os.PathLike, Run)) or len(runs) < 2:
        raise ValueError(f"compare needs two or more runs (the first is the baseline); received {runs!r}")
    loaded = [as_run(r) for r in runs]
    per_run = [run.importance(method, input, signed=signed, target=target) for run in loaded]
    shapes = {values.shape[1:] for values in per_run}
    if len(shapes) > 1:
        described = ", ".join(f"{run.path}: {values.shape[1:]}" for run, values in zip(loaded, per_run))
        raise ValueError(f"the runs' {method!r} maps differ in shape ({described}): they cannot be compared element by element")
    run_steps = [np.asarray(run.steps(method, input)) for run in loaded]
    steps = np.unique(np.concatenate(run_steps))
    shape = per_run[0].shape[1:]
    importance = np.full((len(loaded), len(steps), *shape), np.nan)
    for i, (values, own) in enumerate(zip(per_run, run_steps)):
        importance[i, np.searchsorted(steps, own)] = values
    common = functools.reduce(np.intersect1d, run_steps)
    at = np.searchsorted(steps, common)
    difference = importance[1:, at] - importance[:1, at]
    flat = per_run[0].reshape(len(per_run[0]), -1)
    return Comparison(
        method=method, input=input, signed=signed, runs=[run.path for run in loaded], steps=steps,
        importance=importance, common_steps=common, difference=difference,
        names=loaded[0].map_names(method, input), order=aggregate.importance_order(flat),
    )
