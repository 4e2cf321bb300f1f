"""AudioMAE (Huang et al. 2022, "Masked Autoencoders that Listen") from its official checkpoint files.

Two registry entries, both the ViT-B/16 encoder of github.com/facebookresearch/AudioMAE:

* ``audiomae``: self-supervised (MAE) pre-training on AudioSet-2M, ``pretrained.pth``. The file
  holds the whole masked autoencoder; the encoder is read, the decoder keys (``decoder_*``,
  ``mask_token``) are the only ones left, and by name.
* ``audiomae-ft``: the same model fine-tuned on AudioSet-2M (47.3 mAP), ``finetuned.pth``: the
  encoder without its final norm, plus ``fc_norm`` and the 527-way ``head``.

Frontend (the official ``dataset.py``, eval mode): 16 kHz mono; Kaldi fbank with 128 mel bins,
25 ms Hanning windows every 10 ms, no dither, no energy; zero-padded or cut to 1024 frames
(10.24 s); normalised as ``(fbank + 4.2677393) / (2 * 4.5689974)`` (AudioSet mean and std, the
AST constants). transformers' ``ASTFeatureExtractor`` with these settings computes it (torchaudio's
Kaldi code when torchaudio loads, else the same steps in NumPy). Clips longer than 10.24 s are
cut, as the official loader cuts them; there is no sliding window.

Encoder: 16x16 patches without overlap on the (1024 frames x 128 bins) image, a 64 x 8 grid read
time-major (token ``1 + 8 t + f``), fixed sin-cos position embeddings stored in the file, a CLS
token, 12 pre-norm blocks (768 wide, 12 heads, LayerNorm eps 1e-6, exact GELU).

Pooling (``pooling=``), always from one forward pass with every patch visible (no masking):

* ``mean`` (default): mean of the patch tokens whose time row starts inside the clip, so a short
  clip is not diluted by the padding. ``audiomae``: of the final (normed) output; ``audiomae-ft``:
  then ``fc_norm``, the vector its classifier reads.
* ``global``: the official pooling, mean over all 512 patch tokens, padding included (then
  ``fc_norm`` for ``audiomae-ft``). For ``audiomae-ft`` this is exactly the official
  ``forward_features``; :func:`compare_with_reference` checks it.
* ``cls``: the CLS token (``audiomae``: after the final norm; ``audiomae-ft`` has no final norm,
  so the last block's CLS output).

``layer=i`` pools hidden state ``i`` instead (0: patch + position embeddings, 12: after the last
block, before any norm). The checkpoint file is found as :mod:`ausweep.models.checkpoint_files`
says: ``checkpoint=PATH``, else ``pretrained.pth`` / ``finetuned.pth`` in ``$AUSWEEP_CHECKPOINTS``
or ``$AUSWEEP_CACHE/checkpoints``, else downloaded from the official link when online.

Verification: the official code is timm-based and timm needs torchvision, which does not load
here. :data:`OFFICIAL_KEYS` lists the keys and shapes the official definition gives the two files,
and loading requires each of them to be consumed; the tests also compare against timm's
``VisionTransformer`` (which the official ``models_vit.VisionTransformer`` subclasses) where timm
imports, and :func:`compare_with_reference` runs the full comparison on a machine with timm and
torchvision (the GPU script), optionally with the official ``models_vit.py`` from a checkout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ausweep.models.audio import AudioEncoderBase, _fbank_frames, _masked_mean, _patches_in_clip

SAMPLE_RATE = 16000
NORM_MEAN, NORM_STD = -4.2677393, 4.5689974  # official dataset.py norm_stats["audioset"]
KINDS = ("pretrained", "finetuned")
#: Keys of the pre-training file that belong to the MAE decoder (models_mae.MaskedAutoencoderViT),
#: not to the encoder; the only keys left unused, and only in the ``pretrained`` file.
DECODER_PREFIXES = ("decoder_", "mask_token")


@dataclass(frozen=True)
class AudioMAEConfig:
    """Shape of an AudioMAE encoder. Defaults: the released ViT-B/16 on 1024 x 128 fbank."""

    kind: str = "pretrained"  # "pretrained": final norm; "finetuned": fc_norm + head, no final norm
    frames: int = 1024
    mels: int = 128
    patch: int = 16
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: int = 4
    num_classes: int = 527
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"AudioMAE kind must be one of {KINDS}, got {self.kind!r}")
        if self.frames % self.patch or self.mels % self.patch:
            raise ValueError(f"AudioMAE frames {self.frames} and mels {self.mels} must be multiples of patch {self.patch}")
        if self.dim % self.heads:
            raise ValueError(f"AudioMAE dim {self.dim} must be divisible by heads {self.heads}")

    @property
    def grid(self) -> tuple[int, int]:
        """(time rows, frequency columns) of the patch grid: (64, 8) for the released model."""
        return self.frames // self.patch, self.mels // self.patch


def official_keys(cfg: AudioMAEConfig = AudioMAEConfig()) -> dict[str, tuple[int, ...]]:
    """The encoder keys and shapes of an official AudioMAE file, as its definition gives them.

    Provenance (facebookresearch/AudioMAE at bd60e29, read 2026-12-02): ``models_vit.py``
    subclasses timm's ``VisionTransformer`` (``cls_token``, ``pos_embed``, ``blocks.i`` with timm's
    ``Block``: ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``; ``head``),
    deletes ``norm`` and adds ``fc_norm`` (global_pool=True, the default of main_finetune_as.py);
    main_finetune_as.py swaps in ``PatchEmbed_new`` (``patch_embed.proj``, a Conv2d with 1 input
    channel, stride 16) and a ``pos_embed`` of 1 + 512 positions. ``models_mae.py``'s
    ``MaskedAutoencoderViT`` has the same encoder keys with ``norm`` and no ``fc_norm``/``head``,
    plus the decoder keys (:data:`DECODER_PREFIXES`).
    """
    d, hidden = cfg.dim, cfg.dim * cfg.mlp_ratio
    t, f = cfg.grid
    keys: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + t * f, d),
        "patch_embed.proj.weight": (d, 1, cfg.patch, cfg.patch),
        "patch_embed.proj.bias": (d,),
    }
    for i in range(cfg.depth):
        b = f"blocks.{i}."
        keys.update({
            b + "norm1.weight": (d,), b + "norm1.bias": (d,),
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "mlp.fc1.weight": (hidden, d), b + "mlp.fc1.bias": (hidden,),
            b + "mlp.fc2.weight": (d, hidden), b + "mlp.fc2.bias": (d,),
        })
    if cfg.kind == "pretrained":
        keys.update({"norm.weight": (d,), "norm.bias": (d,)})
    else:
        keys.update({"fc_norm.weight": (d,), "fc_norm.bias": (d,),
                     "head.weight": (cfg.num_classes, d), "head.bias": (cfg.num_classes,)})
    return keys


#: The released files' encoder keys and shapes (see :func:`official_keys`).
OFFICIAL_KEYS = {kind: official_keys(AudioMAEConfig(kind=kind)) for kind in KINDS}


# ----------------------------------------------------------------------------- model


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, N, D)
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d_head)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block; module names follow timm so the official keys load as they are."""

    def __init__(self, cfg: AudioMAEConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.attn = _Attention(cfg.dim, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.mlp = _Mlp(cfg.dim, cfg.dim * cfg.mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, cfg: AudioMAEConfig):
        super().__init__()
        self.proj = nn.Conv2d(1, cfg.dim, kernel_size=cfg.patch, stride=cfg.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, frames, mels) -> (B, t * f, D), time-major
        return self.proj(x).flatten(2).transpose(1, 2)


class AudioMAEModel(nn.Module):
    """The AudioMAE ViT encoder; ``state_dict()`` keys are exactly :func:`official_keys`."""

    def __init__(self, cfg: AudioMAEConfig = AudioMAEConfig()):
        super().__init__()
        self.cfg = cfg
        t, f = cfg.grid
        self.patch_embed = _PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + t * f, cfg.dim))
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.depth))
        if cfg.kind == "pretrained":
            self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        else:
            self.fc_norm = nn.LayerNorm(cfg.dim, eps=cfg.eps)
            self.head = nn.Linear(cfg.dim, cfg.num_classes)

    def forward(self, fbank: torch.Tensor, output_hidden_states: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``fbank`` (B, frames, mels), normalised -> (final tokens (B, 1 + t * f, D), hidden states).

        Final tokens: after ``norm`` (pretrained) or the last block's output (finetuned, which has
        no final norm). Hidden states (when asked): ``depth + 1`` tensors, embeddings first.
        """
        x = self.patch_embed(fbank.unsqueeze(1)) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        hidden = [x] if output_hidden_states else []
        for block in self.blocks:
            x = block(x)
            if output_hidden_states:
                hidden.append(x)
        if self.cfg.kind == "pretrained":
            x = self.norm(x)
        return x, hidden

    def global_pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The official pooling: mean over every patch token, then ``fc_norm`` (finetuned). (B, D)."""
        pooled = tokens[:, 1:].mean(1)
        return self.fc_norm(pooled) if self.cfg.kind == "finetuned" else pooled

    def logits(self, fbank: torch.Tensor) -> torch.Tensor:
        """The fine-tuned model's 527 AudioSet logits (the official ``forward`` in eval mode)."""
        if self.cfg.kind != "finetuned":
            raise ValueError("only the fine-tuned AudioMAE has a classifier head")
        return self.head(self.global_pool(self(fbank)[0]))


