// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IFLTask} from "../interfaces/IFLTask.sol";
import {Members} from "./Members.sol";
import {Sortition} from "./Sortition.sol";

/**
 * @title Registry
 * @notice The members of a task: one word per account (see {Members}), the account of each
 * member index, and two bitmaps over indices (occupied, eligible for the draw).
 * @dev Deployed once and linked (its external functions run by DELEGATECALL in the task's storage),
 * so that FLTask's own code stays under the EIP-170 limit. Only membership changes and views live
 * here; everything a round does reads the book directly and never calls out.
 */
library Registry {
    using Members for uint256;

    /// @notice Largest number of members at a time; member indices are 0..MAX_MEMBERS-1.
    uint256 internal constant MAX_MEMBERS = 1024;
    /// @notice Words of each bitmap over member indices.
    uint256 internal constant WORDS = MAX_MEMBERS / 256;

    /// @dev `members` must stay the first field: FLTask reads it in assembly at the book's own slot.
    struct Book {
        mapping(address account => uint256) members;
        address[MAX_MEMBERS] accountAt;
        uint256[WORDS] occupied;
        uint256[WORDS] eligible;
        mapping(address account => uint256) canarySeals; // seal (low 224 bits) | round it was set << 224
    }

    uint256 private constant SEAL_MASK = (uint256(1) << 224) - 1;
    uint256 private constant BPS = 10_000;

    /**
     * @notice Makes `account` a member staking `value` wei, at the lowest free index.
     * @return index the member index taken
     */
    function register(Book storage b, address account, uint256 value, uint256 minStake)
        external
        returns (uint256 index)
    {
        uint256 m = b.members[account];
        if (m.registered()) revert IFLTask.AlreadyRegistered(account);
        if (value < minStake) revert IFLTask.InsufficientStake(value, minStake);
        if (value > type(uint96).max) revert IFLTask.AmountTooLarge(value);
        index = _takeFreeIndex(b);
        b.accountAt[index] = account;
        // A former member keeps what it is owed and its standing; an ejected one is not drawn again.
        if (m.standing() < Members.EJECT_STANDING) setEligible(b, index, true);
        b.members[account] = Members.make(value, m.owed(), index).withStanding(m.standing());
        emit IFLTask.Registered(account, index, value);
    }

    /// @notice Adds `value` wei to the stake of `account`, which makes it eligible again at the minimum
    /// unless its standing ejected it.
    function addStake(Book storage b, address account, uint256 value, uint256 minStake) external {
        uint256 m = b.members[account];
        if (!m.registered()) revert IFLTask.NotMember(account);
        if (m.exiting()) revert IFLTask.ExitPending(account);
        if (value == 0) revert IFLTask.ZeroAmount();
        uint256 oldStake = m.stake();
        uint256 newStake = oldStake + value;
        if (newStake > type(uint96).max) revert IFLTask.AmountTooLarge(newStake);
        b.members[account] = m.withStake(newStake);
        // An ejected member's standing stays: stake buys back eligibility only after a stake-only ejection.
        if (newStake >= minStake && m.standing() < Members.EJECT_STANDING) setEligible(b, m.index(), true);
        emit IFLTask.StakeChanged(account, oldStake, newStake);
    }

    /**
     * @notice Sets the canary seal of `account`: the last unrevealed link of its canary hash chain
     * (fedledger's contracts/canary.py; 224 bits are kept). It counts from the round after `round`,
     * so that no member picks a seal after seeing the global model its lottery draws on.
     */
    function setCanarySeal(Book storage b, address account, bytes32 seal, uint256 round) external {
        if (!b.members[account].registered()) revert IFLTask.NotMember(account);
        if (seal == bytes32(0)) revert IFLTask.ZeroHash();
        b.canarySeals[account] = (uint256(seal) & SEAL_MASK) | (round << 224);
        emit IFLTask.CanarySealed(account, seal, round);
    }

    /**
     * @notice Declares the update of `account` in `round` a canary: `preimage` must open its seal (set
     * before `round`) and win the lottery keccak256(preimage, globalHash, round) mod 10000 < `rateBps`.
     * The preimage becomes the seal; the member word carries the mark until the settlement.
     */
    function declareCanary(
        Book storage b,
        address account,
        bytes32 preimage,
        uint256 round,
        bytes32 globalHash,
        uint256 rateBps
    ) external {
        uint256 seal = b.canarySeals[account];
        bool opens = (uint256(keccak256(abi.encode(preimage))) ^ seal) & SEAL_MASK == 0 && seal >> 224 < round;
        if (!opens || uint256(keccak256(abi.encode(preimage, globalHash, round))) % BPS >= rateBps) {
            revert IFLTask.NotCanary(round, account);
        }
        b.canarySeals[account] = (uint256(preimage) & SEAL_MASK) | (round << 224);
        b.members[account] = b.members[account].withCanary(true);
        emit IFLTask.CanaryDeclared(round, account, preimage);
    }

    /// @notice Marks `account` as leaving (no longer drawn); returns the encoded error, or "" when done.
    function requestExit(Book storage b, address account, uint256 exitDelay) external returns (bytes memory) {
        uint256 m = b.members[account];
        if (!m.registered()) return abi.encodeWithSelector(IFLTask.NotMember.selector, account);
        if (m.exiting()) return abi.encodeWithSelector(IFLTask.ExitPending.selector, account);
        uint256 readyAt = block.timestamp + exitDelay;
        b.members[account] = m.withExit(SafeCast.toUint32(readyAt));
        setEligible(b, m.index(), false);
        emit IFLTask.ExitRequested(account, readyAt);
        return "";
    }

    /**
     * @notice Completes the exit of `account`: its stake is credited to it and its index freed.
     * @param activeRound the unfinished round `account` holds a seat in, or 0
     * @return the encoded error, or "" when done
     */
    function completeExit(Book storage b, address account, uint256 activeRound) external returns (bytes memory) {
        uint256 m = b.members[account];
        if (!m.registered()) return abi.encodeWithSelector(IFLTask.NotMember.selector, account);
        if (!m.exiting()) return abi.encodeWithSelector(IFLTask.ExitNotRequested.selector, account);
        if (block.timestamp < m.exitReadyAt()) {
            return abi.encodeWithSelector(IFLTask.ExitDelayNotOver.selector, m.exitReadyAt());
        }
        if (activeRound != 0) return abi.encodeWithSelector(IFLTask.ActiveInRound.selector, activeRound);
        uint256 stake = m.stake();
        uint256 index = m.index();
        b.occupied[index >> 8] &= ~(uint256(1) << (index & 255));
        b.members[account] = Members.departed(SafeCast.toUint96(m.owed() + stake), m.standing());
        emit IFLTask.Exited(account, stake);
        return "";
    }

    /**
     * @notice Pays `account` everything credited to it (checks-effects-interactions; the caller is
     * reentrancy-guarded); returns the encoded error, or "" when paid.
     */
    function withdraw(Book storage b, address account) external returns (bytes memory) {
        uint256 m = b.members[account];
        uint256 amount = m.owed();
        if (amount == 0) return abi.encodeWithSelector(IFLTask.NothingToWithdraw.selector, account);
        b.members[account] = m.withOwed(0);
        // slither-disable-next-line arbitrary-send-eth,low-level-calls
        (bool ok,) = payable(account).call{value: amount}("");
        if (!ok) {
            // slither-disable-next-line reentrancy-eth,reentrancy-no-eth
            b.members[account] = m; // undo, so that a failed payment changes nothing (the caller is nonReentrant)
            return abi.encodeWithSelector(IFLTask.TransferFailed.selector, account, amount);
        }
        emit IFLTask.Withdrawn(account, amount);
        return "";
    }

    /// @notice The accounts of the members set in `eligibleOnly ? eligible : occupied`, by index.
    function accounts(Book storage b, bool eligibleOnly) external view returns (address[] memory list) {
        uint256 count = 0;
        // slither-disable-next-line uninitialized-local
        uint256[WORDS] memory words; // every word is set below
        for (uint256 w = 0; w < WORDS; ++w) {
            words[w] = eligibleOnly ? b.eligible[w] : b.occupied[w];
            count += Sortition.popcount(words[w]);
        }
        list = new address[](count);
        uint256 k = 0;
        for (uint256 w = 0; w < WORDS; ++w) {
            for (uint256 word = words[w]; word != 0; word &= word - 1) {
                list[k++] = b.accountAt[(w << 8) | Sortition.popcount((word & (~word + 1)) - 1)];
            }
        }
    }

    /// @notice The accounts at `count` positions from `first` of a packed committee.
    function committeeAccounts(Book storage b, uint256[] memory packed, uint256 first, uint256 count)
        external
        view
        returns (address[] memory list)
    {
        list = new address[](count);
        for (uint256 s = 0; s < count; ++s) {
            list[s] = b.accountAt[Sortition.at(packed, first + s)];
        }
    }

    /// @notice The accounts of member indices.
    function accountsOf(Book storage b, uint256[] memory indices) external view returns (address[] memory list) {
        list = new address[](indices.length);
        for (uint256 s = 0; s < indices.length; ++s) {
            list[s] = b.accountAt[indices[s]];
        }
    }

    /// @notice Sets or clears the eligibility of member `index`.
    function setEligible(Book storage b, uint256 index, bool eligible) internal {
        uint256 mask = uint256(1) << (index & 255);
        if (eligible) b.eligible[index >> 8] |= mask;
        else b.eligible[index >> 8] &= ~mask;
    }

    function _takeFreeIndex(Book storage b) private returns (uint256) {
        for (uint256 w = 0; w < WORDS; ++w) {
            uint256 word = b.occupied[w];
            if (word == type(uint256).max) continue;
            uint256 bit = Sortition.popcount((~word & (word + 1)) - 1); // position of the lowest zero bit
            b.occupied[w] = word | (uint256(1) << bit);
            return (w << 8) | bit;
        }
        revert IFLTask.TaskFull(MAX_MEMBERS);
    }
}
