"""The LLM-backbone study end to end through the real CLIs: a ``lalm_backbone`` sweep (Ray Tune
trials, each the driver of a Ray Train + DeepSpeed ZeRO-3 run on CPU workers), a ``knowledge_text``
sweep over the same backbones, then ``python -m ausweep.report correlation`` between the two, all
on a real local Ray session and a real MLflow store. Tiny random models: the numbers mean nothing,
the plumbing is what is tested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.integration.test_knowledge_sweep import write_knowledge_sweep
from tests.integration.test_sweep_cli import _mlflow

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BACKBONES = ["tiny-llama", "tiny-qwen2", "tiny-gpt2"]


def write_lalm_sweep(path: Path, demo_root: Path) -> Path:
    """The shipped sweep's demo preset with a tiny Whisper, tiny LLMs and a tiny generated data set."""
    shipped = yaml.safe_load((REPO / "sweeps" / "lalm_backbone.yaml").read_text())
    demo = yaml.safe_load((REPO / "configs" / "lalm" / "demo.yaml").read_text())
    demo["lalm"].update(encoder="tiny-whisper", qformer_layers=1, num_queries=4, qformer_heads=2,
                        max_text_tokens=56, llm_mode="full")  # full: GPT-2 has no q_proj for LoRA
    demo["lalm"].pop("lora_targets", None)
    demo["train"].update(max_steps=3, checkpoint_every=0, log_every=1)
    # DeSTA self-distillation as shipped (one Ray actor per backbone), tiny backbones writing a few tokens
    demo["data"] = {"demo_root": str(demo_root), "demo_n_train": 10, "demo_n_eval": 7, "demo_n_dev": 7,
                    "distill": {**demo["data"]["distill"], "max_new_tokens": 4, "cache_dir": str(demo_root.parent / "desta")}}
    demo["eval_batch_size"] = 4
    spec = {
        "description": "tiny lalm_backbone sweep",
        "study": "lalm_backbone",
        "overrides": demo,
        "search_space": {"lalm.llm": {"grid": BACKBONES}},
        "tune": {**shipped["tune"], **shipped["presets"]["demo"]["tune"]},
        "resources": shipped["presets"]["demo"]["resources"],
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_backbone_sweeps_and_correlation_report(tmp_path, monkeypatch, ray_session, capsys):
    from ausweep.report.cli import main as report
    from ausweep.sweep.cli import main as sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    lalm = write_lalm_sweep(tmp_path / "lalm_tiny.yaml", tmp_path / "demo")
    assert sweep([str(lalm), "--storage", str(tmp_path / "runs")]) == 0
    assert "3 trial(s) done, 0 failed" in capsys.readouterr().out
    client, parents, children = _mlflow(uri, "lalm_tiny")
    assert len(parents) == 1 and sorted(c.data.params["lalm.llm"] for c in children) == sorted(BACKBONES)
    for c in children:
        assert c.info.status == "FINISHED"
        m = c.data.metrics
        assert m["n"] == 7 and m["n/sound"] + m["n/music"] + m["n/phonology"] == 7
        assert m["dev/n"] == 7 and 0.0 <= m["dev/acc"] <= 1.0  # the dev split, scored apart from eval
        assert m["acc"] == pytest.approx((m["acc/sound"] + m["acc/music"] + m["acc/phonology"]) / 3)  # macro
        assert 0.0 <= m["acc"] <= 1.0 and m["train/step"] == 3 and m["train/tokens_per_s"] > 0
        # a full fine-tune trains everything but the frozen encoder
        assert m["params/trainable"] == m["params/total"] - m["params/encoder"]
        assert len(client.get_metric_history(c.info.run_id, "train/loss_curve")) == 3
        assert {"predictions.csv", "predictions_dev.csv", "config.yaml"} <= {a.path for a in client.list_artifacts(c.info.run_id)}
        # the trained model the trial evaluated is in the sweep's run folder, under its config hash
        model_dir = Path(c.data.tags["ausweep.model_dir"])
        assert (model_dir / "config.json").is_file() and model_dir.is_relative_to(tmp_path / "runs")
        assert model_dir.parts[len((tmp_path / "runs").parts) + 1] == "lalm_train"
    assert {"results.csv", "accuracy_by_backbone.png"} <= {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    # each backbone trained on its own self-distilled responses, written once (before the trials)
    # to the instructions of the demo metadata, none of an evaluation family
    from ausweep.data.demo_mc import eval_family_of

    sets = sorted((tmp_path / "desta").glob("*/train.jsonl"))
    assert len(sets) == len(BACKBONES)
    models = {json.loads((p.parent / "spec.json").read_text())["model"]["name"] for p in sets}
    assert models == set(BACKBONES)
    for p in sets:
        rows = [json.loads(line) for line in p.read_text().splitlines()]
        assert len(rows) == 2 * 10 and all(r["response"] for r in rows)
        assert {eval_family_of(r["instruction"]) for r in rows} == {None}

    text = write_knowledge_sweep(tmp_path / "knowledge_tiny.yaml", models=BACKBONES)
    assert sweep([str(text), "--storage", str(tmp_path / "runs")]) == 0
    capsys.readouterr()

    out = tmp_path / "report"
    assert report(["correlation", "text_experiment=knowledge_tiny", "audio_experiment=lalm_tiny", f"out_dir={out}"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["category", "n", "pearson", "r", "spearman", "rho"]
    assert (out / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    (run,) = client.search_runs([client.get_experiment_by_name("correlation").experiment_id])
    assert run.data.params["audio_run"] == parents[0].info.run_id
    assert run.data.tags["ausweep.report.warning"] == "none"  # one recipe, nothing chosen
    # paired by task: the text sets' phonology and music questions against the same ones heard
    assert set(run.data.params["paired_tasks"].split(",")) == {"all", "all_micro", "rhyme", "syllables", "interval",
                                                              "chord_quality", "pitch_comparison"}
    assert run.data.metrics["n/all"] == 3 and run.data.metrics["n/rhyme"] == 3
    r = run.data.metrics.get("pearson_r/all")
    assert r is None or -1.0 <= r <= 1.0  # NaN (not logged) when one side is constant across backbones
    unpaired = (out / "unpaired.csv").read_text()
    assert "animal_sound" in unpaired and "tone_or_noise" in unpaired  # never compared with each other
    assert not any(k.endswith("/sound") for k in run.data.metrics)
