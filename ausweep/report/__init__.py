"""Reports across sweeps: read finished sweeps back from MLflow and compare them.

Where it sits: after the sweeps. Each study logs one child run per trial; a report reads the
children of one or more sweeps' parent runs and relates them, e.g. text-only auditory knowledge
(``knowledge_text``) against audio-grounded accuracy (``lalm_backbone``) per LLM backbone.

    python -m ausweep.report correlation          # latest knowledge_text vs latest lalm_backbone sweep
    python -m ausweep.report models               # every LM's numbers from every study, one row each

* :mod:`.correlation`: Pearson and Spearman r between two sweeps' scores on the tasks both ask
  (the declared task map), one run and one recipe per backbone, chosen on dev data only.
* :mod:`.models`: one row per language model (its resolved identity, aliases joined on purpose), one
  column per study's number, each cell traceable to its MLflow run; chosen on dev/validation only.

Importing this package loads no data and touches no tracking store.
"""
