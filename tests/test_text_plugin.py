"""The plugin's text answers: runs text fields, probe tokens and padding, evolution by word, the tokens route;
pure `*_impl` functions and a real TensorBoard on 127.0.0.1 in both load modes, checked against `tb_xai.load`.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from tensorboard import errors

import tb_xai
from tb_xai import metadata
from tb_xai.plugin import plugin
from tensorboard_server import ROUTE, Server, wsgi_client
from test_plugin import memory_run
from test_text_reader import damaged_pairs, tabular_pairs
from text_runs import (IDS, MASK, MASKED_TOKENS, PADDING, TOKENS, padding_input_summaries, text_attribution,
                       text_summaries, word_means, write_run)

STEPS = 3


@pytest.fixture(scope="module")
def text():
    return memory_run("text/xai", text_summaries(STEPS))


def test_runs_impl_describes_text_inputs(text):
    (described,) = plugin.runs_impl({"text/xai": text}, [])["runs"]
    layout = {"kind": "text", "map_shape": [6], "picture": False, "names": None, "name_pattern": "token {0}"}
    text_fields = {"positions": 6, "padding_id": 0, "mask_id": 1, "padding_input": None}
    assert described["probe_inputs"] == [{"input": "tokens", "modality": "text", "feature_names": [],
                                          "layout": layout, "text": text_fields}]
    for method in described["methods"]:
        (entry,) = method["inputs"]
        assert entry["modality"] == "text" and entry["layout"] == layout and entry["text"] == text_fields
        assert entry["attribution_shape"] == [6] and entry["map_shape"] == [6]


def test_probe_impl_sends_the_probes_tokens_and_padding(text):
    answer = plugin.probe_impl(text, "integrated_gradients", None, 1, signed=True)
    assert answer["tokens"] == ["the", "<script>", "was", "bad", "[PAD]", "[PAD]"]
    assert answer["padding"] == [False, False, False, False, True, True]
    assert answer["input_values"] == IDS[1].tolist()
    assert answer["attributions"] == [text_attribution(s)[1].tolist() for s in range(STEPS)]
    assert answer["layout"]["kind"] == "text"
    tabular = memory_run("tab/xai", tabular_pairs())
    assert "tokens" not in plugin.probe_impl(tabular, "saliency", None, 0)


def test_evolution_impl_by_word(text):
    answer = plugin.evolution_impl(text, "integrated_gradients", None, signed=True, by="word")
    words = ["the", "movie", "was", "great", "<script>", "bad", "café", "naïve", "日本", "$5 & $6"]
    assert answer["by"] == "word" and answer["features"] == words
    assert answer["layout"] == {"kind": "vector", "map_shape": [10], "picture": False, "names": words,
                                "name_pattern": None}
    expected = word_means(np.stack([text_attribution(s) for s in range(STEPS)]), TOKENS, PADDING, signed=True)
    np.testing.assert_allclose(answer["importance"], np.stack([expected[w] for w in words], axis=1))
    assert answer["counts"] == [5, 2, 3, 2, 1, 2, 1, 1, 1, 1]
    last = np.abs(np.array(answer["importance"][-1]))
    assert answer["order"] == np.argsort(-last, kind="stable").tolist()
    by_position = plugin.evolution_impl(text, "integrated_gradients", None)
    assert by_position["by"] == "position" and "counts" not in by_position
    assert by_position["layout"]["kind"] == "text" and by_position["features"] is None


def test_tokens_impl_and_the_errors_it_names(text):
    answer = plugin.tokens_impl(text, None)
    assert answer == {"run": "text/xai", "input": "tokens", "tokens": TOKENS.tolist(), "padding": PADDING.tolist(),
                      "padding_id": 0, "mask_id": 1, "padding_input": None}
    masked = plugin.tokens_impl(memory_run("m/xai", padding_input_summaries(1)), "token_ids")
    assert masked["padding"] == (MASK == 0).tolist() and masked["tokens"] == MASKED_TOKENS.tolist()
    assert masked["padding_input"] == "padding_mask"
    tabular = memory_run("tab/xai", tabular_pairs())
    with pytest.raises(errors.NotFoundError, match=r"has no text input; its inputs: \['x'\]"):
        plugin.tokens_impl(tabular, None)
    with pytest.raises(errors.InvalidArgumentError, match=r"by='word' needs a text input; input 'x'"):
        plugin.evolution_impl(tabular, "saliency", None, by="word")
    with pytest.raises(errors.InvalidArgumentError, match=r"by must be one of \['position', 'word'\]; received by='Word'"):
        plugin.parse_by("Word")
    assert plugin.parse_by(None) == plugin.parse_by("") == "position"


# ---- a real TensorBoard in both load modes ------------------------------------------------------------


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_served")
    write_run(str(root / "text" / "xai"), text_summaries(STEPS))
    write_run(str(root / "masked" / "xai"), padding_input_summaries(2))
    write_run(str(root / "tab" / "xai"), tabular_pairs())
    write_run(str(root / "damaged" / "xai"), damaged_pairs())
    return str(root)


class InProcess:
    """TensorBoard's real WSGI app on the Python loader (`--load_fast=false`), in this process: the same
    `get`/`json` as `Server`, without starting a second server process (a few seconds each here)."""

    def __init__(self, logdir: str):
        self.client = wsgi_client(logdir)

    def get(self, path: str) -> tuple:
        response = self.client.get(path)
        return response.status_code, response.data

    def json(self, path: str):
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


@pytest.fixture(scope="module", params=["true", "false"], ids=lambda mode: f"load_fast={mode}")
def server(request, logdir):
    if request.param == "false":
        server = InProcess(logdir)
        server.runs = {r["run"]: r for r in server.json(ROUTE + "runs")["runs"]}
        yield server
        return
    with Server(logdir, request.param, "--reload_interval", "1") as server:
        server.runs = server.wait_for({"text/xai": STEPS, "masked/xai": 2, "tab/xai": 1, "damaged/xai": 1})
        yield server


def test_server_serves_the_same_word_importance_as_tb_xai_load(server, logdir):
    for name, input_name in (("text", "tokens"), ("masked", "token_ids")):
        run = tb_xai.load(os.path.join(logdir, name))
        for method in run.methods:
            for signed, target in ((0, "all"), (1, "all"), (0, "1")):
                answer = server.json(ROUTE + f"evolution?run={name}/xai&method={method}&by=word&signed={signed}"
                                             f"&target={target}")
                target_value = None if target == "all" else int(target)
                expected = run.importance(method, by="word", signed=bool(signed), target=target_value)
                assert answer["features"] == run.map_names(method, by="word")
                got = np.array(answer["importance"], dtype=float)
                np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True)
                assert answer["steps"] == run.steps(method)
            ranked = server.json(ROUTE + f"evolution?run={name}/xai&method={method}&by=word")
            assert [ranked["features"][i] for i in ranked["order"]] == run.ranking(method, by="word")
            by_position = server.json(ROUTE + f"evolution?run={name}/xai&method={method}")
            np.testing.assert_allclose(np.array(by_position["importance"], dtype=float), run.importance(method),
                                       rtol=1e-5, equal_nan=True)
        tokens = server.json(ROUTE + f"tokens?run={name}/xai&input={input_name}")
        assert tokens["tokens"] == run.tokens().tolist() and tokens["padding"] == run.padding().tolist()


def test_server_sends_tokens_as_strings_and_names_bad_requests(server):
    status, body = server.get(ROUTE + "probe?run=text/xai&method=saliency&probe=3")
    assert status == 200
    answer = json.loads(body)
    assert answer["tokens"] == TOKENS[3].tolist() and answer["tokens"][0] == "日本"
    assert answer["padding"] == [False] * 6
    assert "<script>" in json.loads(server.get(ROUTE + "tokens?run=text/xai")[1])["tokens"][1]
    listed = server.runs["text/xai"]
    assert listed["probe_inputs"][0]["text"] == {"positions": 6, "padding_id": 0, "mask_id": 1, "padding_input": None}
    status, body = server.get(ROUTE + "evolution?run=text/xai&method=saliency&by=letter")
    assert status == 400 and b"by must be one of ['position', 'word']; received by='letter'" in body
    status, body = server.get(ROUTE + "evolution?run=tab/xai&method=saliency&by=word")
    assert status == 400 and b"by='word' needs a text input; input 'x' of method 'saliency' is tabular" in body
    status, body = server.get(ROUTE + "tokens?run=tab/xai")
    assert status == 404 and b"has no text input" in body
    status, body = server.get(ROUTE + "tokens?run=text/xai&input=nope")
    assert status == 404 and b"input 'nope' not found" in body
    damaged = server.runs["damaged/xai"]
    assert {s["tag"] for s in damaged["skipped"]} == {
        metadata.tokens_tag("numbers"), metadata.tokens_tag("flat"), metadata.tokens_tag("config"),
        metadata.probe_tag("fractional"), metadata.attribution_tag("ig", "embedded")}
    status, body = server.get(ROUTE + "tokens?run=damaged/xai&input=numbers")
    assert status == 404 and b"tokens must be strings" in body
    assert server.json(ROUTE + "tokens?run=damaged/xai&input=ok")["tokens"] == TOKENS[:2].tolist()
