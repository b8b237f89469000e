"""Voting rules: how a voter turns the round's items into accept / reject bits.

The rule is a task parameter (``TaskConfig.vote_rule``), fixed at deployment and part of the
task's config hash, so anyone holding the blobs and a voter's data can re-run its vote. In
aggregate mode (arXiv:2307.00543) every rule judges the one candidate by the paper's rule.

- ``share``: the paper's rule applied to each update diluted by its example share: accept when
  the voter's score of ``global + n_i / N * (update - global)`` is at least (1 - eps) times the
  previous global model's. A poisoned update among five moves the score by less than eps.
- ``full``: BFLC (Li et al., arXiv:2004.00773): the update at full weight, against (1 - eps)
  times the global score. Undiluted, but a non-IID voter rejects honest updates about classes
  it does not hold.
- ``loo``: leave-one-out (Fang et al., USENIX Security 2020, "LFR"): accept when the voter's
  score of the aggregate of all the round's updates is at least (1 - eps) times its score of the
  aggregate without this one.
- ``reference`` (the default for model updates): the voter trains its own honest update this
  round, exactly as it would as a proposer, and uses it as a trusted reference (FLTrust, Cao et
  al., arXiv:2012.13995, with the voter's own data as the root set) for evidence that does not
  depend on the voter holding the proposer's classes; see :class:`ReferenceRule`.

docs/voting.md has the measurements behind the default.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from fedledger.contracts.types import encode_vote

if TYPE_CHECKING:
    import torch

    from fedledger.aggregation.base import FedledgerStrategy
    from fedledger.simulation.tasks import Split, Task

Arrays = OrderedDict[str, np.ndarray]
BPS = 10_000
ABSTAIN = "abstains"
"""Prefix of the reason of an item a voter abstains on."""
NO_CHANGE = "no change to the global model"
COPIED = "identical to another update of the round"


@dataclass
class Ballot:
    """Everything a voter judges in one round.

    ``updates`` are the decoded items in proposer order (None: nothing committed, or not
    decodable); ``weights`` their committed example counts; in aggregate mode one item, the
    candidate, with weight 0. ``judge`` scores a model on the voter's data (higher is better).
    ``reference`` trains the voter's own honest update of this round (called at most once).
    """

    plugin: FedledgerStrategy
    task: Task
    seed: int
    global_arrays: Arrays
    updates: list[Arrays | None]
    weights: list[int]
    val: Split
    tolerance_bps: int
    judge: Callable[[torch.nn.Module], float]
    reference: Callable[[], Arrays | None] | None = None
    aggregate: bool = False
    _score_global: float | None = field(default=None, repr=False)

    def score(self, arrays: Arrays) -> float:
        """The voter's score of the model of ``arrays``."""
        return self.judge(self.plugin.build(self.task, self.seed, arrays))

    @property
    def score_global(self) -> float:
        """The voter's score of the previous global model (computed once)."""
        if self._score_global is None:
            self._score_global = self.score(self.global_arrays)
        return self._score_global

    @property
    def threshold(self) -> float:
        """The paper's bar: (1 - eps) times the previous global model's score."""
        return (BPS - self.tolerance_bps) * self.score_global / BPS

    @functools.cached_property
    def unchanged(self) -> list[bool]:
        """Per item, whether it leaves the global model as it was (see :func:`unchanged`; computed once)."""
        return [u is not None and unchanged(self.global_arrays, u) for u in self.updates]

    def usable(self) -> list[int]:
        """Indices of the items there are to judge."""
        return [i for i, u in enumerate(self.updates) if u is not None]


@dataclass(frozen=True)
class Judgement:
    """A rule's verdict per item: accept, a number for the report, why it was rejected, and abstentions.

    An item the voter has no evidence about is neither accepted nor rejected: ``abstain`` is set
    and its reason says why. The contract tallies informed votes only (docs/voting.md).
    """

    accept: list[bool]
    scores: list[float | None]
    reasons: list[str]
    score_global: float = float("nan")
    """The voter's score of the previous global model."""
    abstain: list[bool] = field(default_factory=list)
    """Per item, True when the voter abstains (empty: it abstains on nothing)."""

    @property
    def bits(self) -> int:
        """The vote it reveals: ``accept | abstain << ABSTAIN_SHIFT`` over the items."""
        accept = sum(1 << i for i, ok in enumerate(self.accept) if ok)
        abstain = sum(1 << i for i, no in enumerate(self.abstain) if no)
        return encode_vote(accept & ~abstain, abstain)


