"""Build hook: the wheel carries the repo's top-level ``configs/`` and ``sweeps/``.

They stay at the top of the repo, where users edit them. A non-editable install (``pip install .``,
or a wheel in a Ray runtime env) has no repo to find them in, so the wheel carries copies as
``ausweep/_data/configs`` and ``ausweep/_data/sweeps``; :func:`ausweep.files.resources_root` finds
whichever is there. Everything else about the package is declared in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
CARRIED = ("configs", "sweeps")


class BuildPyWithResources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repo's own folders
        for name in CARRIED:
            src = HERE / name
            if not src.is_dir():
                raise FileNotFoundError(f"{src}: the wheel must carry {name}/ (an sdist without it? see MANIFEST.in)")
            dst = Path(self.build_lib) / "ausweep" / "_data" / name
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithResources})
