"""AudioBERT on AuditoryBench as a sweepable study (``python -m ausweep.sweep lora_rank``).

One trial = one (task, LoRA settings, seed) point:

1. *Auditory context*, shared by every trial of a task and so built once by :func:`prepare` and
   cached: the span detector is trained on the task's train spans and tags every sentence; each
   detected span's text (up to ``span.max_spans`` per sentence) goes through CLAP's text tower and
   retrieves the nearest clip of an audio corpus, whose CLAP audio embeddings come from the
   extraction stage (sharded, cached).
2. AudioBERT: each span's retrieved audio embedding is projected and written over the input
   embedding of that span's first token; LoRA is active only for sentences with a span; trained
   with the masked-LM loss, best dev epoch kept. With ``adapter.audio_source=ast`` (upstream's code)
   an AST reads each span's retrieved clip (its audio, read from the corpus) instead, and trains
   jointly; its mean-pooled output is what is written.
3. Scores per split with the upstream metrics (animal: exact match of every word-piece; pitch:
   higher vs lower at the mask), next to the same BERT with no audio (the text-only model).

Dev chooses, test and wiki are held out: the best epoch is chosen on dev accuracy only (test and
wiki are scored once, after training, with the chosen weights), and the sweep ranks trials on
``dev/acc``. By default the dev, test and wiki rows that repeat a train row are left out
(``cross_split_duplicates``; counts in ``<split>/n_in_train``), so neither choice rewards memory.

Every detected span carries its own retrieved audio, up to ``span.max_spans`` per sentence (the
first ones in sentence order; default 2): the pitch task compares two sounds ("The sound of a flute
has a [MASK] pitch than the sound of a tuba"), and each of its two spans gets its own clip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ausweep.audiobert.config import AudioBertExperiment, TrainConfig
from ausweep.config import config_hash, to_dict
from ausweep.study import CHECKPOINT, Study
from ausweep.track.artifacts import rows_to_csv

log = logging.getLogger(__name__)
CONTEXT_VERSION = 4  # 2: all spans per sentence (span (N, K, 2), audio (N, K, d), clip (N, K)); 3: cross_split_duplicates; 4: clip_path
NO_SPAN = -1


def _items(cfg: AudioBertExperiment, split: str) -> list[Any]:
    from ausweep.benchmarks.auditorybench import load_auditorybench

    items = load_auditorybench(cfg.task, split, cross_split_duplicates=cfg.cross_split_duplicates)
    # Three animal train sentences hold two [MASK]s (flagged "multi_mask"). Both stand for the
    # animal, so writing the answer into one would leak it into the other: AudioBERT skips them.
    kept = [it for it in items if it.sentence.count("[MASK]") == 1]
    if len(kept) < len(items):
        log.info("AuditoryBench %s/%s: skipping %d item(s) without exactly one [MASK]", cfg.task, split, len(items) - len(kept))
    return kept[: cfg.max_items] if cfg.max_items else kept


def _splits(cfg: AudioBertExperiment) -> list[str]:
    return ["train"] + [s for s in cfg.eval_splits if s != "train"]


def clap_text_tower(name: str, device: str = "cpu"):
    """The CLAP text tower matching audio registry name ``name`` (same checkpoint, same space)."""
    from ausweep.models.catalog import AUDIO_HUB
    from ausweep.models.clap import ClapTextAudio

    if name == "tiny-clap-joint":
        return ClapTextAudio.tiny(device=device)
    if name.startswith("laion-clap"):  # LAION-CLAP's original files (ausweep.models.laion_clap)
        from ausweep.models.laion_clap import load_clap_text_audio

        return load_clap_text_audio(name, device=device)
    hub = {n: h for n, h, _ in AUDIO_HUB}
    if name not in hub and "/" not in name:
        from ausweep.registry import UnknownNameError

        raise UnknownNameError("CLAP model", name, sorted(n for n in hub if n.startswith("clap")) + ["tiny-clap-joint"])
    return ClapTextAudio.from_pretrained(hub.get(name, name), device=device)


def context_spec(cfg: AudioBertExperiment) -> dict[str, Any]:
    from ausweep.data.sources import load_soundset
    from ausweep.models.audio import audio_model_identity

    return {
        "kind": "audiobert-context",
        "version": CONTEXT_VERSION,
        "task": cfg.task,
        "max_items": cfg.max_items,
        "cross_split_duplicates": cfg.cross_split_duplicates,
        "splits": _splits(cfg),
        "span": to_dict(cfg.span),
        "clap": audio_model_identity(cfg.retrieval.clap, None),
        "corpus": load_soundset(cfg.retrieval.corpus).digest(),
    }


def auditory_context(cfg: AudioBertExperiment) -> dict[str, Any]:
    """Per split, K = ``span.max_spans`` slots per sentence, filled in sentence order: ``span``
    (N, K, 2) character spans (-1 in empty slots), ``audio`` (N, K, d) the retrieved CLAP audio
    embedding of each span (zeros in empty slots), ``clip`` (N, K) retrieved clip indices (-1 in
    empty slots), ``clip_path`` (N, K) the retrieved clip's audio file ('' in empty slots: what
    ``adapter.audio_source=ast`` reads); plus ``metrics``. Cached under a hash of everything that
    determines it."""
    cache = cfg.retrieval.extract.cache()
    spec = context_spec(cfg)
    hit = cache.get(spec)
    if hit is None:
        hit = _build_context(cfg)
        cache.save(spec, hit)
        hit = cache.load(spec)
    metrics = json.loads(str(hit.pop("metrics")))
    out: dict[str, Any] = {"metrics": metrics}
    for split in _splits(cfg):
        out[split] = {k: hit[f"{split}/{k}"] for k in ("span", "audio", "clip", "clip_path")}
    return out


def _build_context(cfg: AudioBertExperiment) -> dict[str, np.ndarray]:
    from ausweep.audiobert.retrieval import AudioIndex, retrieve_audio_embeddings
    from ausweep.audiobert.span_detector import locate_spans
    from ausweep.data.sources import load_soundset
    from ausweep.extract import audio_clip_embeddings

    splits = {s: _items(cfg, s) for s in _splits(cfg)}
    K = cfg.span.max_spans
    metrics: dict[str, float] = {}
    spans: dict[str, list[list[tuple[int, int]]]] = {}
    if cfg.span.source == "gold":
        for s, items in splits.items():
            spans[s] = [locate_spans(it.sentence, it.spans)[0][:K] for it in items]
    else:
        detector = _train_detector(cfg, splits)
        for s, items in splits.items():
            spans[s] = [found[:K] for found in detector.predict_spans([it.sentence for it in items])]
            if s != "train":
                scores = detector.evaluate([it.sentence for it in items], [list(it.spans) for it in items])
                metrics.update({f"span/{s}/{k}": float(v) for k, v in scores.items()})

    corpus = load_soundset(cfg.retrieval.corpus)
    clip_emb = audio_clip_embeddings(cfg.retrieval.clap, None, corpus, cfg.retrieval.extract, cfg.retrieval.corpus.max_seconds)
    index = AudioIndex(clip_emb)
    text_tower = clap_text_tower(cfg.retrieval.clap)
    clip_text = [corpus.class_text[c.label].lower() for c in corpus.clips]
    # One retrieval over every slot of every split: K queries per sentence, None in empty slots.
    queries = [
        it.sentence[sp[k][0] : sp[k][1]] if k < len(sp) else None
        for s, items in splits.items() for it, sp in zip(items, spans[s]) for k in range(K)
    ]
    audio, picked = retrieve_audio_embeddings(queries, text_tower.embed_text, index)
    audio, picked = audio.numpy().astype(np.float32), picked.numpy()
    out: dict[str, np.ndarray] = {}
    start = 0
    for s, items in splits.items():
        n = len(items)
        rows = slice(start, start + n * K)
        start += n * K
        padded = [sp + [(NO_SPAN, NO_SPAN)] * (K - len(sp)) for sp in spans[s]]
        out[f"{s}/span"] = np.array(padded, dtype=np.int64).reshape(n, K, 2)
        out[f"{s}/audio"] = audio[rows].reshape(n, K, audio.shape[1])
        out[f"{s}/clip"] = picked[rows].reshape(n, K)
        out[f"{s}/clip_path"] = np.array([corpus.clips[p].path if p >= 0 else "" for p in picked[rows].tolist()],
                                         dtype=str).reshape(n, K)
        counts = [len(sp) for sp in spans[s]]
        metrics[f"span/{s}/coverage"] = float(np.mean([c > 0 for c in counts])) if items else 0.0
        metrics[f"span/{s}/spans_per_sentence"] = float(np.mean(counts)) if items else 0.0
        if cfg.task == "animal":
            # The corpus is labelled by sound class, not by AuditoryBench answer: a retrieval counts
            # as a hit when a clip retrieved for one of the sentence's spans names the animal.
            hits = [any(p >= 0 and it.answer.lower() in clip_text[p] for p in row)
                    for it, row in zip(items, out[f"{s}/clip"].tolist())]
            metrics[f"retrieval/{s}/label_match_at_1"] = float(np.mean(hits)) if hits else 0.0
    out["metrics"] = np.array(json.dumps(metrics))
    return out


def _train_detector(cfg: AudioBertExperiment, splits: dict[str, list[Any]]):
    from ausweep.audiobert.span_detector import SpanDetector

    s = cfg.span
    detector = SpanDetector.tiny(seed=s.seed) if s.model == "tiny-bert" else SpanDetector.from_pretrained(s.model)
    train_cfg = TrainConfig(lr=s.lr, epochs=s.epochs, batch_size=s.batch_size, warmup_ratio=0.0, seed=s.seed)
    log.info("training the span detector (%s) on %d %s sentences", s.model, len(splits["train"]), cfg.task)
    detector.fit([it.sentence for it in splits["train"]], [list(it.spans) for it in splits["train"]], train_cfg,
                 [it.sentence for it in splits["dev"]], [list(it.spans) for it in splits["dev"]])
    return detector


# ----------------------------------------------------------------------------- one trial


def _encode(cfg: AudioBertExperiment, tokenizer: Any, split: str, ctx: dict[str, Any], max_length: int,
            bank_rows: dict[str, int] | None = None) -> dict[str, Any]:
    import torch

    from ausweep.audiobert.model import encode_masked

    items = _items(cfg, split)
    # slot k of a sentence keeps its place (None when empty) so span k meets audio[:, k]
    spans = [[None if a == NO_SPAN else (int(a), int(b)) for a, b in row] for row in ctx[split]["span"]]
    data = encode_masked(tokenizer, [it.sentence for it in items], spans, [it.answer for it in items],
                         max_length=max_length)
    if bank_rows is None:
        data["audio_embedding"] = torch.from_numpy(ctx[split]["audio"])
    else:  # audio_source=ast: each slot names its clip's row of the audio bank (-1: empty slot)
        data["audio_clip"] = torch.tensor([[bank_rows[p] if p else NO_SPAN for p in row]
                                           for row in ctx[split]["clip_path"].tolist()], dtype=torch.long)
    return data


def load_ast(name: str) -> tuple[Any, Any]:
    """``(ASTModel, ASTFeatureExtractor)`` of audio registry name ``name`` (``ast``, ``tiny-ast``, a
    folder or hub id), for ``adapter.audio_source=ast``."""
    from ausweep.models.audio import ASTEncoder, load_audio_encoder

    enc = load_audio_encoder(name, device="cpu")
    if not isinstance(enc, ASTEncoder):
        raise ValueError(f"adapter.audio_encoder: '{name}' is a {type(enc).__name__}, not an AST "
                         "(audio_source=ast runs an Audio Spectrogram Transformer, e.g. 'ast' or 'tiny-ast')")
    return enc.model, enc.fe


def ast_audio_bank(cfg: AudioBertExperiment, ctx: dict[str, Any], feature_extractor: Any) -> tuple[Any, dict[str, int]]:
    """The AST input features of every clip retrieved in any split, (U, frames, mels), and each
    clip path's row. The clips are read from the corpus here, once per trial."""
    from ausweep.audiobert.retrieval import clip_features

    paths = sorted({p for s in _splits(cfg) for p in ctx[s]["clip_path"].ravel().tolist() if p})
    if not paths:
        raise ValueError("adapter.audio_source=ast: no span retrieved any clip, so there is no audio to read")
    log.info("reading the %d retrieved clips for the AST", len(paths))
    return clip_features(paths, feature_extractor, cfg.retrieval.corpus.max_seconds), {p: i for i, p in enumerate(paths)}


