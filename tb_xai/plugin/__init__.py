"""The tb_xai TensorBoard plugin.

`loader.XaiLoader` is the ``tensorboard_plugins`` entry point; `plugin.XaiPlugin` serves the routes documented
in ``docs/http_api.md``. Nothing here imports TensorFlow, shap or lime.
"""
