"""The probing study as a sweepable unit: data -> extraction -> probe, one config for all of it.

``run(config)`` is the whole experiment for one (LM, layer, audio model, probe hyperparameters)
point and works with no Ray. The sweep driver calls :func:`prepare` once (validating names and
extracting every needed embedding on Ray actors into the cache), after which each trial's
``run`` only reads the cache and trains its probes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ausweep.config import ConfigError, to_dict
from ausweep.data import SoundSet
from ausweep.data.fsd50k import object_name
from ausweep.data.sources import load_soundset
from ausweep.extract import audio_clip_table, text_embeddings
from ausweep.probe.clips import ClipTable
from ausweep.probe.config import ProbeExperiment
from ausweep.probe.run import ProbeResult
from ausweep.probe.run import run as run_probe
from ausweep.study import Study
from ausweep.track.artifacts import rows_to_csv

log = logging.getLogger(__name__)


CLIPS_CHECKED = "checked: per split, a clip labelled with a training and a held-out class feeds neither side"
CLIPS_UNCHECKED = ("unchecked: per-class audio from embeddings.audio (.npz); a clip that fed both a training and a "
                   "held-out class cannot be detected")


@dataclass
class Embeddings:
    labels: list[str]
    text: np.ndarray  # (C, dt)
    audio: np.ndarray | ClipTable  # (C, da) per class (.npz), or per clip (extracted)
    digest: str  # identifies the data the embeddings came from

    @property
    def audio_dim(self) -> int:
        return int(self.audio.embeddings.shape[1] if isinstance(self.audio, ClipTable) else self.audio.shape[1])

    @property
    def clip_leakage(self) -> str:
        return CLIPS_CHECKED if isinstance(self.audio, ClipTable) else CLIPS_UNCHECKED


def load_embeddings(cfg: ProbeExperiment) -> Embeddings:
    """Text and audio embeddings for ``cfg``, from .npz files or the extraction cache.

    Extracted audio comes per clip (a :class:`~ausweep.probe.clips.ClipTable`), so the probe can
    build class means per split and keep multi-label clips out of both sides. A bring-your-own
    audio file holds class vectors only: no clip can be checked (see :attr:`Embeddings.clip_leakage`).
    """
    from ausweep.data.npz import align, load_embeddings_npz

    text_side = load_embeddings_npz(cfg.embeddings.text) if cfg.embeddings.text else None
    audio_side = load_embeddings_npz(cfg.embeddings.audio) if cfg.embeddings.audio else None
    if text_side is not None and audio_side is not None:
        labels, t, a = align(*text_side, *audio_side)
        return Embeddings(list(labels), t, a, "npz")
    soundset = with_object_phrases(load_soundset(cfg.data), cfg.text.phrase)
    classes = list(soundset.classes)
    if text_side is None:
        all_layers = text_embeddings(cfg.text.model, cfg.text.revision, cfg.text.template, soundset, cfg.extract)
        text_side = (classes, select_layer(all_layers, cfg.text.layer, cfg.text.model))
    if audio_side is not None:
        labels, t, a = align(*text_side, *audio_side)
        return Embeddings(list(labels), t, a, soundset.digest())
    clips = audio_clip_table(cfg.audio.model, cfg.audio.revision, soundset, cfg.extract, cfg.data.max_seconds)
    labels, t, _ = align(*text_side, classes, np.zeros((len(classes), 0), dtype=np.float32))  # rows of text by label
    table = ClipTable.build(clips.embeddings, clips.ids, clips.feeds, clips.labels, labels)
    return Embeddings(list(labels), t, table, soundset.digest())


def with_object_phrases(soundset: SoundSet, phrase: str) -> SoundSet:
    """The sound set with each class text replaced by the object phrase ``text.phrase`` asks for:
    ``"name"``, one name per class (:func:`~ausweep.data.fsd50k.object_name`), or ``"synonyms"``,
    the class text as the data source gives it."""
    if phrase == "synonyms":
        return soundset
    return dataclasses.replace(soundset, class_text={c: object_name(t) for c, t in soundset.class_text.items()})


def select_layer(all_layers: np.ndarray, layer: int, model: str) -> np.ndarray:
    n = all_layers.shape[0]
    if not -n <= layer < n:
        raise ConfigError("", "text.layer", f"{model} has {n} hidden states (0..{n - 1}, or -1 for the last); got {layer}")
    return all_layers[layer]


def run(cfg: ProbeExperiment) -> ProbeResult:
    """The experiment for one config: embeddings (cached) -> probes over the class splits."""
    emb = load_embeddings(cfg)
    return run_probe(emb.text, emb.audio, emb.labels, cfg.probe)


# ----------------------------------------------------------------------------- sweep hooks


def trial(cfg: ProbeExperiment) -> Iterator[dict[str, Any]]:
    """One Tune trial: the cache is warm after :func:`prepare`, so nothing spawns actors here."""
    cfg = dataclasses.replace(cfg, extract=dataclasses.replace(cfg.extract, num_actors=0, progress=False))
    emb = load_embeddings(cfg)
    result = run_probe(emb.text, emb.audio, emb.labels, cfg.probe)
    import yaml

    artifacts = {"per_class_accuracy.csv": rows_to_csv(result.per_class), "config.yaml": yaml.safe_dump(to_dict(cfg), sort_keys=False)}
    if result.clip_log:
        artifacts["clip_exclusion.csv"] = rows_to_csv(result.clip_log)
    yield {
        **result.metrics,
        "series": {"train_loss": result.loss_curve},
        "artifacts": artifacts,
        "tags": {"ausweep.data_digest": emb.digest, "ausweep.text_dim": emb.text.shape[1], "ausweep.audio_dim": emb.audio_dim,
                 "ausweep.clip_leakage": emb.clip_leakage},
    }


def prepare(configs: list[ProbeExperiment], space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Driver side: check names, extract every (LM) and (audio model) once, expand layer axes."""
    from ausweep.models.audio import check_audio_model
    from ausweep.models.text import check_text_model

    for c in configs:
        if not c.embeddings.text:
            check_text_model(c.text.model)
        if not c.embeddings.audio:
            check_audio_model(c.audio.model)
    n_layers: dict[str, int] = {}
    done: set[Any] = set()
    for c in configs:
        if c.embeddings.text and c.embeddings.audio:
            continue
        soundset = with_object_phrases(load_soundset(c.data), c.text.phrase)
        if not c.embeddings.text:
            key = ("text", c.text.model, c.text.revision, c.text.template, c.text.phrase, c.data)
            if key not in done:
                emb = text_embeddings(c.text.model, c.text.revision, c.text.template, soundset, c.extract)
                n_layers[c.text.model] = emb.shape[0]
                done.add(key)
            if space.get("text.layer", {}).get("grid") != "all":
                select_layer(np.empty((n_layers[c.text.model], 0)), c.text.layer, c.text.model)
        if not c.embeddings.audio:
            key = ("audio", c.audio.model, c.audio.revision, c.data)
            if key not in done:
                audio_clip_table(c.audio.model, c.audio.revision, soundset, c.extract, c.data.max_seconds)
                done.add(key)
    return expand_layers(space, configs, n_layers)


