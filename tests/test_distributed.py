"""Distributed training with the callback, in real processes (tests/distributed_worker.py).

- tf_keras under MultiWorkerMirroredStrategy, two worker processes on 127.0.0.1: training finishes (a chief
  explaining alone would stall the other worker on BatchNorm's cross-worker reads), the chief alone writes,
  and its last logged step equals a single process explaining the trained weights.
- Keras 3 on JAX with keras.distribution.DataParallel over two CPU devices: written once, every step.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import tb_xai
from distributed_worker import EPOCHS, METHODS

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 420  # a hang fails the test instead of CI


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(args, **env):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    return subprocess.Popen([sys.executable, os.path.join(HERE, "distributed_worker.py"), *args], env=environment,
                            cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process, label):
    try:
        out, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError(f"{label} did not finish in {TIMEOUT} s (hung?):\n{out[-4000:]}")
    if process.returncode != 0:
        raise AssertionError(f"{label} failed:\n{out[-6000:]}")
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    legacy = {"TF_USE_LEGACY_KERAS": "1", "KERAS_BACKEND": "tensorflow"}
    ports = [str(p) for p in _free_ports(2)]
    workers = [_start(["mwms", str(root / "mwms"), str(root / f"worker{i}"), str(i), *ports], **legacy)
               for i in range(2)]
    jax_run = _start(["jax_data_parallel", str(root / "jax"), str(root / "jax_out")], KERAS_BACKEND="jax",
                     XLA_FLAGS="--xla_force_host_platform_device_count=2")
    # The replay imports while the workers train, then waits for worker 0's saved weights.
    replay = _start(["replay", str(root / "mwms"), str(root / "worker0")], **legacy)
    try:
        for i, worker in enumerate(workers):
            (root / f"worker{i}.log").write_text(_finish(worker, f"multi-worker worker {i}"))
        _finish(replay, "single-process replay")
        _finish(jax_run, "JAX DataParallel run")
    finally:
        for process in (*workers, replay, jax_run):
            if process.poll() is None:
                process.kill()
                process.wait()
    return root, [w.pid for w in workers]


def test_multi_worker_writes_once_from_the_chief(runs):
    root, pids = runs
    files = glob.glob(str(root / "mwms" / "xai" / "*tfevents*"))
    assert len(files) == 1, files
    assert f".{pids[0]}." in os.path.basename(files[0]), "worker 0 (the chief) writes, worker 1 does not"
    run = tb_xai.load(str(root / "mwms"))
    assert run.failures() == []
    assert sorted(run.methods) == sorted(METHODS)
    for i in range(2):  # no quality figure left out (tf_keras variables' `value` is a method, not a property)
        log = (root / f"worker{i}.log").read_text()
        assert "are left out" not in log, log[-3000:]
    for method in METHODS:
        assert run.steps(method) == list(range(EPOCHS))


def test_multi_worker_attributions_equal_a_single_process(runs):
    root, _ = runs
    run = tb_xai.load(str(root / "mwms"))
    with np.load(str(root / "worker0") + "_replay.npz") as replay:
        np.testing.assert_allclose(run.predictions()[-1], replay["predictions"], rtol=1e-5, atol=1e-6)
        for method in METHODS:
            want = replay[method]
            assert np.abs(want).max() > 0, method
            np.testing.assert_allclose(run.attributions(method)[-1], want, rtol=1e-4,
                                       atol=1e-5 * np.abs(want).max(), err_msg=method)
    # Both workers trained the same model: the chief's explanation is of the model every worker holds.
    with np.load(str(root / "worker0.npz")) as w0, np.load(str(root / "worker1.npz")) as w1:
        for key in w0.files:
            np.testing.assert_allclose(w0[key], w1[key], rtol=1e-6, atol=1e-7)


def test_jax_data_parallel_writes_once(runs):
    import json

    root, _ = runs
    with open(str(root / "jax_out") + ".json") as f:
        assert json.load(f)["devices"] == 2
    files = glob.glob(str(root / "jax" / "xai" / "*tfevents*"))
    assert len(files) == 1, files
    run = tb_xai.load(str(root / "jax"))
    assert run.failures() == []
    for method in METHODS:
        assert run.steps(method) == list(range(EPOCHS))
        assert np.all(np.isfinite(run.attributions(method)))
