"""Integrated gradients (Sundararajan, Taly & Yan, 2017, arXiv:1703.01365)."""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from scipy.special import roots_legendre

from tb_xai.batching import chunks
from tb_xai.methods.base import AttributionMethod, check_positive_int

BaselineLike = Union[str, float, np.ndarray, Sequence[Optional[np.ndarray]]]
TokenBaselineLike = Union[str, int]


#: The most path points one probe may get (steps or max_steps): beyond what completeness needed on the models
#: tried, and small enough that the nodes are cheap to compute (about 1 s once at 4096 here).
MAX_STEPS = 2 ** 12
#: How much a Riemann-sum refinement multiplies a probe's path points.
REFINEMENT = 2
#: Gauss-Legendre nodes of an adaptive refinement panel. Low order: between a ReLU path's kinks panels get
#: short, and two nodes per panel keep the path points at the kinks (on the 32x32x3 CNN of
#: bench/bench_overhead.py, 2-node panels split at the largest error took a fifth of the gradient rows of
#: 8-node panels bisected where their halves disagreed, to the same tolerance).
PANEL_NODES = 2
#: Bytes of panel attributions a refinement keeps (beyond them a split panel's attribution is recomputed).
_PANEL_BYTES = 64 * 2 ** 20


@functools.lru_cache(maxsize=32)
def integration_nodes(steps: int, rule: str):
    """Points in [0, 1] and their weights for the path integral (cached)."""
    if rule == "gausslegendre":
        # scipy's roots: about 1 s at 4096 nodes here, where numpy's leggauss (a dense steps x steps
        # companion matrix) takes 52 s.
        nodes, weights = roots_legendre(steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "riemann_trapezoid":
        nodes = np.linspace(0.0, 1.0, steps)
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return nodes, weights
    raise ValueError(f"rule must be 'gausslegendre' or 'riemann_trapezoid'; received: {rule!r}")


def _check_steps(value, what: str) -> int:
    value = check_positive_int(value, what, minimum=2)
    if value > MAX_STEPS:
        raise ValueError(f"{what} must be at most {MAX_STEPS} path points per probe; received: {value!r}")
    return value


class IntegratedGradients(AttributionMethod):
    """Path integral of the gradient from a baseline to the input, times (input - baseline).

    Attributions of a probe sum to f(input) - f(baseline) (completeness) up to the integration error. The
    error is checked for every probe; where it exceeds `tolerance` (relative to |f(input) - f(baseline)|),
    that probe's path is refined by adaptive 2-node Gauss-Legendre panels (the panel with the largest error
    split, that error known exactly from the output at the panel's ends), up to `max_steps` path points,
    keeping its best answer. The first pass is small: `steps` path points, as panels of 2 nodes that refinement
    goes on splitting (with `tolerance=None`, one `steps`-node rule over the path); only the probes that need more
    path points pay for them. Probes still over the allowance at
    `max_steps` are counted in `diagnostics()` (logged as a scalar each step) and the callback warns once.

    Memory is bounded for any parameters: no model call gets more than the adapter's `batch_size` rows, a
    probe's path points included.

    Text inputs (token ids feeding an Embedding, see tb_xai/text.py) are integrated in embedding space: the path
    runs from the baseline's embeddings to the probe's at the Embedding layer's output (the model's masks follow
    the probe's real ids all along), and a token's attribution is the signed sum over the embedding dimension,
    so completeness holds over the tokens: they sum to f(x) - f(baseline). Padding positions keep their own
    embedding in the baseline and get exactly 0.

    Args:
        baseline: "zeros", a finite number (every feature), or an array shaped like one probe row (a list of
            arrays for multi-input models, with None for text and held inputs); for inputs explained at their
            own values.
        token_baseline: the baseline of text inputs: "padding" (every non-padding token replaced by the padding
            id), a token id (every non-padding token replaced by it: an [UNK] or [MASK] id), or "zeros" (zero
            embeddings at the non-padding positions).
        steps: path points of the first pass (2 to 4096).
        rule: "gausslegendre" (default: far fewer steps than a Riemann sum for smooth paths) or
            "riemann_trapezoid".
        tolerance: completeness error, relative to |f(input) - f(baseline)|, above which a probe is refined
            (a number in (0, 1)); None never refines.
        max_steps: the most path points a refined probe gets (up to 4096).
        name: the logged name.

    Example:
        >>> IntegratedGradients(baseline=0.0, steps=32, tolerance=0.005)
    """

    name = "integrated_gradients"

    def __init__(self, baseline: BaselineLike = "zeros", steps: int = 4, rule: str = "gausslegendre",
                 tolerance: Optional[float] = 0.005, max_steps: int = 2048,
                 token_baseline: TokenBaselineLike = "padding", name=None):
        super().__init__(name)
        steps = _check_steps(steps, "steps")
        max_steps = _check_steps(max_steps, "max_steps")
        if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                      or not (np.isfinite(tolerance) and 0 < tolerance < 1)):
            raise ValueError(f"tolerance must be None or a number in (0, 1) (0.005 = 0.5%); received: {tolerance!r}")
        integration_nodes(2, rule)  # validates the rule name
        if isinstance(baseline, str) and baseline != "zeros":
            raise ValueError(f"baseline must be 'zeros', a number or an array; received: {baseline!r}")
        if np.isscalar(baseline) and not isinstance(baseline, str):
            if isinstance(baseline, bool) or not np.isfinite(baseline):
                raise ValueError(f"baseline must be a finite number; received: {baseline!r}")
        if isinstance(token_baseline, str):
            if token_baseline not in ("padding", "zeros"):
                raise ValueError(f"token_baseline must be 'padding', 'zeros' or a token id; received: {token_baseline!r}")
        elif isinstance(token_baseline, bool) or not isinstance(token_baseline, (int, np.integer)) or token_baseline < 0:
            raise ValueError(f"token_baseline must be 'padding', 'zeros' or a token id (an integer >= 0); received: "
                             f"{token_baseline!r}")
        self.token_baseline = token_baseline if isinstance(token_baseline, str) else int(token_baseline)
        self.steps = int(steps)
        self.max_steps = max(int(max_steps), self.steps)
        self.rule = rule
        self.tolerance = tolerance
        self.baseline = baseline
        self._baselines: List[np.ndarray] = []
        self._diagnostics: Dict[str, float] = {}

    def config(self):
        if isinstance(self.baseline, str):
            baseline = self.baseline
        elif np.isscalar(self.baseline):
            baseline = float(self.baseline)
        else:
            baseline = "array"
        config = {"baseline": baseline, "steps": self.steps, "rule": self.rule, "tolerance": self.tolerance,
                  "max_steps": self.max_steps, "refinement": REFINEMENT, "panel_nodes": PANEL_NODES}
        if self.space is not None and self.space.has_text:
            config["token_baseline"] = self.token_baseline
        return config

    def rows_per_probe(self) -> int:
        return self.steps

    def setup(self, model, probe) -> None:
        super().setup(model, probe)
        self._baselines = self._resolve_baselines(probe)
        for name, text in probe.text.items():
            if self.token_baseline == "padding" and text.padding_id is None:
                raise ValueError(
                    f"{self.name}: token_baseline='padding' replaces tokens by the padding id, but text input {name!r} "
                    "has padding_id=None; give token_baseline=<a token id> or 'zeros'"
                )
            input_dim = getattr(model.embedding_call(name).layer, "input_dim", None)
            if isinstance(self.token_baseline, int) and input_dim is not None and self.token_baseline >= input_dim:
                raise ValueError(f"{self.name}: token_baseline={self.token_baseline} is not a token id of text input "
                                 f"{name!r} (its Embedding has input_dim={input_dim})")

    def _resolve_baselines(self, probe) -> List[Optional[np.ndarray]]:
        """The baseline row of each input explained at its own values (None for text and held inputs)."""
        shapes = [probe.feature_shape(i) for i in range(len(probe.inputs))]
        own = [name not in probe.text and name not in probe.held for name in probe.names]
        if isinstance(self.baseline, str):
            return [np.zeros(s, dtype=np.float32) if o else None for s, o in zip(shapes, own)]
        if np.isscalar(self.baseline):
            return [np.full(s, float(self.baseline), dtype=np.float32) if o else None for s, o in zip(shapes, own)]
        given = list(self.baseline) if isinstance(self.baseline, (list, tuple)) else [self.baseline]
        if len(given) != len(shapes):
            raise ValueError(
                f"{self.name}: baseline has {len(given)} array(s) but the probe has {len(shapes)} input(s)"
            )
        baselines = []
        for name, b, s, o in zip(probe.names, given, shapes, own):
            if not o:
                if b is not None:
                    raise ValueError(f"{self.name}: input {name!r} is a text or held input: its baseline is "
                                     "token_baseline=; give None in its place in baseline=")
                baselines.append(None)
                continue
            if b is None:
                raise ValueError(f"{self.name}: baseline for input {name!r} is None; expected an array shaped like "
                                 f"one probe row {s}")
            b = np.asarray(b, dtype=np.float32)
            if not np.all(np.isfinite(b)):
                raise ValueError(f"{self.name}: baseline for input {name!r} has "
                                 f"{b.size - int(np.count_nonzero(np.isfinite(b)))} NaN or inf value(s)")
            if b.shape != s:
                raise ValueError(
                    f"{self.name}: baseline for input {name!r} has shape {b.shape}; expected {s} (one probe row)"
                )
            baselines.append(b)
        return baselines

    def completeness_error(self, inputs: List[np.ndarray], target: np.ndarray, attributions: List[np.ndarray]):
        """(|sum of attributions - (f(input) - f(baseline))|, the error `tolerance` allows) per probe."""
        starts, _ = self._endpoints(list(inputs))
        delta, allowed = self._expected_sums(inputs, np.asarray(target, dtype=np.int32), starts)
        return _sum_error(attributions, delta), allowed

    def _endpoints(self, inputs: List[np.ndarray]):
        """(path starts, path ends) of each input, [probes, ...] float32: the baseline and the probe, at the
        inputs' own values or, for a text input, at its Embedding's output; None for a held input."""
        space = self.space
        ends = space.points(inputs)
        starts: List[Optional[np.ndarray]] = []
        for i, (x, end) in enumerate(zip(inputs, ends)):
            if end is None:
                starts.append(None)
            elif space.is_text(i):
                padding = space.padding(inputs, i)
                if self.token_baseline == "zeros":
                    starts.append(np.where(padding[..., None], end, np.float32(0)))
                else:
                    token = space.text[i].padding_id if self.token_baseline == "padding" else self.token_baseline
                    starts.append(space.embed(inputs, i, np.where(padding, x, token)))
            else:
                starts.append(np.broadcast_to(self._baselines[i], end.shape))
        return starts, ends

    def _expected_sums(self, inputs: List[np.ndarray], target: np.ndarray, starts: List[Optional[np.ndarray]]):
        """(f(input) - f(baseline), the error allowed on it) per probe.

        The allowance is `tolerance` x |f(input) - f(baseline)|, plus what float32 outputs can resolve
        (1e-5 of the larger output): a confident classifier's 0.99998 - 0.99990 is not known better than that.
        """
        delta, allowed, _ = self._path_ends(inputs, target, starts)
        return delta, allowed

    def _path_ends(self, inputs: List[np.ndarray], target: np.ndarray, starts: List[Optional[np.ndarray]]):
        """`_expected_sums`, and f(input) per probe (None for text inputs, whose path ends at the embeddings)."""
        rows = np.arange(len(target))
        f_input = self.model.predict(inputs)[rows, target].astype(np.float64)
        if self.space.has_text:  # a baseline per probe, seen with the probe's own masks
            f_base = self.space.gradients(inputs, starts, target)[0].astype(np.float64)
        else:
            f_base = self.model.predict([b[None] for b in self._baselines])[0, target].astype(np.float64)
        delta = f_input - f_base
        allowed = self.tolerance * np.abs(delta) + 1e-5 * np.maximum(np.abs(f_input), np.abs(f_base))
        return delta, allowed, None if self.space.has_text else f_input

    def diagnostics(self) -> Dict[str, float]:
        """Completeness at the last `attribute` call: the largest error relative to its allowance's scale
        (|f(x) - f(baseline)| plus float32 resolution), the probes still over the allowance, the mean path
        points per probe."""
        return dict(self._diagnostics)

    def attribute(self, inputs, target) -> List[Optional[np.ndarray]]:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call setup(model, probe) before attribute()")
        inputs = list(inputs)
        target = np.asarray(target, dtype=np.int32)
        # The path's ends once for every probe: the first pass, the completeness check and refinement share them.
        starts, ends = self._endpoints(inputs)
        path = (inputs, starts, ends)
        panels = self._first_panels()
        if panels:
            # Refinement will split the first pass's panels: the path as `panels` panels of PANEL_NODES nodes
            # (the same gradient rows as `steps` nodes over the whole path), so a failing probe's first split
            # is of its worse half, and no gradient row of the first pass is thrown away.
            m = len(target)
            edges = np.linspace(0.0, 1.0, panels + 1)
            first = self._panel_attributions(path, target, np.repeat(np.arange(m), panels),
                                             np.tile(edges[:-1], m), np.tile(edges[1:], m), PANEL_NODES)
            out = [None if a is None else a.reshape((m, panels) + a.shape[1:]).sum(axis=1) for a in first]
        else:
            per_call = max(1, self.model.batch_size // self.steps)
            parts = [self._integrate(_rows(inputs, sl), _rows(starts, sl), _rows(ends, sl), target[sl], self.steps)
                     for sl in chunks(len(target), per_call)]
            out = [None if column[0] is None else np.concatenate(column) for column in zip(*parts)]
        self._diagnostics = {}
        if self.tolerance is not None:
            delta, allowed, f_input = self._path_ends(inputs, target, starts)
            error = _sum_error(out, delta)
            spent = np.full(len(target), float(self.steps))
            rows = np.flatnonzero(error > allowed)
            if rows.size and self.rule == "gausslegendre":
                rows = self._refine_panels(path, target, out, delta, allowed, error, spent, rows,
                                           f_input=None if f_input is None else f_input[rows],
                                           first=None if not panels else (edges, first))
            elif rows.size:
                rows = self._refine_uniform(path, target, out, delta, allowed, error, spent, rows)
            scale = allowed / self.tolerance
            self._diagnostics = {
                "completeness_error_max": float(np.max(error / scale)),
                "probes_over_tolerance": int(rows.size),
                "steps_mean": float(spent.mean()),
            }
        return self.space.reduce(out, inputs, how="sum")

    def _first_panels(self) -> int:
        """How many PANEL_NODES-node panels the first pass is made of (0: one `steps`-node rule over the path).

        Panels when refinement follows (a tolerance, Gauss-Legendre) and `steps` is a multiple of PANEL_NODES
        above it; without a tolerance the first pass is the answer, and one higher-order rule is the better one.
        """
        if self.tolerance is None or self.rule != "gausslegendre":
            return 0
        if self.steps <= PANEL_NODES or self.steps % PANEL_NODES:
            return 0
        return self.steps // PANEL_NODES

    def _refine_uniform(self, path, target, out, delta, allowed, error, spent, rows):
        """Riemann sums: every failing probe again with 2x the path points, keeping its better answer."""
        steps = self.steps
        while rows.size and steps < self.max_steps:
            steps = min(steps * REFINEMENT, self.max_steps)
            per_call = max(1, self.model.batch_size // steps)
            for start in range(0, rows.size, per_call):
                chunk = rows[start:start + per_call]
                refined = self._integrate(*(_rows(p, chunk) for p in path), target[chunk], steps)
                # Quadrature error on a ReLU path does not fall steadily with the steps: keep the better answer.
                refined_error = _sum_error(refined, delta[chunk])
                better = refined_error < error[chunk]
                for o, r in zip(out, refined):
                    if o is not None:
                        o[chunk[better]] = r[better]
                error[chunk[better]] = refined_error[better]
            spent[rows] += steps
            rows = rows[error[rows] > allowed[rows]]
        return rows

    def _refine_panels(self, path, target, out, delta, allowed, error, spent, rows, f_input=None, first=None):
        """Adaptive Gauss-Legendre: a failing probe's path is split into panels of `PANEL_NODES` nodes, splitting
        the panel with the largest quadrature error, until completeness holds or `max_steps`.

        A panel's error is known exactly, not estimated: the integral of the gradient along the path over
        [a, b] is f(path(b)) - f(path(a)), so the output at each new panel end gives it. A ReLU network's
        gradient jumps where a unit switches along the path; splitting where the error is puts path points at
        the kinks, and low-order panels keep them there. Memory: each failing probe's attribution, and the
        panels' attributions up to `_PANEL_BYTES` (beyond it a split panel's attribution is recomputed), and
        its first pass.

        `f_input`: the output at each failing probe's input, when known; `first`: (panel edges, each probe's
        panel attributions, probe-major) when the first pass was made of panels.
        """
        n = PANEL_NODES
        live = [i for i, o in enumerate(out) if o is not None]
        if f_input is None:
            f_input = self._f_path(path, target, rows, np.ones(len(rows)))
        f_base = f_input - delta[rows]
        floor = 1e-6 * np.maximum(np.abs(f_input), np.abs(f_base))  # panel errors below float32's resolution
        current = [out[i][rows].copy() for i in live]  # each failing probe's running attribution
        best_error = error[rows].copy()
        row_bytes = sum(c[0].nbytes for c in current)
        stored = 0
        # Per failing probe: its panels as [start, end, f(start), f(end), integral, attribution or None].
        panels = []
        if first is None:
            for k in range(len(rows)):
                # The first pass is always kept: it has `steps` nodes, so recomputing it as a panel would not match.
                kept = [c[k].copy() for c in current]
                integral = float(sum(c[k].sum(dtype=np.float64) for c in current))
                panels.append([[0.0, 1.0, float(f_base[k]), float(f_input[k]), integral, kept]])
        else:
            edges, attributions = first
            inner = len(edges) - 2  # the output at the panels' inner edges (forward only)
            f_inner = self._f_path(path, target, np.repeat(rows, inner), np.tile(edges[1:-1], len(rows)))
            f_inner = f_inner.reshape(len(rows), inner)
            attributions = [attributions[i] for i in live]
            for k, r in enumerate(rows):
                ends = np.concatenate([[f_base[k]], f_inner[k], [f_input[k]]])
                probe_panels = []
                for j in range(len(edges) - 1):
                    attr = [a[r * (len(edges) - 1) + j] for a in attributions]
                    kept = [x.copy() for x in attr] if stored + row_bytes <= _PANEL_BYTES else None
                    stored += row_bytes if kept is not None else 0
                    probe_panels.append([float(edges[j]), float(edges[j + 1]), float(ends[j]), float(ends[j + 1]),
                                         float(sum(x.sum(dtype=np.float64) for x in attr)), kept])
                panels.append(probe_panels)
        active = np.arange(len(rows))
        while active.size:
            tasks = []  # (failing-probe index, panel index): each active probe's worst panel
            for k in active:
                if spent[rows[k]] + 3 * n > self.max_steps:
                    continue
                errors = [abs(p[4] - (p[3] - p[2])) for p in panels[k]]
                j = int(np.argmax(errors))
                if errors[j] > floor[k]:
                    tasks.append((k, j))
            if not tasks:
                break
            owner = np.array([k for k, _ in tasks])
            lo = np.array([panels[k][j][0] for k, j in tasks])
            hi = np.array([panels[k][j][1] for k, j in tasks])
            mid = (lo + hi) / 2
            lost = np.array([panels[k][j][5] is None for k, j in tasks], dtype=bool)  # recomputed parents
            f_mid = self._f_path(path, target, rows[owner], mid)
            m = len(tasks)
            joint = self._panel_attributions(
                path, target, np.concatenate([rows[owner], rows[owner], rows[owner[lost]]]),
                np.concatenate([lo, mid, lo[lost]]), np.concatenate([mid, hi, hi[lost]]), n)
            joint = [joint[i] for i in live]
            # np.add.at: a probe split several times pays for each split (`spent[i] +=` would count it once).
            np.add.at(spent, rows[owner], 2 * n + n * lost)
            recomputed = iter(range(2 * m, len(joint[0])))
            for t, (k, j) in enumerate(tasks):
                parent = panels[k][j]
                if parent[5] is None:
                    r = next(recomputed)
                    parent_attr = [a[r] for a in joint]
                else:
                    parent_attr = parent[5]
                    if (parent[0], parent[1]) != (0.0, 1.0):  # the first pass is not counted in `stored`
                        stored -= row_bytes
                halves = []
                for a, b, fa, fb, h in ((lo[t], mid[t], parent[2], f_mid[t], t),
                                        (mid[t], hi[t], f_mid[t], parent[3], m + t)):
                    attr = [x[h] for x in joint]
                    kept = [x.copy() for x in attr] if stored + row_bytes <= _PANEL_BYTES else None
                    stored += row_bytes if kept is not None else 0
                    halves.append([a, b, float(fa), float(fb), float(sum(x.sum(dtype=np.float64) for x in attr)),
                                   kept])
                    for c, x in zip(current, attr):
                        c[k] += x
                for c, x in zip(current, parent_attr):
                    c[k] -= x
                panels[k][j:j + 1] = halves
            touched = np.unique(owner)
            now = _sum_error([c[touched] for c in current], delta[rows[touched]])
            # Splitting one panel can uncover another's error of opposite sign: keep each probe's best answer.
            better = now < best_error[touched]
            for i, c in zip(live, current):
                out[i][rows[touched[better]]] = c[touched[better]]
            best_error[touched[better]] = now[better]
            error[rows[touched[better]]] = now[better]
            active = touched[best_error[touched] > allowed[rows[touched]]]
        return rows[best_error > allowed[rows]]

    def _f_path(self, path, target, probes, alphas) -> np.ndarray:
        """The explained output at path point `alphas[j]` of probe `probes[j]` (forward only without text)."""
        inputs, starts, ends = path
        begin = _rows(starts, probes)
        points = []
        for s, e in zip(begin, _rows(ends, probes)):
            points.append(None if e is None else
                          s + alphas.astype(np.float32).reshape((-1,) + (1,) * (e.ndim - 1)) * (e - s))
        rows = np.arange(len(probes))
        if self.space.has_text:
            return self.space.gradients(_rows(inputs, probes), points, target[probes])[0].astype(np.float64)
        return self.model.predict(points)[rows, target[probes]].astype(np.float64)

    def _panel_attributions(self, path, target, probes, lo, hi, n) -> List[Optional[np.ndarray]]:
        """Each (probe, [lo, hi]) path panel's attribution with `n` Gauss-Legendre nodes, batched; `path` is
        (inputs, starts, ends) of every probe."""
        inputs, starts, ends = path
        alphas, weights = integration_nodes(n, self.rule)
        if len(probes) == 0:
            return [None if e is None else np.zeros((0,) + e.shape[1:], dtype=np.float32) for e in ends]
        width = hi - lo
        point = (lo[:, None] + width[:, None] * alphas[None]).astype(np.float32)  # (tasks, n)
        weight = (width[:, None] * weights[None]).astype(np.float32)
        per_call = max(1, self.model.batch_size // n)
        parts = []
        for start in range(0, len(probes), per_call):
            sl = slice(start, start + per_call)
            p, m = probes[sl], len(probes[sl])
            begin = _rows(starts, p)
            deltas = [None if e is None else e[p] - s for e, s in zip(ends, begin)]
            points = []
            for s, d in zip(begin, deltas):
                if d is None:
                    points.append(None)
                    continue
                along = point[sl].reshape((m, n) + (1,) * (d.ndim - 1))
                points.append((s[:, None] + along * d[:, None]).reshape((m * n,) + d.shape[1:]))
            _, grads = self.space.gradients(self._path_rows(_rows(inputs, p), n), points, np.repeat(target[p], n))
            parts.append([None if d is None else np.einsum("mn,mn...->m...", weight[sl], g.reshape((m, n) + d.shape[1:])) * d
                          for g, d in zip(grads, deltas)])
        return [None if column[0] is None else np.concatenate(column) for column in zip(*parts)]

    def _path_rows(self, inputs: List[np.ndarray], n: int) -> List[np.ndarray]:
        """Each probe's token ids and held inputs repeated for its `n` path points (the masks follow them); a
        model without text inputs needs none."""
        return [np.repeat(x, n, axis=0) for x in inputs] if self.space.has_text else inputs

    def _attribute(self, inputs: List[np.ndarray], target: np.ndarray) -> List[Optional[np.ndarray]]:
        # `attribute` batches the probes itself (their path ends are computed once); this is one slice of it.
        return self.space.reduce(self._integrate(inputs, *self._endpoints(inputs), target, self.steps), inputs)

    def _integrate(self, inputs: List[np.ndarray], starts, ends, target: np.ndarray,
                   steps: int) -> List[Optional[np.ndarray]]:
        """Attributions (at the inputs' own values, or a text input's embeddings, not yet reduced per token) of
        `inputs` with `steps` path points from `starts` to `ends`, in model calls of at most `batch_size` rows."""
        alphas, weights = integration_nodes(steps, self.rule)
        m = len(target)
        deltas = [None if e is None else e - s for s, e in zip(starts, ends)]
        sums = [None if d is None else np.zeros(d.shape, dtype=np.float32) for d in deltas]
        # Path points per call: all of them when they fit, else slices, so a call never holds steps x rows.
        per_call = max(1, self.model.batch_size // m)
        for piece in range(0, steps, per_call):
            a = alphas[piece:piece + per_call].astype(np.float32)
            w = weights[piece:piece + per_call].astype(np.float32)
            n = len(a)
            # Row (i, j) of the batch is probe i at path point j: probe-major, so a reshape regroups it.
            path = []
            for s, d in zip(starts, deltas):
                if d is None:
                    path.append(None)
                    continue
                along = a.reshape((1, n) + (1,) * (d.ndim - 1))
                path.append((s[:, None] + along * d[:, None]).reshape((m * n,) + d.shape[1:]))
            _, grads = self.space.gradients(self._path_rows(inputs, n), path, np.repeat(target, n))
            for total, g, d in zip(sums, grads, deltas):
                if d is not None:
                    total += np.tensordot(w, g.reshape((m, n) + d.shape[1:]), axes=([0], [1]))
        return [None if d is None else total * d for total, d in zip(sums, deltas)]


def _rows(arrays: Sequence[Optional[np.ndarray]], rows) -> List[Optional[np.ndarray]]:
    """`rows` (a slice or indices) of each array; None stays None."""
    return [None if a is None else a[rows] for a in arrays]


def _sum_error(attributions: List[Optional[np.ndarray]], delta: np.ndarray) -> np.ndarray:
    """|sum of each probe's attributions over every input - delta|."""
    total = sum(a.reshape(len(delta), -1).sum(axis=1, dtype=np.float64) for a in attributions if a is not None)
    return np.abs(total - delta)
