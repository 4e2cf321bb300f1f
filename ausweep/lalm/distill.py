"""DeSTA-style self-distilled training data: the backbone itself writes the responses the LALM learns.

Where it sits: between the training clips' text metadata (a caption, a transcript, attributes, and
the instructions to ask about each clip; the generated demo set writes ``train_metadata.jsonl``,
:mod:`ausweep.data.demo_mc`) and LALM training (:mod:`ausweep.lalm.train` reads the instruction
JSONL this writes, :func:`ausweep.lalm.data.load_instructions`).

DeSTA2 / DeSTA2.5-Audio (Lu et al. 2024, 2025) train an audio LLM on responses its own backbone
wrote: the backbone is shown the clip's metadata as text, ``[00:00-00:05] Hello world (Gender:
Female, Emotion: Happy)``, followed by an instruction, and its generation becomes the target the
audio model must produce from the *audio* and the instruction alone. The targets are then in the
backbone's own words and style, and what the backbone knows about a "2400 Hz tone" or "C4, E4 and
G4" is what the LALM learns to say when it hears one. Here::

    metadata line + instruction -> prompt (template, then the tokenizer's chat template if it has
    one) -> greedy generation (max_new_tokens) -> {"audio", "instruction", "response"}

A metadata JSONL line::

    {"audio": "clips/a.wav", "caption": "a 440 Hz sine tone, 1.2 s, loud",
     "transcript": "optional spoken words", "attributes": {"loudness": "loud"},
     "instructions": ["Describe the sound.", "How loud is the sound?"]}

Cached and resumable: the output lives under ``$AUSWEEP_CACHE/desta/<key>/``, keyed by the
backbone's identity and dtype, the metadata file's digest (and folder, which relative audio paths
hang from), the prompt template and the generation settings. The (clip, instruction) rows are cut
into shards of ``shard_size``; each shard is written atomically when generated, so a killed run
continues from the shards that exist, and ``train.jsonl`` is written last, from the shards in
order (no row twice). One process at a time builds a key (a lock file beside it); Ray actors
(``num_actors``, each one backbone replica) share the missing shards, as in
:mod:`ausweep.extract`; ``num_actors = 0`` runs in this process without Ray.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ausweep.config import FileFormatError, option
from ausweep.files import cache_root, jsonl_records, lock_file, write_jsonl_atomic, write_text_atomic

log = logging.getLogger(__name__)

# Bump when the meaning of a cached response changes (prompt rendering, cleaning): old entries then miss.
CACHE_VERSION = 1
METADATA_FIELDS = ("audio", "caption", "transcript", "attributes", "instructions")
DEFAULT_PROMPT = (
    "Here is a description of an audio clip, one line per segment: [start-end] what is heard "
    "(attributes).\n{metadata}\n\nAnswer as if you were listening to the clip yourself; do not mention "
    "the description.\n{instruction}"
)
PLAIN_SUFFIX = "\nAnswer:"  # ends the prompt of a backbone without a chat template
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


class MetadataFormatError(FileFormatError):
    """A metadata file that cannot be read: the message names the file, line and field."""


@dataclass(frozen=True)
class DistillConfig:
    prompt: str = option(DEFAULT_PROMPT, help="Prompt template shown to the backbone; must contain {metadata} (the clip's DeSTA metadata line) and {instruction}.")
    chat_template: bool = option(True, help="Wrap the prompt in the backbone tokenizer's chat template as a user turn when it has one (else, and with False: the plain prompt followed by 'Answer:').")
    max_new_tokens: int = option(64, help="Longest response the backbone writes (greedy decoding); training crops it further to lalm.max_text_tokens.")
    num_actors: int = option(0, help="Ray actors (backbone replicas) sharing the shards; 0 generates in this process without Ray.")
    gpus_per_actor: float = option(0.0, help="GPUs each actor asks Ray for (0 on CPU machines).")
    cpus_per_actor: float = option(1.0, help="CPUs each actor asks Ray for.")
    shard_size: int = option(64, help="(clip, instruction) rows per shard: the unit of caching, scheduling and resume.")
    batch_size: int = option(8, help="Prompts per generate() call inside an actor.")
    device: str = option("auto", help="'auto' (GPU if the actor has one), 'cpu', 'cuda', 'cuda:1'...")
    cache_dir: str | None = option(None, help="Where distilled sets are kept; default $AUSWEEP_CACHE/desta. Use shared storage on a cluster.")
    progress: bool = option(True, help="Show a progress bar over rows.")

    def __post_init__(self) -> None:
        if "{metadata}" not in self.prompt or "{instruction}" not in self.prompt:
            raise ValueError("distill.prompt must contain {metadata} and {instruction}")
        try:
            self.prompt.format(metadata="", instruction="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"distill.prompt is not a valid template ({e!r}); write literal braces as {{{{ }}}}") from None
        if self.max_new_tokens < 1 or self.shard_size < 1 or self.batch_size < 1:
            raise ValueError("distill.max_new_tokens, shard_size and batch_size must be >= 1")
        if self.num_actors < 0 or self.gpus_per_actor < 0 or self.cpus_per_actor <= 0:
            raise ValueError("distill.num_actors and gpus_per_actor must be >= 0 and cpus_per_actor > 0")

    def root(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else cache_root() / "desta"


class DistillError(RuntimeError):
    """Self-distillation failed; the message names the backbone and the file."""


# ----------------------------------------------------------------------------- metadata and prompts


@dataclass(frozen=True)
class ClipMetadata:
    """One training clip's text metadata and the instructions to ask about it."""

    audio: str  # absolute path
    caption: str
    transcript: str | None
    attributes: tuple[tuple[str, str], ...]
    instructions: tuple[str, ...]


