"""Benchmark: tokens/s and model FLOPs utilisation (MFU) of one LALM training step under DeepSpeed.

    python bench/bench_lalm.py                                    # CPU: tiny-llama and smollm2-135m, Whisper tiny.en
    python bench/bench_lalm.py --llm Qwen/Qwen2.5-0.5B Qwen/Qwen3-8B --encoder openai/whisper-large-v3 \\
        --precision bf16 --micro-batch 8 --seq-len 256 --zero-stage 2   # one GPU (H100/H200 peak detected)

One process, one DeepSpeed rank (world size 1; gloo on CPU, NCCL on a GPU), built exactly as a
Ray Train worker builds it (:func:`ausweep.lalm.model.build_lalm`, the DeepSpeed config from
:func:`ausweep.lalm.train.deepspeed_config`, ZeRO-2 or ZeRO-3). The batch is synthetic: random
log-mels of the encoder's full window and ``--seq-len`` random text tokens per example, half of them
labelled (the response), no padding. ``--warmup`` steps run first, then ``--steps`` are timed
(forward, backward, optimizer step). Text tokens/s counts the ``--seq-len`` text tokens only, as
:func:`ausweep.lalm.train.train_loop_per_worker` reports them; the LLM also processes
``num_queries`` audio positions per example, which the FLOP count includes.

Model FLOPs per training step (PaLM's convention: matmuls only, no recomputation, causal attention
counted in full):

* LLM, per position of T = num_queries + seq_len: ``c * N_llm + 12 * L * d * T``. N_llm counts the
  weights used in matmuls (every Linear / Conv1D: the attention and MLP projections and the LM
  head; the input embedding is a lookup and does not count unless tied to the head).
  ``c = 6`` for full fine-tuning (forward 2N, backward 4N: gradients for activations and weights).
  With a frozen or LoRA-adapted LLM the Q-Former below it still needs the gradient with respect
  to the LLM's activations, so backward costs 2N (no weight gradients): ``c = 4``. LoRA's own
  matmuls are in N_llm (they are small). ``12 * L * d * T`` is the attention score and
  weighted-sum work, forward and backward, which needs no weight gradient either way.
* Encoder (frozen, forward only, no_grad), per clip of F encoder positions: ``2 * N_enc * F +
  4 * L_enc * d_enc * F^2`` (the stride-2 front-end convolution is counted at F positions).
* Q-Former (trained, x3 for backward), per clip: ``6 * N_qf * Q`` for the parts that run on the Q
  queries, plus ``6 * 2 * d^2 * F`` per block for the cross-attention keys/values computed from the F
  frames, plus ``3 * 4 * d * Q * (Q + F)`` per block for the attention itself.

MFU = model FLOPs per step / step time / peak FLOP/s. "MFU LLM" counts the LLM part only (the
number usually compared between LLM trainers); "MFU all" adds the encoder and Q-Former.

Peak FLOP/s: ``--peak-tflops`` if given; on a GPU the dense bf16 tensor-core peak of an H100/H200
SXM (989 TFLOP/s), H100 PCIe (756) or A100 (312), else the flag is required (and always for fp32 on
a GPU, where the peak depends on TF32 settings); on a CPU the best of a few 2048^3 matmuls in the
step's dtype on the same threads, so CPU MFU is relative to what this CPU reaches on a large GEMM.
Timings on a shared machine are noisy: the load average is printed. Hub models are read from the
local cache (``HF_HUB_OFFLINE=1`` unless set): run with ``HF_HUB_OFFLINE=0 TRANSFORMERS_OFFLINE=0``
to download them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from NVIDIA's data sheets; first match wins.
GPU_BF16_PEAK = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4), ("A100", 312.0))


def gpu_peak_tflops(name: str) -> float | None:
    for key, peak in GPU_BF16_PEAK:
        if key.lower() in name.lower():
            return peak
    return None


def cpu_peak_tflops(dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best achieved FLOP/s of an n x n x n matmul on this CPU in ``dtype`` (TFLOP/s)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)  # first call: allocation, kernel selection
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def matmul_params(module) -> int:
    """Weights used in matmuls: nn.Linear, transformers' Conv1D (GPT-2), nn.Conv1d; each tensor once."""
    import torch
    from transformers.pytorch_utils import Conv1D

    seen, total = set(), 0
    for m in module.modules():
        weights = []
        if isinstance(m, (torch.nn.Linear, Conv1D, torch.nn.Conv1d)):
            weights = [m.weight]
        elif isinstance(m, torch.nn.MultiheadAttention) and m.in_proj_weight is not None:
            weights = [m.in_proj_weight]
        for w in weights:
            if id(w) not in seen:
                seen.add(id(w))
                total += w.numel()
    return total


