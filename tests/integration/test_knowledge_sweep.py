"""The ``knowledge_text`` study through the real CLI: a real local Ray session, a real MLflow store, tiny LMs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration.test_sweep_cli import _mlflow

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TINY_CAUSAL = ["tiny-llama", "tiny-qwen2", "tiny-gpt2"]


def write_knowledge_sweep(path: Path, models=TINY_CAUSAL, max_items: int = 4) -> Path:
    """The shipped sweep's demo preset, with tiny random LMs and a few items per set."""
    shipped = yaml.safe_load((REPO / "sweeps" / "knowledge_text.yaml").read_text())
    demo = shipped["presets"]["demo"]
    spec = {
        "description": "tiny knowledge_text sweep",
        "study": "knowledge_text",
        "overrides": {**shipped["overrides"], **demo["overrides"], "max_items": max_items},
        "search_space": {"model": {"grid": list(models)}},
        "tune": shipped["tune"],
        "resources": demo["resources"],
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_knowledge_text_sweep_logs_accuracy_and_predictions(tmp_path, monkeypatch, ray_session, capsys):
    from ausweep.sweep.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    sweep = write_knowledge_sweep(tmp_path / "knowledge_tiny.yaml")
    assert main([str(sweep), "--storage", str(tmp_path / "runs")]) == 0
    assert "3 trial(s) done, 0 failed" in capsys.readouterr().out
    client, parents, children = _mlflow(uri, "knowledge_tiny")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.params["model"] for c in children) == sorted(TINY_CAUSAL)
    for c in children:
        assert c.info.status == "FINISHED"
        m = c.data.metrics
        assert m["n"] == 12 and m["n/phonology"] == 4 and m["n/music"] == 4 and m["n/sound"] == 4
        for key in ("acc", "acc/phonology", "acc/music", "acc/sound", "acc/sound/pitch", "chance/music"):
            assert 0.0 <= m[key] <= 1.0, key
        assert c.data.tags["ausweep.knowledge.method"] == "loglik"
        files = {a.path for a in client.list_artifacts(c.info.run_id)}
        assert "config.yaml" in files
        preds = {a.path for a in client.list_artifacts(c.info.run_id, "predictions")}
        assert preds == {f"predictions/{s}.csv" for s in ("phonology", "music", "auditorybench")}
        local = client.download_artifacts(c.info.run_id, "predictions/music.csv", str(tmp_path / c.info.run_id))
        lines = Path(local).read_text().splitlines()
        assert lines[0].startswith("id,category,subcategory,question") and len(lines) == 5
        assert m["acc/music"] == sum(line.split(",")[-3] == "1" for line in lines[1:]) / 4
    parent_files = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"results.csv", "accuracy.png"} <= parent_files
