"""The TensorFlow side of the seam: compiled, batched numpy-in/numpy-out calls of a Keras 3 model."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
try:  # TensorFlow internals for the direct call path of `_call`; without them every call takes the public one
    from tensorflow.python.eager import context as _context
    from tensorflow.python.eager import record as _record  # whether a gradient tape is recording
except ImportError:  # pragma: no cover - other TensorFlow versions
    _context = _record = None

from tb_xai.backend.keras_model import Injection, KerasModel, LayerCall
from tb_xai.batching import map_batches
from tb_xai.probe import ProbeSet


class TensorFlowModel(KerasModel):
    """A built Keras model on the TensorFlow backend, seen through one explained output head.

    Each kind of call is one `tf.function` traced once with a `None` batch dimension and called through its
    concrete function (`_call`), so calling it every epoch with any number of rows never retraces. What is
    not TensorFlow (inputs, head, layers, logits) is `KerasModel`'s.
    """

    def __init__(self, model, probe: ProbeSet, output: Optional[Union[str, int]] = None, batch_size: int = 1024,
                 logits: bool = False, binary_classes: bool = False):
        super().__init__(model, probe, output=output, batch_size=batch_size, logits=logits,
                         binary_classes=binary_classes)
        self._specs = [
            tf.TensorSpec((None,) + self.probe.feature_shape(i), tf.as_dtype(d))
            for i, d in enumerate(self.input_dtypes)
        ]
        self._target_spec = tf.TensorSpec((None,), tf.int32)
        self._predict_fn = None
        self._blend_fn = None
        self._gradients_fn = None
        self._disconnected: List[int] = []
        self._layer_fns: Dict[str, object] = {}
        self._joint_fns: Dict[Tuple[str, ...], object] = {}
        self._embedding_fns: Dict[str, object] = {}
        self._calls: Dict[str, object] = {}  # the concrete function of each tf.function above

    def _run(self, fn, arrays, rows: Optional[int] = None):
        """`_call`, on the single-threaded executor where that is safe and pays: on a CPU-only TensorFlow, for a
        call whose widest layer output is at most `SINGLE_THREADED_ELEMENTS` elements (that executor does not
        forward buffers between kernels, so a large call would hold more memory; and its gain, a fixed ~0.1 ms
        per call, is nothing next to a large call's kernels)."""
        rows = len(arrays[0]) if rows is None else rows
        small = rows * self.widest_activation <= SINGLE_THREADED_ELEMENTS
        return _call(fn, arrays, small and _cpu_only())

    @staticmethod
    def _select(head, target):
        """Row i's column `target[i]` of the head: one batched gather, whose value and gradient are
        `KerasModel._select`'s (`keras.ops.take_along_axis`), in a graph of about 20 fewer ops (some 0.05 ms
        less per call of a small model)."""
        return tf.gather(head, tf.cast(target, tf.int32), batch_dims=1)

    # ---------------------------------------------------------------------------------- compiled calls
    def predict(self, inputs: Sequence[np.ndarray], batch_size: Optional[int] = None) -> np.ndarray:
        if self._predict_fn is None:
            @tf.function(input_signature=self._specs, reduce_retracing=True)
            def predict_fn(*xs):
                return self._forward(xs)

            self._predict_fn = predict_fn
            self._calls["predict"] = predict_fn.get_concrete_function()
        fn = self._calls["predict"]
        (out,) = map_batches(lambda *xs: [self._run(fn, xs).numpy()], self.as_inputs(inputs),
                             batch_size or self.batch_size)
        return out

    def predict_blend(self, keep, kept, removed, batch_size: Optional[int] = None) -> np.ndarray:
        keep, kept, removed, runs = self.blend_tables(keep, kept, removed, batch_size)
        if self._blend_fn is None:
            table = self._specs[0]
            self._blend_fn = tf.function(self._blend, reduce_retracing=True, input_signature=[
                tf.TensorSpec((None, None) + tuple(table.shape[1:]), tf.bool), table, table])
            self._calls["blend"] = self._blend_fn.get_concrete_function()
        fn = self._calls["blend"]
        (out,) = map_batches(lambda *a: [self._run(fn, a, rows=a[0].shape[0] * a[0].shape[1]).numpy()],
                             [keep, kept, removed], runs)
        return out

    def _trace_gradients(self):
        @tf.function(input_signature=self._specs + [self._target_spec], reduce_retracing=True)
        def gradients_fn(*args):
            xs, target = list(args[:-1]), args[-1]
            with tf.GradientTape() as tape:
                tape.watch([x for x in xs if x.dtype.is_floating])  # integers have no gradient to watch
                selected = self._select(self._forward(xs), target)
            grads = tape.gradient(selected, xs)
            # Seen while tracing: an input with no gradient path (an integer cast, an Embedding lookup).
            self._disconnected = [i for i, g in enumerate(grads) if g is None]
            return [selected] + [tf.zeros_like(x) if g is None else g for x, g in zip(xs, grads)]

        gradients_fn.get_concrete_function()
        return gradients_fn

    def gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        if self._gradients_fn is None:
            self.check_input_gradients()
        known = self._recall(inputs, target)
        if known is not None:
            return known
        arrays = self.as_inputs(inputs) + [np.asarray(target, dtype=np.int32)]
        fn = self._calls["gradients"]
        out = map_batches(lambda *a: [t.numpy() for t in self._run(fn, a)], arrays, self.batch_size)
        return out[0], out[1:]

    #: `predict_with_gradients` takes `path=` (integrated gradients' first pass in the same call).
    fuses_first_pass = True

    def predict_with_gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray, path=None):
        """`predict(inputs)` and, in the same compiled call, `gradients(inputs, chosen)`: (predictions, chosen,
        selected, grads), where row i's `chosen` class is `target[i]`, or the predictions' argmax where
        `target[i]` is -1 (the first largest, as `np.argmax`). The gradients are those `gradients` returns at
        these rows and classes; the predictions those `predict` returns (same graph ops on the same rows).
        For the callback: the probe's predictions, which the "predicted" targets come from, and saliency's
        gradients at them, in one call instead of two. Every input must be a float input with a gradient."""
        if self._gradients_fn is None:
            self.check_input_gradients()
        if path is not None:
            return self._predict_with_path(inputs, target, path)
        fn = self._calls.get("state")
        if fn is None:
            @tf.function(input_signature=self._specs + [self._target_spec], reduce_retracing=True)
            def state_fn(*args):
                return self._state(list(args[:-1]), args[-1])

            fn = self._calls["state"] = state_fn.get_concrete_function()
        arrays = self.as_inputs(inputs) + [np.asarray(target, dtype=np.int32)]
        out = map_batches(lambda *a: [t.numpy() for t in self._run(fn, a)], arrays, self.batch_size)
        return out[0], out[1], out[2], out[3:]

    def _state(self, xs, target):
        """Inside a compiled call: [predictions, chosen class, its output, the input gradients of that output],
        row i's class `target[i]`, or the predictions' argmax where it is -1."""
        with tf.GradientTape() as tape:
            tape.watch(xs)
            head = self._forward(xs)
            chosen = tf.where(target < 0, tf.argmax(head, axis=1, output_type=tf.int32), target)
            selected = self._select(head, chosen)
        grads = tape.gradient(selected, xs)
        return [head, chosen, selected] + [tf.zeros_like(x) if g is None else g for x, g in zip(xs, grads)]

    def _predict_with_path(self, inputs, target, path):
        """`predict_with_gradients`, and in the same compiled call the gradients at more rows: `path` is (rows, one
        array per input; each row's probe, whose chosen class it is explained at; extra rows, one array per input,
        whose outputs alone are wanted). Returns (predictions, chosen, selected, grads, (the rows' selected, the
        rows' grads, the extra rows' outputs)). The probe's part is computed as `predict_with_gradients` computes it
        (the same ops on the same rows, its own forward pass and tape); the rows and the extra rows go through one
        forward pass of their own. For integrated gradients' first pass (`IntegratedGradients.first_pass_points`):
        one call for the probe's predictions, saliency's gradients and that pass. Everything must fit in one call
        (`batch_size` rows in all)."""
        rows, owner, extra = path
        n = len(self._specs)
        fn = self._calls.get("state_path")
        if fn is None:
            owner_spec = tf.TensorSpec((None,), tf.int32)

            @tf.function(input_signature=self._specs + [self._target_spec] + self._specs + [owner_spec] + self._specs,
                         reduce_retracing=True)
            def state_path_fn(*args):
                xs, target = list(args[:n]), args[n]
                ps, owner = list(args[n + 1:2 * n + 1]), args[2 * n + 1]
                es = list(args[2 * n + 2:])
                state = self._state(xs, target)
                chosen = state[1]
                k = tf.shape(ps[0])[0]
                both = [tf.concat([p, e], axis=0) for p, e in zip(ps, es)]
                with tf.GradientTape() as path_tape:
                    path_tape.watch(both)
                    path_head = self._forward(both)
                    path_selected = self._select(path_head[:k], tf.gather(chosen, owner))
                path_grads = path_tape.gradient(path_selected, both)
                return (state + [path_selected, path_head[k:]]
                        + [tf.zeros_like(p) if g is None else g[:k] for p, g in zip(ps, path_grads)])

            fn = self._calls["state_path"] = state_path_fn.get_concrete_function()
        arrays = (self.as_inputs(inputs) + [np.asarray(target, dtype=np.int32)] + self.as_inputs(rows)
                  + [np.asarray(owner, dtype=np.int32)] + self.as_inputs(extra))
        total = len(arrays[0]) + len(rows[0]) + len(extra[0])
        if total > self.batch_size:
            raise ValueError(f"predict_with_gradients: {total} rows in all, over batch_size {self.batch_size}")
        out = [t.numpy() for t in self._run(fn, arrays, rows=total)]
        return out[0], out[1], out[2], out[3:3 + n], (out[3 + n], out[5 + n:], out[4 + n])

    def check_input_gradients(self) -> None:
        if self._gradients_fn is None:
            try:
                self._gradients_fn = self._trace_gradients()
                self._calls["gradients"] = self._gradients_fn.get_concrete_function()
            except LookupError as error:  # "No gradient defined for operation ..."
                raise ValueError(
                    f"the gradient of output {self.output_name!r} with respect to the inputs is undefined: {error}. "
                    "Gradient methods cannot explain this model; use kernel_shap, lime or occlusion"
                ) from error
        for i in self._disconnected:
            if i in self.input_gradient_indices():
                raise self.no_gradient_error(i)

    def input_names_reaching(self, call: LayerCall) -> List[str]:
        # One eager pass on one row: the tape knows which inputs the activations were computed from.
        xs = [tf.constant(a[:1]) for a in self.probe.inputs]
        injection = Injection(call, tf.zeros((1,) + tuple(call.shape[1:])))
        with tf.GradientTape() as tape:
            tape.watch(xs)
            self._forward(xs, injection)
            total = tf.reduce_sum(tf.cast(injection.activations, tf.float32))
        grads = tape.gradient(total, xs)
        return [name for name, g in zip(self.probe.names, grads) if g is not None]

    def layer_gradients(self, layer, inputs: Sequence[np.ndarray], target: np.ndarray):
        """(activations of a layer call, d selected output / d activations); `layer` is a `LayerCall` or
        what `find_layer` accepts."""
        call = layer if isinstance(layer, LayerCall) else self.find_layer(layer)
        fn = self._layer_fns.get(call.path)
        if fn is None:
            fn = self._trace_layer_gradients(call)
            self._layer_fns[call.path] = fn
        arrays = self.as_inputs(inputs) + [np.asarray(target, dtype=np.int32)]
        act, grads = map_batches(lambda *a: [t.numpy() for t in self._run(fn, a)], arrays, self.batch_size)
        return act, grads

    def _trace_layer_gradients(self, call: LayerCall):
        if call.shape is None:
            raise ValueError(f"layer {call.path!r} does not output a single tensor")

        @tf.function(input_signature=self._specs + [self._target_spec])
        def layer_fn(*args):
            xs, target = list(args[:-1]), args[-1]
            # The zeros are made here, not passed in: no host array of rows x layer size per call.
            injection = Injection(call, tf.zeros((tf.shape(xs[0])[0],) + tuple(call.shape[1:])))
            with tf.GradientTape() as tape:
                tape.watch(injection.z)
                selected = self._select(self._forward(xs, injection), target)
            grads = tape.gradient(selected, injection.z)
            if injection.activations is None:
                raise ValueError(f"layer {call.path!r} is not called when the model runs on the probe")
            if grads is None:
                raise ValueError(f"output {self.output_name!r} does not depend on layer {call.path!r}")
            return tf.cast(injection.activations, tf.float32), grads

        return layer_fn.get_concrete_function()

    def joint_gradients(self, calls: Sequence[LayerCall], inputs: Sequence[np.ndarray],
                        embeddings: Sequence[np.ndarray], target: np.ndarray):
        calls = list(calls)
        key = tuple(f"{c.path}#{c.index}" for c in calls)
        fn = self._joint_fns.get(key)
        if fn is None:
            fn = self._joint_fns[key] = self._trace_joint_gradients(calls)
        embeddings = self._check_embeddings(calls, inputs, embeddings)
        arrays = self.as_inputs(inputs) + embeddings + [np.asarray(target, dtype=np.int32)]
        out = map_batches(lambda *a: [t.numpy() for t in self._run(fn, a)], arrays, self.batch_size)
        found = dict(zip(self._joint_wrt(), out[1 + len(calls):]))
        input_grads = [found[i] if i in found else np.zeros(a.shape, np.float32) if i in self.input_gradient_indices()
                       else None for i, a in enumerate(inputs)]
        return out[0], out[1:1 + len(calls)], input_grads

    def _joint_wrt(self) -> List[int]:
        return [i for i in self.input_gradient_indices() if np.issubdtype(self.input_dtypes[i], np.floating)]

    def _trace_joint_gradients(self, calls: List[LayerCall]):
        wrt = self._joint_wrt()
        specs = [tf.TensorSpec((None,) + tuple(c.shape[1:]), tf.float32) for c in calls]
        n = len(self._specs)

        @tf.function(input_signature=self._specs + specs + [self._target_spec], reduce_retracing=True)
        def joint_fn(*args):
            xs, embeddings, target = list(args[:n]), list(args[n:-1]), args[-1]
            injections = [Injection(c, e, replace=True) for c, e in zip(calls, embeddings)]
            watched = embeddings + [xs[i] for i in wrt]
            with tf.GradientTape() as tape:
                tape.watch(watched)
                selected = self._select(self._forward(xs, injections), target)
            for c, j in zip(calls, injections):
                if j.activations is None:
                    raise ValueError(f"layer {c.path!r} is not called when the model runs on the probe")
            grads = tape.gradient(selected, watched)
            return [selected] + [tf.zeros_like(w) if g is None else tf.cast(g, tf.float32)
                                 for w, g in zip(watched, grads)]

        return joint_fn.get_concrete_function()

    def embeddings(self, call: LayerCall, inputs: Sequence[np.ndarray]) -> np.ndarray:
        key = f"{call.path}#{call.index}"
        fn = self._embedding_fns.get(key)
        if fn is None:
            @tf.function(input_signature=self._specs)
            def embedding_fn(*xs):
                injection = Injection(call, tf.zeros((tf.shape(xs[0])[0],) + tuple(call.shape[1:])))
                self._forward(xs, injection)
                return tf.cast(injection.activations, tf.float32)

            fn = self._embedding_fns[key] = embedding_fn.get_concrete_function()
        (out,) = map_batches(lambda *xs: [self._run(fn, xs).numpy()], self.as_inputs(inputs), self.batch_size)
        return out

    def resize(self, maps: np.ndarray, size: Tuple[int, ...]) -> np.ndarray:
        maps = np.asarray(maps, dtype=np.float32)
        if maps.ndim == 3:  # (rows, h, w)
            return tf.image.resize(maps[..., None], size, method="bilinear").numpy()[..., 0]
        if maps.ndim == 2:  # (rows, length)
            resized = tf.image.resize(maps[:, :, None, None], (size[0], 1), method="bilinear")
            return resized.numpy()[:, :, 0, 0]
        raise ValueError(f"maps must be (rows, h, w) or (rows, length); received shape {maps.shape}")

    def is_chief(self) -> bool:
        strategy = getattr(self.model, "distribute_strategy", None)
        return is_chief_task(getattr(strategy, "cluster_resolver", None))


