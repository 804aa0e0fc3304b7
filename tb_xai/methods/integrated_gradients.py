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
#: Nodes of an adaptive refinement panel: 3-node Gauss-Lobatto, i.e. Simpson's rule (the panel's two ends and
#: its midpoint); the panel at the baseline is a 2-node Gauss-Radau panel (a third of the way in, and its end), so
#: alpha = 0 needs no gradient row. Every gradient call also returns the output at its rows, so f at every panel
#: end comes with the gradients, and a panel's error is known exactly with no forward call; a split reuses its
#: parent's nodes and needs two new gradient rows.
PANEL_NODES = 3
PANEL_RULE = "gauss_lobatto"
FIRST_PANEL_RULE = "gauss_radau"  # the panel at the baseline (2 nodes, none at alpha = 0)
#: A failing probe spends at most 2 x `_ROUND_ACTIVATIONS // (one row's outputs over every layer call)` new gradient
#: rows per round (at least 2, at most 2 x `_SPLITS_MOST`; see `_splits_per_round`), on its worst panels, each split
#: up to `_DEPTH_MOST` levels of halving deep where its error is far over its share of the allowance (levels:
#: `_DEPTH_RATE` x log2(error / share), rounded up). FILL=False: one panel, one level, per round.
FILL = True
_ROUND_ACTIVATIONS = 2 ** 13
#: A panel whose error has the opposite sign of its probe's total error ranks at this fraction of its size among
#: the panels to split (the stopping rule is on the total: splitting it first mostly moves the total away from 0).
_OPPOSITE = 0.5
_SPLITS_MOST = 16
#: The most levels of halving one split makes in a round (2^4 panels from 30 new gradient rows).
_DEPTH_MOST = 4
_DEPTH_RATE = 0.5
#: Bytes of node gradient rows a refinement keeps (beyond them a node's row is recomputed when a split needs it).
_NODE_BYTES = 64 * 2 ** 20


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


@functools.lru_cache(maxsize=32)
def first_pass_nodes(panels: int):
    """The adaptive first pass's nodes in [0, 1] and their weights: `panels` equal panels, node 2k and 2k + 2 the
    ends of panel k. Panel 0, at the baseline, is a 2-node Gauss-Radau panel (nodes at a third of it and at its
    end, weights 3/4 and 1/4 of its width; node 0, alpha = 0, has weight 0 and needs no gradient row); the others
    are 3-node Gauss-Lobatto panels (Simpson's rule: ends and midpoint). Three panels: nodes 0, 1/9, 1/3, 1/2,
    2/3, 5/6, 1. (Panels widening from the baseline, 1 : 2 : 3, took fewer rows on the demo models and the CNN's
    first epoch, but 4-13% more on bench_overhead's CNN after 2-10 epochs, whose output changes most near the
    probe.)"""
    ends = np.arange(panels + 1, dtype=np.float64) / panels
    nodes = np.empty(2 * panels + 1)
    nodes[0::2] = ends
    nodes[1::2] = (ends[:-1] + ends[1:]) / 2
    nodes[1] = ends[1] / 3
    h = np.diff(ends)
    weights = np.zeros(2 * panels + 1)
    weights[0:-1:2] += h / 6
    weights[2::2] += h / 6
    weights[1::2] = 4 * h / 6
    weights[:3] = [0.0, 3 * h[0] / 4, h[0] / 4 + (h[1] / 6 if panels > 1 else 0.0)]
    nodes.flags.writeable = weights.flags.writeable = False
    return nodes, weights


def _panel_coefficients(radau: np.ndarray):
    """Each panel's quadrature weights on its nodes (lo, inner, hi), as fractions of its width: Gauss-Radau
    (0, 3/4, 1/4) for the panel at the baseline, Gauss-Lobatto (1/6, 4/6, 1/6) for the others."""
    return (np.where(radau, 0.0, 1 / 6), np.where(radau, 3 / 4, 4 / 6), np.where(radau, 1 / 4, 1 / 6))


