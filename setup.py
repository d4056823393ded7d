"""Only what pyproject.toml cannot say: ship ``deepfit-keras-backend.pth`` at the top of site-packages,
so that ``import keras`` before ``import deepfit`` finds the JAX backend (see src/_deepfit_backend.py)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "deepfit-keras-backend.pth"


class BuildWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(str(Path("src") / PTH), str(Path(self.build_lib) / PTH), preserve_mode=0)

    def get_outputs(self, include_bytecode=1):
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]

    def get_output_mapping(self):
        mapping = dict(super().get_output_mapping())
        mapping[str(Path(self.build_lib) / PTH)] = str(Path("src") / PTH)
        return mapping


setup(cmdclass={"build_py": BuildWithPth})
