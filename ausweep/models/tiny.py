"""Tiny random models for unit tests and smoke runs: the one shared module of tiny-model settings.

Every builder here makes a 2-layer model (hidden 32) from a small config with a FIXED seed, and a
tokenizer / feature extractor that needs no files. Two calls, in two processes (e.g. two Ray
actors), give bit-identical weights and vocabularies, so a distributed sweep over ``tiny-*``
names behaves like one over a real checkpoint.

Tokenizers are built in-process with ``tokenizers``. Only the byte-level BPE trainer is
deterministic across processes (the WordPiece and Unigram trainers iterate Rust hash maps, whose
seed differs per process, and their vocabularies come out in a different order each run), so the
WordPiece and Unigram vocabularies are written out explicitly from :data:`WORDS` instead of trained.

The weights are random: these models test plumbing (shapes, spans, padding, determinism), never
what a model knows.
"""

from __future__ import annotations

import string
from typing import Any

# Words the tiny tokenizers know as whole tokens: the demo template and the objects used in tests.
# Anything else (e.g. "xylophone") splits into sub-word pieces, which tests use for multi-token spans.
WORDS: tuple[str, ...] = tuple(
    """the sound of a an is and with in dog puppy cat kitten cow bird violin cello piano guitar drum
    trumpet flute church bell thunder rain wind car engine siren train barking playing ringing""".split()
)
SEED = 0

# Text models. `model_type` picks the transformers config class; the rest are its fields.
# Vocabulary size and special-token ids come from the tokenizer (see `tiny_text_config`).
TINY_TEXT: dict[str, dict[str, Any]] = {
    "tiny-bert": dict(
        model_type="bert", tokenizer="wordpiece", hidden_size=32, num_hidden_layers=2,
        # 512 positions like BERT: AuditoryBench sentences split into many tiny WordPiece pieces.
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
    ),
    "tiny-gpt2": dict(
        model_type="gpt2", tokenizer="gpt2-bpe", n_embd=32, n_layer=2, n_head=2, n_positions=64,
    ),
    "tiny-t5": dict(
        model_type="t5", tokenizer="unigram", d_model=32, d_kv=16, d_ff=64, num_layers=2,
        num_decoder_layers=2, num_heads=2, relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
    ),
    "tiny-llama": dict(
        model_type="llama", tokenizer="llama-bpe", hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
    ),
    "tiny-qwen2": dict(
        model_type="qwen2", tokenizer="qwen-bpe", hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
    ),
}

# Audio models: config fields, plus the front end (feature extractor) settings that fit them.
TINY_AUDIO: dict[str, dict[str, Any]] = {
    # AST: 32 mel bins x 112 frames (1.12 s at 16 kHz) in 16x16 patches, no overlap: 2 x 7 patches.
    "tiny-ast": dict(
        model_type="audio-spectrogram-transformer", hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, patch_size=16, frequency_stride=16,
        time_stride=16, max_length=112, num_mel_bins=32,
    ),
    # CLAP's HTSAT audio tower: spec_size=256 with 64 mel bins is the smallest shape it accepts.
    "tiny-clap": dict(
        model_type="clap_audio_model", spec_size=256, num_mel_bins=64, patch_size=4, patch_stride=[4, 4],
        window_size=8, patch_embeds_hidden_size=16, hidden_size=32, depths=[1, 1],
        num_attention_heads=[2, 2], enable_fusion=False, projection_dim=16, max_length_s=1,
    ),
    # Whisper encoder on 1 s windows (100 frames -> 50 positions) instead of 30 s.
    "tiny-whisper": dict(
        model_type="whisper", d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=16,
        max_source_positions=50, max_target_positions=16, vocab_size=64, pad_token_id=0, bos_token_id=1,
        eos_token_id=1, decoder_start_token_id=1, chunk_length=1,
    ),
    # ViTMAE (AudioMAE-like) on a 64-frame x 64-mel log-mel "image" in 16x16 patches.
    "tiny-vitmae": dict(
        model_type="vit_mae", image_size=64, patch_size=16, num_channels=1, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, decoder_hidden_size=32,
        decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=64,
        mask_ratio=0.0,
    ),
}


