"""Generated configs (wrong types, unknown keys, huge or negative sizes, odd unicode names
and paths) give a valid run or a DeepfitError: never another exception."""

from __future__ import annotations

import copy
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reliability_fixtures import tiny_arrays, tiny_config

import deepfit as df
from deepfit.config import set_path
from deepfit.errors import DeepfitError
from deepfit.preflight import check_resources, estimate

EXAMPLES = int(os.environ.get("DEEPFIT_HYPOTHESIS_EXAMPLES", "30"))
DATA = tiny_arrays(n_train=300, n_test=50)

PATHS = [
    "seed", "name", "data.validation_size", "data.train_size", "data.scaling", "data.source", "data.path",
    "model.input_shape", "model.input_shape.0", "model.layers", "model.layers.1", "model.layers.1.units",
    "model.layers.1.activation", "model.layers.1.kernel_initializer", "model.layers.1.kernel_regularizer",
    "model.layers.2.rate", "model.layers.0.type", "model.layers.3.units", "training", "training.epochs",
    "training.batch_size", "training.optimizer", "training.optimizer.learning_rate",
    "training.optimizer.momentum", "training.optimizer.name", "training.loss", "training.steps_per_chunk",
    "training.eval_batch_size", "training.callbacks", "training.callbacks.0", "training.schedule",
    "unknown_key", "training.bogus", "model.layers.1.bogus", "data.bogus",
]
ODD = ["\x00", "\ud800", "..", "a/b", "名前", "🙂", " ", "CON", "-", "\n", "ǅ" * 40, "x" * 300]
scalars = st.one_of(
    st.none(), st.booleans(),
    st.sampled_from([0, -1, 1, 2, 3, 7, 10**4, 10**9, 2**31, 2**63, -(2**63), 10**30]),
    st.integers(), st.floats(), st.text(max_size=10), st.sampled_from(ODD),
    st.sampled_from(["relu", "he_normal", "adam", "sgd", "dense", "flatten", "dropout", "l2",
                     "backup_and_restore", "early_stopping", "constant", "standardize", "arrays"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["name", "type", "units", "rate", "save_freq",
                                                             "patience", "l2", "x", "é"]), inner, max_size=3)),
    max_leaves=6,
)
# Plausible values too, so that a good share of the configs is valid and really trains.
plausible = st.one_of(st.integers(-2, 70), st.floats(-0.5, 2.0), st.sampled_from(
    ["relu", "selu", "he_normal", "lecun_normal", "adam", "nadam", "sgd", "standardize", "none", "divide255",
     {"name": "l2", "l2": 0.01}, {"name": "sgd", "learning_rate": 0.1}, {"name": "adam"}, [8, 8], [64],
     {"type": "dense", "units": 3, "activation": "softmax"}, {"type": "batch_norm"}, {"type": "dropout", "rate": 0.3},
     [{"name": "early_stopping", "patience": 0}], [{"name": "backup_and_restore", "save_freq": 2}],
     {"name": "constant"}, "binary_crossentropy"]))
mutations = st.lists(st.tuples(st.sampled_from(PATHS), st.one_of(plausible, values)), min_size=0, max_size=3)
names = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(ODD))


def cheap(cfg) -> bool:
    """Small enough to actually train in a test (otherwise validate and preflight only)."""
    steps = cfg.training.epochs * math.ceil(max(len(DATA[0][0]) - cfg.data.validation_size, 1)
                                            / cfg.training.batch_size)
    sized = estimate(cfg)  # None: not buildable, let train() say why
    return steps <= 60 and (sized is None or sized[0].params <= 200_000)


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("DEEPFIT_HYPOTHESIS_RANDOM") is None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations, names)
def test_generated_configs_run_or_fail_clearly(changes, name):
    tree = tiny_config(epochs=1)
    tree["data"]["validation_size"] = 60
    root = Path(tempfile.mkdtemp(prefix="deepfit-hyp-"))
    try:
        try:
            for path, value in changes:
                set_path(tree, path, copy.deepcopy(value))
            cfg = df.load_config(tree)
            if not cheap(cfg):
                check_resources(cfg, df.load_data(cfg.data, arrays=DATA))
                event("valid, too big to train here: validated and preflighted")
                return
            run = df.train(cfg, out=root / name, data=DATA)
        except DeepfitError as e:
            event(f"refused: {type(e).__name__}")
            assert str(e) and "Traceback" not in str(e)
            return
        event(f"trained: {run.final['status']}")
        assert run.final["status"] in ("completed", "stopped", "diverged")
        assert (run.dir / "manifest.json").is_file()
    finally:
        shutil.rmtree(root, ignore_errors=True)
