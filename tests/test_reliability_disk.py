"""A full disk (ENOSPC, EDQUOT, EIO) at every write of a run in turn, and on a real tiny filesystem:
one clear line naming the file and what was kept, the last checkpoint whole, nothing half-written
left looking complete, and the run resumes, byte-identical, once there is space again."""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from reliability_fixtures import tiny_config, toml_text, write_idx_dir

import deepfit as df
from deepfit.cli import main
from deepfit.errors import StorageError
from deepfit.train.checkpoint import latest_checkpoint, read_checkpoint

COMPARED = ("weights.safetensors", "metrics.csv")
FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EIO)


@contextmanager
def failing_write(monkeypatch, fail_at: int | None, code: int = errno.ENOSPC):
    """Every file deepfit writes is fsynced before it counts; the ``fail_at``-th such fsync (of a
    regular file) fails as a full disk would report it (ext4, XFS and NFS report ENOSPC there)."""
    real = os.fsync
    count = itertools.count(1)
    seen = []

    def fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            n = next(count)
            seen.append(n)
            if n == fail_at:
                raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    yield seen
    monkeypatch.setattr(os, "fsync", real)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("disk")
    cfg = tiny_config(write_idx_dir(tmp / "data"), epochs=2, steps_per_chunk=8,
                      callbacks=[{"name": "backup_and_restore", "save_freq": 8}])
    ref = df.train(cfg, out=tmp / "reference")
    return tmp, cfg, ref.dir


def writes_of_a_run(setup, monkeypatch) -> int:
    tmp, cfg, _ = setup
    with failing_write(monkeypatch, None) as seen:
        df.train(cfg, out=tmp / "counted")
    return len(seen)


def left_behind(out: Path) -> list[Path]:
    """Temporary files and half checkpoints: what a failed write must not leave."""
    return [p for p in out.rglob(".*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-")]


def test_a_failed_write_at_every_write_in_turn_keeps_a_resumable_run(setup, monkeypatch):
    tmp, cfg, ref = setup
    n = writes_of_a_run(setup, monkeypatch)
    assert n >= 20  # config, environment, metrics and checkpoints as it trains, then the model and records
    for k in range(1, n + 1):
        code = FAULTS[k % len(FAULTS)]
        out = tmp / f"fail-{k}"
        with failing_write(monkeypatch, k, code), pytest.raises(StorageError) as info:
            df.train(cfg, out=out)
        message = str(info.value)
        assert message.startswith(f"cannot write {out}/") and f"{os.strerror(code)} ({errno.errorcode[code]})" \
            in message, message
        latest = latest_checkpoint(out / "checkpoints")
        if latest is not None:
            read_checkpoint(latest)  # whole: its digests match
            assert f"Kept: the checkpoint {latest}. Free some space, then run the same command again" in message
        else:
            assert "Nothing was trained yet" in message or "no checkpoint of" in message, message
        assert not left_behind(out), left_behind(out)
        assert not (out / "final.json").exists() and not (out / "manifest.json").exists()
        run = df.train(cfg, out=out, resume=True)
        assert run.final["status"] == "completed"
        for name in COMPARED:
            assert (out / name).read_bytes() == (ref / name).read_bytes(), (k, name)


def test_the_cli_says_it_in_one_line_and_exits_74(setup, monkeypatch, capsys):
    tmp, cfg, _ = setup
    cfg_path = tmp / "c.toml"
    cfg_path.write_text(toml_text(cfg))
    out = tmp / "cli"
    with failing_write(monkeypatch, 9):
        assert main(["train", str(cfg_path), "--out", str(out), "--no-progress"]) == 74
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"deepfit: error: cannot write {out}/") and "--resume" in err[0]


# -- a real tiny filesystem -------------------------------------------------------------------------------
@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs (needs root, or CAP_SYS_ADMIN, and a kernel that allows it here)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount command: the injected faults above stand in for a real full disk")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'}): the injected "
                    "faults above stand in for a real full disk")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free on the filesystem."""
    filler = mount / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
                if free <= leave:
                    break
                f.write(b"\0" * min(4096, free - leave))
                f.flush()
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("leave", [8 * 1024, 24 * 1024, 40 * 1024])
def test_a_really_full_disk_stops_cleanly_and_the_run_resumes_once_space_is_back(setup, tiny_fs, leave, capsys):
    tmp, cfg, ref = setup
    cfg_path = tmp / "c.toml"
    cfg_path.write_text(toml_text(cfg))
    out = tiny_fs / "run"
    filler = fill(tiny_fs, leave)
    assert main(["train", str(cfg_path), "--out", str(out), "--no-progress"]) == 74
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"deepfit: error: cannot write {out}/") and "No space left on device (ENOSPC)" \
        in err[-1], err
    latest = latest_checkpoint(out / "checkpoints")
    if latest is not None:
        read_checkpoint(latest)
    assert not left_behind(out) and not (out / "final.json").exists()
    filler.unlink()
    assert main(["train", str(cfg_path), "--out", str(out), "--no-progress", "--resume"]) == 0
    for name in COMPARED:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
