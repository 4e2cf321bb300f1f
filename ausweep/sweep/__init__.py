"""Stage: sweeps. ``python -m ausweep.sweep NAME`` runs ``sweeps/NAME.yaml`` on Ray Tune with MLflow.

:mod:`ausweep.sweep.spec` reads sweep files, :mod:`ausweep.study` says what a study provides,
:mod:`ausweep.sweep.runner` runs the Tuner, :mod:`ausweep.sweep.cli` is the command line.
"""