#: A split's change of its probe's attribution, as fractions of the split panel's width h, on the nodes (lo, new
#: inner node of the left half, inner, new inner node of the right half, hi). Lobatto [a, b]: halves at the
#: midpoint (quarter points new). Radau [0, h] (inner node h/3): a Radau panel [0, h/3] (inner node h/9, new) and a
#: Lobatto panel [h/3, h] (midpoint 2h/3, new), so the inner node becomes an edge; two new rows either way.
_SPLIT_LOBATTO = np.array([-1 / 12, 1 / 3, -1 / 2, 1 / 3, -1 / 12])
_SPLIT_RADAU = np.array([0.0, 1 / 4, 1 / 12 + 1 / 9 - 3 / 4, 4 / 9, 1 / 9 - 1 / 4])
#: How many levels of halving a split can make from r new gradient rows (2^(d + 1) - 2 for d levels), for r up to
#: `_LEVELS_ROWS`; and the new rows of a split d levels deep (0 for d = 0).
_LEVELS_ROWS = 2 ** (_DEPTH_MOST + 1)
_LEVELS = (np.floor(np.log2(np.arange(_LEVELS_ROWS + 1) + 2.0)) - 1).astype(int)
_ROWS_OF_DEPTH = 2 ** (np.arange(_DEPTH_MOST + 1) + 1) - 2


#: `node_slot` of the node at alpha = 0: it has weight 0 and no gradient row (f there is the baseline's output).
_NO_ROW = -2


def _check_steps(value, what: str) -> int:
    value = check_positive_int(value, what, minimum=2)
    if value > MAX_STEPS:
        raise ValueError(f"{what} must be at most {MAX_STEPS} path points per probe; received: {value!r}")
    return value