def score(model: Any, data: dict[str, Any], task: str, tokenizer: Any, batch_size: int = 64, text_only: bool = False) -> dict[str, Any]:
    """Upstream metrics on encoded ``data``: ``acc`` and per-item correctness. ``text_only`` runs the
    same weights with no spans (so no audio and no LoRA): the plain pretrained BERT."""
    import torch

    from ausweep.audiobert.train import IGNORE_INDEX
    from ausweep.benchmarks.metrics import exact_match, mask_predictions, pitch_prediction

    hi, lo = (tokenizer.convert_tokens_to_ids(w) for w in ("higher", "lower"))
    correct: list[bool] = []
    model.eval()
    n = len(data["input_ids"])
    with torch.no_grad():
        for i in range(0, n, batch_size):
            batch = {k: v[i : i + batch_size] for k, v in data.items()}
            if text_only:
                batch["span_first_token"] = torch.full_like(batch["span_first_token"], NO_SPAN)
            labels = batch.pop("labels")
            logits = model(**batch)
            for row, lab in zip(logits, labels):
                pos = (lab != IGNORE_INDEX).nonzero().squeeze(1).tolist()
                if task == "animal":
                    correct.append(exact_match(mask_predictions(row, pos), lab[pos].tolist()))
                else:
                    gold = "higher" if int(lab[pos[0]]) == hi else "lower"
                    correct.append(pitch_prediction(row[pos[0]], hi, lo) == gold)
    return {"acc": float(np.mean(correct)) if correct else float("nan"), "correct": correct}


