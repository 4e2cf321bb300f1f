"""Ray Tune's searchers as ausweep needs them (imported only when a sweep uses one; see :mod:`.search`).

Module-level classes, so Tune can pickle them with its experiment state and ``--resume`` restores them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ray.tune.search.hyperopt import HyperOptSearch
from ray.tune.search.optuna import OptunaSearch

from ausweep.config import unflatten
from ausweep.sweep.search import BRANCH


class TolerantOptunaSearch(OptunaSearch):
    """OptunaSearch that skips intermediate results without a number for the metric (an epoch row
    before the first dev evaluation, a NaN) instead of failing the sweep; it learns from the final result."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not isinstance(self.metric, list):
            value = result.get(self.metric)
            if not isinstance(value, (int, float)) or math.isnan(value):
                return
        super().on_trial_result(trial_id, result)


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