def _scalar(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) and not (isinstance(v, str) and not v.strip())


def load_metadata(path: str | os.PathLike, check_audio: bool = True) -> list[ClipMetadata]:
    """Every clip of a metadata JSONL file (see the module docstring), in file order. ``audio`` is
    relative to the file's folder; ``transcript`` and ``attributes`` are optional. Errors name the
    file, the line and the field."""
    path = Path(path)
    out: list[ClipMetadata] = []
    for n, rec in jsonl_records(path, MetadataFormatError):
        where = f"line {n}"
        unknown = sorted(set(rec) - set(METADATA_FIELDS))
        if unknown:
            raise MetadataFormatError(path, where, unknown[0], f"unknown field (expected {', '.join(METADATA_FIELDS)})")
        for key in ("audio", "caption"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise MetadataFormatError(path, where, key, "missing or not a non-empty string")
        transcript = rec.get("transcript")
        if transcript is not None and (not isinstance(transcript, str) or not transcript.strip()):
            raise MetadataFormatError(path, where, "transcript", "not a non-empty string (leave it out when there is no speech)")
        attributes = rec.get("attributes", {})
        if not isinstance(attributes, dict) or not all(isinstance(k, str) and _scalar(v) for k, v in attributes.items()):
            raise MetadataFormatError(path, where, "attributes", "not an object of names to strings or numbers")
        instructions = rec.get("instructions")
        if not isinstance(instructions, list) or not instructions or not all(isinstance(i, str) and i.strip() for i in instructions):
            raise MetadataFormatError(path, where, "instructions", "missing or not a non-empty list of non-empty strings")
        audio = Path(rec["audio"])
        if not audio.is_absolute():
            audio = path.parent / audio
        if check_audio and not audio.is_file():
            raise MetadataFormatError(path, where, "audio", f"audio file {audio} does not exist")
        out.append(ClipMetadata(os.path.normpath(os.path.abspath(audio)), rec["caption"].strip(),
                                transcript.strip() if transcript else None,
                                tuple((k, str(v)) for k, v in attributes.items()), tuple(instructions)))
    if not out:
        raise MetadataFormatError(path, "", "", "no clips")
    return out


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes):02d}:{rest:04.1f}" if rest != int(rest) else f"{int(minutes):02d}:{int(rest):02d}"


