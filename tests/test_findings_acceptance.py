"""Findings on real training: the shortcut demo's stamp and its victims are found; a converged model raises no alarm."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo"))


@pytest.fixture(scope="module")
def shortcut_run(tmp_path_factory):
    """demo/shortcut.py's data and model, trained 6 epochs with integrated gradients only."""
    import keras
    import shortcut
    import tb_xai
    from tb_xai.methods import IntegratedGradients

    keras.utils.set_random_seed(0)
    x_train, y_train, probe, labels, stamped = shortcut.stamped_digits(32, 0)
    model = shortcut.build_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    log_dir = str(tmp_path_factory.mktemp("shortcut"))
    callback = tb_xai.AttributionCallback(log_dir, probe, labels=labels, class_names=shortcut.CLASS_NAMES,
                                          methods=[IntegratedGradients(steps=16)], quality=["drift"],
                                          max_overhead=None)
    model.fit(x_train, y_train, epochs=6, batch_size=64, verbose=0, callbacks=[callback])
    return tb_xai.load(log_dir), labels, stamped, shortcut.STAMP_PIXELS


def test_the_shortcut_demo_finds_a_stamp_pixel_entering_the_top_k_of_integrated_gradients(shortcut_run):
    run, _, _, stamp_pixels = shortcut_run
    k = 5
    found = run.findings(k=k)
    entered = [f for f in found if f["kind"] == "topk_enter" and f["method"] == "integrated_gradients"]
    stamp = [f for f in entered if f["feature"] in stamp_pixels]
    assert stamp, [f["message"] for f in entered]
    # At the step it is reported, the pixel is in the top k of the importance and was not the step before.
    steps = run.steps("integrated_gradients")
    flat = run.importance("integrated_gradients").reshape(len(steps), -1)
    names = run.map_names("integrated_gradients")
    for finding in stamp:
        i, j = steps.index(finding["step"]), names.index(finding["feature"])
        assert j in np.argsort(-flat[i], kind="stable")[:k] and j not in np.argsort(-flat[i - 1], kind="stable")[:k]
        assert finding["value"] == pytest.approx(flat[i, j] - flat[i - 1, j], rel=1e-6)
        assert finding["value"] > finding["noise"] > 0
        assert finding["message"].startswith(f"step {finding['step']}: {finding['feature']} entered the top {k} of "
                                             "integrated_gradients (+")


def test_the_shortcut_demo_names_the_stamped_probes_whose_prediction_flips(shortcut_run):
    run, labels, stamped, _ = shortcut_run
    flips = [f for f in run.findings() if f["kind"] == "prediction_flip"]
    fooled = [f for f in flips if f["direction"] == "right_to_wrong" and labels[f["probe"]] == 0]
    assert len(fooled) >= 2, [f["message"] for f in flips]
    # Even digits turned "odd" are the stamped ones: the shortcut's victims.
    assert all(stamped[f["probe"]] for f in fooled), [f["message"] for f in fooled]
    predicted = run.predictions().argmax(axis=-1)
    steps = run.steps()
    for f in fooled:
        i = steps.index(f["step"])
        assert predicted[i - 1, f["probe"]] == 0 and predicted[i, f["probe"]] == 1
        assert f["message"] == (f"step {f['step']}: probe {f['probe']}'s prediction flipped from 'even' to 'odd' "
                                "(now wrong)")


def test_the_shortcut_demo_prints_what_the_findings_say_and_where_to_open_it(shortcut_run, capsys):
    import shortcut

    run, labels, stamped, stamp_pixels = shortcut_run
    facts = shortcut.report(run.path, stamped)
    out = capsys.readouterr().out
    entered = [f for f in run.findings(k=5) if f["kind"] == "topk_enter" and f["method"] == "integrated_gradients"
               and f["feature"] in stamp_pixels]
    assert facts["stamp_entered"] == entered and entered
    for finding in entered:
        assert f"  {finding['message']}\n" in out
    assert f"Evolution view of integrated_gradients at step {entered[0]['step']}: {entered[0]['feature']} enters" in out
    victims = facts["stamped_flipped_probes"]
    assert victims and all(stamped[p] and labels[p] == 0 for p in victims)
    flips = {f["probe"] for f in run.findings()
             if f["kind"] == "prediction_flip" and f["direction"] == "right_to_wrong"}
    assert set(victims) == {p for p in flips if stamped[p] and labels[p] == 0}
    first = facts["stamped_flips"][0]
    assert (f"Probe view, probe {first['probe']} at step {first['step']}: an even digit with the stamp" in out)
    assert f"marks the {len(victims)} stamped even digits that flipped ({', '.join(map(str, victims))})" in out
    assert "stability card marks the shift" not in out


def test_a_converged_model_trained_further_with_sampling_methods_raises_no_top_k_or_drift_alarm(
        tmp_path, tabular_data):
    import keras
    import tb_xai
    from tb_xai.methods import ExpectedGradients, KernelShap, Lime, SmoothGrad
    from tb_xai.quality import Quality

    x, y, feature_names, _ = tabular_data
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=20, batch_size=64, verbose=0)  # converged: ~99% training accuracy
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    # Small budgets: the estimators' own noise is large, which is what must not be reported.
    methods = [KernelShap(samples=256), Lime(samples=500), SmoothGrad(samples=8), ExpectedGradients(samples=20)]
    callback = tb_xai.AttributionCallback(str(tmp_path), x[:24], labels=y[:24], feature_names=feature_names,
                                          methods=methods, quality=Quality(["drift", "seeds"], seed_probes=6),
                                          max_overhead=None)
    model.fit(x, y, epochs=8, batch_size=64, verbose=0, callbacks=[callback])
    run = tb_xai.load(str(tmp_path))
    moved = 0
    for k in (3, 5, 8):
        alarms = [f["message"] for f in run.findings(k=k) if f["kind"] in ("topk_enter", "topk_leave", "drift")]
        assert alarms == [], k
        # Not for want of movement: the raw top k of the methods changes between steps, within the noise.
        for m in methods:
            tops = [set(np.argsort(-row, kind="stable")[:k]) for row in run.importance(m.name)]
            moved += sum(a != b for a, b in zip(tops, tops[1:]))
    assert moved >= 3
    # The seeds do disagree: the floor had something to absorb.
    seed_spearman = [run.metrics(m.name)["seed_spearman"] for m in methods]
    assert all(np.isfinite(s).all() for s in seed_spearman) and min(s.min() for s in seed_spearman) < 0.99
