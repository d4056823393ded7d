import subprocess
import sys
from pathlib import Path

import pytest

SMALL = ["data.train_size=500", "data.validation_size=100", "training.batch_size=50"]


def deepfit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "deepfit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def run_main(*args, capsys):
    """The CLI in-process (a subprocess per case would spend its time importing JAX)."""
    from deepfit.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_clear_line(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_train_writes_a_run_and_says_where(tmp_path):
    out = tmp_path / "run"
    r = deepfit("train", "configs/leaky_relu.toml", "--out", out, "--epochs", "1", "--seed", "7", "--no-progress", *SMALL)
    assert r.returncode == 0, r.stderr
    assert f"run: {out}" in r.stdout and "val_accuracy" in r.stdout
    text = (out / "config.toml").read_text()
    assert "seed = 7" in text and "epochs = 1" in text and "train_size = 500" in text
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["train", "configs/leaky_relu.toml", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["train", "configs/leaky_relu.toml", "--epochs", "x"], ["--epochs", "invalid int value"]),
        (["train", "configs/leaky_relu.toml", "model.layers.1.kernel_initializer=he_normall"],
         ["kernel_initializer", "Did you mean 'he_normal'"]),
        (["train", "configs/leaky_relu.toml", "training.epochs=0"], ["training.epochs"]),
        (["train", "configs/leaky_relu.toml", "epochs"], ["not key=value"]),
        (["train", "configs/nope.toml"], ["configs/nope.toml", "not found"]),
        (["train", "configs/leaky_relu.toml", "data.source=directory", "data.path=/nonexistent"],
         ["/nonexistent", "not found"]),
        (["list", "initializerz"], ["Did you mean 'initializers'"]),
        (["trian"], ["invalid choice"]),
        (["train", "configs/leaky_relu.toml", "--out", "/proc/x", "--bogus=1"], ["unrecognized arguments: --bogus=1"]),
    ],
)
def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, args, needles, capsys):
    out = tmp_path / "run"
    extra = ["--out", out] if args[0] == "train" and "--out" not in args else []
    r = run_main(*args, *extra, capsys=capsys)
    assert_one_clear_line(r, *needles)
    assert not out.exists()


def test_corrupted_data_file_is_named(tmp_path, capsys):
    import shutil

    from deepfit.data.sources import bundled_dir

    data = tmp_path / "data"
    shutil.copytree(bundled_dir(), data)
    target = data / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-100])  # truncated, and no longer matching SHA256SUMS
    r = run_main("train", "configs/leaky_relu.toml", "data.source=directory", f"data.path={data}", "--out",
                 tmp_path / "run", capsys=capsys)
    assert_one_clear_line(r, "train-labels-idx1-ubyte.gz", "checksum mismatch")
    (data / "SHA256SUMS").unlink()
    r = run_main("train", "configs/leaky_relu.toml", "data.source=directory", f"data.path={data}", "--out",
                 tmp_path / "run", capsys=capsys)
    assert_one_clear_line(r, "train-labels-idx1-ubyte.gz", "truncated gzip")
    assert not (tmp_path / "run").exists()


def test_list_shows_keras_and_deepfit_names(capsys):
    r = run_main("list", capsys=capsys)
    assert r.returncode == 0
    for name in ("he_normal", "lecun_normal", "selu", "leaky_relu", "rrelu", "nadam", "max_norm", "l1_l2",
                 "early_stopping", "batch_norm"):
        assert name in r.stdout


def test_help_has_examples(capsys):
    r = run_main("--help", capsys=capsys)
    assert r.returncode == 0 and "examples:" in r.stdout and "deepfit train" in r.stdout
