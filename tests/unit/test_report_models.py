"""`python -m ausweep.report models` on a real MLflow SQLite store, runs laid out as sweeps log them."""

from __future__ import annotations

import csv

import pytest

from ausweep.report.models import ModelsConfig, ReportError, build, model_identity, report, to_markdown
from ausweep.track.keys import join_key, mlflow_key


class Store:
    """Sweeps (parent runs) with child runs, tagged as ausweep's runner tags them."""

    def __init__(self, uri: str):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)
        self.clock = 1_000

    def sweep(self, study: str, children: list[tuple[dict, dict]], preset: str = "", finished: bool = True) -> list[str]:
        experiment = "lora_rank" if study == "audiobert" else study  # named as the sweep, as the runner does
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        parent = self.client.create_run(exp_id, start_time=self._tick(),
                                        tags={"ausweep.sweep": experiment, "ausweep.study": study, "ausweep.preset": preset})
        ids = []
        for params, metrics in children:
            child = self.client.create_run(exp_id, start_time=self._tick(), tags={"mlflow.parentRunId": parent.info.run_id})
            for k, v in params.items():
                self.client.log_param(child.info.run_id, k, v)
            for k, v in metrics.items():
                self.client.log_metric(child.info.run_id, mlflow_key(k), v)
            self.client.set_terminated(child.info.run_id, "FINISHED")
            ids.append(child.info.run_id)
        self.client.set_terminated(parent.info.run_id, "FINISHED" if finished else "KILLED")
        return ids

    def _tick(self) -> int:
        self.clock += 1000
        return self.clock


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'mlflow.db'}")


def cfg(store, **kw):
    return ModelsConfig(tracking_uri=store.uri, log_to_mlflow=False, **kw)


def test_identity_joins_registry_names_and_hub_ids():
    assert model_identity("gpt2") == model_identity("openai-community/gpt2") == "hf:openai-community/gpt2"
    assert model_identity("gpt2", "main") == "hf:openai-community/gpt2"
    assert model_identity("gpt2", "abc123") == "hf:openai-community/gpt2@abc123"
    assert model_identity("tiny-gpt2") != model_identity("tiny-bert")


def test_one_row_per_model_cells_chosen_on_validation_and_blank_when_missing(store):
    # probe: gpt2 has two trials; the one with the better *validation* score has the worse test score
    chosen, other = store.sweep("probe", [
        ({"text.model": "gpt2", "audio.model": "a"}, {"val/acc@1": 0.6, "test/acc@1": 0.30}),
        ({"text.model": "openai-community/gpt2", "audio.model": "b"}, {"val/acc@1": 0.4, "test/acc@1": 0.50}),
    ])
    store.sweep("probe", [({"text.model": "tiny-bert", "audio.model": "a"}, {"val/acc@1": 0.2, "test/acc@1": 0.1})])
    # knowledge_text: per-category accuracy (a category name that needs escaping comes back as written)
    kt = store.sweep("knowledge_text", [({"model": "gpt2"}, {"acc": 0.5, join_key("acc", "Sound & Music"): 0.75,
                                                           join_key("acc", "Sound & Music", "pitch"): 0.9})])
    # audiobert: a cell per task
    store.sweep("audiobert", [
        ({"model": "tiny-bert", "task": "animal"}, {"dev/acc": 0.7, "test/acc": 0.61}),
        ({"model": "tiny-bert", "task": "pitch"}, {"dev/acc": 0.5, "test/acc": 0.52}),
    ])
    # lens: only text-LM runs count
    store.sweep("lens", [({"model": "gpt2", "lalm": "None"}, {"Animal/resolution_layer": 7.0}),
                         ({"model": "gpt2", "lalm": "/some/lalm"}, {"Animal/resolution_layer": 2.0})])

    rep = build(store.client, cfg(store))
    gpt2, tiny = "hf:openai-community/gpt2", model_identity("tiny-bert")
    assert set(rep.rows) == {gpt2, tiny}
    assert rep.names[gpt2] == {"gpt2", "openai-community/gpt2"}
    cell = rep.rows[gpt2]["probe/test/acc@1"]
    assert (cell.value, cell.run_id, cell.chosen_on, cell.candidates) == (0.30, chosen, "val/acc@1", 2)
    assert rep.value(gpt2, "knowledge_text/acc/Sound & Music") == 0.75
    assert rep.rows[gpt2]["knowledge_text/acc"].run_id == kt[0]
    assert "knowledge_text/acc/Sound & Music/pitch" not in rep.columns  # one level below acc only
    assert rep.value(tiny, "audiobert/animal/test/acc") == 0.61 and rep.value(tiny, "audiobert/pitch/test/acc") == 0.52
    assert rep.value(gpt2, "lens/Animal/resolution_layer") == 7.0
    # missing is missing: tiny-bert has no knowledge_text run, gpt2 no AudioBERT run
    assert rep.value(tiny, "knowledge_text/acc") is None and rep.value(gpt2, "audiobert/animal/test/acc") is None
    md = to_markdown(rep)
    tiny_line = next(line for line in md.splitlines() if line.startswith(f"| {tiny}"))
    assert "| 0 |" not in tiny_line and "nan" not in tiny_line.lower() and "|  |" in tiny_line


