"""AudioBERT with upstream's audio path (``adapter.audio_source=ast``): a jointly trained AST reads
the retrieved clip's audio, and the mean of its last hidden states is written at the span.

Tiny BERT + tiny AST (both 32 wide, as AST and BERT-base are both 768), random weights, CPU.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ausweep.audiobert.config import AudioBertConfig, TrainConfig
from ausweep.audiobert.model import NO_SPAN, AudioBert, encode_masked
from ausweep.audiobert.train import fit
from ausweep.models.tiny import build_tiny_audio, build_tiny_text

SENTENCES = ["a [MASK] says woof", "the [MASK] is ringing", "the sound of a [MASK]", "a [MASK] and a dog"]
SPANS = [(14, 18), (15, 22), None, None]
ANSWERS = ["dog", "bell", "cat", "cow"]


@pytest.fixture(scope="module")
def tiny():
    mlm, tok = build_tiny_text("tiny-bert", head=True)
    ast, fe = build_tiny_audio("tiny-ast")
    rng = np.random.default_rng(0)
    # three clips of different lengths (0.5 s, 1 s, 2 s at 16 kHz): the AST's fixed window pads or crops them
    waves = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (8000, 16000, 32000)]
    bank = fe(waves, sampling_rate=16000, return_tensors="pt")["input_values"].float()  # (3, 112, 32)
    return mlm, tok, ast, bank


def _model(tiny, **cfg) -> AudioBert:
    mlm, _, ast, bank = tiny
    model = AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=32, lora_r=4, lora_alpha=8, audio_source="ast", **cfg),
                      audio_encoder=copy.deepcopy(ast))
    model.set_audio_bank(bank)
    return model


def _batch(tok, with_labels: bool = False):
    enc = encode_masked(tok, SENTENCES, SPANS, ANSWERS if with_labels else None)
    enc["audio_clip"] = torch.tensor([2, 0, NO_SPAN, NO_SPAN])  # rows 0, 1 read clips 2 and 0
    return enc


def test_the_injected_vector_is_the_mean_pooled_ast_output_at_the_span(tiny):
    mlm, tok, ast, bank = tiny
    model = _model(tiny).eval()
    assert isinstance(model.audio_proj, torch.nn.Identity)  # equal widths: written as is, as upstream
    batch = _batch(tok)
    seen: list[torch.Tensor] = []
    embeddings = model.lm.base_model.model.bert.embeddings
    hook = embeddings.register_forward_pre_hook(
        lambda mod, args, kw: seen.append(kw["inputs_embeds"].detach().clone()) if kw.get("inputs_embeds") is not None else None,
        with_kwargs=True)
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        hook.remove()
    assert len(seen) == 1 and seen[0].shape[0] == 2  # only the two rows with a span take the audio path
    with torch.no_grad():
        want = copy.deepcopy(ast).eval()(input_values=bank[[2, 0]]).last_hidden_state.mean(1)  # (2, 32)
        words = mlm.get_input_embeddings()(batch["input_ids"][:2])  # (2, T, 32)
    at = batch["span_first_token"][:2]
    assert torch.allclose(seen[0][[0, 1], at], want, atol=1e-6, rtol=0)
    keep = torch.ones_like(batch["input_ids"][:2], dtype=torch.bool)
    keep[[0, 1], at] = False
    assert torch.equal(seen[0][keep], words[keep])  # every other position keeps its word embedding


def test_rows_without_a_span_are_plain_bert_and_the_ast_is_not_run(tiny):
    mlm, tok, _, _ = tiny
    model = _model(tiny).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():  # nonzero LoRA B: the adapters would change every row they touch
            if "lora_" in n:
                p.normal_(0, 0.5)
    batch = _batch(tok)
    calls = []
    hook = model.audio_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            logits = model(**batch)
            ref = copy.deepcopy(mlm).eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            calls.clear()
            none = {**batch, "span_first_token": torch.full_like(batch["span_first_token"], NO_SPAN)}
            spanless = model(**none)
    finally:
        hook.remove()
    assert torch.allclose(logits[2:], ref[2:], atol=1e-6, rtol=0)
    assert not torch.allclose(logits[:2], ref[:2], atol=1e-3)
    assert torch.allclose(spanless, ref, atol=1e-6, rtol=0) and calls == []


def test_the_ast_trains_jointly_and_bert_stays_frozen(tiny):
    _, tok, _, _ = tiny
    model = _model(tiny)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("audio_encoder.")} == {n for n in before if n.startswith("audio_encoder.")}
    assert model.trainable_parameter_count() == model.lora_parameter_count() + sum(
        p.numel() for p in model.audio_encoder.parameters())  # no projection at equal widths
    fit(model, _batch(tok, with_labels=True), TrainConfig(lr=1e-2, epochs=1, batch_size=4, warmup_ratio=0.0))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    ast_changed = {n for n in changed if n.startswith("audio_encoder.")}
    # one optimiser step moves the AST's weights (its patch embedding, attention, final norm)
    assert "audio_encoder.embeddings.patch_embeddings.projection.weight" in ast_changed
    assert any(".attention." in n for n in ast_changed) and "audio_encoder.layernorm.weight" in ast_changed
    assert any("lora_" in n for n in changed)
    assert changed <= trainable  # BERT's own weights (and its MLM head) never move


def test_a_narrower_ast_goes_through_a_trained_projection(tiny):
    mlm, tok, ast, bank = tiny
    cfg = dict(ast.config.to_dict())
    cfg.update(hidden_size=16, intermediate_size=32)
    from transformers import ASTConfig, ASTModel

    small = ASTModel(ASTConfig(**{k: v for k, v in cfg.items() if k in ASTConfig().to_dict()}))
    model = AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=16, lora_r=4, lora_alpha=8, audio_source="ast"),
                      audio_encoder=small)
    assert isinstance(model.audio_proj, torch.nn.Linear) and model.audio_proj.in_features == 16
    model.set_audio_bank(bank)
    with torch.no_grad():
        assert model(**_batch(tok)).shape[0] == 4


def test_ast_inputs_are_checked(tiny):
    mlm, tok, ast, bank = tiny
    with pytest.raises(ValueError, match="needs the AST"):
        AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=32, audio_source="ast"))
    with pytest.raises(ValueError, match="takes no audio_encoder"):
        AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=32), audio_encoder=ast)
    with pytest.raises(ValueError, match="32 wide"):
        AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=16, audio_source="ast"), audio_encoder=ast)
    model = _model(tiny)
    batch = _batch(tok)
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        model(**{**batch, "audio_clip": torch.tensor([5, 0, -1, -1])})
    with pytest.raises(ValueError, match="reads audio_clip"):
        model(**{**batch, "audio_embedding": torch.zeros(4, 32)})
    fresh = AudioBert(copy.deepcopy(mlm), AudioBertConfig(d_audio=32, audio_source="ast"), audio_encoder=ast)
    with pytest.raises(ValueError, match="set_audio_bank"):
        fresh(**batch)


def test_trial_reads_the_retrieved_clips_into_a_jointly_trained_ast(tmp_path, monkeypatch):
    """The study end to end, retrieving from LAION-Audio-630K's tar layout (tiny BERT, tiny CLAP for
    retrieval, tiny AST): the context names each slot's retrieved clip (a member of a shard), the AST
    reads it in place, and the trial's trainable weights are LoRA plus the whole AST."""
    from pathlib import Path

    import yaml

    from ausweep.audiobert import study
    from ausweep.config import from_dict
    from ausweep.data.sources import load_soundset
    from tests.tiny import make_laion630k

    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path / "cache"))
    shards = {"name0.tar": [("1", "flac", ["A dog barks."]), ("2", "flac", ["A cat meows."])],
              "name1.tar": [("3", "flac", ["A cow moos in a field."]), ("4", "wav", ["A church bell rings."])]}
    make_laion630k(tmp_path / "laion" / "train", shards)
    d = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "audiobert" / "demo.yaml").read_text())
    d.update(max_items=4, eval_splits=["dev"])
    d["train"].update(epochs=1)
    d["retrieval"]["corpus"] = {"source": "laion630k", "root": str(tmp_path / "laion"), "max_seconds": 2.0}
    d["retrieval"]["extract"]["cache_dir"] = str(tmp_path / "embeddings")
    d["adapter"].update(audio_source="ast", audio_encoder="tiny-ast")
    cfg = from_dict(study.AudioBertExperiment, d, where="demo.yaml")
    ctx = study.auditory_context(cfg)
    corpus = load_soundset(cfg.retrieval.corpus)
    for s in ("train", "dev"):
        clip, path = ctx[s]["clip"], ctx[s]["clip_path"]
        assert path.shape == clip.shape and (clip >= 0).any()
        assert path.tolist() == [[corpus.clips[c].path if c >= 0 else "" for c in row] for row in clip.tolist()]
        assert all(".tar#fsx/processed/train/" in p for p in path.ravel().tolist() if p)
    final = list(study.trial(cfg))[-1]
    ast, _ = study.load_ast("tiny-ast")
    assert final["trainable_params"] == final["lora_params"] + sum(p.numel() for p in ast.parameters())
    assert final["lora_params"] == final["lora_params_formula"]
