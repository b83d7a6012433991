// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// Test-only fixture for the build/decoder/deployer tests (not part of rxledger's contracts).
interface IProbe {
    error NotAllowed(address caller, uint256 code);
}
