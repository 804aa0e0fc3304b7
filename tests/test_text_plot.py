"""`tb_xai.plot.tokens` (the token strip) and the evolution heatmap by word, on a text run written with the real
summary functions: the figures save non-blank, draw every token as plain text, colour each token by its
attribution on one scale and dim padding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib import colors as mcolors
from matplotlib.patches import Rectangle

import tb_xai
import tb_xai.plot
from test_text_reader import tabular_pairs
from text_runs import IDS, TOKENS, text_attribution, text_summaries, write_run

STEPS = 3
# A machine without a CJK font draws "日本" as boxes, with matplotlib's missing-glyph warning.
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("text_plot")
    write_run(str(path / "xai"), text_summaries(STEPS))
    return tb_xai.load(str(path))


def pixels(fig) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    from matplotlib import image

    buffer.seek(0)
    return image.imread(buffer)[..., :3]


def cells(fig) -> list:
    (ax,) = [a for a in fig.axes if a.patches]
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def texts(fig) -> list:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_token_strip_draws_one_row_per_step_with_every_token_as_text(run):
    fig = tb_xai.plot.tokens(run, "integrated_gradients", probe=1)
    drawn = texts(fig)
    assert [t for t in drawn if t.startswith("step ")] == ["step 0", "step 1", "step 2"]
    # "the <script> was bad" and its two padding positions as one dimmed cell, in every row
    assert drawn.count("<script>") == STEPS and drawn.count("[PAD] × 2") == STEPS
    assert all(not t.get_parse_math() for ax in fig.axes for t in ax.texts)  # "$5 & $6" stays text
    boxes = cells(fig)
    assert len(boxes) == 5 * STEPS
    pad = [b for b in boxes if mcolors.to_hex(b.get_facecolor()) == "#ececec"]
    assert len(pad) == STEPS
    image = pixels(fig)
    assert image.std() > 0.05 and (np.abs(image - 1.0).sum(axis=-1) > 0.3).mean() > 0.02  # not blank
    # at the last step "bad" (id 9 at an odd position: -36) is the most negative: the darkest blue of the scale
    values = text_attribution(STEPS - 1)[1]
    last_row = boxes[-5:]
    darkest = min(last_row[:4], key=lambda b: b.get_facecolor()[0])  # the least red
    assert last_row.index(darkest) == int(np.argmin(values[:4]))


def test_token_strip_wraps_long_texts_and_stops_at_the_chosen_step(run):
    fig = tb_xai.plot.tokens(run, "integrated_gradients", probe=3, step=1, width=12, signed=False)
    drawn = texts(fig)
    assert [t for t in drawn if t.startswith("step ")] == ["step 0", "step 1"]
    assert "日本" in drawn and "$5 & $6" in drawn
    boxes = cells(fig)[: len(TOKENS[3])]  # the first row: 6 tokens, no padding
    lines = sorted({round(b.get_y()) for b in boxes})
    assert len(lines) >= 3  # 6 tokens of up to 8 columns in 12-column lines
    assert max(b.get_x() + b.get_width() for b in boxes) <= 12 + 9  # label columns + width
    # magnitudes: no cell is bluer than white
    assert all(b.get_facecolor()[0] >= b.get_facecolor()[2] - 1e-9 for b in boxes)
    pixels(fig)
    only = tb_xai.plot.tokens(run, "saliency", probe=0, frames=1)
    assert [t for t in texts(only) if t.startswith("step ")] == ["step 2"]


def test_token_strip_refuses_what_it_cannot_draw(run, tmp_path):
    with pytest.raises(IndexError, match="probe=4 is out of range: 'saliency' has 4 probes"):
        tb_xai.plot.tokens(run, "saliency", probe=4)
    with pytest.raises(IndexError, match="step=3 is out of range for the 3 logged steps"):
        tb_xai.plot.tokens(run, "saliency", step=3)
    with pytest.raises(ValueError, match="width must be at least 8"):
        tb_xai.plot.tokens(run, "saliency", width=3)
    write_run(str(tmp_path / "xai"), tabular_pairs())
    with pytest.raises(ValueError, match="tokens draws a text input's tokens; 'saliency' explains a 'vector' map"):
        tb_xai.plot.tokens(str(tmp_path), "saliency")


def test_evolution_heatmap_by_word_ranks_words(run):
    fig = tb_xai.plot.evolution_heatmap(run, "integrated_gradients", by="word", rows=4)
    (ax, *_) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [w.replace("$", r"\$") for w in run.ranking("integrated_gradients", by="word")[:4]]
    assert "word importance" in ax.get_title()
    pixels(fig)
    by_position = tb_xai.plot.evolution_heatmap(run, "saliency")
    assert [t.get_text() for t in by_position.axes[0].get_yticklabels()][0].startswith("token ")
    pixels(by_position)
    assert IDS.shape[1] == len(run.map_names("saliency"))
    lines = tb_xai.plot.top_k_lines(run, "integrated_gradients", k=3, by="word")
    legend = [t.get_text() for t in lines.axes[0].get_legend().get_texts()]
    assert legend == [w.replace("$", r"\$") for w in run.ranking("integrated_gradients", by="word")[:3]]
    pixels(lines)


def test_blank_padding_tokens_are_drawn_as_pad(tmp_path):
    from tb_xai import metadata, summary

    ids = IDS[:1]
    tokens = np.where(ids == 0, "", TOKENS[:1]).astype(object)  # TextVectorization's padding token is ""
    write_run(str(tmp_path / "xai"), [
        (0, summary.probe_pb("tokens", ids, modality=metadata.TEXT)),
        (0, summary.tokens_pb("tokens", tokens, padding_id=0)),
        (0, summary.predictions_pb(np.ones((1, 2)))),
        (0, summary.attribution_pb("ig", "tokens", text_attribution(0)[:1], modality=metadata.TEXT)),
    ])
    fig = tb_xai.plot.tokens(str(tmp_path), "ig")
    assert "pad × 2" in texts(fig) and "great" in texts(fig)
    pixels(fig)
