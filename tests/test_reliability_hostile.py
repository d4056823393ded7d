"""Hostile and broken files: refused without running anything; one clear message naming the file."""

from __future__ import annotations

import gzip
import json
import pickle
import struct

import numpy as np
import pytest
from reliability_fixtures import FILES, idx_bytes, tiny_arrays, tiny_config, toml_text, write_idx_dir

import deepfit as df
from deepfit.cli import main
from deepfit.data.idx import read_idx
from deepfit.data.sources import load_directory
from deepfit.errors import CheckpointError, ConfigError, DataError
from deepfit.serialize import load_model, save_model


class Payload:
    """Unpickling this creates ``marker``: if the marker exists, code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a hostile file ran code"


# -- configs -------------------------------------------------------------------
def test_yaml_tag_config_is_not_parsed_as_yaml(tmp_path, marker, capsys):
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match=r"evil\.yaml.*not valid TOML"):
        df.load_config(cfg)
    assert main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "evil.yaml" in capsys.readouterr().err


def test_pickle_payload_as_config_is_refused(tmp_path, marker):
    cfg = tmp_path / "evil.toml"
    cfg.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ConfigError, match=r"evil\.toml"):
        df.load_config(cfg)


@pytest.mark.parametrize("kind", ["Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer"])
def test_config_layers_that_run_code_are_refused(kind):
    cfg = tiny_config()
    cfg["model"]["layers"].insert(1, {"type": kind, "function": "os.system"})
    with pytest.raises(ConfigError, match=f"{kind}' runs Python code"):
        df.load_config(cfg)


# -- data files ------------------------------------------------------------------
def test_pickle_payload_as_idx_file_is_bad_magic(tmp_path, marker):
    path = tmp_path / FILES["train_images"]
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(DataError, match=f"{path.name}: not an IDX file \\(bad magic number"):
        read_idx(path)


def test_huge_idx_header_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.idx"
    path.write_bytes(bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\0" * 64)
    with pytest.raises(DataError, match=r"huge\.idx: IDX header says shape \(4294967295, 4294967295, 4294967295\)"):
        read_idx(path)


@pytest.mark.parametrize("damage", ["truncate_gzip", "truncate_idx", "flip_sum", "zip_bomb"])
def test_broken_data_files_are_named(tmp_path, damage):
    d = write_idx_dir(tmp_path / "data")
    target = d / (FILES["train_images"] + ".gz")
    if damage == "truncate_gzip":
        target.write_bytes(target.read_bytes()[:-20])
        match = "truncated gzip file"
    elif damage == "truncate_idx":
        (x, _), _ = tiny_arrays()
        target.write_bytes(gzip.compress(idx_bytes(x)[:-100]))
        match = "the file is truncated or corrupted"
    elif damage == "flip_sum":
        import hashlib

        good = hashlib.sha256(target.read_bytes()).hexdigest()
        (d / "SHA256SUMS").write_text(f"{good[::-1]}  {target.name}\n")
        match = "sha256 checksum mismatch"
    else:
        target.write_bytes(gzip.compress(b"\0" * (64 * 1024**2)))
        match = "decompresses to more than"
        import deepfit.data.idx as idx

        with pytest.raises(DataError, match=f"{target.name}: {match}"):
            idx.read_idx(target, limit=1024**2)
        return
    with pytest.raises(DataError, match=f"{target.name}.*{match}"):
        load_directory(d)


def test_data_with_nan_or_wrong_shape_is_a_data_error():
    (x, y), test = tiny_arrays()
    xf = x.astype(np.float32)
    xf[250, 3, 3] = np.nan
    cfg = tiny_config(epochs=1)
    cfg["data"]["scaling"] = "none"
    with pytest.raises(DataError, match="train inputs hold NaN or infinite values"):
        df.train(cfg, save=False, data=((xf, y), test))
    with pytest.raises(DataError, match=r"samples have shape \[8, 8\] but model.input_shape is \[4, 16\]"):
        df.train({**cfg, "model": {**cfg["model"], "input_shape": [4, 16]}}, save=False, data=((x, y), test))
    bad = dict(cfg["model"], layers=[*cfg["model"]["layers"][:-1], {"type": "dense", "units": 2}])
    with pytest.raises(DataError, match="labels go from 0 to 2 but the last layer has 2 outputs"):
        df.train({**cfg, "model": bad}, save=False, data=((x, y), test))


# -- model files -------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    model = df.build_model(tiny_config()["model"], seed=0)
    save_model(model, d)
    return d


def copy_model(saved_model, tmp_path):
    for name in ("model.json", "weights.safetensors"):
        (tmp_path / name).write_bytes((saved_model / name).read_bytes())
    return tmp_path


def test_model_json_naming_a_module_outside_keras_is_refused(saved_model, tmp_path, marker):
    d = copy_model(saved_model, tmp_path)
    cfg = json.loads((d / "model.json").read_text())
    cfg["config"]["layers"][1] = {"module": "os", "class_name": "system", "config": {"command": f"touch {marker}"},
                                  "registered_name": None}
    (d / "model.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.json: refuses to load class from module 'os'"):
        load_model(d)


def test_model_json_with_unknown_custom_object_is_refused(saved_model, tmp_path):
    d = copy_model(saved_model, tmp_path)
    cfg = json.loads((d / "model.json").read_text())
    cfg["config"]["layers"][1]["registered_name"] = "evil>Payload"
    (d / "model.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="refuses unknown custom object 'evil>Payload'"):
        load_model(d)


def test_model_json_with_lambda_bytecode_runs_nothing(tmp_path, marker):
    import keras

    target = str(marker)  # (Keras serializes the closure's cells: a str, not a Path)
    body = keras.layers.Lambda(lambda x: (__import__("pathlib").Path(target).touch(), x)[1])
    model = keras.Sequential([keras.Input((3,)), body])
    marker.unlink()  # building it ran the lambda once, here, on purpose: the control
    (tmp_path / "model.json").write_text(model.to_json())
    assert "Lambda" in (tmp_path / "model.json").read_text()
    with pytest.raises(CheckpointError, match=r"model\.json: Keras cannot rebuild this model.*(lambda|Lambda)"):
        load_model(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "pickle", "missing_tensor", "wrong_shape"])
def test_broken_weights_are_named(saved_model, tmp_path, damage, marker):
    from safetensors.numpy import load_file, save_file

    d = copy_model(saved_model, tmp_path)
    w = d / "weights.safetensors"
    if damage == "truncate":
        w.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2])
        match = "weights.safetensors is not a valid safetensors file"
    elif damage == "pickle":
        w.write_bytes(pickle.dumps(Payload(marker)))
        match = "weights.safetensors is not a valid safetensors file"
    elif damage == "missing_tensor":
        arrays = load_file(w)
        arrays.pop(sorted(arrays)[0])
        save_file(arrays, w)
        match = "weights.safetensors: holds 3 tensors, the model has 4 variables"
    else:
        arrays = load_file(w)
        key = sorted(arrays)[0]
        arrays[key] = np.zeros((5, 5), np.float32)
        save_file(arrays, w)
        match = "has shape \\(5, 5\\)"
    with pytest.raises(CheckpointError, match=match):
        load_model(d)


@pytest.mark.slow
def test_run_directory_with_a_flipped_byte_fails_its_manifest(tmp_path):
    out = tmp_path / "run"
    df.train(tiny_config(epochs=1), out, data=tiny_arrays())
    w = out / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x20  # safetensors itself would load this without noticing
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: sha256 does not match the manifest"):
        df.load_run(out)


def test_cli_refuses_a_corrupted_checkpoint_naming_it(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config(write_idx_dir(tmp_path / "data"), epochs=2)
    (tmp_path / "c.toml").write_text(toml_text(cfg))
    out.mkdir()
    (out / "config.toml").write_text(toml_text(df.load_config(cfg).to_dict()))
    from deepfit.train.checkpoint import write_checkpoint

    ck = write_checkpoint(out / "checkpoints", 19, {"state/step": np.asarray(19, np.int32)},
                          {"history": [], "callbacks": []})
    (ck / "state.safetensors").write_bytes(b"garbage")
    assert main(["train", str(tmp_path / "c.toml"), "--out", str(out), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "ckpt-0000000019/state.safetensors: sha256 does not match" in err and "Traceback" not in err
