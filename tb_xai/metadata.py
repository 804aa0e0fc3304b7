"""The one contract between the writing side and the reading side of tb_xai.

Only this module knows the plugin name, the tag layout and the payload format. The callback writes through
:mod:`tb_xai.summary`, the reader and the TensorBoard plugin read through the functions here.

Tag layout (one run directory, see :data:`DEFAULT_SUBDIR`):

=====================================  ===========  =====================================================
tag                                    kind         value per step
=====================================  ===========  =====================================================
``tb_xai/probe/<input>``               PROBE        probe inputs ``[probes, *input_shape]``, once
``tb_xai/labels``                      LABEL        probe labels ``[probes, ...]``, once (if given)
``tb_xai/predictions``                 PREDICTION   outputs of the explained head ``[probes, n_outputs]``
``tb_xai/targets``                     TARGET       explained class per probe ``[probes]`` (int32)
``tb_xai/attributions/<method>/<input>`` ATTRIBUTION  ``[probes, *attribution_shape]`` (float32)
``tb_xai/failures/<method>``           FAILURE      ``[1]`` string: why the method failed at that step
``tb_xai/tokens/<input>``              TOKENS       a text input's tokens as strings ``[probes, positions]``, once
=====================================  ===========  =====================================================

A text input (modality ``text``) logs its token ids as its PROBE tag and its token strings as a TOKENS tag whose
config holds :data:`TEXT_CONFIG_KEYS`: ``padding_id`` (the id of padding positions, or null), ``mask_id`` (the id
a perturbation method puts in place of a removed token) and ``padding_input`` (the name of a padding-mask input
whose zeros mark padding, or null). A position is padding when its id is ``padding_id`` or, with a
``padding_input``, when that input is 0 there; padding positions hold attribution 0.

This module must stay importable without TensorFlow, shap or lime: the TensorBoard plugin's entry point
imports it, and an ImportError there would take all of TensorBoard down.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Optional, Sequence

from tensorboard.compat.proto import summary_pb2

from tb_xai import plugin_data_pb2
# The modality vocabulary lives in its own module; these names stay importable from here for older callers.
from tb_xai.modalities import IMAGE, MODALITIES, SEQUENCE, TABULAR, TEXT  # noqa: F401

PLUGIN_NAME = "tb_xai"

# Payload version written by this release. Readers skip summaries with a version they do not know.
PROTO_VERSION = 1

# Sub-directory of the user's ``log_dir`` the callback writes to. A separate run directory keeps our event
# files apart from ``keras.callbacks.TensorBoard``'s ``train``/``validation`` runs: two writers appending
# to one directory can make a loader skip data.
DEFAULT_SUBDIR = "xai"

Kind = plugin_data_pb2.PluginData.Kind
ATTRIBUTION = plugin_data_pb2.PluginData.ATTRIBUTION
PROBE = plugin_data_pb2.PluginData.PROBE
LABEL = plugin_data_pb2.PluginData.LABEL
PREDICTION = plugin_data_pb2.PluginData.PREDICTION
TARGET = plugin_data_pb2.PluginData.TARGET
FAILURE = plugin_data_pb2.PluginData.FAILURE
TOKENS = plugin_data_pb2.PluginData.TOKENS

#: The keys of a TOKENS tag's config (see the module docstring).
TEXT_CONFIG_KEYS = ("padding_id", "mask_id", "padding_input")


_TAG_PREFIX = PLUGIN_NAME + "/"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def check_name(value: str, what: str) -> str:
    """Returns `value` if it can be used in a tag, else raises ValueError naming it."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"{what} must be a non-empty string of letters, digits, '_', '.' or '-'; received: {value!r}"
        )
    return value


def probe_tag(input_name: str) -> str:
    return f"{_TAG_PREFIX}probe/{input_name}"


LABELS_TAG = _TAG_PREFIX + "labels"
PREDICTIONS_TAG = _TAG_PREFIX + "predictions"
TARGETS_TAG = _TAG_PREFIX + "targets"


def attribution_tag(method: str, input_name: str) -> str:
    return f"{_TAG_PREFIX}attributions/{method}/{input_name}"


def failure_tag(method: str) -> str:
    return f"{_TAG_PREFIX}failures/{method}"


def tokens_tag(input_name: str) -> str:
    return f"{_TAG_PREFIX}tokens/{input_name}"


@dataclasses.dataclass(frozen=True)
class TagInfo:
    """What a tb_xai summary's metadata says, parsed."""

    kind: int
    method: str = ""
    input_name: str = ""
    feature_names: tuple = ()
    class_names: tuple = ()
    output_name: str = ""
    modality: str = ""
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def kind_name(self) -> str:
        return plugin_data_pb2.PluginData.Kind.Name(self.kind)


def create_summary_metadata(
    kind: int,
    *,
    method: str = "",
    input_name: str = "",
    feature_names: Optional[Sequence[str]] = None,
    class_names: Optional[Sequence[str]] = None,
    output_name: str = "",
    modality: str = "",
    config: Optional[dict] = None,
) -> summary_pb2.SummaryMetadata:
    """Builds the SummaryMetadata for one tb_xai tag.

    TensorBoard fixes a tag's metadata at its first write, so everything here must be constant over a run;
    per-step facts belong in tensors.
    """
    if modality and modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}; received: {modality!r}")
    content = plugin_data_pb2.PluginData(
        version=PROTO_VERSION,
        kind=kind,
        method=method,
        input_name=input_name,
        feature_names=[str(n) for n in (feature_names or ())],
        class_names=[str(n) for n in (class_names or ())],
        output_name=output_name,
        modality=modality,
        config_json=json.dumps(config or {}, sort_keys=True, default=_json_default),
    )
    return summary_pb2.SummaryMetadata(
        summary_description=f"tb_xai {plugin_data_pb2.PluginData.Kind.Name(kind).lower()}",
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content.SerializeToString()
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )


def parse_plugin_metadata(content: bytes) -> Optional[TagInfo]:
    """Parses `SummaryMetadata.plugin_data.content`; returns None for a payload version it does not know."""
    if not isinstance(content, (bytes, bytearray)):
        raise TypeError(f"content must be bytes; received: {type(content).__name__}")
    data = plugin_data_pb2.PluginData.FromString(bytes(content))
    if data.version != PROTO_VERSION:
        return None
    try:
        config = json.loads(data.config_json) if data.config_json else {}
    except json.JSONDecodeError:
        config = {}
    return TagInfo(
        kind=data.kind,
        method=data.method,
        input_name=data.input_name,
        feature_names=tuple(data.feature_names),
        class_names=tuple(data.class_names),
        output_name=data.output_name,
        modality=data.modality,
        config=config,
    )


def _json_default(value: Any):
    # numpy scalars and arrays in method configs (e.g. a baseline given as an array is summarized upstream)
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)
