"""The attention knockout (ausweep.lens.knockout): an empty knockout is the identity in eager and
SDPA attention, and a model built by hand to answer by copying from the audio tokens loses its
answer exactly when, and from the block where, its attention to the audio is knocked out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ausweep.lens import knockout as K
from ausweep.lens import lens as L
from ausweep.lens.data import demo_text_items, load_prompts
from ausweep.models.tiny import build_tiny_text

IMPLS = ["eager", "sdpa"]
SHORT = L.PromptSettings(question="none", template="{context} {probe}")


def _tiny_llama(impl):
    lm, tok = build_tiny_text("tiny-llama", head=True)
    lm.set_attn_implementation(impl)
    assert K.attention_implementation(lm) == impl
    return L.LensModel("tiny-llama", lm, tok)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n_items", [1, 3])  # 1: no padding, SDPA gets no mask (is_causal); 3: padded rows
def test_knocking_out_nothing_in_every_block_changes_no_logit(impl, n_items):
    """No audio: the knocked-out key set is empty, and hooks on every block leave the logits bit-identical
    (the SDPA 'None = causal' mask spelled out, the eager float mask rewritten)."""
    m = _tiny_llama(impl)
    prompts = load_prompts(["Animal"])
    items = [demo_text_items(["Animal"], prompts.options)[i] for i in (0, 9, 3)][:n_items]
    enc = L.encode_batch(m, items, prompts, SHORT)
    assert enc.audio_mask is None
    no_keys = torch.zeros_like(enc.kwargs["attention_mask"], dtype=torch.bool)
    with torch.no_grad():
        base = m.lm(**enc.kwargs).logits
        with K.knockout(m.lm, K.final_query_block(no_keys), 0):
            knocked = m.lm(**enc.kwargs).logits
    assert torch.equal(base, knocked)
    ids = L.option_token_ids(m.tokenizer, prompts.options["Animal"])
    curve = K.knockout_curve(m.lm, enc.kwargs, no_keys, ids)
    assert curve.shape == (n_items, m.n_layers + 1, len(ids))
    np.testing.assert_array_equal(curve, curve[:, -1:].repeat(m.n_layers + 1, 1))


@pytest.mark.parametrize("impl", IMPLS)
def test_knocking_out_the_attribute_word_changes_the_answer_logits(impl):
    m = _tiny_llama(impl)
    prompts = load_prompts(["Animal"])
    enc = L.encode_batch(m, demo_text_items(["Animal"], prompts.options)[:2], prompts, SHORT)
    keys = K.target_keys(enc, "attribute")
    # the word "animal": its first through last sub-token, ending one before " is"
    assert keys.sum(-1).tolist() == [-s + o + 1 for s, o in zip(enc.attribute_starts, enc.attribute_offsets, strict=True)]
    assert keys[:, -2].all() and not keys[:, -1].any()
    ids = L.option_token_ids(m.tokenizer, prompts.options["Animal"])
    curve = K.knockout_curve(m.lm, enc.kwargs, keys, ids)
    assert not np.allclose(curve[:, 0], curve[:, -1])  # knocked from block 0: the logits move
    with torch.no_grad():
        full = torch.log_softmax(m.lm(**enc.kwargs).logits[:, -1].float(), -1)[:, ids].numpy()
    np.testing.assert_allclose(curve[:, -1], full, rtol=1e-6, atol=1e-6)  # from block L: the unchanged model


# ----------------------------------------------------------------------------- the copying model

K_OPTS, HID, N_AUDIO, N_TEXT = 4, 16, 5, 6


def _copy_model(impl: str, blocks: int):
    """A hand-set Llama whose answer comes only from attention to the audio positions.

    q = k = 0, so attention is uniform over what each position may see; v and o are the identity, the
    MLPs are zero. Only the audio embeddings carry the label's one-hot (dims 0..K-1), and the LM head
    reads those dims as tokens 0..K-1. So the last position's option logits are its attention output's
    label dims: the label when it sees the audio, all equal (exactly 1/K each) when it does not. In a
    2-block model block 1's value projection is zero: the answer is read in block 0 only."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32, hidden_size=HID, intermediate_size=8, num_hidden_layers=blocks,
                      num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=64,
                      tie_word_embeddings=False)
    lm = LlamaForCausalLM(cfg).eval()
    lm.set_attn_implementation(impl)
    with torch.no_grad():
        for p in lm.parameters():
            p.zero_()
        for name, p in lm.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
        for i, layer in enumerate(lm.model.layers):
            if i == 0:
                layer.self_attn.v_proj.weight.copy_(torch.eye(HID))
            layer.self_attn.o_proj.weight.copy_(torch.eye(HID))
        lm.lm_head.weight[:K_OPTS, :K_OPTS] = 20 * torch.eye(K_OPTS)  # sharp: the label holds most of the mass
    return lm


def _copy_inputs(labels):
    g = torch.Generator().manual_seed(0)
    b, t = len(labels), N_AUDIO + N_TEXT
    embeds = torch.zeros(b, t, HID)
    embeds[:, :, K_OPTS:] = torch.rand(b, t, HID - K_OPTS, generator=g) + 0.5  # no label in any text position
    for i, lab in enumerate(labels):
        embeds[i, :N_AUDIO, lab] = 3.0
    audio = torch.zeros(b, t, dtype=torch.bool)
    audio[:, :N_AUDIO] = True
    kwargs = {"inputs_embeds": embeds, "attention_mask": torch.ones(b, t, dtype=torch.long)}
    return kwargs, audio


