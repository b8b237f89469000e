// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IFLTask} from "../interfaces/IFLTask.sol";
import {Members} from "./Members.sol";
import {Registry} from "./Registry.sol";
import {Sortition} from "./Sortition.sol";

/**
 * @title Settlement
 * @notice Round settlement, per update or on the aggregate (arXiv:2307.00543, FLock, with evidence-aware
 * votes): tally each item's informed votes (+w accept / -w reject; abstentions do not count), give a
 * verdict only to an item with a quorum of informed reviewers (accept at tally >= 0), classify every
 * seat, pay the round reward to the good in proportion to stake, slash the bad by the strength of the
 * evidence (the verdict's margin) and eject by standing. A verdict needs `quorum` informed reviewers;
 * a rejection needs more than half of all the item's revealed reviewers, abstaining or not.
 * A declared canary (see {FLTask-declareCanary}) is never accepted; its proposer is paid as for an
 * accepted update (it did its duty) and never slashed; where its votes
 * rejected it, its verdict is proven (margin 100 %) and a voter that accepted it forfeits its stake
 * and is ejected, whatever its other votes; where they did not, nobody is judged on it.
 * @dev Deployed once and linked (DELEGATECALL in the task's storage): it runs once per round and
 * keeps FLTask under the EIP-170 limit. Python's contracts/settlement.py is its reference; the
 * rules are in docs/protocol.md.
 */
