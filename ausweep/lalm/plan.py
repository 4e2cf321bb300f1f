"""The memory plan of a LALM training preset, per GPU and per node, without weights or a GPU.

    python -m ausweep.lalm.plan configs/lalm/qwen3-14b.yaml
    python -m ausweep.lalm.plan configs/lalm/qwen3-14b.yaml lalm.llm_mode=full --gpus-per-node 8 --gpu-gib 80
    python -m ausweep.lalm.plan configs/lalm/qwen3-14b.yaml lalm.llm=Qwen/Qwen3-8B --json

The encoder and the LLM are built from their real ``config.json`` on PyTorch's meta device (shapes,
no storage): the files vendored in ``ausweep/models/resources/backbones/`` for the backbones the
sweeps name (see its SOURCE.md), a local model folder, or a tiny test model. The Q-Former and
projection are built the same way from the preset. Parameters shared between modules (tied
embeddings) count once.

**Model states** follow DeepSpeed's own accounting (``estimate_zero2_model_states_mem_needs``,
``estimate_zero3_model_states_mem_needs``), per trainable parameter in bf16 mixed precision: 2 B
weight, 2 B bf16 + 4 B fp32 gradient partitions, 4 B fp32 master weight and 8 B Adam moments; frozen
parameters (the encoder; the LLM under LoRA) hold only their 2 B weight. (ZeRO-3 keeps no bf16 gradient
partition: 2 + 4 + 4 + 8 = 18 B, DeepSpeed's figure; ZeRO-2 has 2 B of weight on every GPU + 18 B
partitioned.) ZeRO-2 keeps every weight
on every GPU and partitions gradients and optimizer states over the W ranks; ZeRO-3 partitions the
weights too and adds live buffers of 4 B x the largest layer (a gathered weight and its gradient).
``offload_optimizer`` moves gradients and optimizer states to host memory, ``offload_params`` the
weights. For full fine-tuning these figures agree with DeepSpeed's estimators (a test checks 5%).

**Activations** are ausweep's own estimate (DeepSpeed's estimators leave them out). Per decoder
layer, for micro-batch b and sequence s = num_queries + max_text_tokens, with fused (SDPA / flash)
attention that keeps no s x s score matrix, the tensors kept for the backward pass are
b s (4 h + 2 a d + 2 k d + 4 I) values at the weights' width: the two norm inputs and outputs, the
query, key and value projections, the attention output, and the MLP's gate, up, activation and
product (h hidden, a query and k key/value heads of width d, I the MLP width); plus the fp32 copies
transformers' RMSNorms make (2 h x 4 B), the rotated query and key ((a + k) d), and for Qwen3 its
per-head query/key norms in fp32. tests/unit/test_lalm_plan.py measures the tensors autograd saves
for a small Qwen3 and Llama in bf16 and finds this within 15%. With gradient
checkpointing only each layer's input (b s h) is kept, plus one layer's full set while it is
recomputed. The loss adds the logits at their peak, in the backward pass: b s V x (width + 4 B fp32
copy + 4 B fp32 gradient). Under
LoRA the same activations are needed: gradients flow through every LLM layer to the Q-Former. LoRA's
own A x products (r wide) are counted too; the frozen encoder runs without autograd. Activations are
not partitioned by ZeRO: each GPU holds its own micro-batch's.

**Host memory at load** (private memory per rank; the plan prints it per node). With ``train.zero_init``
(the default under ZeRO-3) the model loads into its partitions (``deepspeed.zero.Init`` through
transformers' DeepSpeed integration): a rank's partitions live on its GPU, or on the host (its
1/W share of the weights) with ``offload_params`` or without GPUs, and each layer is gathered whole
for a moment while the checkpoint is copied in (2 x the largest layer on the host in that case). The
Q-Former, projection and LoRA adapters are built whole on every rank first (fp32; the adapters at the
weights' width). Rank 0 reads the checkpoint files through memory maps: page cache, one copy per
node, reclaimable, reported apart. Measured on 2 CPU ranks, a 168e6-parameter Llama in fp32 (644 MiB):
each rank held 322 MiB of partitions and peaked 238 MiB above that (2 x its 125 MiB embedding).
Without ``zero_init`` every rank holds the whole model (the weights' width x all parameters) until
``deepspeed.initialize`` partitions it: private copies when the checkpoint's dtype differs from
``lalm.dtype`` (Whisper large-v3's fp16 in bf16, a bf16 LLM in float32); when they match,
transformers maps the files instead and the node's ranks share them in the page cache. The plan
counts the private case, an upper bound.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

BACKBONES = Path(__file__).resolve().parents[1] / "models" / "resources" / "backbones"
GiB = 1024**3


# ----------------------------------------------------------------------------- configs and counts


def vendored_config_path(hub_id: str) -> Path:
    return BACKBONES / (hub_id.replace("/", "--") + ".json")


def backbone_config(name: str, kind: str = "text") -> Any:
    """The transformers config of ``name``: a local folder, a registry name or hub id with a vendored
    config.json, or a tiny test model. Raises ValueError naming what to provide."""
    import transformers as tf

    folder = Path(name).expanduser()
    if (folder / "config.json").is_file():
        return tf.AutoConfig.from_pretrained(str(folder))
    hub_id = _hub_id(name, kind)
    path = vendored_config_path(hub_id)
    if path.is_file():
        data = json.loads(path.read_text())
        model_type = data.pop("model_type")
        return tf.AutoConfig.for_model(model_type, **data)
    raise ValueError(f"no config.json for '{name}': the plan needs the model's real config without weights; put it at "
                     f"{path} (the hub's config.json of {hub_id}) or pass a local model folder")


def _hub_id(name: str, kind: str) -> str:
    """A registry name's hub id (``qwen3-14b`` -> ``Qwen/Qwen3-14B``); anything else as given."""
    from ausweep.models import AUDIO_MODELS, TEXT_MODELS
    from ausweep.models.catalog import resolve_name

    registry = TEXT_MODELS if kind == "text" else AUDIO_MODELS
    try:
        k, target = resolve_name(registry, name)
    except Exception:  # not a name this registry knows: a hub id with a vendored config, perhaps
        return name
    if k != "registry":
        return target
    return getattr(registry.get(name), "hub_id", None) or name


