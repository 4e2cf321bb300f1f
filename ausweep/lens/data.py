"""The lens study's inputs: attribute items (audio or text), the AudioLens prompts, the demo sets.

Where it sits: the first step of :mod:`ausweep.lens`. An item is one clip (or, for a text-only LM,
a text *context* that stands in for the clip) with the attribute asked about (Emotion, Language,
Gender, Animal, ...) and its right label. :mod:`ausweep.lens.lens` then builds the prompt
(context, question, probing prompt) and follows the label's probability through the layers.

Item sources:

* a SAKURA-style folder (:func:`load_sakura`): ``{root}/{Attribute}/metadata.csv`` with the columns
  ``file_name,attribute_label`` and the audio files beside it (the layout AudioLens reads);
* a JSONL file of text items (:func:`load_text_items`), one object per line (``control``, optional:
  the context names the answer, a labelled control)::

      {"id": "animal-dog-0", "context": "Sound: woof woof.", "attribute": "Animal", "label": "dog"}

* the generated demo sets: :func:`demo_text_items` (hand-written descriptions of the sound that
  do not name the answer, e.g. "Sound: woof woof." -> Animal=dog, plus labelled controls that do)
  and :func:`make_demo_sakura` (sine tones and noise with Animal labels, for plumbing runs of an
  audio-language model).

Prompts and option sets default to AudioLens's (``resources/prompts.json``, see its SOURCE.md) and
every string can be overridden. Errors name the file, the line and the field.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ausweep.config import FileFormatError
from ausweep.files import jsonl_records, write_jsonl_atomic, write_text_atomic

METADATA = "metadata.csv"
COLUMNS = ("file_name", "attribute_label")
STYLES = ("default", "reverse")
QUESTION_KINDS = ("plain", "with_options", "none")


class LensDataError(FileFormatError):
    """An item file or folder that cannot be read: the message names the file, the line and the field."""



@dataclass(frozen=True)
class LensItem:
    """One probe item. ``context`` is the text that stands in for the clip (text LMs); ``audio`` is
    an absolute path (audio-language models). At least one of them is set. ``control``: the
    context names the answer, so the item measures copying rather than hearing; it is reported
    apart (``<A>/control/*``) and never mixed into the measured numbers."""

    id: str
    attribute: str
    label: str
    context: str | None = None
    audio: str | None = None
    control: bool = False


# ----------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Prompts:
    """AudioLens's strings for a set of attributes, after config overrides.

    ``options[a]``: candidate labels; ``probing[style][a]``: the probing prompt the answer continues
    ("The sound file's animal"); ``questions[kind][a]``: the user prompt; ``words[a]``: the word of
    the probing prompt that names the attribute (its last sub-token is the "attribute" position).
    """

    options: dict[str, list[str]]
    probing: dict[str, dict[str, str]]
    questions: dict[str, dict[str, str]]
    words: dict[str, str]
    is_suffix: str = " is"
    source: str = field(default="", compare=False)

    def probe_text(self, attribute: str, style: str, suffix: bool) -> str:
        return self.probing[style][attribute] + (self.is_suffix if suffix else "")

    def question(self, attribute: str, kind: str) -> str:
        return "" if kind == "none" else self.questions[kind][attribute]


def default_prompts_path() -> Path:
    return Path(str(resources.files("ausweep.lens") / "resources" / "prompts.json"))


def load_prompts(
    attributes: Sequence[str],
    path: str | os.PathLike | None = None,
    options: Mapping[str, Sequence[str]] | None = None,
    probing: Mapping[str, Mapping[str, str]] | None = None,
    questions: Mapping[str, str] | None = None,
    words: Mapping[str, str] | None = None,
) -> Prompts:
    """The prompts for ``attributes``: the AudioLens file (``path``, default the vendored copy),
    then the overrides. ``probing`` is ``{style: {attribute: text}}``; ``questions`` overrides the
    plain user prompt of an attribute (its "with options" form is derived from it).

    An attribute the file does not know needs ``options`` and ``probing`` for both styles; a
    ``with_options`` question is then built as ``"<plain> Possible options: a, b, c."``.
    """
    src = Path(path) if path is not None else default_prompts_path()
    try:
        raw = json.loads(src.read_text())
    except FileNotFoundError:
        raise LensDataError(src, "", "", "prompts file not found") from None
    except json.JSONDecodeError as e:
        raise LensDataError(src, f"line {e.lineno}", "", f"not valid JSON: {e.msg}") from None
    options = {k: list(v) for k, v in (options or {}).items()}
    probing = {k: dict(v) for k, v in (probing or {}).items()}
    questions = dict(questions or {})
    words = dict(words or {})
    for style in probing:
        if style not in STYLES:
            raise LensDataError(src, "overrides", "probing_prompts", f"unknown style {style!r} (styles: {', '.join(STYLES)})")
    out_opts: dict[str, list[str]] = {}
    out_probe: dict[str, dict[str, str]] = {s: {} for s in STYLES}
    out_q: dict[str, dict[str, str]] = {"plain": {}, "with_options": {}}
    out_words: dict[str, str] = {}
    for a in attributes:
        opts = options.get(a, raw.get("options", {}).get(a))
        if not opts:
            raise LensDataError(src, "", f"options.{a}", f"no options for attribute {a!r}; known: "
                                f"{', '.join(raw.get('options', {}))}; give them as options.{a}=[...]")
        if len({o.lower() for o in opts}) != len(opts) or len(opts) < 2:
            raise LensDataError(src, "", f"options.{a}", f"needs 2 or more distinct options, got {opts}")
        out_opts[a] = list(opts)
        for style in STYLES:
            text = probing.get(style, {}).get(a, raw.get("probing_prompts", {}).get(style, {}).get(a))
            if not text:
                raise LensDataError(src, "", f"probing_prompts.{style}.{a}", f"no {style} probing prompt for {a!r}")
            out_probe[style][a] = text
        plain = questions.get(a, raw.get("user_prompts", {}).get("plain", {}).get(a))
        if not plain:
            raise LensDataError(src, "", f"questions.{a}", f"no question (user prompt) for {a!r}")
        out_q["plain"][a] = plain
        listed = raw.get("user_prompts", {}).get("with_options", {}).get(a)
        if a in questions or a in options or not listed:
            listed = f"{plain} Possible options: {', '.join(opts)}."
        out_q["with_options"][a] = listed
        word = words.get(a, a.lower())
        for style in STYLES:
            if word.lower() not in out_probe[style][a].lower():
                raise LensDataError(src, "", f"attribute_words.{a}",
                                    f"{word!r} does not occur in the {style} probing prompt {out_probe[style][a]!r}")
        out_words[a] = word
    suffix = raw.get("probing_prompts", {}).get("is_suffix", " is")
    return Prompts(out_opts, out_probe, out_q, out_words, suffix, source=str(src))


def canonical_label(label: str, options: Sequence[str]) -> str | None:
    """The option spelled as in ``options`` that ``label`` names (case and space insensitive)."""
    key = label.strip().lower()
    for o in options:
        if o.lower() == key:
            return o
    return None


# ----------------------------------------------------------------------------- SAKURA folders


def load_sakura(
    root: str | os.PathLike,
    attributes: Sequence[str],
    options: Mapping[str, Sequence[str]],
    context_template: str | None = None,
    max_items: int | None = None,
    check_audio: bool = True,
) -> list[LensItem]:
    """Items of a SAKURA-style folder: ``{root}/{Attribute}/metadata.csv`` (``file_name,
    attribute_label``, extra columns allowed) with the audio files beside it.

    Labels must be one of the attribute's ``options`` (case-insensitive). ``context_template``,
    when given, is formatted with the row's columns (e.g. ``"A recording of {caption}."``) and
    becomes the item's text context, so a text-only LM can be probed on the same items.
    ``max_items``: the first N rows of each attribute.
    """
    root = Path(root)
    if not root.is_dir():
        raise LensDataError(root, "", "data", "SAKURA-style folder not found")
    items: list[LensItem] = []
    for a in attributes:
        meta = root / a / METADATA
        if not meta.is_file():
            raise LensDataError(meta, "", "", f"file not found (expected {root}/{a}/{METADATA} with columns {','.join(COLUMNS)})")
        with open(meta, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            for col in COLUMNS:
                if col not in header:
                    raise LensDataError(meta, "header", col, f"missing column (columns: {', '.join(header) or 'none'})")
            n = 0
            for lineno, row in enumerate(reader, start=2):
                if max_items is not None and n >= max_items:
                    break
                name = (row.get("file_name") or "").strip()
                if not name:
                    raise LensDataError(meta, f"line {lineno}", "file_name", "empty")
                audio = (meta.parent / name).resolve()
                if check_audio and not audio.is_file():
                    raise LensDataError(meta, f"line {lineno}", "file_name", f"audio file {audio} not found")
                label = canonical_label(row.get("attribute_label") or "", options[a])
                if label is None:
                    raise LensDataError(meta, f"line {lineno}", "attribute_label",
                                        f"unknown label {row.get('attribute_label')!r} (options for {a}: {', '.join(options[a])})")
                context = None
                if context_template is not None:
                    try:
                        context = context_template.format(**row)
                    except KeyError as e:
                        raise LensDataError(meta, f"line {lineno}", str(e.args[0]),
                                            f"context_template {context_template!r} names a column the file lacks") from None
                items.append(LensItem(f"{a}/{name}", a, label, context=context, audio=str(audio)))
                n += 1
        if n == 0:
            raise LensDataError(meta, "", "", "no items")
    return items


def write_sakura(items: Iterable[tuple[str, str, str]], root: str | os.PathLike) -> Path:
    """Write ``metadata.csv`` files for ``(attribute, file_name, label)`` rows under ``root``
    (the audio must be put beside them by the caller); each file is written atomically."""
    root = Path(root)
    by_attr: dict[str, list[tuple[str, str]]] = {}
    for a, name, label in items:
        by_attr.setdefault(a, []).append((name, label))
    for a, rows in by_attr.items():
        folder = root / a
        folder.mkdir(parents=True, exist_ok=True)
        text = "file_name,attribute_label\n" + "".join(f"{n},{label}\n" for n, label in rows)
        write_text_atomic(folder / METADATA, text)
    return root


# The demo clips: one tone (or noise band) per animal, so an audio encoder can tell them apart.
# They sound nothing like the animals: the demo exercises the plumbing, not what a model knows.
_DEMO_TONES = {"dog": 220.0, "cat": 880.0, "pig": 150.0, "cow": 110.0, "frog": 330.0, "hen": 1320.0,
               "rooster": 990.0, "sheep": 440.0, "crow": None}


def make_demo_sakura(root: str | os.PathLike, per_label: int = 2, labels: Sequence[str] | None = None,
                     seconds: float = 0.5, sr: int = 16000) -> Path:
    """A tiny SAKURA-style ``{root}/Animal/`` folder of generated clips (sine tones; white noise
    for "crow"), ``per_label`` clips per animal label. Returns ``root``."""
    import numpy as np
    import soundfile as sf

    root = Path(root)
    folder = root / "Animal"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    t = np.arange(int(sr * seconds)) / sr
    for label in labels or list(_DEMO_TONES):
        freq = _DEMO_TONES.get(label, 500.0)
        for j in range(per_label):
            if freq is None:
                wave = 0.3 * rng.standard_normal(t.size)
            else:
                wave = 0.4 * np.sin(2 * np.pi * freq * (1 + 0.02 * j) * t) + 0.01 * rng.standard_normal(t.size)
            name = f"{label}_{j}.wav"
            sf.write(folder / name, wave.astype(np.float32), sr)
            rows.append(("Animal", name, label))
    return write_sakura(rows, root)


# ----------------------------------------------------------------------------- text items


def load_text_items(path: str | os.PathLike, attributes: Sequence[str] | None = None,
                    options: Mapping[str, Sequence[str]] | None = None, max_items: int | None = None,
                    controls: bool = True) -> list[LensItem]:
    """Text items from JSONL (``context``, ``attribute``, ``label``, optional ``id`` and
    ``control``: true when the context names the answer). With ``attributes``, other attributes
    are skipped; with ``options``, labels must be among them; without ``controls``, control items
    are skipped. ``max_items``: the first N measured items and N controls of each attribute."""
    path = Path(path)
    items: list[LensItem] = []
    counts: dict[tuple[str, bool], int] = {}
    for lineno, obj in jsonl_records(path, LensDataError):
        where = f"line {lineno}"
        for key in ("context", "attribute", "label"):
            if not isinstance(obj.get(key), str) or not obj[key].strip():
                raise LensDataError(path, where, key, "missing or not a non-empty string")
        a = obj["attribute"]
        if attributes is not None and a not in attributes:
            continue
        label = obj["label"]
        if options is not None:
            if a not in options:
                raise LensDataError(path, where, "attribute", f"unknown attribute {a!r} (known: {', '.join(options)})")
            label = canonical_label(label, options[a])
            if label is None:
                raise LensDataError(path, where, "label", f"unknown label {obj['label']!r} (options for {a}: {', '.join(options[a])})")
        control = obj.get("control", False)
        if not isinstance(control, bool):
            raise LensDataError(path, where, "control", f"must be true or false, got {control!r}")
        if control and not controls:
            continue
        if max_items is not None and counts.get((a, control), 0) >= max_items:
            continue
        counts[(a, control)] = counts.get((a, control), 0) + 1
        items.append(LensItem(str(obj.get("id") or f"{a}-{lineno}"), a, label, context=obj["context"], control=control))
    if not items:
        raise LensDataError(path, "", "", "no items" + (f" for attributes {list(attributes)}" if attributes else ""))
    return items


def save_text_items(items: Iterable[LensItem], path: str | os.PathLike) -> Path:
    """Write text items as JSONL, atomically."""
    records = []
    for it in items:
        if it.context is None:
            raise ValueError(f"item {it.id!r} has no text context")
        rec = {"id": it.id, "context": it.context, "attribute": it.attribute, "label": it.label}
        records.append({**rec, "control": True} if it.control else rec)
    return write_jsonl_atomic(path, records)


# Hand-written demo contexts. A text LM has no ears: the context stands in for what a clip would
# let a listener perceive. The measured items describe the sound without naming the answer
# (onomatopoeia, how the voice sounds, a transcript in the language); an item whose context names
# the answer ("a dog barking", "A man says") tests copying, not hearing, and is kept only as a
# labelled control (LensItem.control), reported apart as <A>/control/*.
_ANIMAL_CUES = {
    "dog": ("woof woof", "barking"), "cat": ("meow meow", "meowing"), "pig": ("oink oink", "oinking"),
    "cow": ("moo moo", "mooing"), "frog": ("ribbit ribbit", "croaking"), "hen": ("cluck cluck", "clucking"),
    "rooster": ("cock-a-doodle-doo", "calling at dawn"), "sheep": ("baa baa", "bleating"), "crow": ("caw caw", "cawing"),
}
_DEMO_CONTEXTS: dict[str, dict[str, list[str]]] = {
    # Rotated per animal, so that the first 9 items (one per animal) mix the two kinds of cue.
    "Animal": {
        a: [f"Sound: {s}.", f"Sound: an animal {v}, going {s}."][i % 2:] + [f"Sound: {s}.", f"Sound: an animal {v}, going {s}."][: i % 2]
        for i, (a, (s, v)) in enumerate(_ANIMAL_CUES.items())
    },
    "Emotion": {
        "angry": ['A loud, harsh voice shouts: "Get out of my house right now!"',
                  'Speech, shouted through clenched teeth: "How dare you lie to me!"'],
        "disgust": ['A voice groans, then gags: "Ugh, this food is rotten and smells awful."',
                    'Speech with a retching sound: "Eww, there is mold all over it."'],
        "fear": ['A trembling whisper, breathing fast: "Please help me, someone is in the house."',
                 'Speech, shaking and high-pitched: "Oh no, it is coming closer!"'],
        "happy": ['A bright voice, laughing: "We won! This is the best day ever!"',
                  'Speech with laughter: "We got the tickets, see you there!"'],
        "sad": ['A quiet voice, sobbing: "I miss her so much."',
                'Speech, slow, with sniffles: "Everything I loved is gone."'],
    },
    "Language": {
        "English": ['Speech: "Good morning, how are you today?"', 'Speech: "Thank you very much for your help."'],
        "German": ['Speech: "Guten Morgen, wie geht es Ihnen?"', 'Speech: "Vielen Dank für Ihre Hilfe."'],
        "Spanish": ['Speech: "Buenos días, ¿cómo estás?"', 'Speech: "Muchas gracias por tu ayuda."'],
        "French": ['Speech: "Bonjour, comment allez-vous ?"', 'Speech: "Merci beaucoup pour votre aide."'],
        "Italian": ['Speech: "Buongiorno, come stai?"', 'Speech: "Grazie mille per il tuo aiuto."'],
        "Chinese": ['Speech: "你好，今天天气很好。"', 'Speech: "谢谢你的帮助。"'],
        "Japanese": ['Speech: "おはようございます、お元気ですか？"', 'Speech: "手伝ってくれてありがとう。"'],
        "Korean": ['Speech: "안녕하세요, 만나서 반갑습니다."', 'Speech: "도와주셔서 감사합니다."'],
    },
    # What a listener hears of a voice: its pitch (typical adult speaking pitch is about 85-155 Hz
    # for male and 165-255 Hz for female voices) and timbre; the words say nothing about the speaker.
    "Gender": {
        "male": ['A deep voice, pitch around 100 Hz, says: "Hello, I am your new neighbor."',
                 'Speech in a low baritone: "Can I play outside?"',
                 'A low, resonant voice at about 120 Hz says: "In my day we walked to school."'],
        "female": ['A light voice, pitch around 220 Hz, says: "Hello, I am your new neighbor."',
                   'Speech in a high soprano: "Can I play outside?"',
                   'A high, clear voice at about 210 Hz says: "In my day we walked to school."'],
    },
}
# Controls: the context names the answer, so a right answer shows copying, not hearing.
_DEMO_CONTROLS: dict[str, dict[str, list[str]]] = {
    "Animal": {a: [f"Sound: {s}, a {a} {v}."] for a, (s, v) in _ANIMAL_CUES.items()},
    "Emotion": {
        "angry": ['Speech, in an angry voice: "Get out of my house right now!"'],
        "disgust": ['Speech, in a voice full of disgust: "Ugh, this food is rotten."'],
        "fear": ['Speech, in a voice full of fear: "Please help me, someone is in the house."'],
        "happy": ['Speech, in a happy voice: "We won! This is the best day ever!"'],
        "sad": ['Speech, in a sad voice: "I miss her so much."'],
    },
    "Language": {lang: [f'Speech in {lang}: {texts[0].split(": ", 1)[1]}'] for lang, texts in _DEMO_CONTEXTS["Language"].items()},
    "Gender": {
        "male": ['A man with a deep voice says: "Hello, I am your new neighbor."',
                 'A boy says: "Dad, can I play outside?"', 'An old man says: "In my day we walked to school."'],
        "female": ['A woman with a soft voice says: "Hello, I am your new neighbor."',
                   'A girl says: "Mom, can I play outside?"', 'An old woman says: "In my day we walked to school."'],
    },
}


def _interleaved(cues: Mapping[str, Sequence[str]], wanted: Sequence[str]) -> list[tuple[str, int, str]]:
    """``(option, j, text)`` by depth, then option: the first N rows cover every option."""
    per_option = [(o, cues[o]) for o in wanted if o in cues]
    depth = max((len(c) for _, c in per_option), default=0)
    return [(o, j, texts[j]) for j in range(depth) for o, texts in per_option if j < len(texts)]


def demo_text_items(attributes: Sequence[str], options: Mapping[str, Sequence[str]] | None = None,
                    max_items: int | None = None, controls: bool = True) -> list[LensItem]:
    """The generated text set: per attribute, the measured items (contexts that describe the sound
    without naming the answer: Animal 18, Emotion 10, Language 16, Gender 6), then with
    ``controls`` the labelled control items whose context names the answer (Animal 9, Emotion 5,
    Language 8, Gender 6). Each kind is interleaved by option, and ``max_items`` keeps the first N
    of each kind, so every option stays. Options without demo contexts are skipped."""
    items: list[LensItem] = []
    for a in attributes:
        if a not in _DEMO_CONTEXTS:
            raise LensDataError("demo", "", "attributes", f"the demo set has no {a!r} items (it has {', '.join(_DEMO_CONTEXTS)})")
        wanted = list(options[a]) if options and a in options else list(_DEMO_CONTEXTS[a])
        for o, j, text in _interleaved(_DEMO_CONTEXTS[a], wanted)[:max_items]:
            items.append(LensItem(f"{a}-{o}-{j}", a, o, context=text))
        if controls:
            for o, j, text in _interleaved(_DEMO_CONTROLS[a], wanted)[:max_items]:
                items.append(LensItem(f"{a}-{o}-control-{j}", a, o, context=text, control=True))
    return items


def items_summary(items: Sequence[LensItem]) -> dict[str, Any]:
    """``{attribute: n_items}``, for logs and tags."""
    out: dict[str, int] = {}
    for it in items:
        out[it.attribute] = out.get(it.attribute, 0) + 1
    return out
