"""The lens (ausweep.lens): projections equal the model's logits, resolution layers on known
curves, the enhancement hook, Patchscope, and the item loaders' errors. Tiny random models only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ausweep.lens import lens as L
from ausweep.lens.data import (
    LensDataError,
    demo_text_items,
    load_prompts,
    load_sakura,
    load_text_items,
    make_demo_sakura,
    save_text_items,
    write_sakura,
)
from ausweep.models.tiny import build_tiny_text

TINY = ["tiny-llama", "tiny-gpt2"]
SHORT = L.PromptSettings(question="none", template="{context} {probe}")  # tiny-gpt2 has 64 positions


@pytest.fixture(scope="module")
def models():
    out = {}
    for name in TINY:
        lm, tok = build_tiny_text(name, head=True)
        out[name] = L.LensModel(name, lm, tok)
    return out


def _batch(model, attribute="Animal", n=3, ps=SHORT, tail=4):
    prompts = load_prompts([attribute])
    items = demo_text_items([attribute], prompts.options)[:n]
    enc = L.encode_batch(model, items, prompts, ps, tail=tail)
    return prompts, items, enc


# ----------------------------------------------------------------------------- the projection


@pytest.mark.parametrize("name", TINY)
def test_last_layer_projection_equals_model_logits(models, name):
    m = models[name]
    _, _, enc = _batch(m)
    raw = {}
    handle = L.decoder_layers(m.lm)[-1].register_forward_hook(lambda mod, a, o: raw.setdefault("h", L._hidden_of(o)))
    with torch.no_grad():
        out = m.lm(**enc.kwargs, output_hidden_states=True)
    handle.remove()
    lens = L.project(m.lm, raw["h"])
    torch.testing.assert_close(lens, out.logits.float(), rtol=1e-5, atol=1e-5)
    # transformers' last hidden state is already normed: the unembedding alone gives the logits, which is
    # why the lens reads the last block's raw output through a hook instead
    torch.testing.assert_close(L.unembedding(m.lm)(out.hidden_states[-1]).float(), out.logits.float(), rtol=1e-5, atol=1e-5)
    assert not torch.equal(raw["h"], out.hidden_states[-1])


@pytest.mark.parametrize("name", TINY)
def test_lens_batch_last_layer_matches_final_logits_and_probabilities_are_consistent(models, name):
    m = models[name]
    prompts, _items, enc = _batch(m)
    ids = L.option_token_ids(m.tokenizer, prompts.options["Animal"])
    names, offsets = L.resolve_offsets(["final", "attribute"], enc, 4)
    out = L.lens_batch(m.lm, enc.kwargs, offsets, ids)
    n = m.n_layers
    assert out.probs.shape == (3, n + 1, len(names), len(ids))
    with torch.no_grad():
        logits = m.lm(**enc.kwargs).logits[:, -1].float()
    expected = torch.softmax(logits, -1)[:, ids].numpy()
    np.testing.assert_allclose(out.probs[:, n, 0], expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out.final, logits[:, ids].numpy(), rtol=1e-5, atol=1e-5)
    # "final" is the last tail column too
    np.testing.assert_allclose(out.probs[:, :, 0], out.probs[:, :, names.index("tail-1")])
    # ranks: rank 0 exactly where the option is the arg-max token
    top = logits.argmax(-1)
    for i in range(3):
        for k, t in enumerate(ids):
            assert (out.ranks[i, n, 0, k] == 0) == (top[i].item() == t)


def test_left_padding_gives_each_item_the_same_lens_as_alone(models):
    m = models["tiny-llama"]
    prompts = load_prompts(["Animal"])
    items = demo_text_items(["Animal"], prompts.options)
    items = [items[0], items[9]]  # "Sound: woof woof, a dog barking." and "Sound: woof woof." differ in length
    ids = L.option_token_ids(m.tokenizer, prompts.options["Animal"])
    enc = L.encode_batch(m, items, prompts, SHORT, tail=3)
    assert len(set(enc.lengths)) == 2
    _, off = L.resolve_offsets(["final", "attribute"], enc, 3)
    both = L.lens_batch(m.lm, enc.kwargs, off, ids)
    for i, it in enumerate(items):
        e1 = L.encode_batch(m, [it], prompts, SHORT, tail=3)
        _, o1 = L.resolve_offsets(["final", "attribute"], e1, 3)
        alone = L.lens_batch(m.lm, e1.kwargs, o1, ids)
        np.testing.assert_allclose(both.probs[i], alone.probs[0], rtol=1e-4, atol=1e-7)


def test_attribute_position_points_at_the_attribute_word(models):
    m = models["tiny-llama"]
    prompts = load_prompts(["Animal"])
    for style, suffix in (("default", True), ("reverse", True), ("reverse", False)):
        ps = L.PromptSettings(style=style, is_suffix=suffix, question="none", template="{context} {probe}")
        enc = L.encode_batch(m, demo_text_items(["Animal"])[:1], prompts, ps)
        ids = m.tokenizer(enc.texts[0])["input_ids"]
        upto = m.tokenizer.decode(ids[: len(ids) + enc.attribute_offsets[0] + 1])
        assert upto.endswith("animal"), (style, suffix, upto)


# ----------------------------------------------------------------------------- resolution layers


def _curves(top_label: list[bool], k: int = 3) -> np.ndarray:
    """(layers, k) probabilities where option 0 is top-1 exactly at the True layers."""
    probs = np.full((len(top_label), k), 0.1)
    for layer, top in enumerate(top_label):
        probs[layer, 0 if top else 1] = 0.6
    return probs


@pytest.mark.parametrize("tops,resolution,first", [
    ([False, False, True, True, True], 2, 2),             # stays top-1 from layer 2
    ([True] * 4, 0, 0),                                  # top-1 from the embeddings on
    ([False] * 5, None, None),                           # never
    ([False, True, False, False, True, True], 4, 1),      # flips back: resolves only at the last run
    ([False, True, True, False], None, 1),                # top-1 early, lost at the end: unresolved
])
def test_resolution_layer_known_answers(tops, resolution, first):
    probs = _curves(tops)
    assert L.resolution_layer(probs, 0) == resolution
    assert L.first_top1_layer(probs, 0) == first


def test_a_tie_is_not_top1():
    probs = np.array([[0.3, 0.3, 0.1], [0.5, 0.2, 0.1]])
    assert L.resolution_layer(probs, 0) == 1
    assert L.resolution_layer(probs, 1) is None


def test_options_below_float32s_smallest_value_keep_their_order():
    """Option probabilities below 1e-45 are exact zeros in float32 and tie; their log-probabilities
    still order them, and every top-1 is taken on those."""
    logits = torch.zeros(1, 1, 10)
    logits[0, 0, 3:6] = torch.tensor([-120.0, -110.0, -115.0])  # token 0..2 and 6..9 hold all the mass
    logp, _ = L._option_stats(logits, torch.tensor([3, 4, 5]))
    assert torch.all(logp.exp() == 0)  # the probabilities underflow: as probabilities the options tie
    assert L.top_option(logp.numpy())[0, 0] == 1
    np.testing.assert_allclose(L.among_options(logp.numpy())[0, 0], np.exp([-10.0, 0.0, -5.0]) / np.exp([-10.0, 0.0, -5.0]).sum(), rtol=1e-4)


def test_resolution_and_top_option_on_log_probabilities_below_1e_45():
    from ausweep.lens.analysis import AttributeLens, item_stats

    # one item, label = option 1, 4 layers; layers 0-2 far below 1e-45 (log 1e-45 = -103.6)
    logp = np.array([[-200.0, -190.0, -195.0],   # option 1 leads
                     [-180.0, -185.0, -170.0],   # option 2 leads
                     [-150.0, -140.0, -160.0],   # option 1 leads again
                     [-3.0, -0.2, -2.5]])        # and stays top-1 at the last layer
    assert np.all(np.exp(logp[:3].astype(np.float32)) == 0)
    lens = AttributeLens(options=["a", "b", "c"], option_ids=[1, 2, 3], logprobs=logp[None, :, None, :].astype(np.float32),
                         ranks=np.zeros((1, 4, 1, 3), int), final=logp[-1][None], names=["final"], tails=[[]], texts=[""])
    st = item_stats(lens, [1], "final")
    assert st.resolution == [2] and st.first_top1 == [0]
    assert st.top[0, :, 0].tolist() == [1, 2, 1, 1]
    assert st.p_rel[0, 0, 0] == pytest.approx(1 / (1 + np.exp(-10) + np.exp(-5)))
    # the same curves as float32 probabilities tie at every early layer: the old comparison
    # would have resolved at 3 and read option 0 as the top one
    p32 = np.exp(logp.astype(np.float32))
    assert L.resolution_layer(p32, 1) == 3 and L.top_option(p32)[0] == 0


def test_lens_batch_keeps_the_order_of_options_whose_probabilities_underflow(models):
    import copy

    m = models["tiny-llama"]
    lm = copy.deepcopy(m.lm)
    with torch.no_grad():
        L.final_norm(lm).weight.mul_(2000.0)  # every layer's logits x2000: the options fall far below 1e-45
    prompts, _, enc = _batch(m)
    ids = L.option_token_ids(m.tokenizer, prompts.options["Animal"])
    _, off = L.resolve_offsets(["final"], enc, 0)
    out = L.lens_batch(lm, enc.kwargs, off, ids, check=False)
    assert np.isfinite(out.logprobs).all() and (out.logprobs < np.log(1e-45)).any()
    assert (np.exp(out.logprobs.astype(np.float32)) == 0).any()
    with torch.no_grad():
        hs = lm(**enc.kwargs, output_hidden_states=True).hidden_states
        for layer in range(len(hs) - 1):  # the last entry is already normed; the lens reads it by a hook
            expected = L.project(lm, hs[layer][:, -1])[:, ids].numpy()
            np.testing.assert_array_equal(L.top_option(out.logprobs[:, layer, 0]), expected.argmax(-1))


# ----------------------------------------------------------------------------- hooks


@pytest.mark.parametrize("name", TINY)
def test_enhancement_with_zero_coefficient_is_the_identity_and_hooks_are_removed(models, name):
    m = models[name]
    _, _, enc = _batch(m)
    _, off = L.resolve_offsets(["final"], enc, 0)
    pos = off + enc.kwargs["attention_mask"].shape[1]
    with torch.no_grad():
        base = m.lm(**enc.kwargs).logits
    blocks = L.decoder_layers(m.lm)
    n_hooks = [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in blocks]
    for mode in ("add", "mix"):
        with torch.no_grad(), L.enhancement(m.lm, 0, 2, 0.0, mode, pos):
            same = m.lm(**enc.kwargs).logits
        assert torch.equal(same, base)
        with torch.no_grad(), L.enhancement(m.lm, 1, 2, 0.7, mode, pos):
            changed = m.lm(**enc.kwargs).logits
        # only the probed (last) position changes: the hook is at the last block, after attention mixes positions
        assert not torch.allclose(changed[:, -1], base[:, -1])
        torch.testing.assert_close(changed[:, :-1], base[:, :-1])
    assert [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in blocks] == n_hooks
    with torch.no_grad():
        assert torch.equal(m.lm(**enc.kwargs).logits, base)


@pytest.mark.parametrize("name", TINY)
def test_enhancement_known_answers(models, name):
    m = models[name]
    _, _, enc = _batch(m)
    pos = torch.full((3, 1), enc.kwargs["attention_mask"].shape[1] - 1)
    with torch.no_grad():
        hs = m.lm(**enc.kwargs, output_hidden_states=True).hidden_states
        # mix with coefficient 1 into the last block's output: the position reads layer 1's state
        with L.enhancement(m.lm, 1, 2, 1.0, "mix", pos):
            mixed = m.lm(**enc.kwargs).logits[:, -1]
        torch.testing.assert_close(mixed, L.project(m.lm, hs[1][:, -1]), rtol=1e-5, atol=1e-5)
        # source 0 is the embedding output (read by a pre-hook on the first block)
        with L.enhancement(m.lm, 0, 2, 1.0, "mix", pos):
            from_embed = m.lm(**enc.kwargs).logits[:, -1]
        torch.testing.assert_close(from_embed, L.project(m.lm, hs[0][:, -1]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="source < target"), L.enhancement(m.lm, 2, 2, 0.5, "add", pos):
        pass


@pytest.mark.parametrize("name", TINY)
def test_patchscope_at_the_last_layer_equals_the_plain_lens(models, name):
    m = models[name]
    prompts, _, enc = _batch(m)
    ids = L.option_token_ids(m.tokenizer, prompts.options["Animal"])
    _, off = L.resolve_offsets(["final", "attribute"], enc, 2)
    plain = L.lens_batch(m.lm, enc.kwargs, off, ids, "logit")
    out_patch = L.lens_batch(m.lm, enc.kwargs, off, ids, "patchscope", "output")
    in_patch = L.lens_batch(m.lm, enc.kwargs, off, ids, "patchscope", "input")
    n = m.n_layers
    # output patching reads through the same norm + unembedding: every layer agrees
    np.testing.assert_allclose(out_patch.probs, plain.probs, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out_patch.probs[:, n], plain.probs[:, n], rtol=1e-4, atol=1e-7)
    # input patching at l = L-1 patches the last block's own input: the model's logits
    np.testing.assert_allclose(in_patch.probs[:, n - 1], plain.probs[:, n], rtol=1e-4, atol=1e-7)
    # ...while earlier layers go through one more block than the plain lens
    assert not np.allclose(in_patch.probs[:, 0], plain.probs[:, 0])


def test_unsupported_architecture_is_named():
    with pytest.raises(L.UnsupportedModelError, match="no final norm"):
        L.final_norm(torch.nn.Linear(2, 2))
    with pytest.raises(L.UnsupportedModelError, match="no decoder blocks"):
        L.decoder_layers(torch.nn.Linear(2, 2))


def test_option_first_subtokens_and_collisions(models):
    tok = models["tiny-llama"].tokenizer
    # AudioLens's spelling: tokenizer.tokenize(option), no leading space (byte-level BPE: "d" of "d", "og")
    assert L.option_token_ids(tok, ["dog", "cat"]) == [tok.convert_tokens_to_ids(tok.tokenize(o))[0] for o in ("dog", "cat")]
    assert tok.convert_ids_to_tokens(L.option_token_ids(tok, ["dog"])) == ["d"]
    # the spelling a model emits after " is"
    ids = L.option_token_ids(tok, ["dog", "cat"], "space")
    assert ids == [tok(" dog", add_special_tokens=False)["input_ids"][0], tok(" cat", add_special_tokens=False)["input_ids"][0]]
    assert tok.convert_ids_to_tokens(ids[:1]) == ["Ġdog"]
    assert L.collisions(["a", "b", "c"], [1, 2, 1]) == [["a", "c"]]


CHATML = ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_chat_prompt_puts_the_question_in_the_user_turn_and_opens_the_assistant_turn_with_the_probe(models):
    import copy

    m = models["tiny-llama"]
    tok = copy.deepcopy(m.tokenizer)
    tok.chat_template = CHATML
    prompts = load_prompts(["Animal"])
    item = demo_text_items(["Animal"])[0]
    ps = L.PromptSettings(chat=True)
    text, start = L.prompt_text(item, prompts, ps, tok, audio=False)
    probe = prompts.probe_text("Animal", "default", True)
    q = prompts.question("Animal", "plain")
    # AudioLens's rendering: [user, assistant: probe] without a generation prompt, the end of turn dropped
    assert text == f"<|im_start|>user\n{item.context}\n{q}<|im_end|>\n<|im_start|>assistant\n{probe}"
    assert text[start:] == probe
    assert tok(text)["input_ids"].count(tok.bos_token_id) == 1  # the template's BOS is not doubled
    # a LALM's user turn holds the question only (its audio comes before the text)
    text, _ = L.prompt_text(item, prompts, ps, tok, audio=True)
    assert text == f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{probe}"
    with pytest.raises(ValueError, match="no chat template"):
        L.prompt_text(item, prompts, ps, m.tokenizer, audio=False)


# ----------------------------------------------------------------------------- prompts and items


def test_prompts_defaults_and_overrides():
    p = load_prompts(["Animal", "Emotion"])
    assert p.options["Animal"][0] == "dog" and p.probe_text("Animal", "default", True) == "The sound file's animal is"
    assert p.question("Emotion", "with_options").endswith("angry, disgust, fear, happy, sad.")
    q = load_prompts(["Pitch"], options={"Pitch": ["high", "low"]},
                     probing={"default": {"Pitch": "The sound's pitch"}, "reverse": {"Pitch": "The pitch of the sound"}},
                     questions={"Pitch": "Is the sound high or low?"})
    assert q.question("Pitch", "with_options") == "Is the sound high or low? Possible options: high, low."
    with pytest.raises(LensDataError, match="options.Pitch"):
        load_prompts(["Pitch"])
    with pytest.raises(LensDataError, match="attribute_words.Animal"):
        load_prompts(["Animal"], words={"Animal": "creature"})


def test_text_items_round_trip_and_errors(tmp_path):
    items = demo_text_items(["Animal", "Gender"], max_items=4)
    measured = [it for it in items if not it.control]
    assert len(measured) == 8 and {it.label for it in measured if it.attribute == "Animal"} == {"dog", "cat", "pig", "cow"}
    assert sum(it.control for it in items) == 8  # and up to 4 controls per attribute
    path = save_text_items(items, tmp_path / "items.jsonl")
    opts = load_prompts(["Animal", "Gender"]).options
    assert load_text_items(path, ["Animal", "Gender"], opts) == items
    assert load_text_items(path, ["Animal", "Gender"], opts, controls=False) == measured
    assert [it.control for it in load_text_items(path, ["Gender"], opts, max_items=1)] == [False, True]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"context": "moo", "attribute": "Animal", "label": "unicorn"}) + "\n")
    with pytest.raises(LensDataError, match=r"bad.jsonl \(line 1\): field 'label': unknown label 'unicorn'"):
        load_text_items(bad, ["Animal"], opts)
    bad.write_text(json.dumps({"attribute": "Animal", "label": "dog"}) + "\n")
    with pytest.raises(LensDataError, match="field 'context'"):
        load_text_items(bad, ["Animal"], opts)
    bad.write_text(json.dumps({"context": "moo", "attribute": "Animal", "label": "cow", "control": "yes"}) + "\n")
    with pytest.raises(LensDataError, match=r"line 1\): field 'control': must be true or false"):
        load_text_items(bad, ["Animal"], opts)


# words that give a demo item's answer away: the options themselves and, for Gender, words that name it
_NAMING = {"Gender": {"man", "woman", "boy", "girl", "men", "women", "he", "she", "his", "her", "father", "mother", "dad", "mom"}}


def test_demo_measures_hearing_and_keeps_copying_as_a_labelled_control():
    import re

    prompts = load_prompts(["Animal", "Emotion", "Language", "Gender"])
    items = demo_text_items(list(prompts.options), prompts.options)
    for it in items:
        words = set(re.findall(r"[\w-]+", it.context.lower()))
        naming = {o.lower() for o in prompts.options[it.attribute]} | _NAMING.get(it.attribute, set())
        if it.control:
            assert words & ({it.label.lower()} | _NAMING.get(it.attribute, set())), it
        else:  # a measured item names no option of its attribute, right or wrong
            assert not words & naming, (it, words & naming)
    counts = {a: (sum(not it.control for it in items if it.attribute == a), sum(it.control for it in items if it.attribute == a))
              for a in prompts.options}
    assert counts == {"Animal": (18, 9), "Emotion": (10, 5), "Language": (16, 8), "Gender": (6, 6)}
    assert not any(it.control for it in demo_text_items(["Animal"], controls=False))


def test_sakura_loader_good_folder(tmp_path):
    root = make_demo_sakura(tmp_path / "sakura", per_label=1, labels=["dog", "cat"])
    opts = load_prompts(["Animal"]).options
    items = load_sakura(root, ["Animal"], opts)
    assert [(it.id, it.label) for it in items] == [("Animal/dog_0.wav", "dog"), ("Animal/cat_0.wav", "cat")]
    assert all(it.audio and it.audio.endswith(".wav") for it in items)
    with_text = load_sakura(root, ["Animal"], opts, context_template="A recording; the label column says {attribute_label}.")
    assert with_text[0].context == "A recording; the label column says dog."


def test_sakura_loader_errors_name_file_and_field(tmp_path):
    opts = load_prompts(["Animal", "Gender"]).options
    root = make_demo_sakura(tmp_path / "s", per_label=1, labels=["dog"])
    with pytest.raises(LensDataError, match=r"Gender/metadata.csv: file not found"):
        load_sakura(root, ["Animal", "Gender"], opts)
    write_sakura([("Animal", "dog_0.wav", "dog"), ("Animal", "missing.wav", "cat")], root)
    with pytest.raises(LensDataError, match=r"metadata.csv \(line 3\): field 'file_name': audio file .*missing.wav not found"):
        load_sakura(root, ["Animal"], opts)
    write_sakura([("Animal", "dog_0.wav", "Dog"), ("Animal", "dog_0.wav", "dragon")], root)
    with pytest.raises(LensDataError, match=r"metadata.csv \(line 3\): field 'attribute_label': unknown label 'dragon'"):
        load_sakura(root, ["Animal"], opts)
    (root / "Animal" / "metadata.csv").write_text("name,label\nx.wav,dog\n")
    with pytest.raises(LensDataError, match="field 'file_name': missing column"):
        load_sakura(root, ["Animal"], opts)


# ----------------------------------------------------------------------------- the study


def test_run_on_a_tiny_model_reports_consistent_metrics():
    from ausweep.config import from_dict
    from ausweep.lens.plots import expected_size, png_size
    from ausweep.lens.study import LensConfig, analyze

    cfg = from_dict(LensConfig, {"model": "tiny-llama", "attributes": ["Animal", "Gender"], "max_items": 4, "device": "cpu",
                                 "question": "none", "template": "{context} {probe}", "heatmap_tokens": 3,
                                 "enhance": {"source": 0, "coef": 0.0}})
    out = analyze(cfg)
    m = out.metrics
    assert m["n_layers"] == 2 and m["n_items"] == 8
    assert m["enhance/source_layer"] == 0 and m["enhance/target_layer"] == 1  # AudioLens numbering: 0..L-1
    for a, k in (("Animal", 9), ("Gender", 2)):
        rows = [r for r in out.items if r["attribute"] == a and not r["control"]]
        assert m[f"{a}/acc"] == pytest.approx(np.mean([r["correct"] for r in rows]))
        assert m[f"{a}/n_options"] == k and m[f"{a}/acc_cc"] == pytest.approx((m[f"{a}/acc"] - 1 / k) / (1 - 1 / k))
        assert m[f"{a}/n_A"] + m[f"{a}/n_B"] == 4
        for h in "AB":
            in_h = [r for r in rows if r["half"] == h]
            assert m[f"{a}/acc_{h}"] == pytest.approx(np.mean([r["correct"] for r in in_h]))
            assert m[f"{a}/enhance/acc_{h}"] == m[f"{a}/acc_{h}"]  # coefficient 0
        for r in rows:
            assert len(r["positions"]["final"]["p_label"]) == 2  # layers 0, 1: the outputs of blocks 1, 2
            if r["resolution_layer"] is not None:
                assert r["positions"]["final"]["top_option"][-1] == r["label"]
    assert m["enhance/delta_A"] == 0.0 and m["enhance/delta_B"] == 0.0
    assert "acc_enhanced" not in m and "corr_acc_resolution" not in m  # no number over both halves; no 1-attribute r
    assert png_size(out.files["plots/heatmap.png"]) == expected_size(2)
    assert {r["layer"] for r in out.heatmap} == {0, 1} and len(out.heatmap) == 2 * 3 * 2
    assert out.series["p_label/Animal/all"] and len(out.series["p_label/Animal/all"]) == 2


def test_audiolens_layer_numbering_is_the_hidden_states_without_the_embeddings():
    from ausweep.config import ConfigError, from_dict
    from ausweep.lens.study import LensConfig, analyze

    base = {"model": "tiny-llama", "attributes": ["Gender"], "max_items": 3, "device": "cpu", "question": "none",
            "template": "{context} {probe}", "heatmap_tokens": 2}
    ours = analyze(from_dict(LensConfig, base))
    hs = analyze(from_dict(LensConfig, {**base, "layers": "hidden_states", "enhance": {"source": 1, "coef": 0.0}}))
    for a, b in zip(ours.items, hs.items):
        assert a["positions"]["final"]["p_label"] == b["positions"]["final"]["p_label"][1:]
        assert a["resolution_layer"] == (None if b["resolution_layer"] is None else max(b["resolution_layer"], 1) - 1)
    assert hs.metrics["enhance/source_layer"] == 1
    # enhance.source=1 is block 1's output under hidden_states, the last block under audiolens: not before the target
    with pytest.raises(ConfigError, match="must come before"):
        analyze(from_dict(LensConfig, {**base, "enhance": {"source": 1}}))


def test_control_items_are_reported_apart_from_the_measured_ones():
    from ausweep.config import from_dict
    from ausweep.lens.study import LensConfig, analyze

    cfg = from_dict(LensConfig, {"model": "tiny-llama", "attributes": ["Gender"], "max_items": 3, "device": "cpu",
                                 "question": "none", "template": "{context} {probe}", "heatmap_tokens": 2,
                                 "enhance": {"source": 0, "coef": 0.5}})
    out = analyze(cfg)
    m = out.metrics
    measured = [r for r in out.items if not r["control"]]
    controls = [r for r in out.items if r["control"]]
    assert len(measured) == 3 and len(controls) == 3
    assert m["Gender/n"] == 3 and m["n_items"] == 3 and m["Gender/control/n"] == 3 and m["control/n"] == 3
    assert m["Gender/acc"] == pytest.approx(np.mean([r["correct"] for r in measured]))
    assert m["Gender/control/acc"] == pytest.approx(np.mean([r["correct"] for r in controls]))
    assert all("half" in r for r in measured) and not any("half" in r for r in controls)
    assert {r["n"] for r in out.curves if r["group"] == "all"} == {3}  # curves of the measured items only


def test_chance_corrected_accuracy_known_answers():
    from ausweep.lens.analysis import chance_corrected

    assert chance_corrected(0.5, 2) == 0.0 and chance_corrected(1 / 9, 9) == pytest.approx(0.0)
    assert chance_corrected(1.0, 9) == 1.0 and chance_corrected(0.75, 2) == 0.5
    assert chance_corrected(0.0, 2) == -1.0  # below chance is negative


def test_halves_are_fixed_stratified_and_seeded():
    from ausweep.lens.analysis import split_halves

    items = demo_text_items(["Animal", "Gender"])
    h = split_halves(items, 0)
    assert set(h) == {"A", "B"}
    assert abs((h == "A").sum() - (h == "B").sum()) <= 1
    for a in ("Animal", "Gender"):  # every label is in both halves when it has 2+ items
        for label in {it.label for it in items if it.attribute == a}:
            got = {h[i] for i, it in enumerate(items) if it.label == label}
            if sum(it.label == label for it in items) >= 2:
                assert got == {"A", "B"}
    # fixed: the same items in another order get the same halves; another seed gives others
    rev = split_halves(items[::-1], 0)[::-1]
    assert rev.tolist() == h.tolist()
    assert split_halves(items, 1).tolist() != h.tolist()


def _enh_row(source, coef, acc_a, acc_b, base_a=0.5, base_b=0.5, attribute="Animal", model="m"):
    return {"config": {"model": model, "attributes": [attribute], "enhance": {"source": source, "coef": coef}},
            "metrics": {f"{attribute}/acc": 0.5, f"{attribute}/n_options": 9.0, f"{attribute}/n_A": 10.0, f"{attribute}/n_B": 10.0,
                        f"{attribute}/acc_A": base_a, f"{attribute}/acc_B": base_b,
                        f"{attribute}/enhance/acc_A": acc_a, f"{attribute}/enhance/acc_B": acc_b,
                        f"{attribute}/enhance/delta_B": acc_b - base_b, "enhance/source_layer": float(source)}}


def test_enhancement_is_chosen_on_half_a_and_scored_on_half_b():
    from ausweep.lens.summary import choose_enhancement

    rows = [_enh_row(3, 0.1, acc_a=0.6, acc_b=0.9),    # best on B, not on A
            _enh_row(5, 0.3, acc_a=0.8, acc_b=0.55),   # best on A: chosen
            _enh_row(7, 0.5, acc_a=0.8, acc_b=0.4),    # ties on A with a larger coefficient
            _enh_row(3, 0.1, acc_a=0.2, acc_b=1.0, model="other"),  # another setting: chosen alone
            {"config": {"model": "m", "attributes": ["Animal"]}, "metrics": {"Animal/acc": 0.5}}]  # no enhancement
    t = choose_enhancement(rows)
    assert len(t) == 2
    r = t[t["model"] == "m"].iloc[0]
    assert r["candidates"] == 3 and r["chosen_on_A.source"] == 5 and r["chosen_on_A.coef"] == 0.3
    assert r["chosen_on_A.enhanced_acc"] == 0.8 and r["scored_on_B.enhanced_acc"] == 0.55
    assert r["scored_on_B.delta"] == pytest.approx(0.05)
    assert t[t["model"] == "other"].iloc[0]["candidates"] == 1


def test_summary_logs_the_correlation_across_attributes_as_a_metric(tmp_path):
    from ausweep.lens.study import summarize

    def row(attr, k, acc, rel):
        return {"config": {"model": "m", "attributes": [attr]},
                "metrics": {f"{attr}/acc": acc, f"{attr}/n_options": k, f"{attr}/acc_cc": (acc - 1 / k) / (1 - 1 / k),
                            f"{attr}/resolution_layer_rel": rel, "n_layers": 30}}

    rows = [row("Gender", 2, 0.9, 0.4), row("Animal", 9, 0.5, 0.6), row("Language", 8, 0.7, 0.5), row("Emotion", 5, 0.3, 0.9)]
    rows[0]["metrics"].update({"control/acc": 1.0, "control/n": 3, "acc": 0.9})  # trial-level numbers are no attribute
    files = {p.name: p for p in summarize(rows, tmp_path)}
    assert {"results.csv", "metrics.json", "accuracy_vs_resolution.png"} <= set(files)
    m = json.loads(files["metrics.json"].read_text())
    acc, rel = np.array([0.9, 0.5, 0.7, 0.3]), np.array([0.4, 0.6, 0.5, 0.9])
    assert m["corr_acc_resolution"] == pytest.approx(np.corrcoef(acc, rel)[0, 1]) and m["corr_n"] == 4
    cc = (acc - 1 / np.array([2, 9, 8, 5])) / (1 - 1 / np.array([2, 9, 8, 5]))
    assert m["corr_acc_cc_resolution"] == pytest.approx(np.corrcoef(cc, rel)[0, 1])
    import pandas as pd

    t = pd.read_csv(files["results.csv"])
    assert len(t) == 4
    assert t.set_index("attribute")["n_options"].to_dict() == {"Gender": 2, "Animal": 9, "Language": 8, "Emotion": 5}


def test_config_validation():
    from ausweep.config import ConfigError, from_dict
    from ausweep.lens.study import LensConfig

    with pytest.raises(ConfigError, match="negative"):
        from_dict(LensConfig, {"positions": ["final", 3]})
    with pytest.raises(ConfigError, match="resolve_at 'auto' needs 'attribute'"):
        from_dict(LensConfig, {"prompt_style": "reverse", "positions": ["final"]})
    assert from_dict(LensConfig, {"positions": ["final", -3], "resolve_at": -3}).resolve_position == "-3"
