"""The correlation report: the task map, pairing by task, choosing one run per backbone without
looking at evaluation scores, known answers on hand-made scores, and round trips through a real MLflow store."""

import math

import pytest

from ausweep.benchmarks.tasks import TaskMapError, load_task_map
from ausweep.report.correlation import (
    ALL,
    ALL_MICRO,
    CorrelationConfig,
    ReportError,
    Run,
    correlate,
    format_table,
    pair_tasks,
    report,
    run,
    select_runs,
)

# ----------------------------------------------------------------------------- the task map


def test_the_shipped_task_map_pairs_same_questions_only():
    tm = load_task_map()
    assert [t.name for t in tm.tasks if t.paired] == ["rhyme", "syllables", "interval", "chord_quality", "pitch_comparison"]
    # "sound" is AuditoryBench on the text side and generated tones on the audio side: different tasks
    assert tm.task_of("text", "sound/pitch") == "source_pitch" and not tm.task("source_pitch").paired
    assert tm.task_of("audio", "sound/pitch_direction") == "pitch_comparison" == tm.task_of("text", "music/pitch_order")
    assert tm.task_of("audio", "music/triad_quality") == "chord_quality" == tm.task_of("text", "music/chord")
    assert tm.task_of("text", "sound/tone_or_noise") is None and tm.task_of("audio", "sound/animal") is None


def test_every_category_the_studies_generate_is_in_the_task_map():
    from ausweep.data.demo_mc import TASKS
    from ausweep.knowledge_text.sets import auditorybench_items, load_set

    tm = load_task_map()
    text = {f"{it.category}/{it.subcategory}" for s in ("phonology", "music") for it in load_set(s, 8)}
    text |= {f"{it.category}/{it.subcategory}" for it in auditorybench_items("test")}
    assert all(tm.task_of("text", k) for k in text), sorted(k for k in text if not tm.task_of("text", k))
    assert all(tm.task_of("audio", f"{c}/{s}") for c, s, _ in TASKS)


def test_task_scores_pool_items_and_unmapped_categories_are_listed(tmp_path):
    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n  pitch:\n    text: [music/pitch_order, sound/pitch]\n    audio: [sound]\n")
    tm = load_task_map(path)
    m = {"acc/music/pitch_order": 0.5, "n/music/pitch_order": 10, "acc/sound/pitch": 1.0, "n/sound/pitch": 30,
         "acc/music/chord": 0.2, "acc/music": 0.4, "acc/akb": 0.7, "acc": 0.5}
    (score,) = tm.scores("text", m).values()
    assert score.acc == pytest.approx((0.5 * 10 + 1.0 * 30) / 40) and score.n == 40
    assert tm.unmapped("text", m) == ["akb", "music/chord"]
    audio = tm.scores("audio", {"acc/sound": 0.25, "n/sound": 8, "acc/sound/pitch_height": 0.1})
    assert audio["pitch"].acc == 0.25 and tm.unmapped("audio", {"acc/sound/pitch_height": 0.1}) == []


@pytest.mark.parametrize("text,match", [
    ("tasks:\n  a: {text: [x/y]}\n  b: {text: [x]}\n", r"task 'b'\): field 'text': 'x' overlaps a category of task 'a'"),
    ("tasks:\n  a: {text: [x/y], sound: [z]}\n", r"task 'a'\): field 'sound': unknown field"),
    ("tasks:\n  a: {domain: music}\n", r"task 'a'\): field 'text': a task needs categories"),
    ("tasks:\n  a: {audio: [x/y/z]}\n", r"field 'audio': 'x/y/z' is not"),
    ("items: []\n", "field 'tasks'"),
])
def test_bad_task_maps_name_file_task_and_field(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TaskMapError, match=match):
        load_task_map(path)
    with pytest.raises(TaskMapError, match="does not exist"):
        load_task_map(tmp_path / "none.yaml")


# ----------------------------------------------------------------------------- pairing and correlating


def _scores(tm, side, metrics_by_backbone):
    return {b: tm.scores(side, m) for b, m in metrics_by_backbone.items()}


