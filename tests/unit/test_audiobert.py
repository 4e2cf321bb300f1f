"""The adaptation stage (AudioBERT): span detector, retrieval, the gated model, the training loop.

Tiny random models only (no hub, CPU, seconds). Known-answer tests on synthetic data: the detector
must learn a marked vocabulary, and AudioBERT must recover a masked answer that only the injected
audio embedding carries (also when it is the second of two spans' audio).
"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from ausweep.audiobert.config import AudioBertConfig, TrainConfig
from ausweep.audiobert.model import (
    NO_SPAN,
    AudioBert,
    encode_masked,
    first_token_of_span,
    lora_param_formula,
    projection_param_formula,
)
from ausweep.audiobert.retrieval import (
    AudioIndex,
    recall_at_k,
    retrieve_audio_embeddings,
)
from ausweep.audiobert.span_detector import (
    B,
    I,
    O,
    SpanDetector,
    decode_tags,
    encode_spans,
    locate_spans,
    span_prf,
    token_prf,
)
from ausweep.audiobert.train import (
    IGNORE_INDEX,
    evaluate,
    fit,
    load_trainable,
    masked_token_counts,
    masked_token_loss,
    trainable_state_dict,
)
from ausweep.config import ConfigError, from_dict
from ausweep.models.clap import ClapTextAudio
from ausweep.models.tiny import build_tiny_text, tiny_text_config

D_AUDIO = 16
HIDDEN, LAYERS = 32, 2  # the tiny BERT's shape (ausweep.models.tiny)


@pytest.fixture(scope="module")
def tiny_mlm():
    """The shared tiny BertForMaskedLM and its tokenizer (copy before wrapping: PEFT edits in place)."""
    return build_tiny_text("tiny-bert", head=True)


def _tiny_mlm_scaled(tokenizer, initializer_range: float = 0.2, seed: int = 0):
    """A tiny BERT MLM whose logits have a pretrained-like range.

    The shared tiny BERT draws weights with std 0.02; its tied MLM head then gives every word a
    logit within about +-0.6 (|E_w| * |LayerNorm(h)|), so the masked-LM loss sits near log(V) and a
    frozen head can barely express a preference. 0.2 gives a range a trained head has.
    """
    from transformers import BertForMaskedLM

    config = tiny_text_config("tiny-bert", tokenizer)
    config.initializer_range = initializer_range
    # The tiny WordPiece vocabulary lists "a" twice (letter and word), leaving an id gap: size by max id.
    config.vocab_size = max(tokenizer.get_vocab().values()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertForMaskedLM(config).eval()


def _make_lora_nonzero(model: AudioBert, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


# ============================================================================= span detector


def test_locate_spans_case_insensitive_word_first_and_reports_missing():
    sentence = "The dog's Woof, then a barking woof and a meow"
    found, missing = locate_spans(sentence, ["woof", "WOOF", "bark", "moo", "  "])
    # "woof" -> first whole-word "Woof"; "WOOF" -> the next one; "bark" only inside "barking"
    assert found == sorted([(10, 14), (31, 35), (23, 27)])
    assert ("moo", "not in the sentence") in missing
    assert any(why == "empty span" for _, why in missing)
    _, missing = locate_spans("a woof", ["woof", "woof"])
    assert missing == [("woof", "overlaps another span")]


def test_encode_spans_bio_tags_known_answer_and_warns_on_missing(tiny_mlm):
    _, tok = tiny_mlm
    # tiny tokenizer: "woof" is out of vocabulary -> w ##o ##o ##f
    with pytest.warns(UserWarning, match="1 span"):
        enc = encode_spans(tok, ["the woof of a dog", "a cat"], [["woof"], ["meow"]])
    tokens = tok.convert_ids_to_tokens(enc.input_ids[0].tolist())
    assert tokens == ["[CLS]", "the", "w", "##o", "##o", "##f", "of", "a", "dog", "[SEP]"]
    assert enc.labels[0].tolist() == [IGNORE_INDEX, O, B, I, I, I, O, O, O, IGNORE_INDEX]
    assert enc.missing == [(1, "meow", "not in the sentence")]
    # padding of the shorter sentence carries no loss
    assert (enc.labels[1][enc.attention_mask[1] == 0] == IGNORE_INDEX).all()
    assert decode_tags(enc.labels[0].tolist(), enc.offsets[0]) == [(4, 8)]

    binary = encode_spans(tok, ["a woof and a woof"], [["woof", "woof"]], scheme="binary")
    assert decode_tags(binary.labels[0].tolist(), binary.offsets[0], "binary") == [(2, 6), (13, 17)]


def test_decode_tags_bio_separates_adjacent_spans_binary_merges():
    offsets = [(0, 0), (0, 3), (4, 8), (9, 13), (0, 0)]
    assert decode_tags([-100, B, B, I, -100], offsets, "bio") == [(0, 3), (4, 13)]
    assert decode_tags([-100, 1, 1, 1, -100], offsets, "binary") == [(0, 13)]
    assert decode_tags([-100, O, I, O, -100], offsets, "bio") == [(4, 8)]  # lenient: I after O opens


def test_span_metrics_known_answers():
    gold = [[(0, 4), (10, 14)], [(3, 7)], []]
    pred = [[(0, 4), (10, 13)], [(3, 7)], [(1, 2)]]
    m = span_prf(gold, pred)  # tp 2, 4 predicted, 3 gold
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert span_prf([[]], [[]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}

    g = [[-100, O, B, I, O, -100], [-100, B, O, -100, -100, -100]]
    p = [[B, O, B, O, B, B], [-100, O, O, B, B, B]]  # predictions at -100 gold positions are ignored
    # tokens scored: row0 [O,B,I,O] vs [O,B,O,B] -> tp 1, pred 2, gold 2; row1 [B,O] vs [O,O] -> gold 1
    m = token_prf(g, p)
    assert m["precision"] == pytest.approx(1 / 2) and m["recall"] == pytest.approx(1 / 3)


ONOMATOPOEIA = ["woof", "meow", "moo", "tweet", "boom", "buzz", "honk", "splash"]
OBJECTS = ["dog", "cat", "cow", "bird", "table", "house", "green", "old", "rain", "piano"]  # some OOV, not auditory
TEMPLATES = ["the {o} of a {x}", "a {x} and the {o}", "the sound of {o} is in the {x}", "{o} {o2} with the {x}",
             "the {x} is {o}", "a {o} in the rain and a {x}"]


def _onomatopoeia_set(n: int, seed: int):
    rng = random.Random(seed)
    sentences, spans = [], []
    for _ in range(n):
        t = rng.choice(TEMPLATES)
        o, o2 = rng.sample(ONOMATOPOEIA, 2)
        sentences.append(t.format(o=o, o2=o2, x=rng.choice(OBJECTS)))
        spans.append([o] + ([o2] if "{o2}" in t else []))
    return sentences, spans


def test_span_detector_learns_marked_vocabulary():
    """Known answer: auditory spans are exactly the onomatopoeia (out-of-vocabulary, split into
    letters, like the non-auditory distractors "table", "green"); held-out sentences are new draws."""
    train, test = _onomatopoeia_set(400, seed=0), _onomatopoeia_set(80, seed=1)
    det = SpanDetector.tiny(seed=0)
    before = det.evaluate(*test)
    result = det.fit(*train, cfg=TrainConfig(lr=3e-3, epochs=20, batch_size=16, warmup_ratio=0.1, seed=0))
    after = det.evaluate(*test)
    assert before["span_f1"] < 0.2
    assert after["token_f1"] > 0.95 and after["span_f1"] > 0.9, after
    assert len(result.history) == 20 and result.best_epoch == 19  # no dev set: the last epoch
    assert det.predict_spans(["the woof of a dog", "a green and the moo"]) == [[(4, 8)], [(16, 19)]]


def test_span_detector_selects_on_dev_span_f1():
    train, dev = _onomatopoeia_set(32, seed=0), _onomatopoeia_set(8, seed=1)
    det = SpanDetector.tiny(seed=0)
    result = det.fit(*train, cfg=TrainConfig(lr=3e-3, epochs=3, batch_size=16), dev_sentences=dev[0], dev_spans=dev[1])
    assert result.metric == "span_f1"
    assert {"dev_span_f1", "dev_token_f1", "dev_span_precision", "dev_n_missing"} <= set(result.history[0])
    best = max(range(3), key=lambda e: (result.history[e]["dev_span_f1"], -e))  # first of the best
    assert result.best_epoch == best
    assert det.evaluate(*dev)["span_f1"] == pytest.approx(result.best_metric)  # best weights restored


# ============================================================================= retrieval


def test_index_recall_at_1_is_one_for_corpus_queries():
    g = torch.Generator().manual_seed(0)
    corpus = torch.randn(50, 16, generator=g)
    labels = [f"clip{i}" for i in range(50)]
    index = AudioIndex(corpus, chunk_size=7)  # several chunks
    scores, idx = index.search(corpus, k=3)
    assert idx[:, 0].tolist() == list(range(50))
    assert torch.allclose(scores[:, 0], torch.ones(50), atol=1e-5)
    assert recall_at_k(idx, labels, labels, k=1) == 1.0


def test_index_topk_order_known_answer():
    angles = np.deg2rad([90, 0, 60, 30, 180])  # clip i at angle a_i on the unit circle
    corpus = np.stack([np.cos(angles), np.sin(angles)], 1) * 3.0  # not unit length: normalised inside
    scores, idx = AudioIndex(corpus).search(np.array([[1.0, 0.0]]), k=4)
    assert idx[0].tolist() == [1, 3, 2, 0]
    assert np.allclose(scores[0].numpy(), np.cos(np.deg2rad([0, 30, 60, 90])), atol=1e-6)

    hand = torch.tensor([[2, 0], [1, 2], [0, 1]])
    corpus_labels = ["a", "b", "c"]
    assert recall_at_k(hand, ["c", "c", "b"], corpus_labels, k=1) == pytest.approx(1 / 3)
    assert recall_at_k(hand, ["c", "c", "b"], corpus_labels, k=2) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        AudioIndex(corpus).search(np.ones((1, 2)), k=6)


def test_faiss_backend_matches_torch():
    pytest.importorskip("faiss")
    corpus = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    queries = torch.randn(5, 8, generator=torch.Generator().manual_seed(2))
    s1, i1 = AudioIndex(corpus, backend="torch").search(queries, 5)
    s2, i2 = AudioIndex(corpus, backend="faiss").search(queries, 5)
    assert torch.equal(i1, i2) and torch.allclose(s1, s2, atol=1e-5)


def test_tiny_clap_text_audio_and_retrieval():
    clap = ClapTextAudio.tiny()
    texts = ["woof", "the sound of a bell with wind", "rain"]
    t = clap.embed_text(texts)
    assert t.shape == (3, clap.dim) and torch.allclose(t.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(t, ClapTextAudio.tiny().embed_text(texts))  # seeded: same model every time
    sr = clap.sample_rate
    waves = [np.sin(2 * np.pi * f * np.arange(sr // 2) / sr).astype(np.float32) for f in (220, 440)]
    a = clap.embed_audio(waves)
    assert a.shape == (2, clap.dim) and torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-5)

    # the bank is the texts' own vectors: each text retrieves itself; None gives zeros
    index = AudioIndex(t)
    bank = torch.arange(3 * 5, dtype=torch.float32).reshape(3, 5)
    emb, picked = retrieve_audio_embeddings(["rain", None, "woof"], clap.embed_text, index, audio_vectors=bank)
    assert picked.tolist() == [2, -1, 0]
    assert torch.equal(emb, torch.stack([bank[2], torch.zeros(5), bank[0]]))


# ============================================================================= AudioBERT


def _batch(tok, d_audio=D_AUDIO, seed=0):
    sentences = ["a [MASK] says woof", "the [MASK] is ringing", "the sound of a [MASK]", "a [MASK] and a dog"]
    spans = [(14, 18), (15, 22), None, None]
    enc = encode_masked(tok, sentences, spans)
    enc["audio_embedding"] = torch.randn(len(sentences), d_audio, generator=torch.Generator().manual_seed(seed))
    enc["audio_embedding"][enc["span_first_token"] == NO_SPAN] = 0
    return enc


def test_gating_no_span_rows_are_the_pretrained_model(tiny_mlm):
    mlm, tok = tiny_mlm
    plain = copy.deepcopy(mlm).eval()
    model = AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=D_AUDIO, lora_r=4, lora_alpha=8)).eval()
    _make_lora_nonzero(model)
    batch = _batch(tok)
    assert batch["span_first_token"].tolist()[2:] == [NO_SPAN, NO_SPAN]
    assert min(batch["span_first_token"].tolist()[:2]) >= 1

    with torch.no_grad():
        logits = model(**batch)
        ref = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # a span row with the adapters on but no audio injected would also differ: check the injection alone
        with model.lm.disable_adapter():
            no_lora = model(**batch)
    assert logits.shape == ref.shape
    assert torch.allclose(logits[2:], ref[2:], atol=1e-6, rtol=0)  # no span: exactly the pretrained model
    assert not torch.allclose(logits[:2], ref[:2], atol=1e-3)  # span: audio + LoRA change the output
    assert not torch.allclose(no_lora[:2], ref[:2], atol=1e-3)  # the audio injection on its own does too

    # mixed batch == each row on its own (same padding)
    with torch.no_grad():
        for rows in ([0], [1], [2], [3], [0, 2], [3, 1]):
            part = model(**{k: v[rows] for k, v in batch.items() if k != "labels"})
            assert torch.allclose(part, logits[rows], atol=1e-5, rtol=0)


def test_only_lora_and_projection_train(tiny_mlm):
    mlm, tok = tiny_mlm
    model = AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=D_AUDIO, lora_r=4, lora_alpha=8))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    batch = _batch(tok)
    answers = ["dog", "bell", "cat", "cow"]
    batch["labels"] = encode_masked(tok, ["a [MASK] says woof", "the [MASK] is ringing", "the sound of a [MASK]",
                                          "a [MASK] and a dog"], [None] * 4, answers)["labels"]
    fit(model, batch, TrainConfig(lr=1e-2, epochs=2, batch_size=2, warmup_ratio=0.0))
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or n.startswith("audio_proj.") for n in names)


@pytest.mark.parametrize("r", [4, 8, 16])
@pytest.mark.parametrize("targets", [["query", "key", "value"], ["query", "value"]])
def test_trainable_parameter_count_matches_formula(tiny_mlm, r, targets):
    mlm, _ = tiny_mlm
    model = AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=D_AUDIO, lora_r=r, lora_alpha=2 * r,
                                                          target_modules=targets))
    assert model.lora_parameter_count() == lora_param_formula(HIDDEN, LAYERS, r, targets)
    assert model.trainable_parameter_count() == (
        lora_param_formula(HIDDEN, LAYERS, r, targets) + projection_param_formula(D_AUDIO, HIDDEN)
    )
    assert lora_param_formula(768, 12, 64, ["query", "key", "value"]) == 3_538_944  # bert-base, upstream r


def test_encode_masked_widens_mask_and_shifts_span(tiny_mlm):
    _, tok = tiny_mlm
    sentence = "a [MASK] says woof"
    enc = encode_masked(tok, [sentence, sentence], [(14, 18), None], answers=["dog", "sea lion"])
    tokens = [tok.convert_ids_to_tokens(row) for row in enc["input_ids"].tolist()]
    n_sea_lion = len(tok("sea lion", add_special_tokens=False)["input_ids"])
    assert tokens[1].count("[MASK]") == n_sea_lion > 1
    assert tokens[0][int(enc["span_first_token"][0])] == "w"  # "woof" -> w ##o ##o ##f
    assert enc["span_first_token"][1] == NO_SPAN
    labels = enc["labels"][1]
    assert tok.decode(labels[labels != IGNORE_INDEX]) == tok.decode(tok("sea lion", add_special_tokens=False)["input_ids"])
    assert first_token_of_span([(0, 0), (0, 1), (2, 5)], (3, 4), [1, 0, 0]) == 2


def _two_span_batch(tok, d_audio=D_AUDIO, seed=0):
    """Row 0: two spans; row 1: none (both slots -1); row 2: one span, then a padding slot."""
    sentences = ["the woof of a [MASK] and the moo", "the sound of a [MASK]", "a [MASK] says woof"]
    spans = [[(4, 8), (29, 32)], [], [(14, 18)]]
    enc = encode_masked(tok, sentences, spans)
    enc["audio_embedding"] = torch.randn(len(sentences), 2, d_audio, generator=torch.Generator().manual_seed(seed))
    return enc


def test_every_span_carries_audio_and_spanless_rows_are_the_pretrained_model(tiny_mlm):
    mlm, tok = tiny_mlm
    plain = copy.deepcopy(mlm).eval()
    model = AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=D_AUDIO, lora_r=4, lora_alpha=8)).eval()
    _make_lora_nonzero(model)
    batch = _two_span_batch(tok)
    spans = batch["span_first_token"]
    assert spans.shape == (3, 2) and spans[1].tolist() == [NO_SPAN, NO_SPAN]
    assert (spans[0] >= 1).all() and spans[2, 0] >= 1 and spans[2, 1] == NO_SPAN

    def with_audio(row, k, value):
        audio = batch["audio_embedding"].clone()
        audio[row, k] = value
        return dict(batch, audio_embedding=audio)

    with torch.no_grad():
        logits = model(**batch)
        ref = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        second = model(**with_audio(0, 1, torch.randn(D_AUDIO, generator=torch.Generator().manual_seed(9))))
        first = model(**with_audio(0, 0, torch.zeros(D_AUDIO)))
        padding = model(**with_audio(2, 1, torch.full((D_AUDIO,), 7.0)))  # a padding slot's audio
        spanless = model(**with_audio(1, 0, torch.full((D_AUDIO,), 7.0)))
        alone = model(**{k: v[[1]] for k, v in batch.items()})
        alone_ref = plain(input_ids=batch["input_ids"][[1]], attention_mask=batch["attention_mask"][[1]]).logits
    # both spans are read: changing either one's audio changes the row, and only that row
    assert not torch.allclose(second[0], logits[0], atol=1e-4)
    assert not torch.allclose(first[0], logits[0], atol=1e-4)
    assert torch.equal(second[1:], logits[1:]) and torch.equal(first[1:], logits[1:])
    # absent spans are never read
    assert torch.equal(padding, logits) and torch.equal(spanless, logits)
    # a row whose spans are all -1 is the pretrained model: bit for bit on its own, to float noise in a batch
    assert torch.equal(alone, alone_ref)
    assert torch.allclose(logits[1], ref[1], atol=1e-6, rtol=0)
    assert not torch.allclose(logits[[0, 2]], ref[[0, 2]], atol=1e-3)

    with pytest.raises(ValueError, match="audio_embedding"):
        model(**dict(batch, audio_embedding=batch["audio_embedding"][:, 0]))  # (B, d) needs K == 1
    with pytest.raises(ValueError, match="same token"):
        model(**dict(batch, span_first_token=torch.tensor([[3, 3], [-1, -1], [4, -1]])))


def test_one_span_per_row_reads_the_same_as_b_or_b1(tiny_mlm):
    mlm, tok = tiny_mlm
    model = AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=D_AUDIO, lora_r=4, lora_alpha=8)).eval()
    _make_lora_nonzero(model)
    batch = _batch(tok)
    assert batch["span_first_token"].shape == (4,)  # single spans in, (N,) out, as before
    flat = dict(batch)
    column = dict(flat, span_first_token=flat["span_first_token"][:, None],
                  audio_embedding=flat["audio_embedding"][:, None])
    with torch.no_grad():
        out = model(**flat)
        assert torch.equal(out, model(**column))
        # the two forms mix: (B,) spans with (B, 1, d) audio, (B, 1) spans with (B, d) audio
        assert torch.equal(out, model(**dict(flat, audio_embedding=column["audio_embedding"])))
        assert torch.equal(out, model(**dict(flat, span_first_token=column["span_first_token"])))
    # the same spans given as one-element lists encode to the (N, 1) column
    sentences = ["a [MASK] says woof", "the [MASK] is ringing", "the sound of a [MASK]", "a [MASK] and a dog"]
    listed = encode_masked(tok, sentences, [[(14, 18)], [(15, 22)], [], None])
    assert torch.equal(listed["span_first_token"], column["span_first_token"])


def test_encode_masked_shifts_only_spans_after_the_widened_mask(tiny_mlm):
    _, tok = tiny_mlm
    sentence = "the woof of a [MASK] and the moo"
    woof, moo = (4, 8), (29, 32)
    assert sentence[slice(*woof)] == "woof" and sentence[slice(*moo)] == "moo"
    enc = encode_masked(tok, [sentence, sentence, "a [MASK] says woof"], [[woof, moo], [moo, None], [(14, 18)]],
                        answers=["sea lion", "dog", "cat"])
    first = enc["span_first_token"]
    assert first.shape == (3, 2) and first[2, 1] == NO_SPAN and first[1, 1] == NO_SPAN
    ids = enc["input_ids"].tolist()
    assert tok.convert_ids_to_tokens(ids[0]).count("[MASK]") > 1  # "sea lion": the mask was widened

    def word_at(row, k, word):
        n = len(tok(word, add_special_tokens=False)["input_ids"])
        start = int(first[row, k])
        return tok.decode(ids[row][start : start + n])

    assert word_at(0, 0, "woof") == "woof"  # before the mask: unshifted
    assert word_at(0, 1, "moo") == "moo"  # after the widened mask: shifted
    assert word_at(1, 0, "moo") == "moo"  # one-piece answer: nothing to shift
    assert word_at(2, 0, "woof") == "woof"
    assert int(first[0, 1]) - int(first[1, 0]) == len(tok("sea lion", add_special_tokens=False)["input_ids"]) - 1

    # two spans inside one token cannot both carry audio: the later one is dropped, with a warning
    with pytest.warns(UserWarning, match="same token"):
        enc = encode_masked(tok, ["a dog and a [MASK]"], [[(2, 3), (4, 5)]])
    assert enc["span_first_token"].tolist() == [[2, NO_SPAN]]


CLASSES = ["dog", "cat", "cow", "bird", "violin", "piano", "drum", "siren"]


def _audio_only_task(tok, protos, n_per_class, gen, noise=0.3):
    """"the sound of a [MASK] is ringing": the text is the same for every class (so is the span,
    "ringing"); only the audio embedding (class prototype + noise) tells the answer."""
    sentence = "the sound of a [MASK] is ringing"
    span = (sentence.index("ringing"), len(sentence))
    answers = [c for c in CLASSES for _ in range(n_per_class)]
    data = encode_masked(tok, [sentence] * len(answers), [span] * len(answers), answers, max_length=32)
    k = torch.arange(len(CLASSES)).repeat_interleave(n_per_class)
    data["audio_embedding"] = protos[k] + noise * torch.randn(len(answers), protos.shape[1], generator=gen)
    return data


def test_audiobert_recovers_answer_only_the_audio_carries(tiny_mlm):
    """Known answer for the mechanism: with audio injected, held-out accuracy ~1; the same model
    with the audio zeroed (text only) cannot beat 1/8, since its input is identical for all classes."""
    _, tok = tiny_mlm
    base = _tiny_mlm_scaled(tok)
    gen = torch.Generator().manual_seed(0)
    protos = torch.randn(len(CLASSES), D_AUDIO, generator=gen)
    train, test = _audio_only_task(tok, protos, 40, gen), _audio_only_task(tok, protos, 10, gen)
    assert (train["span_first_token"] >= 0).all()
    cfg = TrainConfig(lr=1e-2, epochs=15, batch_size=16, warmup_ratio=0.1, weight_decay=0.0, seed=0)
    model_cfg = AudioBertConfig(d_audio=D_AUDIO, lora_r=8, lora_alpha=16, lora_dropout=0.0, seed=0)

    model = AudioBert(copy.deepcopy(base), model_cfg)
    result = fit(model, train, cfg, dev_data=test)  # 20 steps x 15 epochs = 300 steps
    audio_acc = evaluate(model, test)["acc"]

    def no_audio(d):
        return dict(d, audio_embedding=torch.zeros_like(d["audio_embedding"]))

    text_model = AudioBert(copy.deepcopy(base), model_cfg)
    fit(text_model, no_audio(train), cfg, dev_data=no_audio(test))
    text_acc = evaluate(text_model, no_audio(test))["acc"]

    assert audio_acc > 0.8, result.history
    assert text_acc <= 1 / len(CLASSES) + 0.05
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.examples_per_s > 0


def _second_span_task(tok, protos, quiet, n_per_class, gen, noise=0.3):
    """"the sound of a [MASK] is ringing and buzzing": two spans per sentence, the same text for
    every class; the first span's audio is one fixed vector ``quiet``, only the second's (class
    prototype + noise) tells the answer."""
    sentence = "the sound of a [MASK] is ringing and buzzing"
    ringing, buzzing = sentence.index("ringing"), sentence.index("buzzing")
    spans = [(ringing, ringing + len("ringing")), (buzzing, len(sentence))]
    classes = CLASSES[: len(protos)]
    answers = [c for c in classes for _ in range(n_per_class)]
    data = encode_masked(tok, [sentence] * len(answers), [spans] * len(answers), answers, max_length=32)
    k = torch.arange(len(classes)).repeat_interleave(n_per_class)
    informative = protos[k] + noise * torch.randn(len(answers), protos.shape[1], generator=gen)
    data["audio_embedding"] = torch.stack([quiet.expand(len(answers), -1), informative], 1)  # (N, 2, d)
    return data


def test_audiobert_reads_the_answer_from_the_second_span(tiny_mlm):
    """Known answer for multi-span injection: the answer is in the second span's audio only, so a
    model that read just the first span could not beat 1/4; with every span read, held-out accuracy
    is ~1, and shuffling the second span's audio across items brings it back to chance."""
    _, tok = tiny_mlm
    base = _tiny_mlm_scaled(tok)
    gen = torch.Generator().manual_seed(0)
    protos = torch.randn(4, D_AUDIO, generator=gen)
    quiet = torch.randn(1, D_AUDIO, generator=gen)
    train, test = _second_span_task(tok, protos, quiet, 32, gen), _second_span_task(tok, protos, quiet, 10, gen)
    assert train["span_first_token"].shape == (128, 2) and (train["span_first_token"] >= 0).all()
    model = AudioBert(copy.deepcopy(base), AudioBertConfig(d_audio=D_AUDIO, lora_r=8, lora_alpha=16,
                                                           lora_dropout=0.0, seed=0))
    cfg = TrainConfig(lr=1e-2, epochs=20, batch_size=16, warmup_ratio=0.1, weight_decay=0.0, seed=0)
    result = fit(model, train, cfg)  # 8 steps x 20 epochs = 160 steps
    acc = evaluate(model, test)["acc"]

    audio = test["audio_embedding"]
    perm = torch.randperm(len(audio), generator=gen)
    shuffled = dict(test, audio_embedding=torch.stack([audio[:, 0], audio[perm, 1]], 1))
    shuffled_acc = evaluate(model, shuffled)["acc"]

    assert acc > 0.9, result.history
    assert shuffled_acc < 0.25 + 0.2, shuffled_acc


