// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title Sortition
 * @notice Deterministic draw of a round committee from a list of eligible accounts.
 * @dev A partial Fisher-Yates shuffle driven by keccak256(seed, i): the first `size`
 * positions of the shuffled list form the committee, so there are no duplicates and
 * the cost is bounded by the list length. The same seed and list always give the
 * same committee, which lets anyone re-check a round's roles.
 */
library Sortition {
    /**
     * @notice Draws `size` distinct accounts out of `eligible` (which it shuffles in place).
     * @param eligible candidate accounts; reordered by the draw
     * @param seed randomness of the round
     * @param size committee size, at most `eligible.length`
     * @return committee the drawn accounts, in draw order
     */
    function draw(address[] memory eligible, bytes32 seed, uint256 size)
        internal
        pure
        returns (address[] memory committee)
    {
        uint256 n = eligible.length;
        committee = new address[](size);
        for (uint256 i = 0; i < size; ++i) {
            uint256 j = i + uint256(keccak256(abi.encode(seed, i))) % (n - i);
            (eligible[i], eligible[j]) = (eligible[j], eligible[i]);
            committee[i] = eligible[i];
        }
    }

    /**
     * @notice Splits a committee size into proposers and voters.
     * @dev At least one proposer and one voter; `size` must be >= 2.
     * @param size committee size
     * @param proposerShareBps share of proposers in basis points
     * @return numProposers how many of the committee propose; the rest vote
     */
    function proposerCount(uint256 size, uint256 proposerShareBps) internal pure returns (uint256 numProposers) {
        numProposers = (size * proposerShareBps) / 10_000;
        if (numProposers == 0) numProposers = 1;
        if (numProposers > size - 1) numProposers = size - 1;
    }
}