def test_pairing_is_by_task_and_all_is_the_macro_over_paired_tasks():
    tm = load_task_map()
    text = {"q": {"acc/phonology/rhyme": 0.8, "n/phonology/rhyme": 100, "acc/music/chord": 0.4, "n/music/chord": 300,
                  "acc/sound/animal": 0.9, "n/sound/animal": 1000}}
    audio = {"q": {"acc/phonology/rhyme": 0.6, "n/phonology/rhyme": 10, "acc/music/triad_quality": 0.5,
                   "n/music/triad_quality": 30, "acc/sound/tone_or_noise": 1.0, "n/sound/tone_or_noise": 10,
                   "acc/sound/extra": 0.0}}
    t, a, unpaired = pair_tasks(_scores(tm, "text", text), _scores(tm, "audio", audio), tm,
                                {"audio": tm.unmapped("audio", audio["q"])})
    assert set(t["q"]) == {"rhyme", "chord_quality", ALL, ALL_MICRO}  # sound/animal and tone_or_noise are never compared
    assert t["q"][ALL] == pytest.approx((0.8 + 0.4) / 2)  # each task weighs the same
    assert t["q"][ALL_MICRO] == pytest.approx((0.8 * 100 + 0.4 * 300) / 400)
    assert a["q"][ALL] == pytest.approx((0.6 + 0.5) / 2) and a["q"][ALL_MICRO] == pytest.approx((6 + 15) / 40)
    reasons = {(r["side"], r["task"] or r["categories"]): r["reason"] for r in unpaired}
    assert reasons == {("text", "animal_sound"): "declared on the text side only",
                       ("audio", "tone_or_noise"): "declared on the audio side only",
                       ("audio", "sound/extra"): "no task in the task map names it"}


def test_a_paired_task_missing_from_one_sweep_is_unpaired_and_all_needs_every_task():
    tm = load_task_map()
    text = {"q": {"acc/phonology/rhyme": 0.8, "acc/phonology/syllables": 0.3}, "l": {"acc/phonology/rhyme": 0.1}}
    audio = {"q": {"acc/phonology/rhyme": 0.6}, "l": {"acc/phonology/rhyme": 0.2}}
    t, a, unpaired = pair_tasks(_scores(tm, "text", text), _scores(tm, "audio", audio), tm)
    assert t["q"] == {"rhyme": 0.8, ALL: 0.8, ALL_MICRO: 0.8} and a["l"][ALL] == 0.2
    assert [(r["task"], r["reason"]) for r in unpaired] == [("syllables", "not in the audio sweep's runs (phonology/syllables)")]


def test_correlate_known_answers():
    xs = [0.1, 0.2, 0.3, 0.4, 0.5]
    text = {b: {ALL: x, "rhyme": x} for b, x in zip("abcde", xs)}
    audio = {b: {ALL: 2 * x + 0.05, "rhyme": x ** 3} for b, x in zip("abcde", xs)}
    table, points = correlate(text, audio)
    rows = {r["category"]: r for r in table}
    assert [r["category"] for r in table] == [ALL, "rhyme"]
    assert rows[ALL]["pearson_r"] == pytest.approx(1.0) and rows[ALL]["spearman_rho"] == pytest.approx(1.0)
    # monotone but not linear: rank correlation is perfect, linear correlation is not
    assert rows["rhyme"]["spearman_rho"] == pytest.approx(1.0) and 0.9 < rows["rhyme"]["pearson_r"] < 1.0
    assert len(points) == 10
    (row,), _ = correlate(text, {b: {ALL: 1 - v[ALL]} for b, v in audio.items()})
    assert row["pearson_r"] == pytest.approx(-1.0)


def test_too_few_or_constant_backbones_give_nan_with_a_note():
    text = {"a": {ALL: 0.1}, "b": {ALL: 0.5}, "c": {ALL: 0.9}}
    (row,), _ = correlate(text, {"a": {ALL: 0.2}, "b": {ALL: 0.3}})
    assert math.isnan(row["pearson_r"]) and "only 2" in row["note"]
    (row,), _ = correlate(text, {b: {ALL: 0.25} for b in text})
    assert math.isnan(row["spearman_rho"]) and "same score" in row["note"]


