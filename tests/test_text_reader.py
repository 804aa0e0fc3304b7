"""Text inputs on the read side: tokens, the padding rule, importance and ranking without padding, word-level
aggregates, and damaged text tags; through `tb_xai.load` (event files) and the plugin's reader (a data provider).

The runs are written with the real summary functions (`text_runs`); every expected number is recomputed here
by plain loops, not by the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

import tb_xai
from tb_xai import metadata, query, summary
from tb_xai.runmodel import BadQuery, NotFound
from test_plugin import memory_run
from text_runs import (IDS, MASK, MASKED_IDS, MASKED_TOKENS, PADDING, TARGETS, TOKENS, VOCABULARY,
                       padding_input_summaries, saliency_attribution, text_attribution, text_summaries, word_means,
                       write_run)

STEPS = 3


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("text")
    write_run(str(path / "xai"), text_summaries(STEPS))
    return str(path)


@pytest.fixture(scope="module")
def run(text_dir):
    return tb_xai.load(text_dir)


@pytest.fixture(scope="module")
def provided():
    """The same run read the way the plugin reads it (`run_data.ProviderReader` over a data provider)."""
    return memory_run("text/xai", text_summaries(STEPS))


def ig(steps: int = STEPS) -> np.ndarray:
    return np.stack([text_attribution(s) for s in range(steps)])


def test_tokens_and_padding_read_back_as_logged(run, provided):
    assert run.modality() == metadata.TEXT and run.skipped == {}
    tokens = run.tokens()
    assert tokens.dtype == object and tokens.shape == IDS.shape
    assert tokens.tolist() == TOKENS.tolist()
    assert "<script>" in tokens[1] and tokens[3][0] == "日本" and tokens[2][0] == "café"
    np.testing.assert_array_equal(run.padding(), IDS == 0)
    np.testing.assert_array_equal(run.probe(), IDS)
    # the plugin's reader gives the same text
    probe = query.text_probe(provided)
    assert probe.tokens.tolist() == TOKENS.tolist()
    np.testing.assert_array_equal(probe.padding, PADDING)
    assert (probe.padding_id, probe.mask_id, probe.padding_input) == (0, 1, None)
    # the attributions are one value per token, as logged
    np.testing.assert_array_equal(run.attributions("integrated_gradients"), ig())
    assert run.layout("integrated_gradients").kind == "text"
    assert run.map_names("integrated_gradients") == [f"token {t}" for t in range(IDS.shape[1])]


def position_means(values: np.ndarray, padding: np.ndarray, *, signed: bool, probes=None) -> np.ndarray:
    """[steps, positions]: per position the mean over the probes where it is not padding (NaN if none)."""
    probes = range(padding.shape[0]) if probes is None else probes
    out = np.full((values.shape[0], padding.shape[1]), np.nan)
    for t in range(padding.shape[1]):
        kept = [p for p in probes if not padding[p, t]]
        if kept:
            column = values[:, kept, t]
            out[:, t] = (column if signed else np.abs(column)).mean(axis=1)
    return out


@pytest.mark.parametrize("signed", [False, True])
def test_position_importance_leaves_padding_out(run, provided, signed):
    expected = position_means(ig(), PADDING, signed=signed)
    np.testing.assert_allclose(run.importance("integrated_gradients", signed=signed), expected)
    # position 4 is padding in probes 0 and 1: its mean is over probes 2 and 3 only (not diluted by the zeros)
    assert expected[0, 4] == pytest.approx(np.mean([8.0, 2.0]))
    served = query.importance(provided, "integrated_gradients", signed=signed)
    np.testing.assert_allclose(served.values, expected)
    with_target = run.importance("integrated_gradients", signed=signed, target=1)
    np.testing.assert_allclose(with_target, position_means(ig(), PADDING, signed=signed,
                                                           probes=np.flatnonzero(TARGETS == 1)))


@pytest.mark.parametrize("signed", [False, True])
def test_word_importance_is_the_mean_over_each_words_non_padding_occurrences(run, provided, signed):
    words = run.map_names("integrated_gradients", by="word")
    # every non-padding token, once, in order of first occurrence; no padding token is a word
    assert words == ["the", "movie", "was", "great", "<script>", "bad", "café", "naïve", "日本", "$5 & $6"]
    expected = word_means(ig(), TOKENS, PADDING, signed=signed)
    got = run.importance("integrated_gradients", by="word", signed=signed)
    assert got.shape == (STEPS, len(words))
    np.testing.assert_allclose(got, np.stack([expected[w] for w in words], axis=1))
    served = query.importance(provided, "integrated_gradients", signed=signed, by="word")
    assert served.layout.names() == words and served.layout.kind == "vector"
    np.testing.assert_allclose(served.values, got)
    # "the" occurs 5 times (twice in probe 2); padding never counts
    assert dict(zip(words, served.occurrences.tolist()))["the"] == 5
    assert served.occurrences.sum() == (~PADDING).sum()


def test_word_importance_for_one_target_counts_only_its_probes(run):
    words = run.map_names("integrated_gradients", by="word")
    got = run.importance("integrated_gradients", by="word", signed=True, target=0)
    expected = word_means(ig(), TOKENS, PADDING, signed=True, probes=np.flatnonzero(TARGETS == 0))
    for i, word in enumerate(words):
        if word in expected:
            np.testing.assert_allclose(got[:, i], expected[word])
        else:  # a word only the other class's probes hold
            assert np.isnan(got[:, i]).all()
    assert np.isnan(got[:, words.index("café")]).all()


def test_ranking_by_word_and_by_position(run, provided):
    means = word_means(ig(), TOKENS, PADDING, signed=False)
    expected = sorted(means, key=lambda w: -means[w][-1])
    by_word = run.ranking("integrated_gradients", by="word")
    assert [means[w][-1] for w in by_word] == sorted((means[w][-1] for w in means), reverse=True)
    assert set(by_word) == set(expected) and by_word[0] == "$5 & $6"
    assert query.ranking(provided, "integrated_gradients", by="word") == by_word
    # at the first step: the same order here (the attribution scales with the step)
    assert run.ranking("integrated_gradients", by="word", step=0) == by_word
    positions = position_means(ig(), PADDING, signed=False)[-1]
    assert run.ranking("integrated_gradients") == [f"token {t}" for t in np.argsort(-positions, kind="stable")]


def test_a_position_that_is_padding_in_every_probe_has_no_value_and_no_rank(tmp_path):
    write_run(str(tmp_path / "xai"), text_summaries(STEPS, IDS[:3]))  # position 5 is padding in all three
    run = tb_xai.load(str(tmp_path))
    importance = run.importance("integrated_gradients")
    assert np.isnan(importance[:, 5]).all() and np.isfinite(importance[:, :5]).all()
    ranking = run.ranking("integrated_gradients")
    assert "token 5" not in ranking and len(ranking) == 5
    # rank comparisons use the positions that hold a value (a NaN would void every correlation)
    stability = run.stability("integrated_gradients", k=3)
    assert stability["spearman_previous"][1:].tolist() == [1.0, 1.0]
    (pair,) = run.agreement(k=3)
    expected = tb_xai.aggregate.spearman(importance[-1, :5], run.importance("saliency")[-1, :5])
    assert pair["spearman"][-1] == pytest.approx(expected) and np.isfinite(pair["spearman"]).all()


def test_a_padding_input_marks_padding_where_it_is_zero(tmp_path):
    write_run(str(tmp_path / "xai"), padding_input_summaries(2))
    for run in (tb_xai.load(str(tmp_path)), None):
        if run is None:  # the plugin's reader
            provided = memory_run("masked/xai", padding_input_summaries(2))
            padding = query.text_probe(provided).padding
            words = query.importance(provided, "integrated_gradients", by="word")
            names, values = words.layout.names(), words.values
        else:
            assert run.inputs == ["token_ids", "padding_mask"]
            padding = run.padding()  # the only text input: token_ids (padding_mask is held, not text)
            names = run.map_names("integrated_gradients", by="word")
            values = run.importance("integrated_gradients", by="word")
            assert run.tokens().tolist() == MASKED_TOKENS.tolist()
        np.testing.assert_array_equal(padding, MASK == 0)
        # the ids at masked positions are 1 ("[UNK]"), not a padding id: the mask alone marks them
        attributions = np.stack([text_attribution(s, MASKED_IDS, MASK == 0) for s in range(2)])
        expected = word_means(attributions, MASKED_TOKENS, MASK == 0, signed=False)
        assert "[UNK]" not in names and names == ["the", "movie", "great", "bad", "café", "naïve"]
        np.testing.assert_allclose(values, np.stack([expected[w] for w in names], axis=1))


def tabular_pairs() -> list:
    return [(0, summary.probe_pb("x", np.ones((2, 3)), modality=metadata.TABULAR)),
            (0, summary.predictions_pb(np.ones((2, 2)))),
            (0, summary.attribution_pb("saliency", "x", np.ones((2, 3)), modality=metadata.TABULAR))]


def test_bad_by_values_and_text_questions_of_other_inputs_are_named(run, tmp_path):
    with pytest.raises(ValueError, match=r"by must be one of \['position', 'word'\]; received by='words'"):
        run.importance("integrated_gradients", by="words")
    with pytest.raises(ValueError, match="by must be one of"):
        run.ranking("integrated_gradients", by=None)
    write_run(str(tmp_path / "xai"), tabular_pairs())
    tabular = tb_xai.load(str(tmp_path))
    with pytest.raises(BadQuery, match=r"by='word' needs a text input; input 'x' of method 'saliency' is tabular"):
        tabular.ranking("saliency", by="word")
    with pytest.raises(NotFound, match=r"has no text input; its inputs: \['x'\]"):
        tabular.tokens()
    with pytest.raises(KeyError, match=r"input 'nope' not found .*known inputs: \['tokens'\]"):
        run.tokens("nope")
    assert tabular.ranking("saliency") == ["feature 0", "feature 1", "feature 2"]  # by position as before


def bad_tokens_pb(input_name: str, value, config=None):
    """A TOKENS summary with any value and config (the writer refuses them, a damaged file need not)."""
    return summary._summary_pb(
        metadata.tokens_tag(input_name), np.asarray(value),
        metadata.create_summary_metadata(metadata.TOKENS, input_name=input_name, modality=metadata.TEXT,
                                         config={"padding_id": 0, "mask_id": 0, "padding_input": None}
                                         if config is None else config))


def damaged_pairs() -> list:
    """Five text inputs, each with one unusable tag, and one sound input `ok`."""
    ids = IDS[:2]
    pairs = [
        (0, summary.probe_pb("ok", ids, modality=metadata.TEXT)),
        (0, summary.tokens_pb("ok", TOKENS[:2], padding_id=0)),
        (0, summary.predictions_pb(np.ones((2, 2)))),
        (0, summary.attribution_pb("ig", "ok", text_attribution(0, ids, ids == 0), modality=metadata.TEXT)),
        # tokens that are numbers, tokens of one axis, a config whose mask_id is not an id
        (0, summary.probe_pb("numbers", ids, modality=metadata.TEXT)),
        (0, bad_tokens_pb("numbers", ids)),
        (0, summary.probe_pb("flat", ids, modality=metadata.TEXT)),
        (0, bad_tokens_pb("flat", np.array([b"a", b"b"], dtype=object))),
        (0, summary.probe_pb("config", ids, modality=metadata.TEXT)),
        (0, bad_tokens_pb("config", np.vectorize(str.encode, otypes=[object])(TOKENS[:2].astype(str)),
                          {"padding_id": 0, "mask_id": "[MASK]", "padding_input": None})),
        # token ids that are not whole numbers; a text attribution with an embedding axis left
        (0, summary.probe_pb("fractional", ids + 0.5, modality=metadata.TEXT)),
        (0, summary.probe_pb("embedded", ids, modality=metadata.TEXT)),
        (0, summary.attribution_pb("ig", "embedded", np.ones(ids.shape + (4,)), modality=metadata.TEXT)),
    ]
    return pairs


def test_damaged_text_tags_are_left_out_with_reasons_and_the_rest_is_served(tmp_path):
    write_run(str(tmp_path / "xai"), damaged_pairs())
    with pytest.warns(UserWarning, match="is left out"):
        run = tb_xai.load(str(tmp_path))
    provided = memory_run("damaged/xai", damaged_pairs())
    for skipped in (run.skipped, provided.skipped()):
        assert skipped == {
            metadata.tokens_tag("numbers"): "tokens must be strings; the tag holds int64",
            metadata.tokens_tag("flat"): "tokens must be [probes, positions] strings per step; the tag holds 1-d values",
            metadata.tokens_tag("config"): "its mask_id must be an integer; the tag holds '[MASK]'",
            metadata.probe_tag("fractional"): "text token ids must be whole numbers [probes, positions]; the tag "
                                              "holds float64 of shape (2, 6)",
            metadata.attribution_tag("ig", "embedded"): "text attributions must be [probes, positions] per step (one "
                                                        "value per token); the tag holds 3-d values of shape (6, 4) "
                                                        "per probe",
        }
    assert run.tokens("ok").tolist() == TOKENS[:2].tolist()
    assert run.ranking("ig", "ok", by="word")[:2] == ["bad", "great"]  # |ids| 9, 8 at position 3
    with pytest.raises(NotFound, match=r"tokens/numbers' of run .* is left out: tokens must be strings"):
        run.tokens("numbers")
    with pytest.raises(NotFound, match=r"token ids of text input 'fractional' .*left out: text token ids must be"):
        run.padding("fractional")
    with pytest.raises(NotFound, match="is left out: text attributions must be"):
        run.importance("ig", "embedded")


def test_tokens_that_disagree_with_the_ids_or_attributions_are_refused_naming_both_shapes(tmp_path):
    pairs = [(0, summary.probe_pb("tokens", IDS, modality=metadata.TEXT)),
             (0, summary.tokens_pb("tokens", TOKENS[:, :4], padding_id=0)),
             (0, summary.probe_pb("short", IDS[:, :4], modality=metadata.TEXT)),
             (0, summary.tokens_pb("short", TOKENS[:, :4], padding_id=0)),
             (0, summary.predictions_pb(np.ones((4, 2)))),
             (0, summary.attribution_pb("ig", "short", text_attribution(0), modality=metadata.TEXT))]
    write_run(str(tmp_path / "xai"), pairs)
    run = tb_xai.load(str(tmp_path))
    with pytest.raises(NotFound, match=r"its tokens are \[4, 4\] \[probes, positions\] but its token ids \[4, 6\]"):
        run.tokens("tokens")
    with pytest.raises(NotFound, match=r"are \[4, 6\] \[probes, positions\] per step but the input's tokens are \[4, 4\]"):
        run.importance("ig", "short", by="word")


def test_a_text_run_without_tokens_tag_names_tokens_by_id_and_has_no_padding(tmp_path):
    pairs = [(0, summary.probe_pb("tokens", IDS, modality=metadata.TEXT)),
             (0, summary.predictions_pb(np.ones((4, 2)))),
             (0, summary.attribution_pb("ig", "tokens", text_attribution(0), modality=metadata.TEXT))]
    write_run(str(tmp_path / "xai"), pairs)
    run = tb_xai.load(str(tmp_path))
    assert run.tokens()[0].tolist() == ["2", "3", "7", "8", "0", "0"]
    assert not run.padding().any()
    assert "0" in run.map_names("ig", by="word")


def test_to_dataframe_names_text_elements_by_position_with_their_token(run, text_dir):
    df = run.to_dataframe()
    assert list(df.columns) == ["method", "input", "step", "probe", "feature", "channel", "attribution", "target",
                                "token", "padding"]
    one = df[(df.method == "integrated_gradients") & (df.step == STEPS - 1) & (df.probe == 1)]
    assert one.feature.tolist() == [f"token {t}" for t in range(IDS.shape[1])]
    assert one.token.tolist() == TOKENS[1].tolist() and one.padding.tolist() == PADDING[1].tolist()
    np.testing.assert_allclose(one.attribution.to_numpy(), text_attribution(STEPS - 1)[1])
    # the word importance from the frame is the one Run.importance(by="word") gives
    last = df[(df.method == "saliency") & (df.step == STEPS - 1) & ~df.padding.astype(bool)]
    by_word = last.groupby("token").attribution.apply(lambda a: a.abs().mean())
    words = run.map_names("saliency", by="word")
    np.testing.assert_allclose(by_word[words].to_numpy(), run.importance("saliency", by="word")[-1])
    assert VOCABULARY[4] in set(df.token)
