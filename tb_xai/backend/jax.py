"""The JAX side of the seam: jitted stateless calls of a Keras 3 model, differentiated with jax.grad.

Every call passes the model's current variable values as arguments (`model.stateless_call`), so the jitted
functions stay valid while training changes the weights: a jitted `model(x)` would bake the weights of the
trace into the compiled program. Calls are padded to a power of two of rows (capped at the call size), so
each function compiles at most log2(batch_size) + 1 times in a process and never again between epochs.
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from tb_xai.backend._neutral import KerasModel, map_padded
from tb_xai.probe import ProbeSet


class JaxModel(KerasModel):
    """A built Keras model on the JAX backend, seen through one explained output head.

    Args:
        model: a built Keras model (Sequential, functional or subclassed).
        probe: the probe set; it fixes input names, shapes, dtypes and structure.
        output: the explained output head (name or index) for multi-output models.
        batch_size: the most rows put through the model in one call.
    """

    def __init__(self, model, probe: ProbeSet, output: Optional[Union[str, int]] = None, batch_size: int = 1024):
        self._init_keras_level(model, probe, output, batch_size)
        sample = [a[:1] for a in self.as_arrays(probe.inputs)]
        outputs, _ = model.stateless_call(*self._variables(), probe.structured(sample), training=False)
        self._head, self.output_name = self.pick_head(outputs, output)
        self._predict_fn = jax.jit(self._predict)
        self._gradients_fn = jax.jit(self._gradients)
        self._layer_fns: Dict[str, object] = {}
        self.n_outputs = int(self.predict(sample).shape[1])

    # ------------------------------------------------------------------------------- traced functions
    def _variables(self):
        return ([v.value for v in self.model.trainable_variables],
                [v.value for v in self.model.non_trainable_variables])

    def _merge(self, floats, others):
        floats, others = iter(floats), iter(others)
        return [next(floats) if f else next(others) for f in self.floating]

    def _split(self, xs):
        return (tuple(x for x, f in zip(xs, self.floating) if f),
                tuple(x for x, f in zip(xs, self.floating) if not f))

    def _head_of(self, trainable, non_trainable, xs):
        outputs, _ = self.model.stateless_call(trainable, non_trainable, self.probe.structured(list(xs)),
                                               training=False)
        head = outputs if self._head is None else outputs[self._head]
        return jnp.reshape(head, (head.shape[0], -1)).astype(jnp.float32)

    def _predict(self, trainable, non_trainable, xs):
        return self._head_of(trainable, non_trainable, xs)

    def _selected(self, trainable, non_trainable, floats, others, target):
        head = self._head_of(trainable, non_trainable, self._merge(floats, others))
        selected = jnp.take_along_axis(head, target[:, None], axis=1)[:, 0]
        # Rows are independent, so the gradient of the sum is each row's own gradient.
        return selected.sum(), selected

    def _gradients(self, trainable, non_trainable, floats, others, target):
        grads, selected = jax.grad(self._selected, argnums=2, has_aux=True)(
            trainable, non_trainable, floats, others, target)
        return selected, grads

    # ---------------------------------------------------------------------------------- public calls
    def predict(self, inputs: Sequence[np.ndarray], batch_size: Optional[int] = None) -> np.ndarray:
        variables = self._variables()
        (out,) = map_padded(lambda *xs: [self._predict_fn(*variables, xs)], self.as_arrays(inputs),
                            batch_size or self.batch_size)
        return out

    def gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        variables = self._variables()

        def call(*arrays):
            floats, others = self._split(arrays[:-1])
            selected, grads = self._gradients_fn(*variables, floats, others, arrays[-1])
            grads = iter(grads)
            return [selected] + [next(grads) if f else np.zeros_like(x) for x, f in zip(arrays[:-1], self.floating)]

        arrays = self.as_arrays(inputs) + [np.asarray(target, dtype=np.int32)]
        out = map_padded(call, arrays, self.batch_size)
        return out[0], out[1:]

    def layer_gradients(self, layer_name: str, inputs: Sequence[np.ndarray], target: np.ndarray):
        fn = self._layer_fns.get(layer_name)
        if fn is None:
            fn = self._layer_function(self.find_layer(layer_name))
            self._layer_fns[layer_name] = fn
        variables = self._variables()
        arrays = self.as_arrays(inputs) + [np.asarray(target, dtype=np.int32)]
        act, grads = map_padded(lambda *a: fn(variables, a[:-1], a[-1]), arrays, self.batch_size)
        return act, grads

    def _layer_function(self, layer):
        """d selected output / d the layer's output, as the gradient at an additive zero on that output."""

        @contextlib.contextmanager
        def added(zero, captured):
            original = layer.call

            def call(*args, **kwargs):
                out = original(*args, **kwargs)
                if not hasattr(out, "shape"):
                    raise ValueError(
                        f"layer {layer.name!r} returns {type(out).__name__}, not one tensor; name a layer with "
                        "a single output"
                    )
                captured["shape"] = out.shape
                out = out if zero is None else out + zero.astype(out.dtype)
                captured["activations"] = out
                return out

            layer.call = call
            try:
                yield
            finally:
                del layer.call

        def selected(zero, trainable, non_trainable, xs, target):
            captured = {}
            with added(zero, captured):
                head = self._head_of(trainable, non_trainable, xs)
            if "activations" not in captured:
                raise ValueError(f"layer {layer.name!r} is not called when the model runs on the probe")
            chosen = jnp.take_along_axis(head, target[:, None], axis=1)[:, 0]
            return chosen.sum(), captured["activations"]

        shapes = {}

        def feature_shape(variables, xs):
            def run(trainable, non_trainable, xs):
                with added(None, shapes):
                    return self._head_of(trainable, non_trainable, xs)

            jax.eval_shape(run, *variables, xs)
            if "shape" not in shapes:
                raise ValueError(f"layer {layer.name!r} is not called when the model runs on the probe")
            return tuple(shapes["shape"][1:])

        @jax.jit
        def layer_fn(zero, trainable, non_trainable, xs, target):
            grads, act = jax.grad(selected, has_aux=True)(zero, trainable, non_trainable, xs, target)
            return act.astype(jnp.float32), grads.astype(jnp.float32)

        known = {}

        def call(variables, xs, target):
            if "shape" not in known:
                known["shape"] = feature_shape(variables, tuple(x[:1] for x in xs))
            zero = np.zeros((len(target),) + known["shape"], np.float32)
            return layer_fn(zero, *variables, tuple(xs), target)

        return call

    def is_chief(self) -> bool:
        return jax.process_index() == 0
