"""Self-supervised waveform encoders that transformers loads natively: HuBERT, wav2vec 2.0,
data2vec-audio (and WavLM). The self-supervised side of the probing study next to AudioMAE.

The reference implementation is transformers' own model class (a checked port of fairseq's), so
ausweep adds only the front end call and the pooling; ``tests/unit/test_ssl_audio.py`` checks both
against a direct transformers forward pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ausweep.models.audio import _TransformerAudioEncoder

MODEL_TYPES = ("hubert", "wav2vec2", "data2vec-audio", "wavlm")


class SelfSupervisedEncoder(_TransformerAudioEncoder):
    """A HuBERT / wav2vec 2.0 / data2vec-audio / WavLM encoder, mean-pooled over time.

    Sample rate 16 kHz. Front end: the model's own feature extractor on the raw waveform (zero mean
    and unit variance per clip where its config says ``do_normalize``, e.g. wav2vec2-base; not for
    hubert-base-ls960), then the convolutional feature encoder (one frame per 20 ms, 25 ms receptive
    field). Clip length: the whole clip in one pass, clip by clip: these models take no attention
    mask (base sizes use group norm), so zero padding in a batch would change a clip's vector. Clips
    shorter than 400 samples (one frame) are zero-padded to it.

    Pooling: ``mean`` over all frames of the clip, of the final output (``layer=None``, the last
    transformer layer) or of hidden state ``layer`` (0 = the feature projection's output after
    the convolutional position embedding, k = after layer k).
    """

    min_samples = 400

    def __init__(self, model: Any, feature_extractor: Any, name: str, **kw: Any):
        super().__init__(model, feature_extractor, name, **kw)
        self.dim = int(model.config.hidden_size)

    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.no_grad():
            for w in waves:
                if len(w) < self.min_samples:
                    w = np.pad(w, (0, self.min_samples - len(w)))
                x = self.fe(w, sampling_rate=self.sample_rate, return_tensors="pt")["input_values"]  # (1, samples)
                o = self.model(x.to(self.device, dtype=next(self.model.parameters()).dtype),
                               output_hidden_states=self.layer is not None)
                out.append(self._pick(o)[0].float().mean(0).cpu().numpy())  # (frames, D) -> (D,)
        return np.stack(out)


def load_ssl_audio(name: str, path: str, device: str = "cpu", revision: str | None = None, **options: Any) -> SelfSupervisedEncoder:
    """Load a self-supervised waveform model (hub id or local folder) and its feature extractor."""
    import transformers as tf

    from ausweep.models.text import _from_pretrained, hub_errors

    with hub_errors(path, revision):
        config = tf.AutoConfig.from_pretrained(path, revision=revision)
        if config.model_type not in MODEL_TYPES:
            raise ValueError(f"audio model '{name}' has model_type '{config.model_type}', not one of {MODEL_TYPES}")
        model = _from_pretrained(tf.AutoModel, path, device, revision=revision)
        fe = tf.AutoFeatureExtractor.from_pretrained(path, revision=revision)
    return SelfSupervisedEncoder(model, fe, name, device=device, **options)
