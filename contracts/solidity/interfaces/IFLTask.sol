// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IFLTask
 * @notice Types, events and errors of one governed federated-learning task (FLTask v2).
 * @dev The round protocol follows arXiv:2307.00543 (FLock): proposers train, voters
 * judge, +1/-1 votes are summed and a tally >= 0 accepts. Two vote modes exist:
 * `PerUpdate` (one tally per proposer; each update is judged by its assigned reviewers and a
 * vote is a bitmap over the voter's assigned updates) and `Aggregate` (the paper: one tally on
 * the aggregated candidate).
 *
 * v2 keeps one round's state in storage (slots reused round after round) and everything else
 * in events: the audit needs nothing but logs and views. Members have a compact index (0-1023);
 * a round's committee is a list of member indices, packed ten bits each, in draw order.
 */
interface IFLTask {
    // ------------------------------------------------------------------ types

    /// @notice What voters judge: each proposer's update, or the aggregated candidate.
    enum VoteMode {
        PerUpdate,
        Aggregate
    }

    /// @notice Life cycle of a round. `None` means no round was opened yet.
    enum Phase {
        None,
        Training,
        Voting,
        Revealing,
        Finalized
    }

    /// @notice Role of an account in a round.
    enum Role {
        None,
        Proposer,
        Voter
    }

    /// @notice Kind of a relayed action, used by {ActionRejected}.
    enum Action {
        CommitUpdate,
        CommitVote,
        RevealVote,
        RequestExit,
        CompleteExit,
        Withdraw
    }

    /// @notice Why a participant was slashed in {Slashed}.
    enum SlashReason {
        RejectedUpdate,
        MissingUpdate,
        LosingVote,
        UnrevealedVote
    }

    /**
     * @notice Immutable parameters of a task, fixed at deployment.
     * @param configHash hash of the off-chain task description (model, data, hyper-parameters)
     * @param initialModelHash keccak256 of the canonical bytes of the initial global model
     * @param strategy aggregation strategy name, right-padded ASCII (e.g. "fedavg")
     * @param totalRounds number of rounds the reward pool is spread over
     * @param minStake smallest stake that makes a member eligible for sortition
     * @param proposerShareBps share of each round's committee drawn as proposers, in basis points
     * @param maxCommittee largest number of participants (proposers + voters) drawn per round
     * @param slashRateBps share of its stake a "bad" participant loses, in basis points
     * @param voteToleranceBps eps of the vote rule `score >= (1 - eps) * previous score`, in basis points
     * @param voteRule how voters judge an update, right-padded ASCII (e.g. "reference"; fedledger's client/voting.py)
     * @param voterRewardBps share of each round reward paid to the good voters (the rest to the good proposers)
     * @param voteMode what voters judge, see {VoteMode}
     * @param stakeWeighted weigh votes by stake (true) or count one member one vote (false, the paper)
     * @param reviewersPerUpdate k: voters assigned to each update (per-update mode); 0: every voter judges every update
     * @param quorum informed (accepting or rejecting) votes an item needs for a verdict, at least 1 and at most
     * k and maxCommittee - 1; an item without them is neither paid nor slashed and stays out of the model
     * @param canaryRateBps chance that a proposal owes a canary (per-update mode, see {declareCanary}), in basis points
     * @param trainingDuration seconds proposers have to commit before anyone may advance
     * @param votingDuration seconds voters have to commit votes before anyone may advance
     * @param revealDuration seconds voters have to reveal before anyone may finalize
     * @param exitDelay seconds between an exit request and its completion
     * @param coordinator account allowed to open rounds, propose candidates and publish global models
     */
    struct TaskConfig {
        bytes32 configHash;
        bytes32 initialModelHash;
        bytes32 strategy;
        uint32 totalRounds;
        uint256 minStake;
        uint16 proposerShareBps;
        uint16 maxCommittee;
        uint16 slashRateBps;
        uint16 voteToleranceBps;
        bytes32 voteRule;
        uint16 voterRewardBps;
        VoteMode voteMode;
        bool stakeWeighted;
        uint16 reviewersPerUpdate;
        uint16 quorum;
        uint16 canaryRateBps;
        uint64 trainingDuration;
        uint64 votingDuration;
        uint64 revealDuration;
        uint64 exitDelay;
        address coordinator;
    }

    /**
     * @notice Public state of the current round, see {getRound} (outcomes and tallies: {RoundFinalized}).
     * @param reviewers reviewers per update in effect (per-update mode; the number of voters when every voter judges all)
     * @param committedMask bit i: proposer i committed its update
     * @param voteCommittedMask bit j: voter j committed a vote
     * @param revealedMask bit j: voter j revealed its vote
     * @param voteDigest rolling digest of the round's vote commitments, see {voteDigest}
     */
    struct RoundInfo {
        uint256 round;
        Phase phase;
        uint64 deadline;
        uint16 numProposers;
        uint16 numVoters;
        uint16 reviewers;
        uint16 numUpdates;
        uint16 numVoteCommits;
        uint16 numReveals;
        bool globalPublished;
        uint128 committedMask;
        uint128 voteCommittedMask;
        uint128 revealedMask;
        bytes32 candidate;
        bytes32 voteDigest;
    }

