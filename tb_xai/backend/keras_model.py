"""What every backend shares: a built Keras 3 model seen through one explained output, in Keras terms only.

`KerasModel` validates the probe against the model's declared inputs (casting as Keras casts), picks the
explained head, strips the head's softmax/sigmoid when logits are asked for, finds the layers the model calls
in call order (through nested models and subclassed `call`s), and injects an additive zero tensor at a
layer's output so that the gradient with respect to that tensor is the gradient with respect to the layer's
activations. Everything here uses `keras.ops` and plain Python, so it runs unchanged inside a
`tf.function`, a `jax.jit` or a PyTorch autograd graph; a backend module subclasses it and adds only its
compiled calls and differentiation.

Layer paths: a layer is named by the names of the layers that call it, from the explained model down, joined
by "/" (Keras forbids "/" in layer names): `"mobilenetv2_1.00_224/out_relu"` is the `out_relu` layer of a
MobileNetV2 backbone called by the model. A bare name (`"out_relu"`) is enough when one layer has it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np

from tb_xai.batching import call_size_ladder
from tb_xai.probe import ProbeSet

#: Layer types that compute feature maps by convolution; Grad-CAM's default map must follow one of them.
CONVOLUTIONS = tuple(
    getattr(keras.layers, name)
    for name in (
        "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
        "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
    )
    if hasattr(keras.layers, name)
)

#: Output activations `logits=True` strips, by the name Keras gives the activation function.
STRIPPABLE = ("softmax", "sigmoid")


#: Call sizes `predict_rates` measures below its largest (powers of two), its rounds over them, and the rows each
#: size makes in a round, as a fraction of the largest size.
RATE_HALVINGS = 4
RATE_ROUNDS = 2
RATE_ROWS = 0.5


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One call of one layer during a forward pass of the model, in the order the calls returned.

    Attributes:
        path: the layer's path from the model ("backbone/out_relu"); see the module docstring.
        layer: the Keras layer.
        index: which call of this layer it is within one forward pass (0 unless the layer is shared).
        shape: the output's shape, batch dimension first (None when the output is not one tensor).
        inner: how many layer calls happened inside this one (0 for a leaf layer; a nested model has more).
        order: the position of this call among all calls (returns), from 0.
        same_as: for a nested model, the `order` of the innermost call inside it that returned the very same
            tensor (its last layer), else None.
    """

    path: str
    layer: Any
    index: int
    shape: Optional[Tuple[int, ...]]
    inner: int
    order: int
    same_as: Optional[int] = None

    @property
    def kind(self) -> str:
        return type(self.layer).__name__


@dataclasses.dataclass
class Injection:
    """Adds `z` (zeros, shaped like the layer's output) to the output of one layer call, and records the
    activations. The gradient of the explained output with respect to `z` is its gradient with respect to
    those activations, on every backend.

    With `replace=True` the call's output is `z` itself instead (an Embedding's output replaced by given
    embeddings): the layer still runs on its real inputs, so the mask Keras computes from them (an Embedding's
    `mask_zero`) still follows the real token ids."""

    call: LayerCall
    z: Any
    activations: Any = None
    replace: bool = False


