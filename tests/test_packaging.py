"""What a user installs: the sdist, its metadata, and the parts that must work without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "tests")

NO_TENSORFLOW = """
import os, sys
sys.path.insert(0, {here!r})
os.environ["TB_XAI_BLOCK_TENSORFLOW"] = "1"
import backend_matrix  # makes tensorflow and tf_keras unimportable
import matplotlib
matplotlib.use("Agg")
import tb_xai, tb_xai.plot
from tb_xai.plugin import loader, plugin
run = tb_xai.load({log_dir!r})
method = run.methods[0]
assert run.attributions(method).shape[0] == len(run.steps(method))
tb_xai.plot.evolution_heatmap(run, method).savefig({png!r})
loader.XaiLoader()
imported = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras"))
assert not imported, imported
print("ok")
"""


def test_load_plot_and_plugin_work_without_tensorflow(tabular_run, tmp_path):
    png = str(tmp_path / "evolution.png")
    code = NO_TENSORFLOW.format(here=HERE, log_dir=tabular_run.log_dir, png=png)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert result.stdout.strip().endswith("ok")
    assert os.path.getsize(png) > 10_000


def test_sdist_holds_what_its_tests_import_and_the_license(tmp_path):
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path), "sdist", "-d", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    (archive,) = [p for p in os.listdir(tmp_path) if p.endswith(".tar.gz")]
    with tarfile.open(tmp_path / archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        info = tar.extractfile(next(n for n in tar.getnames() if n.endswith("/PKG-INFO") and n.count("/") == 1))
        metadata = info.read().decode()
    test_modules = {f"tests/{f}" for f in os.listdir(HERE) if f.endswith(".py")}
    assert test_modules <= names, sorted(test_modules - names)
    for needed in ("LICENSE", "tests/run.sh", "tb_xai/plugin_data.proto", "tb_xai/plugin/static/index.js",
                   "tb_xai/backend/jax.py", "tb_xai/backend/torch.py", "frontend/package-lock.json"):
        assert needed in names, needed
    assert not any(n.startswith("frontend/node_modules") for n in names)
    assert "License: Apache-2.0" in metadata or "License-Expression: Apache-2.0" in metadata
    assert "Requires-Python: >=3.10" in metadata
    for extra in ("jax", "torch", "tf-keras"):  # extra names are normalized (PEP 685)
        assert f"Provides-Extra: {extra}" in metadata, extra
