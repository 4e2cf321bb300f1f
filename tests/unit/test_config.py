"""The config system: validation errors name file and field; precedence; overrides."""

from dataclasses import dataclass
from typing import Literal

import pytest

from ausweep.config import ConfigError, config_hash, deep_merge, flatten, from_dict, option, parse_overrides, to_dict, unflatten


@dataclass(frozen=True)
class Inner:
    lr: float = option(1e-3, help="learning rate")
    ks: list[int] = option([1, 5], help="ks")

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError("lr must be > 0")


@dataclass(frozen=True)
class Outer:
    name: str = option(help="required name")
    mode: Literal["a", "b"] = option("a", help="mode")
    inner: Inner = option(Inner(), help="nested")
    maybe: int | None = option(None, help="optional int")


def test_nested_build_and_round_trip():
    cfg = from_dict(Outer, {"name": "x", "inner": {"lr": 2, "ks": [3]}, "maybe": 4})
    assert cfg.inner.lr == 2.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.ks == [3] and cfg.maybe == 4
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, field, words",
    [
        ({"name": "x", "inner": {"lrr": 1}}, "inner.lrr", "unknown field"),
        ({"name": "x", "inner": {"lr": "fast"}}, "inner.lr", "expected a number"),
        ({"name": "x", "mode": "c"}, "mode", "must be one of"),
        ({}, "name", "is required"),
        ({"name": "x", "inner": {"ks": [1, "two"]}}, "inner.ks[1]", "expected an integer"),
        ({"name": "x", "inner": {"lr": -1}}, "inner", "lr must be > 0"),
    ],
)
def test_errors_name_file_and_field(data, field, words):
    with pytest.raises(ConfigError) as e:
        from_dict(Outer, data, where="sweeps/x.yaml")
    msg = str(e.value)
    assert msg.startswith("sweeps/x.yaml: ") and f"field '{field}'" in msg and words in msg


def test_overrides_parse_numbers_and_nest():
    d = parse_overrides(["probe.lr=3e-4", "text.model=gpt2", "probe.ks=[1,3]", "flag=true", "text.layer=-2"])
    assert d == {"probe": {"lr": 3e-4, "ks": [1, 3]}, "text": {"model": "gpt2", "layer": -2}, "flag": True}
    with pytest.raises(ConfigError, match="section.field=value"):
        parse_overrides(["noequals"])


def test_merge_precedence_and_flatten():
    defaults = {"probe": {"lr": 1, "dim": 8}, "text": {"model": "a"}}
    file = {"probe": {"lr": 2}}
    cli = {"probe": {"dim": 16}}
    merged = deep_merge(deep_merge(defaults, file), cli)
    assert merged == {"probe": {"lr": 2, "dim": 16}, "text": {"model": "a"}}
    assert unflatten(flatten(merged)) == merged


def test_config_hash_stable_and_sensitive():
    a = from_dict(Outer, {"name": "x"})
    assert config_hash(a) == config_hash(from_dict(Outer, {"name": "x"}))
    assert config_hash(a) != config_hash(from_dict(Outer, {"name": "x", "inner": {"lr": 0.5}}))


def test_with_defaults_fills_a_partial_config_and_passes_a_bad_one_through():
    from ausweep.auditorybench_baselines.study import BaselineConfig
    from ausweep.config import with_defaults

    full = with_defaults(BaselineConfig, {"model": "gpt2"})
    assert full["model"] == "gpt2" and full["batch_size"] == 16 and full["tasks"] == ["animal", "pitch"]
    assert with_defaults(BaselineConfig, {"model": "gpt2", "nope": 1}) == {"model": "gpt2", "nope": 1}
    assert with_defaults(BaselineConfig, {"batch_size": 0}) == {"batch_size": 0}  # fails __post_init__
    assert with_defaults(BaselineConfig, None)["model"] == "bert-base-uncased"
