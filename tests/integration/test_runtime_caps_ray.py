"""ausweep.runtime.cluster_capacity against a real Ray started by this process (no autoscaler)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_a_ray_this_process_started_is_fixed_and_sized_by_its_nodes(ray_session, monkeypatch):
    from ausweep.runtime import cluster_capacity, max_concurrent_trials

    monkeypatch.delenv("AUSWEEP_MAX_CONCURRENT", raising=False)
    capacity = cluster_capacity()
    assert capacity is not None and capacity.fixed
    assert [g.max_count for g in capacity.groups] == [1]  # the session fixture's one node
    assert capacity.groups[0].resources["CPU"] == 2.0  # ray.init(num_cpus=2)
    gpus = capacity.groups[0].resources.get("GPU", 0.0)
    decision = max_concurrent_trials({"CPU": 1, "GPU": 0.5})
    if gpus:
        assert decision.max_concurrent == min(2, int(gpus / 0.5))
    else:  # a CPU box: a GPU trial can never start here, and the user is told so
        assert decision.max_concurrent is None and "wait forever" in decision.warning