class IntegratedGradients(AttributionMethod):
    """Path integral of the gradient from a baseline to the input, times (input - baseline).

    Attributions of a probe sum to f(input) - f(baseline) (completeness) up to the integration error. The
    error is checked for every probe; where it exceeds `tolerance` (relative to |f(input) - f(baseline)|),
    that probe's path is refined by adaptive 3-node Gauss-Lobatto panels (Simpson's rule: each panel's ends and
    midpoint; at the baseline a 2-node Gauss-Radau panel), splitting the panels with the largest error (those
    pushing the probe's total error further first; on small models, whose rows cost little next to a call, several
    levels of halving deep in one round), up to `max_steps` path points, keeping its best answer. A
    panel's error is known exactly: each gradient call also returns the output at its rows, so f at every panel
    end, f(input) and f(baseline) included, comes with the gradients and no forward call is made. The first pass
    is small: (`steps` - 1) // 2 panels, `steps` - 1 gradient rows per probe (with `tolerance=None`, one
    `steps`-node Gauss-Legendre rule over the path); only the probes that need more path points pay for them.
    Probes still over the allowance at `max_steps` are counted in `diagnostics()` (logged as a scalar each step)
    and the callback warns once.

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
        steps: path points of the first pass, alpha = 0 included (2 to 4096; with a tolerance at least 3, the nodes
            of one panel, and the point at the baseline needs no gradient row).
        rule: "gausslegendre" (default: adaptive Gauss-Lobatto panels with a tolerance, one Gauss-Legendre rule
            without; far fewer steps than a Riemann sum for smooth paths) or "riemann_trapezoid" (a failing
            probe is integrated again with 2x the points).
        tolerance: completeness error, relative to |f(input) - f(baseline)|, above which a probe is refined
            (a number in (0, 1)); None never refines.
        max_steps: the most path points a refined probe gets (up to 4096).
        name: the logged name.

    Example:
        >>> IntegratedGradients(baseline=0.0, steps=32, tolerance=0.005)
    """

    name = "integrated_gradients"

    def __init__(self, baseline: BaselineLike = "zeros", steps: int = 7, rule: str = "gausslegendre",
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
        self._primed = None  # see prime_first_pass

    def config(self):
        if isinstance(self.baseline, str):
            baseline = self.baseline
        elif np.isscalar(self.baseline):
            baseline = float(self.baseline)
        else:
            baseline = "array"
        config = {"baseline": baseline, "steps": self.steps, "rule": self.rule, "tolerance": self.tolerance,
                  "max_steps": self.max_steps, "refinement": REFINEMENT}
        if self.tolerance is not None and self.rule == "gausslegendre":
            config.update(panel_rule=PANEL_RULE, panel_nodes=PANEL_NODES, first_panel_rule=FIRST_PANEL_RULE,
                          panels=self._first_panels())
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
        self._diagnostics = {}
        if self.tolerance is not None and self.rule == "gausslegendre":
            return self.space.reduce(self._adaptive(path, target), inputs, how="sum")
        per_call = max(1, self.model.batch_size // self.steps)
        parts = [self._integrate(_rows(inputs, sl), _rows(starts, sl), _rows(ends, sl), target[sl], self.steps)
                 for sl in chunks(len(target), per_call)]
        out = [None if column[0] is None else np.concatenate(column) for column in zip(*parts)]
        if self.tolerance is not None:
            delta, allowed, _ = self._path_ends(inputs, target, starts)
            error = _sum_error(out, delta)
            spent = np.full(len(target), float(self.steps))
            rows = self._refine_uniform(path, target, out, delta, allowed, error, spent,
                                        np.flatnonzero(error > allowed))
            self._diagnostics = {
                "completeness_error_max": float(np.max(error / (allowed / self.tolerance))),
                "probes_over_tolerance": int(rows.size),
                "steps_mean": float(spent.mean()),
            }
        return self.space.reduce(out, inputs, how="sum")

    def _first_panels(self) -> int:
        """How many Gauss-Lobatto panels the adaptive first pass is made of: (`steps` - 1) // 2, at least one; their
        2 x panels + 1 nodes are at most `steps` path points (3 when `steps` is 2)."""
        return max(1, (self.steps - 1) // 2)

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

    def _adaptive(self, path, target) -> List[Optional[np.ndarray]]:
        """Adaptive 3-node Gauss-Lobatto panels (Simpson's rule: each panel's two ends and its midpoint), and a
        2-node Gauss-Radau panel at the baseline.

        Every node's gradient call also returns the explained output there, so f at every panel end is known
        without a forward call: f(input) at alpha = 1, f(baseline) at alpha = 0 (one row per distinct target,
        shared by every probe, or a row per probe for text inputs, whose baseline follows the probe's masks).
        A panel's error is then exact: the integral of the directional derivative over [a, b] is
        f(path(b)) - f(path(a)). A failing probe's panels are split where their error is largest, a panel whose
        error has the opposite sign of the probe's total counting half; a Lobatto split halves the panel and
        reuses its three nodes (its ends and midpoint become the halves' ends and shared edge), needing only the two
        quarter points; a Radau split makes [0, h/3] (Radau again, new node h/9) and [h/3, h] (Lobatto, new
        midpoint 2h/3): two gradient rows and no forward row either way.

        No gradient is taken at alpha = 0 itself (`first_pass_nodes`): the Radau panel does not need it (at a
        baseline of zeros with zero biases, a freshly built network, every ReLU sits exactly on its kink there,
        where the gradient is the left limit, 0, not the one the path sees).

        Memory: the nodes' gradient rows (times the path's delta) of the failing probes, up to `_NODE_BYTES`
        (beyond it a node's row is recomputed when a split needs it), and each failing probe's attribution.
        """
        inputs, starts, ends = path
        m = len(target)
        live = [i for i, e in enumerate(ends) if e is not None]
        grid, weights = first_pass_nodes(self._first_panels())  # the first pass's nodes, alpha 0 included
        per_probe = len(grid) - 1 + (1 if self.space.has_text else 0)  # text: also f(baseline), per probe
        row_bytes = sum(int(np.prod(ends[i].shape[1:])) * 4 for i in live)
        pool = _NodePool(ends, live, _NODE_BYTES // max(1, row_bytes), m * self.max_steps)
        # The first pass: (probe, node) rows, probe-major, every node but alpha = 0's (its weight is 0); text inputs
        # add each probe's alpha = 0 row, for f at its baseline only.
        alphas = np.concatenate([[0.0] if self.space.has_text else [], grid[1:]])
        node_of = np.concatenate([[-1] if self.space.has_text else [], np.arange(1, len(grid))]).astype(int)
        probes = np.repeat(np.arange(m), per_probe)
        base_targets = None if self.space.has_text else np.unique(target)
        first = self._primed_first_pass(path, target, probes, base_targets)
        if first is None:
            first = self._evaluate(path, target, probes, np.tile(alphas, m), base_targets)
        f, s, grads, f_base = first
        f = f.reshape(m, per_probe)
        s = s.reshape(m, per_probe)
        node = np.tile(node_of, m).reshape(m, per_probe)
        if self.space.has_text:
            f_start = f[:, 0]
        else:
            f_start = f_base[np.searchsorted(base_targets, target)]
        on_path = node >= 0
        # The node at alpha 0: f at the baseline itself; no gradient (its weight is 0).
        f_nodes = np.concatenate([f_start[:, None], f[on_path].reshape(m, len(grid) - 1)], axis=1)
        s_nodes = np.concatenate([np.zeros((m, 1)), s[on_path].reshape(m, len(grid) - 1)], axis=1)
        out = []
        for i, e in enumerate(ends):
            if e is None:
                out.append(None)
                continue
            out.append(np.zeros(e.shape, dtype=np.float32))
        w_rows = np.where(on_path, weights[np.maximum(node, 0)], 0.0).reshape(-1).astype(np.float32)
        for (sl, chunk_grads) in grads:
            owner = probes[sl]
            cut = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
            for i in live:
                g = chunk_grads[i]
                weighted = g * w_rows[sl].reshape((-1,) + (1,) * (g.ndim - 1))
                out[i][owner[cut]] += np.add.reduceat(weighted, cut, axis=0)
        f_input = f_nodes[:, -1]
        delta = f_input - f_start
        allowed = self.tolerance * np.abs(delta) + 1e-5 * np.maximum(np.abs(f_input), np.abs(f_start))
        error = _sum_error(out, delta)
        spent = np.full(m, float(len(grid) - 1))
        shared = 0 if base_targets is None else len(base_targets)
        rows = np.flatnonzero(error > allowed)
        if rows.size:
            # The failing probes' node rows are kept (up to the pool's room) for their splits.
            failing = np.zeros(m, dtype=bool)
            failing[rows] = True
            local = np.cumsum(failing) - 1  # each failing probe's index among them
            slots = np.full((len(rows), len(grid)), -1)
            slots[:, 0] = _NO_ROW
            flat_node = node.reshape(-1)
            for sl, chunk_grads in grads:
                index = np.arange(sl.start, sl.stop)
                keep = index[failing[probes[index]] & (flat_node[index] >= 0)]
                if keep.size:
                    slots[local[probes[keep]], flat_node[keep]] = pool.put(
                        [chunk_grads[i][keep - sl.start] for i in live])
            grads = None
            rows = self._refine(path, target, out, delta, allowed, error, spent, rows, pool, grid,
                                f_nodes[rows], s_nodes[rows], slots)
        scale = allowed / self.tolerance
        self._diagnostics = {
            "completeness_error_max": float(np.max(error / scale)),
            "probes_over_tolerance": int(rows.size),
            "steps_mean": float((spent.sum() + shared + (m if self.space.has_text else 0)) / m),
        }
        return out

    def _splits_per_round(self) -> int:
        """How many new gradient rows (two per level of halving) a failing probe spends per round, halved: more on
        a model whose rows cost little next to a call's fixed cost (a call costs about the same, ~0.3-1 ms of CPU,
        whatever its rows on a small model), so that small models need fewer rounds. `_ROUND_ACTIVATIONS` over the
        elements of one row's outputs summed over the forward pass's layer calls (the widest one's where the adapter
        does not list them), at least 1, at most `_SPLITS_MOST`. From the model's shapes only: deterministic, and the
        same for a probe whatever the other probes or the batch size."""
        if not FILL:
            return 1
        return int(max(1, min(_SPLITS_MOST, _ROUND_ACTIVATIONS // self._row_activations())))

    def _row_activations(self) -> int:
        """The elements of one row's outputs over every layer call of the forward pass (the widest one's where the
        adapter does not list its layer calls or their shapes)."""
        widest = max(1, int(getattr(self.model, "widest_activation", 1)))
        sizes = [int(np.prod(c.shape[1:], dtype=np.int64)) for c in getattr(self.model, "layer_calls", None) or ()
                 if getattr(c, "shape", None) is not None and all(isinstance(n, int) for n in c.shape[1:])]
        return max(widest, sum(sizes))

    def _refine(self, path, target, out, delta, allowed, error, spent, rows, pool, grid, f_nodes, s_nodes, slots):
        """Splits the failing probes' panels until completeness holds or `max_steps`; returns the probes still
        over the allowance. Each probe keeps its best answer (splitting one panel can uncover another's error of
        opposite sign).

        `rows`: the failing probes; `f_nodes`, `s_nodes`: (failing probes, first-pass nodes) outputs and
        directional derivatives; `slots`: each of those nodes' row in `pool`, or -1."""
        live = [i for i, o in enumerate(out) if o is not None]
        k_n, g_n = len(rows), len(grid)
        f_in = f_nodes[:, -1]
        floor = 1e-6 * np.maximum(np.abs(f_in), np.abs(f_in - delta[rows]))  # errors below float32's resolution
        budget = self.max_steps - spent[rows]
        splits = self._splits_per_round()
        # Nodes (probe-major), as flat arrays: owner (failing-probe index), alpha, f, s, slot.
        node_owner = np.repeat(np.arange(k_n), g_n)
        node_alpha = np.tile(grid, k_n)
        node_f = f_nodes.reshape(-1).astype(np.float64)
        node_s = s_nodes.reshape(-1).astype(np.float64)
        node_slot = slots.reshape(-1)
        # Panels: owner, and their nodes lo, mid, hi (indices into the node arrays).
        first = np.arange(0, g_n - 2, 2)
        base = (np.arange(k_n) * g_n)[:, None]
        p_owner = np.repeat(np.arange(k_n), len(first))
        p_nodes = np.stack([(base + first).reshape(-1), (base + first + 1).reshape(-1), (base + first + 2).reshape(-1)],
                           axis=1)
        current = [out[i][rows].copy() for i in live]
        best_error = error[rows].copy()
        active = np.ones(k_n, dtype=bool)
        while True:
            lo, hi = node_alpha[p_nodes[:, 0]], node_alpha[p_nodes[:, 2]]
            width = hi - lo
            radau = lo == 0
            s3 = node_s[p_nodes]
            c0, c1, c2 = _panel_coefficients(radau)
            signed = (width * (c0 * s3[:, 0] + c1 * s3[:, 1] + c2 * s3[:, 2])
                      - (node_f[p_nodes[:, 2]] - node_f[p_nodes[:, 0]]))  # each panel's exact error
            size = np.abs(signed)
            # Each active probe's panels, worst first; a panel whose error has the opposite sign of its probe's total
            # counts `_OPPOSITE` of its size (splitting it would mostly move the total away from 0 first).
            total = np.bincount(p_owner, weights=signed, minlength=k_n)
            key = np.where(np.signbit(signed) == np.signbit(total[p_owner]), size, _OPPOSITE * size)
            order = np.lexsort((-key, p_owner))
            order = order[active[p_owner[order]]]
            owner = p_owner[order]
            # Each panel's rank among its probe's: its position less its probe's first position (`order` is by probe).
            first_of = np.zeros(k_n, dtype=int)
            np.cumsum(np.bincount(owner, minlength=k_n)[:-1], out=first_of[1:])
            rank = np.arange(len(order)) - first_of[owner]
            keep = (size[order] > floor[owner]) & (rank < splits)
            order, owner, rank = order[keep], owner[keep], rank[keep]
            lost_of = (node_slot[p_nodes[order]] == -1).sum(axis=1)  # rows to recompute: the panel's nodes without one
            # Levels of halving per split: enough for the panel's error to fall below its share of the allowance
            # (each level about halves it at a kink), within the round's 2 x `splits` new rows per probe (a split
            # `depth` levels deep makes 2^depth panels from 2^(depth + 1) - 2 new rows) and the probe's `max_steps`.
            share = allowed[rows[owner]] / np.bincount(owner, minlength=k_n)[owner]
            want = np.minimum(np.ceil(_DEPTH_RATE * np.log2(np.maximum(size[order] / share, 1.0))),
                              _DEPTH_MOST).astype(int)
            want = np.maximum(want, 1)
            # Greedy in rank order, one rank at a time for every probe at once ([probes, ranks] tables).
            ranks = int(rank.max(initial=-1)) + 1
            table = np.full((k_n, ranks), -1)
            table[owner, rank] = np.arange(len(order))
            there = table >= 0
            want_t = np.where(there, want[table], 0)
            lost_t = np.where(there, lost_of[table], 0)
            depth_t = np.zeros((k_n, ranks), dtype=int)
            room = np.full(k_n, 2 * splits)
            # (the budget is exact below the most a round takes, 2 x splits new rows and 3 recomputed ones per split;
            # above it, it cannot bind)
            left = np.minimum(budget, 4 * _LEVELS_ROWS).astype(int)
            tight = bool((left < 4 * _LEVELS_ROWS).any())
            for j in range(ranks):
                d = np.minimum(want_t[:, j], _LEVELS[np.minimum(room, _LEVELS_ROWS)])  # room >= 0 throughout
                if tight:
                    d = np.minimum(d, _LEVELS[np.minimum(np.maximum(left - lost_t[:, j], 0), _LEVELS_ROWS)])
                    left -= np.where(d > 0, _ROWS_OF_DEPTH[d] + lost_t[:, j], 0)
                depth_t[:, j] = d
                room -= _ROWS_OF_DEPTH[d]
                if room.max() < 2:
                    break
            depth = depth_t[owner, rank]
            chosen = depth > 0
            order, owner, depth = order[chosen], owner[chosen], depth[chosen]
            if not order.size:
                break
            tasks = p_nodes[order]  # (T, 3)
            lost = np.unique(tasks[node_slot[tasks] == -1])
            n_old = len(node_alpha)
            # The new nodes of every level, appended (their outputs and rows come from one gradient call).
            levels, leaves = [], []
            t_nodes, t_owner, t_radau, t_depth = tasks, owner, radau[order], depth
            while len(t_nodes):
                a0, a1, a2 = (node_alpha[t_nodes[:, j]] for j in range(3))
                t_n = len(t_nodes)
                q_alpha = np.concatenate([np.where(t_radau, a0 + (a1 - a0) / 3, (a0 + a1) / 2), (a1 + a2) / 2])
                q_index = len(node_alpha) + np.arange(2 * t_n)
                node_owner = np.concatenate([node_owner, t_owner, t_owner])
                node_alpha = np.concatenate([node_alpha, q_alpha])
                five = np.stack([t_nodes[:, 0], q_index[:t_n], t_nodes[:, 1], q_index[t_n:], t_nodes[:, 2]], axis=1)
                levels.append((five, a2 - a0, t_radau, t_owner))
                deeper = t_depth > 1
                leaves.append((five[~deeper], t_owner[~deeper]))
                t_nodes = np.concatenate([five[deeper, 0:3], five[deeper, 2:5]])
                t_owner = np.concatenate([t_owner[deeper], t_owner[deeper]])
                t_radau = np.concatenate([t_radau[deeper], np.zeros(int(deeper.sum()), dtype=bool)])
                t_depth = np.concatenate([t_depth[deeper], t_depth[deeper]]) - 1
            q_all = np.arange(n_old, len(node_alpha))
            want_owner = np.concatenate([node_owner[lost], node_owner[q_all]])
            want_alpha = np.concatenate([node_alpha[lost], node_alpha[q_all]])
            f, s, grads, _ = self._evaluate(path, target, rows[want_owner], want_alpha)
            fresh = [np.concatenate([g[i] for _, g in grads]) for i in live]
            counts = np.bincount(want_owner, minlength=k_n)  # rows per failing probe (integers: exact in float)
            spent[rows] += counts
            budget -= counts
            # Every fresh row is kept where the pool has room.
            node_f = np.concatenate([node_f, f[len(lost):]])
            node_s = np.concatenate([node_s, s[len(lost):]])
            kept = pool.put(fresh)
            node_slot = np.concatenate([node_slot, kept[len(lost):]])
            fresh_of = np.full(len(node_alpha), -1)
            fresh_of[lost] = np.arange(len(lost))
            fresh_of[q_all] = len(lost) + np.arange(len(q_all))
            node_slot[lost] = kept[:len(lost)]
            # Each split's change of its probe's attribution, level by level: its halves' sums less its own, from the
            # nodes lo, q1, mid, q3, hi (`_SPLIT_LOBATTO` or `_SPLIT_RADAU`, times the panel's width h).
            # Every level at once (the changes are added in level order, as level by level).
            five = np.concatenate([level[0] for level in levels])
            h = np.concatenate([level[1] for level in levels])
            split_radau = np.concatenate([level[2] for level in levels])
            level_owner = np.concatenate([level[3] for level in levels])
            t_n = len(five)
            coeff = (h[:, None] * np.where(split_radau[:, None], _SPLIT_RADAU, _SPLIT_LOBATTO)).astype(np.float32)
            slot5 = node_slot[five]
            held = slot5 >= 0
            computed = slot5 == -1
            for c, x, pooled in zip(current, fresh, pool.arrays or [None] * len(current)):
                gathered = np.empty((t_n, 5) + x.shape[1:], dtype=np.float32)
                if held.any():
                    gathered[held] = pooled[slot5[held]]
                if computed.any():
                    gathered[computed] = x[fresh_of[five[computed]]]
                gathered[slot5 == _NO_ROW] = 0.0  # alpha = 0: weight 0, no row
                change = np.einsum("tc,tc...->t...", coeff, gathered)
                np.add.at(c, level_owner, change)
            # The split panels give way to their halves (or, split deeper, to their halves' halves).
            keep = np.ones(len(p_owner), dtype=bool)
            keep[order] = False
            leaf_nodes = [five for five, _ in leaves]
            leaf_owner = [o for _, o in leaves]
            p_owner = np.concatenate([p_owner[keep]] + [x for o in leaf_owner for x in (o, o)])
            p_nodes = np.concatenate([p_nodes[keep]] + [x for five in leaf_nodes for x in (five[:, 0:3], five[:, 2:5])])
            touched = np.unique(owner)
            now = _sum_error([c[touched] for c in current], delta[rows[touched]])
            better = now < best_error[touched]
            for i, c in zip(live, current):
                out[i][rows[touched[better]]] = c[touched[better]]
            best_error[touched[better]] = now[better]
            error[rows[touched[better]]] = now[better]
            active[:] = False
            active[touched] = best_error[touched] > allowed[rows[touched]]
            done = np.zeros(k_n, dtype=bool)
            done[touched] = ~active[touched]
            if done.any():
                gone = done[node_owner]
                pool.free(node_slot[gone])
                node_slot[gone & (node_slot >= 0)] = -1
        return rows[best_error > allowed[rows]]

    def first_pass_points(self, inputs: Sequence[np.ndarray]):
        """The gradient rows of the adaptive first pass of `inputs`, whatever their targets, for a caller that
        computes them in a call of its own (the callback: in the call that finds the probe's predictions and
        targets): (the path points, one float32 array per input, probe-major; each row's probe; the baseline row,
        one array per input), or None where that call cannot stand in for the first pass's own (no tolerance, a
        Riemann rule, text or held inputs). Give what that call returns to `prime_first_pass`."""
        if (self.model is None or self.tolerance is None or self.rule != "gausslegendre" or self.space is None
                or self.space.has_text or any(self.space.held)):
            return None
        inputs = list(inputs)
        starts, ends = self._endpoints(inputs)
        grid, _ = first_pass_nodes(self._first_panels())
        m = len(inputs[0])
        probes = np.repeat(np.arange(m), len(grid) - 1)
        a = np.tile(grid[1:], m).astype(np.float32)
        points = []
        for s, e in zip(starts, ends):  # `_evaluate`'s points, row for row (elementwise: the same values)
            begin = s[probes]
            d = e[probes] - begin
            points.append(begin + a.reshape((-1,) + (1,) * (d.ndim - 1)) * d)
        return points, probes, [np.asarray(b[None], dtype=np.float32) for b in self._baselines]

    def prime_first_pass(self, inputs: Sequence[np.ndarray], target: np.ndarray, selected: np.ndarray,
                         grads: Sequence[np.ndarray], base_outputs: np.ndarray) -> None:
        """Keeps the first pass's gradient rows at `first_pass_points(inputs)`, computed by the caller at each
        row's probe's `target` (`selected`: the explained output per row; `grads`: d output / d point per input;
        `base_outputs`: the model's outputs at the baseline row, every class), for the next `attribute(inputs,
        target)` on these very input arrays and equal targets, until `forget_first_pass`; the model's weights must
        not change in between."""
        self._primed = ([a for a in inputs], np.asarray(target, dtype=np.int32).copy(),
                        np.asarray(selected, dtype=np.float64), [np.asarray(g) for g in grads],
                        np.asarray(base_outputs, dtype=np.float64).reshape(-1))

    def forget_first_pass(self) -> None:
        self._primed = None

    def _primed_first_pass(self, path, target, probes, base_targets):
        """`_evaluate`'s answer for the first pass from `prime_first_pass`, when it was primed for these inputs and
        targets; else None."""
        primed = getattr(self, "_primed", None)
        if primed is None or base_targets is None:
            return None
        inputs, starts, ends = path
        known, known_target, selected, grads, base_outputs = primed
        if (len(known) != len(inputs) or any(a is not b for a, b in zip(inputs, known))
                or known_target.shape != target.shape or not np.array_equal(known_target, target)
                or len(selected) != len(probes)):
            return None
        n = len(probes)
        s = np.zeros(n, dtype=np.float64)
        gd = []
        for g, st, e in zip(grads, starts, ends):
            if e is None:
                gd.append(None)
                continue
            x = g * (e[probes] - st[probes])  # `_evaluate`'s gradient x delta
            s += x.reshape(n, -1).sum(axis=1, dtype=np.float64)
            gd.append(x)
        return selected, s, [(slice(0, n), gd)], base_outputs[base_targets]

    def _evaluate(self, path, target, probes, alphas, base_targets=None):
        """Gradient rows at path point `alphas[j]` of probe `probes[j]`, in calls of at most `batch_size` rows:
        (the explained output per row, the directional derivative (gradient . delta) per row, [(rows slice,
        gradient x delta per input)] per call, the output at the baseline for each of `base_targets`).

        `base_targets` (no text inputs: the baseline is one row for every probe) appends one baseline row per
        target to the last call."""
        inputs, starts, ends = path
        n = len(probes)
        total = n + (0 if base_targets is None else len(base_targets))
        f = np.empty(n, dtype=np.float64)
        s = np.zeros(n, dtype=np.float64)
        parts = []
        f_base = None
        for sl in chunks(total, self.model.batch_size):
            stop = min(sl.stop, n)
            p = probes[sl.start:stop]
            a = alphas[sl.start:stop].astype(np.float32)
            begin = _rows(starts, p)
            deltas = [None if e is None else e[p] - b for e, b in zip(ends, begin)]
            points = [None if d is None else b + a.reshape((-1,) + (1,) * (d.ndim - 1)) * d
                      for b, d in zip(begin, deltas)]
            t = target[p]
            extra = sl.stop - stop
            if extra:
                bt = base_targets[len(base_targets) - extra:]
                points = [None if x is None else np.concatenate([x, np.broadcast_to(st[:1], (extra,) + st.shape[1:])])
                          for x, st in zip(points, starts)]
                t = np.concatenate([t, bt]).astype(np.int32)
            selected, grads = self.space.gradients(self._path_rows(_rows(inputs, p), 1), points, t)
            selected = np.asarray(selected, dtype=np.float64)
            if extra:
                f_base = selected[len(p):] if f_base is None else np.concatenate([f_base, selected[len(p):]])
            f[sl.start:stop] = selected[:len(p)]
            gd = [None if d is None else g[:len(p)] * d for g, d in zip(grads, deltas)]
            for x in gd:
                if x is not None and len(p):
                    s[sl.start:stop] += x.reshape(len(p), -1).sum(axis=1, dtype=np.float64)
            if len(p):
                parts.append((slice(sl.start, stop), gd))
        return f, s, parts, f_base

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


class _NodePool:
    """Gradient rows (times the path's delta) of panel nodes, one slot per node, at most `capacity` slots; a
    node without a slot (-1) is recomputed when a split needs it."""

    def __init__(self, ends, live, capacity: int, most: int):
        self.capacity = int(min(capacity, most))
        self.shapes = [(i, ends[i].shape[1:]) for i in live]
        self.arrays = None
        self.free_slots = np.zeros(0, dtype=int)  # a stack: the last freed slot is reused first
        self.used = 0

    def put(self, rows: List[np.ndarray]) -> np.ndarray:
        """Stores each row of `rows` (one array per input, rows first) while there is room; their slots (-1: not
        kept)."""
        n = len(rows[0])
        k = min(n, len(self.free_slots))
        reused = self.free_slots[len(self.free_slots) - k:]
        self.free_slots = self.free_slots[:len(self.free_slots) - k]
        grown = min(n - k, self.capacity - self.used)
        slots = np.concatenate([reused, self.used + np.arange(grown), np.full(n - k - grown, -1)]).astype(int)
        self.used += grown
        if self.arrays is None and self.capacity:
            self.arrays = [np.empty((self.capacity,) + shape, dtype=np.float32) for _, shape in self.shapes]
        kept = slots >= 0
        if kept.any():
            for a, x in zip(self.arrays, rows):
                a[slots[kept]] = x[kept]
        return slots

    def free(self, slots: np.ndarray) -> None:
        slots = np.asarray(slots, dtype=int)
        self.free_slots = np.concatenate([self.free_slots, slots[slots >= 0]])