# ----------------------------------------------------------------------------- checkpoint


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official AudioMAE file (``{"model": state_dict, ...}`` or a bare state dict)."""
    import argparse

    path = Path(path)
    try:
        # official files are written by util/misc.save_model: the state dict plus argparse args
        from ausweep.models.checkpoint_files import _numpy_globals

        with torch.serialization.safe_globals([argparse.Namespace, *_numpy_globals()]):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable AudioMAE checkpoint ({type(e).__name__}: {str(e)[:200]})") from e
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: field 'model' is not a state dict of tensors")
    return state


def load_state(model: AudioMAEModel, state: dict[str, torch.Tensor], source: str = "checkpoint") -> list[str]:
    """Load an official state dict into ``model``, requiring every encoder key and no stranger.

    Returns the keys deliberately left out (the MAE decoder's, pretrained file only). Raises
    ``ValueError`` naming ``source`` and the keys that are missing, unexpected or of the wrong shape.
    """
    cfg = model.cfg
    skipped = sorted(k for k in state if cfg.kind == "pretrained" and k.startswith(DECODER_PREFIXES))
    enc = {k: v for k, v in state.items() if k not in skipped}
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(want) - set(enc))
    unexpected = sorted(set(enc) - set(want))
    bad = sorted(f"{k} {tuple(enc[k].shape)} != {want[k]}" for k in set(want) & set(enc) if tuple(enc[k].shape) != want[k])
    if missing or unexpected or bad:
        hint = ""
        if cfg.kind == "pretrained" and "head.weight" in enc:
            hint = " (this looks like the fine-tuned file: use audiomae-ft)"
        elif cfg.kind == "finetuned" and "norm.weight" in enc:
            hint = " (this looks like the pre-trained file: use audiomae)"
        raise ValueError(
            f"{source}: not an AudioMAE {cfg.kind} ViT-B/16 state dict{hint}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"wrong shape {bad[:3]}"
        )
    model.load_state_dict({k: v.float() for k, v in enc.items()}, strict=True)
    return skipped


def front_end(cfg: AudioMAEConfig = AudioMAEConfig()) -> Any:
    """The official eval-time frontend as a transformers ``ASTFeatureExtractor`` (see module doc)."""
    from transformers import ASTFeatureExtractor

    return ASTFeatureExtractor(sampling_rate=SAMPLE_RATE, num_mel_bins=cfg.mels, max_length=cfg.frames,
                               mean=NORM_MEAN, std=NORM_STD, do_normalize=True)


# ----------------------------------------------------------------------------- encoder


class AudioMAEAudioEncoder(AudioEncoderBase):
    """One pooled vector per clip from :class:`AudioMAEModel`; poolings as in the module docstring."""

    poolings = ("mean", "global", "cls")

    def __init__(self, model: AudioMAEModel, name: str, device: str = "cpu", pooling: str = "mean",
                 layer: int | None = None, batch_size: int = 16):
        if pooling not in self.poolings:
            raise ValueError(f"audio model '{name}' supports pooling {self.poolings}, got {pooling!r}")
        n = model.cfg.depth + 1
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -n <= layer < n):
            raise ValueError(
                f"layer {layer!r} is out of range for audio model '{name}': it has {n} hidden states "
                f"(0 = embeddings, -1 = last block, before any norm); valid {-n}..{n - 1}, or None for the final output"
            )
        self.model = model.to(device).eval()
        self.fe = front_end(model.cfg)
        self.name, self.device, self.pooling, self.layer, self.batch_size = name, device, pooling, layer, batch_size
        self.sample_rate = SAMPLE_RATE
        self.dim = model.cfg.dim
        self.num_hidden_states = n

    def features(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, frames, mels) normalised fbank, as the official eval loader makes it."""
        return self.fe(list(waves), sampling_rate=self.sample_rate, return_tensors="pt")["input_values"]

    @torch.no_grad()
    def _embed_batch(self, waves: list[np.ndarray]) -> np.ndarray:
        cfg = self.model.cfg
        final, hidden = self.model(self.features(waves).to(self.device), output_hidden_states=self.layer is not None)
        h = (final if self.layer is None else hidden[self.layer]).float()  # (B, 1 + t * f, D)
        if self.pooling == "cls":
            return h[:, 0].cpu().numpy()
        if self.pooling == "global":
            pooled = h[:, 1:].mean(1)
        else:
            t_dim, f_dim = cfg.grid
            n_frames = _fbank_frames([len(w) for w in waves], cfg.frames)
            rows = _patches_in_clip(n_frames, t_dim, cfg.patch)  # (B, t_dim)
            pooled = _masked_mean(h[:, 1:], rows.repeat_interleave(f_dim, dim=1).to(h.device))  # time-major grid
        if cfg.kind == "finetuned" and self.layer is None:
            pooled = self.model.fc_norm(pooled)  # what the fine-tuned classifier reads
        return pooled.cpu().numpy()


def build(kind: str, checkpoint: str | Path | None = None, cfg: AudioMAEConfig | None = None) -> AudioMAEModel:
    """An :class:`AudioMAEModel` with the weights of an official file (or random, seeded, without one)."""
    cfg = cfg or AudioMAEConfig(kind=kind)
    model = AudioMAEModel(cfg)
    if checkpoint is not None:
        load_state(model, read_checkpoint(checkpoint), source=str(checkpoint))
    return model.eval()


def _gdrive(file_id: str) -> str:
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


#: The released files, linked from the README of github.com/facebookresearch/AudioMAE ("Checkpoints",
#: Google Drive ids 1ni_DV4dRf7GxM8k-Eirx71WP9Gg89wwu and 18EsFOyZYvBYHkJ7_n7JFFWbj6crz01gq), under
#: the names the README gives them. min_bytes: ViT-B in float32 is ~343 MB (the pretrained file
#: also holds the decoder); anything much smaller is a consent page or a broken download.
FILES = {
    "pretrained": dict(filename="pretrained.pth", url=_gdrive("1ni_DV4dRf7GxM8k-Eirx71WP9Gg89wwu"), min_bytes=300_000_000),
    "finetuned": dict(filename="finetuned.pth", url=_gdrive("18EsFOyZYvBYHkJ7_n7JFFWbj6crz01gq"), min_bytes=300_000_000),
}


def load_audiomae(name: str = "audiomae", kind: str = "pretrained", checkpoint: str | None = None, device: str = "cpu",
                  revision: str | None = None, download: bool | None = None, **options: Any) -> AudioMAEAudioEncoder:
    """Registry loader of ``audiomae`` / ``audiomae-ft``: the official file, found as
    :func:`ausweep.models.checkpoint_files.locate` says (``checkpoint=PATH``, ``$AUSWEEP_CHECKPOINTS``,
    ``$AUSWEEP_CACHE/checkpoints``; downloaded from the official link when online)."""
    from ausweep.models.checkpoint_files import OfficialFile, locate

    if revision is not None:
        raise ValueError(f"audio model '{name}' loads an official checkpoint file; it has no revisions (pass checkpoint=PATH)")
    if kind not in FILES:
        raise ValueError(f"AudioMAE kind must be one of {KINDS}, got {kind!r}")
    path = locate(OfficialFile(model=name, **FILES[kind]), checkpoint, download=download)
    return AudioMAEAudioEncoder(build(kind, path), name, device=device, **options)


# ----------------------------------------------------------------------------- reference comparison


def timm_reference(cfg: AudioMAEConfig) -> nn.Module:
    """timm's ``VisionTransformer`` set up as the official AudioMAE encoder (needs timm importable).

    ``models_vit.VisionTransformer`` subclasses it and only overrides ``forward_features`` with the
    same steps timm's ``global_pool='avg'`` path takes (patch mean, then ``fc_norm``); the MAE
    encoder is timm's ``forward_features`` with a CLS token and a final norm.
    """
    from functools import partial

    from timm.models.vision_transformer import VisionTransformer

    ft = cfg.kind == "finetuned"
    return VisionTransformer(
        img_size=(cfg.frames, cfg.mels), patch_size=cfg.patch, in_chans=1, embed_dim=cfg.dim, depth=cfg.depth,
        num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=cfg.eps),
        global_pool="avg" if ft else "token", fc_norm=ft, num_classes=cfg.num_classes if ft else 0,
    ).eval()


