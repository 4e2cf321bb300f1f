"""Deprecated alias: the AudioBERT study moved to :mod:`ausweep.audiobert` (one name per study).

``python -m ausweep.adapt ...`` still runs (see :mod:`ausweep.adapt.__main__`), with a one-line
notice; import from :mod:`ausweep.audiobert` in new code.
"""
