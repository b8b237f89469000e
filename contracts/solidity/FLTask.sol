// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IFLTask} from "./interfaces/IFLTask.sol";
import {Members} from "./libraries/Members.sol";
import {Registry} from "./libraries/Registry.sol";
import {Settlement} from "./libraries/Settlement.sol";
import {Sortition} from "./libraries/Sortition.sol";
import {TaskCodeStore} from "./TaskCodeStore.sol";

/**
 * @title FLTask (v2)
 * @notice One federated-learning task governed on chain: membership and stake, sortition of
 * proposers and voters per round, reviewers per update, update commitments, commit-reveal peer
 * votes, and the reward / slash settlement of arXiv:2307.00543 (FLock).
 *
 * @dev Every participant action exists in two forms: a direct call (`msg.sender` acts) and a
 * `...BySig` batch taking EIP-712 signed requests, so that a relayer pays the gas. Both forms run
 * the same internal function, which checks everything first and returns the ABI-encoded custom
 * error instead of reverting: the direct form reverts with it, the batch form skips the entry
 * and emits {ActionRejected}. A batch therefore never reverts because of one bad entry.
 *
 * Cost (docs/decisions.md, "FLTask v2"): one packed slot per member (stake, owed, flags, index);
 * an eligibility bitmap over member indices (the draw costs O(committee)); the committee as
 * packed member indices; one round's state in slots reused round after round (history lives in
 * events); no nonce for round actions (the round, this contract and the chain id are signed and
 * an acted-bit stops replays); a rolling digest of vote commitments, which the reveal batch
 * brings back in calldata; the round finalizes with the batch that brings its last reveal.
 *
 * All payments are pull payments: rewards and released stake are credited to `owed` and paid by
 * {withdraw} (reentrancy-guarded, checks-effects-interactions).
 */
