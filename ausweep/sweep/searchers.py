"""Ray Tune's searchers as ausweep needs them (imported only when a sweep uses one; see :mod:`.search`).

Module-level classes, so Tune can pickle them with its experiment state and ``--resume`` restores them.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from ray.tune.search.hyperopt import HyperOptSearch
from ray.tune.search.optuna import OptunaSearch

from ausweep.config import unflatten
from ausweep.sweep.search import BRANCH

log = logging.getLogger(__name__)


class TolerantOptunaSearch(OptunaSearch):
    """OptunaSearch that learns from a trial's final result and does not fail a sweep over its other rows.

    Single objective: an intermediate row without a number for the metric (an epoch before the first
    dev evaluation, a NaN) is skipped. Several objectives (``metric`` a list, ``tune.metric`` first):
    Tune requires every row to hold the searcher's ``metric``, and an epoch row may lack a cost known
    only at the end (trainable parameters), so Tune is shown the first objective only; the final row
    must hold them all (else the Optuna trial is recorded as pruned).
    """

    @property
    def metric(self) -> str | None:
        return self._metric[0] if isinstance(self._metric, list) else self._metric

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self._metric, list):  # Optuna takes no intermediate values for several objectives
            return
        value = result.get(self._metric)
        if not isinstance(value, (int, float)) or math.isnan(value):
            return
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not isinstance(self._metric, list):
            super().on_trial_complete(trial_id, result, error)
            return
        if trial_id in self._completed_trials:
            return
        from optuna.trial import TrialState

        values = [(result or {}).get(m) for m in self._metric]
        complete = all(isinstance(v, (int, float)) and not math.isnan(v) for v in values)
        state = TrialState.COMPLETE if complete else TrialState.FAIL if error else TrialState.PRUNED
        try:
            self._ot_study.tell(self._ot_trials[trial_id], values if complete else None, state=state)
        except Exception as e:  # noqa: BLE001 -- as OptunaSearch: a value Optuna refuses must not stop the sweep
            log.warning("optuna refused the result of trial %s: %s", trial_id, e)
        self._completed_trials.add(trial_id)


class FlatHyperOptSearch(HyperOptSearch):
    """HyperOptSearch whose suggestions are nested ausweep configs: a conditional branch merged into the
    rest, dotted keys nested, numpy scalars plain Python values (the typed config checks ``int``)."""

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if config is None:
            return None
        flat: dict[str, Any] = {}
        for k, v in config.items():
            if k.startswith(BRANCH):
                flat.update(v)
            else:
                flat[k] = v
        return unflatten({k: v.item() if isinstance(v, np.generic) else v for k, v in flat.items()})