    /// @notice A member's stake and exit state, see {getMember}.
    struct MemberInfo {
        bool registered;
        bool exiting;
        uint64 exitReadyAt;
        uint256 stake;
        uint256 owed;
        uint256 nonce;
        uint256 index;
        uint256 standing;
    }

    /**
     * @notice EIP-712 signed update commitment relayed by {commitUpdatesBySig}.
     * @dev Signed: CommitUpdate(proposer, round, updateHash, numExamples). `seat` (the proposer's
     * position among the round's proposers) is an unsigned hint checked against the committee;
     * `r`/`vs` is the compact (EIP-2098) signature.
     */
    struct CommitUpdateRequest {
        address proposer;
        uint256 round;
        bytes32 updateHash;
        uint256 numExamples;
        uint256 seat;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice EIP-712 signed vote commitment relayed by {commitVotesBySig}; `seat` is the voter's position.
    struct CommitVoteRequest {
        address voter;
        uint256 round;
        bytes32 commitment;
        uint256 seat;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice EIP-712 signed vote reveal relayed by {revealVotesBySig}; `seat` is the voter's position.
    struct RevealVoteRequest {
        address voter;
        uint256 round;
        uint256 bits;
        bytes32 salt;
        uint256 seat;
        bytes32 r;
        bytes32 vs;
    }

    /// @notice A committed vote in commit order, as {VoteCommitted} announced it (the seat from the committee) (checked against {voteDigest}).
    struct CommittedVote {
        uint256 seat;
        bytes32 commitment;
    }

    /// @notice EIP-712 signed membership action (exit, withdraw) relayed by the member batch forms.
    struct MemberRequest {
        address member;
        uint256 nonce;
        uint256 deadline;
        bytes32 r;
        bytes32 vs;
    }

    // ----------------------------------------------------------------- events

    /// @notice `account` joined the task as member number `index` with `stake` wei.
    event Registered(address indexed account, uint256 index, uint256 stake);
    /// @notice The stake of `account` went from `oldStake` to `newStake` (added stake; slashes emit {Slashed}).
    event StakeChanged(address indexed account, uint256 oldStake, uint256 newStake);
    /// @notice `account` asked to leave; it can complete the exit from `readyAt`.
    event ExitRequested(address indexed account, uint256 readyAt);
    /// @notice `account` left; its `stake` was credited to it, payable by {withdraw}, and its index freed.
    event Exited(address indexed account, uint256 stake);
    /// @notice `from` added `amount` to the reward pool.
    event PoolFunded(address indexed from, uint256 amount);
    /**
     * @notice Round `round` opened; proposers train until `deadline`.
     * @param committee the drawn member indices in draw order, ten bits each, 25 per word (lowest bits first):
     * the first `numProposers` are the proposers, the next `numVoters` the voters
     * @param eligible the eligibility bitmap the draw was made from (bit i of word w: member index 256 w + i)
     * @param reviewers reviewers per update in effect, see {reviewersOf}
     */
    event RoundOpened(
        uint256 indexed round,
        bytes32 seed,
        uint256 numProposers,
        uint256 numVoters,
        uint256 reviewers,
        uint256[] committee,
        uint256[] eligible,
        uint256 deadline
    );
    /// @notice Round `round` entered `phase`, which lasts until `deadline`.
    event PhaseAdvanced(uint256 indexed round, Phase phase, uint256 deadline);
    /// @notice `proposer` committed to an update (its seat follows from the committee).
    event UpdateCommitted(uint256 indexed round, address indexed proposer, bytes32 updateHash, uint256 numExamples);
    /// @notice The coordinator proposed the aggregated candidate of `round` (aggregate mode).
    event AggregateProposed(uint256 indexed round, bytes32 candidateHash);
    /// @notice `voter` committed to a hidden vote (its seat follows from the committee).
    event VoteCommitted(uint256 indexed round, address indexed voter, bytes32 commitment);
    /// @notice `voter` revealed `bits`: bit a accepts its a-th assigned update (or bit 0 the candidate), bit
    /// 128 + a abstains on it (neither set: rejects).
    event VoteRevealed(uint256 indexed round, address indexed voter, uint256 bits, bytes32 salt);
    /// @notice Round `round` was tallied: bit i of `decided` gives item i a verdict (a quorum of informed
    /// reviewers), bit i of `outcomes` accepts it; `tallies[i]` is its sum of informed votes.
    event RoundFinalized(
        uint256 indexed round,
        uint256 outcomes,
        uint256 decided,
        int256[] tallies,
        uint256 roundReward,
        uint256 paid,
        uint256 slashed
    );
    /// @notice `account` was made ineligible in round `round`: its `standing` reached the ejection mark or
    /// its stake fell below the minimum.
    event Ejected(uint256 indexed round, address indexed account, uint256 standing);
    /// @notice `account` set its canary seal (the last unrevealed link of its hash chain), valid after round `afterRound`.
    event CanarySealed(address indexed account, bytes32 seal, uint256 afterRound);
    /// @notice The update `proposer` committed in round `round` is a canary: `preimage` opened its seal and won
    /// the round's canary lottery.
    event CanaryDeclared(uint256 indexed round, address indexed proposer, bytes32 preimage);
    /// @notice The global model after round `round` has hash `modelHash`.
    event GlobalPublished(uint256 indexed round, bytes32 modelHash);
    /// @notice `account` was credited `amount` wei for round `round`.
    event Rewarded(uint256 indexed round, address indexed account, uint256 amount);
    /// @notice `account` lost `amount` wei of stake in round `round`, back into the pool.
    event Slashed(uint256 indexed round, address indexed account, uint256 amount, SlashReason reason);
    /// @notice `account` withdrew `amount` wei of credited rewards and released stake.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice A relayed `action` signed by `signer` was skipped; `reason` is the ABI-encoded custom error.
    event ActionRejected(uint256 indexed round, address indexed signer, Action action, bytes reason);

