"""Damaged and hostile event files: `tb_xai.load` and a real TensorBoard (both `--load_fast` modes) keep what is
readable, leave out what is not with a reason naming the run and tag, and never answer 5xx.

Every run here is written by `tb_xai.summary` (the callback's writer) and then damaged on purpose.
"""

from __future__ import annotations

import glob
import logging
import os
import struct
import warnings

import numpy as np
import pytest
from tensorboard.compat.proto import summary_pb2

import tb_xai
from tb_xai import metadata, summary
from tb_xai.plugin import run_data
from tensorboard_server import ROUTE, Server

PROBES, FEATURES, STEPS = 4, 3, 6


def attribution(step: int) -> np.ndarray:
    return np.tile(np.arange(1.0, FEATURES + 1) * (step + 1), (PROBES, 1)).astype(np.float32)


def good_summaries(steps: int = STEPS, probe: bool = True) -> list:
    pairs = [(0, summary.probe_pb("x", np.ones((PROBES, FEATURES)), modality=metadata.TABULAR))] if probe else []
    pairs.append((0, summary.labels_pb(np.arange(PROBES) % 2)))
    for step in range(steps):
        pairs += [
            (step, summary.predictions_pb(np.full((PROBES, 2), 0.5))),
            (step, summary.targets_pb(np.arange(PROBES) % 2)),
            (step, summary.attribution_pb("ig", "x", attribution(step), modality=metadata.TABULAR)),
        ]
    return pairs


def raw(tag: str, value, kind: int, **fields) -> summary_pb2.Summary:
    """A summary of `value` as is (any dtype or shape) under tb_xai metadata of `kind`."""
    return summary._summary_pb(tag, np.asarray(value), metadata.create_summary_metadata(kind, **fields))


def attribution_of(value) -> summary_pb2.Summary:
    return raw(metadata.attribution_tag("bad", "x"), value, metadata.ATTRIBUTION, method="bad", input_name="x",
               modality=metadata.TABULAR)


def with_content(pb: summary_pb2.Summary, content: bytes) -> summary_pb2.Summary:
    pb.value[0].metadata.plugin_data.content = content
    return pb


FUTURE = metadata.plugin_data_pb2.PluginData(version=metadata.PROTO_VERSION + 1, kind=metadata.ATTRIBUTION,
                                             method="future", input_name="x").SerializeToString()

#: run -> (extra (step, Summary) pairs, the tag left out, words of its reason)
DAMAGED = {
    "garbage": ([(0, with_content(attribution_of(attribution(0)), b"\xff\xff\xff\xff garbage"))],
                metadata.attribution_tag("bad", "x"), "does not decode"),
    "string_attributions": ([(s, attribution_of(np.full((PROBES, FEATURES), "a"))) for s in range(2)],
                            metadata.attribution_tag("bad", "x"), "real numbers"),
    "complex_attributions": ([(s, attribution_of(np.ones((PROBES, FEATURES)) * 1j)) for s in range(2)],
                             metadata.attribution_tag("bad", "x"), "real numbers"),
    "scalar_attributions": ([(s, attribution_of(np.float32(1.0))) for s in range(2)],
                            metadata.attribution_tag("bad", "x"), "0-d"),
    "vector_attributions": ([(s, attribution_of(np.ones(PROBES, np.float32))) for s in range(2)],
                            metadata.attribution_tag("bad", "x"), "1-d"),
    "future_version": ([(0, with_content(attribution_of(attribution(0)), FUTURE))],
                       metadata.attribution_tag("bad", "x"), "payload version"),
}
#: runs whose own probe-state tags are damaged: run -> (replace this tag's summaries, by this, reason words)
DAMAGED_STATE = {
    "scalar_labels": (metadata.LABELS_TAG, [(0, raw(metadata.LABELS_TAG, np.int64(1), metadata.LABEL))], "0-d"),
    "string_predictions": (metadata.PREDICTIONS_TAG,
                           [(s, raw(metadata.PREDICTIONS_TAG, np.full((PROBES, 2), "p"), metadata.PREDICTION))
                            for s in range(STEPS)], "real numbers"),
    "float_targets": (metadata.TARGETS_TAG,
                      [(s, raw(metadata.TARGETS_TAG, np.full(PROBES, np.nan), metadata.TARGET)) for s in range(STEPS)],
                      "integer"),
    "bad_failure": (metadata.failure_tag("lime"),
                    [(1, raw(metadata.failure_tag("lime"), np.zeros((0,), np.float32), metadata.FAILURE,
                             method="lime"))], "failure"),
}


