"""The docs site builds with ``mkdocs build --strict`` (offline): a broken link, a page missing from the nav's
files, or a public name of ``deepfit`` that the API reference lacks (or that has no docstring) fails it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import mkdocs_hooks  # noqa: E402


def test_the_docs_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name, path in mkdocs_hooks.public_names().items():
        assert f'id="{path}"' in api, f"{name} ({path}) is not rendered in the API reference"
    chapter = (tmp_path / "site" / "chapter-full" / "index.html").read_text(encoding="utf-8")
    assert "image/png" in chapter or "<img" in chapter  # the executed notebook, with its figures


def test_the_api_page_must_document_every_public_name():
    from mkdocs.exceptions import PluginError

    names = mkdocs_hooks.public_names()
    # The subpackages' names are not the functions: the reference must point at the defining module.
    assert names["fit"] == "deepfit.fit.fit" and names["train"] == "deepfit.run.train"
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")

    class Page:
        class file:
            src_uri = "api.md"

    assert mkdocs_hooks.on_page_markdown(page, Page, None, None) == page
    with pytest.raises(PluginError, match=r"::: deepfit\.uncertainty\.mc_predict"):
        mkdocs_hooks.on_page_markdown(page.replace("::: deepfit.uncertainty.mc_predict\n", ""), Page, None, None)
    assert mkdocs_hooks.undocumented(["deepfit.run.train", "deepfit.errors.ConfigError"]) == []
    assert mkdocs_hooks.undocumented(["deepfit.run.Run.history_rows"]) == ["deepfit.run.Run.history_rows"]
