"""AudioLens: where do auditory attributes resolve inside a (audio-)language model?

Where it sits: an analysis stage after the models (:mod:`ausweep.models`, :mod:`ausweep.lalm`).
:mod:`ausweep.lens.data` reads attribute items (SAKURA-style audio folders, JSONL text items, the
generated demo sets) and the AudioLens prompts; :mod:`ausweep.lens.lens` projects every layer's
residual stream onto the vocabulary (logit lens, Patchscope) and holds the enhancement hook;
:mod:`ausweep.lens.knockout` blocks the last position's attention to the audio or attribute tokens
from a block on (AudioLens's third finding); :mod:`ausweep.lens.analysis` turns the lens of every item into per-item statistics, per-attribute
metrics, curves and artifacts; :mod:`ausweep.lens.summary` builds the sweep's tables (the
correlation across attributes, the enhancement chosen on half A and scored on half B);
:mod:`ausweep.lens.study` is the sweepable ``lens`` study (a short recipe over those);
:mod:`ausweep.lens.plots` draws it.

Importing this package loads no data, models or torch.
"""
