"""Ray Tune's trial schedulers as ausweep needs them (imported only when a sweep uses one; see :mod:`.pbt`).

Module-level classes, so Tune can pickle them with its experiment state and ``--resume`` restores them.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from ray.tune.result import SHOULD_CHECKPOINT
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.schedulers.pb2 import PB2


class _AtCheckpoints:
    """Perturb a trial only at a result that carries a checkpoint, drawing from the scheduler's own RNG.

    A function trainable can hand over (to a trial that exploits it, or to itself when paused) only the
    checkpoint of its latest result. The sweep's trainable checkpoints every ``perturbation_interval``-th
    result; a result between those (or a study's final row of held-out scores, after its last epoch) is
    never a perturbation point, so a trial is never paused or cloned where it has no checkpoint.

    Ray's PBT and PB2 draw from the global ``random`` and NumPy RNGs; here they are swapped for the
    scheduler's own, seeded ones while it decides, so a sweep's ``tune.seed`` seeds its exploits and
    mutations.
    """

    def __init__(self, *args: Any, seed: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._rng_states = (random.Random(seed).getstate(), np.random.RandomState(seed).get_state())

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if not result.get(SHOULD_CHECKPOINT):
            return TrialScheduler.CONTINUE
        outer = (random.getstate(), np.random.get_state())
        random.setstate(self._rng_states[0])
        np.random.set_state(self._rng_states[1])
        try:
            return super().on_trial_result(tune_controller, trial, result)
        finally:
            self._rng_states = (random.getstate(), np.random.get_state())
            random.setstate(outer[0])
            np.random.set_state(outer[1])


class CheckpointedPBT(_AtCheckpoints, PopulationBasedTraining):
    """Ray Tune's PBT, perturbing only at checkpointed results, with its own RNG (see :class:`_AtCheckpoints`)."""


class CheckpointedPB2(_AtCheckpoints, PB2):
    """Ray Tune's PB2 (a Gaussian-process bandit picks the new values), perturbing only at checkpointed
    results, with its own RNG (see :class:`_AtCheckpoints`)."""
