"""The Ray Train driver of a LALM training run: :func:`fit`.

Ray Train V2 (the default since Ray 2.5x; ``RAY_TRAIN_V2_ENABLED`` unset or 1) is assumed: a
Tune trial that calls :func:`fit` is the Train driver (the pattern of Ray's "Hyperparameter Tuning
with Ray Tune" guide); ``report_to_tune=True`` forwards every training report to Tune through
``ray.tune.integration.ray_train.TuneReportCallback``.

Resources: each worker takes ``cpus_per_worker`` CPUs (fractions allowed) and, with ``use_gpu``,
one GPU. A Tune trial that calls :func:`fit` holds its own CPU as well, so on a 2-CPU machine a
1-CPU trial with 2 workers needs ``cpus_per_worker: 0.5``. Ray Train starts the workers only when
all of them fit at once, and Tune does not count them in a trial's resources: limit
``max_concurrent_trials`` so the running trials leave room for their workers (on 2 CPUs: one trial),
or the trials hold every CPU while their workers wait (Ray's "Hyperparameter Tuning with Ray Tune"
guide says the same).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ausweep.config import to_dict
from ausweep.lalm.train.config import LALM_DIR, TRAIN_LOG, TrainConfig
from ausweep.lalm.train.ds_config import resolve_deepspeed_file
from ausweep.lalm.train.worker import train_loop_per_worker

if TYPE_CHECKING:
    from ausweep.lalm.model import LALMConfig


def fit(lalm_cfg: LALMConfig, train_cfg: TrainConfig, data_path: str | os.PathLike, storage_path: str | os.PathLike,
        name: str, resume: bool = True, report_to_tune: bool = False, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train a LALM with ``train_cfg.num_workers`` Ray Train workers running DeepSpeed.

    Works from a plain driver (Ray is started if it is not running) and from inside a Ray Tune
    function trainable, which then acts as the Train driver (``report_to_tune=True`` forwards every
    training report to Tune). Checkpoints go to ``storage_path/name`` (a local or shared
    filesystem path: the trained model folder must be readable by :func:`load_lalm`).

    ``resume``: a run folder that already exists is continued from its newest checkpoint (a finished
    run is not trained again); with ``resume=False`` an existing folder is an error.

    Returns the final metrics: ``loss``, ``lr``, ``step``, ``max_steps``, ``finished`` (1.0 once
    ``step`` reaches ``max_steps``; not called ``done``, which Tune reads as "stop this trial"),
    ``start_step`` (where this call resumed), ``tokens_per_s`` (mean over this call's steps),
    ``seconds``; and ``losses`` (per optimizer step, the whole run, earlier calls included),
    ``checkpoint`` (folder of the final checkpoint), ``model_dir`` (the trained LALM in it).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    data_path = Path(data_path).expanduser().resolve()
    storage = Path(storage_path).expanduser().resolve()
    run_dir = storage / name
    if run_dir.exists() and not resume:
        raise FileExistsError(f"{run_dir}: a training run of this name exists; pass resume=True to continue it "
                              "or choose another name")
    from ausweep.lalm.data import load_instructions

    load_instructions(data_path)  # a bad data file fails here, with its name, not in every worker
    resolve_deepspeed_file(train_cfg)
    resources = {"CPU": train_cfg.cpus_per_worker}
    if train_cfg.use_gpu:
        resources["GPU"] = 1
    cbs = list(callbacks or [])
    if report_to_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        cbs.append(TuneReportCallback())
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"lalm": to_dict(lalm_cfg), "train": to_dict(train_cfg), "data_path": str(data_path)},
        torch_config=TorchConfig(backend="nccl" if train_cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=train_cfg.num_workers, use_gpu=train_cfg.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=train_cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=train_cfg.keep_checkpoints),
                             callbacks=cbs or None),
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError(f"{run_dir}: training ended without a checkpoint")
    ckpt = Path(result.checkpoint.path)
    model_dir = ckpt / LALM_DIR
    if not (model_dir / "config.json").is_file():
        raise RuntimeError(f"{ckpt}: the final checkpoint has no trained LALM in {LALM_DIR}/")
    log = ckpt / TRAIN_LOG
    history = json.loads(log.read_text())["steps"] if log.is_file() else []
    out: dict[str, Any] = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}
    out["tokens_per_s"] = out.pop("run_tokens_per_s", 0.0)
    out.update(seconds=seconds, losses=[h["loss"] for h in history], checkpoint=str(ckpt), model_dir=str(model_dir))
    return out
