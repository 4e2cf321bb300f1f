"""As a Ray job, sweep state never goes to the job's unpacked working_dir, which Ray deletes."""

from __future__ import annotations

import json

import pytest

from ausweep.config import ConfigError
from ausweep.sweep.runner import RAY_JOB_ENV, choose_storage, in_ray_scratch

# What Ray's job supervisor sets for a `ray job submit` entrypoint (ray/dashboard/modules/job).
JOB_ENV = {RAY_JOB_ENV: json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_abc.zip"},
                                    "metadata": {"job_submission_id": "raysubmit_abc"}})}


@pytest.fixture
def ray_pkg(tmp_path, monkeypatch):
    """The current folder is a Ray job's unpacked working_dir."""
    pkg = tmp_path / "session_2025" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    pkg.mkdir(parents=True)
    monkeypatch.chdir(pkg)
    return pkg


def test_scratch_folders(tmp_path):
    assert in_ray_scratch(tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc" / "ausweep_runs")
    assert in_ray_scratch(tmp_path / "runtime_resources" / "py_modules_files" / "x")
    assert not in_ray_scratch(tmp_path / "runtime_resources")
    assert not in_ray_scratch(tmp_path / "shared" / "ausweep_runs")


def test_ray_job_default_is_refused_with_the_fix(ray_pkg):
    with pytest.raises(ConfigError) as e:
        choose_storage(environ=JOB_ENV)
    msg = str(e.value)
    assert "\n" not in msg and str(ray_pkg / "ausweep_runs") in msg
    assert "--storage /shared/path" in msg and "AUSWEEP_STORAGE" in msg
    assert not (ray_pkg / "ausweep_runs").exists()


def test_cwd_in_ray_working_dir_is_refused_without_the_job_env(ray_pkg):
    with pytest.raises(ConfigError, match="Ray deletes"):
        choose_storage(environ={})


def test_ray_job_without_working_dir_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="as a Ray job"):
        choose_storage(environ=JOB_ENV)


@pytest.mark.parametrize("how", ["--storage", "file", "env"])
def test_ray_job_with_durable_storage(ray_pkg, tmp_path, how):
    shared = tmp_path / "shared" / "runs"
    env = {**JOB_ENV, "AUSWEEP_STORAGE": str(shared)} if how == "env" else JOB_ENV
    got = choose_storage(override=str(shared) if how == "--storage" else None,
                         file_value=f"file://{shared}" if how == "file" else None, environ=env)
    assert got == shared


def test_relative_storage_inside_the_working_dir_is_refused(ray_pkg):
    with pytest.raises(ConfigError, match=r"^--storage: 'runs' is .*_ray_pkg_abc/runs, inside the Ray job"):
        choose_storage(override="runs", environ=JOB_ENV)


def test_outside_ray_the_default_stays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert choose_storage(environ={}) == tmp_path.resolve() / "ausweep_runs"


def test_cli_refuses_before_anything_starts(ray_pkg, monkeypatch, capsys):
    from ausweep.sweep.cli import main

    monkeypatch.setenv(RAY_JOB_ENV, JOB_ENV[RAY_JOB_ENV])
    monkeypatch.delenv("AUSWEEP_STORAGE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ray_pkg.parent / 'mlruns.db'}")
    assert main(["probe", "--preset", "demo"]) == 2
    err = capsys.readouterr().err
    assert "pass --storage /shared/path or set AUSWEEP_STORAGE" in err
    assert not (ray_pkg / "ausweep_runs").exists() and not (ray_pkg.parent / "mlruns.db").exists()
