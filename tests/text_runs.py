"""Synthetic text runs for the read-side tests, written with the real summary functions (`tb_xai.summary`).

The numbers are chosen so every expected value can be worked out independently: the attribution of probe p at
position t and step s is ``(s + 1) * id[p, t] * (+1 at even t, -1 at odd t)``, 0 at padding.
"""

from __future__ import annotations

import numpy as np

from tb_xai import metadata, summary

#: id -> token; 0 is padding. Tokens a page must render as text, and non-ASCII ones.
VOCABULARY = ["[PAD]", "[UNK]", "the", "movie", "<script>", "café", "naïve", "was", "great", "bad", "日本",
              "$5 & $6"]
IDS = np.array([
    [2, 3, 7, 8, 0, 0],       # the movie was great
    [2, 4, 7, 9, 0, 0],       # the <script> was bad
    [5, 2, 2, 6, 8, 0],       # café the the naïve great
    [10, 3, 7, 9, 2, 11],     # 日本 movie was bad the $5 & $6
], dtype=np.int64)
PROBES, POSITIONS = IDS.shape
TOKENS = np.array([[VOCABULARY[i] for i in row] for row in IDS], dtype=object)
PADDING = IDS == 0


def text_attribution(step: int, ids: np.ndarray = IDS, padding: np.ndarray = PADDING) -> np.ndarray:
    sign = np.where(np.arange(ids.shape[1]) % 2 == 0, 1.0, -1.0)
    return ((step + 1) * ids * sign[None, :] * ~padding).astype(np.float32)


#: The class explained for each probe at every step.
TARGETS = np.array([1, 0, 1, 0])


def text_summaries(steps: int = 3, ids: np.ndarray = IDS) -> list:
    """(step, Summary) pairs of a text run: `integrated_gradients` (signed) and `saliency` (|.|, another
    order) on the input `tokens`; `ids` may be a subset of the rows of `IDS`."""
    padding = ids == 0
    tokens = np.array([[VOCABULARY[i] for i in row] for row in ids], dtype=object)
    probes = ids.shape[0]
    pairs = [
        (0, summary.probe_pb("tokens", ids, modality=metadata.TEXT)),
        (0, summary.tokens_pb("tokens", tokens, padding_id=0, mask_id=1)),
        (0, summary.labels_pb(TARGETS[:probes])),
    ]
    for step in range(steps):
        pairs += [
            (step, summary.predictions_pb(np.tile([[0.3, 0.7]], (probes, 1)) + step / 100.0,
                                          class_names=["negative", "positive"])),
            (step, summary.targets_pb(TARGETS[:probes])),
            (step, summary.attribution_pb("integrated_gradients", "tokens", text_attribution(step, ids, padding),
                                          modality=metadata.TEXT, config={"steps": 16})),
            (step, summary.attribution_pb("saliency", "tokens", saliency_attribution(step, ids, padding),
                                          modality=metadata.TEXT)),
        ]
    return pairs


def saliency_attribution(step: int, ids: np.ndarray = IDS, padding: np.ndarray = PADDING) -> np.ndarray:
    """|.| of another order than integrated gradients': (step + 1) * (12 - id), 0 at padding."""
    return ((step + 1) * (12 - ids) * ~padding).astype(np.float32)


# A keras_hub-style model: `token_ids` explained, `padding_mask` held; padding is where the mask is 0 (the ids
# there are 1, not a padding id).
MASK = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=np.int32)
MASKED_IDS = np.array([[2, 3, 8, 1], [2, 9, 1, 1], [5, 5, 6, 3]], dtype=np.int64)
MASKED_TOKENS = np.array([[VOCABULARY[i] for i in row] for row in MASKED_IDS], dtype=object)


def padding_input_summaries(steps: int = 2) -> list:
    pairs = [
        (0, summary.probe_pb("token_ids", MASKED_IDS, modality=metadata.TEXT)),
        (0, summary.probe_pb("padding_mask", MASK, modality=metadata.SEQUENCE)),
        (0, summary.tokens_pb("token_ids", MASKED_TOKENS, padding_id=None, mask_id=0, padding_input="padding_mask")),
    ]
    for step in range(steps):
        pairs += [
            (step, summary.predictions_pb(np.full((3, 2), 0.5))),
            (step, summary.targets_pb(np.array([0, 1, 1]))),
            (step, summary.attribution_pb("integrated_gradients", "token_ids",
                                          text_attribution(step, MASKED_IDS, MASK == 0), modality=metadata.TEXT)),
        ]
    return pairs


def word_means(attributions: np.ndarray, tokens: np.ndarray, padding: np.ndarray, *, signed: bool,
               probes=None) -> dict:
    """word -> [steps] mean over its non-padding occurrences, by plain loops (the reference for the tests)."""
    out = {}
    for p in range(tokens.shape[0]) if probes is None else probes:
        for t in range(tokens.shape[1]):
            if not padding[p, t]:
                values = attributions[:, p, t] if signed else np.abs(attributions[:, p, t])
                out.setdefault(str(tokens[p, t]), []).append(values)
    return {word: np.mean(values, axis=0) for word, values in out.items()}


def write_run(run_dir: str, pairs) -> None:
    writer = summary.SummaryWriter(run_dir)
    for step, value in pairs:
        writer.write(value, step)
    writer.close()
