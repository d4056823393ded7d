"""The trainer's core: one state shape, one clock, one step factory, resume owned by the callback.

Each test is named after a bug the old core had (state split by trainable flags, a fresh
optimizer per freeze phase, two clocks, a step extended from outside, a Keras schedule
traced as a constant, a forward pass compiled on every call).
"""

import deepfit as df  # first: it selects Keras's JAX backend

import keras
import numpy as np
import pytest

from deepfit.optim.optimizers import make_optimizer
from deepfit.optim.schedules import one_cycle
from deepfit.train.callbacks import make_callback
from deepfit.train.callbacks.backup_and_restore import BackupAndRestore
from deepfit.train.callbacks.early_stopping import EarlyStopping
from deepfit.train.callbacks.freeze_schedule import FreezeSchedule
from deepfit.train.loop import Trainer
from deepfit.uncertainty import inference_pass, predict_proba

N, BATCH, EPOCHS = 64, 16, 4  # 4 steps an epoch, 16 in all
PHASES = [{"epochs": 2, "trainable": "head"}, {"epochs": 2, "trainable": "all"}]


def model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(8, activation="relu", name="h1"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])


def data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(N, 5)) * 2 + 1).astype(np.float32), rng.integers(0, 3, N).astype(np.int32)


class KillAt(df.Callback):
    """Stands for a SIGKILL once the run has passed global step ``step`` (after that chunk's checkpoint)."""

    order = 1001

    def __init__(self, step):
        self.step = step

    def on_chunk_end(self, trainer, chunk):
        if chunk.stop >= self.step:
            raise KeyboardInterrupt


def one_cycle_trainer(callbacks, optimizer="adam"):
    sched = one_cycle(steps_per_epoch=N // BATCH, epochs=EPOCHS, max_rate=0.05)
    opt = make_optimizer({"name": optimizer}, momentum_schedule=sched.momentum)
    return Trainer(model(), opt, batch_size=BATCH, epochs=EPOCHS, seed=1, schedule=sched, callbacks=callbacks)


def assert_same_state(a, b):
    left, right = a.state.to_arrays(), b.state.to_arrays()
    assert left.keys() == right.keys()
    for k in left:
        np.testing.assert_array_equal(left[k], right[k], err_msg=k)


# Chunks of 3 steps (the backup's frequency) end at steps 3, 4, 7, 8, 11, ...; phase 2 begins at step 8.
@pytest.mark.parametrize("kill_step, restored", [(5, 7), (10, 11)], ids=["killed_in_phase_1", "killed_in_phase_2"])
def test_resume_with_a_freeze_schedule_is_bit_identical(tmp_path, kill_step, restored):
    # The old state was split by the trainable flags: a run killed in phase 1 could not load its
    # checkpoint into phase 2's split, and one killed in phase 2 resumed with a fresh Adam.
    x, y = data()
    never = one_cycle_trainer([FreezeSchedule(PHASES)])
    never.fit(x, y)
    killed = one_cycle_trainer([FreezeSchedule(PHASES), BackupAndRestore(str(tmp_path), save_freq=3),
                                KillAt(kill_step)])
    with pytest.raises(KeyboardInterrupt):
        killed.fit(x, y)
    resumed = one_cycle_trainer([FreezeSchedule(PHASES), BackupAndRestore(str(tmp_path), save_freq=3)])
    resumed.fit(x, y)
    backup = next(c for c in resumed.callbacks if isinstance(c, BackupAndRestore))
    assert backup.restored_step == restored
    assert_same_state(resumed, never)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in never.history]
    assert [r["phase"] for r in resumed.history] == [1, 1, 2, 2]


def test_a_freeze_schedule_keeps_one_cycles_momentum_cycling():
    # The old schedule built each phase a plain optimizer from the spec: 1cycle's momentum was gone.
    # Phases that freeze nothing and keep the optimizer must then change nothing at all.
    x, y = data()
    plain = one_cycle_trainer([], optimizer="sgd")
    plain.fit(x, y)
    phased = one_cycle_trainer([FreezeSchedule([{"epochs": 2, "trainable": "all"}] * 2, reset_optimizer=False)],
                               optimizer="sgd")
    phased.fit(x, y)
    assert_same_state(phased, plain)
    # The clock the momentum reads: written from state.step before each update (and advanced by it).
    assert int(phased.state.optimizer["schedule_step"]) == int(phased.state.step) == EPOCHS * N // BATCH