def step_flops(lalm, batch: int, seq_len: int, encoder_positions: int) -> dict[str, float]:
    """Model FLOPs of one training step, by part (see the module docstring)."""
    cfg = lalm.causal_lm.config
    layers = int(cfg.num_hidden_layers)
    d = int(cfg.hidden_size)
    q = lalm.config.num_queries
    t = q + seq_len
    c = 6 if lalm.config.llm_mode == "full" else 4
    llm = batch * t * (c * matmul_params(lalm.llm) + 12 * layers * d * t)

    ecfg = lalm.encoder.config
    f = encoder_positions
    enc = batch * (2 * matmul_params(lalm.encoder) * f + 4 * int(ecfg.encoder_layers) * int(ecfg.d_model) * f * f)

    blocks = len(lalm.qformer.blocks)
    dq = int(lalm.qformer.hidden)
    n_qf = matmul_params(lalm.qformer) + matmul_params(lalm.proj)
    on_frames = 2 * dq * dq * blocks + matmul_params(lalm.qformer.in_proj)  # cross-attention K/V, encoder -> Q-Former width
    qf = batch * (6 * (n_qf - on_frames) * q + 6 * on_frames * f + 12 * dq * q * (q + f) * blocks)
    return {"llm": float(llm), "encoder": float(enc), "qformer": float(qf), "all": float(llm + enc + qf)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_single_rank(use_gpu: bool) -> None:
    """torch.distributed with one rank (what Ray Train sets up for a 1-worker run)."""
    import deepspeed

    os.environ.setdefault("DS_ACCELERATOR", "cuda" if use_gpu else "cpu")
    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        os.environ.setdefault(k, v)
    deepspeed.init_distributed(dist_backend="nccl" if use_gpu else "gloo")


def bench_one(args: argparse.Namespace, llm: str, peak_tflops: float) -> dict:
    import deepspeed
    import torch

    from ausweep.lalm.model import LALMConfig, build_lalm
    from ausweep.lalm.train import TrainConfig, deepspeed_config

    use_gpu = torch.cuda.is_available() and not args.cpu
    lalm_cfg = LALMConfig(encoder=args.encoder, llm=llm, qformer_layers=args.qformer_layers,
                          num_queries=args.num_queries, qformer_heads=args.qformer_heads, llm_mode=args.llm_mode,
                          dtype="bfloat16" if args.precision == "bf16" else "float32",
                          max_text_tokens=max(2, args.seq_len), lora_targets=args.lora_targets)
    train_cfg = TrainConfig(lr=1e-4, max_steps=args.warmup + args.steps, micro_batch_size=args.micro_batch,
                            zero_stage=args.zero_stage, precision=args.precision, num_workers=1, use_gpu=use_gpu,
                            gradient_checkpointing=args.gradient_checkpointing)
    torch.manual_seed(0)
    lalm = build_lalm(lalm_cfg)
    if args.gradient_checkpointing:
        lalm.causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    counts = lalm.parameter_counts()
    n_llm_matmul = matmul_params(lalm.llm)  # before ZeRO-3 replaces the weights by empty shards
    fe = lalm.feature_extractor
    n_mels, frames = int(fe.feature_size), int(fe.nb_max_frames)
    enc_positions = frames // 2  # Whisper's stride-2 convolution
    flops = step_flops(lalm, args.micro_batch, args.seq_len, enc_positions)
    hidden = int(lalm.causal_lm.get_input_embeddings().embedding_dim)
    ds_cfg = deepspeed_config(train_cfg, 1, hidden_size=hidden)
    engine, *_ = deepspeed.initialize(model=lalm, model_parameters=lalm.trainable_parameters(), config=ds_cfg)
    device = engine.device
    vocab = int(lalm.causal_lm.get_input_embeddings().num_embeddings)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (args.micro_batch, args.seq_len), generator=g)
    labels = ids.clone()
    labels[:, : args.seq_len // 2] = -100  # the prompt half carries no loss
    batch = {"input_features": torch.randn(args.micro_batch, n_mels, frames, generator=g),
             "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    batch = {k: v.to(device) for k, v in batch.items()}

    def sync():
        if use_gpu:
            torch.cuda.synchronize()

    engine.train()
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        sync()
        t0 = time.perf_counter()
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            losses.append(float(loss.detach()))
    step_s = float(sorted(times)[len(times) // 2])  # median: robust to a shared machine's hiccups
    text_tokens = args.micro_batch * args.seq_len
    positions = args.micro_batch * (args.seq_len + lalm_cfg.num_queries)
    peak = peak_tflops * 1e12
    row = {
        "llm": llm, "encoder": args.encoder, "device": torch.cuda.get_device_name() if use_gpu else platform.processor() or "cpu",
        "zero": args.zero_stage, "precision": args.precision, "llm_mode": args.llm_mode,
        "n_llm": counts["llm"], "n_llm_matmul": n_llm_matmul, "n_trainable": counts["trainable"],
        "n_total": counts["total"], "micro_batch": args.micro_batch, "seq_len": args.seq_len,
        "num_queries": lalm_cfg.num_queries, "encoder_positions": enc_positions, "steps": args.steps,
        "step_s": step_s, "text_tokens_per_s": text_tokens / step_s, "positions_per_s": positions / step_s,
        "tflops_llm": flops["llm"] / step_s / 1e12, "tflops_all": flops["all"] / step_s / 1e12,
        "peak_tflops": peak_tflops, "mfu_llm": flops["llm"] / step_s / peak, "mfu_all": flops["all"] / step_s / peak,
        "flops_share": {k: flops[k] / flops["all"] for k in ("llm", "encoder", "qformer")},
        "loss_first": losses[0], "loss_last": losses[-1],
        "threads": torch.get_num_threads(), "load_avg": os.getloadavg()[0],
        "max_mem_gb": (torch.cuda.max_memory_allocated() / 1e9) if use_gpu else None,
    }
    del engine, lalm
    if use_gpu:
        torch.cuda.empty_cache()
    return row


def _fmt_n(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def print_table(rows: list[dict]) -> None:
    head = ("| llm | encoder | ZeRO | prec | LLM mode | N_llm (matmul) | trainable | micro x seq | step s "
            "| text tok/s | TFLOP/s LLM | peak TFLOP/s | MFU LLM | MFU all | load |")
    print(head)
    print("|" + "|".join(["---"] * (head.count("|") - 1)) + "|")
    for r in rows:
        print(f"| {r['llm']} | {r['encoder']} | {r['zero']} | {r['precision']} | {r['llm_mode']} | "
              f"{_fmt_n(r['n_llm'])} ({_fmt_n(r['n_llm_matmul'])}) | {_fmt_n(r['n_trainable'])} | "
              f"{r['micro_batch']} x {r['seq_len']} | {r['step_s']:.3f} | {r['text_tokens_per_s']:.0f} | "
              f"{r['tflops_llm']:.4f} | {r['peak_tflops']:.3f} | {100 * r['mfu_llm']:.1f}% | {100 * r['mfu_all']:.1f}% | "
              f"{r['load_avg']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llm", nargs="+", default=["tiny-llama", "smollm2-135m"],
                   help="LLM backbones: registry names, hub ids (Qwen/Qwen2.5-0.5B ... Qwen/Qwen3-8B) or folders")
    p.add_argument("--encoder", default="whisper-tiny.en", help="Whisper encoder (whisper-tiny.en offline; openai/whisper-large-v3 ...)")
    p.add_argument("--zero-stage", type=int, choices=(2, 3), default=2)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--llm-mode", choices=("frozen", "lora", "full"), default="lora")
    p.add_argument("--lora-targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"])
    p.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=128, help="text tokens per example (after the audio queries)")
    p.add_argument("--num-queries", type=int, default=64)
    p.add_argument("--qformer-layers", type=int, default=2)
    p.add_argument("--qformer-heads", type=int, default=8)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s of the device (default: detected, see above)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even if a GPU is present")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    use_gpu = torch.cuda.is_available() and not args.cpu
    peak = args.peak_tflops
    if peak is None:
        if use_gpu:
            name = torch.cuda.get_device_name()
            peak = gpu_peak_tflops(name) if args.precision == "bf16" else None
            if peak is None:
                p.error(f"no known {args.precision} peak for '{name}': pass --peak-tflops")
        else:
            peak = cpu_peak_tflops(torch.bfloat16 if args.precision == "bf16" else torch.float32)
            print(f"CPU matmul peak ({args.precision}, {torch.get_num_threads()} threads): {peak:.3f} TFLOP/s")
    init_single_rank(use_gpu)
    rows = []
    for llm in args.llm:
        rows.append(bench_one(args, llm, peak))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "flops_share"}), flush=True)
    print()
    print_table(rows)
    for r in rows:
        share = ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["flops_share"].items())
        print(f"{r['llm']}: FLOPs by part: {share}; loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