@dataclass(frozen=True)
class Counts:
    """Parameter counts of one LALM (shared parameters once) and the LLM shapes activations need."""

    encoder: int
    llm: int
    qformer: int  # Q-Former + projection into the LLM
    lora: int
    trainable: int
    frozen: int
    largest_layer: int  # DeepSpeed's convention: the most parameters owned directly by one module
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    encoder_hidden: int
    encoder_frames: int
    qk_norm: bool = False  # per-head RMSNorm on queries and keys (Qwen3)


def _unique_params(module: Any) -> list[Any]:
    return list({id(p): p for p in module.parameters()}.values())


def _largest_layer(*modules: Any) -> int:
    return max((sum(p.numel() for p in m.parameters(recurse=False)) for mod in modules for m in mod.modules()), default=0)


def build_meta(lalm_cfg: Any) -> tuple[Any, Any, Any, Any]:
    """``(encoder, llm, qformer, proj)`` of ``lalm_cfg`` on the meta device (tiny test models: real)."""
    import torch
    import transformers as tf
    from torch import nn

    from ausweep.lalm.qformer import QFormer
    from ausweep.models import tiny

    if lalm_cfg.encoder == "tiny-whisper":
        encoder = tiny.build_tiny_audio("tiny-whisper")[0].get_encoder()
        enc_conf = encoder.config
    else:
        enc_conf = backbone_config(lalm_cfg.encoder, kind="audio")
        if enc_conf.model_type != "whisper":
            raise ValueError(f"encoder '{lalm_cfg.encoder}' has model_type '{enc_conf.model_type}'; the LALM needs a Whisper encoder")
        with torch.device("meta"):
            encoder = tf.WhisperModel(enc_conf).get_encoder()
    if lalm_cfg.llm in tiny.TINY_TEXT:
        llm = tiny.build_tiny_text(lalm_cfg.llm, head=True)[0]
    else:
        with torch.device("meta"):
            llm = tf.AutoModelForCausalLM.from_config(backbone_config(lalm_cfg.llm))
    d_enc = int(enc_conf.d_model)
    hidden = lalm_cfg.qformer_hidden or d_enc
    llm_hidden = int(llm.get_input_embeddings().embedding_dim)
    with torch.device("meta"):
        qformer = QFormer(d_enc, hidden, lalm_cfg.num_queries, lalm_cfg.qformer_layers, lalm_cfg.qformer_heads)
        proj = nn.Linear(hidden, llm_hidden)
    return encoder, llm, qformer, proj