library Settlement {
    using Members for uint256;
    using Registry for Registry.Book;

    uint256 private constant BPS = 10_000;
    uint256 private constant BITS_SENTINEL = uint256(1) << 255;
    uint256 private constant ABSTAIN_SHIFT = 128;
    uint256 private constant ITEM_MASK = (uint256(1) << ABSTAIN_SHIFT) - 1;
    uint256 private constant STANDING_ONE = 256;
    uint256 private constant BYTE_ONES = 0x0101010101010101010101010101010101010101010101010101010101010101;
    /// @dev Transient slots of the reveals of the running transaction: bits at +seat, voter at +128+seat,
    /// claimed proposers at +256+seat (keccak256("fedledger.FLTask.settlement")).
    uint256 private constant STASH = 0x38c3199e14758c0c2eff478ed383062e8756e8ac8f77c89e1eb9c2fc51155a71;

    /// @notice The task's settlement parameters.
    struct Rules {
        IFLTask.VoteMode voteMode;
        bool stakeWeighted;
        uint256 slashRateBps;
        uint256 voterRewardBps;
        uint256 minStake;
        uint256 totalRounds;
        uint256 quorum;
    }

    /**
     * @notice What a round brings to its settlement.
     * @param judged items judged: committed proposers (per-update) or bit 0 for a proposed candidate
     * @param committed proposers that committed
     * @param voteCommitted voters that committed a vote
     * @param revealed voters that revealed
     * @param revealedNow voters whose reveal came with this transaction (see {stashReveal})
     * @param claimedProposers how many proposer accounts the relayer claimed (see {stashProposer})
     */
    struct RoundData {
        uint256 round;
        uint256 numProposers;
        uint256 numVoters;
        uint256 reviewers;
        uint256 judged;
        uint256 committed;
        uint256 voteCommitted;
        uint256 revealed;
        uint256 revealedNow;
        uint256 claimedProposers;
    }

    /// @dev The seats being settled: accounts, member words, votes and verdict bitmaps.
    struct Seats {
        address[] accounts; // by committee position (proposers first), zero for neutral voters
        uint256[] words; // member words, updated in memory and written once
        uint256[] bits; // each revealed vote (accept | abstain << 128 over its items), by voter seat
        uint256[] expanded; // each vote's acceptances by update position (bit i: accepts item i)
        uint256[] assigned; // each voter's informed votes on judged items, by update position
        uint256[] margins; // each item's verdict margin, bps: |tally| / informed weight
        uint256[] slashBps; // each bad seat's share of the full slash, bps
        uint256 outcomes;
        uint256 decided;
        uint256 good; // bitmap over committee positions
        uint256 bad;
        uint256 fooled; // voters (by committee position) that accepted a proven canary
        uint256 reasons; // SlashReason of position s in bits 2s..2s+1
    }

    /**
     * @notice Settles a round: emits {IFLTask.Rewarded} / {IFLTask.Slashed} / {IFLTask.Ejected} per seat
     * and {IFLTask.RoundFinalized}, writes every touched member word once.
     * @param voteBits votes stored by reveal batches that did not finalize, by voter seat
     * @param committee the packed member indices of the round
     * @param pool the reward pool before the round
     * @return outcomes bit i accepts item i
     * @return newPool the pool after paying rewards and taking slashes
     */
    function settle(
        Registry.Book storage b,
        uint256[120] storage voteBits,
        uint256[5] storage committee,
        Rules memory rules,
        RoundData memory d,
        uint256 pool
    ) external returns (uint256 outcomes, uint256 newPool) {
        Seats memory st = _loadSeats(b, voteBits, committee, d);
        int256[] memory tallies = _tally(rules, d, st);
        _judge(rules, d, st);
        uint256 roundReward = pool / (rules.totalRounds - d.round + 1);
        uint256 paid = _reward(rules, d, st, roundReward);
        uint256 slashed = _slash(b, rules, d, st);
        uint256 touched = st.good | st.bad; // canaries are good: their words lose the mark
        for (uint256 s = 0; s < st.words.length; ++s) {
            if ((touched >> s) & 1 == 1) b.members[_at(st.accounts, s)] = _at(st.words, s);
        }
        emit IFLTask.RoundFinalized(d.round, st.outcomes, st.decided, tallies, roundReward, paid, slashed);
        return (st.outcomes, pool - paid + slashed);
    }

    /**
     * @dev The account and member word of every proposer and committed voter (this transaction's
     * revealers are known already), and every revealed vote (this transaction's, else as stored).
     */
    function _loadSeats(
        Registry.Book storage b,
        uint256[120] storage voteBits,
        uint256[5] storage committee,
        RoundData memory d
    ) private view returns (Seats memory st) {
        uint256 numProposers = d.numProposers;
        uint256 seats = numProposers + d.numVoters;
        uint256[] memory packed = new uint256[]((seats + Sortition.PER_WORD - 1) / Sortition.PER_WORD);
        for (uint256 w = 0; w < packed.length; ++w) {
            packed[w] = committee[w];
        }
        st.accounts = new address[](seats);
        st.words = new uint256[](seats);
        st.bits = new uint256[](d.numVoters);
        for (uint256 s = 0; s < seats; ++s) {
            address account;
            uint256 index = Sortition.at(packed, s);
            if (s < numProposers) {
                // A claimed account whose member word carries this seat's index is that member
                // (registered members and indices correspond one to one); else read the index's owner.
                if (s < d.claimedProposers) {
                    account = address(uint160(_stashed(256 + s)));
                    uint256 word = b.members[account];
                    if (word.registered() && word.index() == index) {
                        st.accounts[s] = account;
                        st.words[s] = word;
                        continue;
                    }
                }
                account = b.accountAt[index];
            } else {
                uint256 j = s - numProposers;
                if ((d.voteCommitted >> j) & 1 == 0) continue; // never voted: neither paid nor slashed
                if ((d.revealedNow >> j) & 1 == 1) {
                    account = address(uint160(_stashed(128 + j)));
                    st.bits[j] = _stashed(j);
                } else {
                    account = b.accountAt[index];
                    if ((d.revealed >> j) & 1 == 1) st.bits[j] = voteBits[j] & ~BITS_SENTINEL;
                }
            }
            st.accounts[s] = account;
            st.words[s] = b.members[account];
        }
    }

    /**
     * @dev Sums +w / -w per judged item over the informed votes of each item's reviewers (an abstention
     * is no vote) and gives a verdict where at least `quorum` reviewers were informed. Each vote is
     * first spread onto update positions (`expanded`: accepted items, `assigned`: informed judged
     * items), so that agreement with the outcomes is a popcount. Counts are bit-sliced: byte lane l
     * of word o of `accepts` counts the acceptances of item 8 l + o (at most 119 < 256).
     */
    function _tally(Rules memory rules, RoundData memory d, Seats memory st)
        private
        pure
        returns (int256[] memory tallies)
    {
        uint256 numVoters = d.numVoters;
        uint256 judged = d.judged;
        bool perUpdate = rules.voteMode == IFLTask.VoteMode.PerUpdate;
        tallies = new int256[](perUpdate ? d.numProposers : 1);
        st.expanded = new uint256[](numVoters);
        st.assigned = new uint256[](numVoters);
        st.margins = new uint256[](tallies.length);
        if (judged == 0) return tallies;
        // Stake-weighted only (counted, the counts are the weights): per item the informed stake and
        // the stake of every revealed reviewer, abstaining or not.
        uint256[] memory weights = new uint256[](rules.stakeWeighted ? tallies.length : 0);
        uint256[] memory present = new uint256[](rules.stakeWeighted ? tallies.length : 0);
        bool bitIsItem = !perUpdate || d.reviewers == numVoters; // vote bit a judges item a
        uint256[8] memory accepts;
        uint256[8] memory reviews;
        uint256[8] memory reviewers;
        uint256 lanes = tallies.length < 8 ? tallies.length : 8; // offsets in use
        for (uint256 j = 0; j < numVoters; ++j) {
            if ((d.revealed >> j) & 1 == 0) continue;
            uint256 vote = st.bits[j];
            (uint256 expanded, uint256 assigned, uint256 covered) = bitIsItem
                ? (vote & judged & ITEM_MASK, judged & ~(vote >> ABSTAIN_SHIFT), judged)
                : _spread(
                    vote, judged, j, Sortition.itemCount(j, d.numProposers, numVoters, d.reviewers), numVoters, d.reviewers
                );
            _put(st.expanded, j, expanded);
            _put(st.assigned, j, assigned);
            if (rules.stakeWeighted) {
                uint256 stake = _at(st.words, d.numProposers + j).stake();
                int256 w = int256(stake);
                for (uint256 rest = covered; rest != 0; rest &= rest - 1) {
                    uint256 item = Sortition.popcount((rest & (~rest + 1)) - 1);
                    present[item] += stake;
                    if ((assigned >> item) & 1 == 0) continue; // abstained
                    tallies[item] += (expanded >> item) & 1 == 1 ? w : -w;
                    weights[item] += stake;
                }
            }
            // Eight fixed words each; a lane counts at most 119 votes, so no carry crosses lanes.
            assembly ("memory-safe") {
                for { let o := 0 } lt(o, lanes) { o := add(o, 1) } {
                    let pa := add(accepts, shl(5, o))
                    mstore(pa, add(mload(pa), and(shr(o, expanded), BYTE_ONES)))
                    let pr := add(reviews, shl(5, o))
                    mstore(pr, add(mload(pr), and(shr(o, assigned), BYTE_ONES)))
                }
                // Each revealed voter covers every judged item when a bit is an item: counted below.
                if iszero(bitIsItem) {
                    for { let o := 0 } lt(o, lanes) { o := add(o, 1) } {
                        let pv := add(reviewers, shl(5, o))
                        mstore(pv, add(mload(pv), and(shr(o, covered), BYTE_ONES)))
                    }
                }
            }
        }
        uint256 everyone = Sortition.popcount(d.revealed);
        for (uint256 i = 0; i < tallies.length; ++i) {
            if ((judged >> i) & 1 == 0) continue;
            uint256 shift = 8 * (i >> 3);
            uint256 informed = (reviews[i & 7] >> shift) & 0xff;
            uint256 weight = informed;
            uint256 all = bitIsItem ? everyone : (reviewers[i & 7] >> shift) & 0xff;
            if (rules.stakeWeighted) (weight, all) = (weights[i], present[i]);
            else tallies[i] = int256(2 * ((accepts[i & 7] >> shift) & 0xff)) - int256(informed);
            if (informed < rules.quorum) continue; // no verdict: neither paid nor slashed, not aggregated
            // Accepted: a positive tally. Rejected: the rejections (weight - tally = 2 rejected) hold
            // more than half of every revealed reviewer's weight, abstentions included, so that
            // abstentions never let a minority reject (and slash) an update. Else undecided.
            int256 t = tallies[i];
            uint256 absTally = t >= 0 ? uint256(t) : uint256(-t);
            if (t <= 0 && weight + absTally <= all) continue;
            st.decided |= 1 << i;
            if (t > 0) st.outcomes |= 1 << i;
            // weight > 0: at least one informed vote, and stakes are at least the minimum (> 0)
            _put(st.margins, i, (absTally * BPS) / weight);
        }
    }

    /// @dev Voter `j`'s vote on its `n` assigned items (bit a: item (j + a V) / k) by update position:
    /// its acceptances, its informed (not abstained) judged items and all its judged items.
    // Yul shl(shift, value): shifting the constant 1 by a variable is meant (Slither reads it reversed).
    // slither-disable-next-line incorrect-shift
    function _spread(uint256 vote, uint256 judged, uint256 j, uint256 n, uint256 numVoters, uint256 k)
        private
        pure
        returns (uint256 expanded, uint256 assigned, uint256 covered)
    {
        // n < 120 and every item index < 120: the shifts and the arithmetic stay in range.
        assembly ("memory-safe") {
            let abstain := shr(ABSTAIN_SHIFT, vote)
            for { let a := 0 } lt(a, n) { a := add(a, 1) } {
                let item := div(add(j, mul(a, numVoters)), k)
                if and(shr(item, judged), 1) {
                    covered := or(covered, shl(item, 1))
                    if iszero(and(shr(a, abstain), 1)) {
                        expanded := or(expanded, shl(item, and(shr(a, vote), 1)))
                        assigned := or(assigned, shl(item, 1))
                    }
                }
            }
        }
    }

    /**
     * @dev Good: accepted proposers, voters agreeing with at least half of their informed votes on
     * decided items. Bad: see {IFLTask.SlashReason}; each with its share of the full slash (the
     * verdict's margin for a rejected update, the mean margin of the verdicts lost for a losing vote).
     * Standing: a decided or missing proposal halves it and a rejected or missing one adds one; a
     * losing vote adds half its mean lost margin. A declared canary's proposer is good, its standing
     * untouched; a voter that accepted a proven canary is bad and ejected.
     */
    function _judge(Rules memory rules, RoundData memory d, Seats memory st) private pure {
        bool perUpdate = rules.voteMode == IFLTask.VoteMode.PerUpdate;
        uint256 numProposers = d.numProposers;
        uint256 canaries = 0;
        st.slashBps = new uint256[](st.words.length);
        for (uint256 i = 0; i < numProposers; ++i) {
            uint256 item = perUpdate ? i : 0;
            uint256 w = _at(st.words, i);
            bool rejected;
            if (w.canary()) {
                // Only a committed proposer in per-update mode declares. A canary its votes rejected keeps
                // its verdict (whoever accepted it forfeits its stake, below); any other judges nobody. Its
                // proposer did its duty: paid as for an accepted update, its standing untouched.
                canaries |= 1 << i;
                if ((st.outcomes >> i) & 1 == 1) {
                    st.decided &= ~(1 << i);
                    st.outcomes &= ~(1 << i);
                }
                _put(st.words, i, w.withCanary(false));
                st.good |= 1 << i;
                continue;
            } else if ((d.committed >> i) & 1 == 0) {
                rejected = true;
                st.reasons |= uint256(IFLTask.SlashReason.MissingUpdate) << (2 * i);
                _put(st.slashBps, i, BPS);
            } else if (d.judged != 0 && (st.decided >> item) & 1 == 1) {
                rejected = (st.outcomes >> item) & 1 == 0; // SlashReason.RejectedUpdate is 0
                if (rejected) _put(st.slashBps, i, _at(st.margins, item));
            } else {
                continue; // nothing judged, or no quorum: neither paid nor slashed
            }
            if (rejected) st.bad |= 1 << i;
            else st.good |= 1 << i;
            _put(st.words, i, w.withStanding((w.standing() >> 1) + (rejected ? STANDING_ONE : 0)));
        }
        for (uint256 j = 0; j < d.numVoters; ++j) {
            uint256 s = numProposers + j;
            if ((d.voteCommitted >> j) & 1 == 0) continue;
            if ((d.revealed >> j) & 1 == 0) {
                st.bad |= 1 << s;
                st.reasons |= uint256(IFLTask.SlashReason.UnrevealedVote) << (2 * s);
                _put(st.slashBps, s, BPS);
                continue;
            }
            uint256 covered = _at(st.assigned, j) & st.decided;
            if (covered == 0) continue; // no informed vote on a decided item: neither paid nor slashed
            // A vote loses when it differs from the verdict (a decided item is never tied).
            uint256 lost = (_at(st.expanded, j) ^ st.outcomes) & covered;
            uint256 numLost = Sortition.popcount(lost);
            if (lost & canaries != 0) {
                // It accepted a proven canary: it did not evaluate. It forfeits its stake ({_slash}).
                st.bad |= 1 << s;
                st.fooled |= 1 << s;
                st.reasons |= uint256(IFLTask.SlashReason.LosingVote) << (2 * s);
                uint256 f = _at(st.words, s);
                _put(st.words, s, f.withStanding(f.standing() + Members.EJECT_STANDING));
                continue;
            }
            if (2 * numLost <= Sortition.popcount(covered)) {
                st.good |= 1 << s;
                continue;
            }
            uint256 marginSum = 0;
            for (uint256 rest = lost; rest != 0; rest &= rest - 1) {
                marginSum += _at(st.margins, Sortition.popcount((rest & (~rest + 1)) - 1));
            }
            // The mean lost margin is a rule's figure in whole bps (the reference rounds it the same way).
            // slither-disable-next-line divide-before-multiply
            uint256 meanMargin = marginSum / numLost;
            st.bad |= 1 << s;
            st.reasons |= uint256(IFLTask.SlashReason.LosingVote) << (2 * s);
            _put(st.slashBps, s, meanMargin);
            uint256 w = _at(st.words, s);
            _put(st.words, s, w.withStanding(w.standing() + (STANDING_ONE * meanMargin) / (2 * BPS)));
        }
    }

    /**
     * @dev Pays `roundReward`: `voterRewardBps` of it to the good voters, the rest to the good
     * proposers, each part shared in proportion to stake; returns what was credited. A part with
     * no good seat stays in the pool.
     */
    function _reward(Rules memory rules, RoundData memory d, Seats memory st, uint256 roundReward)
        private
        returns (uint256 paid)
    {
        uint256 numProposers = d.numProposers;
        uint256 good = st.good;
        uint256[] memory words = st.words;
        // The voters' share first, then each one's part of it by stake (the rule of docs/protocol.md).
        // slither-disable-next-line divide-before-multiply
        uint256 voterPart = (roundReward * rules.voterRewardBps) / BPS;
        uint256 proposerPart = roundReward - voterPart;
        uint256 proposerStake = 0;
        uint256 voterStake = 0;
        for (uint256 s = 0; s < words.length; ++s) {
            if ((good >> s) & 1 == 0) continue;
            if (s < numProposers) proposerStake += _at(words, s).stake();
            else voterStake += _at(words, s).stake();
        }
        for (uint256 s = 0; s < words.length; ++s) {
            if ((good >> s) & 1 == 0) continue;
            uint256 w = _at(words, s);
            uint256 amount =
                s < numProposers ? (proposerPart * w.stake()) / proposerStake : (voterPart * w.stake()) / voterStake;
            _put(words, s, w.withOwed(SafeCast.toUint96(w.owed() + amount)));
            paid += amount;
            emit IFLTask.Rewarded(d.round, _at(st.accounts, s), amount);
        }
    }

    /// @dev Takes its share of `slashRate` of the stake of every bad seat and ejects the seats whose standing
    /// reached the mark or whose stake fell below the minimum; returns the total taken.
    function _slash(Registry.Book storage b, Rules memory rules, RoundData memory d, Seats memory st)
        private
        returns (uint256 slashed)
    {
        for (uint256 s = 0; s < st.words.length; ++s) {
            if ((st.bad >> s) & 1 == 0) continue;
            uint256 w = _at(st.words, s);
            uint256 stake = w.stake();
            uint256 amount = (st.fooled >> s) & 1 == 1 ? stake : (stake * rules.slashRateBps * _at(st.slashBps, s)) / (BPS * BPS);
            _put(st.words, s, w.withStake(stake - amount));
            slashed += amount;
            address account = _at(st.accounts, s);
            emit IFLTask.Slashed(d.round, account, amount, IFLTask.SlashReason((st.reasons >> (2 * s)) & 3));
            if (stake - amount < rules.minStake || w.standing() >= Members.EJECT_STANDING) {
                b.setEligible(w.index(), false);
                emit IFLTask.Ejected(d.round, account, w.standing());
            }
        }
    }

    /**
     * @notice Keeps voter `seat`'s revealed `bits` and account for this transaction's settlement
     * (transient storage: cleared when the transaction ends; a seat reveals once per round, so a
     * value is only ever read by the transaction that wrote it).
     */
    function stashReveal(uint256 seat, uint256 bits, address voter) internal {
        _stash(seat, bits);
        _stash(128 + seat, uint160(voter));
    }

    /// @notice The bits {stashReveal} kept for voter `seat`.
    function stashedBits(uint256 seat) internal view returns (uint256) {
        return _stashed(seat);
    }

    /// @notice Keeps the relayer's claim that `account` is the proposer at `seat` (checked when settling).
    function stashProposer(uint256 seat, address account) internal {
        _stash(256 + seat, uint160(account));
    }

    function _stash(uint256 key, uint256 value) private {
        assembly ("memory-safe") {
            tstore(add(STASH, key), value)
        }
    }

    function _stashed(uint256 key) private view returns (uint256 value) {
        assembly ("memory-safe") {
            value := tload(add(STASH, key))
        }
    }

    /// @dev `a[i]` without the bounds check, for loops whose index is bounded by the array's length.
    function _at(uint256[] memory a, uint256 i) private pure returns (uint256 v) {
        assembly ("memory-safe") {
            v := mload(add(a, shl(5, add(i, 1))))
        }
    }

    /// @dev `a[i]` without the bounds check, for loops whose index is bounded by the array's length.
    function _at(address[] memory a, uint256 i) private pure returns (address v) {
        assembly ("memory-safe") {
            v := mload(add(a, shl(5, add(i, 1))))
        }
    }

    /// @dev `a[i] = v` without the bounds check, for loops whose index is bounded by the array's length.
    function _put(uint256[] memory a, uint256 i, uint256 v) private pure {
        assembly ("memory-safe") {
            mstore(add(a, shl(5, add(i, 1))), v)
        }
    }
}
