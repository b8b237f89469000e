// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {FLTask} from "../FLTask.sol";

/**
 * @title ReentrantReceiver
 * @notice Test double: a member contract that tries to re-enter {FLTask.withdraw} when paid.
 * @dev Mode `Bubble` lets the re-entrant revert fail the payment; mode `Swallow` catches it and
 * records the error, so the outer payment goes through once.
 */
contract ReentrantReceiver {
    enum Mode {
        Accept,
        Bubble,
        Swallow
    }

    FLTask public immutable task;
    Mode public mode;
    uint256 public reentryAttempts;
    bytes public lastReentryError;

    constructor(FLTask task_) {
        task = task_;
    }

    /// @notice Sets how the next payment is handled.
    function setMode(Mode mode_) external {
        mode = mode_;
    }

    /// @notice Registers this contract as a member with `msg.value` stake.
    function register() external payable {
        task.register{value: msg.value}();
    }

    /// @notice Calls the task with `data` as this contract, bubbling any revert.
    function act(bytes calldata data) external returns (bytes memory result) {
        (bool ok, bytes memory ret) = address(task).call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        if (mode == Mode.Bubble) {
            reentryAttempts += 1;
            task.withdraw();
        } else if (mode == Mode.Swallow) {
            reentryAttempts += 1;
            try task.withdraw() {} catch (bytes memory err) {
                lastReentryError = err;
            }
        }
    }
}