def lora_parameters(llm: Any, targets: Sequence[str], r: int) -> int:
    """What peft's LoRA adds: r x (in + out) per targeted linear layer (Conv1D for GPT-2)."""
    from torch import nn

    total = 0
    for name, m in llm.named_modules():
        if name.split(".")[-1] not in targets:
            continue
        if isinstance(m, nn.Linear):
            total += r * (m.in_features + m.out_features)
        elif type(m).__name__ == "Conv1D":  # transformers' GPT-2 projection: weight (in, out)
            fan_in, fan_out = m.weight.shape
            total += r * (fan_in + fan_out)
    return total


def count(lalm_cfg: Any) -> Counts:
    encoder, llm, qformer, proj = build_meta(lalm_cfg)
    n_enc = sum(p.numel() for p in _unique_params(encoder))
    n_llm = sum(p.numel() for p in _unique_params(llm))
    n_q = sum(p.numel() for p in _unique_params(qformer)) + sum(p.numel() for p in proj.parameters())
    n_lora = lora_parameters(llm, lalm_cfg.lora_targets, lalm_cfg.lora_r) if lalm_cfg.llm_mode == "lora" else 0
    if n_lora == 0 and lalm_cfg.llm_mode == "lora":
        raise ValueError(f"lora_targets {list(lalm_cfg.lora_targets)} name no linear layer of '{lalm_cfg.llm}'")
    trainable = n_q + (n_llm if lalm_cfg.llm_mode == "full" else n_lora)
    frozen = n_enc + (0 if lalm_cfg.llm_mode == "full" else n_llm)
    c = llm.config
    heads = int(c.num_attention_heads)
    hidden = int(c.hidden_size)
    head_dim = int(getattr(c, "head_dim", None) or hidden // heads)
    return Counts(
        encoder=n_enc, llm=n_llm, qformer=n_q, lora=n_lora, trainable=trainable, frozen=frozen,
        largest_layer=_largest_layer(encoder, llm, qformer, proj), hidden=hidden, layers=int(c.num_hidden_layers),
        heads=heads, kv_heads=int(getattr(c, "num_key_value_heads", None) or heads), head_dim=head_dim,
        intermediate=int(getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * hidden),
        vocab=int(c.vocab_size), encoder_hidden=int(encoder.config.d_model),
        encoder_frames=int(encoder.config.max_source_positions), qk_norm=any(n.endswith("q_norm") for n, _ in llm.named_modules()))


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Plan:
    """Bytes per GPU (and on the host, per rank) of one training configuration."""

    world: int
    gpus_per_node: int
    zero_stage: int
    params: float
    grads: float
    optimizer: float
    live_buffers: float
    activations: float
    logits: float
    host_states: float  # offloaded gradients / optimizer states / weights, per rank
    host_at_load: float  # per rank, while the model loads (private memory)
    counts: Counts
    checkpoint_mapped: float = 0.0  # per node: the checkpoint files rank 0 maps while loading partitioned

    @property
    def model_states(self) -> float:
        return self.params + self.grads + self.optimizer + self.live_buffers

    @property
    def per_gpu(self) -> float:
        return self.model_states + self.activations + self.logits


def model_states(trainable: int, frozen: int, largest_layer: int, world: int, zero_stage: int, precision: str = "bf16",
                 offload_optimizer: bool = False, offload_params: bool = False) -> dict[str, float]:
    """Per-GPU bytes of weights, gradients, optimizer states and ZeRO-3 live buffers (see the module doc)."""
    w = 2 if precision == "bf16" else 4
    # gradient partitions: ZeRO-2 keeps a bf16 and an fp32 one; ZeRO-3 reduces straight into the fp32 one
    grad_b = (2 + 4 if zero_stage == 2 else 4) if precision == "bf16" else 4
    optim_b = (4 + 8) if precision == "bf16" else 8  # fp32 master weights + Adam m, v
    weights = w * (trainable + frozen)
    out = {"params": weights / world if zero_stage == 3 else float(weights),
           "grads": grad_b * trainable / world, "optimizer": optim_b * trainable / world,
           "live_buffers": 2.0 * w * largest_layer if zero_stage == 3 else 0.0, "host": 0.0}
    if offload_optimizer:
        out["host"] += out["grads"] + out["optimizer"]
        out["grads"] = out["optimizer"] = 0.0
    if offload_params and zero_stage == 3:
        out["host"] += out["params"]
        out["params"] = 0.0
    return out


def activation_bytes(c: Counts, lalm_cfg: Any, micro_batch: int, checkpointing: bool, precision: str = "bf16") -> tuple[float, float]:
    """``(activations, logits)`` bytes per GPU for one micro-batch (see the module doc)."""
    w = 2 if precision == "bf16" else 4
    b, s = micro_batch, lalm_cfg.num_queries + lalm_cfg.max_text_tokens
    qk = (c.heads + c.kv_heads) * c.head_dim  # query + key widths
    per_token = (4 * c.hidden + 2 * c.heads * c.head_dim + 2 * c.kv_heads * c.head_dim + 4 * c.intermediate) * w
    per_token += 2 * c.hidden * 4 + qk * w  # the two RMSNorms' fp32 copies (transformers upcasts); q, k after rotary
    if c.qk_norm:
        per_token += qk * 4  # Qwen3's per-head query/key RMSNorms, fp32 too
    per_layer = b * s * per_token
    if lalm_cfg.llm_mode == "lora":
        n_targets = len(lalm_cfg.lora_targets)
        per_layer += b * s * lalm_cfg.lora_r * n_targets * w
    llm = (c.layers * b * s * c.hidden * w + per_layer) if checkpointing else c.layers * per_layer
    # Q-Former: per block the queries' self-attention and MLP, and cross-attention keys/values over the frames
    qh = lalm_cfg.qformer_hidden or c.encoder_hidden
    qformer = lalm_cfg.qformer_layers * b * (lalm_cfg.num_queries * qh * 12 + 2 * c.encoder_frames * qh) * 4
    logits = b * s * c.vocab * (w + 4 + 4)
    return float(llm + qformer), float(logits)


def plan(lalm_cfg: Any, train_cfg: Any, gpus_per_node: int | None = None, counts: Counts | None = None) -> Plan:
    c = counts or count(lalm_cfg)
    world = int(train_cfg.num_workers)
    gpn = gpus_per_node or world
    precision = train_cfg.precision
    ms = model_states(c.trainable, c.frozen, c.largest_layer, world, train_cfg.zero_stage, precision,
                      train_cfg.offload_optimizer, train_cfg.offload_params)
    act, logits = activation_bytes(c, lalm_cfg, train_cfg.micro_batch_size, train_cfg.gradient_checkpointing, precision)
    w = 2 if lalm_cfg.dtype == "bfloat16" else 4
    built_whole = 4 * c.qformer + w * c.lora  # what ausweep initialises itself, on every rank
    mapped = 0.0
    if train_cfg.zero_stage == 3 and train_cfg.zero_init:
        on_host = train_cfg.offload_params or not train_cfg.use_gpu
        shard = (w * (c.encoder + c.llm) / world + 2 * w * c.largest_layer) if on_host else 0.0
        at_load = built_whole + shard
        mapped = float(w * (c.encoder + c.llm))
    else:
        at_load = w * (c.encoder + c.llm) + built_whole  # the whole model until deepspeed.initialize partitions it
    return Plan(world, gpn, train_cfg.zero_stage, ms["params"], ms["grads"], ms["optimizer"], ms["live_buffers"],
                act, logits, ms["host"], float(at_load), c, mapped)


# ----------------------------------------------------------------------------- output


def format_plan(p: Plan, gpu_gib: float | None = None, name: str = "") -> str:
    c = p.counts
    g = lambda x: f"{x / GiB:8.2f} GiB"  # noqa: E731
    lines = [
        f"memory plan{(' of ' + name) if name else ''}: {p.world} GPU(s), {p.gpus_per_node} per node, ZeRO-{p.zero_stage}",
        f"  parameters: encoder {c.encoder / 1e9:.3f}e9, LLM {c.llm / 1e9:.3f}e9, Q-Former+projection {c.qformer / 1e6:.1f}e6, "
        f"LoRA {c.lora / 1e6:.1f}e6 -> trainable {c.trainable / 1e6:.1f}e6, frozen {c.frozen / 1e9:.3f}e9",
        "  per GPU:",
        f"    weights            {g(p.params)}",
        f"    gradients          {g(p.grads)}",
        f"    optimizer states   {g(p.optimizer)}",
        f"    ZeRO-3 live bufs   {g(p.live_buffers)}   (largest layer {c.largest_layer / 1e6:.1f}e6 params)",
        f"    activations        {g(p.activations)}   (ausweep's estimate)",
        f"    logits for loss    {g(p.logits)}",
        f"    total              {g(p.per_gpu)}" + (f"   of {gpu_gib:g} GiB: {'fits' if p.per_gpu <= gpu_gib * GiB else 'DOES NOT FIT'}" if gpu_gib else ""),
        f"  per node ({p.gpus_per_node} GPU(s)): {p.per_gpu * p.gpus_per_node / GiB:.1f} GiB of GPU memory; host: "
        f"{p.host_states * p.gpus_per_node / GiB:.1f} GiB offloaded states, {p.host_at_load * p.gpus_per_node / GiB:.1f} GiB while loading"
        + (f" (+ {p.checkpoint_mapped / GiB:.1f} GiB of checkpoint files rank 0 maps: page cache)" if p.checkpoint_mapped else ""),
    ]
    return "\n".join(lines)


def to_json(p: Plan) -> dict[str, Any]:
    out = {k: v for k, v in asdict(p).items() if k != "counts"}
    out.update(model_states=p.model_states, per_gpu=p.per_gpu, counts=asdict(p.counts))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ausweep.lalm.plan", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="examples:\n" + "\n".join(line for line in __doc__.splitlines() if line.startswith("    python")))
    ap.add_argument("preset", help="a configs/lalm/*.yaml preset (sections lalm, train)")
    ap.add_argument("overrides", nargs="*", metavar="section.field=value", help="e.g. lalm.llm_mode=full train.zero_stage=2")
    ap.add_argument("--gpus-per-node", type=int, default=None, help="GPUs per node (default: all train.num_workers on one node)")
    ap.add_argument("--gpu-gib", type=float, default=None, help="GPU memory, to say whether the plan fits (e.g. 80)")
    ap.add_argument("--json", action="store_true", help="print the plan as JSON (bytes)")
    args = ap.parse_args(argv)
    from ausweep.config import ConfigError
    from ausweep.lalm.train.cli import load_preset

    try:
        lalm_cfg, train_cfg, _ = load_preset(args.preset, args.overrides)
        p = plan(lalm_cfg, train_cfg, args.gpus_per_node)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(to_json(p), indent=2) if args.json else format_plan(p, args.gpu_gib, f"{lalm_cfg.encoder} + {lalm_cfg.llm} ({lalm_cfg.llm_mode})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ----------------------------------------------------------------------------- verification


def verify_backbones(checkpoint: str | None, make_clips: Any = None, device: str = "cpu") -> list[Any]:
    """Each vendored backbone ``config.json`` against the hub's (``checkpoint``: a folder holding the
    hub's files as ``<org>--<name>.json`` instead): one check per field, difference 0 when equal, 1
    when not or missing on one side. Fields that only record how a file was saved are skipped. For
    ``python -m ausweep.models.verify backbones``."""
    from ausweep.models.verify import CannotVerify, Check

    skip = {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "use_cache"}
    checks = []
    for path in sorted(BACKBONES.glob("*.json")):
        hub_id = path.stem.replace("--", "/", 1)
        if checkpoint:
            theirs_path = Path(checkpoint) / path.name
        else:
            try:
                from huggingface_hub import hf_hub_download

                theirs_path = Path(hf_hub_download(hub_id, "config.json"))
            except Exception as e:  # offline, gated (Llama needs a token), or moved
                raise CannotVerify(f"cannot download {hub_id}/config.json ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                                   "gated repositories need `hf auth login`") from e
        ours, theirs = json.loads(path.read_text()), json.loads(Path(theirs_path).read_text())
        for key in sorted((set(ours) | set(theirs)) - skip):
            checks.append(Check(f"backbone {hub_id}", key, float(ours.get(key, "<missing>") != theirs.get(key, "<missing>"))))
    return checks