def test_no_dev_metric_takes_the_newest_run_and_says_so(store):
    old = store.sweep("knowledge_text", [({"model": "gpt2", "length_norm": "false"}, {"acc": 0.9})])
    new = store.sweep("knowledge_text", [({"model": "gpt2", "length_norm": "true"}, {"acc": 0.4})])
    rep = build(store.client, cfg(store))
    cell = rep.rows["hf:openai-community/gpt2"]["knowledge_text/acc"]
    assert cell.run_id == new[0] and cell.value == 0.4  # newest, not best
    assert old[0] in cell.note and any(old[0] in n for n in rep.notes)


def test_aliases_join_on_purpose_and_show_it(store, tmp_path):
    store.sweep("knowledge_text", [({"model": "Qwen/Qwen2.5-7B"}, {"acc": 0.4})])
    store.sweep("lalm_backbone", [({"lalm.llm": "Qwen/Qwen2.5-7B-Instruct"}, {"dev/acc": 0.5, "acc": 0.45})])
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("aliases:\n  qwen7b: [qwen2.5-7b, hf:Qwen/Qwen2.5-7B-Instruct]\n")
    rep = build(store.client, cfg(store, aliases=str(aliases)))
    assert set(rep.rows) == {"qwen7b"}
    assert rep.joined["qwen7b"] == ["hf:Qwen/Qwen2.5-7B", "hf:Qwen/Qwen2.5-7B-Instruct"]
    assert rep.value("qwen7b", "lalm_backbone/acc") == 0.45
    # without the alias table they are two models
    none = tmp_path / "none.yaml"
    none.write_text("aliases: {}\n")
    assert len(build(store.client, cfg(store, aliases=str(none))).rows) == 2


def test_preset_filter_and_unfinished_sweeps(store):
    store.sweep("knowledge_text", [({"model": "gpt2"}, {"acc": 0.4})], preset="demo")
    store.sweep("knowledge_text", [({"model": "tiny-gpt2"}, {"acc": 0.3})], preset="")
    store.sweep("knowledge_text", [({"model": "tiny-bert"}, {"acc": 0.3})], finished=False)
    assert set(build(store.client, cfg(store, preset="demo")).rows) == {"hf:openai-community/gpt2"}
    assert set(build(store.client, cfg(store)).rows) == {"hf:openai-community/gpt2", model_identity("tiny-gpt2")}
    with pytest.raises(ReportError, match="preset 'other'"):
        build(store.client, cfg(store, preset="other"))


def test_bad_alias_table_names_the_file_and_field(store, tmp_path):
    store.sweep("knowledge_text", [({"model": "gpt2"}, {"acc": 0.4})])
    bad = tmp_path / "aliases.yaml"
    bad.write_text("aliases:\n  a: gpt2\n")
    with pytest.raises(ReportError, match=r"aliases\.yaml: field 'aliases\.a'"):
        build(store.client, cfg(store, aliases=str(bad)))
    bad.write_text("aliases:\n  a: [gpt2]\n  b: [openai-community/gpt2]\n")
    with pytest.raises(ReportError, match="in both"):
        build(store.client, cfg(store, aliases=str(bad)))
    with pytest.raises(ValueError, match="unknown"):
        ModelsConfig(studies=["nope"])


def test_files_and_mlflow_run(store, tmp_path):
    chosen, _ = store.sweep("probe", [({"text.model": "gpt2"}, {"val/acc@1": 0.6, "test/acc@1": 0.3}),
                                      ({"text.model": "gpt2"}, {"val/acc@1": 0.1, "test/acc@1": 0.9})])
    store.sweep("knowledge_text", [({"model": "tiny-gpt2"}, {"acc": 0.25})])
    out = tmp_path / "out"
    rep = report(ModelsConfig(tracking_uri=store.uri, out_dir=str(out)))
    rows = list(csv.DictReader((out / "models.csv").open()))
    by_model = {r["model"]: r for r in rows}
    assert by_model["hf:openai-community/gpt2"]["probe/test/acc@1"] == "0.3"
    assert by_model["hf:openai-community/gpt2"]["knowledge_text/acc"] == ""  # blank, not 0
    sources = list(csv.DictReader((out / "sources.csv").open()))
    probe = next(s for s in sources if s["column"] == "probe/test/acc@1")
    assert probe["run_id"] == chosen and probe["chosen_on"] == "val/acc@1" and probe["candidates"] == "2"
    assert (out / "models.png").stat().st_size > 0
    exp = store.client.get_experiment_by_name("models")
    (logged,) = store.client.search_runs([exp.experiment_id])
    assert {a.path for a in store.client.list_artifacts(logged.info.run_id)} >= {"models.csv", "models.md", "sources.csv", "models.png"}
    assert chosen in logged.data.tags["ausweep.report.source_runs"]
    assert len(rep.rows) == 2
