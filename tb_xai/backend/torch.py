"""The PyTorch side of the seam: eager calls of a Keras 3 model, differentiated with torch.autograd.

Eager, not `torch.compile`: see bench/bench_gradients.py, which measures both; eager calls never retrace
whatever the number of rows. Forward-only calls run under `torch.inference_mode`, so they build no autograd
graph.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import torch

from tb_xai.backend.keras_model import Injection, KerasModel, LayerCall
from tb_xai.batching import map_batches
from tb_xai.probe import ProbeSet


class TorchModel(KerasModel):
    """A built Keras model on the PyTorch backend, seen through one explained output head (see `KerasModel`)."""

    def __init__(self, model, probe: ProbeSet, output: Optional[Union[str, int]] = None, batch_size: int = 1024,
                 logits: bool = False, binary_classes: bool = False):
        super().__init__(model, probe, output=output, batch_size=batch_size, logits=logits,
                         binary_classes=binary_classes)
        self._floating = [np.issubdtype(d, np.floating) for d in self.input_dtypes]
        self._checked = False

    @staticmethod
    def _tensors(arrays, requires_grad: Sequence[bool] = ()):
        tensors = [keras.ops.convert_to_tensor(a) for a in arrays]
        for t, grad in zip(tensors, requires_grad):
            if grad:
                t.requires_grad_(True)
        return tensors

    @staticmethod
    def _numpy(t) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    def predict(self, inputs: Sequence[np.ndarray], batch_size: Optional[int] = None) -> np.ndarray:
        def call(*xs):
            with torch.inference_mode():
                return [self._numpy(self._forward(self._tensors(xs)))]

        (out,) = map_batches(call, self.as_inputs(inputs), batch_size or self.batch_size)
        return out

    def predict_blend(self, keep, kept, removed, batch_size: Optional[int] = None) -> np.ndarray:
        keep, kept, removed, runs = self.blend_tables(keep, kept, removed, batch_size)

        def call(*arrays):
            with torch.inference_mode():
                return [self._numpy(self._blend(*self._tensors(arrays)))]

        (out,) = map_batches(call, [keep, kept, removed], runs)
        return out

    def _input_gradients(self, arrays, target):
        """(selected, gradient or None per input) of one batch."""
        xs = self._tensors(arrays, self._floating)
        with torch.enable_grad():
            selected = self._select(self._forward(xs), keras.ops.convert_to_tensor(target))
            wrt = [x for x, f in zip(xs, self._floating) if f]
            # Rows are independent, so the gradient of the sum is each row's own gradient.
            found = iter(torch.autograd.grad(selected.sum(), wrt, allow_unused=True) if wrt else ())
        return selected, [next(found) if f else None for f in self._floating]

    def gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        if not self._checked:
            self.check_input_gradients()

        def call(*arrays):
            selected, grads = self._input_gradients(arrays[:-1], arrays[-1])
            return [self._numpy(selected)] + [np.zeros(x.shape, np.float32) if g is None else self._numpy(g)
                                              for x, g in zip(arrays[:-1], grads)]

        arrays = self.as_inputs(inputs) + [np.asarray(target, dtype=np.int32)]
        out = map_batches(call, arrays, self.batch_size)
        return out[0], out[1:]

    def check_input_gradients(self) -> None:
        _, grads = self._input_gradients([a[:1] for a in self.probe.inputs], np.zeros(1, np.int32))
        self._checked = True
        for i, g in enumerate(grads):
            if g is not None or i not in self.input_gradient_indices():
                continue
            raise self.no_gradient_error(i)

    def input_names_reaching(self, call: LayerCall) -> List[str]:
        xs = self._tensors([a[:1] for a in self.probe.inputs], self._floating)
        injection = Injection(call, torch.zeros((1,) + tuple(call.shape[1:])))
        with torch.enable_grad():
            self._forward(xs, injection)
            if injection.activations is None or not injection.activations.requires_grad:
                return []
            wrt = [x for x, f in zip(xs, self._floating) if f]
            grads = torch.autograd.grad(injection.activations.float().sum(), wrt, allow_unused=True) if wrt else ()
        names = [n for n, f in zip(self.probe.names, self._floating) if f]
        return [n for n, g in zip(names, grads) if g is not None]

    def layer_gradients(self, layer, inputs: Sequence[np.ndarray], target: np.ndarray):
        """(activations of a layer call, d selected output / d activations); `layer` is a `LayerCall` or
        what `find_layer` accepts."""
        call = layer if isinstance(layer, LayerCall) else self.find_layer(layer)
        if call.shape is None:
            raise ValueError(f"layer {call.path!r} does not output a single tensor")

        def run(*arrays):
            xs = self._tensors(arrays[:-1])
            z = torch.zeros((len(arrays[-1]),) + tuple(call.shape[1:]), requires_grad=True,
                            device=xs[0].device)
            injection = Injection(call, z)
            with torch.enable_grad():
                selected = self._select(self._forward(xs, injection), keras.ops.convert_to_tensor(arrays[-1]))
                if injection.activations is None:
                    raise ValueError(f"layer {call.path!r} is not called when the model runs on the probe")
                (grads,) = torch.autograd.grad(selected.sum(), [z], allow_unused=True)
            if grads is None:
                raise ValueError(f"output {self.output_name!r} does not depend on layer {call.path!r}")
            return [self._numpy(injection.activations), self._numpy(grads)]

        arrays = self.as_inputs(inputs) + [np.asarray(target, dtype=np.int32)]
        act, grads = map_batches(run, arrays, self.batch_size)
        return act, grads

    def joint_gradients(self, calls: Sequence[LayerCall], inputs: Sequence[np.ndarray],
                        embeddings: Sequence[np.ndarray], target: np.ndarray):
        calls = list(calls)
        embeddings = self._check_embeddings(calls, inputs, embeddings)
        n, k = len(inputs), len(calls)
        wrt = [i for i in self.input_gradient_indices() if self._floating[i]]

        def run(*arrays):
            xs = self._tensors(arrays[:n], [i in wrt for i in range(n)])
            zs = self._tensors(arrays[n:n + k], [True] * k)
            injections = [Injection(c, z, replace=True) for c, z in zip(calls, zs)]
            with torch.enable_grad():
                selected = self._select(self._forward(xs, injections), keras.ops.convert_to_tensor(arrays[-1]))
                for c, j in zip(calls, injections):
                    if j.activations is None:
                        raise ValueError(f"layer {c.path!r} is not called when the model runs on the probe")
                watched = zs + [xs[i] for i in wrt]
                grads = torch.autograd.grad(selected.sum(), watched, allow_unused=True)
            return [self._numpy(selected)] + [np.zeros(tuple(w.shape), np.float32) if g is None else self._numpy(g)
                                              for w, g in zip(watched, grads)]

        arrays = self.as_inputs(inputs) + embeddings + [np.asarray(target, dtype=np.int32)]
        out = map_batches(run, arrays, self.batch_size)
        found = dict(zip(wrt, out[1 + k:]))
        input_grads = [found[i] if i in found else np.zeros(a.shape, np.float32) if i in self.input_gradient_indices()
                       else None for i, a in enumerate(inputs)]
        return out[0], out[1:1 + k], input_grads

    def embeddings(self, call: LayerCall, inputs: Sequence[np.ndarray]) -> np.ndarray:
        def run(*arrays):
            xs = self._tensors(arrays)
            injection = Injection(call, torch.zeros((len(arrays[0]),) + tuple(call.shape[1:]), device=xs[0].device))
            with torch.inference_mode():
                self._forward(xs, injection)
            return [self._numpy(injection.activations)]

        (out,) = map_batches(run, self.as_inputs(inputs), self.batch_size)
        return out

    def resize(self, maps: np.ndarray, size: Tuple[int, ...]) -> np.ndarray:
        maps = torch.as_tensor(np.asarray(maps, dtype=np.float32))
        if maps.ndim == 3:  # (rows, h, w)
            out = torch.nn.functional.interpolate(maps[:, None], size=tuple(size), mode="bilinear",
                                                  align_corners=False)[:, 0]
        elif maps.ndim == 2:  # (rows, length)
            out = torch.nn.functional.interpolate(maps[:, None], size=(size[0],), mode="linear",
                                                  align_corners=False)[:, 0]
        else:
            raise ValueError(f"maps must be (rows, h, w) or (rows, length); received shape {maps.shape}")
        return out.numpy()

    def is_chief(self) -> bool:
        """Rank 0 writes under torch.distributed; a single process always does."""
        distributed = torch.distributed
        if distributed.is_available() and distributed.is_initialized():
            return distributed.get_rank() == 0
        return True
