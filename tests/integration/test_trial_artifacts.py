"""A trial's files travel beside Tune, not through it: a real lens sweep (tiny-llama, real Ray and
MLflow) leaves no file content in Tune's result.json, progress.csv or experiment state, only the
path of the folder the trial wrote; the MLflow child run holds the same files, byte for byte.
Tune's TensorBoard logger gets numbers under names tensorboardX takes as they are."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _artifacts(client, run_id: str, dest: Path) -> dict[str, bytes]:
    return _files(Path(client.download_artifacts(run_id, "", str(dest))))


def test_trial_files_reach_mlflow_without_passing_through_tune(tmp_path, monkeypatch, ray_session, caplog):
    from mlflow.tracking import MlflowClient

    from ausweep.lens.plots import expected_size, png_size
    from ausweep.sweep.cli import main
    from ausweep.sweep.runner import TRIAL_ARTIFACTS
    from ausweep.track.tune_callback import ARTIFACT_DIR

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="tensorboardX")
    rc = main(["lens", "--preset", "demo", "--storage", str(tmp_path / "runs"), "model=tiny-llama",
               "prompt_style=reverse", "attributes=[Animal, Gender]", "max_items=4", "batch_size=4",
               "enhance.source=0", "question=none", "template={context} {probe}", "heatmap_tokens=4"])
    assert rc == 0
    (run_dir,) = (tmp_path / "runs").iterdir()

    # Tune's records: numbers and a path, no file content
    results = list(run_dir.glob("*/result.json"))
    progress = list(run_dir.glob("*/progress.csv"))
    states = list(run_dir.glob("experiment_state*.json"))
    assert len(results) == 1 and len(progress) == 1 and states
    for path in results + progress + states:
        text = path.read_bytes()
        assert PNG not in text and b"\\x89PNG" not in text and b"iVBORw0KGgo" not in text, path  # raw, repr, base64
        assert b"heatmap.png" not in text and b"curves.csv" not in text, path
    (line,) = results[0].read_text().splitlines()
    result = json.loads(line)
    assert "artifacts" not in result
    folder = Path(result[ARTIFACT_DIR])
    assert folder.parent.parent == run_dir / TRIAL_ARTIFACTS and folder.parent.name == result["trial_id"]

    # what the trial wrote is what the child run holds
    written = _files(folder)
    assert {"curves.csv", "heatmap.csv", "items.json", "config.yaml", "plots/heatmap.png"} <= set(written)
    assert written["plots/heatmap.png"].startswith(PNG) and png_size(written["plots/heatmap.png"]) == expected_size(2)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lens")
    (child,) = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED"
    assert _artifacts(client, child.info.run_id, tmp_path / "download") == written
    assert "n_layers" in child.data.metrics and not any(k.startswith("ausweep_artifact") for k in child.data.metrics)

    # tensorboardX had nothing to rename ("Summary name ... is illegal") and wrote its event file
    assert not [r for r in caplog.records if r.name.startswith("tensorboardX")]
    assert list(run_dir.glob("*/events.out.tfevents.*"))


def test_tensorboard_gets_numbers_under_names_it_accepts(tmp_path, ray_session, caplog):
    """Keys such as ``val/acc@1`` or a category with spaces reach tensorboardX already legal."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    from ausweep.track.tune_callback import ARTIFACT_DIR, TensorBoardLogger, tensorboard_name

    assert tensorboard_name("val/acc@1") == "val/acc_at_1"
    assert tensorboard_name("acc/Sound & Music") == "acc/Sound__x26__Music"
    caplog.set_level(logging.INFO, logger="tensorboardX")
    storage = StorageContext(storage_path=str(tmp_path / "tune"), experiment_dir_name="sweep")
    trial = Trial("ausweep_test", config={"lr": 0.1}, stub=True, storage=storage)
    trial.init_local_path()  # where the logger writes its event file
    tb = TensorBoardLogger()
    result = {"val/acc@1": 0.5, "acc/Sound & Music": 0.25, "series": {"loss": [1.0, 0.5]},
              "tags": {"a": "b"}, ARTIFACT_DIR: str(tmp_path), "training_iteration": 1, "trial_id": trial.trial_id}
    tb.log_trial_result(1, trial, result)
    assert set(tb._trial_result[trial]) == {"ray/tune/val/acc_at_1", "ray/tune/acc/Sound__x26__Music"}
    assert not [r for r in caplog.records if r.name.startswith("tensorboardX")]
    tb.log_trial_end(trial)
    assert list(Path(trial.local_path).glob("events.out.tfevents.*"))


def test_write_artifacts_refuses_bad_names_and_replaces_a_retried_result(tmp_path):
    from ausweep.track.artifacts import write_artifacts

    folder = tmp_path / "t1" / "result_00000"
    for bad in ({"../escape.csv": "x"}, {"/abs.csv": "x"}, {"a//b.csv": "x"}, {"ok.csv": "x", "n.json": {"a": 1}}):
        with pytest.raises(ValueError, match="artifact"):
            write_artifacts(folder, bad)
        assert not (tmp_path / "t1").exists() or not any((tmp_path / "t1").iterdir())  # nothing half written
    assert not (tmp_path / "escape.csv").exists()
    write_artifacts(folder, {"old.csv": "a,b\n", "plots/p.png": PNG + b"\x00"})
    assert _files(folder) == {"old.csv": b"a,b\n", "plots/p.png": PNG + b"\x00"}
    write_artifacts(folder, {"new.csv": "c\n"})  # the same result again (a retried trial): only its files
    assert _files(folder) == {"new.csv": b"c\n"} and sorted(p.name for p in folder.parent.iterdir()) == ["result_00000"]
