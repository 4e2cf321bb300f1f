"""Self-supervised waveform encoders (HuBERT, wav2vec 2.0, data2vec-audio) through ausweep, against
a direct transformers forward pass of the same tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf

from ausweep.models.audio import check_audio_model, load_audio_encoder
from ausweep.models.catalog import ModelUnavailableError
from ausweep.models.ssl_audio import SelfSupervisedEncoder

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=2, vocab_size=10)


@pytest.fixture(params=[("hubert", tf.HubertConfig, tf.HubertModel, False),
                        ("wav2vec2", tf.Wav2Vec2Config, tf.Wav2Vec2Model, True),
                        ("data2vec-audio", tf.Data2VecAudioConfig, tf.Data2VecAudioModel, True)])
def folder(request, tmp_path):
    kind, config_cls, model_cls, normalize = request.param
    torch.manual_seed(0)
    model = model_cls(config_cls(**TINY)).eval()
    model.save_pretrained(tmp_path)
    tf.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=normalize,
                                return_attention_mask=False).save_pretrained(tmp_path)
    return tmp_path, model, normalize


def _clips(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.3 * np.sin(np.arange(n) / (7 + i)) + 0.05 * rng.standard_normal(n)).astype(np.float32)
            for i, n in enumerate(lengths)]


def test_mean_pooling_matches_transformers(folder):
    path, model, normalize = folder
    enc = load_audio_encoder(str(path))
    assert isinstance(enc, SelfSupervisedEncoder) and (enc.sample_rate, enc.dim) == (16000, 32)
    clips = _clips([16000, 5000, 12345])
    got = enc.embed(clips)
    for clip, vec in zip(clips, got):
        x = torch.from_numpy(clip)[None]
        if normalize:  # the feature extractor's per-clip zero mean, unit variance
            x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        with torch.no_grad():
            ref = model(x).last_hidden_state[0].mean(0).numpy()
        assert np.abs(vec - ref).max() < 1e-4
    # no padding across a batch: a clip alone gives the same vector as in a batch of longer clips
    np.testing.assert_allclose(enc.embed(clips[1:2])[0], got[1], atol=1e-5)
    # hidden-state choice: layer 1 is the first transformer layer's output
    enc1 = load_audio_encoder(str(path), layer=1)
    x = torch.from_numpy(clips[0])[None]
    if normalize:
        x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        ref1 = model(x, output_hidden_states=True).hidden_states[1][0].mean(0).numpy()
    assert np.abs(enc1.embed(clips[:1])[0] - ref1).max() < 1e-4
    with pytest.raises(ValueError, match="out of range"):
        load_audio_encoder(str(path), layer=5)
    # shorter than one frame: padded to 400 samples, finite
    assert np.isfinite(enc.embed(_clips([100]))).all()


def test_registered_names_fail_clearly_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("hubert-base", "wav2vec2-base", "data2vec-audio-base"):
        check_audio_model(name)
    with pytest.raises(ModelUnavailableError, match="facebook/hubert-base-ls960"):
        load_audio_encoder("hubert-base")
