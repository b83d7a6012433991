// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title IBatchRegistry
/// @notice Products (GTINs), their authorised manufacturers, batches with their release state and the
/// certificates anchored against them, as the custody ledger reads them.
interface IBatchRegistry {
    /// @notice Batch status machine: Quarantine -> Released | Rejected; Released -> Recalled; any
    /// non-terminal state <-> Suspended. Rejected and Recalled are final.
    enum BatchStatus {
        None,
        Quarantine,
        Released,
        Rejected,
        Recalled,
        Suspended
    }

    /// @notice What the custody ledger needs to know of a batch.
    struct BatchCore {
        bytes32 batchId;
        uint32 index;
        BatchStatus status;
        uint32 manufacturer;
        uint32 sponsor;
    }

    /// @notice The custody-relevant state of the batch with id `batchId`.
    /// @param batchId keccak256(abi.encode(uint64 gtin, string lot)).
    /// @return core Index 0 if the batch does not exist.
    function batchCore(bytes32 batchId) external view returns (BatchCore memory core);

    /// @notice The custody-relevant state of the batch with sequence number `index`.
    /// @param index The batch's sequence number (from 1).
    /// @return core The batch's core state.
    function batchCoreAt(uint32 index) external view returns (BatchCore memory core);
}