contract FLTask is IFLTask, EIP712, Nonces, ReentrancyGuardTransient {
    using Members for uint256;
    using Registry for Registry.Book;

    /// @notice Largest number of members at a time; member indices are 0..MAX_MEMBERS-1.
    uint256 public constant MAX_MEMBERS = Registry.MAX_MEMBERS;
    /// @notice Largest committee; the vote masks of a round share one slot (120 bits each).
    uint256 public constant MAX_COMMITTEE = 120;

    /// @notice EIP-712 type hash of a {CommitUpdateRequest}.
    bytes32 public constant COMMIT_UPDATE_TYPEHASH =
        keccak256("CommitUpdate(address proposer,uint256 round,bytes32 updateHash,uint256 numExamples)");
    /// @notice EIP-712 type hash of a {CommitVoteRequest}.
    bytes32 public constant COMMIT_VOTE_TYPEHASH = keccak256("CommitVote(address voter,uint256 round,bytes32 commitment)");
    /// @notice EIP-712 type hash of a {RevealVoteRequest}.
    bytes32 public constant REVEAL_VOTE_TYPEHASH =
        keccak256("RevealVote(address voter,uint256 round,uint256 bits,bytes32 salt)");
    /// @notice EIP-712 type hash of a signed exit request.
    bytes32 public constant REQUEST_EXIT_TYPEHASH =
        keccak256("RequestExit(address member,uint256 nonce,uint256 deadline)");
    /// @notice EIP-712 type hash of a signed exit completion.
    bytes32 public constant COMPLETE_EXIT_TYPEHASH =
        keccak256("CompleteExit(address member,uint256 nonce,uint256 deadline)");
    /// @notice EIP-712 type hash of a signed withdrawal.
    bytes32 public constant WITHDRAW_TYPEHASH = keccak256("Withdraw(address member,uint256 nonce,uint256 deadline)");

    uint256 private constant BPS = 10_000;
    bytes32 private constant CANARY_TYPEHASH = keccak256("Canary(address proposer,uint256 round,bytes32 preimage)");
    uint256 private constant COMMITTEE_WORDS = 5; // ceil(MAX_COMMITTEE / Sortition.PER_WORD)
    /// @dev Kept set in stored vote bits (which use bits 0-118 and 128-246), so that slot is never zero.
    uint256 private constant BITS_SENTINEL = uint256(1) << 255;
    /// @dev A revealed vote is `accept | abstain << ABSTAIN_SHIFT` (bit a of each: the voter's a-th item).
    uint256 private constant ABSTAIN_SHIFT = 128;
    uint256 private constant ITEM_MASK = (uint256(1) << ABSTAIN_SHIFT) - 1;

    // ------------------------------------------------------------ parameters

    uint32 private immutable _totalRounds;
    uint256 private immutable _minStake;
    /// @dev A data contract whose code is 0x00 followed by abi.encode(config): {config} returns it as it is.
    address private immutable _configData;
    uint16 private immutable _proposerShareBps;
    uint16 private immutable _maxCommittee;
    uint16 private immutable _slashRateBps;
    uint16 private immutable _voterRewardBps;
    VoteMode private immutable _voteMode;
    bool private immutable _stakeWeighted;
    uint16 private immutable _reviewersPerUpdate;
    uint16 private immutable _quorum;
    uint16 private immutable _canaryRateBps;
    uint64 private immutable _trainingDuration;
    uint64 private immutable _votingDuration;
    uint64 private immutable _revealDuration;
    uint64 private immutable _exitDelay;
    address private immutable _coordinator;

    // ----------------------------------------------------------------- state

    /// @dev The current round (one slot, rewritten by every round), plus the member-bitmap width.
    struct Header {
        uint32 round;
        Phase phase;
        uint32 deadline;
        uint8 numProposers;
        uint8 numVoters;
        uint8 reviewers;
        uint8 memberWords; // bitmap words in use (1..4): persists across rounds
        bool globalPublished;
        bool candidateProposed;
        bool openNext; // aggregate mode: the finalizing transaction opens the next round
        uint128 committed; // bit i: proposer i committed
    }

    /// @dev Vote progress of a round in one slot, tagged with the round so that it needs no reset at opening.
    struct Votes {
        uint120 committed;
        uint120 revealed;
        uint16 round; // the low 16 bits of the round these masks belong to
    }

    /// @dev What one batch (or direct call) reads of the round, written back once at its end.
    struct Cache {
        Header h;
        uint256[] committee;
        Votes v;
        bytes32 digest;
        bool headerDirty;
        bool votesDirty;
    }

    /// @dev The reveals of the batch that may finalize the round: they need not be stored.
    struct Reveals {
        bytes32[] commitments; // by voter seat, from the committed list checked against the digest
        uint120 mask; // voters revealed by this batch (their bits and accounts: {Settlement.stashReveal})
        uint256 claimedProposers; // proposer accounts the relayer brought ({Settlement.stashProposer})
    }

    /// @notice Wei in the reward pool, paid out over the remaining rounds.
    uint256 public rewardPool;
    /// @notice Hash of the current global model.
    bytes32 public globalModelHash;

    Header private _header;
    Votes private _votes;
    bytes32 private _voteDigest;
    bytes32 private _candidate;
    uint256[COMMITTEE_WORDS] private _committee;
    uint256[MAX_COMMITTEE] private _voteBits; // by voter seat, only for reveals of a batch that did not finalize
    Registry.Book private _book;

    modifier onlyCoordinator() {
        if (msg.sender != _coordinator) revert NotCoordinator(msg.sender);
        _;
    }

    /**
     * @notice Creates a task; any value sent seeds the reward pool.
     * @param cfg the immutable task parameters, see {TaskConfig}
     */
    constructor(TaskConfig memory cfg) payable EIP712("FLTask", "2") {
        _validateConfig(cfg);
        _configData = address(new TaskCodeStore(abi.encode(cfg)));
        _totalRounds = cfg.totalRounds;
        _minStake = cfg.minStake;
        _proposerShareBps = cfg.proposerShareBps;
        _maxCommittee = cfg.maxCommittee;
        _slashRateBps = cfg.slashRateBps;
        _voterRewardBps = cfg.voterRewardBps;
        _voteMode = cfg.voteMode;
        _stakeWeighted = cfg.stakeWeighted;
        _reviewersPerUpdate = cfg.reviewersPerUpdate;
        _quorum = cfg.quorum;
        _canaryRateBps = cfg.canaryRateBps;
        _trainingDuration = cfg.trainingDuration;
        _votingDuration = cfg.votingDuration;
        _revealDuration = cfg.revealDuration;
        _exitDelay = cfg.exitDelay;
        _coordinator = cfg.coordinator;
        globalModelHash = cfg.initialModelHash;
        _header.memberWords = 1;
        if (msg.value > 0) {
            rewardPool = msg.value;
            emit PoolFunded(msg.sender, msg.value);
        }
    }

    function _validateConfig(TaskConfig memory cfg) private pure {
        if (cfg.initialModelHash == bytes32(0)) revert InvalidParameter("initialModelHash");
        if (cfg.totalRounds == 0) revert InvalidParameter("totalRounds");
        if (cfg.minStake == 0 || cfg.minStake > type(uint96).max) revert InvalidParameter("minStake");
        if (cfg.proposerShareBps == 0 || cfg.proposerShareBps >= BPS) revert InvalidParameter("proposerShareBps");
        if (cfg.maxCommittee < 2 || cfg.maxCommittee > MAX_COMMITTEE) revert InvalidParameter("maxCommittee");
        if (cfg.slashRateBps > BPS) revert InvalidParameter("slashRateBps");
        if (cfg.voteToleranceBps >= BPS) revert InvalidParameter("voteToleranceBps");
        if (cfg.voteRule == bytes32(0)) revert InvalidParameter("voteRule");
        if (cfg.voterRewardBps > BPS) revert InvalidParameter("voterRewardBps");
        if (cfg.reviewersPerUpdate >= MAX_COMMITTEE) revert InvalidParameter("reviewersPerUpdate");
        uint256 reviewers = cfg.reviewersPerUpdate == 0 || cfg.reviewersPerUpdate >= cfg.maxCommittee
            ? cfg.maxCommittee - 1
            : cfg.reviewersPerUpdate;
        if (cfg.quorum == 0 || cfg.quorum > reviewers) revert InvalidParameter("quorum");
        if (cfg.canaryRateBps > BPS) revert InvalidParameter("canaryRateBps");
        if (cfg.trainingDuration == 0) revert InvalidParameter("trainingDuration");
        if (cfg.votingDuration == 0) revert InvalidParameter("votingDuration");
        if (cfg.revealDuration == 0) revert InvalidParameter("revealDuration");
        if (cfg.exitDelay > type(uint32).max) revert InvalidParameter("exitDelay");
        if (cfg.coordinator == address(0)) revert InvalidParameter("coordinator");
    }

    // ============================================================ membership

    /**
     * @notice Joins the task, staking `msg.value` wei (at least the minimum stake); takes the lowest free index.
     */
    function register() external payable {
        uint256 index = _book.register(msg.sender, msg.value, _minStake);
        if (index >> 8 >= _header.memberWords) _header.memberWords = uint8((index >> 8) + 1);
    }

    /**
     * @notice Adds `msg.value` wei to the caller's stake (which may make it eligible again).
     */
    function addStake() external payable {
        _book.addStake(msg.sender, msg.value, _minStake);
    }

    /**
     * @notice Adds `msg.value` wei to the reward pool.
     */
    function fundPool() external payable {
        if (msg.value == 0) revert ZeroAmount();
        rewardPool += msg.value;
        emit PoolFunded(msg.sender, msg.value);
    }

    /**
     * @notice Asks to leave: the caller is no longer drawn and may complete the exit after the exit delay.
     */
    function requestExit() external {
        _revertOnError(_requestExit(msg.sender));
    }

    /**
     * @notice Leaves the task after the exit delay, outside any unfinished round the caller is part of.
     * The stake is credited to the caller's balance, paid by {withdraw}.
     */
    function completeExit() external {
        _revertOnError(_completeExit(msg.sender));
    }

    /**
     * @notice Pays the caller everything credited to it (rewards and released stake).
     */
    function withdraw() external nonReentrant {
        _revertOnError(_withdraw(msg.sender));
    }

    // ================================================================ rounds

    /**
     * @notice Opens the next round and draws its proposers and voters from the eligible members.
     * @dev Seed: keccak256(prevrandao, round, previous global hash, this contract). Fine on a local
     * chain; a production chain should mix in a VRF output (see docs/decisions.md).
     * @return round the number of the opened round
     */
    function openRound() external onlyCoordinator returns (uint256 round) {
        return _openRound(_header);
    }

    /**
     * @notice Publishes the global model of the finalized `round` (per-update mode) and opens the next round,
     * in one transaction.
     * @return next the number of the opened round
     */
    function publishAndOpen(uint256 round, bytes32 modelHash) external onlyCoordinator returns (uint256 next) {
        Header memory h = _header;
        _revertOnError(_checkPublish(h, round, modelHash));
        _publish(h, modelHash);
        return _openRound(h);
    }

    /**
     * @notice Publishes the hash of the aggregate of the accepted updates of `round` (per-update mode).
     */
    function publishGlobal(uint256 round, bytes32 modelHash) external onlyCoordinator {
        Header memory h = _header;
        _revertOnError(_checkPublish(h, round, modelHash));
        _publish(h, modelHash);
        _header = h;
    }

    /**
     * @notice Commits the caller's update of `round`: keccak256 of its canonical bytes and its example count.
     */
    function commitUpdate(uint256 round, bytes32 updateHash, uint256 numExamples) external {
        Cache memory c = _load(false);
        uint256 seat = _seatOf(c, msg.sender, Role.Proposer);
        _revertOnError(_commitUpdate(c, msg.sender, round, updateHash, numExamples, seat));
        _store(c);
    }

    /**
     * @notice Proposes the hash of the aggregated candidate of `round` and opens voting (aggregate mode).
     * With `openNext`, the transaction that finalizes `round` also opens the next round (saving the
     * coordinator a transaction); the coordinator asks for it only when it will play that round.
     */
    function proposeAggregate(uint256 round, bytes32 candidateHash, bool openNext) external onlyCoordinator {
        if (_voteMode != VoteMode.Aggregate) revert WrongVoteMode(_voteMode);
        Header memory h = _header;
        _revertOnError(_checkPhase(h, round, Phase.Training));
        if (h.committed == 0) revert NoUpdates(round);
        if (candidateHash == bytes32(0)) revert ZeroHash();
        _candidate = candidateHash;
        h.candidateProposed = true;
        h.openNext = openNext;
        emit AggregateProposed(round, candidateHash);
        _enterPhase(h, Phase.Voting, _votingDuration);
        _header = h;
    }

    /**
     * @notice Commits the caller's hidden vote of `round`, see {voteCommitment}.
     */
    function commitVote(uint256 round, bytes32 commitment) external {
        Cache memory c = _load(true);
        uint256 seat = _seatOf(c, msg.sender, Role.Voter);
        _revertOnError(_commitVote(c, msg.sender, round, commitment, seat));
        _store(c);
    }

    /**
     * @notice Reveals the caller's vote of `round`: bit a accepts its a-th assigned update (per-update mode,
     * see {itemsOf}) or, bit 0, the candidate (aggregate mode); bit 128 + a abstains on it instead. `committed` are the round's vote
     * commitments in commit order, as {VoteCommitted} announced them; the last reveal finalizes the round.
     */
    function revealVote(uint256 round, uint256 bits, bytes32 salt, CommittedVote[] calldata committed) external {
        Cache memory c = _load(true);
        Reveals memory rv = _checkCommitted(c, committed);
        uint256 seat = _seatOf(c, msg.sender, Role.Voter);
        _revertOnError(_revealVote(c, rv, msg.sender, round, bits, salt, seat));
        _closeReveals(c, rv);
    }

    /**
     * @notice Sets the caller's canary seal, the last unrevealed link of its canary hash chain; it counts
     * from the next round (fedledger's contracts/canary.py).
     */
    function setCanarySeal(bytes32 seal) external {
        _book.setCanarySeal(msg.sender, seal, _header.round);
    }

    /**
     * @notice Declares the caller's committed update of `round` a canary (per-update mode): `preimage`
     * opens its seal and wins the round's lottery, and the coordinator signed Canary(proposer, round,
     * preimage) (`r`/`vs`, compact) after checking that the update is the salted copy of the global
     * model the preimage makes. Only between the last vote commitment and the first reveal: no reviewer
     * can change its vote, and the proposer sees none. See {Settlement} for what a canary settles.
     */
    function declareCanary(uint256 round, bytes32 preimage, bytes32 r, bytes32 vs) external {
        if (_voteMode != VoteMode.PerUpdate) revert WrongVoteMode(_voteMode);
        Cache memory c = _load(true);
        _revertOnError(_checkPhase(c.h, round, Phase.Revealing));
        if (c.v.revealed != 0) revert CanaryWindowClosed(round);
        uint256 seat = _seatOf(c, msg.sender, Role.Proposer);
        if (seat >= c.h.numProposers || (c.h.committed >> seat) & 1 == 0) revert NotProposer(round, msg.sender);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(CANARY_TYPEHASH, msg.sender, round, preimage)));
        _revertOnError(_checkSigner(_coordinator, digest, r, vs));
        _book.declareCanary(msg.sender, preimage, round, globalModelHash, _canaryRateBps);
    }

    /**
     * @notice Moves `round` out of Training or Voting once everyone has acted or the deadline passed.
     * Anyone may call it. When nothing was committed to judge, voting is skipped.
     */
    function advancePhase(uint256 round) external {
        Cache memory c = _load(true);
        Header memory h = c.h;
        if (round == 0 || round != h.round) revert WrongRound(round, h.round);
        if (h.phase == Phase.Training) {
            if (block.timestamp <= h.deadline) revert PhaseNotOver(h.deadline);
            if (_judgedMask(h) == 0) _enterPhase(h, Phase.Revealing, 0);
            else _enterPhase(h, Phase.Voting, _votingDuration);
        } else if (h.phase == Phase.Voting) {
            if (c.v.committed != _allSeats(h.numVoters) && block.timestamp <= h.deadline) {
                revert PhaseNotOver(h.deadline);
            }
            _enterPhase(h, Phase.Revealing, _revealDuration);
        } else {
            revert WrongPhase(Phase.Voting, h.phase);
        }
        _header = h;
    }

    /**
     * @notice Tallies `round`, credits rewards and slashes stake. Anyone may call it once every
     * committed vote is revealed or the reveal deadline passed (the last relayed reveal does it itself).
     */
    function finalizeRound(uint256 round) external {
        Cache memory c = _load(true);
        _revertOnError(_checkPhase(c.h, round, Phase.Revealing));
        if ((c.v.revealed) != c.v.committed && block.timestamp <= c.h.deadline) {
            revert PhaseNotOver(c.h.deadline);
        }
        _finalize(c, _noReveals(c.h.numVoters));
        _store(c);
    }

    // ======================================================= relayed batches

    /**
     * @notice Relays signed update commitments; an invalid entry is skipped with {ActionRejected}.
     * @dev The loop takes a fast path for a valid entry; any other entry goes through the same
     * checked function as the direct form, which names the reason (and would apply an entry the
     * fast path was too strict for).
     */
    function commitUpdatesBySig(CommitUpdateRequest[] calldata requests) external {
        Cache memory c = _load(false);
        uint256 round = c.h.round;
        uint256 numProposers = c.h.numProposers;
        bytes32 domain = _domainSeparatorV4();
        for (uint256 k = 0; k < requests.length; ++k) {
            CommitUpdateRequest calldata q = requests[k];
            address proposer = q.proposer;
            uint256 seat = q.seat;
            uint256 committed = c.h.committed;
            uint256 offset;
            assembly ("memory-safe") {
                offset := q
            }
            if (
                c.h.phase == Phase.Training && q.round == round && seat < numProposers
                    && (committed >> seat) & 1 == 0 && q.updateHash != bytes32(0) && q.numExamples != 0
                    && q.numExamples <= type(uint64).max
                    && _seatedSigner(COMMIT_UPDATE_TYPEHASH, offset, 4, domain, c.committee, seat) == proposer
            ) {
                c.h.committed = uint128(committed | (uint256(1) << seat));
                c.headerDirty = true;
                emit UpdateCommitted(round, proposer, q.updateHash, q.numExamples);
                _closeTraining(c);
                continue;
            }
            bytes32 digest = _hashTypedDataV4(
                keccak256(abi.encode(COMMIT_UPDATE_TYPEHASH, proposer, q.round, q.updateHash, q.numExamples))
            );
            bytes memory err = _checkSigner(proposer, digest, q.r, q.vs);
            if (err.length == 0) err = _commitUpdate(c, proposer, q.round, q.updateHash, q.numExamples, seat);
            if (err.length != 0) emit ActionRejected(q.round, proposer, Action.CommitUpdate, err);
        }
        _store(c);
    }

    /**
     * @notice Relays signed vote commitments; an invalid entry is skipped with {ActionRejected}.
     */
    function commitVotesBySig(CommitVoteRequest[] calldata requests) external {
        Cache memory c = _load(true);
        uint256 round = c.h.round;
        uint256 numVoters = c.h.numVoters;
        bytes32 domain = _domainSeparatorV4();
        for (uint256 k = 0; k < requests.length; ++k) {
            CommitVoteRequest calldata q = requests[k];
            address voter = q.voter;
            uint256 seat = q.seat;
            uint256 committed = c.v.committed;
            uint256 offset;
            assembly ("memory-safe") {
                offset := q
            }
            if (
                c.h.phase == Phase.Voting && q.round == round && seat < numVoters && (committed >> seat) & 1 == 0
                    && q.commitment != bytes32(0)
                    && _seatedSigner(COMMIT_VOTE_TYPEHASH, offset, 3, domain, c.committee, c.h.numProposers + seat)
                        == voter
            ) {
                _recordVoteCommit(c, voter, seat, q.commitment);
                continue;
            }
            bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(COMMIT_VOTE_TYPEHASH, voter, q.round, q.commitment)));
            bytes memory err = _checkSigner(voter, digest, q.r, q.vs);
            if (err.length == 0) err = _commitVote(c, voter, q.round, q.commitment, seat);
            if (err.length != 0) emit ActionRejected(q.round, voter, Action.CommitVote, err);
        }
        _store(c);
    }

    /**
     * @notice Relays signed vote reveals; an invalid entry is skipped with {ActionRejected}. The batch
     * that brings the last committed vote's reveal finalizes the round.
     * @param committed the round's vote commitments in commit order, checked against {voteDigest}
     * (a wrong list reverts the batch: it is the relayer's error, not a signer's)
     * @param proposers the round's proposers in seat order, which spares the finalization reading
     * them (optional: a missing or wrong entry is read from storage instead)
     */
    function revealVotesBySig(
        RevealVoteRequest[] calldata requests,
        CommittedVote[] calldata committed,
        address[] calldata proposers
    ) external {
        Cache memory c = _load(true);
        Reveals memory rv = _checkCommitted(c, committed);
        uint256 claimed = proposers.length < c.h.numProposers ? proposers.length : c.h.numProposers;
        for (uint256 s = 0; s < claimed; ++s) {
            Settlement.stashProposer(s, proposers[s]);
        }
        rv.claimedProposers = claimed;
        uint256 round = c.h.round;
        uint256 numVoters = c.h.numVoters;
        bytes32 candidate = c.h.candidateProposed ? _candidate : bytes32(0);
        bytes32 domain = _domainSeparatorV4();
        for (uint256 k = 0; k < requests.length; ++k) {
            RevealVoteRequest calldata q = requests[k];
            address voter = q.voter;
            uint256 seat = q.seat;
            uint256 offset;
            assembly ("memory-safe") {
                offset := q
            }
            if (
                c.h.phase == Phase.Revealing && q.round == round && seat < numVoters
                    && (c.v.committed >> seat) & 1 == 1 && (c.v.revealed >> seat) & 1 == 0
                    && _validVote(q.bits, _numItems(c.h, seat))
                    && _voteCommitment(round, candidate, q.bits, q.salt, voter) == rv.commitments[seat]
                    && _seatedSigner(REVEAL_VOTE_TYPEHASH, offset, 4, domain, c.committee, c.h.numProposers + seat)
                        == voter
            ) {
                _recordReveal(c, rv, voter, seat, q.bits);
                emit VoteRevealed(round, voter, q.bits, q.salt);
                continue;
            }
            bytes32 digest =
                _hashTypedDataV4(keccak256(abi.encode(REVEAL_VOTE_TYPEHASH, voter, q.round, q.bits, q.salt)));
            bytes memory err = _checkSigner(voter, digest, q.r, q.vs);
            if (err.length == 0) err = _revealVote(c, rv, voter, q.round, q.bits, q.salt, seat);
            if (err.length != 0) emit ActionRejected(q.round, voter, Action.RevealVote, err);
        }
        _closeReveals(c, rv);
    }

    /**
     * @notice Relays signed exit requests; an invalid entry is skipped with {ActionRejected}.
     */
    function requestExitsBySig(MemberRequest[] calldata requests) external {
        _memberActions(requests, Action.RequestExit);
    }

    /**
     * @notice Relays signed exit completions; an invalid entry is skipped with {ActionRejected}.
     */
    function completeExitsBySig(MemberRequest[] calldata requests) external {
        _memberActions(requests, Action.CompleteExit);
    }

    /**
     * @notice Relays signed withdrawals, paying each signer; a failed entry is skipped with {ActionRejected}.
     */
    function withdrawBySig(MemberRequest[] calldata requests) external nonReentrant {
        _memberActions(requests, Action.Withdraw);
    }

    // ================================================================= views

    /// @notice The immutable task parameters.
    function config() external view returns (TaskConfig memory) {
        address data = _configData;
        assembly ("memory-safe") {
            let size := sub(extcodesize(data), 1) // skip the STOP byte
            let p := mload(0x40)
            extcodecopy(data, p, 1, size)
            return(p, size) // exactly the ABI encoding of the returned struct
        }
    }

    /// @notice The coordinator of the task.
    function coordinator() external view returns (address) {
        return _coordinator;
    }

    /// @notice Number of the latest opened round; rounds count from 1, 0 means none yet.
    function currentRound() external view returns (uint256) {
        return _header.round;
    }

    /**
     * @notice The public state of `round`, which must be the current round (or 0 before the first):
     * earlier rounds live in the events.
     */
    function getRound(uint256 round) external view returns (RoundInfo memory info) {
        Header memory h = _header;
        if (round != h.round) revert WrongRound(round, h.round);
        Votes memory v = _roundVotes(h);
        uint128 revealed = v.revealed;
        info = RoundInfo({
            round: h.round,
            phase: h.phase,
            deadline: h.deadline,
            numProposers: h.numProposers,
            numVoters: h.numVoters,
            reviewers: h.reviewers,
            numUpdates: uint16(Sortition.popcount(h.committed)),
            numVoteCommits: uint16(Sortition.popcount(v.committed)),
            numReveals: uint16(Sortition.popcount(revealed)),
            globalPublished: h.globalPublished,
            committedMask: h.committed,
            voteCommittedMask: v.committed,
            revealedMask: revealed,
            candidate: h.candidateProposed ? _candidate : bytes32(0),
            voteDigest: v.committed == 0 ? bytes32(0) : _voteDigest
        });
    }

    /// @notice The proposers and voters of the current round, in seat order.
    function committee() external view returns (address[] memory proposers, address[] memory voters) {
        Header memory h = _header;
        uint256[] memory packed = _loadCommittee(h);
        proposers = _book.committeeAccounts(packed, 0, h.numProposers);
        voters = _book.committeeAccounts(packed, h.numProposers, h.numVoters);
    }

    /// @notice The role of `account` in the current round `round` and its seat among that role's members.
    function roleOf(uint256 round, address account) external view returns (Role role, uint256 seat) {
        // slither-disable-next-line uninitialized-local
        Cache memory c; // zeroed memory, filled below
        c.h = _header;
        if (round != c.h.round) revert WrongRound(round, c.h.round);
        c.committee = _loadCommittee(c.h);
        bool found;
        (found, seat) = _findSeat(c, account, Role.Proposer);
        if (found) return (Role.Proposer, seat);
        (found, seat) = _findSeat(c, account, Role.Voter);
        if (found) return (Role.Voter, seat);
        return (Role.None, 0);
    }

    /// @notice The proposer seats voter `voterSeat` of the current round reviews, in bit order of its vote.
    function itemsOf(uint256 voterSeat) external view returns (uint256[] memory items) {
        Header memory h = _header;
        if (voterSeat >= h.numVoters) return items;
        if (_voteMode == VoteMode.Aggregate) return new uint256[](1);
        items = new uint256[](Sortition.itemCount(voterSeat, h.numProposers, h.numVoters, h.reviewers));
        for (uint256 a = 0; a < items.length; ++a) {
            items[a] = Sortition.itemOf(voterSeat, a, h.numVoters, h.reviewers);
        }
    }

    /// @notice The canary seal of `account` (low 224 bits) and, above them, the round it was set in.
    function canarySeal(address account) external view returns (uint256) {
        return _book.canarySeals[account];
    }

    /// @notice Stake, exit state, credited balance, signature nonce and member index of `account`.
    function getMember(address account) external view returns (MemberInfo memory info) {
        uint256 m = _book.members[account];
        info = MemberInfo({
            registered: m.registered(),
            exiting: m.exiting(),
            exitReadyAt: uint64(m.exitReadyAt()),
            stake: m.stake(),
            owed: m.owed(),
            nonce: nonces(account),
            index: m.index(),
            standing: m.standing()
        });
    }

    /// @notice The member holding `index`, or the zero address for a free index.
    function memberAt(uint256 index) external view returns (address) {
        if (index >= MAX_MEMBERS || (_book.occupied[index >> 8] >> (index & 255)) & 1 == 0) return address(0);
        return _book.accountAt[index];
    }

    /// @notice All members, by index.
    function members() external view returns (address[] memory) {
        return _book.accounts(false);
    }

    /// @notice Members that the next round may draw (not exiting, staking at least the minimum), by index.
    function eligibleMembers() external view returns (address[] memory) {
        return _book.accounts(true);
    }

    /// @notice The eligibility bitmap the next draw uses (bit i of word w: member index 256 w + i).
    function eligibility() public view returns (uint256[] memory words) {
        words = new uint256[](_header.memberWords);
        for (uint256 w = 0; w < words.length; ++w) {
            words[w] = _book.eligible[w];
        }
    }

    /**
     * @notice The committee (member indices in draw order) the current eligible members would form under `seed`.
     * @dev {openRound} draws with exactly this function, so anyone can re-check a draw.
     */
    function previewSortition(bytes32 seed) external view returns (address[] memory proposers, address[] memory voters) {
        uint256[] memory eligible = eligibility();
        uint256 count = _countEligible(eligible);
        if (count < 2) revert NotEnoughParticipants(count);
        (uint256[] memory drawn, uint256 numProposers) = _draw(eligible, count, seed);
        uint256[] memory packed = Sortition.pack(drawn);
        proposers = _book.committeeAccounts(packed, 0, numProposers);
        voters = _book.committeeAccounts(packed, numProposers, drawn.length - numProposers);
    }

    /**
     * @notice The commitment a voter must commit to reveal `bits` with `salt` in `round`:
     * keccak256(abi.encode(task, round, candidate, bits, salt, voter)); candidate is zero in per-update mode.
     */
    function voteCommitment(uint256 round, uint256 bits, bytes32 salt, address voter) public view returns (bytes32) {
        return _voteCommitment(round, _header.candidateProposed ? _candidate : bytes32(0), bits, salt, voter);
    }

    /**
     * @notice Rolling digest of the current round's vote commitments: d_0 = bytes32(round),
     * d_k = keccak256(abi.encode(d_{k-1}, seat, commitment)) in commit order; zero before the first.
     */
    function voteDigest() external view returns (bytes32) {
        return _roundVotes(_header).committed == 0 ? bytes32(0) : _voteDigest;
    }

    // ====================================================== internal actions
    // Each returns the ABI-encoded custom error and changes nothing when a check fails.

    function _requestExit(address account) internal returns (bytes memory) {
        return _book.requestExit(account, _exitDelay);
    }

    function _completeExit(address account) internal returns (bytes memory) {
        Header memory h = _header;
        uint256 m = _book.members[account];
        bool active = h.round != 0 && h.phase != Phase.Finalized && m.registered() && _isSeated(h, m.index());
        return _book.completeExit(account, active ? h.round : 0);
    }

    function _withdraw(address account) internal returns (bytes memory) {
        return _book.withdraw(account);
    }

    function _commitUpdate(
        Cache memory c,
        address proposer,
        uint256 round,
        bytes32 updateHash,
        uint256 numExamples,
        uint256 seat
    ) internal returns (bytes memory) {
        bytes memory err = _checkPhase(c.h, round, Phase.Training);
        if (err.length != 0) return err;
        if (seat >= c.h.numProposers || !_holdsSeat(c, proposer, seat)) {
            return _error(NotProposer.selector, round, uint160(proposer));
        }
        uint120 bit = uint120(1) << seat;
        if (c.h.committed & bit != 0) return _error(AlreadyActed.selector, round, uint160(proposer));
        if (updateHash == bytes32(0)) return _error(ZeroHash.selector);
        if (numExamples == 0 || numExamples > type(uint64).max) {
            return _error(InvalidExampleCount.selector, numExamples);
        }
        c.h.committed |= bit;
        c.headerDirty = true;
        emit UpdateCommitted(round, proposer, updateHash, numExamples);
        _closeTraining(c);
        return "";
    }

    function _commitVote(Cache memory c, address voter, uint256 round, bytes32 commitment, uint256 seat)
        internal
        returns (bytes memory)
    {
        bytes memory err = _checkPhase(c.h, round, Phase.Voting);
        if (err.length != 0) return err;
        if (seat >= c.h.numVoters || !_holdsSeat(c, voter, c.h.numProposers + seat)) {
            return _error(NotVoter.selector, round, uint160(voter));
        }
        uint120 bit = uint120(1) << seat;
        if (c.v.committed & bit != 0) return _error(AlreadyActed.selector, round, uint160(voter));
        if (commitment == bytes32(0)) return _error(ZeroHash.selector);
        _recordVoteCommit(c, voter, seat, commitment);
        return "";
    }

    function _revealVote(
        Cache memory c,
        Reveals memory rv,
        address voter,
        uint256 round,
        uint256 bits,
        bytes32 salt,
        uint256 seat
    ) internal returns (bytes memory) {
        bytes memory err = _checkPhase(c.h, round, Phase.Revealing);
        if (err.length != 0) return err;
        if (seat >= c.h.numVoters || !_holdsSeat(c, voter, c.h.numProposers + seat)) {
            return _error(NotVoter.selector, round, uint160(voter));
        }
        uint120 bit = uint120(1) << seat;
        if (c.v.committed & bit == 0) return _error(NoVoteCommitted.selector, round, uint160(voter));
        if (c.v.revealed & bit != 0) return _error(AlreadyActed.selector, round, uint160(voter));
        uint256 numItems = _numItems(c.h, seat);
        if (!_validVote(bits, numItems)) return _error(InvalidVoteBits.selector, bits, numItems);
        bytes32 candidate = c.h.candidateProposed ? _candidate : bytes32(0);
        bytes32 actual = _voteCommitment(round, candidate, bits, salt, voter);
        if (actual != rv.commitments[seat]) {
            return _error(CommitmentMismatch.selector, uint256(rv.commitments[seat]), uint256(actual));
        }
        _recordReveal(c, rv, voter, seat, bits);
        emit VoteRevealed(round, voter, bits, salt);
        return "";
    }

    // ============================================================ settlement

    /// @dev Tallies, pays and slashes (the linked {Settlement} library), then closes the round (DESIGN §3).
    function _finalize(Cache memory c, Reveals memory rv) internal {
        Header memory h = c.h;
        Settlement.RoundData memory d = Settlement.RoundData({
            round: h.round,
            numProposers: h.numProposers,
            numVoters: h.numVoters,
            reviewers: h.reviewers,
            judged: _judgedMask(h),
            committed: h.committed,
            voteCommitted: c.v.committed,
            revealed: c.v.revealed,
            revealedNow: rv.mask,
            claimedProposers: rv.claimedProposers
        });
        Settlement.Rules memory rules = Settlement.Rules({
            voteMode: _voteMode,
            stakeWeighted: _stakeWeighted,
            slashRateBps: _slashRateBps,
            voterRewardBps: _voterRewardBps,
            minStake: _minStake,
            totalRounds: _totalRounds,
            quorum: _quorum
        });
        (uint256 outcomes, uint256 pool) = Settlement.settle(_book, _voteBits, _committee, rules, d, rewardPool);
        rewardPool = pool;

        h.phase = Phase.Finalized;
        h.deadline = uint32(block.timestamp);
        c.headerDirty = true;
        emit PhaseAdvanced(h.round, Phase.Finalized, block.timestamp);

        if (_voteMode == VoteMode.Aggregate) {
            _publish(h, outcomes & 1 == 1 ? _candidate : globalModelHash);
            _openNextIfAsked(h);
        } else if (outcomes == 0) {
            _publish(h, globalModelHash); // nothing accepted: the global model stays
        }
    }

    // ================================================================= round state

    function _openRound(Header memory h) internal returns (uint256 round) {
        if (h.round != 0 && (h.phase != Phase.Finalized || !h.globalPublished)) revert RoundNotClosed(h.round);
        if (h.round >= _totalRounds) revert TaskCompleted(_totalRounds);
        uint256[] memory eligible = eligibility();
        uint256 count = _countEligible(eligible);
        if (count < 2) revert NotEnoughParticipants(count);
        return _open(h, eligible, count);
    }

    /// @dev Aggregate mode with `openNext`: the next round opens with the finalization, when it can.
    function _openNextIfAsked(Header memory h) internal {
        if (!h.openNext || h.round >= _totalRounds) return;
        uint256[] memory eligible = eligibility();
        uint256 count = _countEligible(eligible);
        if (count >= 2) _open(h, eligible, count); // else the coordinator opens it once members are back
    }

    function _countEligible(uint256[] memory eligible) internal pure returns (uint256 count) {
        for (uint256 w = 0; w < eligible.length; ++w) {
            count += Sortition.popcount(eligible[w]);
        }
    }

    /// @dev Draws and records the next round; `h` (the closed round, in memory) becomes the new round.
    function _open(Header memory h, uint256[] memory eligible, uint256 count) internal returns (uint256 round) {
        round = uint256(h.round) + 1;
        bytes32 seed = keccak256(abi.encode(block.prevrandao, round, globalModelHash, address(this)));
        (uint256[] memory drawn, uint256 numProposers) = _draw(eligible, count, seed);
        uint256 numVoters = drawn.length - numProposers;
        uint256[] memory packed = Sortition.pack(drawn);
        for (uint256 w = 0; w < packed.length; ++w) {
            _committee[w] = packed[w];
        }
        uint256 reviewers = _voteMode == VoteMode.PerUpdate
            ? Sortition.effectiveReviewers(_reviewersPerUpdate, numProposers, numVoters)
            : numVoters;
        uint256 deadline = block.timestamp + _trainingDuration;
        h.round = SafeCast.toUint32(round);
        h.phase = Phase.Training;
        h.deadline = SafeCast.toUint32(deadline);
        h.numProposers = uint8(numProposers);
        h.numVoters = uint8(numVoters);
        h.reviewers = uint8(reviewers);
        h.globalPublished = false;
        h.candidateProposed = false;
        h.openNext = false;
        h.committed = 0;
        _header = h;
        emit RoundOpened(round, seed, numProposers, numVoters, reviewers, packed, eligibility(), deadline);
    }

    /// @dev Draws the committee from `eligible` (which it clears as it draws); member indices and proposer count.
    function _draw(uint256[] memory eligible, uint256 count, bytes32 seed)
        internal
        view
        returns (uint256[] memory drawn, uint256 numProposers)
    {
        uint256 size = count < _maxCommittee ? count : _maxCommittee;
        drawn = Sortition.draw(eligible, seed, size);
        numProposers = Sortition.proposerCount(size, _proposerShareBps);
    }

    function _checkPublish(Header memory h, uint256 round, bytes32 modelHash) internal view returns (bytes memory) {
        if (_voteMode != VoteMode.PerUpdate) return _error(WrongVoteMode.selector, uint256(_voteMode));
        bytes memory err = _checkPhase(h, round, Phase.Finalized);
        if (err.length != 0) return err;
        if (h.globalPublished) return _error(GlobalAlreadyPublished.selector, round);
        if (modelHash == bytes32(0)) return _error(ZeroHash.selector);
        return "";
    }

    function _publish(Header memory h, bytes32 modelHash) internal {
        globalModelHash = modelHash;
        h.globalPublished = true;
        emit GlobalPublished(h.round, modelHash);
    }

    function _enterPhase(Header memory h, Phase phase, uint256 duration) internal {
        uint256 deadline = block.timestamp + duration;
        h.phase = phase;
        h.deadline = SafeCast.toUint32(deadline);
        emit PhaseAdvanced(h.round, phase, deadline);
    }

    function _load(bool withVotes) internal view returns (Cache memory c) {
        c.h = _header;
        c.committee = _loadCommittee(c.h);
        if (withVotes) {
            c.v = _roundVotes(c.h);
            c.digest = _voteDigest;
        }
    }

    function _store(Cache memory c) internal {
        if (c.headerDirty) _header = c.h;
        if (c.votesDirty) {
            _votes = c.v;
            _voteDigest = c.digest;
        }
    }

    function _loadCommittee(Header memory h) internal view returns (uint256[] memory packed) {
        uint256 seats = uint256(h.numProposers) + h.numVoters;
        packed = new uint256[]((seats + Sortition.PER_WORD - 1) / Sortition.PER_WORD);
        for (uint256 w = 0; w < packed.length; ++w) {
            packed[w] = _committee[w];
        }
    }

    function _roundVotes(Header memory h) internal view returns (Votes memory v) {
        v = _votes;
        if (v.round != uint16(h.round)) v = Votes({committed: 0, revealed: 0, round: uint16(h.round)}); // stale
    }

    /// @dev Checks the committed votes brought with a reveal against the digest; maps them by seat.
    function _checkCommitted(Cache memory c, CommittedVote[] calldata committed)
        internal
        pure
        returns (Reveals memory rv)
    {
        uint256 numVoters = c.h.numVoters;
        rv.commitments = new bytes32[](numVoters);
        if (c.h.phase != Phase.Revealing || c.v.committed == 0) return rv; // every reveal is refused anyway
        bytes32 digest = bytes32(uint256(c.h.round));
        for (uint256 k = 0; k < committed.length; ++k) {
            uint256 seat = committed[k].seat;
            digest = keccak256(abi.encode(digest, seat, committed[k].commitment));
            if (seat < numVoters) rv.commitments[seat] = committed[k].commitment;
        }
        if (digest != c.digest) revert VoteDigestMismatch(c.digest, digest);
    }

    /// @dev After reveals: finalize when every committed vote is revealed, else keep this batch's bits.
    function _closeReveals(Cache memory c, Reveals memory rv) internal {
        if (c.h.phase == Phase.Revealing && (c.v.revealed) == c.v.committed && rv.mask != 0) {
            _finalize(c, rv);
        } else {
            for (uint256 j = 0; j < c.h.numVoters; ++j) {
                if ((rv.mask >> j) & 1 == 1) _voteBits[j] = Settlement.stashedBits(j) | BITS_SENTINEL;
            }
        }
        _store(c);
    }

    function _noReveals(uint256 numVoters) internal pure returns (Reveals memory rv) {
        rv.commitments = new bytes32[](numVoters);
    }

    // =============================================================== helpers

    function _checkPhase(Header memory h, uint256 round, Phase expected) internal pure returns (bytes memory) {
        if (round == 0 || round != h.round) return _error(WrongRound.selector, round, h.round);
        if (h.phase != expected) return _error(WrongPhase.selector, uint256(expected), uint256(h.phase));
        return "";
    }

    /// @dev True when `account` is the member at committee position `position` (proposers first, then voters).
    function _holdsSeat(Cache memory c, address account, uint256 position) internal view returns (bool) {
        if (position >= uint256(c.h.numProposers) + c.h.numVoters) return false;
        uint256 m = _book.members[account];
        return m.registered() && Sortition.at(c.committee, position) == m.index();
    }

    /// @dev The seat of `account` in `role` (a scan of the committee, for the direct forms and views).
    function _findSeat(Cache memory c, address account, Role role) internal view returns (bool, uint256) {
        uint256 m = _book.members[account];
        if (!m.registered()) return (false, 0);
        uint256 index = m.index();
        (uint256 first, uint256 end) =
            role == Role.Proposer ? (0, c.h.numProposers) : (c.h.numProposers, uint256(c.h.numProposers) + c.h.numVoters);
        for (uint256 s = first; s < end; ++s) {
            if (Sortition.at(c.committee, s) == index) return (true, s - first);
        }
        return (false, 0);
    }

    /// @dev The seat of `account` in `role`, or an impossible seat (the checked functions then name the error).
    function _seatOf(Cache memory c, address account, Role role) internal view returns (uint256) {
        (bool found, uint256 seat) = _findSeat(c, account, role);
        return found ? seat : type(uint256).max;
    }

    function _isSeated(Header memory h, uint256 index) internal view returns (bool) {
        uint256[] memory packed = _loadCommittee(h);
        uint256 seats = uint256(h.numProposers) + h.numVoters;
        for (uint256 s = 0; s < seats; ++s) {
            if (Sortition.at(packed, s) == index) return true;
        }
        return false;
    }

    /// @dev Per-update mode: the last commitment of a round opens voting.
    function _closeTraining(Cache memory c) internal {
        if (_voteMode == VoteMode.PerUpdate && c.h.committed == _allSeats(c.h.numProposers)) {
            _enterPhase(c.h, Phase.Voting, _votingDuration);
        }
    }

    function _recordVoteCommit(Cache memory c, address voter, uint256 seat, bytes32 commitment) internal {
        uint256 round = c.h.round;
        bytes32 previous = c.v.committed == 0 ? bytes32(round) : c.digest;
        c.digest = keccak256(abi.encode(previous, seat, commitment));
        c.v.committed |= uint120(1) << seat;
        c.votesDirty = true;
        emit VoteCommitted(round, voter, commitment);
        if (c.v.committed == _allSeats(c.h.numVoters)) {
            _enterPhase(c.h, Phase.Revealing, _revealDuration);
            c.headerDirty = true;
        }
    }

    function _recordReveal(Cache memory c, Reveals memory rv, address voter, uint256 seat, uint256 bits) internal {
        uint120 bit = uint120(1) << seat;
        c.v.revealed |= bit;
        c.votesDirty = true;
        rv.mask |= bit;
        Settlement.stashReveal(seat, bits, voter);
    }

    /**
     * @dev Fast path of the batch forms: the account in word 0 of request `q` when it signed the
     * request and is the registered member at committee position `position`; else address(0).
     * The signed fields are the request's first `n` words (the request structs are static, so
     * they lie in calldata as encoded), the compact signature its words `n + 1` and `n + 2` (after
     * the seat). Same rules as EIP712 + ECDSA.tryRecover (low-s only), computed without memory
     * allocation; a request it refuses goes through the checked path, which names the reason.
     * `position` must be below the committee size.
     */
    function _seatedSigner(bytes32 typeHash, uint256 q, uint256 n, bytes32 domain, uint256[] memory committee, uint256 position)
        private
        view
        returns (address signer)
    {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typeHash)
            calldatacopy(add(p, 0x20), q, shl(5, n))
            let structHash := keccak256(p, add(0x20, shl(5, n)))
            mstore(p, shl(240, 0x1901))
            mstore(add(p, 0x02), domain)
            mstore(add(p, 0x22), structHash)
            let digest := keccak256(p, 0x42)
            let r := calldataload(add(q, shl(5, add(n, 1))))
            let vs := calldataload(add(q, shl(5, add(n, 2))))
            let sValue := and(vs, sub(shl(255, 1), 1))
            let claimed := calldataload(q)
            if and(
                iszero(gt(sValue, 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0)),
                and(iszero(shr(160, claimed)), iszero(iszero(claimed)))
            ) {
                mstore(p, digest)
                mstore(add(p, 0x20), add(27, shr(255, vs)))
                mstore(add(p, 0x40), r)
                mstore(add(p, 0x60), sValue)
                mstore(0x00, 0)
                let called := staticcall(gas(), 1, p, 0x80, 0x00, 0x20) // before reading its output
                if and(called, eq(mload(0x00), claimed)) {
                    mstore(0x00, claimed)
                    mstore(0x20, _book.slot) // the members mapping is the book's first field
                    let w := sload(keccak256(0x00, 0x40))
                    let packed := mload(add(committee, shl(5, add(div(position, 25), 1))))
                    let seated := and(shr(mul(10, mod(position, 25)), packed), 0x3ff)
                    if and(shr(255, w), eq(and(shr(224, w), 0x3ff), seated)) { signer := claimed }
                }
            }
        }
    }

    /// @dev The reason (`r`, `vs`) is not `signer`'s signature of the EIP-712 `digest`, or "".
    function _checkSigner(address signer, bytes32 digest, bytes32 r, bytes32 vs) internal pure returns (bytes memory) {
        // slither-disable-next-line unused-return
        (address recovered,,) = ECDSA.tryRecover(digest, r, vs);
        if (recovered != signer || signer == address(0)) {
            return _error(InvalidSigner.selector, uint160(signer), uint160(recovered));
        }
        return "";
    }

    function _checkMemberSignature(bytes32 typeHash, MemberRequest calldata q) internal view returns (bytes memory) {
        if (block.timestamp > q.deadline) return _error(ExpiredSignature.selector, q.deadline);
        bytes32 structHash = keccak256(abi.encode(typeHash, q.member, q.nonce, q.deadline));
        bytes memory err = _checkSigner(q.member, _hashTypedDataV4(structHash), q.r, q.vs);
        if (err.length != 0) return err;
        uint256 current = nonces(q.member);
        if (q.nonce != current) return _error(InvalidAccountNonce.selector, uint160(q.member), current);
        return "";
    }

    /// @dev One loop for the three signed membership actions; a signer's nonce is used only when applied.
    /// Its callers are nonReentrant, so a withdrawal's receiver cannot re-enter between the transfer
    /// and the action's event.
    // slither-disable-next-line reentrancy-eth
    function _memberActions(MemberRequest[] calldata requests, Action action) private {
        bytes32 typeHash = action == Action.RequestExit
            ? REQUEST_EXIT_TYPEHASH
            : action == Action.CompleteExit ? COMPLETE_EXIT_TYPEHASH : WITHDRAW_TYPEHASH;
        for (uint256 k = 0; k < requests.length; ++k) {
            MemberRequest calldata q = requests[k];
            bytes memory err = _checkMemberSignature(typeHash, q);
            if (err.length == 0) {
                if (action == Action.RequestExit) err = _requestExit(q.member);
                else if (action == Action.CompleteExit) err = _completeExit(q.member);
                else err = _withdraw(q.member);
            }
            _settleMemberAction(q.member, action, err);
        }
    }

    /// @dev A relayed membership action consumes the signer's nonce only when it was applied.
    function _settleMemberAction(address signer, Action action, bytes memory err) internal {
        if (err.length == 0) _useNonce(signer);
        else emit ActionRejected(_header.round, signer, action, err);
    }

    function _voteCommitment(uint256 round, bytes32 candidate, uint256 bits, bytes32 salt, address voter)
        internal
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(address(this), round, candidate, bits, salt, voter));
    }

    /// @dev Items judged in a round: the committed proposers (per-update) or the candidate (aggregate).
    function _judgedMask(Header memory h) internal view returns (uint256) {
        if (_voteMode == VoteMode.PerUpdate) return h.committed;
        return h.candidateProposed ? 1 : 0;
    }

    /// @dev Number of items voter `seat` judges: its assigned updates, or the one candidate.
    function _numItems(Header memory h, uint256 seat) internal view returns (uint256) {
        if (_voteMode == VoteMode.Aggregate) return 1;
        return Sortition.itemCount(seat, h.numProposers, h.numVoters, h.reviewers);
    }

    /// @dev A revealed vote over `numItems` items: an accept mask (low 128 bits) and a disjoint abstain mask above.
    function _validVote(uint256 bits, uint256 numItems) internal pure returns (bool) {
        uint256 accept = bits & ITEM_MASK;
        uint256 abstain = bits >> ABSTAIN_SHIFT;
        return accept >> numItems == 0 && abstain >> numItems == 0 && accept & abstain == 0;
    }

    function _allSeats(uint256 count) internal pure returns (uint128) {
        return uint128((uint256(1) << count) - 1);
    }

    /// @dev The ABI encoding of a custom error with no, one or two word arguments (one routine, small code).
    function _error(bytes4 selector) internal pure returns (bytes memory) {
        return abi.encodePacked(selector);
    }

    function _error(bytes4 selector, uint256 a) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(selector, a);
    }

    function _error(bytes4 selector, uint256 a, uint256 b) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(selector, a, b);
    }

    function _revertOnError(bytes memory err) internal pure {
        if (err.length != 0) {
            assembly ("memory-safe") {
                revert(add(err, 0x20), mload(err))
            }
        }
    }
}
