"""The attack suite: each update attack transforms what it should, each voter attack votes as defined."""

from __future__ import annotations

import math
from collections import OrderedDict
from statistics import NormalDist

import numpy as np
import pytest

from fedledger.simulation.attacks import (
    UPDATE_ATTACKS,
    VOTER_ATTACKS,
    PoisonContext,
    alie_update,
    alie_z,
    choose_attackers,
    parse_attack,
    parse_voter_attack,
)
from fedledger.simulation.tasks import get_task

GLOBAL = OrderedDict([("w", np.array([1.0, 2.0, -1.0], dtype=np.float32)), ("n", np.array(7, dtype=np.int64))])
TRAINED = OrderedDict([("w", np.array([2.0, 1.0, 0.0], dtype=np.float32)), ("n", np.array(9, dtype=np.int64))])


def context(seed: int = 0, updates: list[OrderedDict[str, np.ndarray]] | None = None) -> PoisonContext:
    return PoisonContext(np.random.default_rng(seed), lambda: updates or [], num_clients=10, num_attackers=4)


def test_scaling_attacks_move_the_global_model_by_a_factor_of_the_update() -> None:
    scaled = parse_attack("scale:-10").poison_update(GLOBAL, TRAINED)
    assert np.allclose(scaled["w"], [1 - 10, 2 + 10, -1 - 10]) and scaled["w"].dtype == np.float32
    assert int(scaled["n"]) == 9  # counters are not scaled
    flipped = parse_attack("sign_flip").poison_update(GLOBAL, TRAINED)
    assert np.allclose(flipped["w"], 2 * GLOBAL["w"] - TRAINED["w"])
    assert np.allclose(flipped["w"], parse_attack("scale:-1").poison_update(GLOBAL, TRAINED)["w"])
    free = parse_attack("free_ride").poison_update(GLOBAL, TRAINED)
    assert np.array_equal(free["w"], GLOBAL["w"])  # the global model sent back
    assert str(parse_attack("scale:0.5")) == "scale:0.5" and str(parse_attack("sign_flip")) == "sign_flip"


def test_partial_updates_are_poisoned_over_what_they_carry() -> None:
    partial = OrderedDict([("w", TRAINED["w"])])
    assert list(parse_attack("sign_flip").poison_update(GLOBAL, partial)) == ["w"]


def test_noise_adds_gaussian_noise_of_the_given_std() -> None:
    big_global = OrderedDict([("w", np.zeros(20_000, dtype=np.float32))])
    trained = OrderedDict([("w", np.full(20_000, 0.5, dtype=np.float32))])
    noisy = parse_attack("noise:0.3").poison_update(big_global, trained, context(seed=1))
    noise = noisy["w"] - trained["w"]
    assert abs(noise.std() - 0.3) < 0.01 and abs(noise.mean()) < 0.01 and noisy["w"].dtype == np.float32
    again = parse_attack("noise:0.3").poison_update(big_global, trained, context(seed=1))
    assert np.array_equal(noisy["w"], again["w"])  # seeded per run, round and client
    with pytest.raises(ValueError, match="random generator"):
        parse_attack("noise:0.3").poison_update(big_global, trained)


@pytest.mark.parametrize(("clients", "attackers"), [(10, 2), (10, 4), (50, 10), (10, 1)])
def test_alie_z_is_the_papers(clients: int, attackers: int) -> None:
    s = math.floor(clients / 2 + 1) - attackers
    assert alie_z(clients, attackers) == pytest.approx(NormalDist().inv_cdf((clients - s) / clients))
    assert alie_z(10, 2) == pytest.approx(0.2533, abs=1e-4)  # s = 4: Phi^-1(0.6)
    assert alie_z(10, 4) == pytest.approx(0.8416, abs=1e-4)  # s = 2: Phi^-1(0.8)


