"""Queue signed actions and relay them in batch transactions paid by the gateway.

Actions queue per type (CommitUpdate, CommitVote, ...). A queue is flushed in one transaction
when every actor still expected has queued, when the oldest entry has waited ``window``
seconds, when it reaches ``max_batch`` entries, or on demand (before the coordinator moves a
round on). A failed flush is retried with back-off; if it keeps failing every caller of the
batch is told so. Each caller's future resolves to its own outcome: included, or rejected by
the contract with the decoded reason.

With an :class:`~.actionlog.ActionLog`, an action is on disk before :meth:`Relayer.enqueue`
returns, is marked done with its outcome when its batch is mined, and :meth:`Relayer.recover`
replays what a previous process left unfinished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from fedledger.contracts.bindings import Sent
from fedledger.contracts.errors import ContractRevert, decode_revert
from fedledger.contracts.typed_data import SignedAction

from .actionlog import ActionLog, Outcome, action_digest

log = logging.getLogger(__name__)


class RelayFailed(Exception):
    """A batch could not be relayed after every retry; the action was not applied."""


class DuplicateAction(Exception):
    """The signer already has an action of this type queued."""


@dataclass
class _Pending:
    signed: SignedAction
    future: Future[Outcome]
    queued_at: float
    digest: bytes = b""


@dataclass
class _Queue:
    entries: list[_Pending] = field(default_factory=list)
    remaining: int | None = None  # actors still expected to act when the last entry was queued


@dataclass
class FlushStats:
    """Sizes of the batches sent, for benchmarks and the closing note."""

    batch_sizes: list[int] = field(default_factory=list)
    failures: int = 0


SendBatch = Callable[[Sequence[SignedAction]], Sent]


class Relayer:
    """Batches signed actions into ``...BySig`` transactions."""

    def __init__(
        self,
        send_batch: SendBatch,
        *,
        window: float = 2.0,
        max_batch: int = 64,
        retries: int = 3,
        backoff: float = 0.5,
        log: ActionLog | None = None,
    ) -> None:
        """``send_batch`` relays one batch (one action type) and returns the mined transaction.

        With ``log``, every action is written there before it is queued (see :mod:`.actionlog`).
        """
        if window <= 0 or max_batch < 1 or retries < 0:
            raise ValueError("window must be > 0, max_batch >= 1 and retries >= 0")
        self._send_batch = send_batch
        self.window = window
        self.max_batch = max_batch
        self.retries = retries
        self.backoff = backoff
        self.stats = FlushStats()
        self.log = log
        self._futures: dict[bytes, Future[Outcome]] = {}  # digest -> future of an action not yet finished
        self._queues: dict[str, _Queue] = {}
        self._inflight: list[_Pending] = []  # taken from a queue, not yet resolved: still count as pending
        self._cond = threading.Condition()
        self._flush_lock = threading.Lock()  # one batch in flight at a time keeps nonces ordered
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="relayer", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- queueing

    def _waiting(self) -> list[_Pending]:
        return [p for q in self._queues.values() for p in q.entries] + self._inflight

    def pending(self, signer: str | None = None, *, member_actions_only: bool = False) -> int:
        """Number of actions queued or being relayed (of ``signer`` only, when given).

        ``member_actions_only`` counts only membership actions: the ones that use a nonce.
        """
        with self._cond:
            return sum(
                1
                for p in self._waiting()
                if (signer is None or p.signed.signer == signer)
                and not (member_actions_only and p.signed.action.round_action)
            )

    def is_queued(self, action: str, signer: str) -> bool:
        """True when ``signer`` has an ``action`` queued or being relayed."""
        with self._cond:
            return any(p.signed.action.name == action and p.signed.signer == signer for p in self._waiting())

    def known(self, signed: SignedAction) -> Future[Outcome] | None:
        """The future of this very signed action if it was received before (None: it is new).

        Pending: the future its batch will resolve; finished (also in an earlier process, from
        the log): a resolved future with the recorded outcome. A client's retry gets this outcome
        instead of a second transaction.
        """
        if self.log is None:
            return None
        digest = action_digest(signed)
        with self._cond:
            if (future := self._futures.get(digest)) is not None:
                return future
        logged = self.log.outcome(digest)
        if logged is None:
            return None
        done: Future[Outcome] = Future()
        done.set_result(logged)
        return done

    def recover(self, applied: Callable[[SignedAction], Outcome | None]) -> tuple[int, int]:
        """Replay what the log holds unfinished: mark done what the chain already has, queue the rest.

        ``applied(signed)`` looks for the action on chain and returns its outcome there (None: not
        there). Returns (found on chain, queued again).
        """
        if self.log is None:
            return 0, 0
        found = queued = 0
        for signed in self.log.unfinished():
            outcome = applied(signed)
            if outcome is not None:
                self.log.complete([(action_digest(signed), outcome)])
                found += 1
                continue
            try:
                self.enqueue(signed)
            except DuplicateAction:  # two logged actions of one signer and type: the contract decides the later
                continue
            queued += 1
        return found, queued

    def enqueue(self, signed: SignedAction, remaining: int | None = None) -> Future[Outcome]:
        """Queue an action whose signature and preconditions were checked.

        ``remaining`` is how many actors still had to act (on chain) for this action type when
        it was checked; the queue flushes at once when that many entries are queued.

        Raises:
            DuplicateAction: the signer already has an action of this type queued.
            RuntimeError: the relayer is stopping.
        """
        with self._cond:
            if self._stopping:
                raise RuntimeError("the relayer is stopping")
            queue = self._queues.setdefault(signed.action.name, _Queue())
            if any(
                p.signed.action.name == signed.action.name and p.signed.signer == signed.signer for p in self._waiting()
            ):
                raise DuplicateAction(f"{signed.signer} already has a {signed.action.name} queued")
            digest = self.log.append(signed) if self.log is not None else b""  # on disk before anyone hears "queued"
            future: Future[Outcome] = Future()
            if digest:
                self._futures[digest] = future
            queue.entries.append(_Pending(signed, future, time.monotonic(), digest))
            if remaining is not None:
                queue.remaining = remaining
            self._cond.notify_all()
            return future

    # ----------------------------------------------------------------- flushing

    def flush(self, action: str | None = None) -> int:
        """Relay what is queued now (of ``action`` only, when given), wait for it; return how many were sent."""
        names = [action] if action else list(self._queues)
        total = 0
        for name in names:
            while (relayed := self._flush_queue(name)) is not None:
                total += relayed
        return total

    def stop(self, flush: bool = True) -> None:
        """Stop the background flusher, relaying (or failing) what is still queued."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        if flush:
            self.flush()
        with self._cond:
            leftovers = [p for q in self._queues.values() for p in q.entries]
            for q in self._queues.values():
                q.entries.clear()
            for p in leftovers:  # they stay unfinished in the log: the next start relays them
                self._futures.pop(p.digest, None)
        for p in leftovers:
            p.future.set_exception(RelayFailed("the gateway stopped before relaying this action"))

    def _ready(self, queue: _Queue, now: float) -> bool:
        if not queue.entries:
            return False
        if len(queue.entries) >= self.max_batch:
            return True
        if queue.remaining is not None and len(queue.entries) >= queue.remaining:
            return True
        return now - queue.entries[0].queued_at >= self.window

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                ready = [name for name, q in self._queues.items() if self._ready(q, now)]
                if not ready:
                    deadlines = [q.entries[0].queued_at + self.window for q in self._queues.values() if q.entries]
                    timeout = max(0.0, min(deadlines) - now) if deadlines else None
                    self._cond.wait(timeout=timeout if timeout is not None else 1.0)
                    continue
            for name in ready:
                self._flush_queue(name)

    def _flush_queue(self, name: str) -> int | None:
        """Relay up to ``max_batch`` queued entries of one type.

        Returns how many this call relayed (0 if the batch failed; its callers got the error), or
        None when nothing of that type was queued.
        """
        with self._flush_lock:
            with self._cond:
                queue = self._queues.get(name)
                if queue is None or not queue.entries:
                    return None
                batch, queue.entries = queue.entries[: self.max_batch], queue.entries[self.max_batch :]
            try:
                sent = self._send_with_retries([p.signed for p in batch])
            except Exception as exc:
                self.stats.failures += 1
                error = exc if isinstance(exc, RelayFailed) else RelayFailed(f"relay failed: {exc}")
                if isinstance(exc, ContractRevert):  # final: the same batch would revert again
                    reverted = Outcome(False, f"the batch reverted: {exc}", b"", 0, len(batch))
                    self._record(batch, [reverted] * len(batch))
                # Otherwise (chain unreachable, ...) the logged actions stay unfinished: the next
                # start replays them, and a client's retry queues them again.
                self._settle(batch, error)
                return 0
            self.stats.batch_sizes.append(len(batch))
            outcomes = self._outcomes(batch, sent)
            self._record(batch, outcomes)
            self._settle(batch, outcomes)
            return len(batch)

    def _record(self, batch: list[_Pending], outcomes: list[Outcome]) -> None:
        """The batch's outcomes into the log, in one transaction (before any caller hears them)."""
        if self.log is not None:
            self.log.complete([(p.digest, o) for p, o in zip(batch, outcomes, strict=True) if p.digest])

    def _settle(self, batch: list[_Pending], result: Exception | list[Outcome]) -> None:
        """Resolve the callers' futures (after the log has the outcomes)."""
        with self._cond:
            for p in batch:
                self._futures.pop(p.digest, None)
        for i, p in enumerate(batch):
            if isinstance(result, Exception):
                p.future.set_exception(result)
            else:
                p.future.set_result(result[i])

    def _send_with_retries(self, actions: list[SignedAction]) -> Sent:
        attempt = 0
        while True:
            try:
                return self._send_batch(actions)
            except ContractRevert:
                raise  # the whole batch reverted: retrying the same batch cannot help
            except Exception as exc:
                if attempt >= self.retries:
                    raise RelayFailed(f"relay failed after {attempt + 1} attempts: {exc}") from exc
                delay = self.backoff * 2**attempt
                log.warning("relay attempt %d failed (%s); retrying in %.1fs", attempt + 1, exc, delay)
                time.sleep(delay)
                attempt += 1

    @staticmethod
    def _outcomes(batch: list[_Pending], sent: Sent) -> list[Outcome]:
        rejected = {e.args["signer"]: e.args["reason"] for e in sent.named("ActionRejected")}
        tx_hash = bytes(sent.receipt["transactionHash"])
        block = int(sent.receipt["blockNumber"])
        return [
            Outcome(
                included=(reason := rejected.get(p.signed.signer)) is None,
                reason="" if reason is None else decode_revert(bytes(reason)).describe(),
                transaction_hash=tx_hash,
                block_number=block,
                batch_size=len(batch),
            )
            for p in batch
        ]
