"""The TensorFlow side of the seam: compiled, batched numpy-in/numpy-out calls of a Keras 3 model."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from tb_xai.batching import map_batches
from tb_xai.probe import ProbeSet

_CONV_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)


class TensorFlowModel:
    """A built Keras model on the TensorFlow backend, seen through one explained output head.

    Each kind of call is one `tf.function` traced once with a `None` batch dimension, so calling it every
    epoch with any number of rows never retraces.

    Args:
        model: a built Keras model (Sequential, functional or subclassed).
        probe: the probe set; it fixes input names, shapes, dtypes and structure.
        output: the explained output head (name or index) for multi-output models.
        batch_size: the most rows put through the model in one call.
    """

    def __init__(self, model, probe: ProbeSet, output: Optional[Union[str, int]] = None, batch_size: int = 1024):
        self.model = model
        self.probe = probe
        self.batch_size = int(batch_size)
        self._dtypes = [self._input_dtype(i, a) for i, a in enumerate(probe.inputs)]
        self._check_inputs()
        self._specs = [
            tf.TensorSpec((None,) + probe.feature_shape(i), dtype) for i, dtype in enumerate(self._dtypes)
        ]
        self._head, self.output_name = self._pick_head(output)
        self._predict_fn = None
        self._gradients_fn = None
        self._layer_fns: Dict[str, object] = {}
        sample = self.predict([a[:1] for a in probe.inputs])
        self.n_outputs = int(sample.shape[1])

    # ----------------------------------------------------------------------------------------- validation
    def _input_dtype(self, i: int, array: np.ndarray) -> tf.DType:
        declared = self._declared_inputs()
        if declared is not None and i < len(declared):
            return tf.as_dtype(declared[i].dtype)
        return tf.float32 if np.issubdtype(array.dtype, np.floating) or array.dtype == bool else tf.as_dtype(array.dtype)

    def _declared_inputs(self):
        """The model's symbolic inputs in the probe's order, or None when the model has none (subclassed)."""
        try:
            inputs = self.model.inputs
        except (AttributeError, ValueError):
            return None
        if not inputs:
            return None
        if self.probe.structure != "dict":
            return list(inputs)
        # A dict probe is matched by key, as Keras matches a dict of inputs: to the keys of a model built on a
        # dict, else to the names of its Input layers.
        struct = getattr(self.model, "_inputs_struct", None)
        by_name = dict(struct) if isinstance(struct, dict) else {t.name: t for t in inputs}
        if sorted(by_name) != sorted(self.probe.names):
            raise ValueError(f"the probe has inputs {self.probe.names} but the model's inputs are {list(by_name)}")
        return [by_name[name] for name in self.probe.names]

    def _check_inputs(self) -> None:
        declared = self._declared_inputs()
        if declared is None:
            return
        probe = self.probe
        if len(declared) != len(probe.inputs):
            raise ValueError(
                f"the probe has {len(probe.inputs)} input(s) {probe.names} but the model expects "
                f"{len(declared)} ({[t.name for t in declared]})"
            )
        for name, array, tensor in zip(probe.names, probe.inputs, declared):
            expected = tuple(tensor.shape)
            got = array.shape
            compatible = len(expected) == len(got) and all(
                e is None or e == g for e, g in zip(expected[1:], got[1:])
            )
            if not compatible:
                raise ValueError(
                    f"probe input {name!r} has shape {got} but the model expects {expected}"
                )

    def _call(self, xs, training: bool = False):
        outputs = self.model(self.probe.structured(list(xs)), training=training)
        return outputs

    def _pick_head(self, output) -> Tuple[object, str]:
        outputs = self._call([tf.constant(a[:1], dtype=d) for a, d in zip(self.probe.inputs, self._dtypes)])
        if isinstance(outputs, dict):
            names = list(outputs)
            if output is None:
                if len(names) > 1:
                    raise ValueError(
                        f"the model has {len(names)} outputs {names}; choose one with target=(output, class)"
                    )
                return names[0], names[0]
            key = names[output] if isinstance(output, int) and output < len(names) else output
            if key not in outputs:
                raise ValueError(f"target output {output!r} is not one of the model's outputs {names}")
            return key, str(key)
        if isinstance(outputs, (list, tuple)):
            names = list(getattr(self.model, "output_names", None) or [f"output_{i}" for i in range(len(outputs))])
            if output is None:
                if len(outputs) > 1:
                    raise ValueError(
                        f"the model has {len(outputs)} outputs {names}; choose one with target=(output, class)"
                    )
                return 0, names[0]
            if isinstance(output, str):
                if output not in names:
                    raise ValueError(f"target output {output!r} is not one of the model's outputs {names}")
                index = names.index(output)
            else:
                index = output
            if not 0 <= index < len(outputs):
                raise ValueError(
                    f"target output index {output} is out of range: the model has {len(outputs)} outputs {names}"
                )
            return index, names[index]
        if output not in (None, 0) and output != self._single_output_name():
            raise ValueError(
                f"target output {output!r} was given but the model has a single output "
                f"{self._single_output_name()!r}"
            )
        return None, self._single_output_name()

    def _single_output_name(self) -> str:
        names = getattr(self.model, "output_names", None)
        return str(names[0]) if names else "output"

    # ---------------------------------------------------------------------------------- compiled calls
    def _head_of(self, outputs):
        head = outputs if self._head is None else outputs[self._head]
        return tf.reshape(head, (tf.shape(head)[0], -1))

    def _selected(self, xs, target):
        head = tf.cast(self._head_of(self._call(xs)), tf.float32)
        return tf.gather(head, target, axis=1, batch_dims=1)

    def _as_tensors(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        if len(inputs) != len(self._dtypes):
            raise ValueError(f"expected {len(self._dtypes)} input arrays; received {len(inputs)}")
        return [np.asarray(a, dtype=d.as_numpy_dtype) for a, d in zip(inputs, self._dtypes)]

    def predict(self, inputs: Sequence[np.ndarray], batch_size: Optional[int] = None) -> np.ndarray:
        if self._predict_fn is None:
            @tf.function(input_signature=self._specs, reduce_retracing=True)
            def predict_fn(*xs):
                return tf.cast(self._head_of(self._call(xs)), tf.float32)

            self._predict_fn = predict_fn
        (out,) = map_batches(
            lambda *xs: [self._predict_fn(*xs).numpy()], self._as_tensors(inputs), batch_size or self.batch_size
        )
        return out

    def gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        if self._gradients_fn is None:
            @tf.function(input_signature=self._specs + [tf.TensorSpec((None,), tf.int32)], reduce_retracing=True)
            def gradients_fn(*args):
                xs, target = list(args[:-1]), args[-1]
                with tf.GradientTape() as tape:
                    tape.watch(xs)
                    selected = self._selected(xs, target)
                grads = tape.gradient(selected, xs)
                return [selected] + [tf.zeros_like(x) if g is None else g for x, g in zip(xs, grads)]

            self._gradients_fn = gradients_fn
        arrays = self._as_tensors(inputs) + [np.asarray(target, dtype=np.int32)]
        out = map_batches(lambda *a: [t.numpy() for t in self._gradients_fn(*a)], arrays, self.batch_size)
        return out[0], out[1:]

    def conv_layers(self) -> List[Tuple[str, str]]:
        return [
            (layer.name, type(layer).__name__)
            for layer in self.model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, _CONV_TYPES)
        ]

    def _find_layer(self, name: str):
        for layer in self.model._flatten_layers(include_self=False, recursive=True):
            if layer.name == name:
                return layer
        raise ValueError(f"the model has no layer named {name!r}")

    def layer_gradients(self, layer_name: str, inputs: Sequence[np.ndarray], target: np.ndarray):
        fn = self._layer_fns.get(layer_name)
        if fn is None:
            fn = self._trace_layer_gradients(self._find_layer(layer_name))
            self._layer_fns[layer_name] = fn
        arrays = self._as_tensors(inputs) + [np.asarray(target, dtype=np.int32)]
        act, grads = map_batches(lambda *a: [t.numpy() for t in fn(*a)], arrays, self.batch_size)
        return act, grads

    def _trace_layer_gradients(self, layer):
        # The layer's output is captured by wrapping its `call` while the function is traced once; the
        # traced graph keeps the capture, and the layer is restored right after. This reaches inner layers of
        # Sequential, functional and subclassed models alike.
        captured = {}
        original = layer.call

        def capturing_call(*args, **kwargs):
            out = original(*args, **kwargs)
            captured["activations"] = out
            return out

        @tf.function(input_signature=self._specs + [tf.TensorSpec((None,), tf.int32)])
        def layer_fn(*args):
            xs, target = list(args[:-1]), args[-1]
            with tf.GradientTape() as tape:
                tape.watch(xs)
                selected = self._selected(xs, target)
            activations = captured["activations"]
            return activations, tape.gradient(selected, activations)

        layer.call = capturing_call
        try:
            concrete = layer_fn.get_concrete_function()
        finally:
            del layer.call
        if "activations" not in captured:
            raise ValueError(f"layer {layer.name!r} is not called when the model runs on the probe")
        return concrete

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