class VoteRule(ABC):
    """A voter's decision rule over a round's items."""

    name: ClassVar[str]
    paper: ClassVar[str]
    needs_model_updates: ClassVar[bool] = False
    """True: it works on model deltas (strategies whose updates are not models cannot use it)."""

    def decide(self, ballot: Ballot) -> Judgement:
        """Accept / reject every item (items with nothing to judge are rejected).

        Whatever the rule, an update that leaves the global model as it was is rejected: it is no
        work (a free rider's copy) or a canary (contracts/canary.py), and a voter that accepted a
        canary its reviewers rejected would forfeit its stake; rules that score accuracy alone
        would accept it (an unchanged model scores as the global does).
        """
        if ballot.aggregate:
            judgement = _paper_rule(ballot, lambda u, _w: u)
        else:
            judgement = _reject_unchanged(ballot, self.judge_updates(ballot))
        return dataclasses.replace(judgement, score_global=ballot.score_global)

    @abstractmethod
    def judge_updates(self, ballot: Ballot) -> Judgement:
        """Per-update mode: accept / reject each proposer's update."""


UNCHANGED_RATIO = 1e-5
"""An update whose change is below this share of the global model's norm leaves the model as it was."""


def unchanged(global_arrays: Arrays, update: Arrays) -> bool:
    """Whether ``update`` (a model like ``global_arrays``) moves it less than ``UNCHANGED_RATIO`` of its norm."""
    names = _floating(global_arrays)
    if not names or any(n not in update or update[n].shape != global_arrays[n].shape for n in names):
        return False  # not a model update (e.g. seeds and scalars): another kind of evidence
    change = _delta(global_arrays, update)
    return _norm(change) <= UNCHANGED_RATIO * _norm(_restrict(global_arrays, change))


def _reject_unchanged(ballot: Ballot, judgement: Judgement) -> Judgement:
    """Reject unchanged updates; abstain on those from clients claiming too few examples to move the model."""
    flags = ballot.unchanged
    if not any(flags):
        return judgement
    small = [w < ReferenceLimits.min_evidence_samples for w in ballot.weights]
    return dataclasses.replace(
        judgement,
        accept=[ok and not f for ok, f in zip(judgement.accept, flags, strict=True)],
        reasons=[
            (f"{ABSTAIN}: {NO_CHANGE}, from {w} examples" if s else NO_CHANGE) if f else r
            for r, f, s, w in zip(judgement.reasons, flags, small, ballot.weights, strict=True)
        ],
        abstain=[
            (s if f else a) for a, f, s in zip(judgement.abstain or [False] * len(flags), flags, small, strict=True)
        ],
    )


def _paper_rule(ballot: Ballot, candidate: Callable[[Arrays, float], Arrays]) -> Judgement:
    """score(candidate(update, share)) >= (1 - eps) * score(global), per usable item."""
    total = sum(ballot.weights[i] for i in ballot.usable())
    accept, scores, reasons = [], [], []
    for i, update in enumerate(ballot.updates):
        if update is None:
            accept.append(False), scores.append(None), reasons.append("nothing to judge")
            continue
        share = ballot.weights[i] / total if total else 1.0
        score = ballot.score(candidate(update, share))
        ok = score >= ballot.threshold
        accept.append(ok), scores.append(score), reasons.append("" if ok else "score below (1 - eps) x global")
    return Judgement(accept, scores, reasons)


class ShareRule(VoteRule):
    """Each update judged as applied with its example share (the pre-v2 default; see module docstring)."""

    name = "share"
    paper = "arXiv:2307.00543's rule on each update's example-share contribution"

    def judge_updates(self, ballot: Ballot) -> Judgement:
        """score(global + share * (update - global)) >= (1 - eps) * score(global)."""
        g = ballot.global_arrays
        return _paper_rule(ballot, lambda u, share: ballot.plugin.apply_updates(g, [(u, share)]))


