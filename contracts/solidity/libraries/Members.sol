// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title Members
 * @notice One storage word per member: stake, credited balance, exit time, member index and flags.
 * @dev Settling a round rewrites each seat's word once (a warm, non-zero slot), so a reward or a
 * slash costs one SSTORE. Layout (lowest bit first): stake 96 bits, owed 96 bits, exitReadyAt 32
 * bits, index 10 bits (bits 224-233), standing 16 bits (bits 234-249: 1/256 units of rejected proposals and
 * losing votes, see {Settlement}), canary (bit 253: the member declared its update of the running round a
 * canary, cleared by the settlement), exiting (bit 254), registered (bit 255). 96 bits hold every
 * wei amount that can exist (the ether supply is far below 2^96 wei); the contract checks anyway.
 */
library Members {
    uint256 private constant MASK96 = (uint256(1) << 96) - 1;
    uint256 private constant OWED_SHIFT = 96;
    uint256 private constant EXIT_SHIFT = 192;
    uint256 private constant INDEX_SHIFT = 224;
    uint256 private constant STANDING_SHIFT = 234;
    /// @notice Standing at or above this (1.25 rejected proposals) ejects a member.
    uint256 internal constant EJECT_STANDING = 320;
    /// @notice Standing saturates here (16 bits).
    uint256 internal constant STANDING_MAX = 0xffff;
    uint256 private constant CANARY = uint256(1) << 253;
    uint256 private constant EXITING = uint256(1) << 254;
    uint256 private constant REGISTERED = uint256(1) << 255;

    /// @notice A fresh member word.
    function make(uint256 stake_, uint256 owed_, uint256 index_) internal pure returns (uint256) {
        return stake_ | (owed_ << OWED_SHIFT) | (index_ << INDEX_SHIFT) | REGISTERED;
    }

    /// @notice Stake in wei.
    function stake(uint256 w) internal pure returns (uint256) {
        return w & MASK96;
    }

    /// @notice Credited (withdrawable) wei.
    function owed(uint256 w) internal pure returns (uint256) {
        return (w >> OWED_SHIFT) & MASK96;
    }

    /// @notice When a requested exit may be completed (0 when none was requested).
    function exitReadyAt(uint256 w) internal pure returns (uint256) {
        return (w >> EXIT_SHIFT) & 0xffffffff;
    }

    /// @notice The member index (meaningful while registered).
    function index(uint256 w) internal pure returns (uint256) {
        return (w >> INDEX_SHIFT) & 0x3ff;
    }

    /// @notice The member's standing (1/256 units; see {EJECT_STANDING}).
    function standing(uint256 w) internal pure returns (uint256) {
        return (w >> STANDING_SHIFT) & STANDING_MAX;
    }

    /// @notice `w` with the standing replaced (saturating at {STANDING_MAX}).
    function withStanding(uint256 w, uint256 value) internal pure returns (uint256) {
        if (value > STANDING_MAX) value = STANDING_MAX;
        return (w & ~(STANDING_MAX << STANDING_SHIFT)) | (value << STANDING_SHIFT);
    }

    /// @notice True while the account is a member.
    function registered(uint256 w) internal pure returns (bool) {
        return w & REGISTERED != 0;
    }

    /// @notice True when the member declared its update of the running round a canary.
    function canary(uint256 w) internal pure returns (bool) {
        return w & CANARY != 0;
    }

    /// @notice `w` with the canary mark set or cleared.
    function withCanary(uint256 w, bool value) internal pure returns (uint256) {
        return value ? w | CANARY : w & ~CANARY;
    }

    /// @notice True once the member asked to exit.
    function exiting(uint256 w) internal pure returns (bool) {
        return w & EXITING != 0;
    }

    /// @notice `w` with the stake replaced (`value` < 2^96).
    function withStake(uint256 w, uint256 value) internal pure returns (uint256) {
        return (w & ~MASK96) | value;
    }

    /// @notice `w` with the credited balance replaced (`value` < 2^96).
    function withOwed(uint256 w, uint256 value) internal pure returns (uint256) {
        return (w & ~(MASK96 << OWED_SHIFT)) | (value << OWED_SHIFT);
    }

    /// @notice `w` marked as exiting from `readyAt` (< 2^32).
    function withExit(uint256 w, uint256 readyAt) internal pure returns (uint256) {
        return (w & ~(uint256(0xffffffff) << EXIT_SHIFT)) | (readyAt << EXIT_SHIFT) | EXITING;
    }

    /// @notice What is left of a member that completed its exit: its credited balance and its standing
    /// (so that leaving and joining again does not wipe a record of rejections).
    function departed(uint256 owed_, uint256 standing_) internal pure returns (uint256) {
        return (owed_ << OWED_SHIFT) | (standing_ << STANDING_SHIFT);
    }
}