def test_alie_sends_mean_minus_z_std_of_the_attackers_honest_updates() -> None:
    honest = [
        OrderedDict([("w", np.array([1.0, 0.0], dtype=np.float32)), ("n", np.array(3))]),
        OrderedDict([("w", np.array([3.0, 0.0], dtype=np.float32)), ("n", np.array(3))]),
        OrderedDict([("w", np.array([2.0, 6.0], dtype=np.float32)), ("n", np.array(3))]),
    ]
    z = alie_z(10, 4)
    expected = np.array([2.0 - z * np.std([1, 3, 2]), 2.0 - z * np.std([0, 0, 6])])
    sent = parse_attack("alie").poison_update(GLOBAL, TRAINED, context(updates=honest))
    assert np.allclose(sent["w"], expected, atol=1e-6) and int(sent["n"]) == 3
    assert np.allclose(alie_update(honest, 0.0)["w"], [2.0, 2.0])  # z = 0: the plain mean
    with pytest.raises(ValueError):
        alie_z(10, 10)


def test_label_flip_poisons_the_training_labels_only() -> None:
    data = get_task("digits").client_data(0, 2, "iid", 0)
    flipped = parse_attack("label_flip").poison_data(data, 10)
    assert np.array_equal(flipped.train.y, 9 - data.train.y) and flipped.val is data.val
    assert parse_attack("label_flip").poison_update(GLOBAL, TRAINED) is TRAINED
    assert parse_attack("silent").silent and not parse_attack("none").silent
    assert parse_attack("none").poison_update(GLOBAL, TRAINED) is TRAINED


@pytest.mark.parametrize("bad", ["scale", "scale:x", "noise:", "noise:abc", "noise:-1", "noise:0", "flip", ""])
def test_bad_attacks_name_the_accepted_values(bad: str) -> None:
    with pytest.raises(ValueError, match=r"(needs|use one of)") as info:
        parse_attack(bad)
    message = str(info.value)
    assert "use one of" not in message or all(name in message for name in UPDATE_ATTACKS)


def test_voter_attacks_vote_as_defined() -> None:
    honest, judged, fellows = 0b01101, 0b11111, 0b10010
    rng = np.random.default_rng(0)
    assert parse_voter_attack("honest").bits(honest, judged, fellows, rng) == honest
    assert parse_voter_attack("invert").bits(honest, judged, fellows, rng) == 0b10010
    assert parse_voter_attack("accept_all").bits(honest, judged, fellows, rng) == judged
    assert parse_voter_attack("collude").bits(honest, judged, fellows, rng) == fellows  # fellows in, the honest out
    hidden = parse_voter_attack("no_reveal")
    assert hidden.bits(honest, judged, fellows, rng) == honest and not hidden.reveals
    assert parse_voter_attack("honest").reveals
    # only judged items carry a bit: an item with nothing committed stays 0 whatever the attack
    assert parse_voter_attack("accept_all").bits(0, 0b00111, 0, rng) == 0b00111
    assert parse_voter_attack("invert").bits(0b11111, 0b00111, 0, rng) == 0


def test_random_voters_flip_fair_coins_on_judged_items() -> None:
    random = parse_voter_attack("random")
    votes = [random.bits(0, 0b111111, 0, np.random.default_rng(seed)) for seed in range(400)]
    assert all(v & ~0b111111 == 0 for v in votes)
    ones = sum(bin(v).count("1") for v in votes) / (400 * 6)
    assert 0.45 < ones < 0.55
    assert random.bits(0, 0b111111, 0, np.random.default_rng(5)) == random.bits(
        0, 0b111111, 0, np.random.default_rng(5)
    )


def test_bad_voter_attacks_name_the_accepted_values() -> None:
    with pytest.raises(ValueError) as info:
        parse_voter_attack("lazy")
    assert all(name in str(info.value) for name in VOTER_ATTACKS)


def test_attackers_are_chosen_deterministically() -> None:
    assert choose_attackers(10, 2, 1) == choose_attackers(10, 2, 1) and len(choose_attackers(10, 2, 1)) == 2
    with pytest.raises(ValueError, match="between 0 and 3"):
        choose_attackers(4, 4, 0)
