"""Two trainings writing one log_dir at once lose nothing: the second writes a sibling run and says where.

The main test runs two real processes, each training a small Keras model with the callback into the same
log_dir, overlapping in time; both runs must then load, and be served by a real TensorBoard, with all their
steps and their own values.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tb_xai
from tb_xai import run_lock, summary
from tensorboard_server import ROUTE, Server

EPOCHS = 4

TRAIN = textwrap.dedent("""
    import os, sys, time
    import keras, numpy as np
    import tb_xai

    log_dir, seed, role, first_started, second_started = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]

    def wait(path):
        deadline = time.time() + 120
        while not os.path.exists(path):
            if time.time() > deadline:
                sys.exit(f"timed out waiting for {path}")
            time.sleep(0.05)

    class Overlap(keras.callbacks.Callback):
        # The first holds the run directory (one epoch logged) until the second has logged an epoch too.
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                open(first_started if role == "first" else second_started, "w").close()
                if role == "first":
                    wait(second_started)

    keras.utils.set_random_seed(seed)
    x = np.random.default_rng(seed).normal(size=(64, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(8, activation="relu")(inputs)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    callback = tb_xai.AttributionCallback(log_dir, x[:6], methods=["saliency"], max_overhead=None)
    if role == "second":
        wait(first_started)
    model.fit(x, y, epochs=%d, batch_size=32, verbose=0, callbacks=[callback, Overlap()])
    print(callback.run_dir, flush=True)
""" % EPOCHS)


def test_two_trainings_writing_one_log_dir_at_once_keep_both_runs(tmp_path):
    log_dir = str(tmp_path / "exp")
    first_started, second_started = str(tmp_path / "a.started"), str(tmp_path / "b.started")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    first, second = (
        subprocess.Popen([sys.executable, "-c", TRAIN, log_dir, str(seed), role, first_started, second_started],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for seed, role in ((1, "first"), (2, "second"))
    )
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [err[-2000:] for _, err in outputs]
    run_dirs = [out.strip().splitlines()[-1] for out, _ in outputs]
    assert run_dirs == [os.path.join(log_dir, "xai"), os.path.join(log_dir, "xai_2")]
    warning = outputs[1][1]
    assert "is being written by another training" in warning and os.path.join(log_dir, "xai_2") in warning
    assert "is being written" not in outputs[0][1]
    assert not os.path.exists(os.path.join(log_dir, "xai", run_lock.LOCK_NAME))  # released at the end
    runs = [tb_xai.load(log_dir), tb_xai.load(log_dir, subdir="xai_2")]
    for run in runs:
        assert run.steps("saliency") == list(range(EPOCHS))
    assert not np.allclose(runs[0].attributions("saliency"), runs[1].attributions("saliency"))
    for load_fast in ("true", "false"):
        with Server(str(tmp_path), load_fast) as server:
            listed = server.wait_for({"exp/xai": EPOCHS, "exp/xai_2": EPOCHS})
            for name, run in zip(("exp/xai", "exp/xai_2"), runs):
                assert listed[name]["methods"][0]["inputs"][0]["steps"] == list(range(EPOCHS))
                evolution = server.json(ROUTE + f"evolution?run={name}&method=saliency")
                np.testing.assert_allclose(np.array(evolution["importance"], dtype=float),
                                           run.importance("saliency"), rtol=1e-5, atol=1e-7)


def test_a_second_writer_in_one_process_writes_a_sibling_and_warns(tmp_path, caplog):
    run_dir = str(tmp_path / "xai")
    first = summary.SummaryWriter(run_dir)
    with caplog.at_level(logging.WARNING, logger=run_lock.__name__):
        second = summary.SummaryWriter(run_dir)
    assert first.run_dir == run_dir and second.run_dir == run_dir + "_2"
    assert any(run_dir + "_2" in r.getMessage() and f"pid {os.getpid()}" in r.getMessage() for r in caplog.records)
    first.close()
    second.close()
    assert summary.SummaryWriter(run_dir).run_dir == run_dir  # released: the directory is free again


def test_a_stale_lock_of_a_dead_writer_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "xai"
    run_dir.mkdir()
    owner = {"pid": dead.pid, "host": run_lock.socket.gethostname(), "process_start": None, "since": 0.0}
    (run_dir / run_lock.LOCK_NAME).write_text(json.dumps(owner))
    with caplog.at_level(logging.WARNING, logger=run_lock.__name__):
        writer = summary.SummaryWriter(str(run_dir))
    assert writer.run_dir == str(run_dir)
    assert any("taking it over" in r.getMessage() and str(dead.pid) in r.getMessage() for r in caplog.records)
    assert json.loads((run_dir / run_lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    writer.close()
    assert not (run_dir / run_lock.LOCK_NAME).exists()


def test_a_reused_pid_does_not_keep_a_stale_lock_alive(tmp_path):
    run_dir = tmp_path / "xai"
    run_dir.mkdir()
    # Our own pid, but another process start time: the writer that held it died and the pid was reused.
    owner = {"pid": os.getpid(), "host": run_lock.socket.gethostname(), "process_start": "1", "since": 0.0}
    (run_dir / run_lock.LOCK_NAME).write_text(json.dumps(owner))
    if run_lock._process_start(os.getpid()) is None:
        pytest.skip("no /proc: process start times cannot be read here")
    writer = summary.SummaryWriter(str(run_dir))
    assert writer.run_dir == str(run_dir)
    writer.close()


def test_a_lock_from_another_host_counts_as_live_and_siblings_with_history_are_skipped(tmp_path, caplog):
    run_dir = tmp_path / "xai"
    run_dir.mkdir()
    (run_dir / run_lock.LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": 0.0}))
    old = summary.SummaryWriter(str(tmp_path / "xai_2"))  # an earlier run's history in xai_2
    old.write(summary.failure_pb("m", "x"), 0)
    old.close()
    with caplog.at_level(logging.WARNING, logger=run_lock.__name__):
        writer = summary.SummaryWriter(str(run_dir))
    assert writer.run_dir == str(tmp_path / "xai_3")
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "'elsewhere'" in message and os.path.join(str(run_dir), run_lock.LOCK_NAME) in message
    writer.close()


def test_a_writer_dropped_without_close_gives_its_directory_back(tmp_path):
    import gc

    run_dir = str(tmp_path / "xai")
    writer = summary.SummaryWriter(run_dir)
    assert os.path.exists(os.path.join(run_dir, run_lock.LOCK_NAME))
    del writer  # as when a fit() raised and its callback was dropped
    gc.collect()
    assert not os.path.exists(os.path.join(run_dir, run_lock.LOCK_NAME))
    again = summary.SummaryWriter(run_dir)
    assert again.run_dir == run_dir
    again.close()