# ============================================================================= training loop


class _Toy(torch.nn.Module):
    """Per-token linear classifier over a fixed embedding: logits (B, T, C)."""

    def __init__(self, vocab=10, classes=3):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 4)
        self.emb.weight.requires_grad_(False)
        self.head = torch.nn.Linear(4, classes)

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.emb(input_ids))


def test_masked_token_loss_and_counts_known_answer():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [1.0, 0.0]]])  # (B=2, T=2, C=2)
    labels = torch.tensor([[0, IGNORE_INDEX], [0, 0]])
    picked = torch.stack([logits[0, 0], logits[1, 0], logits[1, 1]])
    expected = torch.nn.functional.cross_entropy(picked, torch.tensor([0, 0, 0]))
    assert torch.allclose(masked_token_loss(logits, labels), expected)
    assert masked_token_counts(logits, labels) == {"tokens_correct": 2, "tokens": 3, "examples_correct": 1, "examples": 2}


def test_fit_keeps_best_dev_epoch_and_saves_atomically(tmp_path):
    torch.manual_seed(0)
    model = _Toy()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 10, (32, 5), generator=g)
    data = {"input_ids": ids, "labels": ids % 3}
    scores = iter([0.5, 0.9, 0.7])  # best at epoch 1
    states = []

    def eval_fn(m):
        states.append(trainable_state_dict(m))
        return {"acc": next(scores)}

    cfg = TrainConfig(lr=0.1, epochs=3, batch_size=8, save_dir=str(tmp_path / "ckpt"))
    result = fit(model, data, cfg, eval_fn=eval_fn)
    assert [row["dev_acc"] for row in result.history] == [0.5, 0.9, 0.7]
    assert result.best_epoch == 1 and result.best_metric == 0.9
    assert all(torch.equal(p, states[1][n]) for n, p in trainable_state_dict(model).items())  # restored
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["trainable.safetensors"]  # no temp files

    other = _Toy()
    meta = load_trainable(other, tmp_path / "ckpt")
    assert meta["epoch"] == "1"
    assert all(torch.equal(p, states[1][n]) for n, p in trainable_state_dict(other).items())

    # the default dev evaluation learns this separable toy task
    result = fit(model, data, TrainConfig(lr=0.1, epochs=30, batch_size=8), dev_data=data)
    assert result.history[-1]["dev_token_acc"] > 0.9 and evaluate(model, data)["token_acc"] > 0.9