# ----------------------------------------------------------------------------- choosing runs


def _run(i, backbone, lr, dev=None, acc=0.5, **params):
    metrics = {"acc": acc} | ({} if dev is None else {"dev/acc": dev})
    return Run(f"r{i}", backbone, {"lalm.llm": backbone, "train.lr": str(lr), "progress": "False", **params}, metrics)


def _grid():
    """Two lrs x three backbones. lr 3e-4 is best on dev on average; each backbone's best on the
    *evaluation* items is the other lr, so a choice made on eval would show up."""
    return [_run(0, "q", 1e-4, dev=0.50, acc=0.9), _run(1, "q", 3e-4, dev=0.60, acc=0.2),
            _run(2, "l", 1e-4, dev=0.45, acc=0.8), _run(3, "l", 3e-4, dev=0.40, acc=0.3),
            _run(4, "s", 1e-4, dev=0.20, acc=0.7), _run(5, "s", 3e-4, dev=0.30, acc=0.1)]


def test_one_run_per_backbone_and_one_recipe_needs_no_choice():
    sel = select_runs([_run(0, "q", 1e-4), _run(1, "l", 1e-4, progress="True")], "audio", "lalm.llm")
    assert {b: r.run_id for b, r in sel.runs.items()} == {"q": "r0", "l": "r1"}  # progress is not a recipe
    assert not sel.notes and not sel.selected_on_eval and not sel.recipe_mismatch


def test_shared_selection_picks_one_recipe_on_dev_never_on_eval():
    sel = select_runs(_grid(), "audio", "lalm.llm")
    assert {b: r.params["train.lr"] for b, r in sel.runs.items()} == {"q": "0.0003", "l": "0.0003", "s": "0.0003"}
    assert not sel.selected_on_eval and not sel.recipe_mismatch and "dev/acc" in sel.notes[0]


def test_per_backbone_selection_gives_different_recipes_and_is_refused():
    with pytest.raises(ReportError, match=r"audio side: the backbones' runs differ in recipe \(train.lr: l=0.0001, q=0.0003"):
        select_runs(_grid(), "audio", "lalm.llm", select="per_backbone")
    sel = select_runs(_grid(), "audio", "lalm.llm", select="per_backbone", allow_recipe_mismatch=True)
    assert sel.recipe_mismatch and any("RECIPES DIFFER" in n for n in sel.notes)


def test_choosing_on_evaluation_data_is_refused_unless_allowed():
    with pytest.raises(ReportError, match=r"q has 2 runs.*differing in train.lr.*'acc' would select on the evaluation items"):
        select_runs(_grid(), "audio", "lalm.llm", select_metric="acc")
    sel = select_runs(_grid(), "audio", "lalm.llm", select_metric="acc", allow_eval_selection=True)
    assert sel.selected_on_eval and "EVALUATION DATA" in sel.notes[0]
    # eval-best per backbone would be lr 1e-4 everywhere (mean acc 0.8 against 0.2)
    assert {r.params["train.lr"] for r in sel.runs.values()} == {"0.0001"}


def test_several_runs_without_a_dev_metric_cannot_be_chosen_among():
    grid = [_run(i, b, lr) for i, (b, lr) in enumerate([("q", 1e-4), ("q", 3e-4), ("l", 1e-4), ("l", 3e-4)])]
    with pytest.raises(ReportError, match=r"no 'dev/acc' to choose on in the runs of l, q.*audio_filter"):
        select_runs(grid, "audio", "lalm.llm")