class KerasModel:
    """A built Keras model, seen through one explained output head. Backend modules subclass it.

    Args:
        model: a built Keras model (Sequential, functional or subclassed).
        probe: the probe set; it fixes input names, shapes, dtypes and structure.
        output: the explained output head (name or index) for multi-output models.
        batch_size: the most rows put through the model in one call.
        logits: explain the head's pre-activation output: the softmax or sigmoid of the layer producing the
            head (a `Dense`/convolution `activation=`, an `Activation` layer or a `Softmax` layer) is skipped.
        binary_classes: see a single sigmoid unit as two classes, column 0 = 1 - p and column 1 = p (under
            `logits=True`, -z and z), so that a probe labelled 0 can be explained as class 0.

    Attributes:
        probe: the probe as the model sees it: each input cast to the dtype of the model's `Input`, as Keras
            casts the arrays given to `fit` and `predict`.
        layer_calls: every layer call of one forward pass, in call order.
        explained: what is explained, for the logged configuration.
        n_outputs: the explained head's width (2 for a single sigmoid unit seen as two classes).
    """

    #: the layer types `feature_map` counts as convolutions (tf_keras models have their own classes).
    convolutions = CONVOLUTIONS
    #: the layer types that look token ids up (keras_hub's ReversibleEmbedding is one); see tb_xai/text.py.
    embedding_types: Tuple[type, ...] = (keras.layers.Embedding,)

    def __init__(
        self,
        model,
        probe: ProbeSet,
        output: Optional[Union[str, int]] = None,
        batch_size: int = 1024,
        logits: bool = False,
        binary_classes: bool = False,
    ):
        self.model = model
        self.batch_size = int(batch_size)
        self._requested_output = output
        declared = self._declared_inputs(probe)
        self._check_inputs(probe, declared)
        self.input_dtypes: List[np.dtype] = [self._input_dtype(a, declared, i) for i, a in enumerate(probe.inputs)]
        self.probe = dataclasses.replace(
            probe, inputs=[np.asarray(a, dtype=d) for a, d in zip(probe.inputs, self.input_dtypes)]
        )
        self._strip: Optional[Tuple[Any, str]] = None
        self._binary = False
        #: text input name -> the Embedding layer call it is explained at (filled by tb_xai.text.resolve).
        self.text_calls: Dict[str, LayerCall] = {}
        self._remembered = None  # see remember_gradients
        self.layer_calls, outputs, head_ids = self._discover()
        self._widest: Optional[int] = None
        self._rates: Dict[Tuple, Dict[int, float]] = {}  # see predict_rates
        self._head, self.output_name = self._pick_head(outputs)
        head = outputs if self._head is None else outputs[self._head]
        self._head_width = int(np.prod(tuple(head.shape)[1:], dtype=np.int64))
        self.head_call = self._head_call(head_ids[self._head_key()])
        self.head_activation = _activation_name(self.head_call.layer) if self.head_call is not None else None
        if logits:
            self._strip = self._strip_plan()
        self._binary = bool(binary_classes) and self._head_width == 1 and self.head_activation == "sigmoid"
        self.logits = bool(logits)
        self.n_outputs = 2 if self._binary else self._head_width
        self.explained = {
            "output": self.output_name,
            "explains": "logits" if logits else "outputs",
            "layer": self.head_call.path if self.head_call is not None else None,
            "activation": self.head_activation,
            "stripped": self.head_activation if logits else None,
            "binary_classes": self._binary,
        }

    # ------------------------------------------------------------------------------------ the inputs
    def _declared_inputs(self, probe: ProbeSet):
        """The model's symbolic inputs in the probe's order, or None when the model has none (subclassed)."""
        try:
            inputs = self.model.inputs
        except (AttributeError, ValueError):
            return None
        if not inputs:
            return None
        if probe.structure != "dict":
            return list(inputs)
        # A dict probe is matched by key, as Keras matches a dict of inputs: to the keys of a model built on a
        # dict, else to the names of its Input layers.
        struct = getattr(self.model, "_inputs_struct", None)
        by_name = dict(struct) if isinstance(struct, dict) else {t.name: t for t in inputs}
        if sorted(by_name) != sorted(probe.names):
            raise ValueError(f"the probe has inputs {probe.names} but the model's inputs are {list(by_name)}")
        return [by_name[name] for name in probe.names]

    @staticmethod
    def _check_inputs(probe: ProbeSet, declared) -> None:
        if declared is None:
            return
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
                raise ValueError(f"probe input {name!r} has shape {got} but the model expects {expected}")

    @staticmethod
    def _input_dtype(array: np.ndarray, declared, i: int) -> np.dtype:
        # Keras casts what it is given to the dtype of the model's Input (uint8 images into a float32 Input
        # become float32); a model without declared inputs gets floats as float32 and integers unchanged.
        if declared is not None:
            return np.dtype(keras.backend.standardize_dtype(declared[i].dtype))
        if np.issubdtype(array.dtype, np.floating) or array.dtype == bool:
            return np.dtype(np.float32)
        return array.dtype

    @property
    def widest_activation(self) -> int:
        """The most elements one row's output has among the forward pass's layer calls (a model call of n rows
        holds about n times this at its peak); 1 when no call's output shape is known."""
        if self._widest is None:
            sizes = [int(np.prod(c.shape[1:], dtype=np.int64)) for c in self.layer_calls
                     if c.shape is not None and all(isinstance(n, int) for n in c.shape[1:])]
            self._widest = max(sizes, default=1)
        return self._widest

    def predict_rates(self, inputs: Sequence[np.ndarray], largest: int) -> Dict[int, float]:
        """Rows per CPU second of the compiled predict at `largest` rows per call and at the powers of two below
        it (at most `RATE_HALVINGS`, none below `batch_size`), measured on the rows of `inputs` (one array per
        model input) cycled: `RATE_ROUNDS` rounds over the sizes, each size making calls of about `RATE_ROWS` x
        `largest` rows in all per round, a size's fastest round kept. Measured once per model, row shapes and
        `largest` (then cached): about `RATE_ROUNDS` x `RATE_ROWS` x (1 + halvings) times `largest` rows.

        Process CPU time, all threads: what a training process pays. Where a small model's rate peaks depends
        on the machine (its caches): the MLP 20-64-64-2 peaked at 65,536 rows per call on one 2-core machine and
        ran a quarter to over a third slower at 4-8x that size; another machine measured 10.5 M rows/s for it
        at 262,144."""
        arrays = [np.asarray(a) for a in inputs]
        key = (int(largest),) + tuple((a.shape[1:], a.dtype.str) for a in arrays)
        if key not in self._rates:
            sizes = call_size_ladder(int(largest), self.batch_size, RATE_HALVINGS)
            rows = [np.resize(a, (largest,) + a.shape[1:]) for a in arrays]  # the rows, cycled
            best = dict.fromkeys(sizes, math.inf)
            for _ in range(RATE_ROUNDS):
                for size in sizes:
                    calls = max(1, int(RATE_ROWS * largest) // size)
                    start = time.process_time()
                    for _ in range(calls):
                        self.predict([r[:size] for r in rows], batch_size=size)
                    best[size] = min(best[size], (time.process_time() - start) / calls)
            self._rates[key] = {size: size / max(seconds, 1e-9) for size, seconds in best.items()}
        return dict(self._rates[key])

    def as_inputs(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        """`inputs` as numpy arrays of the dtypes the model sees."""
        if len(inputs) != len(self.input_dtypes):
            raise ValueError(f"expected {len(self.input_dtypes)} input arrays; received {len(inputs)}")
        return [np.asarray(a, dtype=d) for a, d in zip(inputs, self.input_dtypes)]

    # ------------------------------------------------------------------------------- layer discovery
    def _discover(self):
        """Calls the model once on the first probe row with every layer's `call` observed.

        Returns the layer calls in the order they returned, the model's outputs, and for each output head
        the calls whose output is that very tensor (a nested model returns its last layer's tensor)."""
        layers = [layer for layer in self.model._flatten_layers(include_self=False, recursive=True)]
        calls: List[LayerCall] = []
        outputs_of: List[Any] = []  # kept alive so that ids stay unique while they are compared
        stack: List[str] = []
        counts: Dict[int, int] = {}

        def observed(layer, original):
            def call(*args, **kwargs):
                stack.append(layer.name)
                before = len(calls)
                try:
                    out = original(*args, **kwargs)
                finally:
                    path = "/".join(stack)
                    stack.pop()
                index = counts.get(id(layer), 0)
                counts[id(layer)] = index + 1
                shape = tuple(out.shape) if _is_tensor(out) else None
                same = [c for c, o in zip(calls[before:], outputs_of[before:]) if o is out]
                same_as = max(same, key=lambda c: c.path.count("/")).order if same else None
                calls.append(LayerCall(path, layer, index, shape, len(calls) - before, len(calls), same_as))
                outputs_of.append(out)
                return out

            return call

        with _patched_calls({id(layer): (layer, observed) for layer in layers}):
            outputs = self.model(self.probe.structured([a[:1] for a in self.probe.inputs]), training=False)
        heads = _named_leaves(outputs)
        head_ids = {key: [c for c, o in zip(calls, outputs_of) if o is tensor] for key, tensor in heads.items()}
        return calls, outputs, head_ids

    def _head_key(self):
        return "" if self._head is None else self._head

    def _head_call(self, candidates: List[LayerCall]) -> Optional[LayerCall]:
        """The innermost layer call that produced the explained head (None when `call()` computed it after
        the last layer, as a subclassed model may)."""
        if not candidates:
            return None
        return max(candidates, key=lambda c: (c.path.count("/"), c.order))

    def find_layer(self, layer) -> LayerCall:
        """The last call of a layer given by path, bare name or the layer object; ValueError naming the
        layers there are when it is not one the model calls."""
        if isinstance(layer, keras.layers.Layer):
            matches = [c for c in self.layer_calls if c.layer is layer]
            if matches:
                return matches[-1]
            name = layer.name
        elif isinstance(layer, str):
            name = layer
            matches = [c for c in self.layer_calls if c.path == name]
            if not matches:
                matches = [c for c in self.layer_calls if c.path.rsplit("/", 1)[-1] == name]
                distinct = sorted({c.path for c in matches})
                if len(distinct) > 1:
                    raise ValueError(
                        f"more than one layer is named {name!r}: {distinct}; give the path of the one you mean"
                    )
            if matches:
                return matches[-1]
        else:
            raise TypeError(f"a layer must be a layer name, a path 'outer/inner' or a keras Layer; received {layer!r}")
        for known in self.model._flatten_layers(include_self=False, recursive=True):
            if known.name == name and isinstance(known, keras.layers.InputLayer):
                raise ValueError(
                    f"layer {name!r} is the model's InputLayer: it holds the input itself and computes no feature "
                    "map; name a layer the model computes (or explain the input with saliency)"
                )
        spatial = [c.path for c in self.layer_calls if c.shape is not None and len(c.shape) >= 3]
        raise ValueError(
            f"the model has no layer named {name!r} among the layers it calls; layers with a spatial output, in "
            f"call order, end with "
            f"{spatial[-6:]}"
        )

    def feature_map(self, rank: int) -> LayerCall:
        """The last layer call, in call order, whose output has `rank` dimensions (batch included) and is not
        the explained output itself, after at least one convolution: the feature map that feeds global
        pooling, flattening or the head. A nested model is named by its innermost layer with the same output."""
        head_path = self.head_call.path if self.head_call is not None else None
        seen_convolution = False
        chosen = None
        for call in self.layer_calls:
            if isinstance(call.layer, self.convolutions):
                seen_convolution = True
            if (seen_convolution and call.shape is not None and len(call.shape) == rank
                    and call.path != head_path and not _contains(call, head_path)):
                chosen = call
        if chosen is None:
            raise LookupError("no convolution feature map")
        return chosen if chosen.same_as is None else self.layer_calls[chosen.same_as]

    # --------------------------------------------------------------------------------- the explained head
    def _pick_head(self, outputs) -> Tuple[Any, str]:
        if isinstance(outputs, dict):
            names = list(outputs)
            if self._requested_output is None:
                if len(names) > 1:
                    raise ValueError(
                        f"the model has {len(names)} outputs {names}; choose one with target=(output, class)"
                    )
                return names[0], names[0]
            output = self._requested_output
            key = names[output] if isinstance(output, int) and 0 <= output < len(names) else output
            if key not in outputs:
                raise ValueError(f"target output {output!r} is not one of the model's outputs {names}")
            return key, str(key)
        if isinstance(outputs, (list, tuple)):
            names = list(getattr(self.model, "output_names", None) or [f"output_{i}" for i in range(len(outputs))])
            output = self._requested_output
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
        output = self._requested_output
        if output not in (None, 0) and output != self._single_output_name():
            raise ValueError(
                f"target output {output!r} was given but the model has a single output {self._single_output_name()!r}"
            )
        return None, self._single_output_name()

    def _single_output_name(self) -> str:
        names = getattr(self.model, "output_names", None)
        return str(names[0]) if names else "output"

    def _strip_plan(self) -> Tuple[Any, str]:
        call = self.head_call
        if call is None:
            raise ValueError(
                f"logits=True: output {self.output_name!r} is not the output of a layer (the model's call() computes "
                "it after its last layer), so there is no layer activation to strip; return the logits from call(), "
                "or apply the softmax/sigmoid with a layer"
            )
        if self.head_activation not in STRIPPABLE:
            found = self.head_activation or "none"
            raise ValueError(
                f"logits=True: output {self.output_name!r} comes from layer {call.path!r} ({call.kind}) whose "
                f"activation is {found!r}; only a final {' or '.join(STRIPPABLE)} can be stripped. If the layer "
                "already outputs logits, leave logits=False"
            )
        return call.layer, self.head_activation

    # -------------------------------------------------------------------------------- the forward pass
    def _forward(self, xs: Sequence[Any], injection: Union[None, Injection, Sequence[Injection]] = None):
        """The explained head, (rows, n_outputs) float32, in backend tensors; the building block each backend
        compiles. `injection` (one or several) adds its zeros at a layer call, or replaces the call's output,
        and records that call's activations."""
        patches: Dict[int, Tuple[Any, Any]] = {}
        injections = [] if injection is None else [injection] if isinstance(injection, Injection) else injection
        for layer_id in dict.fromkeys(id(j.call.layer) for j in injections):
            mine = [j for j in injections if id(j.call.layer) == layer_id]
            patches[layer_id] = (mine[0].call.layer, _injecting(mine))
        with _patched_calls(patches), self._stripped():
            outputs = self.model(self.probe.structured(list(xs)), training=False)
        head = outputs if self._head is None else outputs[self._head]
        head = keras.ops.cast(keras.ops.reshape(head, (-1, self._head_width)), "float32")
        if self._binary:
            other = -head if self.logits else 1.0 - head
            head = keras.ops.concatenate([other, head], axis=1)
        return head

    def _blend(self, keep, kept, removed):
        """The explained head on rows blended from masks (see `predict_blend`), in backend tensors."""
        rows = keras.ops.where(keep, keras.ops.expand_dims(kept, 1), keras.ops.expand_dims(removed, 1))
        return self._forward([keras.ops.reshape(rows, (-1, keras.ops.shape(keep)[2]))])

    def blend_tables(self, keep: np.ndarray, kept: np.ndarray, removed: np.ndarray, batch_size: Optional[int]):
        """`predict_blend`'s arguments checked and cast (keep bool; kept, removed in the input's dtype), and the
        runs per model call."""
        if len(self.input_dtypes) != 1 or len(self.probe.feature_shape(0)) != 1:
            raise ValueError("predict_blend explains a single (rows, features) input; this model has inputs "
                             f"{[self.probe.feature_shape(i) for i in range(len(self.input_dtypes))]}")
        width = self.probe.feature_shape(0)[0]
        keep = np.asarray(keep, dtype=bool)
        kept, removed = (np.ascontiguousarray(t, dtype=self.input_dtypes[0]) for t in (kept, removed))
        if keep.ndim != 3 or keep.shape[2] != width:
            raise ValueError(f"predict_blend: keep must be (runs, rows per run, {width}); received shape {keep.shape}")
        for name, table in (("kept", kept), ("removed", removed)):
            if table.shape != (len(keep), width):
                raise ValueError(f"predict_blend: {name} must be ({len(keep)}, {width}), one row per run; "
                                 f"received shape {table.shape}")
        runs_per_call = max(1, (batch_size or self.batch_size) // max(1, keep.shape[1]))
        return keep, kept, removed, runs_per_call

    @staticmethod
    def _select(head, target):
        """Row i's column `target[i]` of the head."""
        return keras.ops.take_along_axis(head, keras.ops.expand_dims(keras.ops.cast(target, "int32"), 1), axis=1)[:, 0]

    @contextlib.contextmanager
    def _stripped(self) -> Iterator[None]:
        if self._strip is None:
            yield
            return
        layer, _ = self._strip
        if isinstance(layer, keras.layers.Softmax):
            with _patched_calls({id(layer): (layer, lambda _layer, _original: _identity)}):
                yield
            return
        had = "activation" in layer.__dict__
        original = layer.__dict__.get("activation")
        layer.__dict__["activation"] = keras.activations.linear
        try:
            yield
        finally:
            if had:
                layer.__dict__["activation"] = original
            else:
                del layer.__dict__["activation"]

    # ------------------------------------------------------------------- gradients known for this step
    def remember_gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray, selected: np.ndarray,
                           grads: Sequence[np.ndarray]) -> None:
        """Keeps `gradients(inputs, target)`'s answer, computed already (by `predict_with_gradients`), for the
        next `gradients` call on equal rows and targets, until `forget_gradients`. The callback remembers the
        probe's gradients for the saliency of the step whose predictions it computed them with; the model's
        weights must not change before `forget_gradients`."""
        self._remembered = ([np.asarray(a) for a in inputs], np.asarray(target, dtype=np.int32), selected,
                            list(grads))

    def forget_gradients(self) -> None:
        self._remembered = None

    def _recall(self, inputs: Sequence[np.ndarray], target: np.ndarray):
        """The remembered (selected, grads) when `inputs` and `target` equal the remembered ones (copies, which
        the caller may change), else None."""
        remembered = getattr(self, "_remembered", None)
        if remembered is None:
            return None
        known, known_target, selected, grads = remembered
        target = np.asarray(target)
        if (len(inputs) != len(known) or target.shape != known_target.shape
                or not np.array_equal(target, known_target)):
            return None
        for a, b in zip(inputs, known):
            a = np.asarray(a)
            if a is not b and (a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b)):
                return None
        return selected.copy(), [g.copy() for g in grads]

    # ------------------------------------------------------------------------- what backends provide
    def input_names_reaching(self, call: LayerCall) -> List[str]:
        """Names of the probe inputs the layer call's output depends on."""
        raise NotImplementedError

    def check_input_gradients(self) -> None:
        """Raises ValueError naming each float input whose gradient is disconnected or undefined."""
        raise NotImplementedError

    def input_gradient_indices(self) -> List[int]:
        """The probe inputs explained by their own gradient: every input but the text inputs (explained at
        their Embedding's output) and the inputs held with them (padding masks, segment ids)."""
        return [i for i, name in enumerate(self.probe.names)
                if name not in self.probe.text and name not in self.probe.held]

    def embedding_call(self, name: str) -> LayerCall:
        """The Embedding layer call text input `name` is explained at (see tb_xai/text.py)."""
        if name in self.text_calls:
            return self.text_calls[name]
        text = self.probe.text.get(name)
        if text is None or text.embedding is None:
            raise ValueError(f"probe input {name!r} is not a text input with an Embedding layer")
        return self.find_layer(text.embedding)

    def embedding_gradients(self, call, inputs: Sequence[np.ndarray], embeddings, target: np.ndarray):
        """(selected output per row, d selected output / d embeddings) with the output of the Embedding layer
        call `call` replaced by `embeddings` [rows, T, D] (the rest of the model, masks included, sees the
        real `inputs`). `call` may be a list of calls, with a list of embeddings: the gradients are then a
        list too."""
        single = isinstance(call, LayerCall)
        calls = [call] if single else list(call)
        embeddings = [embeddings] if single else list(embeddings)
        selected, grads, _ = self.joint_gradients(calls, inputs, embeddings, target)
        return selected, grads[0] if single else grads

    def joint_gradients(self, calls: Sequence[LayerCall], inputs: Sequence[np.ndarray],
                        embeddings: Sequence[np.ndarray], target: np.ndarray):
        """(selected output per row, d out / d each embedding, d out / d each input) in one pass, with the
        output of each of `calls` replaced by its `embeddings`; an input gradient is None for the inputs
        `input_gradient_indices` leaves out. What a gradient method on a text (+ other inputs) model needs."""
        raise NotImplementedError

    def embeddings(self, call: LayerCall, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """The output of the Embedding layer call `call` on `inputs`, [rows, T, D] float32."""
        raise NotImplementedError

    def _check_embeddings(self, calls: Sequence[LayerCall], inputs, embeddings) -> List[np.ndarray]:
        if len(calls) != len(embeddings):
            raise ValueError(f"{len(calls)} Embedding call(s) but {len(embeddings)} embedding array(s)")
        rows = len(inputs[0])
        out = []
        for call, e in zip(calls, embeddings):
            e = np.asarray(e, dtype=np.float32)
            expected = (rows,) + tuple(call.shape[1:])
            if call.shape is None or e.shape != expected:
                raise ValueError(f"embeddings for layer {call.path!r} have shape {e.shape}; expected {expected}")
            out.append(e)
        return out

    def no_gradient_error(self, i: int) -> ValueError:
        """The configuration error for probe input `i`, which has no gradient to the explained output."""
        if np.issubdtype(self.input_dtypes[i], np.floating):
            why = ("the model does not differentiate through it: its values reach the output only through ops "
                   "without a gradient (an integer cast, as in an Embedding of token ids or a categorical lookup; "
                   "a round or argmax), or not at all")
        else:
            why = f"the model sees it as {self.input_dtypes[i]}, and integers have no gradient"
        return ValueError(
            f"probe input {self.probe.names[i]!r} has no gradient with respect to output {self.output_name!r}: "
            f"{why}. Gradient methods would show all-zero attributions for it. Token ids that feed an Embedding "
            "layer are explained at its output (name it with embedding_layer= when it is not found); other "
            "integer inputs can be explained with kernel_shap, lime or occlusion"
        )


def _identity(inputs, *args, **kwargs):
    return inputs


def _is_tensor(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, (list, tuple, dict))


def _named_leaves(outputs) -> Dict[Any, Any]:
    if isinstance(outputs, dict):
        return dict(outputs)
    if isinstance(outputs, (list, tuple)):
        return dict(enumerate(outputs))
    return {"": outputs}


def _contains(call: LayerCall, path: Optional[str]) -> bool:
    """Whether `path` is a layer inside `call` (a nested model whose output is the head)."""
    return path is not None and path.startswith(call.path + "/")


def _activation_name(layer) -> Optional[str]:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", None) if callable(fn) else None


def _injecting(injections: Sequence[Injection]):
    """The patch of one layer's `call` for the injections at its calls (by call index)."""
    by_index = {j.call.index: j for j in injections}

    def make(layer, original):
        seen = [0]

        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            index, seen[0] = seen[0], seen[0] + 1
            injection = by_index.get(index)
            if injection is None:
                return out
            injection.activations = out
            if injection.replace:
                return keras.ops.cast(injection.z, out.dtype)
            return keras.ops.add(out, keras.ops.cast(injection.z, out.dtype))

        return call

    return make


@contextlib.contextmanager
def _patched_calls(patches: Dict[int, Tuple[Any, Any]]) -> Iterator[None]:
    """Replaces `layer.call` by `make(layer, original_call)` for each patched layer, and restores it.

    The instance attribute shadows the class's method for `Layer.__call__`; it is set in `__dict__` so that
    Keras's attribute tracking never sees it."""
    saved = []
    try:
        for layer, make in patches.values():
            had = "call" in layer.__dict__
            original = layer.__dict__.get("call") if had else layer.call
            layer.__dict__["call"] = make(layer, original)
            saved.append((layer, had, original))
        yield
    finally:
        for layer, had, original in reversed(saved):
            if had:
                layer.__dict__["call"] = original
            else:
                layer.__dict__.pop("call", None)
