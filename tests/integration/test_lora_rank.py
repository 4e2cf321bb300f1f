"""`python -m ausweep.sweep lora_rank --preset demo` on a real local Ray session and MLflow store."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_demo_lora_rank_sweep_leaves_one_child_per_grid_point(tmp_path, monkeypatch, ray_session):
    from mlflow.tracking import MlflowClient

    from ausweep.sweep.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    rc = main(["lora_rank", "--preset", "demo", "--storage", str(tmp_path / "runs"), "max_items=24",
               "retrieval.extract.cache_dir=" + str(tmp_path / "cache" / "embeddings")])
    assert rc == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lora_rank")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) - len(children) == 1
    grid = {(c.data.params["task"], int(c.data.params["adapter.lora_r"])) for c in children}
    assert grid == {(t, r) for t in ("animal", "pitch") for r in (4, 16)}
    for c in children:
        m = c.data.metrics
        assert c.info.status == "FINISHED"
        assert m["lora_params"] == m["lora_params_formula"] > 0
        for key in ("dev/acc", "test/acc", "test/acc_text_only", "span/test/span_f1", "examples_per_s"):
            assert key in m and m[key] == m[key], key
        # dev/test rows that repeat a train row are left out by default, and counted
        task = c.data.params["task"]
        assert (m["dev/n_dropped"], m["test/n_dropped"]) == {"animal": (31, 60), "pitch": (25, 47)}[task]
        assert c.data.tags["ausweep.cross_split_duplicates"] == "drop" and c.data.tags["ausweep.n_dropped.test"] == str(int(m["test/n_dropped"]))
        assert len(client.get_metric_history(c.info.run_id, "train_loss")) == 2  # one point per epoch
        assert {"predictions.csv", "history.json"} <= {a.path for a in client.list_artifacts(c.info.run_id)}
    ranks = {int(c.data.params["adapter.lora_r"]): c.data.metrics["lora_params"] for c in children}
    assert ranks[16] == 4 * ranks[4]  # LoRA parameters grow linearly with the rank