def test_a_recipe_missing_for_a_backbone_is_refused():
    grid = _grid()[:-1]  # s ran only lr 1e-4: the dev-best shared recipe does not cover it
    sel = select_runs(grid, "audio", "lalm.llm")
    assert {r.params["train.lr"] for r in sel.runs.values()} == {"0.0001"}
    with pytest.raises(ReportError, match="no recipe was run for every backbone"):
        select_runs([_run(0, "q", 1e-4, dev=0.1), _run(1, "q", 3e-4, dev=0.2), _run(2, "l", 2e-4, dev=0.3),
                     _run(3, "l", 5e-4, dev=0.3)], "audio", "lalm.llm")


# ----------------------------------------------------------------------------- through MLflow


def _sweep(uri, experiment, param, scores, preset="demo"):
    """A finished parent run with one finished child per (params, metrics), as the sweep runner writes them."""
    from ausweep.track.store import SweepTracker

    t = SweepTracker(experiment, uri=uri)
    parent = t.start_parent(f"{experiment}-run", {}, {"ausweep.sweep": experiment, "ausweep.preset": preset})
    for i, (params, metrics) in enumerate(scores):
        params = params if isinstance(params, dict) else {param: params}
        child = t.child_for_trial(f"k{i}", f"t{i}", params, {})
        t.log_metrics(child, metrics)
        t.end(child)
    t.end(parent)
    return parent


def _text(rhyme, chord, animal=0.9):
    return {"acc/phonology/rhyme": rhyme, "n/phonology/rhyme": 20, "acc/music/chord": chord, "n/music/chord": 20,
            "acc/sound/animal": animal, "n/sound/animal": 100, "acc": (rhyme + chord + animal) / 3}


def _audio(rhyme, triad, dev=None, tone=0.5):
    m = {"acc/phonology/rhyme": rhyme, "n/phonology/rhyme": 10, "acc/music/triad_quality": triad,
         "n/music/triad_quality": 10, "acc/sound/tone_or_noise": tone, "n/sound/tone_or_noise": 10}
    return m | ({} if dev is None else {"dev/acc": dev})


def test_report_reads_both_sweeps_pairs_by_task_and_logs_itself(tmp_path):
    import numpy as np
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    text = [("q", _text(0.8, 0.6)), ("l", _text(0.6, 0.5)), ("s", _text(0.3, 0.2)), ("only-text", _text(0.9, 0.9))]
    # an lr grid on the audio side, chosen on dev: lr 3e-4 (mean dev 0.5 against 0.3) for everyone
    audio = []
    for b, good, bad in (("q", (0.7, 0.6), (0.99, 0.99)), ("l", (0.5, 0.4), (0.98, 0.98)), ("s", (0.2, 0.35), (0.97, 0.97))):
        audio.append(({"lalm.llm": b, "train.lr": 3e-4}, _audio(*good, dev=0.5)))
        audio.append(({"lalm.llm": b, "train.lr": 1e-4}, _audio(*bad, dev=0.3)))  # best on eval, not on dev
    _sweep(uri, "knowledge_text", "model", text)
    audio_parent = _sweep(uri, "lalm_backbone", "lalm.llm", audio)
    out = tmp_path / "report"
    rep = report(CorrelationConfig(tracking_uri=uri, preset="demo", out_dir=str(out)))
    m = rep.metrics
    assert m["n/all"] == 3 and m["n/rhyme"] == 3 and m["n/chord_quality"] == 3
    assert not any(k.endswith(("animal_sound", "tone_or_noise")) for k in m)  # never compared across tasks
    text_all = [(0.8 + 0.6) / 2, (0.6 + 0.5) / 2, (0.3 + 0.2) / 2]
    audio_all = [(0.7 + 0.6) / 2, (0.5 + 0.4) / 2, (0.2 + 0.35) / 2]
    assert m["pearson_r/all"] == pytest.approx(float(np.corrcoef(text_all, audio_all)[0, 1]))
    assert m["spearman_rho/rhyme"] == pytest.approx(1.0)
    assert not rep.warning and (out / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "WARNINGS.txt").exists()
    assert "text   animal_sound: declared on the text side only" in format_table(rep)
    selection = (out / "selection.csv").read_text()
    assert selection.count("0.0003") == 3 and "0.0001" not in selection

    client = MlflowClient(tracking_uri=uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("correlation").experiment_id])
    assert logged.data.params["audio_run"] == audio_parent
    assert logged.data.params["select_metric"] == "dev/acc"
    assert logged.data.tags["ausweep.report.selected_on_eval"] == "false" and logged.data.tags["ausweep.report.warning"] == "none"
    assert "text:animal_sound" in logged.data.tags["ausweep.report.unpaired"]
    assert logged.data.metrics["pearson_r/all"] == pytest.approx(m["pearson_r/all"])
    assert {a.path for a in client.list_artifacts(logged.info.run_id)} >= {
        "scatter.png", "correlation.csv", "points.csv", "unpaired.csv", "selection.csv"}


