"""GPU claims, measured: one script that checks every GPU path of ausweep in under 5 minutes.

    bench/gpu/run.sh --out results/                 # on a lent GPU machine (installs the carried wheels)
    python bench/gpu/run.py --out results/          # the same, with the packages already installed
    python bench/gpu/run.py --cpu --tiny --out tmp  # every part on the CPU at tiny sizes (CI runs this)

Four parts, each under a time budget (``--budget-s`` for the whole run; each part has its own share
and checks it as it goes, skipping what no longer fits and saying so). ``DIR/results.json`` is
rewritten after every part, so a run cut off by the lease still brings back what it measured.

1. ``probe``: S = 5, 50, 500 contrastive probes trained in one batched computation
   (:func:`ausweep.probe.train_probes`) against one at a time, at the paper's sizes (C = 144
   classes, 768-d text, 527-d audio, 300 epochs). One-at-a-time throughput does not depend on S, so
   it is measured once on the first few splits (each split's start depends only on (seed, split),
   so those probes are the same in every batch and their weights are compared). Achieved TFLOP/s
   counts the matmuls of the training steps only (see :func:`probe_step_flops`).
2. ``lalm``: one LALM training step (Whisper large-v3 encoder, Q-Former, LoRA-adapted Qwen2.5 1.5B
   and 7B) under DeepSpeed ZeRO-2 and ZeRO-3, world size 1, bf16, random weights built from the
   configs in ``bench/gpu/configs``. tokens/s and the LLM part's MFU by ``bench/bench_lalm.py``'s
   convention (its :func:`step_flops`), against the 989 TFLOP/s datasheet peak and the 790 TFLOP/s
   measured on a lent H200; peak GPU memory beside ``ausweep.lalm.plan``'s prediction (where the plan
   exists).
3. ``extract``: clips/s of ausweep's extraction worker (:class:`ausweep.extract.worker.Extractor`,
   in-process, no Ray) against a bare transformers loop with the same batch size and dtype, for
   Whisper-large-v3-sized and AST-sized encoders with random weights, over synthetic 10 s clips.
4. ``equivalence``: ausweep's loaders against the papers' reference packages on random weights saved
   in the released files' layouts (:mod:`ausweep.models.reference_equivalence`, the code the unit
   tests run): PaSST vs hear21passt, CNN14 vs panns_inference, AudioMAE vs timm's VisionTransformer,
   LAION-CLAP vs laion_clap's CLAP. Real torchaudio, torchvision and timm where they import (a GPU
   machine); each row says which packages were real and which were stood in for.

Nothing here downloads: models are built from config files with random weights (throughput and MFU
do not depend on the weights).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

T0 = time.monotonic()  # the budget counts from the start of the process, imports included

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIG_DIR = HERE / "configs"
for _p in (REPO, REPO / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

SCHEMA = "ausweep-gpu-bench-1"
PARTS = ("probe", "lalm", "extract", "equivalence")
# Order in which the parts run: the cheap, bounded parts first, so the LALM part (whose single
# steps cannot be interrupted) can only eat into its own share.
RUN_ORDER = ("probe", "extract", "equivalence", "lalm")
# Share of the whole budget each part may use at most; the LALM part gets what is left. --tiny
# (the CI check, on a small shared CPU) spends most of its time in imports and DeepSpeed's set-up.
SHARES = {"probe": 0.18, "extract": 0.18, "equivalence": 0.14}
TINY_SHARES = {"probe": 0.15, "extract": 0.15, "equivalence": 0.35}

# Dense (no sparsity) peaks of an H100 / H200 SXM from NVIDIA's data sheets, TFLOP/s, and the bf16
# matmul rate measured on a lent H200.
DATASHEET_TFLOPS = {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}
MEASURED_BF16_TFLOPS = 790.0
PEAK_GPUS = ("H100 SXM", "H100 80GB HBM3", "H200", "GH200")


class Budget:
    """Seconds left of the whole run, and of the part now running."""

    def __init__(self, total_s: float):
        self.total_s = total_s
        self.part_end = float("inf")

    def elapsed(self) -> float:
        return time.monotonic() - T0

    def left(self) -> float:
        """Seconds left for the part now running (its share, never past the whole run's end)."""
        return min(self.total_s - self.elapsed(), self.part_end - time.monotonic())

    def fits(self, need_s: float) -> bool:
        return self.left() >= need_s

    def start_part(self, share_s: float) -> None:
        self.part_end = time.monotonic() + share_s


class Skip(Exception):
    """A part that cannot run here (a package is missing, no time is left): the reason is reported."""


# ----------------------------------------------------------------------------- shared helpers


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load_config(name: str, tiny: bool = False):
    """A transformers config from ``bench/gpu/configs/<name>.json``; ``tiny`` shrinks it (same family)."""
    import transformers as tf

    data = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    if tiny:
        data.update(TINY_OVERRIDES[data["model_type"]])
    return tf.AutoConfig.for_model(**data)


# Tiny versions of the vendored configs for --tiny: the same model classes, a few hundred kB each.
TINY_OVERRIDES = {
    "whisper": {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "num_hidden_layers": 2, "encoder_attention_heads": 2,
                "decoder_attention_heads": 2, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
                "num_mel_bins": 16, "max_source_positions": 100},
    "qwen2": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "vocab_size": 512, "max_window_layers": 2, "bos_token_id": 1, "eos_token_id": 1},
    "audio-spectrogram-transformer": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                      "num_attention_heads": 2, "num_mel_bins": 32, "max_length": 256},
}


