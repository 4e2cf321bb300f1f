"""The correlation report: known answers on hand-made scores, and a round trip through a real MLflow store."""

import math

import pytest

from ausweep.report.correlation import (
    ALL,
    CorrelationConfig,
    ReportError,
    category_of,
    correlate,
    run,
    scores_by_backbone,
)


def test_category_of_keeps_overall_and_categories_only():
    assert category_of("acc", "acc") == ALL
    assert category_of("acc/sound", "acc") == "sound"
    assert category_of("acc/sound/pitch", "acc") is None
    assert category_of("n/sound", "acc") is None
    assert category_of("accuracy", "acc") is None


def test_best_keeps_one_whole_run_and_mean_averages():
    runs = [("m", {"acc": 0.5, "acc/sound": 0.9}), ("m", {"acc": 0.7, "acc/sound": 0.1}), ("k", {"acc": 0.2})]
    best = scores_by_backbone(runs, aggregate="best")
    assert best["m"] == {ALL: 0.7, "sound": 0.1}  # categories come from the best run, not per-category maxima
    mean = scores_by_backbone(runs, aggregate="mean")
    assert mean["m"] == pytest.approx({ALL: 0.6, "sound": 0.5})
    assert mean["k"] == {ALL: 0.2}


def test_correlate_known_answers():
    text = {b: {ALL: x, "sound": x} for b, x in zip("abcde", [0.1, 0.2, 0.3, 0.4, 0.5])}
    audio = {b: {ALL: 2 * x + 0.05, "sound": x ** 3} for b, x in zip("abcde", [0.1, 0.2, 0.3, 0.4, 0.5])}
    table, points = correlate(text, audio)
    rows = {r["category"]: r for r in table}
    assert rows[ALL]["pearson_r"] == pytest.approx(1.0)
    assert rows[ALL]["spearman_rho"] == pytest.approx(1.0)
    # monotone but not linear: rank correlation is perfect, linear correlation is not
    assert rows["sound"]["spearman_rho"] == pytest.approx(1.0)
    assert 0.9 < rows["sound"]["pearson_r"] < 1.0
    assert len(points) == 10
    reversed_audio = {b: {ALL: 1 - v[ALL]} for b, v in audio.items()}
    (row,), _ = correlate(text, reversed_audio)
    assert row["pearson_r"] == pytest.approx(-1.0)


def test_too_few_or_constant_backbones_give_nan_with_a_note():
    text = {"a": {ALL: 0.1}, "b": {ALL: 0.5}, "c": {ALL: 0.9}}
    (row,), _ = correlate(text, {"a": {ALL: 0.2}, "b": {ALL: 0.3}})
    assert math.isnan(row["pearson_r"]) and "only 2" in row["note"]
    (row,), _ = correlate(text, {b: {ALL: 0.25} for b in text})
    assert math.isnan(row["spearman_rho"]) and "same score" in row["note"]


def _sweep(uri, experiment, param, scores, preset="demo"):
    """A finished parent run with one finished child per (backbone, metrics), as the sweep runner writes them."""
    from ausweep.track.store import SweepTracker

    t = SweepTracker(experiment, uri=uri)
    parent = t.start_parent(f"{experiment}-run", {}, {"ausweep.sweep": experiment, "ausweep.preset": preset})
    for i, (backbone, metrics) in enumerate(scores):
        child = t.child_for_trial(f"k{i}", f"t{i}", {param: backbone}, {})
        t.log_metrics(child, metrics)
        t.end(child)
    t.end(parent)
    return parent


def test_report_reads_both_sweeps_from_mlflow_and_logs_itself(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    text = [("q", {"acc": 0.8, "acc/sound": 0.7, "acc/phonology": 0.4}), ("l", {"acc": 0.6, "acc/sound": 0.5, "acc/phonology": 0.3}),
            ("s", {"acc": 0.3, "acc/sound": 0.3, "acc/phonology": 0.2}), ("only-text", {"acc": 0.9})]
    audio = [("q", {"acc": 0.7, "acc/sound": 0.6}), ("q", {"acc": 0.75, "acc/sound": 0.65}),  # lr sweep: best run counts
             ("l", {"acc": 0.5, "acc/sound": 0.4}), ("s", {"acc": 0.2, "acc/sound": 0.35})]
    _sweep(uri, "knowledge_text", "model", text)
    audio_parent = _sweep(uri, "lalm_backbone", "lalm.llm", audio)
    out = tmp_path / "report"
    m = run(CorrelationConfig(tracking_uri=uri, preset="demo", out_dir=str(out)))
    assert m["n/all"] == 3 and m["n/sound"] == 3 and "n/phonology" not in m  # phonology: text side only
    assert m["pearson_r/all"] == pytest.approx(float(__import__("numpy").corrcoef([0.8, 0.6, 0.3], [0.75, 0.5, 0.2])[0, 1]))
    assert m["spearman_rho/sound"] == pytest.approx(1.0)
    assert (out / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    client = MlflowClient(tracking_uri=uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("correlation").experiment_id])
    assert logged.data.params["audio_run"] == audio_parent
    assert logged.data.metrics["pearson_r/all"] == pytest.approx(m["pearson_r/all"])
    assert {a.path for a in client.list_artifacts(logged.info.run_id)} >= {"scatter.png", "correlation.csv", "points.csv"}


def test_missing_sweep_and_wrong_param_are_clear_errors(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    with pytest.raises(ReportError, match="no MLflow experiment 'knowledge_text'"):
        run(CorrelationConfig(tracking_uri=uri, log_to_mlflow=False))
    _sweep(uri, "knowledge_text", "model", [("a", {"acc": 0.1})])
    _sweep(uri, "lalm_backbone", "llm", [("a", {"acc": 0.1})])
    with pytest.raises(ReportError, match="no param 'lalm.llm'"):
        run(CorrelationConfig(tracking_uri=uri, log_to_mlflow=False))
    with pytest.raises(ReportError, match="no finished sweep with preset 'other'"):
        run(CorrelationConfig(tracking_uri=uri, preset="other", log_to_mlflow=False))