def metadata_line(meta: ClipMetadata) -> str:
    """The clip as DeSTA's metadata text: ``[start-end] heard (Name: value; ...)``.

    The heard part is the transcript in quotes when there is speech (the caption then joins the
    attributes), else the caption. Without a ``duration_s`` attribute the time span is left out.
    """
    attrs = dict(meta.attributes)
    duration = attrs.pop("duration_s", None)
    parts = [("Caption", meta.caption)] if meta.transcript else []
    parts += [(k.replace("_", " ").capitalize(), v) for k, v in attrs.items()]
    heard = f'"{meta.transcript}"' if meta.transcript else meta.caption
    span = ""
    if duration is not None:
        try:
            span = f"[00:00-{_clock(float(duration))}] "
        except ValueError:
            parts.append(("Duration", duration))
    tail = f" ({'; '.join(f'{k}: {v}' for k, v in parts)})" if parts else ""
    return f"{span}{heard}{tail}"


def build_prompt(meta: ClipMetadata, instruction: str, template: str = DEFAULT_PROMPT) -> str:
    """The text the backbone answers, before any chat template."""
    return template.format(metadata=metadata_line(meta), instruction=instruction)


def render(tokenizer: Any, prompt: str, chat_template: bool = True) -> tuple[str, bool]:
    """``(text, add_special_tokens)``: ``prompt`` as one user turn of the tokenizer's chat template
    with the assistant's turn opened (its special tokens are in the text), or, without a template,
    ``prompt + "\\nAnswer:"`` to be tokenized with the tokenizer's own special tokens."""
    if chat_template and getattr(tokenizer, "chat_template", None):
        # enable_thinking=False: Qwen3's template would otherwise open a reasoning block first;
        # other templates ignore the extra variable.
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True, enable_thinking=False)
        return text, False
    return prompt + PLAIN_SUFFIX, True


def clean_response(text: str) -> str:
    """A generation as a training target: reasoning blocks (``<think>...``) dropped, whitespace trimmed."""
    return _THINK.sub("", text).strip()


# ----------------------------------------------------------------------------- the cache


def metadata_digest(path: str | os.PathLike) -> dict[str, str]:
    """The metadata file's content digest and folder (relative audio paths hang from it)."""
    path = Path(path)
    return {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "folder": str(path.resolve().parent)}


def distill_spec(llm: str, dtype: str, metadata_path: str | os.PathLike, cfg: DistillConfig) -> dict[str, Any]:
    """Everything that determines a distilled set (JSON-able): its cache key is a hash of this."""
    from ausweep.models.text import text_model_identity

    return {"kind": "desta", "version": CACHE_VERSION, "model": text_model_identity(llm, None), "dtype": dtype,
            "metadata": metadata_digest(metadata_path), "prompt": cfg.prompt, "chat_template": cfg.chat_template,
            "generation": {"max_new_tokens": cfg.max_new_tokens, "do_sample": False, "num_beams": 1}}


def distill_dir(llm: str, dtype: str, metadata_path: str | os.PathLike, cfg: DistillConfig) -> Path:
    from ausweep.extract.cache import spec_key

    return cfg.root() / spec_key(distill_spec(llm, dtype, metadata_path, cfg))


def _shard_path(folder: Path, start: int, end: int) -> Path:
    return folder / "shards" / f"rows-{start:07d}-{end:07d}.jsonl"


# ----------------------------------------------------------------------------- the worker


def _actor_cpus() -> int | None:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    ctx = ray.get_runtime_context()
    if ctx.get_actor_id() is None:
        return None
    return max(1, int(ctx.get_assigned_resources().get("CPU", 1)))


