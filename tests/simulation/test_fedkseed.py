"""FedKSeed's defining properties (arXiv:2312.06353): replay, aggregation, sync, Pro sampling, ZO estimate."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

from fedledger import codec
from fedledger.aggregation import fedkseed as fk
from fedledger.aggregation import mezo, sync
from fedledger.aggregation.registry import get_strategy
from fedledger.server.gateway.blobstore import keccak256
from fedledger.simulation.tasks import ClientData, Split, TrainSettings
from fedledger.simulation.tasks.charlm import GPTConfig, TinyGPT, mean_loss

SMALL = GPTConfig(layers=1, width=16, heads=2, context=16)


def small_model(seed: int = 0) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(SMALL).eval()


def small_data(seed: int = 0, n: int = 64) -> ClientData:
    rng = np.random.default_rng(seed)
    rows = rng.integers(1, SMALL.vocab, size=(n, SMALL.context + 1))
    split = Split(rows[:, :-1].copy(), rows[:, 1:].copy())
    return ClientData(split, split)


def random_update(rng: np.random.Generator, k: int, n: int) -> fk.Arrays:
    return OrderedDict(
        [(fk.INDEX, rng.integers(0, k, size=n).astype(np.int32)), (fk.GRAD, rng.normal(size=n).astype(np.float32))]
    )


def max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_replaying_the_pairs_rebuilds_the_model_trained_in_place() -> None:
    config = fk.FedKSeedConfig(k=64, steps=40, lr=1e-3, batch_size=8)
    seeds = fk.candidate_seeds(7, config.k)
    trained = small_model()
    update, metrics = fk.local_train(trained, small_data(), seeds, None, config, rng_seed=3)
    assert metrics["steps"] == len(update[fk.INDEX]) == 40
    assert len(set(update[fk.INDEX].tolist())) > 1  # several seeds, some perhaps repeated

    replayed = mezo.replay(
        small_model(), zip(seeds[update[fk.INDEX]], update[fk.GRAD].tolist(), strict=True), config.lr
    )
    assert max_diff(replayed, trained) < 1e-5
    assert max_diff(small_model(), trained) > 1e-4  # the steps did move the model

    accumulator = mezo.Accumulator(small_model(), seeds, config.lr)  # the per-seed sums, in float64
    accumulator.move_to(fk.seed_sums(update, config.k))
    assert max_diff(accumulator.load_into(small_model()), trained) < 1e-5


def test_tuning_biases_moves_only_biases_and_layer_norms_and_the_state_rebuilds_the_model() -> None:
    from fedledger.simulation.tasks import get_task

    task = get_task("charcode")
    plugin = get_strategy("fedkseed", "tune=bias,steps=20,k=64")
    state = plugin.initial_state(task, 0)
    update, _ = plugin.client_update(task, 0, state, task.client_data(0, 6, "iid", 0), TrainSettings(seed=5))
    after = plugin.build(task, 0, plugin.aggregate_offline(state, [(update, 1)]))
    before = task.build_model(0)
    moved = {n for (n, a), (_, b) in zip(after.named_parameters(), before.named_parameters(), strict=True) if
             not torch.equal(a, b)}  # fmt: skip
    assert moved and all(fk.tuned(name, "bias") for name in moved)
    assert "token.weight" not in moved and any("layernorm" in name for name in moved)
    assert fk.tuned("blocks.0.qkv.weight", "all") and not fk.tuned("blocks.0.qkv.weight", "bias")


def test_charcode_clients_hold_their_own_modules_and_the_test_set_others() -> None:
    from fedledger.simulation.tasks import get_task
    from fedledger.simulation.tasks.charlm import CODE_MODULES, HELD_OUT_MODULES, _module_text

    task, charlm = get_task("charcode"), get_task("charlm")
    assert max_diff(task.build_model(0), charlm.build_model(0)) == 0  # one pretrained base
    dealt = [set(task.modules_of(k, 6)) for k in range(6)]
    assert set().union(*dealt) == set(CODE_MODULES[:-HELD_OUT_MODULES]) and sum(map(len, dealt)) == 30
    shares = [task.client_data(k, 6, "iid", 0) for k in range(6)]
    assert all(len(d.train) > 1_000 and len(d.val) > 250 for d in shares)
    test = {r.tobytes() for r in task.test_data(0).x}
    seen = {r.tobytes() for d in shares for r in np.concatenate([d.train.x, d.val.x])}
    assert len(test) == 256 and len(test & seen) < 5  # only boilerplate windows (licence lines) recur
    assert "def " in _module_text(CODE_MODULES[-HELD_OUT_MODULES:])


def test_a_zo_step_restores_theta_exactly_before_updating() -> None:
    model = small_model()
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.from_numpy(small_data().train.x[:4])
    step = mezo.zo_step(model, lambda m: m(x).float().mean() * float("nan"), seed=5, eps=1e-3, lr=1.0)
    assert step.grad is None  # a NaN loss skips the step ...
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # ... bit-exactly


def test_server_aggregation_is_the_weighted_sum_of_the_client_pairs() -> None:
    rng = np.random.default_rng(0)
    k = 32
    previous = fk.initial_state(b"\x01" * 32, 11, k, pro=True)
    previous[fk.GRADS] = rng.normal(size=k).astype(np.float32)
    updates = [(random_update(rng, k, 20), 30), (random_update(rng, k, 5), 10), (random_update(rng, k, 9), 60)]
    state = fk.aggregate(previous, updates, equal_weight=False, clip=1.0)

    expected = previous[fk.GRADS].astype(np.float64)
    abs_sum, count = np.zeros(k), np.ones(k, np.int64)
    for update, n in updates:
        for j, g in zip(update[fk.INDEX], update[fk.GRAD], strict=True):
            expected[j] += n / 100 * float(g)
            abs_sum[j] += min(abs(float(g)), 1.0)
            count[j] += 1
    assert state[fk.GRADS].dtype == np.float32  # the paper's K x 4 bytes
    assert np.allclose(state[fk.GRADS], expected, rtol=1e-6, atol=1e-6)
    assert np.allclose(state[fk.ABS_SUM], abs_sum, rtol=1e-6) and np.array_equal(state[fk.COUNT], count)
    assert np.array_equal(previous[fk.COUNT], np.ones(k))  # the previous state is not modified

    equal = fk.aggregate(previous, updates, equal_weight=True, clip=1.0)
    manual = previous[fk.GRADS] + sum(fk.seed_sums(u, k) / 3 for u, _ in updates)
    assert np.allclose(equal[fk.GRADS], manual, rtol=1e-6, atol=1e-6)
    again = fk.aggregate(previous, updates, equal_weight=False, clip=1.0)
    assert all(np.array_equal(state[name], again[name]) for name in state)  # bit for bit: every party agrees


def test_a_client_that_skipped_rounds_syncs_to_exactly_the_server_state_and_model() -> None:
    plugin = get_strategy("fedkseed", "k=128,steps=50,lr=0.001")
    rng = np.random.default_rng(1)
    server_cache, client_cache = fk.ReplayCache(), fk.ReplayCache()
    states = [fk.initial_state(keccak256(b"theta0"), 99, 128, pro=False)]
    for _ in range(3):
        states.append(
            plugin.aggregate_offline(states[-1], [(random_update(rng, 128, 50), 1), (random_update(rng, 128, 50), 2)])
        )
    # The client synced at round 0, then missed three rounds: one payload, only the changed entries.
    payload = sync.diff(states[0], states[-1])
    synced = sync.patch(states[0], payload)
    assert keccak256(codec.encode(synced)) == keccak256(codec.encode(states[-1]))
    changed = int(np.count_nonzero(states[0][fk.GRADS] != states[-1][fk.GRADS]))
    assert payload[fk.GRADS + sync.VALUES].shape == (changed,) and changed <= 128

    theta0 = small_model()
    client_cache.model(small_model(), states[0], 1e-3)  # what the client built at round 0
    client = client_cache.model(small_model(), synced, 1e-3)
    assert client_cache.replayed == changed  # replays only what changed, at most K
    for state in states[1:]:
        server = server_cache.model(small_model(), state, 1e-3)  # the server moved round by round
    assert max_diff(client, server) <= 1e-6
    assert max_diff(client, theta0) > 1e-4


def test_sync_payloads_are_checked() -> None:
    state = fk.initial_state(b"\x02" * 32, 5, 16, pro=False)
    with pytest.raises(sync.SyncError, match=r"one \.mask and one \.values"):
        sync.patch(state, OrderedDict([(fk.GRADS + sync.MASK, np.packbits(np.ones(16, bool)))]))
    bad = OrderedDict([(fk.GRADS + sync.MASK, np.packbits(np.ones(16, bool))), (fk.GRADS + sync.VALUES, np.ones(3))])
    with pytest.raises(sync.SyncError, match="values for 16 changes"):
        sync.patch(state, bad)
    assert sync.patch(state, sync.diff(state, state)) == state


def test_pro_probabilities_match_a_hand_computed_example() -> None:
    # Histories [0, 2, -4], [0], [0, 2000] with c = 1000: means of |clip| are 2, 0 and 500.
    state = fk.initial_state(b"\x00" * 32, 1, 3, pro=True)
    update = OrderedDict([(fk.INDEX, np.array([0, 0, 2], np.int32)), (fk.GRAD, np.array([2, -4, 2000], np.float32))])
    state = fk.aggregate(state, [(update, 1)], equal_weight=False, clip=1000.0)
    probabilities = fk.seed_probabilities(state[fk.ABS_SUM], state[fk.COUNT])
    normed = np.array([2 / (500 + 1e-10), 0.0, 500 / (500 + 1e-10)])
    hand = np.exp(normed) / np.exp(normed).sum()
    assert np.allclose(probabilities, hand, atol=1e-12)
    assert math.isclose(probabilities[2] / probabilities[1], math.e, rel_tol=1e-9)
    uniform = fk.seed_probabilities(np.zeros(4, np.float32), np.ones(4, np.int32))  # no history yet
    assert np.allclose(uniform, 0.25)


def test_the_zo_estimate_points_along_the_true_gradient() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x, y = torch.randn(32, 10, dtype=torch.float64), torch.randint(0, 3, (32,))

    def loss_of(m: torch.nn.Module) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(m(x), y)

    model.zero_grad()
    loss_of(model).backward()
    true = torch.cat([p.grad.flatten() for p in model.parameters()])
    estimates, cosines = [], []
    for seed in range(1, 401):
        step = mezo.zo_step(model, loss_of, seed, eps=1e-4, lr=0.0)  # lr 0: estimate only
        z = torch.cat([t.flatten() for t in mezo.perturbation(mezo.trainable(model), seed)])
        estimate = step.grad * z
        estimates.append(estimate)
        cosines.append(float(torch.nn.functional.cosine_similarity(estimate, true, dim=0)))
    assert np.mean(cosines) > 0.05  # about sqrt(2 / (pi d)) for d = 115: each estimate leans the right way
    mean_estimate = torch.stack(estimates).mean(dim=0)
    assert float(torch.nn.functional.cosine_similarity(mean_estimate, true, dim=0)) > 0.8


def test_bad_updates_are_refused_with_a_reason() -> None:
    plugin = get_strategy("fedkseed", "k=16,steps=4")
    state = fk.initial_state(b"\x00" * 32, 1, 16, pro=False)
    good = OrderedDict([(fk.INDEX, np.array([1, 2], np.int32)), (fk.GRAD, np.array([0.5, -1], np.float32))])
    plugin.check_update(state, good)
    cases = {
        "out of range": OrderedDict([(fk.INDEX, np.array([16], np.int32)), (fk.GRAD, np.array([1], np.float32))]),
        "finite": OrderedDict([(fk.INDEX, np.array([1], np.int32)), (fk.GRAD, np.array([np.nan], np.float32))]),
        "exceed": OrderedDict([(fk.INDEX, np.zeros(5, np.int32)), (fk.GRAD, np.zeros(5, np.float32))]),
        "holds": OrderedDict([("weights", np.zeros(3))]),
    }
    for reason, update in cases.items():
        with pytest.raises(ValueError, match=reason):
            plugin.check_update(state, update)
    with pytest.raises(ValueError, match="bad fedkseed option"):
        get_strategy("fedkseed", "k=0")
    with pytest.raises(ValueError, match="takes no options"):
        get_strategy("fedavg", "k=3")


@pytest.mark.slow
def test_held_out_loss_falls_over_three_federated_rounds() -> None:
    from fedledger.simulation.tasks import get_task

    task = get_task("charlm")
    plugin = get_strategy("fedkseed", "steps=100")
    test = task.test_data(0)
    state = plugin.initial_state(task, 0)
    start = mean_loss(plugin.build(task, 0, state), test)
    losses = []
    for round_ in range(3):
        updates = []
        for client in range(2):
            data = task.client_data(client, 10, "iid", 0)
            update, _ = plugin.client_update(task, 0, state, data, TrainSettings(seed=100 * round_ + client))
            updates.append((update, len(data.train)))
        state = plugin.aggregate_offline(state, updates)
        losses.append(mean_loss(plugin.build(task, 0, state), test))
    print(f"held-out loss {start:.5f} -> {' -> '.join(f'{v:.5f}' for v in losses)}")
    assert losses[-1] < start
