"""Every code block of the README and of docs/*.md runs as written (issue 20, item 28).

One test a block, named after its page and line (``README.md:57``). A ``python`` block runs in a fresh
interpreter, a ``bash`` / ``sh`` / ``console`` block under ``bash -e -o pipefail``, each in an empty folder
holding ``configs`` (the checkout's) and ``.venv`` (this interpreter's environment), so ``configs/...``,
``runs/...`` and ``source .venv/bin/activate`` mean what they mean in a checkout. A ``toml`` block must
parse, and one that is a whole config must validate. A block that cannot run here is fenced as ``text``,
starts with ``# not run: <why>``, or follows ``<!-- not run: <why> -->``; a block must name its language.
The generated reports under docs/ subfolders are not pages anyone copies from, and are left out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = {"python", "py", "python3"}
SHELL = {"bash", "sh", "shell", "console"}
# Languages a block may name without being run: data and output, shown to be read.
SHOWN = {"text", "toml", "json", "csv", "ini", "yaml", "markdown", "md", "output"}
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)\s*$")
NOT_RUN = re.compile(r"^\s*#\s*not run:\s*(.*)$")
NOT_RUN_HTML = re.compile(r"^\s*<!--\s*not run:\s*(.*?)\s*-->\s*$")
TIMEOUT = 900  # a loaded machine runs a seconds-long block for minutes


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the reason, when the block says it must not run

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def extract(text: str, page: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order (a fence closes on the same fence string)."""
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        i += 1
        reason = None
        above = NOT_RUN_HTML.match(lines[start - 1]) if start > 0 else None
        first = NOT_RUN.match(body[0]) if body else None
        if above or first:
            reason = (above or first).group(1).strip()
        out.append(Block(page, start + 1, lang, "\n".join(body) + "\n", reason))
    return out


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in extract(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))]


BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b.lang in PYTHON | SHELL | {"toml"} and b.not_run is None]


def workdir(tmp_path: Path) -> Path:
    """An empty folder that looks like a checkout to a block: configs/ and .venv/ are there."""
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    if sys.prefix != sys.base_prefix:
        (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


def block_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["MPLBACKEND"] = "Agg"  # figures go to files; no window
    env["PYTHONUNBUFFERED"] = "1"
    return env


def command(block: Block, folder: Path) -> list[str]:
    name = re.sub(r"[^\w.]+", "_", block.id)
    if block.lang in PYTHON:
        script = folder / f"{name}.py"
        script.write_text(block.code, encoding="utf-8")
        return [sys.executable, str(script)]
    script = folder / f"{name}.sh"
    code = block.code
    if block.lang == "console":  # `$ command` lines only; the rest is output
        code = "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ ")) + "\n"
    script.write_text(code, encoding="utf-8")
    return ["bash", "-e", "-o", "pipefail", str(script)]


def run_block(block: Block, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command(block, folder), cwd=folder, env=block_env(), capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def failure(block: Block, done: subprocess.CompletedProcess) -> str:
    tail = (done.stdout[-1500:] + "\n" + done.stderr[-3000:]).strip()
    return (f"the {block.lang} block at {block.page} line {block.line} exited {done.returncode} "
            f"(make it run as written, or mark it `# not run: <why>`):\n{tail}")


def check_toml(block: Block) -> None:
    try:
        tree = tomllib.loads(block.code)
    except tomllib.TOMLDecodeError as e:
        pytest.fail(f"the toml block at {block.page} line {block.line} does not parse: {e}")
    if {"model", "training"} <= tree.keys():  # a whole config: it must be one deepfit accepts
        import deepfit

        deepfit.load_config(tree)


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_i20_28_docs_code_block_runs(block: Block, tmp_path):
    if block.lang == "toml":
        check_toml(block)
        return
    done = run_block(block, workdir(tmp_path))
    assert done.returncode == 0, failure(block, done)


def test_i20_28_every_block_names_its_language_and_why_it_does_not_run():
    unnamed = [b.id for b in BLOCKS if not b.lang]
    assert not unnamed, f"fenced blocks without a language (```python, ```bash, ```text, ...): {unnamed}"
    unknown = [f"{b.id} ({b.lang})" for b in BLOCKS if b.lang not in PYTHON | SHELL | SHOWN]
    assert not unknown, f"blocks in a language the docs test neither runs nor shows as text: {unknown}"
    silent = [b.id for b in BLOCKS if b.not_run is not None and not b.not_run]
    assert not silent, f"blocks marked 'not run' without saying why: {silent}"
    # The pages hold something to run: an empty selection would pass every page unread.
    assert {b.page for b in RUNNABLE} >= {"README.md", "docs/index.md", "docs/keras-users.md"}


PAGE = '''# A page

```python
print("fine")
```

Some text.

```bash
# not run: needs a cluster
ray start --head
```

<!-- not run: twenty minutes -->
```bash
deepfit reproduce --full
```

````python
import deepfit as df
df.mc_predict(run.model, x, samples=100)
````
'''


def test_i20_28_the_harness_names_the_page_and_line_of_a_failing_block(tmp_path):
    blocks = extract(PAGE, "docs/page.md")
    assert [(b.line, b.lang, b.not_run) for b in blocks] == [
        (3, "python", None), (9, "bash", "needs a cluster"), (15, "bash", "twenty minutes"), (19, "python", None)]
    assert blocks[0].code == 'print("fine")\n'
    ok = run_block(blocks[0], workdir(tmp_path))
    assert ok.returncode == 0 and ok.stdout == "fine\n"
    broken = blocks[3]  # the README's mc_predict line on 2a756aa: `run` and `x` are undefined there
    done = run_block(broken, tmp_path)
    assert done.returncode != 0
    message = failure(broken, done)
    assert message.startswith("the python block at docs/page.md line 19 exited 1")
    assert "NameError: name 'run' is not defined" in message
