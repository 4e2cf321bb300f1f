"""A non-editable install finds its configs and sweeps from any working directory.

The repo keeps ``configs/`` and ``sweeps/`` at its top; the wheel must carry them (setup.py copies
them into ``ausweep/_data/``). This test builds the wheel from a copy of the source tree, installs it
with ``pip install --target`` (a real non-editable install, no repo beside it), and runs it from an
empty folder with that install first on the path, so the editable checkout cannot be what answers.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "mlruns*",
                              "ausweep_runs", "ausweep_cluster", ".pytest_cache", ".whl", "tests",
                              "wheels", ".site")  # bench/gpu's carried wheels (git-ignored, 20 MiB)

PROBE = r"""
import json, sys
from pathlib import Path
import ausweep
from ausweep.files import resources_root
from ausweep.sweep.spec import list_sweeps, load_sweep
from ausweep.lalm.train.config import TrainConfig
from ausweep.lalm.train.ds_config import resolve_deepspeed_file
from ausweep.benchmarks.tasks import DEFAULT_TASK_MAP
sweeps = dict(list_sweeps())
probe = load_sweep("probe", preset="demo")
print(json.dumps({
    "package": ausweep.__file__,
    "root": str(resources_root()),
    "sweeps": sorted(sweeps),
    "probe_config": str(probe.path),
    "zero2": str(resolve_deepspeed_file(TrainConfig(deepspeed_config="zero2.json"))),
    "default": str(resolve_deepspeed_file(TrainConfig())),
    "task_map": str(DEFAULT_TASK_MAP) if DEFAULT_TASK_MAP.is_file() else None,
}))
"""


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_wheel_carries_configs_and_sweeps(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=SKIP)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(src)], check=True)
    (wheel,) = wheels.glob("ausweep-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env={**_env(), "PYTHONPATH": str(site)},
                         capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])

    installed = site / "ausweep"
    assert Path(found["package"]).parent == installed, "the editable checkout answered, not the wheel"
    assert Path(found["root"]) == installed / "_data"
    repo_sweeps = sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml"))
    assert found["sweeps"] == repo_sweeps
    assert Path(found["probe_config"]).is_relative_to(installed)
    assert Path(found["zero2"]) == installed / "_data" / "configs" / "deepspeed" / "zero2.json"
    assert Path(found["default"]).parent == installed / "_data" / "configs" / "deepspeed"
    assert found["task_map"] == str(installed / "_data" / "configs" / "backbone_tasks.yaml")
    # every vendored data file inside the package travels too (a wheel built from a fresh clone has
    # no egg-info listing them: MANIFEST.in's `graft ausweep` is what carries them)
    tracked = subprocess.run(["git", "ls-files", "ausweep"], cwd=REPO, capture_output=True, text=True, check=True)
    data = [p for p in tracked.stdout.split() if not p.endswith(".py")]
    assert data, "expected vendored data files under ausweep/"
    missing = [p for p in data if not (site / p).is_file()]
    assert not missing, f"the wheel lacks {missing}"


def _env():
    import os

    env = dict(os.environ)
    env.pop("AUSWEEP_SWEEPS", None)
    return env