def _official_models_vit(repo: str | Path, cfg: AudioMAEConfig) -> nn.Module:
    """The official ``models_vit.vit_base_patch16`` from an AudioMAE checkout, set up as
    main_finetune_as.py does for AudioSet (PatchEmbed_new, 513 positions, global pool)."""
    import importlib
    import sys

    sys.path.insert(0, str(repo))
    try:
        models_vit = importlib.import_module("models_vit")
        patch_embed = importlib.import_module("util.patch_embed")
    finally:
        sys.path.remove(str(repo))
    model = models_vit.vit_base_patch16(num_classes=cfg.num_classes, drop_path_rate=0.0, global_pool=True,
                                        mask_2d=True, use_custom_patch=False)
    model.patch_embed = patch_embed.PatchEmbed_new(img_size=(cfg.frames, cfg.mels), patch_size=(16, 16), in_chans=1,
                                                   embed_dim=cfg.dim, stride=16)
    model.pos_embed = nn.Parameter(torch.zeros(1, model.patch_embed.num_patches + 1, cfg.dim), requires_grad=False)
    return model.eval()


def random_state(shapes: dict[str, tuple[int, ...]], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random weights at trained-like scales (matrices std 0.02, norm gains about 1, biases and
    position embeddings std 0.02-0.5), so outputs are O(1) and a max-abs tolerance means something."""
    out = {}
    for k, shape in shapes.items():
        x = torch.randn(shape, generator=generator)
        if k.endswith(("norm.weight", "norm1.weight", "norm2.weight")):
            out[k] = 1 + 0.1 * x
        elif k in ("pos_embed", "cls_token"):
            out[k] = 0.5 * x
        else:
            out[k] = 0.02 * x
    return out


def compare_with_reference(kind: str = "finetuned", checkpoint: str | Path | None = None,
                           waves: Sequence[np.ndarray] | None = None, repo: str | Path | None = None,
                           device: str = "cpu", cfg: AudioMAEConfig | None = None, seed: int = 0) -> dict[str, float]:
    """Max abs differences between ausweep's AudioMAE and the reference on the same inputs.

    For the GPU script (timm and torchvision importable there) and ``python -m ausweep.models.verify``.
    The reference is timm's ``VisionTransformer`` configured as the official model, or, for
    ``kind='finetuned'`` with ``repo`` (an AudioMAE checkout), the official ``models_vit.py`` itself.
    Weights: the official ``checkpoint`` if given, else random (seeded) weights saved in the
    official layout, loaded strictly into both. ``waves``: 16 kHz clips (default: three seeded
    noise clips of 1, 4 and 12 s). When torchaudio loads, the frontend is also compared with the
    official ``torchaudio.compliance.kaldi.fbank`` call. Returns ``{"tokens": ..., "pooled": ...,
    "logits": ... (finetuned), "fbank": ... (torchaudio), "scale": max |pooled|}``; each difference
    should be < 1e-4 on CPU float32 (outputs are O(1): ``scale``)."""
    cfg = cfg or AudioMAEConfig(kind=kind)
    g = torch.Generator().manual_seed(seed)
    if waves is None:
        waves = [(0.1 * torch.randn(int(s * SAMPLE_RATE), generator=g)).numpy() for s in (1.0, 4.0, 12.0)]
    if repo is not None and cfg.kind == "finetuned":
        ref = _official_models_vit(repo, cfg)
    else:
        ref = timm_reference(cfg)
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            state = random_state({k: tuple(v.shape) for k, v in ref.state_dict().items()})
            if cfg.kind == "pretrained":  # the official layout also holds the decoder
                state["mask_token"] = torch.zeros(1, 1, 512)
                state["decoder_embed.weight"] = torch.zeros(512, cfg.dim)
    ours = build(cfg.kind, cfg=cfg)
    skipped = load_state(ours, state, source=str(checkpoint or "random official-layout state"))
    ref.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=True)
    enc = AudioMAEAudioEncoder(ours, f"audiomae-{cfg.kind}", device=device, pooling="global")
    ref = ref.to(device)
    x = enc.features(waves).to(device)  # (B, frames, mels)
    out: dict[str, float] = {}
    with torch.no_grad():
        tokens, _ = ours(x)
        if cfg.kind == "pretrained":
            ref_tokens = ref.forward_features(x.unsqueeze(1))
            out["tokens"] = float((tokens - ref_tokens).abs().max())
            out["pooled"] = float((ours.global_pool(tokens) - ref_tokens[:, 1:].mean(1)).abs().max())
        else:
            ref_pooled = ref.forward_features(x.unsqueeze(1)) if repo is not None else \
                ref.forward_head(ref.forward_features(x.unsqueeze(1)), pre_logits=True)
            out["pooled"] = float((ours.global_pool(tokens) - ref_pooled).abs().max())
            out["logits"] = float((ours.logits(x) - ref(x.unsqueeze(1))).abs().max())
        out["embed"] = float(np.abs(enc.embed(waves) - ours.global_pool(tokens).cpu().numpy()).max())
        scale = float(ours.global_pool(tokens).abs().max())
    try:  # the official frontend, where torchaudio loads (not a dependency: the GPU machine's optional extra)
        import importlib

        torchaudio = importlib.import_module("torchaudio")
    except Exception:  # noqa: BLE001 - torchaudio fails in many ways where its ops do not load
        return {**out, "scale": scale}
    diffs = []
    for i, w in enumerate(waves):
        wt = torch.from_numpy(np.asarray(w, dtype=np.float32))[None]
        fb = torchaudio.compliance.kaldi.fbank(wt - wt.mean(), htk_compat=True, sample_frequency=SAMPLE_RATE,
                                               use_energy=False, window_type="hanning", num_mel_bins=cfg.mels,
                                               dither=0.0, frame_shift=10)[: cfg.frames]
        fb = torch.nn.functional.pad(fb, (0, 0, 0, cfg.frames - fb.shape[0]))
        ref_x = (fb - NORM_MEAN) / (NORM_STD * 2)
        diffs.append(float((ref_x - x[i].cpu()).abs().max()))
    out["fbank"] = max(diffs)
    return {**out, "scale": scale}


def param_count(cfg: AudioMAEConfig = AudioMAEConfig()) -> int:
    """Parameters of the encoder (85.66 M for the fine-tuned ViT-B, as the official log prints)."""
    return sum(math.prod(s) for k, s in official_keys(cfg).items() if k != "pos_embed")


# ----------------------------------------------------------------------------- python -m ausweep.models.verify


def _verify(kind: str, name: str, checkpoint: str | None, make_clips: Any, device: str) -> list[Any]:
    """The official file (found or downloaded) through ausweep and through timm's VisionTransformer
    (or, with ``$AUSWEEP_AUDIOMAE_REPO`` naming an AudioMAE checkout, the official models_vit.py)."""
    import os

    from ausweep.models.checkpoint_files import OfficialFile, locate
    from ausweep.models.verify import CannotVerify, Check

    path = locate(OfficialFile(model=name, **FILES[kind]), checkpoint)
    try:
        import timm.models.vision_transformer  # noqa: F401 - needs torchvision too
    except Exception as e:  # noqa: BLE001 - ImportError, or torchvision's compiled ops failing to load
        raise CannotVerify(f"the reference needs timm and torchvision: pip install timm==1.0.31 ({e})") from e
    repo = os.environ.get("AUSWEEP_AUDIOMAE_REPO")
    diffs = compare_with_reference(kind, checkpoint=path, waves=make_clips(SAMPLE_RATE), repo=repo, device=device)
    scale = diffs.pop("scale")
    ref = "official models_vit.py" if repo and kind == "finetuned" else "timm VisionTransformer"
    return [Check(name, f"{what} vs {ref} (|out| {scale:.2g})", v) for what, v in diffs.items()]


def verify_audiomae(checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    """``python -m ausweep.models.verify audiomae``: pretrained.pth, all tokens and their mean."""
    return _verify("pretrained", "audiomae", checkpoint, make_clips, device)


def verify_audiomae_ft(checkpoint: str | None, make_clips: Any, device: str = "cpu") -> list[Any]:
    """``python -m ausweep.models.verify audiomae-ft``: finetuned.pth, pooled vector and logits."""
    return _verify("finetuned", "audiomae-ft", checkpoint, make_clips, device)