class FullRule(VoteRule):
    """BFLC: the update at full weight against the previous global model."""

    name = "full"
    paper = "Li et al., BFLC, arXiv:2004.00773"

    def judge_updates(self, ballot: Ballot) -> Judgement:
        """score(global + 1 * (update - global)) >= (1 - eps) * score(global)."""
        g = ballot.global_arrays
        return _paper_rule(ballot, lambda u, _share: ballot.plugin.apply_updates(g, [(u, 1.0)]))


class LeaveOneOutRule(VoteRule):
    """Fang et al.'s LFR: the round's aggregate with vs without the update."""

    name = "loo"
    paper = "Fang et al., USENIX Security 2020 (LFR)"

    def judge_updates(self, ballot: Ballot) -> Judgement:
        """score(aggregate of all) >= (1 - eps) * score(aggregate of all but this one)."""
        usable = ballot.usable()
        g = ballot.global_arrays

        def aggregate(indices: list[int]) -> Arrays:
            total = sum(ballot.weights[j] for j in indices)
            if not indices or not total:
                return g
            pairs = [(ballot.updates[j], ballot.weights[j] / total) for j in indices]
            return ballot.plugin.apply_updates(g, pairs)  # type: ignore[arg-type]

        with_all = ballot.score(aggregate(usable))
        bar = (BPS - ballot.tolerance_bps) / BPS
        accept, scores, reasons = [], [], []
        for i in range(len(ballot.updates)):
            if i not in usable:
                accept.append(False), scores.append(None), reasons.append("nothing to judge")
                continue
            without = ballot.score(aggregate([j for j in usable if j != i]))
            ok = with_all >= bar * without
            accept.append(ok), scores.append(with_all - without)
            reasons.append("" if ok else "the aggregate scores better without it")
        return Judgement(accept, scores, reasons)


@dataclass(frozen=True)
class ReferenceLimits:
    """The reference rule's constants (part of the rule's definition: changing one is a new rule)."""

    max_norm_ratio: float = 4.0
    """An update may move the model at most this many times as far as the voter's own update."""
    min_norm_ratio: float = 0.01
    """... and at least this share of it (less is no work: a free rider)."""
    min_cosine: float = 0.0
    """Mean cosine over weight tensors between its change and the voter's own must exceed this."""
    max_sign_skew: float = 0.15
    """Its share of negative changes may exceed the median share of the round (its items and the
    voter's own update) by at most this (SignGuard)."""
    min_class_samples: int = 2
    """Classes with fewer of the voter's validation samples give no evidence."""
    claim_share: float = 0.5
    """A class is claimed when the update labels at least this share of its count (and 2) as it."""
    min_claimed_recall: float = 0.25
    """... and then it must recognise at least this share of the voter's samples of that class."""
    min_reference_accuracy: float = 0.25
    """... and convicts on it only while its own update gets at least this share of its validation data right."""
    min_evidence_samples: int = 10
    """A voter with fewer validation samples than this has weak evidence (below)."""
    evidence_class_share: float = 0.5
    """... as has one holding fewer than this share of the task's classes (``min_class_samples`` each)."""
    doubtful_cosine: float = -0.3
    """A change whose cosine lies in (this, ``min_cosine``] is too close to orthogonal to call: abstain."""
    clear_cosine: float = -0.4
    """A voter with weak evidence rejects a change pointing away from its own only below this cosine."""
    max_median_ratio: float = 10.0
    """A voter with weak evidence bounds an update's size by this many times the round's median."""