    // ----------------------------------------------------------------- errors

    /// @notice A constructor parameter is out of range; `parameter` names it.
    error InvalidParameter(bytes32 parameter);
    /// @notice Only the coordinator may call this.
    error NotCoordinator(address caller);
    /// @notice `account` is already a member.
    error AlreadyRegistered(address account);
    /// @notice `account` is not a member.
    error NotMember(address account);
    /// @notice `amount` is below the required `minimum`.
    error InsufficientStake(uint256 amount, uint256 minimum);
    /// @notice A payment of zero wei was sent where value is required.
    error ZeroAmount();
    /// @notice The task holds `maxMembers` members already.
    error TaskFull(uint256 maxMembers);
    /// @notice `account` has asked to exit and cannot do this any more.
    error ExitPending(address account);
    /// @notice `account` has not asked to exit.
    error ExitNotRequested(address account);
    /// @notice The exit delay ends at `readyAt`.
    error ExitDelayNotOver(uint256 readyAt);
    /// @notice The account holds a role in the unfinished round `round`.
    error ActiveInRound(uint256 round);
    /// @notice The action names round `given` but the current round is `current`.
    error WrongRound(uint256 given, uint256 current);
    /// @notice The action needs phase `expected`; the round is in `actual`.
    error WrongPhase(Phase expected, Phase actual);
    /// @notice The action needs the other vote mode.
    error WrongVoteMode(VoteMode mode);
    /// @notice `account` is not a proposer of `round` (or not at the seat it names).
    error NotProposer(uint256 round, address account);
    /// @notice `account` is not a voter of `round` (or not at the seat it names).
    error NotVoter(uint256 round, address account);
    /// @notice `account` already acted in this role and phase of `round`.
    error AlreadyActed(uint256 round, address account);
    /// @notice `account` reveals without having committed a vote in `round`.
    error NoVoteCommitted(uint256 round, address account);
    /// @notice The revealed vote does not hash to the commitment.
    error CommitmentMismatch(bytes32 expected, bytes32 actual);
    /// @notice `bits` has a bit set beyond the voter's `numItems` assigned items.
    error InvalidVoteBits(uint256 bits, uint256 numItems);
    /// @notice The committed votes brought with a reveal do not hash to the round's {voteDigest}.
    error VoteDigestMismatch(bytes32 expected, bytes32 actual);
    /// @notice A hash argument is zero.
    error ZeroHash();
    /// @notice An update claims zero (or more than 2^64-1) training examples.
    error InvalidExampleCount(uint256 numExamples);
    /// @notice Nothing was committed in `round`, so there is nothing to aggregate.
    error NoUpdates(uint256 round);
    /// @notice The current phase lasts until `deadline` and not everyone has acted.
    error PhaseNotOver(uint256 deadline);
    /// @notice All `totalRounds` rounds have been opened.
    error TaskCompleted(uint256 totalRounds);
    /// @notice Only `eligible` members are eligible; a round needs at least two.
    error NotEnoughParticipants(uint256 eligible);
    /// @notice Round `round` must be finalized (and its global model published) first.
    error RoundNotClosed(uint256 round);
    /// @notice The global model of `round` was already published.
    error GlobalAlreadyPublished(uint256 round);
    /// @notice The signature expired at `deadline`.
    error ExpiredSignature(uint256 deadline);
    /// @notice The signature was made by `recovered`, not by `expected`.
    error InvalidSigner(address expected, address recovered);
    /// @notice `account` has nothing to withdraw.
    error NothingToWithdraw(address account);
    /// @notice Sending `amount` wei to `to` failed.
    error TransferFailed(address to, uint256 amount);
    /// @notice `preimage` does not open the seal of `account` (set before round `round`) or did not win its lottery.
    error NotCanary(uint256 round, address account);
    /// @notice A canary of `round` can be declared only once its votes are committed and before any is revealed.
    error CanaryWindowClosed(uint256 round);
    /// @notice An amount does not fit the 96-bit stake accounting.
    error AmountTooLarge(uint256 amount);
}