def test_configs_validate():
    assert from_dict(TrainConfig, {"lr": "3e-4", "save_dir": None}).lr == pytest.approx(3e-4)
    with pytest.raises(ConfigError, match="warmup_ratio"):
        from_dict(TrainConfig, {"warmup_ratio": 1.5})
    with pytest.raises(ConfigError, match="lora_r"):
        from_dict(AudioBertConfig, {"lora_r": 0})
    assert AudioBertConfig().target_modules == ["query", "key", "value"]


def test_audiobert_skips_items_without_exactly_one_mask():
    """Animal train has sentences with two [MASK]s; the full lora_rank sweep must not crash on them."""
    from ausweep.audiobert.study import AudioBertExperiment, _items
    from ausweep.benchmarks.auditorybench import load_auditorybench
    from ausweep.config import from_dict

    cfg = from_dict(AudioBertExperiment, {"task": "animal"})
    items = _items(cfg, "train")
    assert all(it.sentence.count("[MASK]") == 1 for it in items)
    assert len(load_auditorybench("animal", "train")) - len(items) == 3


# ============================================================================= data and selection


def test_audiobert_leaves_out_rows_also_in_train_by_default():
    """dev/test/wiki rows that repeat a train row (flag in_train) are not used unless asked for."""
    from ausweep.audiobert.study import AudioBertExperiment, _items, context_spec

    drop = from_dict(AudioBertExperiment, {"task": "animal"})
    keep = from_dict(AudioBertExperiment, {"task": "animal", "cross_split_duplicates": "keep"})
    assert drop.cross_split_duplicates == "drop"
    # file rows 592 / 1,211 / 197, of which 31 / 60 / 32 repeat a train row
    assert [len(_items(drop, s)) for s in ("dev", "test", "wiki")] == [561, 1151, 165]
    assert [len(_items(keep, s)) for s in ("dev", "test", "wiki")] == [592, 1211, 197]
    assert not any("in_train" in it.flags for s in ("dev", "test", "wiki") for it in _items(drop, s))
    assert _items(drop, "train") == _items(keep, "train")  # train is never filtered
    pitch = from_dict(AudioBertExperiment, {"task": "pitch", "max_items": 1000})
    assert len(_items(pitch, "test")) == 1000 and not any("in_train" in it.flags for it in _items(pitch, "test"))
    # the cached auditory context of the two settings is not shared
    assert context_spec(drop)["cross_split_duplicates"] == "drop" and context_spec(keep)["cross_split_duplicates"] == "keep"


