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

from deepfit.experiments.sequential import critical_t
from deepfit.experiments.stats import superiority
from deepfit.report import write_report
from experiment_fixtures import fake_experiment_dir

# Hand-made numbers: 'wide' is clearly better than 'base' on every seed; 'same' differs by noise only.
FINALS = {"base": [0.842, 0.851, 0.845, 0.840, 0.848, 0.846, 0.843, 0.849],
          "wide": [0.871, 0.877, 0.876, 0.869, 0.876, 0.874, 0.870, 0.878],
          "same": [0.843, 0.851, 0.844, 0.842, 0.847, 0.846, 0.841, 0.850]}
CURVES = {v: [[round(x - 0.05, 6), x] for x in xs] for v, xs in FINALS.items()}


@pytest.fixture
def exp_dir(tmp_path):
    return fake_experiment_dir(tmp_path / "exp", FINALS, CURVES, reference="base")


def test_markdown_tables_hold_the_scipy_numbers_and_verdicts(exp_dir):
    paths = write_report(exp_dir)
    md = paths["markdown"].read_text()
    lo, hi = stats.t.interval(0.95, 7, np.mean(FINALS["wide"]), stats.sem(FINALS["wide"]))
    assert f"| wide | 8 | 0 | {np.mean(FINALS['wide']):.4f} |" in md
    assert f"[{lo:.4f}, {hi:.4f}]" in md
    assert "Final val_accuracy (higher is better)" in md  # from the runs' records, not the name
    # 'wide' is decided at the first look whose interval (two comparisons: level 1 - 0.05/2) is above 0.
    d = np.array(FINALS["wide"]) - FINALS["base"]
    lo, hi, n = -np.inf, np.inf, None
    for k in range(2, 9):
        half = critical_t(k, 0.025) * d[:k].std(ddof=1) / np.sqrt(k)
        lo, hi = max(lo, d[:k].mean() - half), min(hi, d[:k].mean() + half)
        if k >= 3 and lo > 0:
            n = k
            break
    row = next(line for line in md.splitlines() if line.startswith(f"| wide | {n} of 8 |"))
    assert f"| [{lo:.4f}, {hi:.4f}] |" in row and "| better |" in row
    p = stats.ttest_rel(FINALS["wide"][:n], FINALS["base"][:n]).pvalue  # the fixed-n test, beside: not deciding
    assert f"t p={p:.4f}" in row or (p < 1e-4 and "t p=<0.0001" in row)
    prob, plo, phi = superiority(FINALS["wide"][:n], FINALS["base"][:n])
    assert f"| {prob:.2f} [{plo:.2f}, {phi:.2f}] |" in row
    same = next(line for line in md.splitlines() if line.startswith("| same |") and "±" in line)
    assert "equivalent within ±0.01" in same and "| ±0.01 |" in same
    assert "Verdicts survive looking" in md and "seeds + images" in md
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
    assert "equivalent within ±0.01" in out.stdout


def test_crossed_report_shows_the_decomposition_and_the_crossed_comparison(tmp_path):
    from deepfit.experiments.variance import crossed_mean, decompose

    rng = np.random.default_rng(4)
    base = 0.6 + rng.normal(0, 0.08, (3, 1)) + rng.normal(0, 0.03, (1, 3)) + rng.normal(0, 0.01, (3, 3))
    better = base + 0.05 + rng.normal(0, 0.01, (3, 3))
    finals = {"base": [float(x) for x in base.ravel()], "better": [float(x) for x in better.ravel()]}
    curves = {v: [[x - 0.1, x] for x in xs] for v, xs in finals.items()}
    exp = fake_experiment_dir(tmp_path / "x", finals, curves, reference="base",
                              seeds_spec={"init": [0, 1, 2], "order": [5, 6, 7]})
    md = write_report(exp)["markdown"].read_text()
    assert "init seeds 0, 1, 2 × order seeds 5, 6, 7 (9 cells" in md
    d = decompose(base)
    row = next(line for line in md.splitlines() if line.startswith("| base | 3 × 3 |"))
    assert f"| {d.var_init ** 0.5:.4f} | {d.var_order ** 0.5:.4f} | {d.var_resid ** 0.5:.4f} |" in row
    assert "method of moments" in md and "figures/variance_val_accuracy.png" in md
    m = crossed_mean(better - base)
    row = next(line for line in md.splitlines() if line.startswith("| better | 9 |") and "crossed t" in line)
    p = 2 * stats.t.sf(abs(m.mean / m.se), m.df)
    half = stats.t.ppf(0.975, m.df) * m.se  # one comparison: the verdict's interval is the 95% crossed one
    assert f"| {m.mean:.4f} |" in row and f"crossed t p={p:.4f}" in row and "| better |" in row
    assert f"| [{m.mean - half:.4f}, {m.mean + half:.4f}] |" in row
    assert (exp / "figures" / "variance_val_accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_two_seeds_give_no_interval_and_diverged_runs_are_counted(tmp_path):
    finals = {"base": [0.84, 0.85, float("nan")], "wide": [0.86, 0.87, 0.865]}
    curves = {v: [[0.8, 0.8 if x != x else x] for x in xs] for v, xs in finals.items()}
    exp = fake_experiment_dir(tmp_path / "y", finals, curves, reference="base")
    md = write_report(exp)["markdown"].read_text()
    assert "| base | 2 | 1 | 0.8450 |" in md  # 2 finite seeds, 1 diverged
    base_row = next(line for line in md.splitlines() if line.startswith("| base | 2 | 1 |"))
    assert "none (fewer than 3 seeds: no interval, test or verdict is meaningful)" in base_row
    assert "1 diverged run(s)" in md and "base seed 2" in md