def _seeded(build):
    """Run ``build()`` with torch's RNG seeded to :data:`SEED`, leaving the caller's RNG untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return build()


# ----------------------------------------------------------------------------- tokenizers


def _corpus() -> list[str]:
    return [" ".join(WORDS)] + [f"the sound of a {w}" for w in WORDS]


def tiny_tokenizer(kind: str):
    """A fast tokenizer (``PreTrainedTokenizerFast``) for ``kind`` in
    ``wordpiece | gpt2-bpe | llama-bpe | qwen-bpe | unigram``; deterministic across processes."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    letters = list(string.ascii_lowercase)
    if kind == "wordpiece":  # BERT-style uncased WordPiece
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        # dict.fromkeys drops repeats ("a" is a letter and a word) so ids stay dense: 0..len-1.
        vocab = list(dict.fromkeys(specials + letters + [f"##{c}" for c in letters] + sorted(set(WORDS))))
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
            sep_token="[SEP]", mask_token="[MASK]",
        )
    if kind == "unigram":  # T5-style: SentencePiece-like Unigram with "▁" word starts, "</s>" appended
        specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
        # Whole words are cheap, single characters dear, so known words stay one piece and unknown
        # words fall back to characters.
        pieces = [(f"▁{w}", -2.0) for w in sorted(set(WORDS))] + [("▁", -6.0)]
        pieces += [(c, -8.0) for c in letters]
        tok = Tokenizer(models.Unigram(specials + pieces, unk_id=2))
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
        )
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")

    # Byte-level BPE (GPT-2, Llama 3, Qwen): the BPE trainer is deterministic.
    eos = {"gpt2-bpe": "<|endoftext|>", "qwen-bpe": "<|endoftext|>", "llama-bpe": "</s>"}.get(kind)
    if eos is None:
        raise ValueError(f"unknown tiny tokenizer kind {kind!r}")
    specials = [eos] + (["<s>"] if kind == "llama-bpe" else [])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    if kind == "llama-bpe":  # Llama prepends BOS, so spans must skip a special token at position 0
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token=eos, unk_token=None)
    if kind == "qwen-bpe":  # Qwen ships a pad token (= <|endoftext|>)
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos)
    # GPT-2 has no pad token: the text encoder must supply one
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=eos, eos_token=eos)


# ----------------------------------------------------------------------------- text models


def tiny_text_config(name: str, tokenizer=None):
    """The transformers config for tiny text model ``name``, sized to its tokenizer."""
    from transformers import AutoConfig

    spec = dict(TINY_TEXT[name])
    model_type, tok_kind = spec.pop("model_type"), spec.pop("tokenizer")
    tok = tokenizer if tokenizer is not None else tiny_tokenizer(tok_kind)
    ids = {k: getattr(tok, f"{k}_token_id") for k in ("pad", "bos", "eos")}
    ids = {f"{k}_token_id": v for k, v in ids.items() if v is not None}
    if model_type == "t5":
        ids["decoder_start_token_id"] = tok.pad_token_id
    return AutoConfig.for_model(model_type, vocab_size=len(tok), **ids, **spec)


def build_tiny_text(name: str, head: bool = False):
    """``(model, tokenizer)`` for tiny text model ``name`` (a key of :data:`TINY_TEXT`).

    ``head=False`` gives the bare model (BertModel, GPT2Model, T5Model, ...); ``head=True`` the
    one with its LM head (masked LM for BERT, causal LM for decoders, seq2seq LM for T5).
    Weights are seeded, so every call in every process returns the same model.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

    if name not in TINY_TEXT:
        raise KeyError(f"no tiny text model {name!r} (known: {', '.join(TINY_TEXT)})")
    tok = tiny_tokenizer(TINY_TEXT[name]["tokenizer"])
    config = tiny_text_config(name, tok)
    if not head:
        cls = AutoModel
    elif config.model_type == "bert":
        cls = AutoModelForMaskedLM
    elif config.model_type == "t5":
        cls = AutoModelForSeq2SeqLM
    else:
        cls = AutoModelForCausalLM
    model = _seeded(lambda: cls.from_config(config))
    return model.eval(), tok


# ----------------------------------------------------------------------------- audio models


def build_tiny_audio(name: str):
    """``(model, feature_extractor)`` for tiny audio model ``name`` (a key of :data:`TINY_AUDIO`).

    The models are the ones the audio encoders wrap: ``ASTModel``, ``ClapAudioModelWithProjection``,
    ``WhisperModel`` (the encoder is used) and ``ViTMAEModel``; weights are seeded.
    """
    import transformers as tf

    if name not in TINY_AUDIO:
        raise KeyError(f"no tiny audio model {name!r} (known: {', '.join(TINY_AUDIO)})")
    spec = dict(TINY_AUDIO[name])
    model_type = spec.pop("model_type")
    if model_type == "audio-spectrogram-transformer":
        config = tf.ASTConfig(**spec)
        fe = tf.ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length)
        model = _seeded(lambda: tf.ASTModel(config))
    elif model_type == "clap_audio_model":
        max_length_s = spec.pop("max_length_s")
        config = tf.ClapAudioConfig(**spec)
        # rand_trunc (not "fusion"): the tiny tower has no fusion branch; clips longer than
        # max_length_s are cropped, which the encoder makes deterministic.
        fe = tf.ClapFeatureExtractor(
            feature_size=config.num_mel_bins, truncation="rand_trunc", max_length_s=max_length_s
        )
        model = _seeded(lambda: tf.ClapAudioModelWithProjection(config))
    elif model_type == "whisper":
        chunk_length = spec.pop("chunk_length")
        config = tf.WhisperConfig(**spec)
        fe = tf.WhisperFeatureExtractor(feature_size=config.num_mel_bins, chunk_length=chunk_length)
        model = _seeded(lambda: tf.WhisperModel(config))
    elif model_type == "vit_mae":
        config = tf.ViTMAEConfig(**spec)
        # Frames x mel bins of the log-mel "image"; AST's extractor makes AudioSet-normalised
        # Kaldi fbanks, the input AudioMAE was trained on.
        fe = tf.ASTFeatureExtractor(num_mel_bins=config.image_size, max_length=config.image_size)
        model = _seeded(lambda: tf.ViTMAEModel(config))
    else:  # pragma: no cover - TINY_AUDIO is fixed
        raise ValueError(model_type)
    return model.eval(), fe
