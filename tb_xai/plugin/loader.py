"""The ``tensorboard_plugins`` entry point: keeps every tb_xai step and loads the plugin.

TensorBoard imports this module at start-up and an ImportError here takes all of TensorBoard down, so it
imports only TensorBoard, numpy and tb_xai's own reading modules (no TensorFlow, shap or lime); the plugin module
itself is imported when TensorBoard asks for it (the plugin never imports this module back).
"""

from __future__ import annotations

import argparse

from tensorboard.plugins import base_plugin

from tb_xai import metadata
from tb_xai.plugin.run_data import DEFAULT_CACHE_MB


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of megabytes >= 0; received {value!r}")
    return number


class XaiLoader(base_plugin.TBLoader):
    """Loads :class:`tb_xai.plugin.plugin.XaiPlugin` and turns off reservoir sampling of its tags.

    Example:
        ``setup.py``: ``entry_points={"tensorboard_plugins": ["tb_xai = tb_xai.plugin.loader:XaiLoader"]}``.
    """

    def define_flags(self, parser: argparse.ArgumentParser) -> None:
        """Adds ``--xai_cache_mb``: memory the plugin may keep decoded tags in between requests."""
        parser.add_argument(
            "--xai_cache_mb",
            metavar="MB",
            type=_non_negative_int,
            default=DEFAULT_CACHE_MB,
            help="tb_xai: megabytes of decoded attribution tensors kept in memory between requests "
            f"(default {DEFAULT_CACHE_MB}; 0 reads every tag anew on every request).",
        )

    def fix_flags(self, flags) -> None:
        """Keeps every step of tb_xai tags (``samples_per_plugin[tb_xai] = 0``) unless the user chose a number.

        Without this both loaders silently keep only a sample of a third-party plugin's steps (the Rust data
        server 100 tensors per tag, ``--load_fast=false`` 10).
        """
        # Parsed by TensorBoard into a dict (`--samples_per_plugin a=1,b=2`); copied so a caller's dict is kept.
        samples = dict(getattr(flags, "samples_per_plugin", None) or {})
        samples.setdefault(metadata.PLUGIN_NAME, 0)
        flags.samples_per_plugin = samples

    def load(self, context: base_plugin.TBContext) -> base_plugin.TBPlugin:
        from tb_xai.plugin.plugin import XaiPlugin

        return XaiPlugin(context)