def expand_layers(space: dict[str, dict[str, Any]], configs: list[ProbeExperiment], n_layers: dict[str, int]) -> dict[str, dict[str, Any]]:
    """``text.layer: {grid: all}`` -> every hidden state. LMs differ in depth, so with several LMs
    the (model, layer) pairs become one grid axis over the whole ``text`` section."""
    if space.get("text.layer", {}).get("grid") != "all":
        return space
    space = dict(space)
    del space["text.layer"]
    models = space.pop("text.model", {}).get("grid") or sorted({c.text.model for c in configs})
    if len(models) == 1:
        # The model axis stays in the space: popped, the trials would run the base config's model
        # with this model's layer count.
        return {**space, "text.model": {"grid": [models[0]]}, "text.layer": {"grid": list(range(n_layers[models[0]]))}}
    base_text = to_dict(configs[0].text)
    pairs = [{**base_text, "model": m, "layer": layer} for m in models for layer in range(n_layers[m])]
    return {"text": {"grid": pairs}, **space}


def summarize(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """results.csv (one line per trial), selected.csv (per LM, layer and audio model, the trial
    chosen on validation) and accuracy@K plots of the chosen trials' held-out accuracy."""
    from ausweep.probe.plots import plot_summary, results_table, selected_table

    table = results_table(rows)
    csv_path = out_dir / "results.csv"
    table.to_csv(csv_path, index=False)
    selected_path = out_dir / "selected.csv"
    selected_table(table).to_csv(selected_path, index=False)
    return [csv_path, selected_path, *plot_summary(table, out_dir)]


STUDY = Study(
    name="probe",
    config_cls=ProbeExperiment,
    prepare=prepare,
    trial=trial,
    summarize=summarize,
    description="Contrastive linear probe between LM text and audio embeddings (Ngo & Kim 2024).",
)