def trial(cfg: AudioBertExperiment, restore: Path | None = None) -> Iterator[dict[str, Any]]:
    """Train one AudioBERT; yields a result per epoch (for ASHA and PBT), then the final scores.

    Each epoch's result offers the training state at its end (:data:`~ausweep.study.CHECKPOINT`);
    ``restore`` (a folder holding one, maybe another trial's: PBT) goes on from that state with this
    config's learning rate, weight decay and clipping. The best dev epoch is then the best of the
    state's history and the epochs trained here."""
    import torch

    from ausweep.audiobert.model import AudioBert, lora_param_formula
    from ausweep.audiobert.train import fit_epochs, load_training_state, save_training_state
    from ausweep.models.heads import load_lm_with_head

    ctx = auditory_context(cfg)
    lm = load_lm_with_head(cfg.model, kind="mlm", device=cfg.train.device)
    ast, bank, bank_rows = None, None, None
    if cfg.adapter.audio_source == "ast":  # upstream's code: a jointly trained AST reads the retrieved clips
        ast, fe = load_ast(cfg.adapter.audio_encoder)
        bank, bank_rows = ast_audio_bank(cfg, ctx, fe)
        d_audio = int(ast.config.hidden_size)
    else:
        d_audio = int(ctx["train"]["audio"].shape[-1])
    adapter = dataclasses.replace(cfg.adapter, d_audio=d_audio)
    model = AudioBert(lm.model, adapter, audio_encoder=ast)
    if bank is not None:
        model.set_audio_bank(bank)
    tok = lm.tokenizer
    max_length = min(256, lm.max_length or 256)  # AuditoryBench sentences are short; 256 is ample
    data = {s: _encode(cfg, tok, s, ctx, max_length, bank_rows) for s in _splits(cfg)}

    def dev_eval(m: Any) -> dict[str, float]:  # selects the best epoch: dev only, never test or wiki
        return {"acc": score(m, data["dev"], cfg.task, tok, cfg.train.eval_batch_size)["acc"]}

    torch.manual_seed(cfg.train.seed)
    # Training runs in this generator's own thread, one epoch per row asked for: when Tune stops the
    # trial (ASHA, a stopper) it stops asking or closes the generator, and no epoch runs after that.
    # (A helper thread feeding a queue would train on beside the next trial of a reused actor.)
    resume = load_training_state(restore) if restore is not None else None
    epochs = fit_epochs(model, data["train"], cfg.train, eval_fn=dev_eval, metric="acc", resume=resume)
    with contextlib.closing(epochs):
        while True:
            try:
                row = next(epochs)
            except StopIteration as done:
                result = done.value
                break
            yield {"train_loss": row["train_loss"], "dev/acc": row.get("dev_acc", float("nan")), "epoch": row["epoch"],
                   CHECKPOINT: lambda folder, row=row: save_training_state(row.training_state(), folder)}

    metrics: dict[str, Any] = dict(ctx["metrics"])
    per_item = []
    for s in cfg.eval_splits:  # held-out splits are scored here, after training, for the first time
        audio = score(model, data[s], cfg.task, tok, cfg.train.eval_batch_size)
        text = score(model, data[s], cfg.task, tok, cfg.train.eval_batch_size, text_only=True)
        metrics[f"{s}/acc"] = audio["acc"]
        metrics[f"{s}/acc_text_only"] = text["acc"]
        metrics.update({f"{s}/{k}": v for k, v in overlap_counts(cfg, s).items()})
        metrics[f"{s}/n"] = float(len(audio["correct"]))
        n_spans = (ctx[s]["span"][:, :, 0] != NO_SPAN).sum(1)  # (N,)
        per_item += [{"split": s, "index": i, "has_span": bool(n_spans[i] > 0), "n_spans": int(n_spans[i]),
                      "correct": a, "correct_text_only": t}
                     for i, (a, t) in enumerate(zip(audio["correct"], text["correct"]))]
    hidden, layers = lm.model.config.hidden_size, lm.model.config.num_hidden_layers
    metrics.update({
        "dev/acc": result.best_metric, "best_epoch": result.best_epoch,
        "trainable_params": model.trainable_parameter_count(),
        "lora_params": model.lora_parameter_count(),
        "lora_params_formula": lora_param_formula(hidden, layers, adapter.lora_r, adapter.target_modules),
        "examples_per_s": result.examples_per_s,
    })
    yield {
        **metrics,
        "artifacts": {"predictions.csv": rows_to_csv(per_item), "history.json": json.dumps(result.history, indent=1)},
        "tags": {"ausweep.context": config_hash(context_spec(cfg)), "ausweep.cross_split_duplicates": cfg.cross_split_duplicates,
                 **{f"ausweep.n_dropped.{s}": int(metrics[f"{s}/n_dropped"]) for s in cfg.eval_splits}},
    }


