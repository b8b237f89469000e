// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IFLTask} from "./interfaces/IFLTask.sol";

/**
 * @title FLTaskFactory
 * @notice Creates {FLTask} contracts and lists them: the registry of a federation's tasks.
 * @dev FLTask's creation code is too large to embed in a factory (EIP-170 limits runtime code to
 * 24,576 bytes), so it lives as the runtime code of {TaskCodeStore} contracts, each prefixed with a
 * STOP byte so that it cannot be executed, split into parts that the factory joins. Every task
 * created here runs exactly that code (with its libraries linked); auditors compare the joined
 * parts with the committed artifact.
 */
contract FLTaskFactory {
    address[] private _codeParts;

    address[] private _tasks;

    /// @notice True for every task this factory created.
    mapping(address task => bool) public isTask;

    /// @notice `creator` created `task`, number `index` of this registry, funding its pool with `pool` wei.
    event TaskCreated(
        address indexed task, address indexed creator, uint256 indexed index, bytes32 strategy, uint256 pool
    );

    /// @notice `store` holds no code, or not code this factory can use.
    error InvalidTaskCode(address store);

    /// @param codeParts the {TaskCodeStore}s whose codes, joined in order, are FLTask's creation code
    constructor(address[] memory codeParts) {
        if (codeParts.length == 0) revert InvalidTaskCode(address(0));
        for (uint256 i = 0; i < codeParts.length; ++i) {
            address store = codeParts[i];
            if (store.code.length < 2 || store.code[0] != 0x00) revert InvalidTaskCode(store);
            _codeParts.push(store);
        }
    }

    /**
     * @notice Deploys a new task with parameters `cfg`; any value sent seeds its reward pool.
     * @dev A revert of the task's constructor (e.g. {IFLTask.InvalidParameter}) is passed on unchanged.
     * @return task the address of the new task
     */
    // slither-disable-next-line locked-ether
    function createTask(IFLTask.TaskConfig calldata cfg) external payable returns (address task) {
        // Init code (creation code then its constructor argument), never hashed: no packed-encoding collision.
        // slither-disable-next-line encode-packed-collision
        bytes memory initCode = abi.encodePacked(creationCode(), abi.encode(cfg));
        assembly ("memory-safe") {
            task := create(callvalue(), add(initCode, 0x20), mload(initCode))
            if iszero(task) {
                returndatacopy(0, 0, returndatasize())
                revert(0, returndatasize())
            }
        }
        uint256 index = _tasks.length;
        _tasks.push(task);
        isTask[task] = true;
        emit TaskCreated(task, msg.sender, index, cfg.strategy, msg.value);
    }

    /// @notice The code stores holding FLTask's creation code, in order.
    function codeParts() external view returns (address[] memory) {
        return _codeParts;
    }

    /// @notice FLTask's creation code: the parts' codes joined, each without its STOP byte.
    function creationCode() public view returns (bytes memory code) {
        uint256 total = 0;
        uint256 parts = _codeParts.length;
        for (uint256 i = 0; i < parts; ++i) {
            total += _codeParts[i].code.length - 1;
        }
        code = new bytes(total);
        uint256 offset = 0;
        for (uint256 i = 0; i < parts; ++i) {
            address store = _codeParts[i];
            uint256 size = store.code.length - 1;
            assembly ("memory-safe") {
                extcodecopy(store, add(add(code, 0x20), offset), 1, size)
            }
            offset += size;
        }
    }

    /// @notice Number of tasks created.
    function taskCount() external view returns (uint256) {
        return _tasks.length;
    }

    /// @notice The task number `index`.
    function taskAt(uint256 index) external view returns (address) {
        return _tasks[index];
    }

    /// @notice All tasks, in creation order.
    function tasks() external view returns (address[] memory) {
        return _tasks;
    }
}
