// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Gs1
/// @notice GS1 identifier checks that the contracts enforce themselves.
library Gs1 {
    /// @notice Whether `number`, read as a `digits`-long GS1 key with leading zeros (GLN 13, GTIN 14),
    /// fits and carries the right mod-10 check digit.
    /// @param number The key as an integer.
    /// @param digits Its length in digits.
    /// @return True if valid.
    function isValid(uint64 number, uint256 digits) internal pure returns (bool) {
        if (number == 0 || number >= 10 ** digits) return false;
        uint256 check = number % 10;
        uint256 rest = number / 10;
        uint256 sum;
        // Weights 3,1,3,... from the digit next to the check digit leftwards.
        for (uint256 i = 0; i < digits - 1; ++i) {
            uint256 d = rest % 10;
            rest /= 10;
            sum += i % 2 == 0 ? d * 3 : d;
        }
        return (10 - (sum % 10)) % 10 == check;
    }
}