def whisper_front_end(config, tiny: bool):
    """Whisper's feature extractor for ``config`` (large-v3: 128 mels, 30 s windows; tiny: 2 s)."""
    from transformers import WhisperFeatureExtractor

    chunk = 2 * config.max_source_positions // 100  # 100 mel frames per second, stride 2
    return WhisperFeatureExtractor(feature_size=config.num_mel_bins, chunk_length=chunk)


def gpu_peaks(device: str) -> dict[str, Any]:
    """The device's peak FLOP/s by precision: datasheet values for an H100/H200 SXM, else None;
    on the CPU, the best of a few fp32 GEMMs on this machine's threads."""
    import torch

    if not device.startswith("cuda"):
        from bench_lalm import cpu_peak_tflops

        return {"device": platform.processor() or "cpu", "fp32_gemm_measured": cpu_peak_tflops(torch.float32, n=512)}
    name = torch.cuda.get_device_name()
    known = any(k.lower() in name.lower() for k in PEAK_GPUS)
    return {"device": name, **{k: (v if known else None) for k, v in DATASHEET_TFLOPS.items()},
            "bf16_measured": MEASURED_BF16_TFLOPS if known else None,
            "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def environment(device: str) -> dict[str, Any]:
    import torch

    versions = {}
    for pkg in ("torch", "transformers", "peft", "accelerate", "deepspeed", "pydantic", "numpy", "soundfile", "timm"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    git = {}
    with contextlib.suppress(Exception):
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            git = {"sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    return {"python": platform.python_version(), "packages": versions, "git": git, "host": platform.node(),
            "cuda": torch.version.cuda, "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
            "cpu_threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------- part 1: probes


def probe_step_flops(n_rows: int, text_dim: int, audio_dim: int, shared_dim: int, restrict_to_span: bool) -> int:
    """Matmul FLOPs of one training step of one probe on ``n_rows`` training classes.

    Forward: two projections (n x d @ d x k; with ``restrict_to_span`` the inputs are coordinates in
    the n-dimensional span of the training rows, so d = n) and the n x n logits (n x k @ k x n).
    Backward: the projections' weight gradients (the inputs need none) and both gradients of the
    logits product. Normalisation, softmax, AdamW, the span's SVD and the input standardisation are
    not counted: they are not matmuls.
    """
    dt, da = (n_rows, n_rows) if restrict_to_span else (text_dim, audio_dim)
    k, n = shared_dim, n_rows
    projections = 2 * n * (dt + da) * k  # forward
    logits = 2 * n * n * k
    return 2 * projections + 3 * logits  # fwd + weight grads; fwd + two input grads


def part_probe(args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    import numpy as np
    import torch

    from ausweep.probe import ProbeConfig, init_params, make_splits, split_masks, train_probes
    from ausweep.probe.train import n_train_classes

    device = "cpu" if args.cpu else "cuda"
    if args.tiny:
        n_classes, dt, da, epochs, sizes, n_single = 24, 32, 24, 10, (2, 4, 8), 1
    else:
        n_classes, dt, da, epochs, sizes, n_single = 144, 768, 527, 300, (5, 50, 500), 8
    cfg = ProbeConfig(epochs=epochs, device=device)
    rng = np.random.default_rng(0)
    text = rng.standard_normal((n_classes, dt)).astype(np.float32)
    mixing = rng.standard_normal((dt, da)) / np.sqrt(dt)
    audio = (text @ mixing + 0.1 * rng.standard_normal((n_classes, da))).astype(np.float32)
    dims = (dt, da, cfg.shared_dim)
    n_rows = n_train_classes(n_classes, cfg.train_frac)
    step_flops = probe_step_flops(n_rows, dt, da, cfg.shared_dim, cfg.restrict_to_span)
    peaks = gpu_peaks(device)
    out: dict[str, Any] = {
        "settings": {"classes": n_classes, "text_dim": dt, "audio_dim": da, "epochs": epochs, "shared_dim": cfg.shared_dim,
                     "train_classes": n_rows, "restrict_to_span": cfg.restrict_to_span, "device": device,
                     "flops_per_probe_step": step_flops},
        "peaks_tflops": peaks, "rows": [], "skipped": [],
    }

    def run(splits: list[int], epochs_: int = epochs):
        masks = split_masks(make_splits(n_classes, max(splits) + 1, cfg.train_frac, cfg.seed), n_classes)[splits]
        c = dataclasses.replace(cfg, epochs=epochs_)
        sync(device)
        t0 = time.perf_counter()
        res = train_probes(text, audio, masks, c, init_params(*dims, cfg.seed, splits))
        sync(device)
        return res, time.perf_counter() - t0

    # Warm-up: CUDA's first launches, cuBLAS / oneDNN choosing kernels for each shape.
    run([0], 10)
    singles, t_single = [], 0.0
    for s in range(n_single):
        res, t = run([s])
        singles.append(res)
        t_single += t
    single_rate = n_single / t_single  # probes/s one at a time: the same for every S
    out["one_at_a_time"] = {"probes": n_single, "seconds": t_single, "probes_per_s": single_rate}

    last = None  # (S, seconds) of the last batched run: batched time grows at most linearly in S
    for size in sizes:
        guess = (1 + 10 / epochs) * 1.2 * (size / single_rate if last is None else last[1] * size / last[0])
        if not budget.fits(guess):
            out["skipped"].append({"S": size, "reason": f"about {guess:.0f} s needed, {budget.left():.0f} s left"})
            continue
        run(list(range(size)), 10)  # this shape's warm-up
        batched, t = run(list(range(size)))
        diff = 0.0
        for s, one in enumerate(singles[:size]):
            for got, want in zip(batched.probes.params.select(slice(s, s + 1)).tensors(), one.probes.params.tensors()):
                diff = max(diff, float((got - want).abs().max()))
        rate, last = size / t, (size, t)
        tflops = size * epochs * step_flops / t / 1e12
        row = {"S": size, "batched_s": t, "probes_per_s": rate, "sequential_probes_per_s": single_rate,
               "speedup": rate / single_rate, "achieved_tflops": tflops,
               "max_param_diff_vs_single": diff, "compared_probes": min(size, n_single),
               "final_loss_mean": float(batched.final_loss.mean())}
        for key, peak in peaks.items():
            if isinstance(peak, float) and key != "bf16_measured":
                row[f"pct_of_{key}_peak"] = 100 * tflops / peak
        out["rows"].append(row)
        del batched
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    big = [r for r in out["rows"] if r["S"] == max(sizes)]
    out["goal"] = {"speedup_at_max_S": big[0]["speedup"] if big else None, "target": 10.0,
                   "met": (big[0]["speedup"] >= 10.0) if big else None}
    if out["skipped"]:
        out["status"] = "partial"
    # on the CPU the two agree exactly; a GPU may pick other kernels for other batch sizes
    tolerance = 1e-4 if device == "cpu" else 1e-3
    bad = [r for r in out["rows"] if r["max_param_diff_vs_single"] > tolerance]
    if bad:
        out["status"] = "error"
        out["reason"] = f"batched and single probes disagree: {[(r['S'], r['max_param_diff_vs_single']) for r in bad]}"
    return out


# ----------------------------------------------------------------------------- part 2: LALM under DeepSpeed


def memory_plan_note() -> str:
    if importlib.util.find_spec("ausweep.lalm.plan") is None:
        return "not available: ausweep.lalm.plan does not exist yet, so there is no predicted peak memory to compare"
    return "ausweep.lalm.plan's prediction per run: predicted_mem_gb beside peak_mem_gb (GPU only)"


def predicted_memory(lalm_cfg, train_cfg, llm_name: str, tiny: bool) -> dict[str, Any]:
    """``python -m ausweep.lalm.plan``'s per-GPU memory prediction for this run, where the plan exists.

    The plan reads model configs from folders: the vendored configs are written into temporary ones.
    """
    if importlib.util.find_spec("ausweep.lalm.plan") is None:
        return {"status": "not available: ausweep.lalm.plan does not exist yet"}
    try:
        from ausweep.lalm import plan as lalm_plan

        with tempfile.TemporaryDirectory(prefix="ausweep-plan-") as tmp:
            folders = {}
            for key, name in (("encoder", "whisper-large-v3"), ("llm", llm_name)):
                (Path(tmp) / name).mkdir()
                load_config(name, tiny).to_json_file(str(Path(tmp) / name / "config.json"))
                folders[key] = str(Path(tmp) / name)
            p = lalm_plan.plan(dataclasses.replace(lalm_cfg, **folders), train_cfg)
        parts = {k: getattr(p, k) / 1e9 for k in ("params", "grads", "optimizer", "live_buffers", "activations", "logits")}
        return {"status": "ok", "predicted_mem_gb": p.per_gpu / 1e9, "parts_gb": parts}
    except Exception as e:  # the plan is another module's work in progress: report, never fail the run
        return {"status": f"error: {type(e).__name__}: {e}"}


def build_random_lalm(llm_name: str, tiny: bool, device: str, lalm_cfg):
    """A LALM whose Whisper encoder and LLM are built from the vendored configs with random weights
    (the same assembly as :func:`ausweep.lalm.model.build_lalm`, which loads real weights by name)."""
    import torch
    import transformers as tf
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from ausweep.lalm.model import LALM, _add_lora

    dtype = getattr(torch, lalm_cfg.dtype)
    wcfg = load_config("whisper-large-v3", tiny)
    lcfg = load_config(llm_name, tiny)
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: a 7B model's random init on the CPU takes minutes
        encoder = WhisperEncoder(wcfg).to(dtype).eval()
        llm = tf.AutoModelForCausalLM.from_config(lcfg, dtype=dtype)
    encoder.requires_grad_(False)
    if lalm_cfg.llm_mode == "frozen":
        llm.requires_grad_(False)
    elif lalm_cfg.llm_mode == "lora":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(lalm_cfg.seed)
            llm = _add_lora(llm, lalm_cfg)
    # The training step needs no tokenizer (the batch is token ids); build_lalm's tokenizer is for text.
    return LALM(lalm_cfg, encoder, whisper_front_end(wcfg, tiny), llm, tokenizer=None).eval()


def lalm_step(args: argparse.Namespace, llm_name: str, zero: int, peaks: dict, device: str) -> dict[str, Any]:
    import deepspeed
    import torch
    from bench_lalm import matmul_params, step_flops

    from ausweep.lalm.model import LALMConfig
    from ausweep.lalm.train import TrainConfig, deepspeed_config

    use_gpu = device.startswith("cuda")
    if args.tiny:
        micro, seq_len, warmup, steps = 2, 16, 1, 2
        lalm_cfg = LALMConfig(encoder="whisper-large-v3 (tiny random)", llm=f"{llm_name} (tiny random)",
                              qformer_layers=1, num_queries=4, qformer_heads=2, llm_mode="lora", lora_r=4,
                              lora_alpha=8, dtype="bfloat16", max_text_tokens=seq_len)
    else:
        # configs/lalm/qwen3-14b.yaml's recipe (6 blocks, 64 queries, LoRA r=16 on q/k/v/o), with a
        # larger micro-batch and no recomputation: one GPU holds a 7B model with room to spare.
        micro, seq_len, warmup, steps = args.micro_batch, args.seq_len, 2, 4
        lalm_cfg = LALMConfig(encoder="whisper-large-v3 (random)", llm=f"{llm_name} (random)", qformer_layers=6,
                              num_queries=64, qformer_heads=16, llm_mode="lora", lora_r=16, lora_alpha=32,
                              dtype="bfloat16", max_text_tokens=seq_len)
    train_cfg = TrainConfig(lr=1e-4, max_steps=warmup + steps, micro_batch_size=micro, zero_stage=zero,
                            precision="bf16", num_workers=1, use_gpu=use_gpu)
    if use_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        mem_before = torch.cuda.memory_allocated()
    t_build = time.perf_counter()
    lalm = build_random_lalm(llm_name, args.tiny, device, lalm_cfg)
    counts = lalm.parameter_counts()
    n_llm_matmul = matmul_params(lalm.llm)  # before ZeRO-3 replaces the weights by empty shards
    fe = lalm.feature_extractor
    n_mels, frames = int(fe.feature_size), int(fe.nb_max_frames)
    enc_positions = frames // 2  # Whisper's stride-2 convolution
    flops = step_flops(lalm, micro, seq_len, enc_positions)
    hidden = int(lalm.causal_lm.get_input_embeddings().embedding_dim)
    ds_cfg = deepspeed_config(train_cfg, 1, hidden_size=hidden)
    engine, *_ = deepspeed.initialize(model=lalm, model_parameters=lalm.trainable_parameters(), config=ds_cfg)
    build_s = time.perf_counter() - t_build
    vocab = int(lalm.causal_lm.get_input_embeddings().num_embeddings)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (micro, seq_len), generator=g)
    labels = ids.clone()
    labels[:, : seq_len // 2] = -100  # the prompt half carries no loss
    batch = {"input_features": torch.randn(micro, n_mels, frames, generator=g), "input_ids": ids,
             "attention_mask": torch.ones_like(ids), "labels": labels}
    batch = {k: v.to(engine.device) for k, v in batch.items()}
    engine.train()
    times, losses = [], []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            losses.append(float(loss.detach().float()))
    step_s = float(sorted(times)[len(times) // 2])  # median
    row: dict[str, Any] = {
        "llm": llm_name, "zero": zero, "precision": "bf16", "llm_mode": lalm_cfg.llm_mode,
        "n_llm": counts["llm"], "n_llm_matmul": n_llm_matmul, "n_encoder": counts["encoder"],
        "n_trainable": counts["trainable"], "micro_batch": micro, "seq_len": seq_len,
        "num_queries": lalm_cfg.num_queries, "encoder_positions": enc_positions, "steps": steps, "warmup": warmup,
        "build_and_init_s": build_s, "step_s": step_s, "text_tokens_per_s": micro * seq_len / step_s,
        "positions_per_s": micro * (seq_len + lalm_cfg.num_queries) / step_s,
        "tflops_llm": flops["llm"] / step_s / 1e12, "tflops_all": flops["all"] / step_s / 1e12,
        "flops_share": {k: flops[k] / flops["all"] for k in ("llm", "encoder", "qformer")},
        "loss_first": losses[0], "loss_last": losses[-1],
    }
    for label, key in (("datasheet", "bf16"), ("measured", "bf16_measured"), ("cpu_gemm", "fp32_gemm_measured")):
        peak = peaks.get(key)
        if isinstance(peak, float):
            row[f"mfu_llm_vs_{label}"] = flops["llm"] / step_s / (peak * 1e12)
            row[f"mfu_all_vs_{label}"] = flops["all"] / step_s / (peak * 1e12)
    row["memory_plan"] = predicted_memory(lalm_cfg, train_cfg, llm_name, args.tiny)
    if "predicted_mem_gb" in row["memory_plan"]:
        row["predicted_mem_gb"] = row["memory_plan"]["predicted_mem_gb"]
    if use_gpu:
        row["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
        row["mem_before_gb"] = mem_before / 1e9
        row["peak_reserved_gb"] = torch.cuda.max_memory_reserved() / 1e9
    if hasattr(engine, "destroy"):  # frees DeepSpeed's hooks and buffers (newer versions)
        engine.destroy()
    del engine, lalm, batch
    gc.collect()
    if use_gpu:
        torch.cuda.empty_cache()
    return row


def part_lalm(args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    device = "cpu" if args.cpu else "cuda"
    try:
        import deepspeed  # noqa: F401
    except Exception as e:  # ImportError, or a DeepSpeed that fails on this torch
        raise Skip(f"deepspeed does not import here ({type(e).__name__}: {e}); "
                   "bench/gpu/run.sh installs the carried wheel") from None
    from bench_lalm import init_single_rank

    # world size 1 without a launcher: the environment a launcher would set, then one process group
    init_single_rank(device.startswith("cuda"))
    peaks = gpu_peaks(device)
    runs = [(llm, zero) for llm in args.llms for zero in (2, 3)]
    out: dict[str, Any] = {"peaks_tflops": peaks, "memory_plan": memory_plan_note(), "rows": [], "skipped": [],
                           "settings": {"micro_batch": args.micro_batch, "seq_len": args.seq_len, "tiny": args.tiny}}
    # Seconds a run takes before it is measured: a guess per size, then what the last run took.
    guess = {llm: (20.0 if args.tiny else (70.0 if "7b" in llm else 35.0)) for llm in args.llms}
    for llm, zero in runs:
        if not budget.fits(guess[llm]):
            out["skipped"].append({"llm": llm, "zero": zero,
                                   "reason": f"about {guess[llm]:.0f} s needed, {budget.left():.0f} s left in the budget"})
            continue
        t0 = time.perf_counter()
        try:
            row = lalm_step(args, llm, zero, peaks, device)
        except Exception as e:
            out["rows"].append({"llm": llm, "zero": zero, "error": f"{type(e).__name__}: {e}",
                                "traceback": traceback.format_exc(limit=8)})
            gc.collect()  # the failed run's model and engine (an OOM must not starve the next run)
            if device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
            continue
        row["wall_s"] = time.perf_counter() - t0
        guess[llm] = row["wall_s"] * 1.1
        out["rows"].append(row)
    done = [r for r in out["rows"] if "error" not in r]
    if not done:
        out["status"] = "error" if out["rows"] else "skipped"
        out["reason"] = "no run finished" if out["rows"] else "no run fitted in the budget"
    elif out["skipped"] or len(done) < len(out["rows"]):
        out["status"] = "partial"
    big = [r for r in done if "7b" in r["llm"] and "mfu_llm_vs_measured" in r]
    out["goal"] = {"target_mfu_llm_vs_measured": 0.40,
                   "best_7b_mfu_llm_vs_measured": max((r["mfu_llm_vs_measured"] for r in big), default=None)}
    return out


# ----------------------------------------------------------------------------- part 3: extraction


def synthetic_clips(folder: Path, n: int, seconds: float, sr: int = 16000) -> list[str]:
    """``n`` mono 16 kHz wav files of tones in noise, ``seconds`` long."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(n):
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.05 * rng.standard_normal(t.size)
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, wave.astype(np.float32), sr)
        paths.append(str(path))
    return paths


def build_audio_encoder(name: str, tiny: bool, device: str, dtype):
    """(model, feature extractor) with random weights from a vendored config."""
    import torch
    import transformers as tf
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = load_config(name, tiny)
    torch.manual_seed(0)
    with torch.device(device):  # the weights only: the feature extractor runs on the CPU
        model = WhisperEncoder(cfg) if cfg.model_type == "whisper" else tf.ASTModel(cfg)
    if cfg.model_type == "whisper":
        fe = whisper_front_end(cfg, tiny)
    else:
        fe = tf.ASTFeatureExtractor(num_mel_bins=cfg.num_mel_bins, max_length=cfg.max_length)
    return model.to(dtype).eval(), fe


def bare_loop(model, fe, paths: list[str], batch_size: int, device: str, dtype) -> float:
    """The plain transformers way: read, feature-extract, forward, mean-pool, copy back. Seconds."""
    import numpy as np
    import soundfile as sf
    import torch

    is_whisper = "input_features" in fe.model_input_names
    sync(device)
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(paths), batch_size):
        waves = [sf.read(p, dtype="float32")[0] for p in paths[i : i + batch_size]]
        feats = fe(waves, sampling_rate=fe.sampling_rate, return_tensors="pt")
        x = feats["input_features" if is_whisper else "input_values"].to(device, dtype)
        with torch.no_grad():
            h = (model(x) if is_whisper else model(input_values=x)).last_hidden_state
        out.append(h.float().mean(1).cpu().numpy())
    emb = np.concatenate(out)
    sync(device)
    if not np.isfinite(emb).all():
        raise FloatingPointError("the bare loop produced non-finite embeddings")
    return time.perf_counter() - t0


def ausweep_worker(model, fe, name: str, paths: list[str], batch_size: int, device: str, cache_root: str, run: int) -> float:
    """ausweep's extraction worker in-process (what a Ray actor runs), with the model injected. Seconds."""
    from ausweep.extract.worker import Extractor
    from ausweep.models.audio import wrap_audio_model

    ex = Extractor("audio", name, None, device, batch_size, cache_root)
    ex.encoder = wrap_audio_model(model, fe, name, device=device, batch_size=batch_size)
    spec = {"kind": "bench", "model": name, "run": run, "n": len(paths)}  # a fresh cache key: no cache hits
    sync(device)
    t0 = time.perf_counter()
    n = ex.audio_shard(spec, paths, max_seconds=None)
    sync(device)
    assert n == len(paths)
    return time.perf_counter() - t0


def part_extract(args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    import torch

    device = "cpu" if args.cpu else "cuda"
    if importlib.util.find_spec("soundfile") is None:
        raise Skip("soundfile does not import here; bench/gpu/run.sh installs the carried wheel")
    # (vendored config, clips, batch size); dtype: what ausweep's loader gives these checkpoints
    # (transformers' "auto": the config's torch_dtype) on a GPU, float32 on the CPU.
    if args.tiny:
        cases, seconds = [("whisper-large-v3", 4, 2), ("ast-audioset", 4, 2)], 2.0
    else:
        cases, seconds = [("whisper-large-v3", 128, 32), ("ast-audioset", 256, 32)], 10.0
    out: dict[str, Any] = {"rows": [], "skipped": [], "settings": {"clip_seconds": seconds, "device": device}}
    with tempfile.TemporaryDirectory(prefix="ausweep-gpu-bench-") as tmp:
        paths_all = synthetic_clips(Path(tmp), max(n for _, n, _ in cases), seconds)
        for name, n, bs in cases:
            need = 8.0 if args.tiny else 20.0
            if not budget.fits(need):
                out["skipped"].append({"model": name, "reason": f"about {need:.0f} s needed, {budget.left():.0f} s left"})
                continue
            cfg = json.loads((CONFIG_DIR / f"{name}.json").read_text())
            dtype = torch.float32 if device == "cpu" else getattr(torch, cfg.get("torch_dtype", "float32"))
            model, fe = build_audio_encoder(name, args.tiny, device, dtype)
            paths = paths_all[:n]
            # warm-up on one batch each (kernel choice, allocator)
            bare_loop(model, fe, paths[:bs], bs, device, dtype)
            ausweep_worker(model, fe, name, paths[:bs], bs, device, str(Path(tmp) / "cache"), -1)
            t_bare, t_ausweep = [], []
            for r in range(2):  # alternate, keep the best of each
                t_ausweep.append(ausweep_worker(model, fe, name, paths, bs, device, str(Path(tmp) / "cache"), r))
                t_bare.append(bare_loop(model, fe, paths, bs, device, dtype))
                if not budget.fits(min(t_bare) + min(t_ausweep)):
                    break
            a, b = n / min(t_ausweep), n / min(t_bare)
            out["rows"].append({"model": name, "clips": n, "batch_size": bs, "dtype": str(dtype).replace("torch.", ""),
                                "n_params": sum(p.numel() for p in model.parameters()), "repeats": len(t_bare),
                                "ausweep_clips_per_s": a, "bare_clips_per_s": b, "ratio": a / b})
            del model
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    if out["skipped"]:
        out["status"] = "partial" if out["rows"] else "skipped"
        out["reason"] = "; ".join(s["reason"] for s in out["skipped"])
    out["goal"] = {"ausweep_not_slower": all(r["ratio"] >= 0.95 for r in out["rows"]) if out["rows"] else None,
                   "tolerance": "ratio >= 0.95 (timing noise)"}
    return out


# ----------------------------------------------------------------------------- part 4: reference equivalence

# The checks live in ausweep.models.reference_equivalence, which the unit tests run too (same code,
# same random-weight references in the released files' layouts). They run in a child process (the
# stand-ins and reference packages they import never reach the other parts, and the child is stopped
# when the part's share runs out; each row it finished is kept). On a GPU each check runs at the
# released size when its estimate fits, else at the unit tests' small size; --tiny always small.
# Seconds: (small on a CPU, released on a GPU, small on a GPU), imports included.
# On a GPU, the checks whose stand-ins the real packages replace come first; on a CPU, the cheapest.
EQUIVALENCE_ORDER = ("passt", "audiomae", "laion_clap", "pann")
CPU_EQUIVALENCE_ORDER = ("audiomae", "passt", "pann", "laion_clap")
EQUIVALENCE_SECONDS = {"passt": (10, 10, 5), "audiomae": (8, 8, 4), "laion_clap": (15, 10, 8), "pann": (10, 8, 5)}
WORKER_FLAG = "--equivalence-worker"


def equivalence_worker(device: str, tiny: bool, seconds: float) -> int:
    """The child: one JSON line per check, printed as soon as it is done."""
    import torch

    from ausweep.models import reference_equivalence as eq

    budget = Budget(seconds)
    for name in CPU_EQUIVALENCE_ORDER if device == "cpu" else EQUIVALENCE_ORDER:
        package, imports = eq.REFERENCES[name]
        row: dict[str, Any] = {"reference": name, "package": package, "imports": list(imports)}
        small, full, small_gpu = EQUIVALENCE_SECONDS[name]
        small_size = tiny or device == "cpu" or not budget.fits(full)
        need = small if device == "cpu" else (small_gpu if small_size else full)
        if not budget.fits(need):
            row["status"] = f"skipped: about {need} s needed, {budget.left():.0f} s left in the budget"
        else:
            try:
                res = eq.reference_equivalence(name, device=device, tiny=small_size)
                row.update(res)
                bad = res["max_diff"] >= res["tolerance"]
                row["status"] = "ok" if res["ok"] else (f"mismatch: max |diff| {res['max_diff']:.3g} >= {res['tolerance']:.3g}"
                                                         if bad else f"mismatch: {res.get('checks')}")
            except eq.Unavailable as e:
                row["status"] = f"not available: {e}"
            except Exception as e:
                row["status"] = f"error: {type(e).__name__}: {e}"
                row["traceback"] = traceback.format_exc(limit=8)
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        print(json.dumps(row, default=str), flush=True)
    return 0


def part_equivalence(args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    from ausweep.models.reference_equivalence import TOLERANCE

    device = "cpu" if args.cpu else "cuda"
    out: dict[str, Any] = {"rows": [], "skipped": [], "settings": {
        "device": device, "tolerance": TOLERANCE, "tolerance_rule": "max |diff| < tolerance * max(1, max |reference output|)",
        "tf32": "off during the checks" if device == "cuda" else None, "process": "a child process"}}
    seconds = budget.left()
    cmd = [sys.executable, str(Path(__file__).resolve()), WORKER_FLAG, device, str(int(args.tiny)), str(seconds - 3)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(seconds, 1.0), cwd=REPO)
        stdout, stderr, cut = proc.stdout, proc.stderr, None
        if proc.returncode != 0:
            cut = f"the child process failed (exit {proc.returncode}): {stderr.strip().splitlines()[-1:] if stderr.strip() else ''}"
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        cut = f"stopped after {seconds:.0f} s, the part's share of the budget"
    done = {}
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict) and "reference" in row:
                done[row["reference"]] = row
    from ausweep.models.reference_equivalence import REFERENCES

    for name in CPU_EQUIVALENCE_ORDER if device == "cpu" else EQUIVALENCE_ORDER:
        out["rows"].append(done.get(name) or {"reference": name, "package": REFERENCES[name][0],
                                              "status": f"skipped: {cut or 'no result from the child process'}"})
    if cut:
        out["child_stderr_tail"] = stderr[-2000:]
    with contextlib.suppress(Exception):  # the released-checkpoint checks (python -m ausweep.models.verify)
        registry = importlib.import_module("ausweep.models.verify").VERIFIERS
        out["checkpoint_verifiers"] = {"names": sorted(registry), "note": "need the released checkpoints (network); "
                                       "not run here: python -m ausweep.models.verify NAME on a machine with network"}
    statuses = [r["status"] for r in out["rows"]]
    if any(s.startswith(("mismatch", "error")) for s in statuses):
        out["status"] = "error"
        out["reason"] = "; ".join(f"{r['reference']}: {r['status']}" for r in out["rows"] if r["status"].startswith(("mismatch", "error")))
    elif not any(s == "ok" for s in statuses):
        out["status"] = "skipped"
        out["reason"] = "no reference comparison could run here (see rows)"
    elif any(s != "ok" for s in statuses):
        out["status"] = "partial"
        out["reason"] = "; ".join(f"{r['reference']}: {r['status']}" for r in out["rows"] if r["status"] != "ok")
    return out


# ----------------------------------------------------------------------------- driver


PART_FUNCS = {"probe": part_probe, "lalm": part_lalm, "extract": part_extract, "equivalence": part_equivalence}


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _f(x: Any, fmt: str = ".3g") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) else "-"


def table(results: dict) -> str:
    """One table: a line per measured case, and a line per skipped case or part with its reason."""
    lines = ["| part | case | result | status |", "|---|---|---|---|"]
    for part in PARTS:
        p = results["parts"].get(part)
        if p is None:
            continue
        status = p.get("status", "?")
        if part == "probe" and p.get("rows"):
            one = p.get("one_at_a_time", {})
            for r in p["rows"]:
                pct = ", ".join(f"{_f(v, '.2g')}% of {k[7:-5]}" for k, v in r.items() if k.startswith("pct_of_"))
                lines.append(f"| 1 probe | S={r['S']} | {_f(r['probes_per_s'])} probes/s batched vs "
                             f"{_f(one.get('probes_per_s'))} one at a time: {_f(r['speedup'])}x; "
                             f"{_f(r['achieved_tflops'])} TFLOP/s ({pct}); "
                             f"max param diff {_f(r['max_param_diff_vs_single'], '.1e')} "
                             f"| {status} |")
        if part == "lalm" and p.get("rows"):
            for r in p["rows"]:
                if "error" in r:
                    lines.append(f"| 2 lalm | {r['llm']} ZeRO-{r['zero']} | {r['error'][:120]} | error |")
                    continue
                mfu = ", ".join(f"{100 * r[k]:.1f}% vs {k[11:]}" for k in r if k.startswith("mfu_llm_vs_"))
                mem = f"; peak {r['peak_mem_gb']:.1f} GB" if "peak_mem_gb" in r else ""
                if "predicted_mem_gb" in r:
                    mem += f" (plan: {r['predicted_mem_gb']:.2g} GB)"
                lines.append(f"| 2 lalm | {r['llm']} ZeRO-{r['zero']} bf16 {r['llm_mode']} | "
                             f"{_f(r['text_tokens_per_s'], '.0f')} text tok/s, step {_f(r['step_s'])} s, "
                             f"{_f(r['tflops_llm'])} TFLOP/s LLM, MFU LLM {mfu}{mem} | {status} |")
            lines.append(f"| 2 lalm | memory plan | {p.get('memory_plan')} | - |")
        if part == "extract" and p.get("rows"):
            for r in p["rows"]:
                lines.append(f"| 3 extract | {r['model']} {r['dtype']} bs={r['batch_size']} | "
                             f"ausweep {_f(r['ausweep_clips_per_s'])} clips/s vs bare {_f(r['bare_clips_per_s'])}: "
                             f"ratio {_f(r['ratio'], '.2f')} | {status} |")
        if part == "equivalence":
            for r in p.get("rows", []):
                result = "-"
                if "max_diff" in r:
                    stood = ", ".join(r["stand_ins"]) or "none"
                    result = (f"max abs diff {_f(r['max_diff'], '.1e')} (tolerance {_f(r['tolerance'], '.1e')}, "
                              f"outputs up to {_f(r['scale'], '.2g')}), {r['size']}, {r['device']}; "
                              f"real: {', '.join(r['real'])}; stood in for: {stood}")
                lines.append(f"| 4 equivalence | {r['reference']} ({r['package']}) | {result} | {r['status']} |")
        for s in p.get("skipped", []):
            case = " ".join(f"{k}={v}" for k, v in s.items() if k != "reason")
            lines.append(f"| {PARTS.index(part) + 1} {part} | {case} | - | skipped: {s['reason']} |")
        if status in ("skipped", "error") and not p.get("rows"):
            lines.append(f"| {PARTS.index(part) + 1} {part} | - | - | {status}: {p.get('reason')} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for results.json (written after every part)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is present")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (with --cpu: the CI check that the script still runs)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="seconds for the whole run, from the process start (default: 250; --tiny: 240)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which parts to run")
    p.add_argument("--llms", nargs="+", default=None,
                   help="LLM configs in bench/gpu/configs for the LALM part, in the order they run "
                   "(default: qwen2.5-7b qwen2.5-1.5b; --tiny: qwen2.5-1.5b shrunk)")
    p.add_argument("--micro-batch", type=int, default=8, help="LALM part: examples per step")
    p.add_argument("--seq-len", type=int, default=256, help="LALM part: text tokens per example (after 64 audio queries)")
    args = p.parse_args(argv)
    if args.llms is None:
        args.llms = ["qwen2.5-1.5b"] if args.tiny else ["qwen2.5-7b", "qwen2.5-1.5b"]
    if args.budget_s is None:
        args.budget_s = 240.0 if args.tiny else 250.0
    for llm in args.llms:
        if not (CONFIG_DIR / f"{llm}.json").is_file():
            p.error(f"--llms: no config {CONFIG_DIR / (llm + '.json')}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv_ = sys.argv[1:] if argv is None else list(argv)
    if argv_[:1] == [WORKER_FLAG]:  # part 4's child process: DEVICE TINY(0|1) SECONDS
        return equivalence_worker(argv_[1], argv_[2] == "1", float(argv_[3]))
    args = parse_args(argv)
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device visible: pass --cpu (with --tiny for the quick check)", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu else "cuda"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    budget = Budget(args.budget_s)
    results: dict[str, Any] = {
        "schema": SCHEMA, "argv": sys.argv[1:] if argv is None else list(argv), "device": device, "tiny": args.tiny,
        "budget_s": args.budget_s, "started_unix": time.time(), "environment": environment(device),
        "parts": {}, "finished": False,
    }
    write_json(path, results)
    order = [p for p in RUN_ORDER if p in args.parts]
    for i, part in enumerate(order):
        # the fixed parts get their share; the last part gets whatever is left
        left = budget.total_s - budget.elapsed()
        share = left if part == "lalm" or i == len(order) - 1 else (TINY_SHARES if args.tiny else SHARES)[part] * budget.total_s
        budget.start_part(share)
        t0 = time.perf_counter()
        print(f"[{budget.elapsed():6.1f} s] part {part}: up to {min(share, left):.0f} s", flush=True)
        try:
            if left < 5:
                raise Skip(f"only {left:.0f} s of the {budget.total_s:.0f} s budget left")
            res = PART_FUNCS[part](args, budget)
            res.setdefault("status", "ok")
        except Skip as e:
            res = {"status": "skipped", "reason": str(e)}
        except Exception as e:
            res = {"status": "error", "reason": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=12)}
        res["seconds"] = time.perf_counter() - t0
        results["parts"][part] = res
        results["elapsed_s"] = budget.elapsed()
        write_json(path, results)
        print(f"[{budget.elapsed():6.1f} s] part {part}: {res['status']}"
              + (f" ({res['reason']})" if res.get("reason") else ""), flush=True)
    results["finished"] = True
    results["elapsed_s"] = budget.elapsed()
    write_json(path, results)
    print()
    print(table(results))
    print(f"\n{budget.elapsed():.0f} s in all; results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
