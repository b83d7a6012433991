// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {IProbe} from "./interfaces/IProbe.sol";

/// Test-only fixture: custom errors with address, tuple and array arguments, require strings,
/// panics, and immutables (to exercise immutable masking when verifying deployed code).
contract Probe is Context, IProbe {
    struct Pair {
        bytes32 id;
        address who;
    }

    error BadPair(Pair pair, uint8[] codes);

    address public immutable owner;
    uint256 public immutable createdAt;
    uint256 public counter;

    constructor(address owner_) {
        owner = owner_;
        createdAt = block.number;
    }

    function bump() external {
        if (_msgSender() != owner) revert NotAllowed(_msgSender(), 7);
        counter += 1;
    }

    function pair(bytes32 id, address who) external pure {
        uint8[] memory codes = new uint8[](2);
        codes[0] = 1;
        codes[1] = 2;
        revert BadPair(Pair(id, who), codes);
    }

    function message() external pure {
        revert("plain reason");
    }

    function divide(uint256 x) external pure returns (uint256) {
        return 10 / x;
    }
}