@pytest.mark.parametrize("preset", [None, "demo", "asha", "published"])
def test_lora_rank_sweep_selects_on_dev(preset, tmp_path):
    from ausweep.audiobert.study import AudioBertExperiment
    from ausweep.config import parse_overrides
    from ausweep.sweep.spec import load_sweep

    # the full sweep's corpus is FSD50K, whose folder the config requires to be named
    sweep = load_sweep("lora_rank", preset, None if preset == "demo" else parse_overrides([f"retrieval.corpus.root={tmp_path}"]))
    assert sweep.spec.tune.metric == "dev/acc" and sweep.spec.tune.mode == "max"
    configs = [from_dict(AudioBertExperiment, d, where=str(sweep.path)) for d in sweep.config_dicts()]
    assert all(c.cross_split_duplicates == ("keep" if preset == "published" else "drop") for c in configs)
    if sweep.spec.tune.scheduler.name == "asha":
        # a trial reports one row per epoch, then the held-out scores: ASHA must let that last row through
        assert all(sweep.spec.tune.scheduler.max_t > c.train.epochs for c in configs)


def test_trial_picks_its_epoch_on_dev_and_scores_test_only_after_training(tmp_path, monkeypatch):
    """Every score taken while training (to pick the best epoch) is on the dev data; test is scored
    after training only. eval_splits lists test first, so a test-based pick would show."""
    from pathlib import Path

    import yaml

    from ausweep.audiobert import study

    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    d = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "audiobert" / "demo.yaml").read_text())
    d.update(max_items=4, eval_splits=["test", "dev"])
    d["retrieval"]["extract"]["cache_dir"] = str(tmp_path / "embeddings")
    cfg = from_dict(study.AudioBertExperiment, d, where="demo.yaml")
    scored: list[int] = []  # id() of each data dict that study.score is called on, in order
    real = study.score

    def recording_score(model, data, *args, **kw):
        scored.append(id(data))
        return real(model, data, *args, **kw)

    monkeypatch.setattr(study, "score", recording_score)
    rows = list(study.trial(cfg))
    epochs, final = rows[:-1], rows[-1]
    n = cfg.train.epochs
    from ausweep.study import CHECKPOINT

    # each epoch row offers its training state (CHECKPOINT: for PBT) besides its scores
    assert len(epochs) == n and all(set(r) == {"train_loss", "dev/acc", "epoch", CHECKPOINT} for r in epochs)
    # n dev scores while training; then test (with audio, text only), then dev (the same two)
    assert len(scored) == n + 4
    training, test, dev = scored[:n], scored[n:n + 2], scored[n + 2:]
    assert len(set(test)) == 1 and len(set(dev)) == 1 and test[0] != dev[0]
    assert set(training) == {dev[0]}
    assert final["dev/acc"] == max(r["dev/acc"] for r in epochs)
    assert final["best_epoch"] == [r["dev/acc"] for r in epochs].index(final["dev/acc"])
    assert (final["test/n_in_train"], final["test/n_dropped"], final["test/n"]) == (60, 60, 4)
    assert final["tags"]["ausweep.n_dropped.test"] == 60 and final["tags"]["ausweep.cross_split_duplicates"] == "drop"