def test_report_refuses_eval_selection_and_an_override_is_loud(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    _sweep(uri, "knowledge_text", "model", [(b, _text(x, x)) for b, x in zip("qls", (0.8, 0.5, 0.2))])
    audio = [({"lalm.llm": b, "train.lr": lr}, _audio(x * f, x * f)) for b, x in zip("qls", (0.7, 0.4, 0.3))
             for lr, f in ((1e-4, 1.0), (3e-4, 0.5))]  # an lr grid and no dev split
    _sweep(uri, "lalm_backbone", "lalm.llm", audio)
    cfg = dict(tracking_uri=uri, preset="demo")
    with pytest.raises(ReportError, match="no 'dev/acc' to choose on"):
        run(CorrelationConfig(**cfg))
    with pytest.raises(ReportError, match="'acc' would select on the evaluation items"):
        run(CorrelationConfig(**cfg, select_metric="acc"))
    # by hand, before looking: a fair report
    assert run(CorrelationConfig(**cfg, audio_filter={"train.lr": 1e-4}, log_to_mlflow=False))["n/all"] == 3

    out = tmp_path / "unfair"
    rep = report(CorrelationConfig(**cfg, select_metric="acc/phonology/rhyme", allow_eval_selection=True, out_dir=str(out)))
    assert rep.warning == "SELECTED ON EVALUATION DATA."
    assert format_table(rep).splitlines()[1] == "!! SELECTED ON EVALUATION DATA."
    assert "SELECTED ON EVALUATION DATA" in (out / "WARNINGS.txt").read_text()
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("correlation").experiment_id])
    (logged,) = [r for r in runs if r.data.tags["ausweep.report.selected_on_eval"] == "true"]
    assert logged.data.tags["ausweep.report.warning"] == "SELECTED ON EVALUATION DATA."
    assert "UNFAIR" in logged.info.run_name and "WARNINGS.txt" in {a.path for a in client.list_artifacts(logged.info.run_id)}


