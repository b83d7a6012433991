// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title IConsortiumRegistry
/// @notice The consortium's members, their roles and their signing keys, as other rxledger
/// contracts and Besu's account permissioning read them.
interface IConsortiumRegistry {
    /// @notice Lifecycle of an organisation. Offboarded is final.
    enum OrgStatus {
        None,
        Active,
        Suspended,
        Offboarded
    }

    /// @notice A signing key of an organisation; a revoked key stays on record.
    struct KeyInfo {
        uint32 org;
        uint40 validFrom;
        uint40 validUntil; // 0 = open-ended
        uint40 revokedAt; // 0 = not revoked
        bool keyAdmin;
    }

    /// @notice The organisation on whose behalf `key` may act now.
    /// @dev Reverts unless the key is within its validity window, not revoked, and its organisation
    /// is active.
    /// @param key The signing key (account address).
    /// @return org The organisation id.
    function activeOrgOf(address key) external view returns (uint32 org);

    /// @notice Whether organisation `org` holds `role`.
    /// @param org The organisation id.
    /// @param role One of the role constants (e.g. SPONSOR_ROLE).
    /// @return True if the role is granted.
    function hasRole(uint32 org, bytes32 role) external view returns (bool);

    /// @notice Whether organisation `org` is active.
    /// @param org The organisation id.
    /// @return True if its status is Active.
    function isActive(uint32 org) external view returns (bool);

    /// @notice Whether `key` was a valid key of an organisation at `time` (revocation is not retroactive).
    /// @param key The signing key.
    /// @param time Unix time to check.
    /// @return valid True if the key was valid then.
    /// @return org The key's organisation (0 if unknown).
    function wasKeyValidAt(address key, uint256 time) external view returns (bool valid, uint32 org);
}
