// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title TaskCodeStore
 * @notice Holds a contract's creation code as its own runtime code, for {FLTaskFactory}.
 * @dev The runtime code is 0x00 (STOP) followed by `code`, so calling the store does nothing.
 */
contract TaskCodeStore {
    /// @param code the creation code to hold
    constructor(bytes memory code) {
        bytes memory runtime = abi.encodePacked(bytes1(0x00), code);
        assembly ("memory-safe") {
            return(add(runtime, 0x20), mload(runtime))
        }
    }
}
