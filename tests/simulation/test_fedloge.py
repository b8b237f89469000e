"""FedLoGe's defining properties (arXiv:2401.08977): SSE-C, frozen classifier, private heads, GLA-FR, long tail."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fedledger.aggregation import fedloge as fl
from fedledger.aggregation import ssec
from fedledger.aggregation.registry import get_strategy
from fedledger.simulation.longtail import dirichlet_split, local_test_sizes, long_tail_counts, shot_split
from fedledger.simulation.tasks import TrainSettings, get_task
from fedledger.simulation.tasks.ltdigits import long_tail


def test_the_simplex_etf_before_pruning_has_unit_norms_and_equal_angles() -> None:
    etf = ssec.simplex_etf(32, 10, np.random.default_rng(0))
    assert np.allclose(np.linalg.norm(etf, axis=0), 1.0, atol=1e-6)
    cosines = etf.T @ etf
    off = cosines[~np.eye(10, dtype=bool)]
    assert np.allclose(off, -1 / 9, atol=1e-6)
    with pytest.raises(ValueError, match="at least 10 feature dimensions"):
        ssec.simplex_etf(8, 10, np.random.default_rng(0))


def test_pruning_zeroes_exactly_floor_beta_d_k_entries_and_tuning_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDLEDGER_CACHE", str(tmp_path))
    pruned = ssec.prune(ssec.simplex_etf(32, 10, np.random.default_rng(1)), 0.6, np.random.default_rng(2))
    assert int((pruned == 0).sum()) == math.floor(0.6 * 32 * 10) == 192
    tuned = ssec.sse_c(32, 10, 0.6, seed=5, steps=300)
    assert tuned.shape == (10, 32) and int((tuned == 0).sum()) == 192
    norms = np.linalg.norm(tuned, axis=1)
    assert np.all(norms < 0.9)  # pulled from 1 towards the 0.1 target
    ssec.sse_c.cache_clear()
    assert np.array_equal(ssec.sse_c(32, 10, 0.6, seed=5, steps=300), tuned)  # from disk: the same bits
    next(tmp_path.glob("torch*/sse-c-*.npy")).unlink()
    ssec.sse_c.cache_clear()
    assert np.array_equal(ssec.sse_c(32, 10, 0.6, seed=5, steps=300), tuned)  # rebuilt from the seed: the same


def _clients(n: int = 4) -> tuple[object, list, int]:
    task = get_task("ltdigits")
    return task, [task.client_data(i, n, "iid", 3) for i in range(n)], n


def test_federated_rounds_leave_the_ssec_bit_identical_and_the_local_heads_private() -> None:
    task, datas, n = _clients()
    plugin = get_strategy("fedloge", "ssec_steps=200")
    state = plugin.initial_state(task, 3)
    model = plugin.build(task, 3, state).model
    before = plugin.ssec(model).copy()
    privates: list[dict] = [{} for _ in range(n)]
    for round_ in range(2):
        updates = []
        for client, data in enumerate(datas):
            update, _ = plugin.client_update(
                task, 3, state, data, TrainSettings(seed=10 * round_ + client), privates[client]
            )
            assert list(update) == list(state)  # backbone (with batch-norm buffers) and g_aux ...
            local = privates[client][fl.LOCAL_HEAD]["weight"]
            assert not any(
                v.shape == local.shape and np.allclose(v, local) for v in update.values()
            )  # ... no local head
            assert all(k.startswith(("backbone.", "head.")) for k in update)
            updates.append((update, len(data.train)))
        state = plugin.aggregate_offline(None, updates)
    assert np.array_equal(plugin.ssec(plugin.build(task, 3, state).model), before)
    assert not np.array_equal(state["head.weight"], plugin.initial_state(task, 3)["head.weight"])  # g_aux trained
    assert any(k.endswith("running_mean") for k in state)  # buffers are averaged too


def test_gla_fr_matches_a_hand_computed_example() -> None:
    aux = fl._head(np.array([[3.0, 4.0], [1.0, 0.0]], np.float32), np.array([0.1, 0.2], np.float32))
    local = fl._head(np.array([[2.0, 0.0], [0.0, 0.5]], np.float32), np.array([0.0, 0.0], np.float32))
    generic = fl.realigned_generic(aux.weight).detach().numpy()
    assert np.allclose(generic, [[1.02, 1.36], [1.7, 0.0]], atol=1e-6)
    transferred = fl.norm_transfer(aux.weight, local.weight).detach().numpy()
    assert np.allclose(transferred, [[6.0, 8.0], [0.5, 0.0]], atol=1e-6)
    h = torch.tensor([[1.0, 1.0]])
    logits = fl.personalised_logits(h, aux, local).detach().numpy()
    assert np.allclose(logits, [[2 + 14 + 0.1, 0.5 + 0.5 + 0.2]], atol=1e-6)
    masked = fl.personalised_logits(h, aux, local, np.array([True, False])).detach().numpy()
    assert masked[0, 0] == pytest.approx(16.1) and masked[0, 1] == -np.inf


def test_the_long_tail_follows_the_formula() -> None:
    assert long_tail_counts(143, 10, 0.1) == [math.floor(143 * 0.1 ** (c / 9)) for c in range(10)]
    assert long_tail_counts(143, 10, 0.1)[0] == 143 and long_tail_counts(143, 10, 0.1)[-1] == 14
    pool, shares, matrix = long_tail(3, 4, 0.5)
    counts = np.bincount(pool.y, minlength=10)
    assert counts.tolist() == long_tail_counts(int(counts[0]), 10, 0.1)
    assert sorted(np.concatenate(shares).tolist()) == list(range(len(pool.y)))  # a partition of the pool
    assert np.array_equal(matrix.sum(axis=0), counts)
    with pytest.raises(ValueError, match="imbalance factor"):
        long_tail_counts(10, 10, 0.0)
    with pytest.raises(ValueError, match="could not give"):
        dirichlet_split(np.zeros(3, np.int64), 4, 0.5, np.random.default_rng(0))


def test_local_test_sets_mirror_each_clients_labels() -> None:
    task, datas, n = _clients()
    _, _, matrix = long_tail(3, n, 0.5)
    test = task.test_data(3)
    sizes = local_test_sizes(matrix, len(test))
    available = np.bincount(test.y, minlength=10)
    for client, data in enumerate(datas):
        assert data.test is not None  # int(n_kc / N * n_test), capped by the class's test samples
        assert np.bincount(data.test.y, minlength=10).tolist() == np.minimum(sizes[client], available).tolist()
        assert set(data.test.y.tolist()) <= set(np.flatnonzero(matrix[client]).tolist())


def test_shot_split_cuts_at_75_and_95_percent() -> None:
    split = shot_split(np.array([5, 30, 50, 10, 5]))  # sorted 50 30 10 5 5: cumulative 50 80 90 95 100
    assert split == {"head": [2, 1], "middle": [3, 0], "tail": [4]}


def test_fedloge_learns_a_generic_and_personalised_model() -> None:
    task, datas, n = _clients()
    plugin = get_strategy("fedloge")
    state, privates = plugin.initial_state(task, 3), [{} for _ in range(n)]
    for round_ in range(8):
        updates = []
        for client, data in enumerate(datas):
            update, _ = plugin.client_update(
                task, 3, state, data, TrainSettings(seed=10 * round_ + client), privates[client]
            )
            updates.append((update, len(data.train)))
        state = plugin.aggregate_offline(None, updates)
    test = task.test_data(3)
    model = plugin.build(task, 3, state)
    generic = task.evaluate(model, test)["accuracy"]
    extra = plugin.extra_metrics(task, model, test)
    personal = np.mean(
        [
            plugin.client_report(task, 3, state, d, p)["personalized_accuracy"]
            for d, p in zip(datas, privates, strict=True)
        ]
    )
    print(
        f"generic {generic:.3f} (ssec {extra['accuracy_ssec']:.3f}, aux {extra['accuracy_aux']:.3f}),",
        f"personalised {personal:.3f}",
    )
    assert generic > 0.5 and personal > 0.8
