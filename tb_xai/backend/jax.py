"""The JAX side of the seam: jitted stateless calls of a Keras 3 model, differentiated with jax.grad.

Every call passes the model's current variable values as arguments and runs the model inside a
`keras.StatelessScope` bound to them, so the jitted functions stay valid while training changes the weights:
a jitted `model(x)` would bake the weights of its trace into the compiled program. Calls are padded to a
power of two of rows (see `padded_rows`), so each function compiles a handful of times in a process and never
again between epochs.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
from jax.extend.core import Literal
import keras
import numpy as np

from tb_xai.backend.keras_model import Injection, KerasModel, LayerCall
from tb_xai.batching import map_batches
from tb_xai.probe import ProbeSet

# The smallest padded call: fewer distinct shapes (each an XLA compilation, about 0.3 s on a CPU) for little
# padding; calls this small are setup probes and remainders.
MIN_PADDED_ROWS = 32


class JaxModel(KerasModel):
    """A built Keras model on the JAX backend, seen through one explained output head (see `KerasModel`)."""

    def __init__(self, model, probe: ProbeSet, output: Optional[Union[str, int]] = None, batch_size: int = 1024,
                 logits: bool = False, binary_classes: bool = False):
        super().__init__(model, probe, output=output, batch_size=batch_size, logits=logits,
                         binary_classes=binary_classes)
        self._floating = [np.issubdtype(d, np.floating) for d in self.input_dtypes]
        self._predict_fn = jax.jit(self._predict)
        self._blend_fn = jax.jit(lambda values, *args: self._stateless_call(values, self._blend, *args))
        self._gradients_fn = jax.jit(self._gradients)
        self._layer_fns: Dict[str, object] = {}
        self._joint_fns: Dict[Tuple[str, ...], object] = {}
        self._embedding_fns: Dict[str, object] = {}
        self._checked = False

    # ------------------------------------------------------------------------------- traced functions
    def _values(self):
        return [v.value for v in self.model.variables]

    def _stateless(self, values, xs, injection=None):
        return self._stateless_call(values, self._forward, xs, injection)

    def _stateless_call(self, values, fn, *args):
        with keras.StatelessScope(state_mapping=list(zip(self.model.variables, values))):
            return fn(*args)

    def _merge(self, floats, others):
        floats, others = iter(floats), iter(others)
        return [next(floats) if f else next(others) for f in self._floating]

    def _split(self, xs):
        return (tuple(x for x, f in zip(xs, self._floating) if f),
                tuple(x for x, f in zip(xs, self._floating) if not f))

    def _predict(self, values, xs):
        return self._stateless(values, xs)

    def _gradients(self, values, floats, others, target):
        def total(floats):
            selected = self._select(self._stateless(values, self._merge(floats, others)), target)
            # Rows are independent, so the gradient of the sum is each row's own gradient.
            return jnp.sum(selected), selected

        grads, selected = jax.grad(total, has_aux=True)(floats)
        return selected, grads

    # ---------------------------------------------------------------------------------- public calls
    def predict(self, inputs: Sequence[np.ndarray], batch_size: Optional[int] = None) -> np.ndarray:
        values = self._values()
        size = batch_size or self.batch_size
        (out,) = map_padded(lambda *xs: [self._predict_fn(values, xs)], self.as_inputs(inputs), size)
        return out

    def predict_blend(self, keep, kept, removed, batch_size: Optional[int] = None) -> np.ndarray:
        keep, kept, removed, runs = self.blend_tables(keep, kept, removed, batch_size)
        values, length = self._values(), keep.shape[1]

        def call(*parts):  # padded by whole runs, as `map_padded` pads rows
            n = len(parts[0])
            padded = padded_rows(n, runs)
            parts = [np.concatenate([p, np.zeros((padded - n,) + p.shape[1:], p.dtype)]) for p in parts]
            return [np.asarray(self._blend_fn(values, *parts))[:n * length]]

        (out,) = map_batches(call, [keep, kept, removed], runs)
        return out

    def gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        if not self._checked:
            self.check_input_gradients()
        values = self._values()

        def call(*arrays):
            floats, others = self._split(arrays[:-1])
            selected, grads = self._gradients_fn(values, floats, others, arrays[-1])
            grads = iter(grads)
            return [selected] + [next(grads) if f else np.zeros(x.shape, np.float32)
                                 for x, f in zip(arrays[:-1], self._floating)]

        arrays = self.as_inputs(inputs) + [np.asarray(target, dtype=np.int32)]
        out = map_padded(call, arrays, self.batch_size)
        return out[0], out[1:]

    def check_input_gradients(self) -> None:
        xs = [a[:1] for a in self.probe.inputs]
        floats, others = self._split(xs)
        closed = jax.make_jaxpr(self._gradients)(self._values(), floats, others, np.zeros(1, np.int32))
        # Outputs: the selected values, then one gradient per float input. A gradient that depends on no
        # argument at all (not even the weights) is a constant: JAX's zeros for an input with no path.
        constant = _constant_outputs(closed)
        n_values = 1
        disconnected = [i for i, f in enumerate(self._floating) if not f]
        for k, i in enumerate(i for i, f in enumerate(self._floating) if f):
            if (n_values + k) in constant:
                disconnected.append(i)
        self._checked = True
        for i in sorted(set(disconnected) & set(self.input_gradient_indices())):
            raise self.no_gradient_error(i)

    def input_names_reaching(self, call: LayerCall) -> List[str]:
        xs = [a[:1] for a in self.probe.inputs]

        def activations(values, floats, others):
            injection = Injection(call, jnp.zeros((1,) + tuple(call.shape[1:])))
            self._stateless(values, self._merge(floats, others), injection)
            return jnp.sum(injection.activations.astype(jnp.float32))

        floats, others = self._split(xs)
        closed = jax.make_jaxpr(jax.grad(activations, argnums=1))(self._values(), floats, others)
        constant = _constant_outputs(closed)
        float_names = [n for n, f in zip(self.probe.names, self._floating) if f]
        return [name for k, name in enumerate(float_names) if k not in constant]

    def layer_gradients(self, layer, inputs: Sequence[np.ndarray], target: np.ndarray):
        """(activations of a layer call, d selected output / d activations); `layer` is a `LayerCall` or
        what `find_layer` accepts."""
        call = layer if isinstance(layer, LayerCall) else self.find_layer(layer)
        if call.shape is None:
            raise ValueError(f"layer {call.path!r} does not output a single tensor")
        fn = self._layer_fns.get(call.path)
        if fn is None:
            fn = self._layer_fns[call.path] = jax.jit(self._layer_function(call))
        values = self._values()
        arrays = self.as_inputs(inputs) + [np.asarray(target, dtype=np.int32)]
        act, grads = map_padded(lambda *a: fn(values, a[:-1], a[-1]), arrays, self.batch_size)
        return act, grads

    def _layer_function(self, call: LayerCall):
        def layer_fn(values, xs, target):
            def total(z):
                injection = Injection(call, z)
                selected = self._select(self._stateless(values, xs, injection), target)
                if injection.activations is None:
                    raise ValueError(f"layer {call.path!r} is not called when the model runs on the probe")
                return jnp.sum(selected), injection.activations

            # The zeros are made inside the compiled function: no host array of rows x layer size per call.
            z = jnp.zeros((target.shape[0],) + tuple(call.shape[1:]), jnp.float32)
            grads, act = jax.grad(total, has_aux=True)(z)
            return act.astype(jnp.float32), grads.astype(jnp.float32)

        return layer_fn

    def joint_gradients(self, calls: Sequence[LayerCall], inputs: Sequence[np.ndarray],
                        embeddings: Sequence[np.ndarray], target: np.ndarray):
        calls = list(calls)
        key = tuple(f"{c.path}#{c.index}" for c in calls)
        fn = self._joint_fns.get(key)
        if fn is None:
            fn = self._joint_fns[key] = jax.jit(self._joint_function(calls))
        embeddings = self._check_embeddings(calls, inputs, embeddings)
        wrt = [i for i in self.input_gradient_indices() if self._floating[i]]
        values, n, k = self._values(), len(inputs), len(calls)

        def call(*arrays):
            selected, grads = fn(values, arrays[:n], arrays[n:n + k], arrays[-1])
            return [selected] + list(grads)

        arrays = self.as_inputs(inputs) + embeddings + [np.asarray(target, dtype=np.int32)]
        out = map_padded(call, arrays, self.batch_size)
        found = dict(zip(wrt, out[1 + k:]))
        input_grads = [found[i] if i in found else np.zeros(a.shape, np.float32) if i in self.input_gradient_indices()
                       else None for i, a in enumerate(inputs)]
        return out[0], out[1:1 + k], input_grads

    def _joint_function(self, calls: List[LayerCall]):
        wrt = [i for i in self.input_gradient_indices() if self._floating[i]]

        def joint_fn(values, xs, embeddings, target):
            def total(embeddings, floats):
                inputs = list(xs)
                for i, x in zip(wrt, floats):
                    inputs[i] = x
                injections = [Injection(c, e, replace=True) for c, e in zip(calls, embeddings)]
                selected = self._select(self._stateless(values, inputs, injections), target)
                for c, j in zip(calls, injections):
                    if j.activations is None:
                        raise ValueError(f"layer {c.path!r} is not called when the model runs on the probe")
                return jnp.sum(selected), selected

            (g_emb, g_in), selected = jax.grad(total, argnums=(0, 1), has_aux=True)(
                tuple(embeddings), tuple(xs[i] for i in wrt))
            return selected, [g.astype(jnp.float32) for g in g_emb] + [g.astype(jnp.float32) for g in g_in]

        return joint_fn

    def embeddings(self, call: LayerCall, inputs: Sequence[np.ndarray]) -> np.ndarray:
        key = f"{call.path}#{call.index}"
        fn = self._embedding_fns.get(key)
        if fn is None:
            def embedding_fn(values, xs):
                injection = Injection(call, jnp.zeros((xs[0].shape[0],) + tuple(call.shape[1:])))
                self._stateless(values, xs, injection)
                return injection.activations.astype(jnp.float32)

            fn = self._embedding_fns[key] = jax.jit(embedding_fn)
        values = self._values()
        (out,) = map_padded(lambda *xs: [fn(values, xs)], self.as_inputs(inputs), self.batch_size)
        return out

    def resize(self, maps: np.ndarray, size: Tuple[int, ...]) -> np.ndarray:
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim == 3:  # (rows, h, w)
            out = jax.image.resize(maps, (len(maps),) + tuple(size), method="bilinear", antialias=False)
        elif maps.ndim == 2:  # (rows, length)
            out = jax.image.resize(maps, (len(maps), size[0]), method="bilinear", antialias=False)
        else:
            raise ValueError(f"maps must be (rows, h, w) or (rows, length); received shape {maps.shape}")
        return np.asarray(out)

    def is_chief(self) -> bool:
        """Process 0 writes (multi-process JAX); a single process always does."""
        return jax.process_index() == 0


def padded_rows(n: int, size: int) -> int:
    """Rows a call of `n` rows (at most `size`) is padded to: the next power of two, at least
    `MIN_PADDED_ROWS`, capped at `size`. XLA specialises on shapes; with these few shapes a function compiles
    at most log2(size) - 4 times in a process, whatever the number of probes, and never between epochs."""
    if n > size:
        raise ValueError(f"{n} rows exceed the call size {size}")
    return min(size, max(MIN_PADDED_ROWS, 1 << max(0, int(n - 1).bit_length())))


def map_padded(fn, arrays: Sequence[np.ndarray], size: int) -> List[np.ndarray]:
    """`map_batches` with each slice zero-padded to `padded_rows` rows and the padding cut from the outputs.
    Rows are independent (inference mode), so padding changes no real row."""

    def padded(*parts):
        n = len(parts[0])
        rows = padded_rows(n, size)
        if rows != n:
            parts = [np.concatenate([p, np.zeros((rows - n,) + p.shape[1:], p.dtype)]) for p in parts]
        return [np.asarray(o)[:n] for o in fn(*parts)]

    return map_batches(padded, arrays, size)


def _constant_outputs(closed) -> set:
    """Indices of a jaxpr's outputs that depend on none of its inputs (computed from literals only)."""
    jaxpr = closed.jaxpr
    dependent = set(map(id, jaxpr.invars))
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, Literal) and id(v) in dependent for v in eqn.invars):
            dependent.update(id(v) for v in eqn.outvars)
    return {i for i, v in enumerate(jaxpr.outvars)
            if isinstance(v, Literal) or id(v) not in dependent}
