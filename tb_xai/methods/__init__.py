"""Attribution methods and their registry.

Adding a method: one module with an `AttributionMethod` subclass, one line in `REGISTRY`, one entry in
tests/test_methods_contract.py.
"""

from __future__ import annotations

from typing import Dict, Type, Union

from tb_xai.methods.background import Background
from tb_xai.methods.base import AttributionMethod
from tb_xai.methods.expected_gradients import ExpectedGradients
from tb_xai.methods.grad_cam import GradCAM
from tb_xai.methods.gradient_x_input import GradientXInput
from tb_xai.methods.integrated_gradients import IntegratedGradients
from tb_xai.methods.kernel_shap import KernelShap
from tb_xai.methods.lime_method import Lime
from tb_xai.methods.occlusion import Occlusion
from tb_xai.methods.saliency import Saliency
from tb_xai.methods.segmentation import Segmentation
from tb_xai.methods.smoothgrad import SmoothGrad

REGISTRY: Dict[str, Type[AttributionMethod]] = {
    "saliency": Saliency,
    "gradient_x_input": GradientXInput,
    "integrated_gradients": IntegratedGradients,
    "smoothgrad": SmoothGrad,
    "grad_cam": GradCAM,
    "kernel_shap": KernelShap,
    "lime": Lime,
    "expected_gradients": ExpectedGradients,
    "occlusion": Occlusion,
}


def get(method: Union[str, AttributionMethod]) -> AttributionMethod:
    """A method instance from a registry name or a configured instance.

    Example:
        >>> get("integrated_gradients").steps
        50
    """
    if isinstance(method, AttributionMethod):
        return method
    if isinstance(method, str):
        if method not in REGISTRY:
            raise ValueError(f"unknown method {method!r}; known methods: {sorted(REGISTRY)}")
        return REGISTRY[method]()
    raise TypeError(
        f"a method must be a name from {sorted(REGISTRY)} or an AttributionMethod; received: {method!r}"
    )


__all__ = ["AttributionMethod", "Background", "REGISTRY", "Segmentation", "get"] + [
    cls.__name__ for cls in REGISTRY.values()
]
