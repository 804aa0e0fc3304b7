"""The one query layer: the same run read from event files (`tb_xai.load`'s reader) and through a data
provider (the plugin's reader) gives the same answers, because both call `tb_xai.query`."""

from __future__ import annotations

import numpy as np
import pytest

from tb_xai import query, reader, runmodel, summary
from tb_xai.modalities import IMAGE, TABULAR
from tb_xai.plugin import run_data
from test_plugin import CountingProvider

PROBES = 5


def pairs() -> list:
    rng = np.random.default_rng(3)
    out = [(0, summary.probe_pb("x", rng.normal(size=(PROBES, 4)), feature_names=list("abcd"), modality=TABULAR)),
           (0, summary.probe_pb("img", rng.random((PROBES, 3, 2, 2)), modality=IMAGE)),
           (0, summary.labels_pb(np.arange(PROBES) % 2))]
    for step in range(5):
        out += [(step, summary.predictions_pb(rng.random((PROBES, 2)))),
                (step, summary.targets_pb(rng.integers(0, 2, PROBES)))]
        for method in ("ig", "saliency"):
            out.append((step, summary.attribution_pb(method, "x", rng.normal(size=(PROBES, 4)), modality=TABULAR,
                                                     feature_names=list("abcd"))))
            out.append((step, summary.attribution_pb(method, "img", rng.normal(size=(PROBES, 3, 2, 2)),
                                                     modality=IMAGE)))
        if step == 3:
            out.append((step, summary.failure_pb("lime", "ValueError: no")))
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("query") / "xai")
    writer = summary.SummaryWriter(run_dir)
    for step, value in pairs():
        writer.write(value, step)
    writer.close()
    from_files = reader.read_run(run_dir, name="q/xai")
    from_provider = run_data.ProviderReader(CountingProvider("q/xai", pairs()), cache_bytes=2**20).runs(None, "")
    return from_files, from_provider["q/xai"]


def test_both_readers_index_the_same_run(both):
    files, provider = both
    for run in both:
        assert query.methods(run) == ["ig", "lime", "saliency"]
        assert query.inputs(run) == ["img", "x"] or query.inputs(run) == ["x", "img"]
        assert query.probe_count(run) == PROBES and query.class_count(run) == 2
    assert query.failures(files) == query.failures(provider) == [(3, "lime", "ValueError: no")]
    assert files.skipped() == provider.skipped() == {}


@pytest.mark.parametrize("input_name", ["x", "img"])
@pytest.mark.parametrize("signed, target, steps", [(False, None, (None, None)), (True, 1, (1, 4))])
def test_importance_ranking_and_layout_agree(both, input_name, signed, target, steps):
    files, provider = (query.importance(run, "ig", input_name, signed=signed, target=target, steps=steps)
                       for run in both)
    np.testing.assert_array_equal(files.steps, provider.steps)
    np.testing.assert_allclose(files.values, provider.values)
    np.testing.assert_array_equal(files.counts, provider.counts)
    assert files.layout == provider.layout and files.order().tolist() == provider.order().tolist()
    assert query.ranking(both[0], "ig", input_name) == query.ranking(both[1], "ig", input_name)
    names = query.layout_of(both[0], "ig", input_name).names()
    assert sorted(query.ranking(both[0], "ig", input_name)) == sorted(names)


def test_stability_and_agreement_agree(both):
    files, provider = (query.stability(run, "saliency", "img", k=3, target=0) for run in both)
    for key in ("spearman_previous", "topk_previous", "spearman_last", "topk_last", "steps"):
        np.testing.assert_allclose(files[key], provider[key])
    files, provider = (query.agreement(run, "x", k=2) for run in both)
    assert files["methods"] == provider["methods"] == ["ig", "saliency"]
    for a, b in zip(files["pairs"], provider["pairs"]):
        np.testing.assert_allclose(a["spearman"], b["spearman"])


def test_lookups_fail_the_same_way_on_both_sides(both):
    for run in both:
        with pytest.raises(runmodel.NotFound, match="no attributions for method 'lime'.*failed at every"):
            query.importance(run, "lime")
        with pytest.raises(runmodel.BadQuery, match=r"several inputs \['img', 'x'\]; choose one"):
            query.importance(run, "ig")
        with pytest.raises(runmodel.NotFound, match="input 'z' not found"):
            query.importance(run, "ig", "z")
        with pytest.raises(IndexError, match="step position 9"):
            query.ranking(run, "ig", "x", position=9)