def test_momentum_reads_the_clock_not_the_optimizers_iterations():
    # A phase that resets the optimizer restarts Keras's iteration count, never the schedule's clock.
    x, y = data()
    trainer = one_cycle_trainer([FreezeSchedule([{"epochs": 2, "trainable": "all"}] * 2)], optimizer="sgd")
    trainer.fit(x, y)
    assert int(trainer.state.optimizer["iteration"]) == 2 * N // BATCH  # reset as phase 2 began
    assert int(trainer.state.step) == EPOCHS * N // BATCH
    assert int(trainer.state.optimizer["schedule_step"]) == int(trainer.state.step)


def test_a_freeze_schedule_with_layer_stats_records_both_phases():
    # The old optimizer swap built a plain step, bypassing the layer-statistics step: a crash.
    x, y = data()
    stats = make_callback({"name": "layer_stats", "every_n_steps": 4, "rows_per_call": 1})
    trainer = Trainer(model(), keras.optimizers.SGD(0.1), batch_size=BATCH, epochs=EPOCHS, seed=1,
                      callbacks=[FreezeSchedule(PHASES), stats])
    trainer.fit(x, y)
    frame = stats.frame()
    h1 = frame[frame["layer"] == "h1"].set_index("epoch")["grad_norm"]
    assert h1.loc[[0, 1]].isna().all()  # frozen: no gradient is computed for it
    assert np.isfinite(h1.loc[[2, 3]]).all() and (h1.loc[[2, 3]] > 0).all()
    assert np.isfinite(frame[frame["layer"] == "out"]["grad_norm"]).all()


def test_early_stopping_restores_best_weights_under_a_freeze_schedule():
    # Refused before ("cannot be used with a freeze schedule (yet)"): the snapshot had its phase's split.
    x, y = data()

    class Record(df.Callback):
        order = 999

        def __init__(self):
            self.params = []

        def on_epoch_end(self, trainer, epoch, logs):
            self.params.append({k: np.asarray(v) for k, v in trainer.state.params.items()})

    record = Record()
    stop = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    trainer = Trainer(model(), keras.optimizers.SGD(3.0), batch_size=BATCH, epochs=8, seed=1,
                      callbacks=[FreezeSchedule([{"epochs": 1, "trainable": "head"}, {"epochs": 7, "trainable": "all"}]),
                                 stop, record])
    trainer.fit(x, y)
    assert stop.restored_epoch is not None and stop.restored_epoch < len(trainer.history)
    best = record.params[stop.restored_epoch - 1]
    for k, v in trainer.state.params.items():
        np.testing.assert_array_equal(np.asarray(v), best[k], err_msg=k)


def test_a_keras_learning_rate_schedule_follows_the_clock_and_the_rate_scale():
    # It used to be traced as a constant: the rate stayed at its first value.
    x, y = data()
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    rates = []

    class Rates(df.Callback):
        def on_chunk_end(self, trainer, chunk):
            rates.extend(chunk.rates.tolist())

    trainer = Trainer(model(), keras.optimizers.SGD(decay), batch_size=BATCH, epochs=2, seed=1, shuffle=False,
                      callbacks=[Rates()])
    trainer.fit(x, y)
    np.testing.assert_allclose(rates, 0.1 * 0.5 ** np.arange(8), rtol=1e-6)
    assert trainer.learning_rate == pytest.approx(0.1 * 0.5**7, rel=1e-6)
    # And the weights are Keras's own: model.fit with the same schedule, in order.
    ref = model()
    ref.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)),
                loss="sparse_categorical_crossentropy")
    ref.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    for got, want in zip(trainer.model.weights, ref.weights):
        np.testing.assert_allclose(np.asarray(got.value), np.asarray(want.value), rtol=1e-5, atol=1e-6)
    # reduce-on-plateau's scale multiplies it, as it does deepfit's own schedules.
    rates.clear()
    trainer.state = trainer.state.replace(lr_scale=np.float32(0.5) * trainer.state.lr_scale)
    trainer.epochs = 3
    trainer.fit(x, y)
    np.testing.assert_allclose(rates, 0.5 * 0.1 * 0.5 ** np.arange(8, 12), rtol=1e-6)


