"""The callback's event-file writer: TFRecord checksums and files TensorBoard's own reader loads."""

from __future__ import annotations

import glob
import os

import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tensorboard_masked_crc32c

from tb_xai import summary


def test_record_checksums_match_tensorboards_at_every_length(tmp_path):
    from tb_xai import event_records

    rng = np.random.default_rng(0)
    lengths = [0, 1, 3, 4, 8, 47, 64, 65, 129, 1023, 4096, 4097, 70000]
    records = [rng.integers(0, 256, n).astype(np.uint8).tobytes() for n in lengths]
    framed = event_records.tf_records(records)
    offset = 0
    for data in records:  # length | masked crc(length) | data | masked crc(data), as TensorBoard checksums them
        header = framed[offset:offset + 8]
        assert int.from_bytes(header, "little") == len(data)
        assert int.from_bytes(framed[offset + 8:offset + 12], "little") == tensorboard_masked_crc32c(header)
        assert framed[offset + 12:offset + 12 + len(data)] == data
        end = offset + 12 + len(data)
        assert int.from_bytes(framed[end:end + 4], "little") == tensorboard_masked_crc32c(data), len(data)
        offset = end + 4
    assert offset == len(framed)
    assert event_records.crc32c_many(b"123456789", [0], [9])[0] == 0xE3069283  # the CRC-32C check value


def test_event_files_load_with_tensorboards_reader_and_keep_its_name_pattern(tmp_path):
    writer = summary.SummaryWriter(str(tmp_path))
    values = np.random.default_rng(1).random((32, 30)).astype(np.float32)  # a record past the Python loop
    writer.write(summary.attribution_pb("saliency", "x", values), 3)
    writer.write(summary.predictions_pb(np.ones((4, 2))), 3)
    writer.flush()
    writer.write(summary.predictions_pb(np.zeros((4, 2))), 4)
    writer.close()
    path, = glob.glob(str(tmp_path / "*"))
    name = os.path.basename(path)
    assert name.startswith("events.out.tfevents.") and name.endswith(".tb_xai")
    events = list(event_file_loader.EventFileLoader(path).Load())  # checks every CRC
    assert events[0].file_version == "brain.Event:2"
    assert [(e.step, [v.tag for v in e.summary.value]) for e in events[1:]] == [
        (3, ["tb_xai/attributions/saliency/x"]), (3, ["tb_xai/predictions"]), (4, ["tb_xai/predictions"])]
    read = np.frombuffer(events[1].summary.value[0].tensor.tensor_content, np.float32).reshape(values.shape)
    np.testing.assert_array_equal(read, values)


def test_each_fit_s_event_file_describes_every_tag_once_and_the_caches_follow_the_model(tmp_path, tabular_data):
    """Metadata is left out only for a tag this event file described already: a second fit() writes a new file,
    which describes every tag again. The sanity reference (and its cached ranks) follow a new model."""
    import keras

    import tb_xai
    from tb_xai import findings

    x, y, names, classes = tabular_data
    x, y = x[:64], y[:64]

    def model():
        net = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(4, activation="relu"),
                                keras.layers.Dense(2, activation="softmax")])
        net.compile("adam", "sparse_categorical_crossentropy")
        return net

    callback = tb_xai.AttributionCallback(str(tmp_path), x[:8], labels=y[:8], methods=["saliency"],
                                          feature_names=names, class_names=classes, max_overhead=1.0)
    net = model()
    net.fit(x, y, epochs=2, verbose=0, callbacks=[callback])
    first_reference = callback.quality._reference["saliency"]
    net.fit(x, y, epochs=4, initial_epoch=2, verbose=0, callbacks=[callback])
    other = model()
    other.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    targets, maps, ranks = callback.quality._reference["saliency"]
    assert maps is not first_reference[1]  # a new model: a new randomized reference
    np.testing.assert_array_equal(ranks, findings._unit_ranks(maps))
    files = sorted(glob.glob(str(tmp_path / "*" / "*tfevents*")), key=os.path.getmtime)
    assert len(files) == 3
    for path in files:
        seen = set()
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if not value.tag.startswith("tb_xai/"):
                    continue
                has_metadata = value.HasField("metadata")
                assert has_metadata == (value.tag not in seen), (path, value.tag, event.step)
                if not has_metadata:
                    continue
                seen.add(value.tag)
                if value.tag.startswith("tb_xai/attributions/"):
                    content = value.metadata.plugin_data.content
                    assert b"max_overhead" in content and names[0].encode() in content
        assert {"tb_xai/predictions", "tb_xai/targets", "tb_xai/attributions/saliency/input"} <= seen
    assert findings._resample_counts(0, 200, 8).flags.writeable is False  # shared between calls: read-only