class ReferenceRule(VoteRule):
    """Evidence against the voter's own honest update of the round (FLTrust's root update, locally).

    An item is rejected, with the first reason that applies, when

    1. it is no work: byte-identical to the global state or to another item of the round, or it
       moves the model less than ``min_norm_ratio`` times the voter's own update and the median
       of the round's updates, whichever is smaller (free riders, ALIE's identical copies; a
       long-tailed voter's own update can be a hundred times the others');
    2. it moves the model more than ``max_norm_ratio`` times as far (scaling, noise);
    3. its change points away from the voter's: mean cosine over weight tensors at most
       ``doubtful_cosine`` (sign flips). Between that and ``min_cosine`` it abstains: honest
       updates near convergence or about other classes land there (docs/voting.md; measured:
       against the median of the round's other items the check caught more sign flips at 20 %
       attackers and rejected 23 % of honest updates at 40 %, whose flips drag that median);
    4. its changes are skewed to one sign: its share of negative changes exceeds the round's
       median share (its items and the voter's own update) by more than ``max_sign_skew``
       (SignGuard, Xu et al., arXiv:2109.05872: ALIE's mean - z * std shifts every coordinate down);
    5. (classification tasks) it claims a class of the voter's data without recognising it: it
       labels at least half as many of the voter's samples as that class holds with it, yet
       recognises under a quarter of the voter's samples of it (a label flip; BaFFLe-style
       per-class evidence, Andreina et al., arXiv:2011.02167). An honest update about other
       classes labels the voter's samples with its own classes, which it recognises. A voter
       whose own update gets under a quarter of its validation data right abstains instead: in
       round 1 of 40 mnist members of 70 images each every model predicts one or two classes for
       everything, the voter's own included, and the test proves nothing.

    A voter with weak evidence (fewer than ``min_evidence_samples`` validation samples, or
    fewer than ``evidence_class_share`` of the task's classes: a skewed or long-tailed client)
    cannot tell an honest update about other classes from a bad one by direction or by size
    against its own small update. It abstains where checks 2 and 3 would reject, unless the
    change clearly points away (cosine below ``clear_cosine``) or its size is out of bounds
    against the median of the round's items and its own update (three or more of them).
    Checks 1, 4 and 5 need no evidence beyond what they test and apply to every voter.

    Without a reference (a voter with no training data) it has no evidence: it abstains on every
    item but identical copies (and, as every rule, unchanged models).
    """

    name = "reference"
    paper = "own-update reference (FLTrust arXiv:2012.13995, SignGuard arXiv:2109.05872, BaFFLe arXiv:2011.02167)"
    needs_model_updates = True

    def __init__(self, limits: ReferenceLimits | None = None) -> None:
        """With the rule's constants (tests may pass others)."""
        self.limits = limits or ReferenceLimits()

    def judge_updates(self, ballot: Ballot) -> Judgement:
        """Run the five checks on every usable item."""
        reference = ballot.reference() if ballot.reference is not None else None
        own = _delta(ballot.global_arrays, reference) if reference is not None else None
        digests = [_digest(u) if u is not None else None for u in ballot.updates]
        copies = [d is not None and digests.count(d) > 1 for d in digests]
        if own is None or _norm(own) == 0.0:  # no training data of its own: nothing to compare with
            return _without_reference(ballot, copies)
        deltas = [_delta(ballot.global_arrays, u) if u is not None else None for u in ballot.updates]
        cosines = [_tensor_cosine(d, _restrict(own, d)) if d is not None else None for d in deltas]
        # The round's statistics leave out unchanged items (free riders, canaries): they are no updates.
        moved = [d for d, still in zip(deltas, ballot.unchanged, strict=True) if d is not None and not still]
        skews = [_negative_share(d) for d in moved]
        baseline = float(np.median([*skews, _negative_share(own)]))
        norms = [_norm(d) for d in moved] + [_norm(own)]
        view = _RoundView(
            baseline=baseline,
            weak=self.weak_evidence(ballot),
            typical=float(np.median(norms)) if len(norms) >= 3 else None,
            own_accuracy=lambda: _accuracy(ballot, reference),
        )
        accept, scores, reasons, abstain = [], [], [], []
        for i, update in enumerate(ballot.updates):
            delta, cosine = deltas[i], cosines[i]
            if update is None or delta is None or cosine is None:
                accept.append(False), scores.append(None), reasons.append("nothing to judge"), abstain.append(False)
                continue
            mine = _restrict(own, delta)
            reason = self._check(ballot, update, delta, _norm(mine), cosine, copies[i], ballot.weights[i], view)
            unsure = reason.startswith(ABSTAIN)
            accept.append(not reason), scores.append(cosine), reasons.append(reason), abstain.append(unsure)
        return Judgement(accept, scores, reasons, abstain=abstain)

    def weak_evidence(self, ballot: Ballot) -> bool:
        """Whether the voter's validation data are too few or too skewed to judge direction and size."""
        labels = np.asarray(ballot.val.y)
        if len(labels) < self.limits.min_evidence_samples:
            return True
        num_classes = getattr(ballot.task, "num_classes", None)
        if not num_classes or labels.dtype.kind not in "iu":
            return False
        _, counts = np.unique(labels, return_counts=True)
        held = int((counts >= self.limits.min_class_samples).sum())
        return held < self.limits.evidence_class_share * num_classes

    def _check(
        self,
        ballot: Ballot,
        update: Arrays,
        delta: Arrays,
        own_norm: float,
        cosine: float,
        copied: bool,
        claimed: int,
        view: _RoundView,
    ) -> str:
        limits = self.limits
        weak, typical = view.weak, view.typical
        if copied:
            return COPIED
        size = _norm(delta)
        ratio = size / max(own_norm, 1e-30)
        work = min(own_norm, typical) if typical is not None else own_norm  # honest work, robustly
        if size < limits.min_norm_ratio * work:
            if claimed < limits.min_evidence_samples:  # a client this small moves the model little
                return f"{ABSTAIN}: hardly changes the model, from {claimed} examples"
            return NO_CHANGE
        doubt = ""
        if ratio > limits.max_norm_ratio:
            if not weak:
                return f"moves the model {ratio:.1f}x as far as the voter's own update"
            doubt = f"moves the model {ratio:.1f}x as far as the voter's own small update"
        if weak and typical is not None:
            spread = size / max(typical, 1e-30)
            if spread > limits.max_median_ratio:  # long-tailed honest updates do this too: no proof of harm
                doubt = f"moves the model {spread:.1f}x as far as the round's median"
        if cosine <= (limits.clear_cosine if weak else limits.doubtful_cosine):
            return f"points away from the voter's own update (cosine {cosine:.2f})"
        skew = _negative_share(delta) - view.baseline
        if skew > limits.max_sign_skew:
            skewed = f"changes skewed to one sign ({skew:+.2f} beyond the round's median)"
            if not weak:
                return skewed
            doubt = doubt or skewed  # skewed clients' honest updates drift in sign balance too
        recall = _worst_claimed_recall(ballot, update, limits)
        if recall is not None and recall < limits.min_claimed_recall:
            claim = f"claims a class of the voter's data it recognises {recall:.0%} of"
            if not weak and (view.accuracy or 0.0) >= limits.min_reference_accuracy:
                return claim
            doubt = doubt or claim  # a handful of samples of a class, or a voter whose own model cannot tell
        if cosine <= limits.min_cosine:
            doubt = doubt or f"nearly orthogonal to the voter's own update (cosine {cosine:.2f})"
        return f"{ABSTAIN}: {doubt}" if doubt else ""


