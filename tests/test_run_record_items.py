"""Issue 20: what a run records must be what it kept, and a refused call must change nothing.

Each test is named after the item of issue 20 it closes (``test_i20_NN_...``).
"""

import hashlib
import io
import re

import keras
import numpy as np
import pytest

import deepfit as df
from deepfit.errors import CheckpointError, ConfigError, DataError
from deepfit.train.callbacks.progress import Progress
from deepfit.train.events import Callback
from tests.conftest import tiny_config


def tree_digest(path):
    """Every file under ``path`` with its bytes' sha256 and mode: what "changed nothing" compares."""
    return {str(p.relative_to(path)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_i20_08_keras_restore_best_weights_is_what_the_record_reports(tmp_path, tiny_arrays):
    # A rate that overshoots after a few epochs, so the best validation loss is not the last epoch's.
    cfg = tiny_config(epochs=6, optimizer={"name": "sgd", "learning_rate": 3.0},
                      callbacks=[{"name": "EarlyStopping", "monitor": "val_loss", "patience": 10,
                                  "restore_best_weights": True}])
    run = df.train(cfg, tmp_path / "run", data=tiny_arrays)
    losses = [row["val_loss"] for row in run.history_rows]
    best = int(np.argmin(losses)) + 1
    assert best < len(losses), "the test needs a best epoch before the last"
    final = run.final
    assert final["restored_epoch"] == best and final["last"]["epoch"] == best
    assert final["last"]["val_loss"] == pytest.approx(min(losses))
    # The saved model and the test metrics are that epoch's, as the record says.
    kept = df.load_run(tmp_path / "run").model
    (x, y) = tiny_arrays[1]
    test_loss = kept.evaluate(x.astype("float32") / 255, y, verbose=0)[0]
    assert final["test_loss"] == pytest.approx(test_loss, rel=1e-5)


def test_i20_09_a_loss_given_as_a_table_gets_the_label_check(tmp_path, tiny_arrays):
    cfg = tiny_config(loss={"name": "sparse_categorical_crossentropy", "from_logits": True})
    cfg["model"]["layers"][-1] = {"type": "dense", "units": 2}  # 2 logits for labels 0..2
    with pytest.raises(DataError, match=r"the train labels go from 0 to 2 but the last layer has 2 outputs.*"
                                        r"set the last layer's units = 3"):
        df.train(cfg, tmp_path / "run", data=tiny_arrays)
    assert not (tmp_path / "run").exists()


def test_i20_12_an_override_that_cuts_a_freeze_schedule_is_refused():
    cfg = df.load_config("configs/task_b_on_a.toml")
    assert [p.epochs for p in cfg.training.freeze] == [4, 16]
    with pytest.raises(ConfigError, match=r"epochs = 3 ends before phase 2 of training.freeze begins \(after "
                                          r"epoch 4\).*training.epochs >= 5"):
        df.load_config("configs/task_b_on_a.toml", ["training.epochs=3"])
    assert df.load_config("configs/task_b_on_a.toml", ["training.epochs=5"]).training.epochs == 5


class StopAfterFirstEpoch(Callback):
    order = 1001  # after the epoch's checkpoint

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == 0:
            raise KeyboardInterrupt


def test_i20_14_throughput_after_a_resume_counts_what_this_process_trained(tmp_path, tiny_arrays):
    cfg = tiny_config(epochs=3, progress=True)
    with pytest.raises(KeyboardInterrupt):
        df.train(cfg, tmp_path / "run", data=tiny_arrays, callbacks=[StopAfterFirstEpoch()])
    stream = io.StringIO()
    whole = io.StringIO()
    df.train(cfg, tmp_path / "run", data=tiny_arrays, resume=True, callbacks=[Progress(stream)])
    df.train(cfg, tmp_path / "whole", data=tiny_arrays, callbacks=[Progress(whole)])
    rate = lambda text: [float(r.replace(",", "")) for r in re.findall(r"([\d,]+) samples/s", text)]  # noqa: E731
    resumed, uninterrupted = rate(stream.getvalue()), rate(whole.getvalue())
    assert len(resumed) == 2 and len(uninterrupted) == 3
    # It read 622,262 samples/s: the restored epoch counted as if trained in no time. Same machine, same
    # work: within a factor of 5 of the uninterrupted run's (a loose bound; timing noise is large here).
    assert resumed[-1] < 5 * max(uninterrupted)


def mlp(units=3, seed=1):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(units, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Nadam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_i20_15_extending_fit_out_dir_from_a_new_process_keeps_the_run(tmp_path, tiny_arrays):
    (x, y), _ = tiny_arrays
    x = x.astype("float32") / 255
    kw = dict(batch_size=32, validation_split=0.2, seed=4, verbose=0)
    straight = mlp()
    df.fit(straight, x, y, epochs=3, **kw)

    first = mlp()
    df.fit(first, x, y, epochs=2, out=tmp_path / "run", **kw)
    # A notebook rerun in a fresh kernel builds the same network under other automatic names
    # (dense_7 instead of dense_1): the state's keys must not depend on them.
    for _ in range(3):
        keras.layers.Dense(1)
    later = mlp()
    assert [layer.name for layer in later.layers] != [layer.name for layer in first.layers]
    df.fit(later, x, y, epochs=3, out=tmp_path / "run", **kw)
    for a, b in zip(straight.get_weights(), later.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert df.load_run(tmp_path / "run").final["epochs_run"] == 3

    # Calls that cannot extend it are refused and leave every file as it was: another network, and a final
    # state that does not load (here a flipped byte; it failed after the record had been deleted).
    before = tree_digest(tmp_path / "run")
    with pytest.raises(ConfigError, match="different config"):
        df.fit(mlp(units=4), x, np.minimum(y, 3), epochs=4, out=tmp_path / "run", **kw)
    assert tree_digest(tmp_path / "run") == before
    state = next((tmp_path / "run" / "final_state").rglob("state.safetensors"))
    data = bytearray(state.read_bytes())
    data[-1] ^= 1
    state.write_bytes(bytes(data))
    before = tree_digest(tmp_path / "run")
    with pytest.raises(CheckpointError):
        df.fit(mlp(), x, y, epochs=4, out=tmp_path / "run", **kw)
    assert tree_digest(tmp_path / "run") == before
    assert df.load_run(tmp_path / "run").final["epochs_run"] == 3


def test_i20_21_a_config_layer_in_mixed_float16_gets_loss_scaling(tmp_path, tiny_arrays):
    cfg = tiny_config(epochs=2)
    cfg["model"]["layers"][1] = {**cfg["model"]["layers"][1], "dtype": "mixed_float16"}
    run = df.train(cfg, tmp_path / "run", data=tiny_arrays)
    # As model.compile gives a model built under mixed_float16: float16 gradients scaled, then unscaled.
    assert isinstance(run.trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert any(k.endswith("dynamic_scale") for k in run.trainer.state.optimizer)
    losses = [row["loss"] for row in run.history_rows]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    again = df.train(cfg, tmp_path / "again", data=tiny_arrays)  # and the same numbers again
    assert [row["loss"] for row in again.history_rows] == losses