def is_chief_task(resolver) -> bool:
    """Whether the task a cluster resolver describes writes summaries: the chief, or worker 0 when the
    cluster has no chief (as multi-worker Keras training decides it); a process with no cluster always does."""
    if resolver is None:
        return True
    jobs = resolver.cluster_spec().as_dict()
    if not jobs:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in jobs


def _call(fn, arrays, single_threaded: bool = False):
    """Calls a concrete function on numpy arrays converted here.

    Called so, it skips binding Python arguments to a tf.function's signature (0.3 ms a call on a small model,
    against 0.7-1.2 ms through the tf.function). Outside any gradient tape it goes further: it runs the function's
    inference graph on the converted arrays and its captured variables, what `ConcreteFunction`'s own call does
    there after checking the arguments against its signature (which these arrays, cast by `as_inputs`, always
    match). With `single_threaded` it runs it on TensorFlow's single-threaded executor, which runs the graph's
    kernels one after another in this thread instead of handing them to the inter-op threads (each kernel still
    uses the intra-op threads as it would; the values are the same). Together some 0.1 ms less CPU a call on a
    small model, which integrated gradients' refinement and the callback's other small calls pay many times per
    step. A graph that executor refuses (lowered control flow, asynchronous kernels) is refused before any kernel
    runs: that function then runs on the default executor, as under a tape or where TensorFlow lacks these
    internals."""
    tensors = [tf.constant(a) for a in arrays]
    inference = getattr(fn, "_inference_function", None)
    if inference is None or _record is None or _record.could_possibly_record() or not tf.executing_eagerly():
        return fn(*tensors)
    args = tensors + fn.captured_inputs
    name = getattr(inference, "name", None)
    if not single_threaded or name in _DEFAULT_EXECUTOR:
        return inference.call_preflattened(args)
    try:
        with _context.function_executor_type(_SINGLE_THREADED):
            out = inference.call_preflattened(args)
    except tf.errors.OpError:
        if name in _SINGLE_THREADED_RAN:
            raise  # it ran on that executor before: a real error
        _DEFAULT_EXECUTOR.add(name)
        return inference.call_preflattened(args)
    _SINGLE_THREADED_RAN.add(name)
    return out


def _cpu_only() -> bool:
    """Whether this TensorFlow has no GPU (the single-threaded executor runs CPU kernels only)."""
    global _CPU_ONLY
    if _CPU_ONLY is None:
        _CPU_ONLY = not tf.config.list_logical_devices("GPU")
    return _CPU_ONLY


#: the most elements (rows x the widest layer output per row) of a call run on the single-threaded executor.
SINGLE_THREADED_ELEMENTS = 1 << 22
_SINGLE_THREADED = "SINGLE_THREADED_EXECUTOR"
_CPU_ONLY = None
#: functions (by name) the single-threaded executor refused, and those it ran.
_DEFAULT_EXECUTOR: set = set()
_SINGLE_THREADED_RAN: set = set()
