"""A trial Tune stops must stop training: on a real local Ray session, with actors reused."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_stopped_trials_leave_nothing_training_in_a_reused_actor(tmp_path, ray_session):
    import yaml
    from ray import tune

    # defined here, so Ray pickles it by value (workers cannot import this test module)
    def _trainable(config: dict) -> None:
        """The sweep runner's loop (study.trial's rows to tune.report), plus what the process holds:
        its id and the other threads running the training loop's code."""
        import os
        import sys
        import threading
        import traceback

        from ray import tune

        from ausweep.audiobert import study, train
        from ausweep.config import from_dict

        os.environ["AUSWEEP_CACHE"] = config.pop("_cache")
        cfg = from_dict(study.AudioBertExperiment, config, where="test")

        def training_threads() -> int:
            return sum(1 for ident, frame in sys._current_frames().items() if ident != threading.get_ident()
                       and any(f.filename == train.__file__ for f in traceback.extract_stack(frame)))

        for row in study.trial(cfg):
            tune.report({k: v for k, v in row.items() if isinstance(v, float)}
                        | {"pid": os.getpid(), "training_threads": training_threads()})

    d = yaml.safe_load((REPO / "configs" / "audiobert" / "demo.yaml").read_text())
    d.update(max_items=16, _cache=str(tmp_path / "cache"))
    d["train"]["epochs"] = 6
    d["retrieval"]["extract"]["cache_dir"] = str(tmp_path / "cache" / "embeddings")
    d["adapter"]["lora_r"] = tune.grid_search([4, 8])
    tuner = tune.Tuner(
        tune.with_resources(_trainable, {"cpu": 1}),
        param_space=d,
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), stop={"training_iteration": 1}, verbose=0),
    )
    results = list(tuner.fit())
    assert [r.error for r in results] == [None, None]
    rows = [r.metrics for r in results]
    assert [r["training_iteration"] for r in rows] == [1, 1] and [r["epoch"] for r in rows] == [0.0, 0.0]
    assert rows[0]["pid"] == rows[1]["pid"]  # the second trial ran in the first one's process
    # no epoch of the stopped first trial trains beside the second
    assert [r["training_threads"] for r in rows] == [0, 0]
