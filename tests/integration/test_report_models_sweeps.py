"""`python -m ausweep.report models` over real sweeps: a tiny probe sweep and a tiny knowledge_text
sweep run through the CLI on a real local Ray session into one MLflow SQLite store."""

from __future__ import annotations

import csv

import pytest

from tests.integration.test_knowledge_sweep import write_knowledge_sweep
from tests.integration.test_sweep_cli import _mlflow
from tests.tiny import make_fsd50k, write_sweep

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_models_report_joins_studies_per_model(tmp_path, monkeypatch, ray_session, capsys):
    from ausweep.report.cli import main as report_main
    from ausweep.report.models import model_identity
    from ausweep.sweep.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    probe = write_sweep(tmp_path / "probe_tiny.yaml", make_fsd50k(tmp_path / "FSD50K"), tmp_path / "cache",
                        text_models=("tiny-bert", "tiny-gpt2"), epochs=10)
    assert main([str(probe), "--storage", str(tmp_path / "runs")]) == 0
    knowledge = write_knowledge_sweep(tmp_path / "knowledge_tiny.yaml", models=("tiny-gpt2", "tiny-llama"), max_items=2)
    assert main([str(knowledge), "--storage", str(tmp_path / "runs")]) == 0
    capsys.readouterr()

    out = tmp_path / "report"
    assert report_main(["models", f"out_dir={out}"]) == 0
    printed = capsys.readouterr().out
    rows = {r["model"]: r for r in csv.DictReader((out / "models.csv").open())}
    bert, gpt2, llama = (model_identity(n) for n in ("tiny-bert", "tiny-gpt2", "tiny-llama"))
    assert set(rows) == {bert, gpt2, llama} and all(m in printed for m in rows)

    _, _, probe_runs = _mlflow(uri, "probe_tiny")
    _, _, knowledge_runs = _mlflow(uri, "knowledge_tiny")
    for name, ident in (("tiny-bert", bert), ("tiny-gpt2", gpt2)):
        mine = [r for r in probe_runs if r.data.params["text.model"] == name]
        assert len(mine) == 2  # two learning rates: the cell is the one chosen on validation
        chosen = max(mine, key=lambda r: r.data.metrics["val/acc_at_1"])
        assert float(rows[ident]["probe/test/acc@1"]) == pytest.approx(chosen.data.metrics["test/acc_at_1"])
    for name, ident in (("tiny-gpt2", gpt2), ("tiny-llama", llama)):
        (run,) = [r for r in knowledge_runs if r.data.params["model"] == name]
        assert float(rows[ident]["knowledge_text/acc/music"]) == pytest.approx(run.data.metrics["acc/music"])
    # a study a model was not in is blank, never 0
    assert rows[bert]["knowledge_text/acc"] == "" and rows[llama]["probe/test/acc@1"] == ""
    # studies that were not run leave no columns and say so
    assert not any(c.startswith(("lens/", "lalm_backbone/")) for c in rows[bert])
    assert "lalm_backbone: no finished sweep" in (out / "notes.txt").read_text()
    _, parents, _ = _mlflow(uri, "models")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
