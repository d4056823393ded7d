"""Sparse models in training: gradual magnitude pruning inside the compiled step, l1, FTRL with l1."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from reliability_fixtures import tiny_arrays, tiny_config

import deepfit as df
from deepfit.errors import ConfigError
from deepfit.nn.sparsity import magnitude_masks
from deepfit.train.callbacks.pruning import MagnitudePruning
from deepfit.train.events import Callback
from deepfit.train.prune_step import PrunePlan

DATA = tiny_arrays()  # 600 training images after the 100 for validation: 19 steps an epoch at batch 32


def prune_spec(**kw):
    return {"name": "magnitude_pruning", "target": 0.8, "begin_step": 3, "end_step": 30, "frequency": 4, **kw}


class ZeroSets(Callback):
    """The set of zero weights of each kernel after every chunk (steps_per_chunk = 1: after every step)."""

    def __init__(self):
        self.sets: list[tuple[int, dict[str, np.ndarray]]] = []

    def on_chunk_end(self, trainer, chunk):
        self.sets.append((chunk.stop, {k: np.asarray(trainer.state.params[k]) == 0
                                       for k in trainer.state.params if k.endswith("/kernel")}))


def test_plan_follows_the_cubic_schedule_and_prunes_at_its_steps():
    plan = PrunePlan(target=0.9, begin_step=10, end_step=110, frequency=25, initial=0.1)
    for step in (0, 10, 35, 60, 85, 110, 500):
        t = min(max((step - 10) / 100, 0.0), 1.0)
        assert float(plan.sparsity_at(jnp.asarray(step))) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - t) ** 3, abs=1e-6)
    updates = [s for s in range(200) if bool(plan.updates_at(jnp.asarray(s)))]
    assert updates == [10, 35, 60, 85, 110]  # 110 is on the grid; end_step always is an update
    assert [s for s in range(40) if bool(PrunePlan(0.5, 0, 10, 4).updates_at(jnp.asarray(s)))] == [0, 4, 8, 10]


@settings(max_examples=25, deadline=None)
# Fractions in steps of 1/256: exact in float32 and float64, so floor(fraction · n) is the same number in the
# compiled float32 schedule and in numpy's float64 (0.95 · 60 is 57 in one and 56.99... in the other).
@given(st.integers(1, 60), st.integers(1, 60), st.integers(0, 243).map(lambda k: k / 256),
       st.sampled_from(["layer", "global"]), st.integers(0, 2**31 - 1))
def test_compiled_masks_equal_the_numpy_reference(rows, cols, fraction, scope, seed):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(rows, cols)).astype(np.float32), rng.normal(size=(cols, 3)).astype(np.float32)]
    plan = PrunePlan(target=0.95, begin_step=0, end_step=1, frequency=1, scope=scope)
    got = plan.masks([jnp.asarray(w) for w in weights], jnp.asarray(fraction, jnp.float32))
    want = magnitude_masks(weights, fraction, scope)  # distinct values: no ties to break
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), w)


def train(tmp_path, name, callbacks, **training):
    cfg = tiny_config(callbacks=callbacks, **training)
    return df.train(cfg, data=DATA, out=tmp_path / name)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_pruning_reaches_the_target_exactly_and_the_run_record_says_so(tmp_path, scope):
    run = train(tmp_path, scope, [prune_spec(scope=scope)], epochs=3)
    sizes = {"dense": 64 * 16, "dense_1": 16 * 3}
    layers = run.final["sparsity"]["layers"]
    if scope == "layer":
        for name, n in sizes.items():
            assert layers[name]["zeros"] == math.floor(0.8 * n)
    else:
        assert run.final["sparsity"]["zeros"] == math.floor(0.8 * sum(sizes.values()))
    kernels = [np.asarray(layer.kernel.value) for layer in run.model.layers if hasattr(layer, "kernel")]
    assert sum(int((k == 0).sum()) for k in kernels) == run.final["sparsity"]["zeros"]  # the saved model's zeros
    assert run.history["sparsity"].iloc[-1] == pytest.approx(run.final["sparsity"]["fraction"])
    assert (tmp_path / scope / "metrics.csv").read_text().splitlines()[0].endswith("sparsity")


def test_a_pruned_weight_stays_zero_and_the_mask_only_grows(tmp_path):
    probe = ZeroSets()
    df.train(tiny_config(callbacks=[prune_spec()], epochs=3, steps_per_chunk=1), data=DATA, save=False,
             callbacks=[probe])
    before_begin = [z for stop, z in probe.sets if stop <= 3]
    assert all(not m.any() for z in before_begin for m in z.values())  # nothing pruned before begin_step
    after = [z for stop, z in probe.sets if stop > 3]
    for earlier, later in zip(after, after[1:]):
        for key in earlier:
            assert np.all(later[key][earlier[key]])  # every zero stays zero
    final = [z for stop, z in probe.sets if stop > 31]
    for z in final[1:]:  # after end_step the mask is fixed
        for key in z:
            np.testing.assert_array_equal(z[key], final[0][key])


def test_pruning_resumed_is_bit_identical_to_pruning_never_stopped(tmp_path):
    straight = train(tmp_path, "straight", [prune_spec(end_step=45)], epochs=4, steps_per_chunk=7)
    train(tmp_path, "resumed", [prune_spec(end_step=45)], epochs=2, steps_per_chunk=7)
    resumed = df.train(tiny_config(callbacks=[prune_spec(end_step=45)], epochs=4, steps_per_chunk=7), data=DATA,
                       out=tmp_path / "resumed", resume=True)
    assert resumed.resume_note and "resumed" in resumed.resume_note
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))
    assert (tmp_path / "straight" / "metrics.csv").read_bytes() == (tmp_path / "resumed" / "metrics.csv").read_bytes()


def test_pruning_names_its_mistakes():
    with pytest.raises(ConfigError, match="initial <= target < 1"):
        df.load_config(tiny_config(callbacks=[prune_spec(target=1.0)]))
    with pytest.raises(ConfigError, match="begin_step <= end_step"):
        df.load_config(tiny_config(callbacks=[prune_spec(begin_step=40, end_step=30)]))
    with pytest.raises(ConfigError, match="no Dense layer named 'dense_9'"):
        df.train(tiny_config(callbacks=[prune_spec(layers=["dense_9"])]), data=DATA, save=False)
    with pytest.raises(ValueError, match="own compiled step"):  # the trainer's rule: one step factory
        df.train(tiny_config(callbacks=[prune_spec(), {"name": "layer_stats"}]), data=DATA, save=False)


def test_only_the_named_layers_are_pruned():
    run = df.train(tiny_config(callbacks=[prune_spec(layers=["dense"])], epochs=2), data=DATA, save=False)
    assert run.final["sparsity"]["layers"]["dense"]["zeros"] == math.floor(0.8 * 64 * 16)
    assert run.final["sparsity"]["layers"]["dense_1"]["zeros"] == 0
    assert [c for c in run.trainer.callbacks if isinstance(c, MagnitudePruning)][0].targets == ("1.dense/kernel",)  # the state key: position and path


def test_pruning_in_a_vmapped_group_matches_each_run_alone():
    from deepfit.run import train_group

    cfgs = [df.load_config(tiny_config(callbacks=[prune_spec()], epochs=2), {"seed": s}) for s in (0, 1)]
    grouped = train_group(cfgs, [None, None], save=False, data=DATA)
    for cfg, member in zip(cfgs, grouped):
        alone = df.train(cfg, data=DATA, save=False)
        assert member.final["sparsity"]["layers"] == alone.final["sparsity"]["layers"]  # the same weights pruned
        for a, b in zip(member.model.get_weights(), alone.model.get_weights()):
            np.testing.assert_allclose(a, b, atol=2e-3)  # vmap reorders sums (tests/test_groups.py's tolerance)
