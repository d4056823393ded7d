"""First contact: the notebook's first lines, ``import keras`` then ``import deepfit``."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def python(code: str, tmp_path: Path, site_dir: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """A fresh interpreter with a clean home (no ~/.keras) and no KERAS_BACKEND unless given."""
    environ = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    environ.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(SRC), **env)
    prelude = f"import site; site.addsitedir({str(site_dir)!r})\n" if site_dir else ""
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=environ,
                          timeout=300)


@pytest.fixture
def site_dir(tmp_path):
    """A site directory holding what the wheel installs at the top of site-packages."""
    d = tmp_path / "site"
    d.mkdir()
    shutil.copy(SRC / "deepfit-keras-backend.pth", d)
    return d


def test_import_keras_first_works_with_the_installed_pth(tmp_path, site_dir):
    run = python("import keras\nimport deepfit\nprint(keras.backend.backend())", tmp_path, site_dir)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "jax"


def test_keras_imported_with_another_backend_fails_in_one_line(tmp_path):
    run = python("import keras\nimport deepfit", tmp_path, KERAS_BACKEND="numpy")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: deepfit needs Keras's JAX backend")
    assert "'numpy'" in last and "export KERAS_BACKEND=jax" in last


def test_the_pth_never_overrides_an_explicit_choice(tmp_path, monkeypatch):
    sys.path.insert(0, str(SRC))
    try:
        import _deepfit_backend
    finally:
        sys.path.remove(str(SRC))
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))

    def chosen(keras_json=None, env=None):
        monkeypatch.delenv("KERAS_BACKEND", raising=False)
        if env:
            monkeypatch.setenv("KERAS_BACKEND", env)
        path = home / "keras.json"
        path.unlink(missing_ok=True)
        if keras_json is not None:
            path.write_text(keras_json)
        _deepfit_backend.default_to_jax()
        return os.environ.get("KERAS_BACKEND")

    assert chosen() == "jax"
    assert chosen(json.dumps({"backend": "tensorflow"})) == "jax"  # Keras's own default, written on a failed import
    assert chosen("not json") == "jax"
    assert chosen(json.dumps({"backend": "torch"})) is None  # the user's choice: Keras reads it itself
    assert chosen(env="numpy") == "numpy"
