"""LAION-CLAP original checkpoints through ausweep (transformers ClapModel) against laion_clap's own
model code: the reference CLAP (real HTSAT-tiny, a small RoBERTa text branch) is built with random
weights, saved in the released files' layout, loaded through ausweep, and must give the same audio
embeddings on the same audio (max abs difference < 1e-4) with every key of the file accounted for.

laion_clap imports torchvision (stubbed: tests/reference_stubs.py), h5py / ftfy / wget / braceexpand /
webdataset (data pipeline only, stubbed as empty modules) and fetches roberta-base from the hub in
CLAP.__init__ (replaced by a small random RoBERTa). Skipped where laion_clap or torchlibrosa is missing.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from ausweep.models.audio import load_audio_encoder
from ausweep.models.catalog import ModelUnavailableError
from ausweep.models.laion_clap import (
    CHECKED,
    OFFICIAL,
    SMALL_TEXT,
    UNUSED,
    clap_config,
    compare_with_reference,
    convert_state_dict,
    load_clap_model,
    reference_model,
    save_official_layout,
)
from tests.reference_stubs import torchvision_stub

TEXT = SMALL_TEXT


def _reference_clap(fusion: bool = False):
    for mod in ("laion_clap", "torchlibrosa"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed (pip install --no-deps laion_clap torchlibrosa)")
    with torchvision_stub():
        return reference_model("HTSAT-tiny", fusion=fusion)


def _official_file(model, path):
    return save_official_layout(model, path, TEXT["max_position_embeddings"])


def _clips(seconds, seed=0):
    g = np.random.default_rng(seed)
    # int16-exact samples: LAION's own loader quantises to int16, ausweep does not
    return [np.round(0.3 * g.standard_normal(int(s * 48000)).clip(-1, 1) * 32767).astype(np.float32) / 32767 for s in seconds]


def test_laion_clap_file_gives_the_reference_audio_embeddings(tmp_path, monkeypatch):
    ref = _reference_clap(fusion=False)
    _official_file(ref, tmp_path / "630k-audioset-best.pt")
    monkeypatch.setenv("AUSWEEP_CHECKPOINTS", str(tmp_path))
    # the registry path, with the small text branch of this reference
    import ausweep.models.laion_clap as lc

    model, fe = load_clap_model("laion-clap", tmp_path / "630k-audioset-best.pt", text=TEXT)
    monkeypatch.setattr(lc, "load_clap_model", lambda name, path, text=None: (model, fe))
    enc = load_audio_encoder("laion-clap")
    waves = _clips([10.0, 3.3])
    got = enc.embed(waves)
    # laion_clap's eval input for a 10 s window: the waveform itself, or a short clip repeated then zero-padded
    batch = []
    for w in waves:
        x = np.tile(w, 480000 // len(w)) if len(w) < 480000 else w[:480000]
        batch.append({"waveform": torch.from_numpy(np.pad(x, (0, 480000 - len(x)))), "longer": torch.tensor([False])})
    with torch.no_grad():
        want = ref.get_audio_embedding(batch).numpy()
    assert got.shape == (2, 512)
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()
    assert np.abs(want).max() > 0.05  # not comparing zeros
    # the text tower (AudioBERT's retrieval queries): same ids through both
    ids = torch.tensor([[0, 5, 17, 42, 2, 1, 1], [0, 8, 9, 2, 1, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        want_t = torch.nn.functional.normalize(ref.encode_text({"input_ids": ids, "attention_mask": mask}, "cpu"), dim=-1)
        got_t = model.get_text_features(input_ids=ids, attention_mask=mask)
        got_t = torch.nn.functional.normalize(got_t if isinstance(got_t, torch.Tensor) else got_t.pooler_output, dim=-1)
    assert (got_t - want_t).abs().max() < 1e-4
    # AudioBERT's retrieval towers from the same file (tokenizer: a small local one instead of roberta-base)
    from ausweep.models.laion_clap import load_clap_text_audio
    from ausweep.models.tiny import TINY_TEXT, tiny_tokenizer

    tiny_tokenizer(TINY_TEXT["tiny-bert"]["tokenizer"]).save_pretrained(tmp_path / "tok")
    towers = load_clap_text_audio("laion-clap", tokenizer=str(tmp_path / "tok"), text=TEXT)
    enc_ids = towers.tokenizer(["dog barking"], return_tensors="pt")
    with torch.no_grad():
        want_q = torch.nn.functional.normalize(ref.encode_text(dict(enc_ids), "cpu"), dim=-1)
    assert (towers.embed_text(["dog barking"]) - want_q).abs().max() < 1e-4
    np.testing.assert_allclose(towers.embed_audio(waves[:1]).numpy(), want[:1], atol=1e-4)


def test_every_key_of_the_file_is_loaded_checked_or_named(tmp_path):
    ref = _reference_clap(fusion=True)
    state = _official_file(ref, tmp_path / "f.pt")
    import transformers as tf

    from ausweep.models.laion_clap import feature_extractor, read_state_dict

    plain = read_state_dict(tmp_path / "f.pt")
    assert set(plain) == {k[7:] for k in state}
    hf = tf.ClapModel(clap_config("HTSAT-tiny", True, TEXT))
    converted, unused = convert_state_dict(plain, hf, fe=feature_extractor(True))
    assert unused and all(k.startswith(tuple(UNUSED)) for k in unused)
    qkv = [k for k in plain if ".attn.qkv." in k]
    masks = [k for k in plain if k.endswith(".attn_mask")]
    accounted = len(converted) - 2 - len(qkv) * 3 + len(qkv) + len(unused) + len(CHECKED) + len(masks)  # 2: HF's id buffers
    assert accounted == len(plain)
    hf.load_state_dict(converted, strict=True)
    hf.eval()
    # fusion: the same 4-channel mel input through both models (LAION computes it outside HTSAT with torchaudio)
    mel = torch.randn(2, 4, 1001, 64)
    longer = torch.tensor([[True], [False]])
    with torch.no_grad():
        want = ref.audio_projection(ref.encode_audio({"mel_fusion": mel, "longer": longer.flatten()}, "cpu")["embedding"])
        got = hf.audio_projection(hf.audio_model(input_features=mel, is_longer=longer).pooler_output)
    assert (got - want).abs().max() < 1e-4 and want.abs().max() > 0.05
    with pytest.raises(ValueError, match=r"unexpected \['surprise'\]"):
        convert_state_dict({**plain, "surprise": torch.zeros(1)}, hf)
    with pytest.raises(ValueError, match="missing"):
        convert_state_dict({k: v for k, v in plain.items() if not k.startswith("audio_projection.2")}, hf)


def test_missing_laion_checkpoint_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("AUSWEEP_CACHE", str(tmp_path))
    monkeypatch.delenv("AUSWEEP_CHECKPOINTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as e:
        load_audio_encoder("laion-clap-music-speech")
    msg = str(e.value)
    assert "\n" not in msg and OFFICIAL["laion-clap-music-speech"].filename in msg
    assert "huggingface.co/lukewys/laion_clap" in msg and "AUSWEEP_CHECKPOINTS" in msg


def test_compare_with_reference_for_the_gpu_script():
    _reference_clap()  # skips without laion_clap
    with torchvision_stub():
        diffs = compare_with_reference()
    assert diffs["scale"] > 0.05 and diffs["audio_proj"] < 1e-4 and diffs["text_proj"] < 1e-4, diffs
