// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IFLTask} from "./interfaces/IFLTask.sol";

/**
 * @title FLTaskFactory
 * @notice Creates {FLTask} contracts and lists them: the registry of a federation's tasks.
 * @dev FLTask's creation code is too large to embed in a factory (EIP-170 limits runtime code to
 * 24,576 bytes), so it lives as the runtime code of a separate {TaskCodeStore} contract, prefixed
 * with a STOP byte so that it cannot be executed. Every task created here runs exactly that code;
 * auditors compare the store's code hash with the committed artifact.
 */
contract FLTaskFactory {
    /// @notice Contract whose runtime code is 0x00 followed by FLTask's creation code.
    address public immutable taskCode;

    address[] private _tasks;

    /// @notice True for every task this factory created.
    mapping(address task => bool) public isTask;

    /// @notice `creator` created `task`, number `index` of this registry, funding its pool with `pool` wei.
    event TaskCreated(
        address indexed task, address indexed creator, uint256 indexed index, bytes32 strategy, uint256 pool
    );

    /// @notice `store` holds no code, or not code this factory can use.
    error InvalidTaskCode(address store);

    /// @param taskCode_ the {TaskCodeStore} holding FLTask's creation code
    constructor(address taskCode_) {
        if (taskCode_.code.length < 2 || taskCode_.code[0] != 0x00) revert InvalidTaskCode(taskCode_);
        taskCode = taskCode_;
    }

    /**
     * @notice Deploys a new task with parameters `cfg`; any value sent seeds its reward pool.
     * @dev A revert of the task's constructor (e.g. {IFLTask.InvalidParameter}) is passed on unchanged.
     * @return task the address of the new task
     */
    function createTask(IFLTask.TaskConfig calldata cfg) external payable returns (address task) {
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

    /// @notice FLTask's creation code, read from {taskCode}.
    function creationCode() public view returns (bytes memory code) {
        address store = taskCode;
        uint256 size = store.code.length - 1;
        code = new bytes(size);
        assembly ("memory-safe") {
            extcodecopy(store, add(code, 0x20), 1, size)
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
