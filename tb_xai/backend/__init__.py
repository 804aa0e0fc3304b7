"""The seam between the attribution methods and a Keras backend.

Methods see a `ModelAdapter`: batched, compiled numpy-in/numpy-out calls of the model (forward pass, input
gradients, an inner layer's activations and gradients). Only `tb_xai/backend/<backend>.py` touches the
backend's tensors, tapes and compiled functions, so adding Keras 3's JAX or PyTorch backend means adding one
module here, not changing any method.
"""

from __future__ import annotations

from typing import List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from tb_xai.probe import ProbeSet


class ModelAdapter(Protocol):
    """What the methods may ask of a model. All arrays are numpy; all calls are batched internally."""

    batch_size: int
    n_outputs: int
    output_name: str

    def predict(self, inputs: Sequence[np.ndarray], batch_size: Optional[int] = None) -> np.ndarray:
        """Outputs of the explained head, (rows, n_outputs); `batch_size` overrides the rows per model call
        (perturbation methods evaluating millions of rows use larger calls than the gradient methods)."""

    def gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        """(selected output per row, d selected output / d input for each input)."""

    def layer_gradients(self, layer: str, inputs: Sequence[np.ndarray], target: np.ndarray):
        """(activations of `layer`, d selected output / d activations)."""

    def conv_layers(self) -> List[Tuple[str, str]]:
        """(name, class name) of every convolution layer, in call order."""

    def resize(self, maps: np.ndarray, size: Tuple[int, ...]) -> np.ndarray:
        """Bilinear resize of (rows, *spatial) maps to (rows, *size)."""

    def is_chief(self) -> bool:
        """Whether this process should write summaries under a distribution strategy."""


def adapt(model, probe: ProbeSet, output: Optional[Union[str, int]] = None, batch_size: int = 1024) -> ModelAdapter:
    """Wraps a built Keras model for the methods, for the backend Keras runs on."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        from tb_xai.backend.tensorflow import TensorFlowModel

        return TensorFlowModel(model, probe, output=output, batch_size=batch_size)
    if backend == "jax":
        from tb_xai.backend.jax import JaxModel

        return JaxModel(model, probe, output=output, batch_size=batch_size)
    if backend == "torch":
        from tb_xai.backend.torch import TorchModel

        return TorchModel(model, probe, output=output, batch_size=batch_size)
    raise NotImplementedError(
        f"tb_xai supports Keras on the 'tensorflow', 'jax' and 'torch' backends; this Keras runs on {backend!r}"
    )
