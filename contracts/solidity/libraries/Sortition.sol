// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title Sortition
 * @notice Deterministic draw of a round committee from an eligibility bitmap, and the balanced
 * assignment of reviewers to updates. Both are pure functions of public inputs (the round seed,
 * the bitmap, the committee sizes), so anyone can re-check a round's roles and assignments.
 * @dev The draw is sampling without replacement: draw i takes the r-th (0-based, counting from
 * the lowest index) still-undrawn eligible member, r = keccak256(abi.encode(seed, i)) mod the
 * number left. Its cost depends on the committee size and on the number of bitmap words (at most
 * four for 1,024 members), not on the number of members.
 */
library Sortition {
    uint256 private constant M1 = 0x5555555555555555555555555555555555555555555555555555555555555555;
    uint256 private constant M2 = 0x3333333333333333333333333333333333333333333333333333333333333333;
    uint256 private constant M4 = 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f;
    uint256 private constant M8 = 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff;
    uint256 private constant H16 = 0x0001000100010001000100010001000100010001000100010001000100010001;

    /// @notice Bits per member index in a packed committee word.
    uint256 internal constant INDEX_BITS = 10;
    /// @notice Member indices per packed committee word.
    uint256 internal constant PER_WORD = 25;

    /// @notice Number of set bits of `x`.
    function popcount(uint256 x) internal pure returns (uint256) {
        unchecked {
            x = x - ((x >> 1) & M1);
            x = (x & M2) + ((x >> 2) & M2);
            x = (x + (x >> 4)) & M4;
            x = (x + (x >> 8)) & M8; // sixteen 16-bit lanes, each at most 16
            return (x * H16) >> 240; // their sum, at most 256, lands in the top lane
        }
    }

    /// @notice Position of the `r`-th (0-based) set bit of `x`, counting from the lowest; needs r < popcount(x).
    function selectBit(uint256 x, uint256 r) internal pure returns (uint256) {
        return _select(x, _lanePrefix(x), r);
    }

    /**
     * @notice Draws `size` distinct set bits of `pool` (a bitmap over member indices, cleared as drawn).
     * @dev Draw i takes the r-th remaining set bit, r = keccak256(abi.encode(seed, i)) mod the number
     * left, counting from the lowest index across the words. Each word keeps the prefix sums of its
     * sixteen 16-bit lanes, so finding a bit is a few comparisons and one short scan.
     * @param pool eligibility words; bit i of word w is member index 256 w + i
     * @param seed randomness of the round
     * @param size committee size, at most the number of set bits
     * @return drawn member indices in draw order
     */
    // Yul shl(shift, value): shifting the constant 1 by a variable is meant (Slither reads it reversed).
    // slither-disable-next-line incorrect-shift
    function draw(uint256[] memory pool, bytes32 seed, uint256 size) internal pure returns (uint256[] memory drawn) {
        uint256 words = pool.length;
        uint256[] memory prefix = new uint256[](words);
        uint256 left = 0;
        for (uint256 w = 0; w < words; ++w) {
            prefix[w] = _lanePrefix(pool[w]);
            left += prefix[w] >> 240; // the top lane holds the word's total
        }
        drawn = new uint256[](size);
        // The loop below is `r = keccak256(abi.encode(seed, i)) % (left - i)`, then the r-th set
        // bit across the words: the word by its total (top lane of its prefix), the 16-bit lane by
        // binary search over the prefix sums, the bit by a scan of that lane; then the bit is
        // cleared and the prefix sums of its lane and the lanes above drop by one. All indices are
        // bounded by the array lengths (size <= number of set bits), so no access is out of range.
        assembly ("memory-safe") {
            mstore(0x00, seed)
            for { let i := 0 } lt(i, size) { i := add(i, 1) } {
                mstore(0x20, i)
                let r := mod(keccak256(0x00, 0x40), sub(left, i))
                for { let w := 0 } lt(w, words) { w := add(w, 1) } {
                    let pp := add(prefix, shl(5, add(w, 1)))
                    let p := mload(pp)
                    let c := shr(240, p)
                    if lt(r, c) {
                        let lane := 0
                        for { let step := 8 } step { step := shr(1, step) } {
                            if iszero(gt(and(shr(shl(4, add(lane, sub(step, 1))), p), 0xffff), r)) {
                                lane := add(lane, step)
                            }
                        }
                        if lane { r := sub(r, and(shr(shl(4, sub(lane, 1)), p), 0xffff)) }
                        let xp := add(pool, shl(5, add(w, 1)))
                        let x := mload(xp)
                        let pos := shl(4, lane)
                        for { let bits := shr(pos, x) } 1 { bits := shr(1, bits) } {
                            if and(bits, 1) {
                                if iszero(r) { break }
                                r := sub(r, 1)
                            }
                            pos := add(pos, 1)
                        }
                        mstore(xp, and(x, not(shl(pos, 1))))
                        mstore(pp, sub(p, shl(and(pos, not(15)), H16)))
                        mstore(add(drawn, shl(5, add(i, 1))), or(shl(8, w), pos))
                        break
                    }
                    r := sub(r, c)
                }
            }
        }
    }

    /// @dev Lane m (bits 16m..16m+15) of the result: number of set bits of `x` in its lanes 0..m.
    function _lanePrefix(uint256 x) private pure returns (uint256) {
        unchecked {
            x = x - ((x >> 1) & M1);
            x = (x & M2) + ((x >> 2) & M2);
            x = (x + (x >> 4)) & M4;
            x = (x + (x >> 8)) & M8;
            return x * H16; // prefix sums; each at most 256, so no lane overflows
        }
    }

    /// @dev The `r`-th set bit of `x` given its lane prefix sums `p` (r < total).
    function _select(uint256 x, uint256 p, uint256 r) private pure returns (uint256 pos) {
        unchecked {
            uint256 lane = 0; // first lane whose prefix exceeds r: binary search over 16 lanes
            for (uint256 step = 8; step != 0; step >>= 1) {
                if (((p >> (16 * (lane + step - 1))) & 0xffff) <= r) lane += step;
            }
            if (lane != 0) r -= (p >> (16 * (lane - 1))) & 0xffff;
            uint256 bits = (x >> (16 * lane)) & 0xffff;
            for (pos = 16 * lane; ; ++pos) {
                if (bits & 1 == 1) {
                    if (r == 0) return pos;
                    --r;
                }
                bits >>= 1;
            }
        }
    }

    /**
     * @notice Splits a committee size into proposers and voters.
     * @dev At least one proposer and one voter; `size` must be >= 2.
     * @return numProposers how many of the committee propose; the rest vote
     */
    function proposerCount(uint256 size, uint256 proposerShareBps) internal pure returns (uint256 numProposers) {
        numProposers = (size * proposerShareBps) / 10_000;
        if (numProposers == 0) numProposers = 1;
        if (numProposers > size - 1) numProposers = size - 1;
    }

    /**
     * @notice Reviewers per update in effect for `numProposers` updates and `numVoters` voters.
     * @dev k = 0 (or k >= V) means every voter judges every update (k = V). Otherwise at least
     * ceil(V / P), so that every voter has an update to judge.
     */
    function effectiveReviewers(uint256 k, uint256 numProposers, uint256 numVoters) internal pure returns (uint256) {
        if (k == 0 || k >= numVoters) return numVoters;
        uint256 least = (numVoters + numProposers - 1) / numProposers;
        return k > least ? k : least;
    }

    /**
     * @notice Number of updates voter `seat` reviews.
     * @dev The P * k review slots are dealt round-robin: slot p (update p / k) goes to voter p mod V,
     * so update i is judged by voters (i k + t) mod V, t < k (distinct as k <= V), and every voter
     * gets floor or ceil of P k / V updates. Needs P k >= V (see {effectiveReviewers}).
     */
    function itemCount(uint256 seat, uint256 numProposers, uint256 numVoters, uint256 k)
        internal
        pure
        returns (uint256)
    {
        unchecked {
            return (numProposers * k - seat + numVoters - 1) / numVoters; // all below 2^16
        }
    }

    /// @notice The update (proposer seat) that is item `a` of voter `seat`: (seat + a V) / k.
    function itemOf(uint256 seat, uint256 a, uint256 numVoters, uint256 k) internal pure returns (uint256) {
        unchecked {
            return (seat + a * numVoters) / k; // all below 2^16
        }
    }

    /// @notice Member index at `seat` of a packed committee.
    function at(uint256[] memory packed, uint256 seat) internal pure returns (uint256) {
        uint256 word = packed[seat / PER_WORD];
        unchecked {
            return (word >> (INDEX_BITS * (seat % PER_WORD))) & ((1 << INDEX_BITS) - 1);
        }
    }

    /// @notice Packs member indices (each < 1024) ten bits each, 25 per word.
    function pack(uint256[] memory indices) internal pure returns (uint256[] memory packed) {
        packed = new uint256[]((indices.length + PER_WORD - 1) / PER_WORD);
        for (uint256 s = 0; s < indices.length; ++s) {
            packed[s / PER_WORD] |= indices[s] << (INDEX_BITS * (s % PER_WORD));
        }
    }
}
