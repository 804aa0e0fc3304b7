"""tb_xai.load and the payload contract: what the writer writes, the reader rebuilds."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
from tensorboard.compat.proto import summary_pb2

import tb_xai
from tb_xai import metadata, summary


def _write(run_dir, steps, method="saliency", shape=(3, 4), offset=0.0):
    writer = summary.SummaryWriter(run_dir)
    writer.write(summary.probe_pb("input", np.ones(shape), feature_names=list("abcd"), modality=metadata.TABULAR), 0)
    for step in steps:
        writer.write(summary.predictions_pb(np.full((shape[0], 2), step + offset)), step)
        writer.write(summary.targets_pb(np.zeros(shape[0])), step)
        writer.write(summary.attribution_pb(method, "input", np.full(shape, step + offset), modality=metadata.TABULAR), step)
    writer.close()


def test_metadata_round_trip_and_data_class():
    md = metadata.create_summary_metadata(metadata.ATTRIBUTION, method="ig", input_name="x",
                                          feature_names=["<b>", "é"], config={"steps": np.int64(5)})
    assert md.plugin_data.plugin_name == "tb_xai"
    assert md.data_class == summary_pb2.DATA_CLASS_TENSOR
    info = metadata.parse_plugin_metadata(md.plugin_data.content)
    assert (info.kind_name, info.method, info.input_name, info.feature_names, info.config) == (
        "ATTRIBUTION", "ig", "x", ("<b>", "é"), {"steps": 5})


def test_unknown_payload_versions_are_skipped(tmp_path):
    from tb_xai import plugin_data_pb2

    future = plugin_data_pb2.PluginData(version=metadata.PROTO_VERSION + 1, kind=metadata.ATTRIBUTION)
    assert metadata.parse_plugin_metadata(future.SerializeToString()) is None
    _write(str(tmp_path), [0, 1])
    writer = summary.SummaryWriter(str(tmp_path))
    pb = summary.attribution_pb("future_method", "input", np.ones((3, 4)))
    pb.value[0].metadata.plugin_data.content = future.SerializeToString()
    writer.write(pb, 0)
    writer.close()
    assert tb_xai.load(str(tmp_path)).methods == ["saliency"]


def test_names_used_in_tags_are_checked():
    with pytest.raises(ValueError, match=r"method name must be .*received: 'a/b'"):
        metadata.check_name("a/b", "method name")


def test_event_files_are_read_in_the_order_their_writers_counted(tmp_path):
    """Writers of one process and second differ by a counter in the file name: the 10th comes after the 9th."""
    import glob
    import os

    for counter, value in ((9, 1.0), (10, 2.0)):  # written in this order; "10" sorts before "9" as text
        _write(str(tmp_path / "w"), [0], offset=value)
        (written,) = glob.glob(str(tmp_path / "w" / "*tfevents*"))
        os.rename(written, str(tmp_path / f"events.out.tfevents.1700000000.host.42.{counter}.tb_xai"))
    assert tb_xai.load(str(tmp_path)).attributions("saliency")[0, 0, 0] == 2.0


def test_a_resumed_run_keeps_the_later_write_of_a_step(tmp_path):
    _write(str(tmp_path), [0, 1, 2])
    _write(str(tmp_path), [2, 3], offset=100.0)
    run = tb_xai.load(str(tmp_path))
    assert run.steps("saliency") == [0, 1, 2, 3]
    np.testing.assert_array_equal(run.attributions("saliency")[:, 0, 0], [0, 1, 102, 103])


def test_a_truncated_event_file_serves_what_is_readable(tmp_path):
    _write(str(tmp_path), range(5))
    (path,) = glob.glob(os.path.join(str(tmp_path), "*tfevents*"))
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 7)  # the last record is cut mid-way, as a crashed writer leaves it
    run = tb_xai.load(str(tmp_path))
    assert run.steps("saliency") == [0, 1, 2, 3]


def test_load_explains_what_it_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no tb_xai summaries in .* expected the log_dir given"):
        tb_xai.load(str(tmp_path))
    _write(str(tmp_path / "xai"), [0])
    run = tb_xai.load(str(tmp_path))
    with pytest.raises(KeyError, match=r"no attributions for method 'lime' in run .*xai'; methods with attributions: \['saliency'\]"):
        run.attributions("lime")


def test_a_model_changed_mid_run_serves_the_latest_shape_and_warns_about_the_rest(tmp_path):
    _write(str(tmp_path), [0, 1], shape=(3, 4))
    _write(str(tmp_path), [2, 3], shape=(3, 6))  # the model was rebuilt with 6 features
    with pytest.warns(UserWarning, match=r"saliency/input: steps \[0, 1\] hold another shape .* left out"):
        run = tb_xai.load(str(tmp_path))
    assert run.steps("saliency") == [2, 3]
    assert run.attributions("saliency").shape == (2, 3, 6)
    assert run.map_names("saliency") == [f"feature {i}" for i in range(6)]
