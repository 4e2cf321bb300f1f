"""The ``audiobert`` study (sweep ``lora_rank``): AudioBERT (Ok, Yoo & Lee, ICASSP 2025) as a library.

Where probing (stage 4) asks what a frozen language model already knows about sound, this stage
changes the model: it injects audio knowledge into a masked LM and measures what that buys on
AuditoryBench. The AudioBERT mechanism has three parts, one module each:

* :mod:`.span_detector` -- a BERT token classifier that finds the auditory span in a sentence
  ("the *woof* of a [MASK]"), trained on (sentence, span strings) pairs.
* :mod:`.retrieval` -- a text-to-audio top-k index: the span's CLAP text embedding retrieves the
  nearest audio clip embedding (:class:`ausweep.models.clap.ClapTextAudio` wraps CLAP's two towers).
* :mod:`.model` -- the model: the retrieved audio embedding, projected to the LM's hidden size,
  replaces the input embedding of the span's first token, and LoRA adapters on the attention are
  switched on only for sentences that have an auditory span.

:mod:`.train` is the shared training loop (token-level cross-entropy at labelled positions,
AdamW + cosine schedule, best-dev checkpoint) used for both the detector and AudioBERT;
:mod:`.config` holds their settings and the study's config (:class:`~.config.AudioBertExperiment`); :mod:`.study` wires them into a sweep. Everything here is plain PyTorch: no Ray, no MLflow.
"""

from __future__ import annotations

from ausweep.audiobert.config import AudioBertConfig, TrainConfig

__all__ = ["AudioBertConfig", "TrainConfig"]
