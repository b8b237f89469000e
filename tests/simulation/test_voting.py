"""Vote rules: what each check of the reference rule catches, and a governed round per rule.

The governed rounds replay a fixed committee in the in-process federation (the product's
clients, rules and settlement): round 1 trains the model a little; in round 2 a label-flipper,
a sign-flipper and two honest proposers with non-IID (Dirichlet 0.5) data propose.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from fedledger.aggregation.registry import get_strategy
from fedledger.client.voting import RULES, Ballot, ReferenceRule, check_rule, get_rule
from fedledger.simulation.attacks import alie_update, alie_z, parse_attack
from fedledger.simulation.inprocess import InProcessRun, Scenario
from fedledger.simulation.tasks import ClientData, Split, TrainSettings, get_task, model_arrays

TASK = get_task("digits")
PLUGIN = get_strategy("fedavg")


def trained(state: OrderedDict[str, np.ndarray], data: Split, seed: int) -> OrderedDict[str, np.ndarray]:
    model = PLUGIN.build(TASK, 0, state)
    TASK.fit(model, data, TrainSettings(local_epochs=5, seed=seed))
    return model_arrays(model)


@pytest.fixture(scope="module")
def round_two() -> tuple[OrderedDict[str, np.ndarray], list[ClientData]]:
    """A global model after one round of FedAvg, and six IID clients."""
    clients = [TASK.client_data(i, 6, "iid", 3) for i in range(6)]
    start = PLUGIN.initial_state(TASK, 0)
    first = [trained(start, c.train, 10 + i) for i, c in enumerate(clients)]
    return PLUGIN.aggregate_offline(None, [(u, 1) for u in first]), clients


def ballot(global_arrays: OrderedDict[str, np.ndarray], voter: ClientData, items: list, **extra: object) -> Ballot:
    return Ballot(
        plugin=PLUGIN,
        task=TASK,
        seed=0,
        global_arrays=global_arrays,
        updates=items,
        weights=[100] * len(items),
        val=voter.val,
        tolerance_bps=500,
        judge=lambda model: TASK.score(model, voter.val),
        reference=lambda: trained(global_arrays, voter.train, 99),
        **extra,  # type: ignore[arg-type]
    )


def test_reference_rule_rejects_each_attack_for_its_reason(round_two: tuple) -> None:
    g, clients = round_two
    honest = [trained(g, clients[i].train, i) for i in (1, 2, 3)]
    flipped = trained(g, Split(clients[4].train.x, 9 - clients[4].train.y), 4)
    alie = alie_update([trained(g, clients[i].train, 50 + i) for i in (3, 4, 5)], alie_z(10, 4))
    items = [
        honest[0],
        honest[1],
        None,  # nothing committed
        parse_attack("sign_flip").poison_update(g, honest[2]),
        parse_attack("scale:10").poison_update(g, honest[2]),
        parse_attack("free_ride").poison_update(g, honest[2]),
        flipped,
        alie,
        OrderedDict((k, v.copy()) for k, v in honest[2].items()),
        honest[2],
    ]
    judgement = ReferenceRule().decide(ballot(g, clients[0], items))
    accept, reasons = judgement.accept, judgement.reasons
    assert accept[:2] == [True, True], reasons[:2]
    assert not accept[2] and reasons[2] == "nothing to judge"
    assert "points away" in reasons[3]
    assert "as far as the voter's own update" in reasons[4]
    assert reasons[5] == "no change to the global model"
    assert not accept[6], reasons[6]
    assert "skewed to one sign" in reasons[7]
    assert reasons[8] == reasons[9] == "identical to another update of the round"
    assert judgement.score_global == pytest.approx(TASK.score(PLUGIN.build(TASK, 0, g), clients[0].val))


def test_a_voter_with_weak_evidence_abstains_where_a_rich_one_would_reject(round_two: tuple) -> None:
    """A voter holding two classes of five samples cannot convict on direction or size: it abstains.

    The same items judged by an IID voter with the same checks tightened so far that they reject
    show what the weak voter declined to say; copies it still rejects.
    """
    from fedledger.client.voting import ABSTAIN
    from fedledger.contracts.types import decode_vote

    g, clients = round_two
    voter = clients[0]
    keep = np.isin(voter.val.y, voter.val.y[:2])[:]
    weak_val = Split(voter.val.x[keep][:5], voter.val.y[keep][:5])
    weak = ClientData(train=Split(voter.train.x[:8], voter.train.y[:8]), val=weak_val, test=voter.test)
    honest = [trained(g, clients[i].train, i) for i in (1, 2, 3)]
    reversed_ = parse_attack("sign_flip").poison_update(g, honest[2])
    items = [honest[0], honest[1], reversed_, OrderedDict((k, v.copy()) for k, v in reversed_.items())]
    rule = ReferenceRule()
    b = ballot(g, weak, items)
    assert rule.weak_evidence(b) and not rule.weak_evidence(ballot(g, voter, items))
    judgement = rule.decide(b)
    accept, abstain = decode_vote(judgement.bits)
    assert not accept & 0b1100 and not abstain & 0b1100  # a copied pair: rejected, no evidence needed
    assert "identical" in judgement.reasons[2] and "identical" in judgement.reasons[3]
    for i in (0, 1):  # honest: accepted or, with no evidence, abstained on; never rejected
        assert accept >> i & 1 or (abstain >> i & 1 and judgement.reasons[i].startswith(ABSTAIN)), judgement.reasons
    # A direction check tightened to reject everything below cosine 0.99: the rich voter rejects
    # the honest items, the weak voter abstains on them.
    from fedledger.client.voting import ReferenceLimits

    strict = ReferenceRule(ReferenceLimits(min_cosine=0.99, doubtful_cosine=0.99))
    rich = strict.decide(ballot(g, voter, items[:2]))
    assert rich.bits == 0 and all("points away" in r for r in rich.reasons)
    unsure = strict.decide(ballot(g, weak, items[:2]))
    assert decode_vote(unsure.bits) == (0, 0b11), unsure.reasons


def test_voters_without_comparable_work_of_their_own_do_not_convict_honest_updates(round_two: tuple) -> None:
    """Issue 27: the two ways honest voters lost votes in clean skewed federations.

    A member with no training data (digits, Dirichlet 0.1: one holds a single validation sample)
    judged by its own score and voted honest updates down; a long-tailed member whose own update
    is a hundred times the others' took them for free riders. The first now abstains (copies and
    unchanged models it still rejects); the second measures work against the smaller of its own
    update and the round's median, so a near copy of the global model is still no work.
    """
    import dataclasses

    from fedledger.client.voting import ABSTAIN, NO_CHANGE

    g, clients = round_two
    honest = [trained(g, clients[i].train, i) for i in (1, 2, 3)]
    free = parse_attack("free_ride").poison_update(g, honest[0])
    copy = OrderedDict((k, v.copy()) for k, v in honest[2].items())
    rule = ReferenceRule()
    no_data = dataclasses.replace(ballot(g, clients[0], [*honest, free, copy]), reference=lambda: g)
    judgement = rule.decide(no_data)
    assert judgement.abstain[:2] == [True, True] and not any(judgement.accept), judgement.reasons
    assert all(r.startswith(ABSTAIN) for r in judgement.reasons[:2])
    assert judgement.reasons[3] == NO_CHANGE and not judgement.abstain[3]
    assert "identical" in judgement.reasons[2] and "identical" in judgement.reasons[4]

    def scaled(update: OrderedDict[str, np.ndarray], factor: float) -> OrderedDict[str, np.ndarray]:
        return OrderedDict((k, g[k] + factor * (v - g[k])) for k, v in update.items())

    own = trained(g, clients[0].train, 99)
    near_copy = scaled(honest[2], 0.001)  # moves the model, but a thousandth as far as honest work
    items = [*honest[:2], near_copy]
    long_tailed = dataclasses.replace(ballot(g, clients[0], items), reference=lambda: scaled(own, 200))
    judgement = rule.decide(long_tailed)
    assert judgement.reasons[2] == NO_CHANGE, judgement.reasons
    assert all(r != NO_CHANGE for r in judgement.reasons[:2]), judgement.reasons


def test_a_label_flip_that_keeps_the_direction_is_caught_by_the_class_check(round_two: tuple) -> None:
    g, clients = round_two
    flipped = trained(g, Split(clients[4].train.x, 9 - clients[4].train.y), 4)
    rule = ReferenceRule()
    judgement = rule.decide(ballot(g, clients[0], [flipped]))
    assert not judgement.accept[0]
    # with the class check off the cosine alone may or may not see it; with everything but the
    # class check relaxed, the class check still does
    from fedledger.client.voting import ReferenceLimits

    lenient = ReferenceRule(
        ReferenceLimits(max_norm_ratio=1e9, min_cosine=-1.1, doubtful_cosine=-1.1, clear_cosine=-1.1, max_sign_skew=1.0)
    )
    assert "claims a class" in lenient.decide(ballot(g, clients[0], [flipped])).reasons[0]

    # Issue 27, 40 mnist members: in round 1 every model predicts one or two classes for
    # everything, the voter's own included, and honest updates were convicted by this check. A
    # voter whose own update gets under a quarter of its validation data right abstains on it.
    import dataclasses

    one_class = Split(clients[0].train.x, np.full_like(clients[0].train.y, 3))
    unripe = dataclasses.replace(ballot(g, clients[0], [flipped]), reference=lambda: trained(g, one_class, 7))
    judgement = lenient.decide(unripe)
    assert judgement.abstain == [True] and "claims a class" in judgement.reasons[0], judgement.reasons


def test_paper_rules_judge_at_their_weight(round_two: tuple) -> None:
    g, clients = round_two
    update = trained(g, clients[1].train, 1)
    b = ballot(g, clients[0], [update, update], aggregate=False)
    share = get_rule("share").decide(b)
    half = PLUGIN.apply_updates(g, [(update, 0.5)])
    assert share.scores[0] == pytest.approx(b.score(half))
    full = get_rule("full").decide(b)
    assert full.scores[0] == pytest.approx(b.score(update))
    loo = get_rule("loo").decide(b)
    assert loo.scores[0] == pytest.approx(0.0, abs=1e-6)  # the same update twice: removing one changes nothing
    candidate = get_rule("reference").decide(ballot(g, clients[0], [update], aggregate=True))
    assert candidate.scores[0] == pytest.approx(b.score(update))  # aggregate mode: the paper's rule


def test_rules_are_checked_against_the_strategy() -> None:
    check_rule("reference", get_strategy("fedavg"))
    with pytest.raises(ValueError, match="not models"):
        check_rule("reference", get_strategy("fedkseed"))
    with pytest.raises(ValueError, match="share, full, loo, reference"):
        get_rule("majority")


def governed_round(rule: str, seed: int) -> tuple[dict[str, bool], dict[str, int]]:
    """Round 2 of a fixed committee: which of (label flipper, sign flipper, honest 1, honest 2) were accepted."""
    scenario = Scenario(
        clients=8, rounds=2, partition="dirichlet:0.5", attackers=2, attack="label_flip", vote_rule=rule, seed=seed
    )
    draft = InProcessRun(scenario)
    flipper, signer = draft.attacker_ids
    honest = [i for i in range(8) if i not in (flipper, signer)]
    address = [c.address for c in draft.clients]
    committees = [
        ([address[i] for i in honest[:4]], [address[i] for i in [flipper, signer, *honest[4:]]]),
        ([address[i] for i in [flipper, signer, *honest[:2]]], [address[i] for i in honest[2:]]),
    ]
    run = InProcessRun(scenario, committees)
    run.clients[signer].attack = parse_attack("sign_flip")
    run.clients[signer].data = run.clients[signer].clean_data
    result = run.run()
    last = result.rounds[1]
    named = {"label_flip": address[flipper], "sign_flip": address[signer], "honest 1": address[honest[0]]}
    named["honest 2"] = address[honest[1]]
    slashed = {m.address: m.slashed_wei for m in result.money}
    verdicts = {name: a in last.accepted for name, a in named.items()}
    verdicts |= {f"{name} undecided": a in last.undecided for name, a in named.items()}
    return verdicts, {name: slashed[a] for name, a in named.items()}


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param("reference"),
        pytest.param("share", marks=pytest.mark.xfail(strict=True, reason="diluted: misses a label flip or rejects")),
        pytest.param("full", marks=pytest.mark.xfail(strict=True, reason="full weight rejects honest non-IID work")),
        pytest.param("loo", marks=pytest.mark.xfail(strict=True, reason="leave-one-out misses the flippers")),
    ],
)
def test_flippers_are_rejected_and_slashed_while_honest_non_iid_work_passes(rule: str) -> None:
    assert set(RULES) == {"share", "full", "loo", "reference"}
    caught = 0
    for seed in range(4):
        verdicts, slashed = governed_round(rule, seed)
        accepted = {name: ok for name, ok in verdicts.items() if not name.endswith("undecided")}
        assert accepted == {"label_flip": False, "sign_flip": False, "honest 1": True, "honest 2": True}, seed
        for attacker in ("label_flip", "sign_flip"):  # kept out: rejected and slashed, or left undecided
            assert (slashed[attacker] > 0) != verdicts[f"{attacker} undecided"], (seed, attacker)
            caught += slashed[attacker] > 0
        assert slashed["honest 1"] == slashed["honest 2"] == 0, seed
    # Of 8 flipped updates rejected and slashed, the others left undecided. Measured: 4 since round 1's
    # governed aggregate is bounded by the median change (5 before: round 2 starts from another model).
    assert caught >= 4


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_rejects_a_canary_and_the_reference_rule_keeps_it_out_of_its_statistics(
    round_two: tuple, rule: str
) -> None:
    """A canary (a salted copy of the global model) is rejected whatever the rule: a voter that accepted
    one its reviewers rejected would forfeit its stake. Rules scoring accuracy alone would accept it."""
    from fedledger.client.canary import canary_update
    from fedledger.client.voting import NO_CHANGE, unchanged

    g, clients = round_two
    canary = canary_update(g, b"\x01" * 32)
    honest = trained(g, clients[1].train, 11)
    assert unchanged(g, canary) and not unchanged(g, honest)
    assert any(not np.array_equal(canary[k], g[k]) for k in g)  # salted: not the global model's bytes
    judgement = get_rule(rule).decide(ballot(g, clients[0], [canary, honest]))
    assert judgement.accept == [False, True] and judgement.reasons[0] == NO_CHANGE
    assert not (judgement.abstain and judgement.abstain[0])
    small = ballot(g, clients[0], [canary, honest])
    small.weights[0] = 5  # a client claiming too few examples to move the model: no evidence either way
    assert get_rule(rule).decide(small).abstain[0]
