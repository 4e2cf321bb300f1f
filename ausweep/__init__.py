"""ausweep: what do language models know about sound? Distributed sweeps of the studies, tracked in MLflow.

Layout mirrors the pipeline:
    data/     sound sets (FSD50K, generated demo sounds) and audio reading
    models/   text LMs and audio encoders behind one registry each
    extract/  sharded, cached embedding extraction on Ray actors
    probe/    the contrastive linear probe (Ngo & Kim) and its baselines
    track/    MLflow: parent run per sweep, child run per trial, provenance
    sweep/    the `python -m ausweep.sweep NAME` entry point over Ray Tune
Nothing here does work at import time.
"""

__version__ = "0.1.0"