def _threads_in(module_file: str) -> list[str]:
    """Names of the threads, other than this one, running code of ``module_file`` right now."""
    import sys
    import threading
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return [names.get(ident, str(ident)) for ident, frame in sys._current_frames().items()
            if ident != threading.get_ident() and any(f.filename == module_file for f in traceback.extract_stack(frame))]


def test_a_stopped_trial_trains_no_further_epoch_and_leaves_no_thread(tmp_path, monkeypatch):
    """Tune stops a trial (ASHA, a stopper) by no longer asking for rows and closing the trial's
    generator; with actors reused, the next trial starts in the same process. After one row and a
    close, no epoch may run and no thread may be left training."""
    import time
    from pathlib import Path

    import yaml

    from ausweep.audiobert import study, train

    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    d = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "audiobert" / "demo.yaml").read_text())
    d.update(max_items=16)
    d["train"]["epochs"] = 4
    d["retrieval"]["extract"]["cache_dir"] = str(tmp_path / "embeddings")
    cfg = from_dict(study.AudioBertExperiment, d, where="demo.yaml")
    epochs_run: list[int] = []
    real = train._train_epoch

    def counting_train_epoch(run, *args, **kw):  # counts AudioBERT's epochs (not the span detector's)
        if isinstance(run.core, AudioBert):
            epochs_run.append(1)
        return real(run, *args, **kw)

    monkeypatch.setattr(train, "_train_epoch", counting_train_epoch)
    rows = study.trial(cfg)
    first = next(rows)
    assert first["epoch"] == 0.0 and len(epochs_run) == 1
    time.sleep(0.5)  # what Tune's scheduler takes to decide: nothing trains meanwhile
    assert len(epochs_run) == 1
    rows.close()
    deadline = time.monotonic() + 10.0
    while _threads_in(train.__file__) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _threads_in(train.__file__) == []
    assert len(epochs_run) == 1  # the stopped trial trained no further epoch


def test_fit_epochs_yields_what_fit_logs():
    """fit is fit_epochs drained: the same rows and the same best epoch for the same seed."""
    from ausweep.audiobert.train import fit_epochs

    torch.manual_seed(0)
    x = torch.randn(24, 3, 4)
    labels = torch.randint(0, 5, (24, 3))
    data = {"x": x, "labels": labels}
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, warmup_ratio=0.0, seed=1)

    def run(drive):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 5)
        wrapper = _XModel(model)
        return drive(wrapper)

    logged: list[dict] = []
    result = run(lambda m: fit(m, data, cfg, dev_data=data, log=logged.append))
    gen_rows: list[dict] = []

    def drain(m):
        epochs = fit_epochs(m, data, cfg, dev_data=data)
        while True:
            try:
                gen_rows.append(next(epochs))
            except StopIteration as done:
                return done.value

    result2 = run(drain)
    assert logged == gen_rows == result.history == result2.history and len(gen_rows) == 3
    assert result.best_epoch == result2.best_epoch


class _XModel(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 4) -> (B, T, 5)
        return self.inner(x)