def overlap_counts(cfg: AudioBertExperiment, split: str) -> dict[str, float]:
    """``n_in_train``: rows of the whole split that also appear in train; ``n_dropped``: how many of
    them ``cfg`` leaves out (all under "drop", none under "keep")."""
    from ausweep.benchmarks.auditorybench import n_in_train

    found = n_in_train(cfg.task, split)  # type: ignore[arg-type]
    return {"n_in_train": float(found), "n_dropped": float(found if cfg.cross_split_duplicates == "drop" else 0)}


# ----------------------------------------------------------------------------- sweep hooks


def prepare(configs: list[AudioBertExperiment], space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Check names, then build each task's auditory context once (span detector, retrieval)."""
    from ausweep.models.audio import check_audio_model
    from ausweep.models.heads import check_lm_with_head

    for c in configs:
        check_lm_with_head(c.model, kind="mlm")
        check_audio_model(c.retrieval.clap)
        if c.adapter.audio_source == "ast":
            check_audio_model(c.adapter.audio_encoder)
    done = set()
    for c in configs:
        key = config_hash(context_spec(c))
        if key not in done:
            auditory_context(c)
            done.add(key)
    return space


def summarize(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """results.csv and accuracy against LoRA rank, with the spread over seeds: held-out test accuracy
    (each trial's epoch chosen on dev), or dev accuracy, labelled as such, when test was not scored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from ausweep.config import from_dict

    records = []
    for r in rows:
        cfg = from_dict(AudioBertExperiment, r["config"], where="trial config")  # fills in the defaults
        rec = {"task": cfg.task, "rank": cfg.adapter.lora_r, "seed": cfg.train.seed, "model": cfg.model,
               "cross_split_duplicates": cfg.cross_split_duplicates}
        rec.update({k: v for k, v in r["metrics"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    path = out_dir / "results.csv"
    table.to_csv(path, index=False)
    out = [path]
    split = "test/acc" if "test/acc" in table else "dev/acc"
    if split in table:
        tasks = sorted(table["task"].unique())
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            g = table[table["task"] == task].groupby("rank")[split]
            mean, std = g.mean(), g.std().fillna(0.0)
            ax.errorbar(mean.index, mean.values, yerr=std.values, marker="o", capsize=3, label="AudioBERT (mean ± sd over seeds)")
            text_col = split.replace("/acc", "/acc_text_only")
            if text_col in table:
                ax.axhline(table[table["task"] == task][text_col].mean(), color="k", ls="--", label="same BERT, text only")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("LoRA rank r")
            ax.set_ylabel(f"{split} (held out; epoch chosen on dev)" if split.startswith("test/") else f"{split} (selection: best epoch)")
            ax.set_title(task)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "acc_vs_rank.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out


STUDY = Study(
    name="audiobert",
    config_cls=AudioBertExperiment,
    prepare=prepare,
    trial=trial,
    summarize=summarize,
    description="AudioBERT (span detector + CLAP retrieval + span-gated LoRA BERT) on AuditoryBench.",
    # what a restored trial applies (train.RESUMABLE_KEYS; torch is not imported here): what PBT may mutate
    mutable_keys=("train.lr", "train.weight_decay", "train.max_grad_norm"),
    shape_keys=("adapter.lora_r", "adapter.target_modules", "model", "retrieval.clap"),  # LoRA and projection shapes
)
