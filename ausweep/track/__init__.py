"""Stage: tracking. Every sweep is an MLflow parent run, every trial a child run with provenance.

:class:`SweepTracker` is the driver's only handle on MLflow; :class:`MLflowTrialLogger`
(in :mod:`ausweep.track.tune_callback`, imported lazily because it needs Ray) forwards Tune results.
"""

from ausweep.track.store import SweepTracker, package_versions, provenance, tracking_uri

__all__ = ["SweepTracker", "package_versions", "provenance", "tracking_uri"]
