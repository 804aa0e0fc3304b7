"""The demos run end to end, offline, and log what they say they log.

Each demo runs in a subprocess with small settings; the assertions read the event files back with
tb_xai.load. The shortcut demo runs through demo/run.sh, which trains it and serves TensorBoard, and is held to
its story: the attribution moves onto the stamp.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request

import numpy as np
import pytest

import tb_xai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}


def _demo(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, os.path.join(ROOT, "demo", f"{name}.py"), *args],
                            capture_output=True, text=True, timeout=600, env=ENV, cwd=ROOT)
    if result.returncode != 0:
        raise AssertionError(f"demo/{name}.py failed:\n{result.stdout}\n{result.stderr[-4000:]}")
    return result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shortcut(tmp_path_factory):
    """demo/run.sh as the README's first command runs it (the install skipped: this interpreter has tb_xai), on
    the shortcut demo with smaller settings: what it printed up to TensorBoard's URL, TensorBoard's plugin
    listing once it answers, and the run tb_xai.load reads from what it trained."""
    runs, port = tmp_path_factory.mktemp("demo") / "runs", _free_port()
    # run.sh installs into the active virtual environment: make it this interpreter's, installed already.
    env = {**ENV, "SKIP_INSTALL": "1", "PORT": str(port), "RUNS": str(runs), "VIRTUAL_ENV": sys.prefix,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    process = subprocess.Popen(["bash", os.path.join(ROOT, "demo", "run.sh"), "shortcut", "--epochs", "10",
                                "--probes", "24"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, cwd=ROOT, start_new_session=True)
    try:
        printed = []
        for line in process.stdout:
            printed.append(line)
            if f"http://127.0.0.1:{port}/" in line:
                break
        deadline, listing = time.monotonic() + 90, None
        while listing is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugins_listing", timeout=5) as r:
                    listing = json.load(r)
            except OSError:
                time.sleep(1)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    printed = "".join(printed)
    assert f"http://127.0.0.1:{port}/" in printed, f"demo/run.sh never reached TensorBoard:\n{printed[-4000:]}"
    return types.SimpleNamespace(run=tb_xai.load(str(runs / "shortcut")), printed=printed, port=port, listing=listing)


STAMP = ["pixel (0, 0)", "pixel (0, 1)", "pixel (1, 0)", "pixel (1, 1)"]


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion", "saliency"])
def test_shortcut_attributions_move_onto_the_stamp(shortcut, method):
    run = shortcut.run
    assert run.failures() == []
    assert run.steps(method) == list(range(10))
    importance = run.importance(method).reshape(10, -1)
    names = run.map_names(method)
    stamp = [names.index(p) for p in STAMP]
    share = importance[:, stamp].sum(axis=1) / importance.sum(axis=1)
    # At the first epoch the stamp (4 of 64 pixels) holds no more than its area's share; by the last it
    # dominates, and the most important pixel is one of its four.
    assert share[0] < 0.12 and share[-1] > 0.25 and share[-1] > 3 * share[0]
    assert run.ranking(method)[0] in STAMP
    assert run.ranking(method, step=0)[0] not in STAMP


def test_shortcut_costs_stamped_even_digits_their_label(shortcut):
    run, out = shortcut.run, shortcut.printed
    probe, labels = run.probe(), run.labels()
    stamped = (probe[:, :2, :2, 0] > 0).all(axis=(1, 2))
    predicted = run.predictions().argmax(axis=-1)
    fooled = (predicted == 1) & (labels == 0) & stamped
    assert fooled[-1].sum() > fooled[0].sum()
    assert "From epoch" in out and "the most important pixel is in the stamp" in out


def test_tabular_demo_logs_named_gradient_shap_and_lime_attributions(tmp_path):
    log_dir = str(tmp_path / "tabular")
    out = _demo("tabular", "--log-dir", log_dir, "--epochs", "3", "--probes", "8", "--quick")
    run = tb_xai.load(log_dir)
    assert run.methods == ["integrated_gradients", "kernel_shap", "lime", "saliency"]
    assert run.failures() == []
    assert run.attributions("kernel_shap").shape == (3, 8, 30)
    assert "worst radius" in run.feature_names()
    assert run.class_names() == ["malignant", "benign"]
    assert "kernel_shap vs lime" in out


def test_digits_demo_logs_every_image_method(tmp_path):
    log_dir = str(tmp_path / "digits")
    _demo("digits", "--log-dir", log_dir, "--epochs", "3", "--probes", "6", "--quick")
    run = tb_xai.load(log_dir)
    assert run.methods == ["grad_cam", "integrated_gradients", "kernel_shap", "lime", "saliency"]
    assert run.failures() == []
    assert run.attributions("lime").shape == (3, 6, 8, 8)
    assert run.attributions("saliency").shape == (3, 6, 8, 8, 1)
    assert all(np.abs(run.importance(m)[-1]).sum() > 0 for m in run.methods)


def test_run_sh_trains_then_serves_tensorboard_with_the_plugin(shortcut):
    assert f"http://127.0.0.1:{shortcut.port}/#tb_xai" in shortcut.printed, shortcut.printed
    assert shortcut.listing is not None and shortcut.listing["tb_xai"]["enabled"], shortcut.listing
    assert shortcut.run.steps("saliency") == list(range(10))
