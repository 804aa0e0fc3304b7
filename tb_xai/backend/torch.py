"""The PyTorch side of the seam: eager calls of a Keras 3 model, differentiated with torch.autograd.

Eager, not `torch.compile`: on the CPU models measured here (bench/bench_gradients.py) compiling a Keras
model's call paid nothing back, and it recompiles on new batch sizes. Eager calls never retrace. Forward-only
calls run under `torch.inference_mode`, so they build no autograd graph.
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import torch

from tb_xai.backend._neutral import KerasModel
from tb_xai.batching import map_batches
from tb_xai.probe import ProbeSet


class TorchModel(KerasModel):
    """A built Keras model on the PyTorch backend, seen through one explained output head.

    Args:
        model: a built Keras model (Sequential, functional or subclassed).
        probe: the probe set; it fixes input names, shapes, dtypes and structure.
        output: the explained output head (name or index) for multi-output models.
        batch_size: the most rows put through the model in one call.
    """

    def __init__(self, model, probe: ProbeSet, output: Optional[Union[str, int]] = None, batch_size: int = 1024):
        self._init_keras_level(model, probe, output, batch_size)
        sample = [a[:1] for a in self.as_arrays(probe.inputs)]
        with torch.inference_mode():
            outputs = self._call(self._tensors(sample))
        self._head, self.output_name = self.pick_head(outputs, output)
        self.n_outputs = int(self.predict(sample).shape[1])

    # ------------------------------------------------------------------------------------- internals
    @staticmethod
    def _tensors(arrays, requires_grad: Sequence[bool] = ()):
        tensors = [keras.ops.convert_to_tensor(a) for a in arrays]
        for t, grad in zip(tensors, requires_grad):
            if grad:
                t.requires_grad_(True)
        return tensors

    def _call(self, xs):
        return self.model(self.probe.structured(list(xs)), training=False)

    def _head_of(self, outputs):
        head = outputs if self._head is None else outputs[self._head]
        return head.reshape(head.shape[0], -1).float()

    @staticmethod
    def _numpy(t) -> np.ndarray:
        return t.detach().cpu().numpy()

    def _selected(self, xs, target):
        head = self._head_of(self._call(xs))
        index = torch.as_tensor(target, dtype=torch.long, device=head.device)
        return head.gather(1, index[:, None])[:, 0]

    # ---------------------------------------------------------------------------------- public calls
    def predict(self, inputs: Sequence[np.ndarray], batch_size: Optional[int] = None) -> np.ndarray:
        def call(*xs):
            with torch.inference_mode():
                return [self._numpy(self._head_of(self._call(self._tensors(xs))))]

        (out,) = map_batches(call, self.as_arrays(inputs), batch_size or self.batch_size)
        return out

    def gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        def call(*arrays):
            xs = self._tensors(arrays[:-1], self.floating)
            with torch.enable_grad():
                selected = self._selected(xs, arrays[-1])
                wrt = [x for x, f in zip(xs, self.floating) if f]
                # Rows are independent, so the gradient of the sum is each row's own gradient.
                grads = iter(torch.autograd.grad(selected.sum(), wrt, allow_unused=True) if wrt else ())
            out = [self._numpy(selected)]
            for x, f in zip(arrays[:-1], self.floating):
                g = next(grads) if f else None
                out.append(np.zeros(x.shape, np.float32) if g is None else self._numpy(g))
            return out

        arrays = self.as_arrays(inputs) + [np.asarray(target, dtype=np.int64)]
        out = map_batches(call, arrays, self.batch_size)
        return out[0], out[1:]

    def layer_gradients(self, layer_name: str, inputs: Sequence[np.ndarray], target: np.ndarray):
        layer = self.find_layer(layer_name)

        def call(*arrays):
            captured: Dict[str, object] = {}
            with torch.enable_grad(), _capturing(layer, captured):
                selected = self._selected(self._tensors(arrays[:-1]), arrays[-1])
            if "activations" not in captured:
                raise ValueError(f"layer {layer.name!r} is not called when the model runs on the probe")
            act = captured["activations"]
            (grads,) = torch.autograd.grad(selected.sum(), [act], allow_unused=True)
            grads = torch.zeros_like(act) if grads is None else grads
            return [self._numpy(act.float()), self._numpy(grads.float())]

        arrays = self.as_arrays(inputs) + [np.asarray(target, dtype=np.int64)]
        act, grads = map_batches(call, arrays, self.batch_size)
        return act, grads

    def is_chief(self) -> bool:
        distributed = torch.distributed
        if distributed.is_available() and distributed.is_initialized():
            return distributed.get_rank() == 0
        return True


@contextlib.contextmanager
def _capturing(layer, captured: Dict[str, object]):
    """Records a layer's output tensor (kept in the autograd graph) while the model runs eagerly."""
    original = layer.call

    def call(*args, **kwargs):
        out = original(*args, **kwargs)
        if not isinstance(out, torch.Tensor):
            raise ValueError(
                f"layer {layer.name!r} returns {type(out).__name__}, not one tensor; name a layer with a single output"
            )
        if not out.requires_grad:  # a layer before every differentiable input: make its output a leaf
            out = out.detach().requires_grad_(True)
        captured["activations"] = out
        return out

    layer.call = call
    try:
        yield
    finally:
        del layer.call
