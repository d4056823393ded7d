"""Task splits (data.classes, positive_class / negative_class), against the notebook's split_dataset."""

import numpy as np
import pytest

import deepfit as df
from deepfit.data.prepare import prepare
from deepfit.data.sources import RawData


def notebook_split(x, y):
    """The notebook's split_dataset (cell 40), verbatim but for names."""
    y_5_or_6 = (y == 5) | (y == 6)
    y_a = y[~y_5_or_6].copy()
    y_a[y_a > 6] -= 2
    y_b = (y[y_5_or_6] == 6).astype(np.float32)
    return (x[~y_5_or_6], y_a), (x[y_5_or_6], y_b)


@pytest.fixture
def raw():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 400).astype(np.uint8)
    x = rng.integers(0, 256, (400, 3, 2)).astype(np.uint8)
    yt = rng.integers(0, 10, 100).astype(np.uint8)
    xt = rng.integers(0, 256, (100, 3, 2)).astype(np.uint8)
    return RawData(x, y, xt, yt)


def data_cfg(**kw):
    return df.load_config({"data": {"source": "arrays", "validation_size": 50, "scaling": "none", **kw},
                           "model": {"layers": [{"type": "flatten"}]}}).data


def test_task_a_matches_the_notebook(raw):
    ds = prepare(raw, data_cfg(classes=[0, 1, 2, 3, 4, 7, 8, 9]))
    for (x, y), (xs, ys) in [((raw.x_train[50:], raw.y_train[50:]), (ds.x_train, ds.y_train)),
                             ((raw.x_train[:50], raw.y_train[:50]), (ds.x_valid, ds.y_valid)),
                             ((raw.x_test, raw.y_test), (ds.x_test, ds.y_test))]:
        (xa, ya), _ = notebook_split(x, y)
        np.testing.assert_array_equal(xs, xa.astype(np.float32))
        np.testing.assert_array_equal(ys, ya)
    assert ds.num_classes == 8


def test_task_b_matches_the_notebook_with_the_first_n_task_images(raw):
    ds = prepare(raw, data_cfg(positive_class=6, negative_class=5, train_size=7))
    _, (xb, yb) = notebook_split(raw.x_train[50:], raw.y_train[50:])
    np.testing.assert_array_equal(ds.x_train, xb[:7].astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, yb[:7].astype(np.int32))
    _, (xv, yv) = notebook_split(raw.x_train[:50], raw.y_train[:50])
    np.testing.assert_array_equal(ds.y_valid, yv)  # validation filtered, not limited
    _, (_, yt) = notebook_split(raw.x_test, raw.y_test)
    np.testing.assert_array_equal(ds.y_test, yt)


def test_classes_are_relabelled_in_the_order_listed(raw):
    ds = prepare(raw, data_cfg(classes=[9, 2]))
    y = raw.y_train[50:]
    np.testing.assert_array_equal(ds.y_train, np.where(y[(y == 9) | (y == 2)] == 9, 0, 1))


def test_negative_class_may_be_a_list(raw):
    ds = prepare(raw, data_cfg(positive_class=0, negative_class=[1, 2]))
    y = raw.y_train[50:]
    np.testing.assert_array_equal(ds.y_train, (y[np.isin(y, [0, 1, 2])] == 0).astype(int))


@pytest.mark.parametrize("kw, fragment", [
    ({"classes": [1, 2], "positive_class": 1, "negative_class": 2}, "not both"),
    ({"positive_class": 1}, "needs both"),
    ({"classes": [1, 1]}, "distinct"),
    ({"positive_class": 3, "negative_class": [3, 4]}, "also a negative_class"),
    ({"classes": []}, "classes"),
])
def test_bad_task_split_is_a_config_error(kw, fragment):
    with pytest.raises(df.ConfigError, match=fragment):
        data_cfg(**kw)


def test_a_task_with_no_training_image_is_a_data_error(raw):
    with pytest.raises(df.DataError, match="keeps no training image"):
        prepare(raw, data_cfg(classes=[42]))


def test_bundled_task_sizes():
    # The notebook (official file order) has 43,986 task A training images (cell 41). The bundled
    # copy holds the same images in another order (see its README), so its 55,000 training images
    # after the validation split hold another mix: count them from the raw labels instead.
    from deepfit.data.sources import load_bundled

    y = load_bundled().y_train[5000:]
    a = df.load_data({"classes": [0, 1, 2, 3, 4, 7, 8, 9]})
    b = df.load_data({"positive_class": 6, "negative_class": 5, "train_size": 200})
    assert len(a.y_train) == int(np.sum((y != 5) & (y != 6)))
    assert b.x_train.shape == (200, 28, 28)
    first = y[(y == 5) | (y == 6)][:200]
    np.testing.assert_array_equal(b.y_train, (first == 6).astype(int))