class Distiller:
    """One loaded backbone that answers shards of prompts. A plain class; ``ray.remote`` makes it an actor."""

    def __init__(self, llm: str, dtype: str, device: str, batch_size: int, max_new_tokens: int, chat_template: bool):
        cpus = _actor_cpus()
        if cpus is not None:
            import torch

            torch.set_num_threads(cpus)  # follow the actor's reservation (see ausweep.extract.worker)
        self.llm, self.dtype, self.batch_size = llm, dtype, batch_size
        self.max_new_tokens, self.chat_template = max_new_tokens, chat_template
        self.device = device
        self.lm: Any = None

    def ready(self) -> str:
        """Load the backbone (not in ``__init__``, so a load error reaches the driver as itself)."""
        if self.lm is None:
            from ausweep.extract.worker import resolve_device
            from ausweep.models.heads import load_lm_with_head

            self.device = resolve_device(self.device)
            self.lm = load_lm_with_head(self.llm, kind="causal", device=self.device, dtype=self.dtype)
            tok = self.lm.tokenizer
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token or tok.unk_token or tok.bos_token
            tok.padding_side = "left"  # generation continues from the last position of every row
        return self.device

    def generate(self, prompts: Sequence[str]) -> list[str]:
        """Greedy responses to ``prompts`` (before the chat template), cleaned."""
        import torch
        from transformers import GenerationConfig

        self.ready()
        tok, model = self.lm.tokenizer, self.lm.model
        # A prompt too long for the backbone loses its start: the instruction at its end stays.
        room = None if self.lm.max_length is None else max(1, self.lm.max_length - self.max_new_tokens)
        gen = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens,
                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        out: list[str] = []
        for i in range(0, len(prompts), self.batch_size):
            rows = []
            for p in prompts[i : i + self.batch_size]:
                text, special = render(tok, p, self.chat_template)
                ids = tok(text, add_special_tokens=special)["input_ids"]
                rows.append(ids[-room:] if room is not None else ids)
            longest = max(len(r) for r in rows)
            ids_t = torch.full((len(rows), longest), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), longest), dtype=torch.long)
            for k, r in enumerate(rows):
                ids_t[k, longest - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[k, longest - len(r):] = 1
            with torch.no_grad():
                gen_ids = model.generate(input_ids=ids_t.to(model.device), attention_mask=mask.to(model.device),
                                         generation_config=gen)
            new = gen_ids[:, longest:]
            out.extend(clean_response(t) for t in tok.batch_decode(new, skip_special_tokens=True))
        return out

    def shard(self, rows: Sequence[tuple[str, str, str]], path: str) -> int:
        """Answer one shard of ``(audio, instruction, prompt)`` rows and write it atomically to ``path``."""
        if Path(path).is_file():  # another actor or an earlier run got here first
            return len(rows)
        responses = self.generate([p for _, _, p in rows])
        write_jsonl_atomic(path, [{"audio": a, "instruction": i, "response": r}
                                  for (a, i, _), r in zip(rows, responses)])
        return len(rows)


# ----------------------------------------------------------------------------- the driver


def _unwrap(e: BaseException) -> BaseException:
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def distill(llm: str, metadata_path: str | os.PathLike, cfg: DistillConfig = DistillConfig(),
            dtype: str = "float32") -> Path:
    """The self-distilled instruction JSONL of backbone ``llm`` for the clips of ``metadata_path``
    (generated on first use, resumed from existing shards, then reused). Rows whose response is
    empty after cleaning are left out (counted in ``stats.json`` beside it); all empty raises."""
    metadata_path = Path(metadata_path).expanduser()
    if not metadata_path.is_file():
        raise MetadataFormatError(metadata_path, "", "", "file does not exist")
    spec = distill_spec(llm, dtype, metadata_path, cfg)
    folder = distill_dir(llm, dtype, metadata_path, cfg)
    final = folder / "train.jsonl"
    if final.is_file():
        return final
    clips = load_metadata(metadata_path)
    rows = [(m.audio, ins, build_prompt(m, ins, cfg.prompt)) for m in clips for ins in m.instructions]
    # A whole-key lock: a second process (another trial of the same backbone) waits, then reuses.
    # It is broken when its holder died (same host) or stopped touching it (another node).
    with lock_file(cfg.root() / f".{folder.name}.lock", timeout_s=7 * 24 * 3600.0):
        if final.is_file():
            return final
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "spec.json", json.dumps(spec, indent=1) + "\n")
        bounds = [(s, min(s + cfg.shard_size, len(rows))) for s in range(0, len(rows), cfg.shard_size)]
        todo = [(s, e) for s, e in bounds if not _shard_path(folder, s, e).is_file()]
        if todo:
            log.info("self-distillation with %s: %d of %d shards to generate (%d rows)", llm, len(todo), len(bounds), len(rows))
            _run_shards(llm, dtype, cfg, [(rows[s:e], str(_shard_path(folder, s, e))) for s, e in todo],
                        total=len(rows), done=len(rows) - sum(e - s for s, e in todo))
        _combine(folder, bounds, len(rows), llm, metadata_path)
    return final


