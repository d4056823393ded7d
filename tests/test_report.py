"""deepfit report: Markdown + standalone HTML from an experiment directory; rendered by headless Chromium."""

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from deepfit.report import write_report
from experiment_fixtures import fake_experiment_dir

# Hand-made numbers: 'wide' is clearly better than 'base' on every seed; 'same' differs by noise.
FINALS = {"base": [0.842, 0.851, 0.845, 0.840, 0.848], "wide": [0.861, 0.857, 0.866, 0.859, 0.863],
          "same": [0.846, 0.849, 0.841, 0.843, 0.850]}
CURVES = {v: [[round(x - 0.05, 6), x] for x in xs] for v, xs in FINALS.items()}


@pytest.fixture
def exp_dir(tmp_path):
    return fake_experiment_dir(tmp_path / "exp", FINALS, CURVES, reference="base")


def test_markdown_tables_hold_the_scipy_numbers_and_verdicts(exp_dir):
    paths = write_report(exp_dir)
    md = paths["markdown"].read_text()
    lo, hi = stats.t.interval(0.95, 4, np.mean(FINALS["wide"]), stats.sem(FINALS["wide"]))
    assert f"| wide | 5 | {np.mean(FINALS['wide']):.4f} |" in md
    assert f"[{lo:.4f}, {hi:.4f}]" in md
    p = stats.ttest_rel(FINALS["wide"], FINALS["base"]).pvalue
    row = next(line for line in md.splitlines() if line.startswith("| wide | 5 | 0.0"))
    assert f"{p:.4f}" in row and row.endswith("| better |")
    same = next(line for line in md.splitlines() if line.startswith("| same | 5 |") and "distinguishable" in line)
    assert "not distinguishable at 95% with 5 seeds" in same
    for name in re.findall(r"\]\((figures/[^)]+\.png)\)", md):
        assert (exp_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_standalone(exp_dir):
    html = write_report(exp_dir)["html"].read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 2
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert not re.search(r'(src|href)="(?!data:)', html), "no external resources"


def test_cli_report(exp_dir, tmp_path):
    from deepfit.cli import main

    assert main(["report", str(exp_dir), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "report.md").is_file()
    assert main(["report", str(tmp_path)]) == 2  # not an experiment directory: one clear error


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=600)
    return shutil.which("chromium")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

# Runs in the page after load: reports what rendered (table cells, decoded image sizes) into the DOM.
PROBE = """
<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => i.complete + ':' + i.naturalWidth + 'x' + i.naturalHeight);
  const cells = document.querySelectorAll('table.results td').length;
  const box = document.querySelector('table.results').getBoundingClientRect();
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = 'IMAGES=' + imgs.join(',') + ';CELLS=' + cells + ';TABLEHEIGHT=' + Math.round(box.height);
  document.body.appendChild(out);
});
</script>
"""


def test_html_renders_in_headless_chromium(exp_dir, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "apt-get install -y chromium")
    html = write_report(exp_dir)["html"].read_text()
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    out = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    m = re.search(r"IMAGES=([^;]*);CELLS=(\d+);TABLEHEIGHT=(\d+)", out.stdout)
    assert m, f"no probe output; chromium said: {out.stderr[-2000:]}"
    images = m.group(1).split(",")
    assert len(images) >= 2
    for img in images:
        complete, size = img.split(":")
        w, h = map(int, size.split("x"))
        assert complete == "true" and w > 200 and h > 100, img  # decoded PNGs, not broken-image icons
    assert int(m.group(2)) >= 3 * 5 and int(m.group(3)) > 50
    assert "not distinguishable at 95% with 5 seeds" in out.stdout