def write(run_dir: str, pairs) -> None:
    writer = summary.SummaryWriter(run_dir)
    for step, value in pairs:
        writer.write(value, step)
    writer.close()


def event_file(run_dir: str) -> str:
    (path,) = glob.glob(os.path.join(run_dir, "*tfevents*"))
    return path


def corrupt_record(run_dir: str, index: int) -> int:
    """Flips a byte in the data of the `index`-th record of the run's event file; returns its offset."""
    path = event_file(run_dir)
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        offset = 0
        for _ in range(index):
            (length,) = struct.unpack_from("<Q", data, offset)
            offset += 12 + length + 4
        data[offset + 12 + 2] ^= 0xFF
        f.seek(0)
        f.write(data)
    return offset


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    write(str(root / "good" / "xai"), good_summaries())
    for name, (extra, _, _) in DAMAGED.items():
        write(str(root / name / "xai"), good_summaries() + extra)
    for name, (tag, replacement, _) in DAMAGED_STATE.items():
        pairs = [(s, v) for s, v in good_summaries() if v.value[0].tag != tag] + replacement
        write(str(root / name / "xai"), pairs)
    write(str(root / "no_probe" / "xai"), good_summaries(probe=False))
    # A record in the middle of the file fails its checksum: the steps after it must survive.
    write(str(root / "crc" / "xai"), good_summaries())
    records_per_step, first = 3, 2  # probe and labels first, then predictions, targets, attributions per step
    corrupt_record(str(root / "crc" / "xai"), 1 + first + records_per_step * 2 + 2)  # ig at step 2
    return root


