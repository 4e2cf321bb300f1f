"""The command lines: options and overrides in any order, listings, help."""

from pathlib import Path

import pytest

from ausweep.cli import main as ausweep_main
from ausweep.sweep.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _repo(monkeypatch):
    monkeypatch.chdir(REPO)


def test_show_takes_overrides_after_options(capsys):
    assert main(["probe", "--preset", "demo", "--show", "probe.lr=0.01", "text.layer=2"]) == 0
    out = capsys.readouterr().out
    assert "probe-demo" in out and "4 trial(s)" in out  # the lr axis is fixed by the override
    assert "lr: 0.01" in out and "layer: 2" in out


def test_list_and_fields(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "probe " in out and "[presets: demo, current, layers, hparams, byo]" in out
    assert main(["probe", "--fields"]) == 0
    out = capsys.readouterr().out
    for field in ("text.template", "probe.temperature", "extract.shard_size", "embeddings.text", "data.root"):
        assert field in out


def test_config_error_is_one_line(capsys):
    assert main(["probe", "--preset", "demo", "--show", "probe.lrr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "probe.lrr" in err[0] and "probe.yaml" in err[0]


def test_ls_lists_registries(capsys):
    assert ausweep_main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in ("minilm", "whisper-tiny-en", "tiny-bert", "probe"):
        assert name in out