@dataclass(frozen=True)
class _RoundView:
    """What a voter knows of the round beyond the item it checks (computed once per ballot)."""

    baseline: float
    """The median share of negative changes over the round's items and the voter's own update."""
    weak: bool
    """Whether the voter's validation data are too few or too skewed (:meth:`ReferenceRule.weak_evidence`)."""
    typical: float | None
    """The median size of the round's changes and the voter's own (None: fewer than three)."""
    own_accuracy: Callable[[], float | None]
    """Scores the voter's own update on its validation data (asked only when a class check fails)."""

    @functools.cached_property
    def accuracy(self) -> float | None:
        """The accuracy of the voter's own update on its validation data (computed once, on demand)."""
        return self.own_accuracy()


def _without_reference(ballot: Ballot, copies: list[bool]) -> Judgement:
    """A voter with no update of its own: it rejects identical copies and abstains on everything else."""
    blind = f"{ABSTAIN}: no training data of its own to compare with"
    reasons = [
        "nothing to judge" if u is None else COPIED if copied else blind
        for u, copied in zip(ballot.updates, copies, strict=True)
    ]
    abstain = [r.startswith(ABSTAIN) for r in reasons]
    return Judgement([False] * len(reasons), [None] * len(reasons), reasons, abstain=abstain)


