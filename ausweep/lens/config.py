"""The ``lens`` study's config (AudioLens): :class:`LensConfig` and its enhancement settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ausweep.config import option

ATTRIBUTES = ["Emotion", "Language", "Gender", "Animal"]


def _check_position(p: int | str, name: str) -> None:
    if isinstance(p, int):
        if p >= 0:
            raise ValueError(f"{name}: an offset counts from the end and must be negative (-1 = last token), got {p}")
    elif p not in ("final", "attribute"):
        raise ValueError(f"{name}: must be 'final', 'attribute' or a negative offset, got {p!r}")


@dataclass(frozen=True)
class EnhanceConfig:
    source: int | None = option(None, help="Layer whose state is fed forward, numbered as 'layers' says (audiolens: 0 = first block's output; hidden_states: 0 = embeddings); negative counts from the end in both (-1 = the last block's output). None: no enhancement.")
    target: int = option(-1, help="Layer that receives it (after source, same numbering); -1 = the last block's output.")
    coef: float = option(0.5, help="Coefficient: 'add' gives h_target + coef * h_source, 'mix' gives (1 - coef) * h_target + coef * h_source.")
    mode: Literal["add", "mix"] = option("mix", help="'add' or 'mix' (a weighted average).")
    position: int | str = option("final", help="Where: 'final' (the last token, where the answer is read), 'attribute', or a negative offset from the end.")
    split_seed: int = option(0, help="Seed of the two fixed halves of the items (per attribute and label) that every enhancement trial reports on: the sweep summary chooses source and coef on half A and scores them on half B.")

    def __post_init__(self) -> None:
        _check_position(self.position, "position")


KNOCKOUT_TARGETS = ("audio", "attribute")


@dataclass(frozen=True)
class KnockoutConfig:
    targets: list[str] = option([], help="Attention knockout (AudioLens's third finding): the last position stops attending to these keys from block l on, for every l; 'audio' (the clip's tokens; audio models only) and/or 'attribute' (the attribute word's tokens). Empty: no knockout.")
    every: int = option(1, help="Knock out from every N-th block (0, N, 2N, ...) and from L (nothing knocked: the unchanged model); 1 = every block.")

    def __post_init__(self) -> None:
        bad = [t for t in self.targets if t not in KNOCKOUT_TARGETS]
        if bad or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"knockout.targets must be distinct values of {list(KNOCKOUT_TARGETS)}, got {self.targets}")
        if self.every < 1:
            raise ValueError(f"knockout.every must be >= 1, got {self.every}")


@dataclass(frozen=True)
class LensConfig:
    model: str = option("smollm2-135m", help="Causal LM for text items: a registry name (python -m ausweep ls), a hub id or a local folder. Ignored when 'lalm' is set.")
    lalm: str | None = option(None, help="Audio-language model instead of a text LM: a native transformers LALM ('qwen2-audio', 'audioflamingo3', 'qwen2.5-omni' (its thinker), their offline random 'tiny-' builds, or a folder / locally cached hub id of one; read with its own chat template and processor, whatever 'chat' says), a folder saved by LALM.save_trained, or 'untrained:<encoder>+<llm>' (random connector, frozen LLM; plumbing only).")
    data: str = option("demo", help="Items: 'demo' (the generated text set), 'demo-audio' (generated tones, Animal only), a JSONL file of {context, attribute, label}, or a SAKURA-style folder ({Attribute}/metadata.csv + audio).")
    context_template: str | None = option(None, help="SAKURA folder with a text LM: each item's text context, formatted with its metadata.csv columns, e.g. 'A recording of {caption}.'.")
    demo_root: str | None = option(None, help="Where 'demo-audio' clips are generated (default $AUSWEEP_CACHE/demo/lens).")
    attributes: list[str] = option(list(ATTRIBUTES), help="Attributes to probe (folder names / JSONL 'attribute' values).")
    prompt_style: Literal["default", "reverse"] = option("default", help="AudioLens probing prompt: 'default' ('The speaker's emotion') or 'reverse' ('The emotion of the speaker').")
    question: Literal["plain", "with_options", "none"] = option("plain", help="User prompt before the probing prompt: plain, with 'Possible options: ...', or none.")
    is_suffix: bool = option(True, help="Append ' is' to the probing prompt, so the next token is the answer.")
    template: str = option("{context}\nQuestion: {question}\nAnswer: {probe}", help="Text LMs: the prompt, from {context}, {question} and {probe} (the probing prompt, which the answer continues).")
    audio_template: str = option("{question} {probe}", help="LALMs: the text after the audio queries, from {question} and {probe}.")
    chat: bool = option(False, help="Use the tokenizer's chat template with the probing prompt where AudioLens puts it: the context (text LMs) and question in the user turn, the probing prompt opening the assistant turn (template / audio_template are then unused). false: 'template' for text LMs; for a LALM 'audio_template', which is the format ausweep's LALMs train on (instruction, then response; no chat template).")
    option_tokens: Literal["audiolens", "space"] = option("audiolens", help="Which token stands for an option: 'audiolens' = the first of tokenizer.tokenize(option), no leading space (AudioLens's code); 'space' = the first sub-token of ' ' + option, the token a model emits after ' is' with byte-level BPE tokenizers (Llama-3, GPT-2, SmolLM2).")
    layers: Literal["audiolens", "hidden_states"] = option("audiolens", help="Layer numbering of every reported layer and of enhance.source/target: 'audiolens' = 0..L-1, layer l the output of block l+1 (AudioLens's code; the embeddings are not read); 'hidden_states' = 0..L, 0 the embedding output (transformers' hidden_states index).")
    positions: list[int | str] = option(["final", "attribute"], help="Positions to read besides the heatmap's tail: 'final' (last token), 'attribute' (last sub-token of the attribute word in the probing prompt), or negative offsets from the end.")
    resolve_at: int | str = option("auto", help="Position of the resolution layer and the curves: one of 'positions'; 'auto' = 'final' for the default style, 'attribute' for reverse (AudioLens's probe positions).")
    heatmap_tokens: int = option(8, help="The heatmap's columns: the last N positions of the prompt.")
    method: Literal["logit", "patchscope"] = option("logit", help="'logit': each layer through the final norm + unembedding; 'patchscope': each layer's state patched into the last block, read from the model's own logits.")
    patch_at: Literal["output", "input"] = option("output", help="Patchscope: replace the last block's output (equals the logit lens for standard models) or its input (the last block runs on top).")
    enhance: EnhanceConfig = option(EnhanceConfig(), help="Feed an earlier layer's state into a later one; accuracy before and after.")
    knockout: KnockoutConfig = option(KnockoutConfig(), help="Attention knockout from the last position to the audio / attribute tokens, swept over the first knocked block: knockout.csv and plots/knockout.png.")
    options: dict[str, list[str]] = option({}, help="Per attribute: candidate options, replacing AudioLens's (prompts.json).")
    probing_prompts: dict[str, dict[str, str]] = option({}, help="{style: {attribute: text}} overriding AudioLens's probing prompts.")
    questions: dict[str, str] = option({}, help="Per attribute: the plain user prompt.")
    attribute_words: dict[str, str] = option({}, help="Per attribute: the word of the probing prompt that names it (default: the attribute, lower-cased).")
    prompts_file: str | None = option(None, help="A prompts.json in AudioLens's layout (default: the copy shipped in ausweep/lens/resources).")
    max_items: int | None = option(None, help="At most N measured items (and N control items) per attribute.")
    controls: bool = option(True, help="Keep the labelled control items (the demo's, or JSONL items with control: true): contexts that name the answer, which test copying rather than hearing; they are reported apart as <A>/control/* and never enter the measured numbers.")
    batch_size: int = option(8, help="Items per forward pass.")
    device: str = option("auto", help="'auto' (GPU if this process has one), 'cpu', 'cuda', 'cuda:1'...")
    dtype: Literal["float32", "bfloat16", "float16"] = option("float32", help="Text LM weights' dtype (LALMs use their saved config's); lens probabilities are float32 either way.")

    def __post_init__(self) -> None:
        if not self.attributes or len(set(self.attributes)) != len(self.attributes):
            raise ValueError(f"attributes must be a non-empty list without repeats, got {self.attributes}")
        if not self.positions:
            raise ValueError("positions must not be empty")
        for i, p in enumerate(self.positions):
            _check_position(p, f"positions[{i}]")
        if self.resolve_at != "auto":
            _check_position(self.resolve_at, "resolve_at")
            if self.resolve_at not in self.positions:
                raise ValueError(f"resolve_at {self.resolve_at!r} must be one of positions {self.positions}")
        elif ("final" if self.prompt_style == "default" else "attribute") not in self.positions:
            raise ValueError(f"resolve_at 'auto' needs {'final' if self.prompt_style == 'default' else 'attribute'!r} in positions")
        if self.heatmap_tokens < 1 or self.batch_size < 1:
            raise ValueError("heatmap_tokens and batch_size must be >= 1")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError(f"max_items must be >= 1 or null, got {self.max_items}")
        for name in ("template", "audio_template"):
            if "{probe}" not in getattr(self, name):
                raise ValueError(f"{name} must contain {{probe}}")

    @property
    def resolve_position(self) -> str:
        if self.resolve_at == "auto":
            return "final" if self.prompt_style == "default" else "attribute"
        return str(self.resolve_at)


# ----------------------------------------------------------------------------- items and models