def test_missing_sweep_and_wrong_param_are_clear_errors(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    with pytest.raises(ReportError, match="no MLflow experiment 'knowledge_text'"):
        run(CorrelationConfig(tracking_uri=uri, log_to_mlflow=False))
    _sweep(uri, "knowledge_text", "model", [("a", {"acc": 0.1})])
    _sweep(uri, "lalm_backbone", "llm", [("a", {"acc": 0.1})])
    # by default only sweeps run without a preset: these were run with --preset demo
    with pytest.raises(ReportError, match="no finished sweep run without a preset"):
        run(CorrelationConfig(tracking_uri=uri, log_to_mlflow=False))
    with pytest.raises(ReportError, match="no param 'lalm.llm'"):
        run(CorrelationConfig(tracking_uri=uri, preset="*", log_to_mlflow=False))
    with pytest.raises(ReportError, match="no finished sweep with preset 'other'"):
        run(CorrelationConfig(tracking_uri=uri, preset="other", log_to_mlflow=False))
    with pytest.raises(ReportError, match="no task of .*backbone_tasks.yaml is on both sides"):
        run(CorrelationConfig(tracking_uri=uri, preset="demo", audio_backbone_param="llm", log_to_mlflow=False))


def test_a_tuning_preset_is_not_compared_by_default(tmp_path):
    """lalm_backbone --preset tune gives each backbone its own recipe: the default report takes the
    newest sweep run without a preset, even when a tuning sweep finished later."""
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    _sweep(uri, "knowledge_text", "model", [(b, _text(x, x)) for b, x in zip("qls", (0.8, 0.5, 0.2))], preset="")
    _sweep(uri, "lalm_backbone", "lalm.llm", [({"lalm.llm": b}, _audio(x, x)) for b, x in zip("qls", (0.7, 0.4, 0.3))], preset="")
    tuned = _sweep(uri, "lalm_backbone", "lalm.llm", [({"lalm.llm": b}, _audio(1 - x, 1 - x)) for b, x in zip("qls", (0.7, 0.4, 0.3))],
                   preset="tune")
    rep = report(CorrelationConfig(tracking_uri=uri, log_to_mlflow=False))
    assert rep.metrics["pearson_r/all"] > 0.9  # the default sweep's scores, not the tuned sweep's (r < 0)
    assert report(CorrelationConfig(tracking_uri=uri, audio_run=tuned, log_to_mlflow=False)).metrics["pearson_r/all"] < 0


def test_category_names_come_back_from_mlflow_keys_as_written(tmp_path):
    """A category "Sound & Music" is logged (escaped) and paired by the task map under its own name;
    a category holding "/" is logged too and never passes for a category and a subcategory."""
    from ausweep.benchmarks.mcq import MCItem, accuracy_metrics
    from ausweep.report.correlation import metric_name

    def items(cat, sub, right):  # `right` of 4 items answered correctly
        return [MCItem(f"{cat}{sub}{i}", "?", ("a", "b"), 0, cat, sub) for i in range(4)], [0] * right + [1] * (4 - right)

    def scores(per):  # {(category, subcategory): right} -> accuracy_metrics over all of them
        its, pred = [], []
        for (cat, sub), right in per.items():
            i, p = items(cat, sub, right)
            its, pred = its + i, pred + p
        return accuracy_metrics(its, pred)

    odd = {("Sound & Music", "pitch: high/low"): None, ("rhyme/stress", "x"): None, ("rhyme", "stress/x"): None}
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    _sweep(uri, "knowledge_text", "model", [(b, scores(dict.fromkeys(odd, r))) for b, r in zip("qls", (4, 2, 1))])
    _sweep(uri, "lalm_backbone", "lalm.llm", [(b, scores(dict.fromkeys(odd, r))) for b, r in zip("qls", (3, 2, 0))])
    task_map = tmp_path / "tasks.yaml"
    task_map.write_text("tasks:\n  pitch:\n    text: ['Sound & Music/pitch: high/low']\n    audio: ['Sound & Music']\n"
                        "  rhyme:\n    text: [rhyme/stress]\n    audio: [rhyme/stress]\n")
    with pytest.raises(TaskMapError):  # the map's own syntax: one "/" at most
        load_task_map(task_map)
    task_map.write_text("tasks:\n  pitch:\n    text: ['Sound & Music']\n    audio: ['Sound & Music']\n"
                        "  rhyme:\n    text: [rhyme/stress]\n    audio: [rhyme/stress]\n")
    rep = report(CorrelationConfig(tracking_uri=uri, preset="demo", task_map=str(task_map), log_to_mlflow=False))
    assert rep.metrics["n/pitch"] == 3 and rep.metrics["spearman_rho/pitch"] == pytest.approx(1.0)
    # neither "rhyme/stress" + "x" nor "rhyme" + "stress/x" is the map's rhyme/stress
    assert "n/rhyme" not in rep.metrics
    assert {(r["side"], r["categories"]) for r in rep.unpaired} == {
        (side, c) for side in ("text", "audio") for c in ("rhyme_x2f_stress/x", "rhyme/stress_x2f_x")}
    logged = {metric_name(k) for k in scores(dict.fromkeys(odd, 1))}
    assert {"acc/Sound & Music", "acc/Sound & Music/pitch_x3a_ high_x2f_low", "acc/rhyme_x2f_stress/x",
            "acc/rhyme/stress_x2f_x", "n/rhyme"} <= logged