def test_predict_proba_compiles_its_forward_pass_once():
    # It used to trace and compile a new function on every call.
    m = model()
    x = data()[0]
    first = predict_proba(m, x[:40], batch_size=16)
    again = predict_proba(m, x[:40], batch_size=16)
    np.testing.assert_array_equal(first, again)
    assert inference_pass(m) is inference_pass(m)
    assert inference_pass(m)._cache_size() == 1  # one program: batches are padded to one shape


def test_the_state_has_the_same_keys_whatever_is_frozen():
    m = model()
    opt = keras.optimizers.Adam()
    for layer in m.layers[:-1]:
        layer.trainable = False
    frozen = Trainer(m, opt, batch_size=BATCH)
    free = Trainer(model(), keras.optimizers.Adam(), batch_size=BATCH)
    assert frozen.state.to_arrays().keys() == free.state.to_arrays().keys()
    # Keyed by position and role (layer 0 is h1, 1 bn, 2 out), never by Keras's names.
    assert set(frozen.state.params) == {"0.dense/kernel", "0.dense/bias", "1.batch_normalization/gamma",
                                        "1.batch_normalization/beta", "2.dense/kernel", "2.dense/bias"}
    assert set(frozen.state.buffers) == {"1.batch_normalization/moving_mean", "1.batch_normalization/moving_variance"}
    assert "2.dense/kernel:momentum" in frozen.state.optimizer and "0.dense/kernel:velocity" in frozen.state.optimizer
    assert frozen.steps.frozen == {"0.dense/kernel", "0.dense/bias", "1.batch_normalization/gamma",
                                   "1.batch_normalization/beta"}


def test_layer_stats_of_a_run_resumed_mid_chunk_fall_on_the_same_steps(tmp_path):
    # The stats step opens each group of every_n_steps rows: a chunk that starts with inactive rows
    # (a run resumed mid-chunk) must still record at multiples of every_n_steps, the same numbers.
    x, y = data()

    def trainer(extra):
        stats = make_callback({"name": "layer_stats", "every_n_steps": 3, "rows_per_call": 2})
        t = Trainer(model(), keras.optimizers.SGD(0.1), batch_size=BATCH, epochs=EPOCHS, seed=1,
                    callbacks=[stats, *extra])
        return t, stats

    never, never_stats = trainer([])
    never.fit(x, y)
    # Killed with chunks of 2 steps after step 6; resumed with chunks of a whole epoch (4 steps),
    # whose first chunk then starts with 2 inactive rows.
    killed, _ = trainer([BackupAndRestore(str(tmp_path), save_freq=2), KillAt(6)])
    with pytest.raises(KeyboardInterrupt):
        killed.fit(x, y)
    resumed, resumed_stats = trainer([BackupAndRestore(str(tmp_path))])
    resumed.fit(x, y)
    assert next(c for c in resumed.callbacks if isinstance(c, BackupAndRestore)).restored_step == 6
    steps = sorted(never_stats.frame()["step"].unique())
    assert steps == list(range(0, EPOCHS * N // BATCH, 3))
    a, b = never_stats.frame(), resumed_stats.frame()
    assert sorted(b["step"].unique()) == steps
    np.testing.assert_allclose(b["grad_norm"], a["grad_norm"], rtol=1e-6, equal_nan=True)
    assert_same_state(resumed, never)


def test_what_a_run_computes_is_kept_and_listed(tmp_path):
    # layer_stats records were shown and dropped; deepfit predict wrote an unlisted file into the run.
    # 200 training images, batch 50: 4 steps an epoch, 8 in all; statistics every 2 steps.
    import pandas as pd

    from deepfit.io import verify_manifest
    from deepfit.predictions import predict_run

    cfg = {"data": {"train_size": 200, "validation_size": 100},
           "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 8, "activation": "relu"},
                                {"type": "dense", "units": 10, "activation": "softmax"}]},
           "training": {"epochs": 2, "batch_size": 50, "progress": False,
                        "callbacks": [{"name": "layer_stats", "every_n_steps": 2, "rows_per_call": 1}]}}
    run = df.train(cfg, tmp_path / "run")
    stats = pd.read_parquet(tmp_path / "run" / "layer_stats.parquet")
    assert sorted(stats["step"].unique()) == [0, 2, 4, 6] and set(stats["layer"]) == {"dense", "dense_1"}
    assert "layer_stats.parquet" in verify_manifest(run.dir)
    result = predict_run(run.dir, "valid")
    listed = verify_manifest(run.dir)  # every file still checks out, the new ones included
    assert {"predictions-valid.csv", "figures/reliability-valid.png"} <= set(listed)
    assert result["n"] == 100