def load_quietly(path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = tb_xai.load(str(path), **kwargs)
    return run, [str(w.message) for w in caught]


# ---- tb_xai.load --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_load_leaves_out_a_damaged_attribution_tag_with_one_warning_and_keeps_the_rest(logdir, name):
    _, tag, words = DAMAGED[name]
    run, messages = load_quietly(logdir / name)
    about = [m for m in messages if tag in m]
    assert len(about) == 1 and words in about[0] and name in about[0], messages
    assert run.methods == ["ig"] and run.steps("ig") == list(range(STEPS))
    assert tag in run.skipped and words in run.skipped[tag]
    np.testing.assert_allclose(run.importance("ig")[-1], np.arange(1.0, FEATURES + 1) * STEPS)


@pytest.mark.parametrize("name", sorted(DAMAGED_STATE))
def test_load_leaves_out_a_damaged_probe_state_tag_and_serves_the_attributions(logdir, name):
    tag, _, words = DAMAGED_STATE[name]
    run, messages = load_quietly(logdir / name)
    assert any(tag in m and words in m for m in messages), messages
    assert run.steps("ig") == list(range(STEPS))
    assert run.ranking("ig")[0] == f"feature {FEATURES - 1}"
    assert run.failures() == []  # an unusable failure tag is named in the warning, not raised
    run.stability("ig")
    run.agreement()
    run.to_dataframe()
    if name == "float_targets":
        assert np.isnan(run.importance("ig", target=1)).all()  # no usable targets: no probe counts
    if name == "scalar_labels":
        assert run.labels() is None
    if name == "string_predictions":
        with pytest.raises(KeyError, match="left out: predictions must be real numbers"):
            run.predictions()


def test_load_without_a_probe_tag_serves_the_attributions(logdir):
    run, messages = load_quietly(logdir / "no_probe")
    assert run.inputs == ["x"] and run.modality() == metadata.TABULAR and messages == []
    assert run.steps("ig") == list(range(STEPS)) and run.map_names("ig") == ["feature 0", "feature 1", "feature 2"]
    with pytest.raises(KeyError, match="probe"):
        run.probe()


def test_load_reports_a_corrupt_record_and_keeps_every_step_after_it(logdir):
    run, messages = load_quietly(logdir / "crc")
    path = event_file(str(logdir / "crc" / "xai"))
    (lost,) = [m for m in messages if "lost" in m]
    assert path in lost and "after step 2" in lost and "checksum" in lost
    assert run.steps() == list(range(STEPS))  # predictions of every step
    assert run.steps("ig") == [0, 1, 3, 4, 5]  # only the corrupt record's step is gone


def test_a_truncated_header_at_the_end_is_a_write_under_way_not_damage(tmp_path):
    write(str(tmp_path / "xai"), good_summaries())
    path = event_file(str(tmp_path / "xai"))
    with open(path, "ab") as f:
        f.write(b"\x10\x00\x00")  # the first bytes of the next record
    run, messages = load_quietly(tmp_path)
    assert messages == [] and run.steps("ig") == list(range(STEPS))


# ---- the plugin's reader: one warning per run and reason ----------------------------------------------


def test_the_plugin_logs_a_left_out_tag_once(logdir, caplog):
    from test_plugin import CountingProvider

    pairs = good_summaries() + DAMAGED["future_version"][0]
    reader = run_data.ProviderReader(CountingProvider("future/xai", pairs), cache_bytes=2**20)
    with caplog.at_level(logging.WARNING, logger=run_data.__name__):
        for _ in range(3):
            runs = reader.runs(None, "")
            runs["future/xai"].skipped()
    about = [r.getMessage() for r in caplog.records if "future" in r.getMessage()]
    assert len(about) == 1 and "payload version" in about[0] and "'future/xai'" in about[0]


# ---- a real TensorBoard in both loader modes ----------------------------------------------------------


@pytest.fixture(scope="module", params=["true", "false"], ids=lambda mode: f"load_fast={mode}")
def server(request, logdir):
    with Server(str(logdir), request.param) as server:
        names = ["good", *DAMAGED, "no_probe"]
        server.runs = server.wait_for({f"{name}/xai": STEPS for name in names})
        yield server


def test_runs_lists_every_run_and_names_what_it_left_out(server):
    runs = server.runs
    assert runs["good/xai"]["skipped"] == []
    for name, (_, tag, words) in DAMAGED.items():
        (skipped,) = runs[f"{name}/xai"]["skipped"]
        assert skipped["tag"] == tag and words in skipped["reason"], (name, skipped)
        methods = {m["method"]: m for m in runs[f"{name}/xai"]["methods"]}
        assert methods["ig"]["inputs"][0]["steps"] == list(range(STEPS))
        assert "bad" not in methods or methods["bad"]["inputs"] == []


REQUESTS = [
    "evolution?run={run}&method={method}", "evolution?run={run}&method={method}&target=1&signed=1",
    "probe?run={run}&method={method}&probe=0", "stability?run={run}&method={method}",
    "agreement?run={run}", "agreement?run={run}&target=0", "scalars?run={run}",
]


@pytest.mark.parametrize("name", sorted(DAMAGED) + sorted(DAMAGED_STATE) + ["no_probe"])
def test_no_request_on_a_damaged_run_answers_5xx(server, name):
    run = f"{name}/xai"
    tag = DAMAGED[name][1] if name in DAMAGED else DAMAGED_STATE.get(name, (None,))[0]
    for method in ("ig", "bad"):
        for template in REQUESTS:
            path = ROUTE + template.format(run=run, method=method)
            status, body = server.get(path)
            if method == "ig" or "{method}" not in template:
                assert status == 200, (path, status, body[:300])
            else:  # the left-out tag: a 404 that says why
                assert status == 404 and (b"left out" in body or b"no attributions" in body), (path, status, body)
    if name in DAMAGED and name not in ("garbage", "future_version"):
        status, body = server.get(ROUTE + f"evolution?run={run}&method=bad")
        assert status == 404 and tag.encode() in body and DAMAGED[name][2].encode() in body, body


def test_a_corrupt_record_is_reported_and_every_readable_step_served_in_both_modes(server, logdir):
    listed = server.wait_for({"crc/xai": STEPS})["crc/xai"]
    (loss,) = listed["data_loss"]
    assert loss["file"] == os.path.basename(event_file(str(logdir / "crc" / "xai")))
    assert loss["after_step"] == 2 and "checksum" in loss["reason"] and loss["bytes"] > 0
    steps = server.json(ROUTE + "evolution?run=crc/xai&method=ig")["steps"]
    if server.load_fast == "false":
        # TensorBoard's Python loader stops at the record; the plugin serves the run from its files
        assert steps == [0, 1, 3, 4, 5]
    else:
        assert set(steps) >= {0, 1, 3, 4, 5}  # the Rust loader reads on by itself
    assert server.runs["good/xai"]["data_loss"] == []
