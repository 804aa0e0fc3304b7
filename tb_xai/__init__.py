"""tb_xai: watch why a Keras model predicts what it predicts, epoch by epoch, in TensorBoard.

The callback and methods need Keras; `tb_xai.load` and the TensorBoard plugin do not, and importing this
package stays light: heavy modules load on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "AttributionCallback": "tb_xai.callback",
    "load": "tb_xai.reader",
    "Run": "tb_xai.reader",
    "methods": "tb_xai.methods",
    "quality": "tb_xai.quality",
    "findings": "tb_xai.findings",
    "plot": "tb_xai.plot",
    "compare": "tb_xai.comparison",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tb_xai' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    return loaded if module.endswith("." + name) else getattr(loaded, name)
