"""MkDocs hook: the API reference documents every public name of ``deepfit``, each with a docstring.

``deepfit/__init__.py``'s ``__all__`` is the public API; each name is imported there ``from MODULE import
NAME``. ``docs/api.md`` must hold a ``::: MODULE.NAME`` block for each (the defining module's path, since
``deepfit.train`` and ``deepfit.fit`` are also subpackage names that mkdocstrings would resolve to the
module), and the object must have a docstring. Read statically (ast, griffe): the build imports no JAX.
A name missing, or one without a docstring, fails the build with the list and the line to add.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
INIT = ROOT / "src" / "deepfit" / "__init__.py"
API_PAGE = "api.md"
DIRECTIVE = re.compile(r"^:::\s*([\w.]+)\s*$", re.MULTILINE)


def public_names(init: Path = INIT) -> dict[str, str]:
    """``{name: "module.name"}`` for every name in ``__all__``, from the ``from ... import`` that binds it."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    where: dict[str, str] = {}
    exported: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                where[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            exported = [ast.literal_eval(e) for e in node.value.elts]
    missing = [n for n in exported if n not in where]
    if missing:
        raise PluginError(f"{init}: __all__ names {missing} are not imported with 'from MODULE import NAME'")
    return {name: where[name] for name in exported}


def undocumented(paths: list[str]) -> list[str]:
    """The paths (``module.name``) whose object has no docstring, as griffe reads the source."""
    import griffe

    package = griffe.load("deepfit", search_paths=[str(ROOT / "src")])
    out = []
    for path in paths:
        obj = package[path.removeprefix("deepfit.")]
        obj = obj.final_target if obj.is_alias else obj
        if not (obj.docstring and obj.docstring.value.strip()):
            out.append(path)
    return out


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != API_PAGE:
        return markdown
    wanted = public_names()
    documented = set(DIRECTIVE.findall(markdown))
    absent = sorted(f"::: {path}" for path in wanted.values() if path not in documented)
    if absent:
        raise PluginError(f"docs/{API_PAGE} does not document these public names of deepfit (add each line): "
                          + ", ".join(absent))
    bare = undocumented(sorted(wanted.values()))
    if bare:
        raise PluginError(f"public names without a docstring (write one): {', '.join(bare)}")
    return markdown
