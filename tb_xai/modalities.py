"""The modality vocabulary: how a probe input is laid out, shared by the probe, the methods, the reader and
the plugin.

The names are written into each tag's metadata (`tb_xai.metadata`), so they are part of the logged format:
a new modality is a new name here, never a renamed one.
"""

TABULAR = "tabular"  # a vector of (named) features per probe: [probes, features]
IMAGE = "image"  # an image per probe: [probes, H, W, C]
SEQUENCE = "sequence"  # anything else: a sequence of positions, with channels when it has them
TEXT = "text"  # integer token ids feeding an Embedding: [probes, positions], one map value per token

#: Every modality a tag may carry, in the order of the list above.
MODALITIES = (TABULAR, IMAGE, SEQUENCE, TEXT)