def test_validating_a_config_builds_nothing_and_calls_no_schedule_function(monkeypatch):
    # Validation built a Keras optimizer (with variables) and tabulated a user's per-step schedule
    # function over a 1000 x 1000 plan: a million calls before anything ran.
    from deepfit.optim import optimizers
    from deepfit.optim.schedules import register_schedule

    calls = []
    register_schedule("test_counted", lambda step, lr: calls.append(step) or 0.01, per="step")

    class Unbuildable(keras.optimizers.SGD):
        def __init__(self, *args, **kwargs):
            raise AssertionError("validation built the optimizer")

    monkeypatch.setitem(optimizers.OPTIMIZERS, "sgd", Unbuildable)
    cfg = df.load_config({"model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 2}]},
                          "training": {"optimizer": {"name": "sgd", "learning_rate": 0.1}, "schedule": {"name": "test_counted"}}})
    assert calls == [] and cfg.training.schedule == {"name": "test_counted"}
    with pytest.raises(df.ConfigError, match="no argument 'lr_decay'"):
        df.load_config({"model": {"layers": [{"type": "dense", "units": 2}]},
                        "training": {"optimizer": {"name": "sgd", "lr_decay": 0.1}}})


def test_a_schedule_function_that_fails_on_the_plan_leaves_no_run_directory(tmp_path):
    from deepfit.optim.schedules import register_schedule

    register_schedule("test_negative_at_5", lambda step, lr: -1.0 if step == 5 else 0.01, per="step")
    x, y = data()
    cfg = {"data": {"source": "arrays", "validation_size": 16, "scaling": "none"},
           "model": {"input_shape": [5], "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
           "training": {"epochs": 2, "batch_size": 16, "progress": False, "schedule": {"name": "test_negative_at_5"}}}
    with pytest.raises(df.ConfigError, match="returned -1.0 at step 5"):
        df.train(cfg, tmp_path / "run", data=((x, y), (None, None)))
    assert not (tmp_path / "run").exists()


def test_a_shared_program_key_never_hands_over_another_structures_step():
    """Issue 20's design point: ``shared_steps`` reuses a compiled step under its caller's key, correct only
    if that key fixes every constant the step was traced with. The trainer completes the key with the
    model's and optimizer's structure: a caller's key that misses the activation cannot reuse relu's step."""
    x, y = data()

    def make(activation, momentum=0.0):
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation=activation),
                              keras.layers.Dense(3, activation="softmax")])
        return m, keras.optimizers.SGD(0.1, momentum=momentum)

    Trainer(*make("relu"), batch_size=BATCH, program="same key").fit(x, y)  # compiles, keeps its step
    for activation, momentum in [("tanh", 0.0), ("relu", 0.9)]:
        model, opt = make(activation, momentum)
        reused = Trainer(model, opt, batch_size=BATCH, program="same key")
        reused.fit(x, y)
        fresh_model, fresh_opt = make(activation, momentum)
        fresh = Trainer(fresh_model, fresh_opt, batch_size=BATCH)
        fresh.fit(x, y)
        for k in fresh.state.params:
            np.testing.assert_array_equal(np.asarray(reused.state.params[k]), np.asarray(fresh.state.params[k]))
