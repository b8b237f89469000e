// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {IFLTask} from "./interfaces/IFLTask.sol";
import {Sortition} from "./libraries/Sortition.sol";

/**
 * @title FLTask
 * @notice One federated-learning task governed on chain: membership and stake, sortition of
 * proposers and voters per round, update commitments, commit-reveal peer votes, and the
 * reward / slash settlement of arXiv:2307.00543 (FLock).
 *
 * @dev Every participant action exists in two forms: a direct call (`msg.sender` acts) and a
 * `...BySig` batch taking EIP-712 signed requests, so that a relayer pays the gas. Both forms run
 * the same internal function, which checks everything first and returns the ABI-encoded custom
 * error instead of reverting: the direct form reverts with it, the batch form skips the entry
 * and emits {ActionRejected}. A batch therefore never reverts because of one bad entry.
 *
 * All payments are pull payments: rewards and released stake are credited to `owed` and paid by
 * {withdraw} (reentrancy-guarded, checks-effects-interactions).
 */
contract FLTask is IFLTask, EIP712, Nonces, ReentrancyGuard {
    /// @notice Largest number of members; bounds the sortition loop.
    uint256 public constant MAX_MEMBERS = 256;
    /// @notice Largest committee; a vote bitmap over proposers fits 128 bits.
    uint256 public constant MAX_COMMITTEE = 128;

    /// @notice EIP-712 type hash of {CommitUpdateRequest}.
    bytes32 public constant COMMIT_UPDATE_TYPEHASH = keccak256(
        "CommitUpdate(address proposer,uint256 round,bytes32 updateHash,uint256 numExamples,uint256 nonce,uint256 deadline)"
    );
    /// @notice EIP-712 type hash of {CommitVoteRequest}.
    bytes32 public constant COMMIT_VOTE_TYPEHASH =
        keccak256("CommitVote(address voter,uint256 round,bytes32 commitment,uint256 nonce,uint256 deadline)");
    /// @notice EIP-712 type hash of {RevealVoteRequest}.
    bytes32 public constant REVEAL_VOTE_TYPEHASH =
        keccak256("RevealVote(address voter,uint256 round,uint256 bits,bytes32 salt,uint256 nonce,uint256 deadline)");
    /// @notice EIP-712 type hash of a signed exit request.
    bytes32 public constant REQUEST_EXIT_TYPEHASH =
        keccak256("RequestExit(address member,uint256 nonce,uint256 deadline)");
    /// @notice EIP-712 type hash of a signed exit completion.
    bytes32 public constant COMPLETE_EXIT_TYPEHASH =
        keccak256("CompleteExit(address member,uint256 nonce,uint256 deadline)");
    /// @notice EIP-712 type hash of a signed withdrawal.
    bytes32 public constant WITHDRAW_TYPEHASH = keccak256("Withdraw(address member,uint256 nonce,uint256 deadline)");

    uint256 private constant BPS = 10_000;

    // ------------------------------------------------------------ parameters

    bytes32 private immutable _configHash;
    bytes32 private immutable _initialModelHash;
    bytes32 private immutable _strategy;
    uint32 private immutable _totalRounds;
    uint256 private immutable _minStake;
    uint16 private immutable _proposerShareBps;
    uint16 private immutable _maxCommittee;
    uint16 private immutable _slashRateBps;
    uint16 private immutable _voteToleranceBps;
    bytes32 private immutable _voteRule;
    uint16 private immutable _voterRewardBps;
    VoteMode private immutable _voteMode;
    bool private immutable _stakeWeighted;
    uint64 private immutable _trainingDuration;
    uint64 private immutable _votingDuration;
    uint64 private immutable _revealDuration;
    uint64 private immutable _exitDelay;
    address private immutable _coordinator;

    // ----------------------------------------------------------------- state

    struct Member {
        uint128 stake;
        uint64 exitReadyAt;
        uint32 position; // index in _memberList plus one; zero when not a member
        bool exiting;
    }

    struct Seat {
        Role role;
        uint16 index; // position among the round's proposers, or among its voters
    }

    struct UpdateSlot {
        bytes32 updateHash;
        uint64 numExamples;
        int128 tally;
        bool accepted;
    }

    struct VoteSlot {
        bytes32 commitment;
        uint128 bits;
        bool revealed;
    }

    /// @dev Per-seat outcome of a round, computed in memory by {_finalize}.
    struct Verdict {
        bool good;
        bool bad;
        SlashReason reason;
    }

    /// @notice Wei in the reward pool, paid out over the remaining rounds.
    uint256 public rewardPool;
    /// @notice Number of the latest opened round; rounds count from 1, 0 means none yet.
    uint256 public currentRound;
    /// @notice Hash of the current global model.
    bytes32 public globalModelHash;

    address[] private _memberList;
    mapping(address account => Member) private _members;
    mapping(address account => uint256) private _owed;

    mapping(uint256 round => RoundInfo) private _rounds;
    mapping(uint256 round => address[]) private _committee; // proposers first, then voters
    mapping(uint256 round => mapping(address account => Seat)) private _seats;
    mapping(uint256 round => mapping(uint256 index => UpdateSlot)) private _updates;
    mapping(uint256 round => mapping(uint256 index => VoteSlot)) private _votes;

    modifier onlyCoordinator() {
        if (msg.sender != _coordinator) revert NotCoordinator(msg.sender);
        _;
    }

    /**
     * @notice Creates a task; any value sent seeds the reward pool.
     * @param cfg the immutable task parameters, see {TaskConfig}
     */
    constructor(TaskConfig memory cfg) payable EIP712("FLTask", "1") {
        _validateConfig(cfg);
        _configHash = cfg.configHash;
        _initialModelHash = cfg.initialModelHash;
        _strategy = cfg.strategy;
        _totalRounds = cfg.totalRounds;
        _minStake = cfg.minStake;
        _proposerShareBps = cfg.proposerShareBps;
        _maxCommittee = cfg.maxCommittee;
        _slashRateBps = cfg.slashRateBps;
        _voteToleranceBps = cfg.voteToleranceBps;
        _voteRule = cfg.voteRule;
        _voterRewardBps = cfg.voterRewardBps;
        _voteMode = cfg.voteMode;
        _stakeWeighted = cfg.stakeWeighted;
        _trainingDuration = cfg.trainingDuration;
        _votingDuration = cfg.votingDuration;
        _revealDuration = cfg.revealDuration;
        _exitDelay = cfg.exitDelay;
        _coordinator = cfg.coordinator;
        globalModelHash = cfg.initialModelHash;
        if (msg.value > 0) {
            rewardPool = msg.value;
            emit PoolFunded(msg.sender, msg.value);
        }
    }

    function _validateConfig(TaskConfig memory cfg) private pure {
        if (cfg.initialModelHash == bytes32(0)) revert InvalidParameter("initialModelHash");
        if (cfg.totalRounds == 0) revert InvalidParameter("totalRounds");
        if (cfg.minStake == 0 || cfg.minStake > type(uint128).max) revert InvalidParameter("minStake");
        if (cfg.proposerShareBps == 0 || cfg.proposerShareBps >= BPS) revert InvalidParameter("proposerShareBps");
        if (cfg.maxCommittee < 2 || cfg.maxCommittee > MAX_COMMITTEE) revert InvalidParameter("maxCommittee");
        if (cfg.slashRateBps > BPS) revert InvalidParameter("slashRateBps");
        if (cfg.voteToleranceBps >= BPS) revert InvalidParameter("voteToleranceBps");
        if (cfg.voteRule == bytes32(0)) revert InvalidParameter("voteRule");
        if (cfg.voterRewardBps > BPS) revert InvalidParameter("voterRewardBps");
        if (cfg.trainingDuration == 0) revert InvalidParameter("trainingDuration");
        if (cfg.votingDuration == 0) revert InvalidParameter("votingDuration");
        if (cfg.revealDuration == 0) revert InvalidParameter("revealDuration");
        if (cfg.coordinator == address(0)) revert InvalidParameter("coordinator");
    }

    // ============================================================ membership

    /**
     * @notice Joins the task, staking `msg.value` wei (at least the minimum stake).
     */
    function register() external payable {
        if (_members[msg.sender].position != 0) revert AlreadyRegistered(msg.sender);
        if (msg.value < _minStake) revert InsufficientStake(msg.value, _minStake);
        if (msg.value > type(uint128).max) revert AmountTooLarge(msg.value);
        if (_memberList.length >= MAX_MEMBERS) revert TaskFull(MAX_MEMBERS);
        _memberList.push(msg.sender);
        _members[msg.sender] = Member({
            stake: uint128(msg.value), exitReadyAt: 0, position: uint32(_memberList.length), exiting: false
        });
        emit Registered(msg.sender, msg.value);
        emit StakeChanged(msg.sender, 0, msg.value);
    }

    /**
     * @notice Adds `msg.value` wei to the caller's stake.
     */
    function addStake() external payable {
        Member storage m = _members[msg.sender];
        if (m.position == 0) revert NotMember(msg.sender);
        if (m.exiting) revert ExitPending(msg.sender);
        if (msg.value == 0) revert ZeroAmount();
        uint256 oldStake = m.stake;
        uint256 newStake = oldStake + msg.value;
        if (newStake > type(uint128).max) revert AmountTooLarge(newStake);
        m.stake = uint128(newStake);
        emit StakeChanged(msg.sender, oldStake, newStake);
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
     * @notice Leaves the task after the exit delay, outside any round the caller is part of.
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
        uint256 previous = currentRound;
        if (previous != 0) {
            RoundInfo storage p = _rounds[previous];
            if (p.phase != Phase.Finalized || !p.globalPublished) revert RoundNotClosed(previous);
        }
        if (previous >= _totalRounds) revert TaskCompleted(_totalRounds);
        round = previous + 1;
        bytes32 seed = keccak256(abi.encode(block.prevrandao, round, globalModelHash, address(this)));
        (address[] memory proposers, address[] memory voters) = previewSortition(seed);

        currentRound = round;
        address[] storage seated = _committee[round];
        for (uint256 i = 0; i < proposers.length; ++i) {
            seated.push(proposers[i]);
            _seats[round][proposers[i]] = Seat(Role.Proposer, uint16(i));
        }
        for (uint256 j = 0; j < voters.length; ++j) {
            seated.push(voters[j]);
            _seats[round][voters[j]] = Seat(Role.Voter, uint16(j));
        }
        RoundInfo storage r = _rounds[round];
        r.numProposers = uint16(proposers.length);
        r.numVoters = uint16(voters.length);
        r.seed = seed;
        r.phase = Phase.Training;
        r.deadline = uint64(block.timestamp + _trainingDuration);
        emit RoundOpened(round, seed, proposers, voters, r.deadline);
    }

    /**
     * @notice Commits the caller's update of `round`: keccak256 of its canonical bytes and its example count.
     */
    function commitUpdate(uint256 round, bytes32 updateHash, uint256 numExamples) external {
        _revertOnError(_commitUpdate(msg.sender, round, updateHash, numExamples));
    }

    /**
     * @notice Proposes the hash of the aggregated candidate of `round` and opens voting (aggregate mode).
     */
    function proposeAggregate(uint256 round, bytes32 candidateHash) external onlyCoordinator {
        if (_voteMode != VoteMode.Aggregate) revert WrongVoteMode(_voteMode);
        _revertOnError(_checkRoundPhase(round, Phase.Training));
        RoundInfo storage r = _rounds[round];
        if (r.numUpdates == 0) revert NoUpdates(round);
        if (candidateHash == bytes32(0)) revert ZeroHash();
        r.candidate = candidateHash;
        emit AggregateProposed(round, candidateHash);
        _enterPhase(round, r, Phase.Voting, _votingDuration);
    }

    /**
     * @notice Commits the caller's hidden vote of `round`, see {voteCommitment}.
     */
    function commitVote(uint256 round, bytes32 commitment) external {
        _revertOnError(_commitVote(msg.sender, round, commitment));
    }

    /**
     * @notice Reveals the caller's vote of `round`: bit i accepts proposer i (per-update mode) or,
     * bit 0, the candidate (aggregate mode).
     */
    function revealVote(uint256 round, uint256 bits, bytes32 salt) external {
        _revertOnError(_revealVote(msg.sender, round, bits, salt));
    }

    /**
     * @notice Moves `round` out of Training or Voting once everyone has acted or the deadline passed.
     * Anyone may call it. When nothing was committed to judge, voting is skipped.
     */
    function advancePhase(uint256 round) external {
        if (round == 0 || round != currentRound) revert WrongRound(round, currentRound);
        RoundInfo storage r = _rounds[round];
        Phase phase = r.phase;
        if (phase == Phase.Training) {
            if (block.timestamp <= r.deadline) revert PhaseNotOver(r.deadline);
            if (_judgedMask(r) == 0) _enterPhase(round, r, Phase.Revealing, 0);
            else _enterPhase(round, r, Phase.Voting, _votingDuration);
        } else if (phase == Phase.Voting) {
            if (r.numVoteCommits < r.numVoters && block.timestamp <= r.deadline) revert PhaseNotOver(r.deadline);
            _enterPhase(round, r, Phase.Revealing, _revealDuration);
        } else {
            revert WrongPhase(Phase.Voting, phase);
        }
    }

    /**
     * @notice Tallies `round`, credits rewards and slashes stake. Anyone may call it once every
     * committed vote is revealed or the reveal deadline passed.
     */
    function finalizeRound(uint256 round) external {
        _revertOnError(_checkRoundPhase(round, Phase.Revealing));
        RoundInfo storage r = _rounds[round];
        if (r.numReveals < r.numVoteCommits && block.timestamp <= r.deadline) revert PhaseNotOver(r.deadline);
        _finalize(round, r);
    }

    /**
     * @notice Publishes the hash of the aggregate of the accepted updates of `round` (per-update mode).
     */
    function publishGlobal(uint256 round, bytes32 modelHash) external onlyCoordinator {
        if (_voteMode != VoteMode.PerUpdate) revert WrongVoteMode(_voteMode);
        _revertOnError(_checkRoundPhase(round, Phase.Finalized));
        RoundInfo storage r = _rounds[round];
        if (r.globalPublished) revert GlobalAlreadyPublished(round);
        if (modelHash == bytes32(0)) revert ZeroHash();
        _publish(round, r, modelHash);
    }

    // ======================================================= relayed batches

    /**
     * @notice Relays signed update commitments; an invalid entry is skipped with {ActionRejected}.
     */
    function commitUpdatesBySig(CommitUpdateRequest[] calldata requests) external {
        for (uint256 k = 0; k < requests.length; ++k) {
            CommitUpdateRequest calldata q = requests[k];
            bytes32 structHash = keccak256(
                abi.encode(
                    COMMIT_UPDATE_TYPEHASH, q.proposer, q.round, q.updateHash, q.numExamples, q.nonce, q.deadline
                )
            );
            bytes memory err = _checkSignature(q.proposer, structHash, q.nonce, q.deadline, q.signature);
            if (err.length == 0) err = _commitUpdate(q.proposer, q.round, q.updateHash, q.numExamples);
            _settleRelayed(q.round, q.proposer, Action.CommitUpdate, err);
        }
    }

    /**
     * @notice Relays signed vote commitments; an invalid entry is skipped with {ActionRejected}.
     */
    function commitVotesBySig(CommitVoteRequest[] calldata requests) external {
        for (uint256 k = 0; k < requests.length; ++k) {
            CommitVoteRequest calldata q = requests[k];
            bytes32 structHash =
                keccak256(abi.encode(COMMIT_VOTE_TYPEHASH, q.voter, q.round, q.commitment, q.nonce, q.deadline));
            bytes memory err = _checkSignature(q.voter, structHash, q.nonce, q.deadline, q.signature);
            if (err.length == 0) err = _commitVote(q.voter, q.round, q.commitment);
            _settleRelayed(q.round, q.voter, Action.CommitVote, err);
        }
    }

    /**
     * @notice Relays signed vote reveals; an invalid entry is skipped with {ActionRejected}.
     */
    function revealVotesBySig(RevealVoteRequest[] calldata requests) external {
        for (uint256 k = 0; k < requests.length; ++k) {
            RevealVoteRequest calldata q = requests[k];
            bytes32 structHash =
                keccak256(abi.encode(REVEAL_VOTE_TYPEHASH, q.voter, q.round, q.bits, q.salt, q.nonce, q.deadline));
            bytes memory err = _checkSignature(q.voter, structHash, q.nonce, q.deadline, q.signature);
            if (err.length == 0) err = _revealVote(q.voter, q.round, q.bits, q.salt);
            _settleRelayed(q.round, q.voter, Action.RevealVote, err);
        }
    }

    /**
     * @notice Relays signed exit requests; an invalid entry is skipped with {ActionRejected}.
     */
    function requestExitsBySig(MemberRequest[] calldata requests) external {
        for (uint256 k = 0; k < requests.length; ++k) {
            MemberRequest calldata q = requests[k];
            bytes memory err = _checkMemberSignature(REQUEST_EXIT_TYPEHASH, q);
            if (err.length == 0) err = _requestExit(q.member);
            _settleRelayed(currentRound, q.member, Action.RequestExit, err);
        }
    }

    /**
     * @notice Relays signed exit completions; an invalid entry is skipped with {ActionRejected}.
     */
    function completeExitsBySig(MemberRequest[] calldata requests) external {
        for (uint256 k = 0; k < requests.length; ++k) {
            MemberRequest calldata q = requests[k];
            bytes memory err = _checkMemberSignature(COMPLETE_EXIT_TYPEHASH, q);
            if (err.length == 0) err = _completeExit(q.member);
            _settleRelayed(currentRound, q.member, Action.CompleteExit, err);
        }
    }

    /**
     * @notice Relays signed withdrawals, paying each signer; a failed entry is skipped with {ActionRejected}.
     */
    function withdrawBySig(MemberRequest[] calldata requests) external nonReentrant {
        for (uint256 k = 0; k < requests.length; ++k) {
            MemberRequest calldata q = requests[k];
            bytes memory err = _checkMemberSignature(WITHDRAW_TYPEHASH, q);
            if (err.length == 0) err = _withdraw(q.member);
            _settleRelayed(currentRound, q.member, Action.Withdraw, err);
        }
    }

    // ================================================================= views

    /// @notice The immutable task parameters.
    function config() external view returns (TaskConfig memory cfg) {
        cfg = TaskConfig({
            configHash: _configHash,
            initialModelHash: _initialModelHash,
            strategy: _strategy,
            totalRounds: _totalRounds,
            minStake: _minStake,
            proposerShareBps: _proposerShareBps,
            maxCommittee: _maxCommittee,
            slashRateBps: _slashRateBps,
            voteToleranceBps: _voteToleranceBps,
            voteRule: _voteRule,
            voterRewardBps: _voterRewardBps,
            voteMode: _voteMode,
            stakeWeighted: _stakeWeighted,
            trainingDuration: _trainingDuration,
            votingDuration: _votingDuration,
            revealDuration: _revealDuration,
            exitDelay: _exitDelay,
            coordinator: _coordinator
        });
    }

    /// @notice The coordinator of the task.
    function coordinator() external view returns (address) {
        return _coordinator;
    }

    /// @notice The public state of `round`.
    function getRound(uint256 round) external view returns (RoundInfo memory) {
        return _rounds[round];
    }

    /// @notice The proposers and voters drawn for `round`.
    function committee(uint256 round) public view returns (address[] memory proposers, address[] memory voters) {
        address[] storage all = _committee[round];
        uint256 numProposers = _rounds[round].numProposers;
        proposers = new address[](numProposers);
        voters = new address[](all.length - numProposers);
        for (uint256 i = 0; i < numProposers; ++i) {
            proposers[i] = all[i];
        }
        for (uint256 j = 0; j < voters.length; ++j) {
            voters[j] = all[numProposers + j];
        }
    }

    /// @notice The role of `account` in `round` and its position among that role's members.
    function roleOf(uint256 round, address account) external view returns (Role role, uint256 index) {
        Seat memory seat = _seats[round][account];
        return (seat.role, seat.index);
    }

    /// @notice The commitment of proposer number `index` of `round`.
    function getUpdate(uint256 round, uint256 index) external view returns (UpdateInfo memory info) {
        UpdateSlot storage u = _updates[round][index];
        info = UpdateInfo({
            proposer: index < _rounds[round].numProposers ? _committee[round][index] : address(0),
            updateHash: u.updateHash,
            numExamples: u.numExamples,
            committed: u.updateHash != bytes32(0),
            accepted: u.accepted,
            tally: u.tally
        });
    }

    /// @notice The vote of voter number `index` of `round`.
    function getVote(uint256 round, uint256 index) external view returns (VoteInfo memory info) {
        VoteSlot storage v = _votes[round][index];
        RoundInfo storage r = _rounds[round];
        info = VoteInfo({
            voter: index < r.numVoters ? _committee[round][r.numProposers + index] : address(0),
            commitment: v.commitment,
            bits: v.bits,
            revealed: v.revealed
        });
    }

    /// @notice Stake, exit state, credited balance and signature nonce of `account`.
    function getMember(address account) external view returns (MemberInfo memory info) {
        Member storage m = _members[account];
        info = MemberInfo({
            registered: m.position != 0,
            exiting: m.exiting,
            exitReadyAt: m.exitReadyAt,
            stake: m.stake,
            owed: _owed[account],
            nonce: nonces(account)
        });
    }

    /// @notice All members, in registration order (modified by exits).
    function members() external view returns (address[] memory) {
        return _memberList;
    }

    /// @notice Members that the next round may draw: not exiting and staking at least the minimum.
    function eligibleMembers() public view returns (address[] memory eligible) {
        uint256 n = _memberList.length;
        eligible = new address[](n);
        uint256 count = 0;
        for (uint256 i = 0; i < n; ++i) {
            address a = _memberList[i];
            Member storage m = _members[a];
            if (!m.exiting && m.stake >= _minStake) eligible[count++] = a;
        }
        assembly ("memory-safe") {
            mstore(eligible, count)
        }
    }

    /**
     * @notice The committee the current eligible members would form under `seed`.
     * @dev {openRound} draws with exactly this function, so anyone can re-check a draw.
     */
    function previewSortition(bytes32 seed) public view returns (address[] memory proposers, address[] memory voters) {
        address[] memory eligible = eligibleMembers();
        if (eligible.length < 2) revert NotEnoughParticipants(eligible.length);
        uint256 size = eligible.length < _maxCommittee ? eligible.length : _maxCommittee;
        address[] memory drawn = Sortition.draw(eligible, seed, size);
        uint256 numProposers = Sortition.proposerCount(size, _proposerShareBps);
        proposers = new address[](numProposers);
        voters = new address[](size - numProposers);
        for (uint256 i = 0; i < size; ++i) {
            if (i < numProposers) proposers[i] = drawn[i];
            else voters[i - numProposers] = drawn[i];
        }
    }

    /**
     * @notice The commitment a voter must commit to reveal `bits` with `salt` in `round`:
     * keccak256(abi.encode(task, round, candidate, bits, salt, voter)); candidate is zero in per-update mode.
     */
    function voteCommitment(uint256 round, uint256 bits, bytes32 salt, address voter) public view returns (bytes32) {
        return keccak256(abi.encode(address(this), round, _rounds[round].candidate, bits, salt, voter));
    }

    // ====================================================== internal actions
    // Each returns the ABI-encoded custom error and changes nothing when a check fails.

    function _requestExit(address account) internal returns (bytes memory) {
        Member storage m = _members[account];
        if (m.position == 0) return abi.encodeWithSelector(NotMember.selector, account);
        if (m.exiting) return abi.encodeWithSelector(ExitPending.selector, account);
        uint256 readyAt = block.timestamp + _exitDelay;
        m.exiting = true;
        m.exitReadyAt = uint64(readyAt);
        emit ExitRequested(account, readyAt);
        return "";
    }

    function _completeExit(address account) internal returns (bytes memory) {
        Member memory m = _members[account];
        if (m.position == 0) return abi.encodeWithSelector(NotMember.selector, account);
        if (!m.exiting) return abi.encodeWithSelector(ExitNotRequested.selector, account);
        if (block.timestamp < m.exitReadyAt) return abi.encodeWithSelector(ExitDelayNotOver.selector, m.exitReadyAt);
        uint256 round = currentRound;
        if (_seats[round][account].role != Role.None && _rounds[round].phase != Phase.Finalized) {
            return abi.encodeWithSelector(ActiveInRound.selector, round);
        }
        _removeMember(account, m.position);
        _owed[account] += m.stake;
        emit StakeChanged(account, m.stake, 0);
        emit Exited(account, m.stake);
        return "";
    }

    function _withdraw(address account) internal returns (bytes memory) {
        uint256 amount = _owed[account];
        if (amount == 0) return abi.encodeWithSelector(NothingToWithdraw.selector, account);
        _owed[account] = 0;
        (bool ok,) = payable(account).call{value: amount}("");
        if (!ok) {
            _owed[account] = amount; // undo, so that a failed payment changes nothing
            return abi.encodeWithSelector(TransferFailed.selector, account, amount);
        }
        emit Withdrawn(account, amount);
        return "";
    }

    function _commitUpdate(address proposer, uint256 round, bytes32 updateHash, uint256 numExamples)
        internal
        returns (bytes memory)
    {
        bytes memory err = _checkRoundPhase(round, Phase.Training);
        if (err.length != 0) return err;
        Seat memory seat = _seats[round][proposer];
        if (seat.role != Role.Proposer) return abi.encodeWithSelector(NotProposer.selector, round, proposer);
        UpdateSlot storage u = _updates[round][seat.index];
        if (u.updateHash != bytes32(0)) return abi.encodeWithSelector(AlreadyActed.selector, round, proposer);
        if (updateHash == bytes32(0)) return abi.encodeWithSelector(ZeroHash.selector);
        if (numExamples == 0 || numExamples > type(uint64).max) {
            return abi.encodeWithSelector(InvalidExampleCount.selector, numExamples);
        }
        RoundInfo storage r = _rounds[round];
        u.updateHash = updateHash;
        u.numExamples = uint64(numExamples);
        r.numUpdates += 1;
        r.committedMask |= uint128(1) << seat.index;
        emit UpdateCommitted(round, proposer, seat.index, updateHash, numExamples);
        if (_voteMode == VoteMode.PerUpdate && r.numUpdates == r.numProposers) {
            _enterPhase(round, r, Phase.Voting, _votingDuration);
        }
        return "";
    }

    function _commitVote(address voter, uint256 round, bytes32 commitment) internal returns (bytes memory) {
        bytes memory err = _checkRoundPhase(round, Phase.Voting);
        if (err.length != 0) return err;
        Seat memory seat = _seats[round][voter];
        if (seat.role != Role.Voter) return abi.encodeWithSelector(NotVoter.selector, round, voter);
        VoteSlot storage v = _votes[round][seat.index];
        if (v.commitment != bytes32(0)) return abi.encodeWithSelector(AlreadyActed.selector, round, voter);
        if (commitment == bytes32(0)) return abi.encodeWithSelector(ZeroHash.selector);
        RoundInfo storage r = _rounds[round];
        v.commitment = commitment;
        r.numVoteCommits += 1;
        emit VoteCommitted(round, voter, commitment);
        if (r.numVoteCommits == r.numVoters) _enterPhase(round, r, Phase.Revealing, _revealDuration);
        return "";
    }

    function _revealVote(address voter, uint256 round, uint256 bits, bytes32 salt) internal returns (bytes memory) {
        bytes memory err = _checkRoundPhase(round, Phase.Revealing);
        if (err.length != 0) return err;
        Seat memory seat = _seats[round][voter];
        if (seat.role != Role.Voter) return abi.encodeWithSelector(NotVoter.selector, round, voter);
        VoteSlot storage v = _votes[round][seat.index];
        if (v.commitment == bytes32(0)) return abi.encodeWithSelector(NoVoteCommitted.selector, round, voter);
        if (v.revealed) return abi.encodeWithSelector(AlreadyActed.selector, round, voter);
        RoundInfo storage r = _rounds[round];
        uint256 numItems = _numItems(r);
        if (bits >> numItems != 0) return abi.encodeWithSelector(InvalidVoteBits.selector, bits, numItems);
        bytes32 actual = voteCommitment(round, bits, salt, voter);
        if (actual != v.commitment) return abi.encodeWithSelector(CommitmentMismatch.selector, v.commitment, actual);
        v.bits = uint128(bits);
        v.revealed = true;
        r.numReveals += 1;
        emit VoteRevealed(round, voter, bits, salt);
        return "";
    }

    // ============================================================ settlement

    /// @dev Tallies votes, classifies every seat, pays the good and slashes the bad (DESIGN §3).
    function _finalize(uint256 round, RoundInfo storage r) internal {
        address[] memory seats = _committee[round];
        uint256[] memory stakes = new uint256[](seats.length);
        for (uint256 k = 0; k < seats.length; ++k) {
            stakes[k] = _members[seats[k]].stake;
        }
        uint256 judged = _judgedMask(r);
        (int256[] memory tallies, uint256 outcomes, uint256 ties) = _tally(round, r, judged, stakes);
        Verdict[] memory verdicts = _judge(round, r, judged, outcomes, ties);

        uint256 roundReward = rewardPool / (uint256(_totalRounds) - round + 1);
        uint256 paid = _reward(round, seats, stakes, verdicts, roundReward);
        uint256 slashed = _slash(round, seats, stakes, verdicts);
        rewardPool = rewardPool - paid + slashed;

        r.outcomes = uint128(outcomes);
        r.reward = paid;
        r.phase = Phase.Finalized;
        r.deadline = uint64(block.timestamp);
        emit PhaseAdvanced(round, Phase.Finalized, block.timestamp);
        emit RoundFinalized(round, outcomes, tallies, roundReward, paid, slashed);

        if (_voteMode == VoteMode.Aggregate) {
            _publish(round, r, outcomes & 1 == 1 ? r.candidate : globalModelHash);
        } else if (outcomes == 0) {
            _publish(round, r, globalModelHash); // nothing accepted: the global model stays
        }
    }

    /// @dev Sums +w / -w per judged item over the revealed votes; records per-update results.
    function _tally(uint256 round, RoundInfo storage r, uint256 judged, uint256[] memory stakes)
        internal
        returns (int256[] memory tallies, uint256 outcomes, uint256 ties)
    {
        uint256 numItems = _numItems(r);
        uint256 numProposers = r.numProposers;
        tallies = new int256[](numItems);
        for (uint256 j = 0; j < r.numVoters; ++j) {
            VoteSlot storage v = _votes[round][j];
            if (!v.revealed) continue;
            int256 w = _stakeWeighted ? int256(stakes[numProposers + j]) : int256(1);
            uint256 bits = v.bits;
            for (uint256 i = 0; i < numItems; ++i) {
                if ((judged >> i) & 1 == 0) continue;
                tallies[i] += (bits >> i) & 1 == 1 ? w : -w;
            }
        }
        for (uint256 i = 0; i < numItems; ++i) {
            if ((judged >> i) & 1 == 0) continue;
            if (tallies[i] >= 0) outcomes |= 1 << i;
            if (tallies[i] == 0) ties |= 1 << i;
        }
        bool perUpdate = _voteMode == VoteMode.PerUpdate;
        for (uint256 i = 0; i < numProposers; ++i) {
            UpdateSlot storage u = _updates[round][i];
            if (u.updateHash == bytes32(0)) continue;
            uint256 item = perUpdate ? i : 0;
            u.tally = int128(tallies[item]);
            u.accepted = (outcomes >> item) & 1 == 1;
        }
    }

    /// @dev Good: accepted proposers, voters agreeing with most outcomes. Bad: see {SlashReason}.
    function _judge(uint256 round, RoundInfo storage r, uint256 judged, uint256 outcomes, uint256 ties)
        internal
        view
        returns (Verdict[] memory verdicts)
    {
        uint256 numProposers = r.numProposers;
        verdicts = new Verdict[](numProposers + r.numVoters);
        bool perUpdate = _voteMode == VoteMode.PerUpdate;
        for (uint256 i = 0; i < numProposers; ++i) {
            if (_updates[round][i].updateHash == bytes32(0)) {
                verdicts[i] = Verdict(false, true, SlashReason.MissingUpdate);
            } else if (judged != 0) {
                bool accepted = (outcomes >> (perUpdate ? i : 0)) & 1 == 1;
                verdicts[i] = Verdict(accepted, !accepted, SlashReason.RejectedUpdate);
            }
        }
        uint256 numJudged = _popcount(judged);
        for (uint256 j = 0; j < r.numVoters; ++j) {
            VoteSlot storage v = _votes[round][j];
            if (v.commitment == bytes32(0)) continue; // never voted: neither paid nor slashed
            if (!v.revealed) {
                verdicts[numProposers + j] = Verdict(false, true, SlashReason.UnrevealedVote);
            } else if (numJudged != 0) {
                // A bit agrees when it matches the outcome; a tie agrees with both sides (vote * tally >= 0).
                uint256 agree = _popcount((~(uint256(v.bits) ^ outcomes) | ties) & judged);
                bool winning = 2 * agree >= numJudged;
                verdicts[numProposers + j] = Verdict(winning, !winning, SlashReason.LosingVote);
            }
        }
    }

    /**
     * @dev Pays `roundReward`: `voterRewardBps` of it to the good voters, the rest to the good
     * proposers, each part shared in proportion to stake; returns what was credited. A part with
     * no good seat stays in the pool.
     */
    function _reward(
        uint256 round,
        address[] memory seats,
        uint256[] memory stakes,
        Verdict[] memory verdicts,
        uint256 roundReward
    ) internal returns (uint256 paid) {
        uint256 numProposers = _rounds[round].numProposers;
        uint256 voterPart = (roundReward * _voterRewardBps) / BPS;
        uint256[2] memory parts = [roundReward - voterPart, voterPart];
        uint256[2] memory goodStake = [uint256(0), 0];
        for (uint256 k = 0; k < seats.length; ++k) {
            if (verdicts[k].good) goodStake[k < numProposers ? 0 : 1] += stakes[k];
        }
        for (uint256 k = 0; k < seats.length; ++k) {
            if (!verdicts[k].good) continue;
            uint256 side = k < numProposers ? 0 : 1;
            uint256 amount = (parts[side] * stakes[k]) / goodStake[side];
            _owed[seats[k]] += amount;
            paid += amount;
            emit Rewarded(round, seats[k], amount);
        }
    }

    /// @dev Takes `slashRate` of the stake of every bad seat; returns the total taken.
    function _slash(uint256 round, address[] memory seats, uint256[] memory stakes, Verdict[] memory verdicts)
        internal
        returns (uint256 slashed)
    {
        for (uint256 k = 0; k < seats.length; ++k) {
            if (!verdicts[k].bad) continue;
            uint256 amount = (stakes[k] * _slashRateBps) / BPS;
            if (amount != 0) {
                _members[seats[k]].stake = uint128(stakes[k] - amount);
                emit StakeChanged(seats[k], stakes[k], stakes[k] - amount);
            }
            slashed += amount;
            emit Slashed(round, seats[k], amount, verdicts[k].reason);
        }
    }

    // =============================================================== helpers

    function _publish(uint256 round, RoundInfo storage r, bytes32 modelHash) internal {
        globalModelHash = modelHash;
        r.globalModelHash = modelHash;
        r.globalPublished = true;
        emit GlobalPublished(round, modelHash);
    }

    function _enterPhase(uint256 round, RoundInfo storage r, Phase phase, uint256 duration) internal {
        uint256 deadline = block.timestamp + duration;
        r.phase = phase;
        r.deadline = uint64(deadline);
        emit PhaseAdvanced(round, phase, deadline);
    }

    function _checkRoundPhase(uint256 round, Phase expected) internal view returns (bytes memory) {
        if (round == 0 || round != currentRound) {
            return abi.encodeWithSelector(WrongRound.selector, round, currentRound);
        }
        Phase actual = _rounds[round].phase;
        if (actual != expected) return abi.encodeWithSelector(WrongPhase.selector, expected, actual);
        return "";
    }

    function _checkSignature(
        address signer,
        bytes32 structHash,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) internal view returns (bytes memory) {
        if (block.timestamp > deadline) return abi.encodeWithSelector(ExpiredSignature.selector, deadline);
        (address recovered, ECDSA.RecoverError status,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), signature);
        if (status != ECDSA.RecoverError.NoError || recovered != signer) {
            return abi.encodeWithSelector(InvalidSigner.selector, signer, recovered);
        }
        uint256 current = nonces(signer);
        if (nonce != current) return abi.encodeWithSelector(InvalidAccountNonce.selector, signer, current);
        return "";
    }

    function _checkMemberSignature(bytes32 typeHash, MemberRequest calldata q) internal view returns (bytes memory) {
        bytes32 structHash = keccak256(abi.encode(typeHash, q.member, q.nonce, q.deadline));
        return _checkSignature(q.member, structHash, q.nonce, q.deadline, q.signature);
    }

    /// @dev A relayed action consumes the signer's nonce only when it was applied.
    function _settleRelayed(uint256 round, address signer, Action action, bytes memory err) internal {
        if (err.length == 0) _useNonce(signer);
        else emit ActionRejected(round, signer, action, err);
    }

    function _removeMember(address account, uint256 position) internal {
        uint256 last = _memberList.length;
        if (position != last) {
            address moved = _memberList[last - 1];
            _memberList[position - 1] = moved;
            _members[moved].position = uint32(position);
        }
        _memberList.pop();
        delete _members[account];
    }

    /// @dev Items judged in a round: the committed proposers (per-update) or the candidate (aggregate).
    function _judgedMask(RoundInfo storage r) internal view returns (uint256) {
        if (_voteMode == VoteMode.PerUpdate) return r.committedMask;
        return r.candidate != bytes32(0) ? 1 : 0;
    }

    function _numItems(RoundInfo storage r) internal view returns (uint256) {
        return _voteMode == VoteMode.PerUpdate ? r.numProposers : 1;
    }

    function _revertOnError(bytes memory err) internal pure {
        if (err.length != 0) {
            assembly ("memory-safe") {
                revert(add(err, 0x20), mload(err))
            }
        }
    }

    function _popcount(uint256 x) internal pure returns (uint256 count) {
        while (x != 0) {
            x &= x - 1;
            ++count;
        }
    }
}
