"""demo/text.py runs end to end, offline, and tells its story from the logged event files: integrated
gradients move onto the shortcut token over epochs, and complaints that name it are called praise."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import tb_xai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_text_demo_shows_the_shortcut_token_taking_over(tmp_path):
    log_dir = str(tmp_path / "text")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "demo", "text.py"), "--log-dir", log_dir,
                             "--epochs", "4", "--probes", "24"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    sys.path.insert(0, os.path.join(ROOT, "demo"))
    try:
        import text as demo
    finally:
        sys.path.pop(0)
    run = tb_xai.load(log_dir)
    assert run.failures() == []
    assert run.modality() == "text"
    ids = run.probe()
    brand = ids == demo.VOCABULARY.index(demo.BRAND)
    carries = brand.any(axis=1)
    values = np.abs(run.attributions("integrated_gradients"))
    assert values.shape == (4,) + ids.shape
    assert np.all(values[:, ids == 0] == 0)
    share = (values * brand).sum(axis=(1, 2)) / values[:, carries].sum(axis=(1, 2))
    assert share[0] < 0.35 and share[-1] > 0.6, share  # from a minor token to most of the attribution
    predicted = run.predictions().argmax(axis=-1)
    fooled = ((predicted == 1) & (run.labels() == 0) & carries).sum(axis=1)
    assert fooled[-1] > fooled[0], fooled
    assert "is the most attributed token of most probes that name it" in result.stdout
    assert "Probe " in result.stdout and "turns to 'praise'" in result.stdout
    # What the callback logged reads back as text: the tokens, the words ranked, and the dashboard's answer.
    tokens = run.tokens()
    assert tokens.shape == ids.shape and set(tokens[brand]) == {demo.BRAND}
    assert (run.padding() == (ids == 0)).all()
    assert run.ranking("integrated_gradients", by="word")[0] == demo.BRAND
    from tb_xai.plugin.plugin import evolution_impl

    served = evolution_impl(run._run, "integrated_gradients", None, by="word")
    words = run.map_names("integrated_gradients", by="word")
    assert served["layout"]["names"] == words and served["features"][served["order"][0]] == demo.BRAND
    np.testing.assert_allclose(np.array(served["importance"], dtype=float),
                               run.importance("integrated_gradients", by="word"), rtol=1e-3, atol=1e-6)
