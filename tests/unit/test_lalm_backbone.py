"""The ``lalm_backbone`` study's science contract: one recipe for every backbone by default, any
search ranked on a dev split that shares no clip with the evaluation or training data."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from ausweep.config import ConfigError, from_dict


def _tone(path, freq, seconds=0.3):
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    return path


def _data(tmp_path, dev_clip: str | None = "own"):
    """train.jsonl, eval.jsonl and (unless ``dev_clip`` is None) dev.jsonl on clips of their own;
    ``dev_clip="eval"`` reuses an eval clip, ``"copy"`` a byte copy of one."""
    from ausweep.benchmarks.mcq import MCItem, save_jsonl
    from ausweep.lalm.data import InstructionExample, save_instructions

    clips = {name: str(_tone(tmp_path / f"{name}.wav", f, seconds=0.2 + 0.05 * k))
             for k, (name, f) in enumerate([("train", 220.0), ("eval", 440.0), ("dev", 880.0)])}
    save_instructions([InstructionExample(clips["train"], "Describe the sound.", "a tone")], tmp_path / "train.jsonl")
    save_jsonl([MCItem("e1", "High or low?", ("high", "low"), 1, "sound", "pitch_height", clips["eval"])], tmp_path / "eval.jsonl")
    paths = {"responses": "given", "train": str(tmp_path / "train.jsonl"), "eval": str(tmp_path / "eval.jsonl")}
    if dev_clip is not None:
        audio = {"own": clips["dev"], "eval": clips["eval"]}.get(dev_clip)
        if dev_clip == "copy":
            audio = str(shutil.copy(clips["eval"], tmp_path / "eval_copy.wav"))
        save_jsonl([MCItem("d1", "High or low?", ("high", "low"), 0, "sound", "pitch_height", audio)], tmp_path / "dev.jsonl")
        paths["dev"] = str(tmp_path / "dev.jsonl")
    return paths


def _cfg(data, llm="tiny-llama"):
    from ausweep.lalm_backbone.config import LALMBackboneConfig

    return from_dict(LALMBackboneConfig, {"lalm": {"llm": llm, "encoder": "tiny-whisper"}, "data": data})


def test_the_default_sweep_is_one_recipe_and_every_search_ranks_on_dev():
    from ausweep.lalm_backbone.config import LALMBackboneConfig
    from ausweep.sweep.spec import load_sweep

    main = load_sweep("lalm_backbone")
    assert list(main.space) == ["lalm.llm"] and len(main.space["lalm.llm"]["grid"]) >= 8
    tune = load_sweep("lalm_backbone", "tune")
    assert set(tune.space) == {"lalm.llm", "lalm.num_queries", "train.lr"}
    assert tune.space["lalm.llm"] == main.space["lalm.llm"] and tune.spec.tune.metric == "dev/acc"
    for name in [None, *main.spec.presets]:
        sweep = load_sweep("lalm_backbone", name)
        if set(sweep.space) - {"lalm.llm"}:  # a search over recipes: it must rank on dev, never on eval
            assert sweep.spec.tune.metric.startswith("dev/"), name
        for cfg in sweep.config_dicts():
            from_dict(LALMBackboneConfig, cfg)


def test_a_recipe_search_without_a_dev_set_is_refused(tmp_path):
    from ausweep.lalm_backbone.study import prepare

    no_dev = _cfg(_data(tmp_path, dev_clip=None))
    space = {"lalm.llm": {"grid": ["tiny-llama"]}}
    assert prepare([no_dev], space) == space  # one recipe: nothing is chosen, no dev needed
    with pytest.raises(ConfigError, match=r"data.dev.*searches train.lr: choosing among recipes needs a dev set"):
        prepare([no_dev], {**space, "train.lr": {"grid": [1e-4, 3e-4]}})
    (tmp_path / "d").mkdir()
    with_dev = _cfg(_data(tmp_path / "d"))
    assert prepare([with_dev], {**space, "train.lr": {"grid": [1e-4, 3e-4]}})


@pytest.mark.parametrize("dev_clip,match", [("eval", "in both the eval and the dev set"),
                                            ("copy", "eval clip .*eval.wav and the dev clip .*eval_copy.wav have the same content")])
def test_dev_sharing_a_clip_with_eval_is_refused(tmp_path, dev_clip, match):
    from ausweep.lalm_backbone.study import prepare

    with pytest.raises(ConfigError, match=match):
        prepare([_cfg(_data(tmp_path, dev_clip=dev_clip))], {"lalm.llm": {"grid": ["tiny-llama"]}})


def test_training_on_an_evaluation_clip_is_refused(tmp_path):
    from ausweep.lalm.data import InstructionExample, save_instructions
    from ausweep.lalm_backbone.study import check_disjoint, prepare

    data = _data(tmp_path)
    save_instructions([InstructionExample(str(tmp_path / "eval.wav"), "Describe the sound.", "a tone")], tmp_path / "train.jsonl")
    with pytest.raises(ConfigError, match="in both the train and the eval set"):
        prepare([_cfg(data)], {"lalm.llm": {"grid": ["tiny-llama"]}})
    check_disjoint({"a": [str(tmp_path / "dev.wav")], "b": [str(tmp_path / "train.wav")]})  # different clips pass


def test_summary_takes_each_backbones_trial_on_dev_never_on_eval():
    import pandas as pd

    from ausweep.lalm_backbone.study import one_per_backbone

    table = pd.DataFrame({"lalm.llm": ["q", "q", "l", "l"], "train.lr": [1e-4, 3e-4, 1e-4, 3e-4],
                          "acc": [0.9, 0.2, 0.8, 0.3], "dev/acc": [0.1, 0.6, 0.2, 0.5]})
    best, how = one_per_backbone(table, ["acc"])
    assert list(best["train.lr"]) == [3e-4, 3e-4] and how == "trial chosen on dev/acc"
    best, how = one_per_backbone(table.drop(columns="dev/acc"), ["acc"])
    assert list(best["acc"]) == pytest.approx([0.55, 0.55]) and how.startswith("mean")


@pytest.mark.skipif(not (shutil.which("sox") and shutil.which("espeak-ng")), reason="needs sox and espeak-ng")
def test_generated_dev_split_shares_no_clip_and_changes_no_other_clip(tmp_path):
    from ausweep.benchmarks.mcq import load_mc
    from ausweep.data import demo_mc as D
    from ausweep.lalm_backbone.config import LALMDataConfig
    from ausweep.lalm_backbone.study import check_disjoint, data_paths

    cfg = LALMDataConfig(demo_root=str(tmp_path / "set"), demo_n_train=7, demo_n_eval=7, demo_n_dev=7, demo_seed=1)
    train, evals, dev = data_paths(cfg)
    assert dev == tmp_path / "set" / "dev.jsonl"
    dev_items = load_mc(dev)
    assert len(dev_items) == 7 and all(it.id.startswith("dev-") for it in dev_items)
    assert {(it.category, it.subcategory) for it in dev_items} == {(c, s) for c, s, _ in D.TASKS}
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    by_split: dict[str, set[str]] = {}
    for clip in manifest["clips"]:
        by_split.setdefault(clip["split"], set()).add(clip["sha256"])
    assert [len(v) for v in by_split.values()] == [7, 7, 7]
    assert not (by_split["dev"] & by_split["eval"]) and not (by_split["dev"] & by_split["train"])
    check_disjoint({"eval": [it.audio for it in load_mc(evals)], "dev": [it.audio for it in dev_items]})
    # adding a dev split changed no evaluation or training clip
    without = json.loads(D.make_demo_sets(tmp_path / "no-dev", 7, 7, seed=1, progress=False)["manifest"].read_text())
    assert [c["sha256"] for c in without["clips"]] == [c["sha256"] for c in manifest["clips"] if c["split"] != "dev"]
    assert not (tmp_path / "no-dev" / "dev.jsonl").exists()
    first = hashlib.sha256(train.read_bytes()).hexdigest()
    assert data_paths(cfg)[0] == train and hashlib.sha256(train.read_bytes()).hexdigest() == first  # reused


def test_training_on_an_evaluation_question_is_refused(tmp_path):
    from ausweep.lalm.data import InstructionExample, save_instructions
    from ausweep.lalm_backbone.study import check_held_out, prepare

    data = _data(tmp_path)
    # the old demo recipe: the evaluation's own multiple-choice prompt as a training instruction
    save_instructions([InstructionExample(str(tmp_path / "train.wav"), "Question: high  or LOW?\nAnswer:", "high")],
                      tmp_path / "train.jsonl")
    with pytest.raises(ConfigError, match="training instruction .* contains the eval question 'High or low\\?'"):
        prepare([_cfg(data)], {"lalm.llm": {"grid": ["tiny-llama"]}})
    check_held_out(["Describe the sound."], {"eval": ["High or low?"], "dev": ["High or low?"]})  # other families pass
    check_held_out(["Is it loud? Yes."], {"eval": ["Yes."]})  # a short question only as a whole instruction
    with pytest.raises(ValueError, match="contains the eval question 'Yes.'"):
        check_held_out([" yes. "], {"eval": ["Yes."]})


def test_self_distilled_training_data_is_the_default_and_written_once_per_backbone(tmp_path):
    from ausweep.lalm.data import load_instructions
    from ausweep.lalm_backbone.config import LALMDataConfig
    from ausweep.lalm_backbone.study import data_paths, prepare, training_data

    assert LALMDataConfig().responses == "distill"
    with pytest.raises(ValueError, match="set data.responses=given to train on it"):
        LALMDataConfig(train="t.jsonl")
    with pytest.raises(ValueError, match="data.metadata is read by self-distillation"):
        LALMDataConfig(responses="given", metadata="m.jsonl")

    data = _data(tmp_path)
    (tmp_path / "meta.jsonl").write_text(json.dumps({
        "audio": "train.wav", "caption": "a 220 Hz sine tone, 0.2 s, loud", "attributes": {"loudness": "loud"},
        "instructions": ["Describe the sound.", "How loud is the sound?"]}) + "\n")
    data = {**{k: v for k, v in data.items() if k not in ("train", "responses")}, "metadata": str(tmp_path / "meta.jsonl"),
            "distill": {"max_new_tokens": 3, "cache_dir": str(tmp_path / "desta"), "progress": False}}
    configs = [_cfg(data, llm) for llm in ("tiny-llama", "tiny-qwen2", "tiny-llama")]
    assert data_paths(configs[0].data)[0] == tmp_path / "meta.jsonl"
    prepare(configs, {"lalm.llm": {"grid": ["tiny-llama", "tiny-qwen2"]}})
    sets = sorted((tmp_path / "desta").glob("*/train.jsonl"))
    assert len(sets) == 2  # one per backbone, the repeated backbone reused
    for c in configs:
        path = training_data(c)
        assert path in sets
        examples = load_instructions(path)
        assert [(e.audio, e.instruction) for e in examples] == [(str(tmp_path / "train.wav"), "Describe the sound."),
                                                                (str(tmp_path / "train.wav"), "How loud is the sound?")]
    bad = dict(data, metadata=str(tmp_path / "eval.jsonl"))  # not metadata: one clear error naming the field
    with pytest.raises(ConfigError, match="eval.jsonl \\(line 1\\): field '(answer|category|id|options|question|subcategory)': unknown field"):
        prepare([_cfg(bad)], {"lalm.llm": {"grid": ["tiny-llama"]}})