def _run_shards(llm: str, dtype: str, cfg: DistillConfig, jobs: list[tuple[list, str]], total: int, done: int) -> None:
    from tqdm.auto import tqdm

    args = (llm, dtype, cfg.device, cfg.batch_size, cfg.max_new_tokens, cfg.chat_template)
    bar = tqdm(total=total, initial=done, desc=f"self-distillation {llm}", unit="row", disable=not cfg.progress,
               dynamic_ncols=True)
    actors: list[Any] = []
    try:
        if cfg.num_actors == 0:
            worker = Distiller(*args)
            worker.ready()
            for rows, path in jobs:
                bar.update(worker.shard(rows, path))
            return
        import ray
        from ray.util import ActorPool

        from ausweep.runtime import init_ray

        init_ray()
        actor_cls = ray.remote(Distiller).options(num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor)
        actors = [actor_cls.remote(*args) for _ in range(min(cfg.num_actors, len(jobs)))]
        ray.get([a.ready.remote() for a in actors])
        for n in ActorPool(actors).map_unordered(lambda a, job: a.shard.remote(job[0], job[1]), jobs):
            bar.update(n)
    except Exception as e:
        cause = _unwrap(e)
        raise DistillError(f"self-distillation with backbone '{llm}': {cause}") from cause
    finally:
        bar.close()
        if actors:
            import ray

            for a in actors:
                ray.kill(a)


def _combine(folder: Path, bounds: list[tuple[int, int]], n_rows: int, llm: str, metadata_path: Path) -> None:
    """``train.jsonl`` from the shards in row order (relative audio paths), then ``stats.json``."""
    from ausweep.lalm.data import InstructionExample, save_instructions

    examples, empty = [], 0
    for s, e in bounds:
        path = _shard_path(folder, s, e)
        recs = [rec for _, rec in jsonl_records(path, MetadataFormatError)]
        if len(recs) != e - s:
            raise DistillError(f"shard {path} holds {len(recs)} rows, expected {e - s}; delete it to regenerate")
        for rec in recs:
            if rec["response"]:
                examples.append(InstructionExample(rec["audio"], rec["instruction"], rec["response"]))
            else:
                empty += 1
    if not examples:
        raise DistillError(f"backbone '{llm}' wrote an empty response to every instruction of {metadata_path}; "
                           f"nothing to train on (shards kept in {folder / 'shards'})")
    if empty:
        log.warning("self-distillation with %s: %d of %d responses were empty and are left out", llm, empty, n_rows)
    write_text_atomic(folder / "stats.json", json.dumps({"rows": n_rows, "kept": len(examples), "empty": empty}) + "\n")
    save_instructions(examples, folder / "train.jsonl")  # last: its presence means the set is complete