@pytest.mark.parametrize("impl", IMPLS)
def test_a_model_that_copies_from_the_audio_loses_its_answer_when_the_audio_is_knocked_out(impl):
    labels = [0, 1, 2, 3, 2]
    kwargs, audio = _copy_inputs(labels)
    lm = _copy_model(impl, blocks=1)
    curve = K.knockout_curve(lm, kwargs, audio, list(range(K_OPTS)))  # (B, 2, K): from block 0, from block 1 = none
    assert (curve[:, 1].argmax(-1) == labels).all()  # the unchanged model answers with the audio's label
    p = L.among_options(curve)
    assert (p[np.arange(5), 1, labels] > 0.9).all()
    np.testing.assert_allclose(p[:, 0], 1.0 / K_OPTS, atol=1e-6)  # knocked out: no option is preferred


@pytest.mark.parametrize("impl", IMPLS)
def test_the_knockout_curve_shows_the_block_that_reads_the_audio(impl):
    """Block 0 reads the audio, block 1 reads nothing: knocking out from block 0 loses the answer,
    from block 1 on (and the unchanged model) keeps it. Its rows are the CSV the study logs."""
    labels = np.array([3, 1, 0, 2])
    kwargs, audio = _copy_inputs(labels.tolist())
    lm = _copy_model(impl, blocks=2)
    curve = K.knockout_curve(lm, kwargs, audio, list(range(K_OPTS)))
    rows = K.curve_rows("Animal", "audio", curve, labels, [0, 1, 2], 2, audio.sum(-1).numpy())
    assert [r["from_block"] for r in rows] == [0, 1, 2]
    assert [r["knocked_blocks"] for r in rows] == [2, 1, 0]
    assert rows[0]["p_label_among_options_mean"] == pytest.approx(1.0 / K_OPTS, abs=1e-6)
    assert rows[1]["acc"] == rows[2]["acc"] == 1.0
    assert rows[0]["keys_mean"] == N_AUDIO


def test_flash_attention_is_refused():
    lm = _copy_model("eager", blocks=1)
    lm.config._attn_implementation = "flash_attention_2"
    with pytest.raises(L.UnsupportedModelError, match="eager or sdpa"):
        with K.knockout(lm, torch.zeros(1, 3, 3, dtype=torch.bool), 0):
            pass


def test_knockout_png_is_a_png():
    from ausweep.lens.plots import png_size

    labels = np.array([0, 1])
    curve = np.log(np.full((2, 3, K_OPTS), 1.0 / K_OPTS))
    rows = K.curve_rows("Animal", "audio", curve, labels, [0, 1, 2], 2, np.array([5, 5]))
    w, h = png_size(K.knockout_png({"Animal": {"audio": rows}}, "t"))
    assert w > 100 and h > 100


def test_the_audio_queries_of_ausweeps_own_lalm_are_the_audio_keys(tmp_path):
    """ausweep's LALM puts its Q-Former queries just before each row's text, after the left pads:
    the audio mask holds exactly the queries, and knocking them out from every block moves the answer
    while knocking out nothing (from block L) is the unchanged model."""
    from ausweep.lalm.data import audio_features
    from ausweep.lens.data import load_sakura, make_demo_sakura

    m = L.load_lalm_model("untrained:tiny-whisper+tiny-llama")
    prompts = load_prompts(["Animal"])
    items = load_sakura(make_demo_sakura(tmp_path, per_label=1, labels=["dog", "cat"]), ["Animal"], prompts.options)
    ps = L.PromptSettings(question="none", audio_template="{probe}")
    feats = audio_features(m.lalm.feature_extractor, [it.audio for it in items])
    enc = L.encode_batch(m, items, prompts, ps, audio_features=feats)
    q = m.lalm.config.num_queries
    assert enc.audio_mask.sum(-1).tolist() == [q] * len(items)
    seq = enc.audio_mask.shape[1]
    for i, n_text in enumerate(enc.lengths):
        assert enc.audio_mask[i, seq - n_text - q : seq - n_text].all()
    ids = L.option_token_ids(m.tokenizer, prompts.options["Animal"])
    curve = K.knockout_curve(m.lm, enc.kwargs, K.target_keys(enc, "audio"), ids)
    with torch.no_grad():
        full = torch.log_softmax(m.lm(**enc.kwargs).logits[:, -1].float(), -1)[:, ids].numpy()
    np.testing.assert_allclose(curve[:, -1], full, rtol=1e-5, atol=1e-6)
    assert not np.allclose(curve[:, 0], full, rtol=1e-5, atol=1e-6)


def test_the_sweep_table_carries_the_knockout_columns():
    from ausweep.lens.summary import results_table

    rows = [{"config": {"lalm": "tiny-qwen2-audio", "data": "demo-audio"},
             "metrics": {"Animal/acc": 0.5, "Animal/n_options": 9.0, "Animal/knockout/audio/acc_all": 0.1,
                         "Animal/knockout/audio/delta_all": -0.4}},
            {"config": {"model": "tiny-llama"}, "metrics": {"Animal/acc": 0.2, "Animal/n_options": 9.0}}]
    t = results_table(rows)
    assert t["knockout/audio/acc_all"].tolist()[0] == 0.1 and t["knockout/audio/delta_all"].tolist()[0] == -0.4
    assert np.isnan(t["knockout/audio/acc_all"].tolist()[1]) and np.isnan(t["knockout/attribute/acc_all"].tolist()[0])