def _predict(b: Ballot, arrays: Arrays) -> np.ndarray | None:
    """The classes the model of ``arrays`` predicts for the voter's validation data (None: not a classifier)."""
    return b.task.predict(b.plugin.build(b.task, b.seed, arrays), b.val)


def _accuracy(b: Ballot, arrays: Arrays) -> float | None:
    """The accuracy of the model of ``arrays`` on the voter's validation data (None: not a classifier)."""
    predicted = _predict(b, arrays)
    return None if predicted is None or len(b.val.y) == 0 else float((predicted == b.val.y).mean())


def _worst_claimed_recall(b: Ballot, update: Arrays, limits: ReferenceLimits) -> float | None:
    """The lowest recall on the voter's data among the classes the update claims (None: not a classifier)."""
    predicted = _predict(b, b.plugin.apply_updates(b.global_arrays, [(update, 1.0)]))
    if predicted is None:
        return None
    labels = b.val.y
    worst: float | None = None
    for c in np.unique(labels):
        count = int((labels == c).sum())
        if count < limits.min_class_samples:
            continue
        if int((predicted == c).sum()) < max(limits.min_class_samples, limits.claim_share * count):
            continue
        recall = float((predicted[labels == c] == c).mean())
        worst = recall if worst is None else min(worst, recall)
    return worst


def _floating(arrays: Arrays) -> list[str]:
    return [k for k, v in arrays.items() if np.issubdtype(v.dtype, np.floating)]


def _delta(global_arrays: Arrays, update: Arrays) -> Arrays:
    """The update's change to the global state, over the floating arrays it carries."""
    return OrderedDict(
        (k, update[k].astype(np.float64) - global_arrays[k].astype(np.float64))
        for k in _floating(update)
        if k in global_arrays
    )


def _restrict(arrays: Arrays, like: Arrays) -> Arrays:
    """``arrays`` over the names ``like`` carries (a partial update's)."""
    return OrderedDict((k, arrays[k]) for k in like if k in arrays)


def _norm(delta: Arrays) -> float:
    return float(np.sqrt(sum(float(np.sum(v * v)) for v in delta.values())))


def _tensor_cosine(a: Arrays, b: Arrays) -> float:
    """Mean over weight tensors (two or more dimensions; all when there are none) of their cosines.

    Per tensor, so a small output layer counts as much as a wide first layer: a label flip
    changes mostly the former.
    """
    names = [k for k in a if a[k].ndim >= 2] or list(a)
    cosines = []
    for k in names:
        x, y = a[k].ravel(), b[k].ravel()
        denominator = float(np.linalg.norm(x) * np.linalg.norm(y))
        cosines.append(float(x @ y) / denominator if denominator > 0 else 0.0)
    return float(np.mean(cosines)) if cosines else 0.0


def _negative_share(delta: Arrays) -> float:
    """Share of the changed coordinates that went down."""
    values = np.concatenate([v.ravel() for v in delta.values()]) if delta else np.zeros(0)
    changed = values[values != 0]
    return float((changed < 0).mean()) if len(changed) else 0.5


def _digest(arrays: Arrays) -> bytes:
    h = hashlib.sha256()
    for name, value in arrays.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.digest()


RULES: dict[str, type[VoteRule]] = {rule.name: rule for rule in (ShareRule, FullRule, LeaveOneOutRule, ReferenceRule)}


def get_rule(name: str) -> VoteRule:
    """The rule called ``name``; a ValueError names the known ones."""
    try:
        return RULES[name]()
    except KeyError:
        raise ValueError(f"unknown vote rule {name!r}; use one of {', '.join(RULES)}") from None


def check_rule(name: str, plugin: FedledgerStrategy) -> None:
    """Raise ValueError when ``name`` is unknown or cannot judge ``plugin``'s updates."""
    rule = get_rule(name)
    if rule.needs_model_updates and not plugin.model_updates:
        raise ValueError(
            f"vote rule {name!r} compares model changes; {plugin.name} updates are not models "
            f"(use {plugin.default_vote_rule!r})"
        )
