"""The seam between the attribution methods and a Keras backend.

Methods see a `ModelAdapter`: batched, compiled numpy-in/numpy-out calls of the model (forward pass, input
gradients, an inner layer's activations and gradients). `keras_model.KerasModel` holds what is the same on
every backend (input validation, the explained head, logits, layers in call order, the additive-zeros capture
of a layer's output); only `tb_xai/backend/<backend>.py` touches the backend's tensors, tapes and compiled
functions, so adding Keras 3's JAX or PyTorch backend means adding one module here, not changing any method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from tb_xai.probe import ProbeSet

if TYPE_CHECKING:
    from tb_xai.backend.keras_model import LayerCall


class ModelAdapter(Protocol):
    """What the methods may ask of a model. All arrays are numpy; all calls are batched internally."""

    batch_size: int
    n_outputs: int
    output_name: str
    #: the probe as the model sees it (each input cast to the dtype of the model's Input).
    probe: ProbeSet
    #: what is explained: output name, "logits" or "outputs", the head layer and its stripped activation.
    explained: dict
    #: the most elements one row's output has among the layer calls of a forward pass.
    widest_activation: int

    def predict(self, inputs: Sequence[np.ndarray], batch_size: Optional[int] = None) -> np.ndarray:
        """Outputs of the explained head, (rows, n_outputs); `batch_size` overrides the rows per model call
        (perturbation methods evaluating millions of rows use larger calls than the gradient methods)."""

    def predict_blend(self, keep: np.ndarray, kept: np.ndarray, removed: np.ndarray,
                      batch_size: Optional[int] = None) -> np.ndarray:
        """`predict` of a single (rows, features) input's rows blended from masks: `keep` is (runs, L,
        features) bool, and row l of run j is `kept[j]` where `keep[j, l]` and `removed[j]` elsewhere (an
        exact select); outputs (runs * L, n_outputs), runs in order. The rows are made inside the compiled
        call, so only the masks and one row of each table per run cross into it. Calls hold whole runs, at
        most `batch_size` rows (at least one run)."""

    def gradients(self, inputs: Sequence[np.ndarray], target: np.ndarray) -> Tuple[np.ndarray, List[np.ndarray]]:
        """(selected output per row, d selected output / d input for each input)."""

    def layer_gradients(self, layer, inputs: Sequence[np.ndarray], target: np.ndarray):
        """(activations of a layer call, d selected output / d activations)."""

    def find_layer(self, layer) -> "LayerCall":
        """The last call of a layer named by path ("backbone/out_relu"), bare name or object."""

    def feature_map(self, rank: int) -> "LayerCall":
        """The last layer call with a `rank`-dimensional output after a convolution, in call order."""

    def input_names_reaching(self, call: "LayerCall") -> List[str]:
        """Names of the probe inputs a layer call's output depends on."""

    def check_input_gradients(self) -> None:
        """ValueError naming an input whose gradient is disconnected or undefined."""

    def resize(self, maps: np.ndarray, size: Tuple[int, ...]) -> np.ndarray:
        """Bilinear resize of (rows, *spatial) maps to (rows, *size)."""

    def is_chief(self) -> bool:
        """Whether this process should write summaries under a distribution strategy."""


def adapt(model, probe: ProbeSet, output: Optional[Union[str, int]] = None, batch_size: int = 1024,
          logits: bool = False, binary_classes: bool = False) -> ModelAdapter:
    """Wraps a built Keras model for the methods, for the backend Keras runs on (see `KerasModel` for the
    arguments)."""
    import keras

    backend = keras.backend.backend()
    if _is_tf_keras_model(model):
        from tb_xai.backend.tf_keras import TfKerasModel

        return TfKerasModel(model, probe, output=output, batch_size=batch_size, logits=logits,
                            binary_classes=binary_classes)
    if backend == "tensorflow":
        from tb_xai.backend.tensorflow import TensorFlowModel

        return TensorFlowModel(model, probe, output=output, batch_size=batch_size, logits=logits,
                               binary_classes=binary_classes)
    if backend == "jax":
        from tb_xai.backend.jax import JaxModel

        return JaxModel(model, probe, output=output, batch_size=batch_size, logits=logits,
                        binary_classes=binary_classes)
    if backend == "torch":
        from tb_xai.backend.torch import TorchModel

        return TorchModel(model, probe, output=output, batch_size=batch_size, logits=logits,
                          binary_classes=binary_classes)
    raise NotImplementedError(
        f"tb_xai supports Keras on the 'tensorflow', 'jax' and 'torch' backends; this Keras runs on {backend!r}"
    )


def _is_tf_keras_model(model) -> bool:
    """Whether `model` is a tf_keras (Keras 2) model; tested by class module, so tf_keras is not imported."""
    return any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(model).__mro__)
