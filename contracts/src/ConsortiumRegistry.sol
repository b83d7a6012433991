// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IConsortiumRegistry} from "./interfaces/IConsortiumRegistry.sol";
import {RelayedActions} from "./base/RelayedActions.sol";
import {Gs1} from "./libraries/Gs1.sol";

/// @title ConsortiumRegistry
/// @notice Permissioning of the rxledger consortium: organisations (GLN, roles, status), their signing
/// keys with validity windows, and the Besu account-permissioning view `transactionAllowed`.
/// @dev The consortium admin (a multisig in production) onboards organisations and grants roles. Keys
/// are managed by the admin or by a key-admin key of the organisation itself (directly or relayed with
/// EIP-712). Revoked keys are kept so that what they signed while valid can be checked later.
contract ConsortiumRegistry is IConsortiumRegistry, RelayedActions {
    bytes32 public constant SPONSOR_ROLE = keccak256("rxledger.role.SPONSOR");
    bytes32 public constant CMO_ROLE = keccak256("rxledger.role.CMO");
    bytes32 public constant LOGISTICS_ROLE = keccak256("rxledger.role.LOGISTICS");
    bytes32 public constant DISTRIBUTOR_ROLE = keccak256("rxledger.role.DISTRIBUTOR");
    bytes32 public constant DISPENSER_ROLE = keccak256("rxledger.role.DISPENSER");
    bytes32 public constant REGULATOR_ROLE = keccak256("rxledger.role.REGULATOR");

    bytes32 private constant ADD_KEY_TYPEHASH = keccak256(
        "AddKey(uint32 org,address key,uint40 validFrom,uint40 validUntil,bool keyAdmin,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant REVOKE_KEY_TYPEHASH =
        keccak256("RevokeKey(address key,uint256 nonce,uint256 deadline)");
    bytes32 private constant ROTATE_KEY_TYPEHASH = keccak256(
        "RotateKey(address oldKey,address newKey,uint40 validUntil,uint256 nonce,uint256 deadline)"
    );

    struct Organization {
        uint64 gln;
        OrgStatus status;
    }

    /// @notice The consortium admin.
    address public admin;
    /// @notice The admin proposed by the current admin, pending acceptance.
    address public pendingAdmin;
    /// @notice Number of organisations ever onboarded; ids run from 1 to this.
    uint32 public organizationCount;

    mapping(uint32 org => Organization) private _orgs;
    mapping(uint64 gln => uint32 org) private _orgByGln;
    mapping(uint32 org => mapping(bytes32 role => bool)) private _roles;
    mapping(address key => KeyInfo) private _keys;
    mapping(address relayer => bool) private _relayers;

    /// @notice The caller is not the consortium admin.
    error NotAdmin(address caller);
    /// @notice The caller is neither the admin nor an active key-admin key of `org`.
    error NotKeyAdmin(address caller, uint32 org);
    /// @notice No organisation has this id.
    error UnknownOrganization(uint32 org);
    /// @notice A GLN is invalid (not 13 digits or bad check digit).
    error InvalidGln(uint64 gln);
    /// @notice The GLN is already registered to another organisation.
    error GlnTaken(uint64 gln, uint32 org);
    /// @notice The role is not one of the consortium roles.
    error UnknownRole(bytes32 role);
    /// @notice The organisation's status does not allow the requested transition.
    error InvalidOrgTransition(uint32 org, OrgStatus from, OrgStatus to);
    /// @notice The key is already registered (keys are never reused, even after revocation).
    error KeyExists(address key);
    /// @notice The key is unknown to the registry.
    error UnknownKey(address key);
    /// @notice The key has been revoked.
    error KeyIsRevoked(address key, uint40 revokedAt);
    /// @notice The key is outside its validity window.
    error KeyNotValidNow(address key, uint40 validFrom, uint40 validUntil);
    /// @notice The key's organisation is not active.
    error OrganizationNotActive(uint32 org, OrgStatus status);
    /// @notice The validity window is empty or the key address is zero.
    error InvalidKeyWindow(address key, uint40 validFrom, uint40 validUntil);
    /// @notice Only the proposed admin can accept the admin role.
    error NotPendingAdmin(address caller);

    /// @notice An organisation joined the consortium.
    event OrganizationOnboarded(uint32 indexed org, uint64 indexed gln, string name);
    /// @notice An organisation's status changed.
    event OrganizationStatusChanged(uint32 indexed org, OrgStatus from, OrgStatus to, bytes32 reasonHash);
    /// @notice A role was granted to an organisation.
    event RoleGranted(uint32 indexed org, bytes32 indexed role);
    /// @notice A role was revoked from an organisation.
    event RoleRevoked(uint32 indexed org, bytes32 indexed role);
    /// @notice A signing key was added to an organisation by `by`.
    event KeyAdded(
        uint32 indexed org, address indexed key, uint40 validFrom, uint40 validUntil, bool keyAdmin, address by
    );
    /// @notice A signing key was revoked by `by`; it stays on record.
    event KeyRevoked(uint32 indexed org, address indexed key, uint40 revokedAt, address by);
    /// @notice A relayer (an API host's sending account) was allowed or disallowed to send transactions.
    event RelayerSet(address indexed relayer, bool allowed);
    /// @notice The admin proposed a new admin.
    event AdminProposed(address indexed current, address indexed proposed);
    /// @notice The admin role passed to a new address.
    event AdminTransferred(address indexed previous, address indexed current);

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    /// @param initialAdmin The consortium admin (a multisig in production).
    constructor(address initialAdmin) EIP712("rxledger.ConsortiumRegistry", "1") {
        admin = initialAdmin;
        emit AdminTransferred(address(0), initialAdmin);
    }

    // ---------------------------------------------------------------- admin

    /// @notice Proposes a new consortium admin; it takes over once it calls acceptAdmin.
    /// @param proposed The new admin address.
    function proposeAdmin(address proposed) external onlyAdmin {
        pendingAdmin = proposed;
        emit AdminProposed(admin, proposed);
    }

    /// @notice Accepts the admin role proposed to the caller.
    function acceptAdmin() external {
        if (msg.sender != pendingAdmin) revert NotPendingAdmin(msg.sender);
        emit AdminTransferred(admin, msg.sender);
        admin = msg.sender;
        pendingAdmin = address(0);
    }

    /// @notice Onboards an organisation with its GLN, name and roles; it starts active.
    /// @param gln The organisation's 13-digit GS1 Global Location Number.
    /// @param name Its legal name (emitted, not stored).
    /// @param roles Role constants to grant.
    /// @return org The new organisation id.
    function onboardOrganization(uint64 gln, string calldata name, bytes32[] calldata roles)
        external
        onlyAdmin
        returns (uint32 org)
    {
        if (!Gs1.isValid(gln, 13)) revert InvalidGln(gln);
        uint32 existing = _orgByGln[gln];
        if (existing != 0) revert GlnTaken(gln, existing);
        org = ++organizationCount;
        _orgs[org] = Organization({gln: gln, status: OrgStatus.Active});
        _orgByGln[gln] = org;
        emit OrganizationOnboarded(org, gln, name);
        emit OrganizationStatusChanged(org, OrgStatus.None, OrgStatus.Active, bytes32(0));
        for (uint256 i = 0; i < roles.length; ++i) {
            _grantRole(org, roles[i]);
        }
    }

    /// @notice Grants a role to an organisation.
    /// @param org The organisation id.
    /// @param role The role constant.
    function grantRole(uint32 org, bytes32 role) external onlyAdmin {
        _requireOrg(org);
        _grantRole(org, role);
    }

    /// @notice Revokes a role from an organisation.
    /// @param org The organisation id.
    /// @param role The role constant.
    function revokeRole(uint32 org, bytes32 role) external onlyAdmin {
        _requireOrg(org);
        _requireKnownRole(role);
        if (_roles[org][role]) {
            _roles[org][role] = false;
            emit RoleRevoked(org, role);
        }
    }

    /// @notice Suspends an active organisation: none of its keys can act until it is reactivated.
    /// @param org The organisation id.
    /// @param reasonHash Hash of the documented reason.
    function suspendOrganization(uint32 org, bytes32 reasonHash) external onlyAdmin {
        _setStatus(org, OrgStatus.Active, OrgStatus.Suspended, reasonHash);
    }

    /// @notice Reactivates a suspended organisation.
    /// @param org The organisation id.
    /// @param reasonHash Hash of the documented reason.
    function reactivateOrganization(uint32 org, bytes32 reasonHash) external onlyAdmin {
        _setStatus(org, OrgStatus.Suspended, OrgStatus.Active, reasonHash);
    }

    /// @notice Offboards an organisation for good (from active or suspended).
    /// @param org The organisation id.
    /// @param reasonHash Hash of the documented reason.
    function offboardOrganization(uint32 org, bytes32 reasonHash) external onlyAdmin {
        OrgStatus status = _requireOrg(org).status;
        if (status == OrgStatus.Offboarded) revert InvalidOrgTransition(org, status, OrgStatus.Offboarded);
        _orgs[org].status = OrgStatus.Offboarded;
        emit OrganizationStatusChanged(org, status, OrgStatus.Offboarded, reasonHash);
    }

    /// @notice Allows or disallows an account to send transactions as a relayer (Besu permissioning).
    /// @param relayer The sending account of an API host.
    /// @param allowed Whether it may send.
    function setRelayer(address relayer, bool allowed) external onlyAdmin {
        _relayers[relayer] = allowed;
        emit RelayerSet(relayer, allowed);
    }

    // ----------------------------------------------------------------- keys

    /// @notice Adds a signing key to an organisation (by the admin or one of the org's key-admin keys).
    /// @param org The organisation id.
    /// @param key The new key's address; never used before.
    /// @param validFrom Unix time from which the key is valid (0 = now).
    /// @param validUntil Unix time until which it is valid (0 = open-ended).
    /// @param keyAdmin Whether the key may manage the organisation's keys.
    function addKey(uint32 org, address key, uint40 validFrom, uint40 validUntil, bool keyAdmin) external {
        address by = _requireKeyAdmin(org);
        _addKey(org, key, validFrom, validUntil, keyAdmin, by);
    }

    /// @notice Revokes a key now (by the admin or a key-admin key of its organisation).
    /// @param key The key to revoke.
    function revokeKey(address key) external {
        KeyInfo storage info = _keys[key];
        if (info.org == 0) revert UnknownKey(key);
        address by = _requireKeyAdmin(info.org);
        _revokeKey(key, by);
    }

    /// @notice Replaces `oldKey` by `newKey` in one step: the new key gets the old one's key-admin
    /// flag and is valid from now; the old key is revoked.
    /// @param oldKey The key being retired.
    /// @param newKey The replacement key.
    /// @param validUntil End of the new key's validity (0 = open-ended).
    function rotateKey(address oldKey, address newKey, uint40 validUntil) external {
        KeyInfo storage info = _keys[oldKey];
        uint32 org = info.org;
        if (org == 0) revert UnknownKey(oldKey);
        address by = _requireKeyAdmin(org);
        bool keyAdmin = info.keyAdmin;
        _addKey(org, newKey, 0, validUntil, keyAdmin, by);
        _revokeKey(oldKey, by);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IConsortiumRegistry
    function activeOrgOf(address key) public view returns (uint32 org) {
        KeyInfo memory info = _keys[key];
        org = info.org;
        if (org == 0) revert UnknownKey(key);
        if (info.revokedAt != 0) revert KeyIsRevoked(key, info.revokedAt);
        if (block.timestamp < info.validFrom || (info.validUntil != 0 && block.timestamp > info.validUntil)) {
            revert KeyNotValidNow(key, info.validFrom, info.validUntil);
        }
        OrgStatus status = _orgs[org].status;
        if (status != OrgStatus.Active) revert OrganizationNotActive(org, status);
    }

    /// @inheritdoc IConsortiumRegistry
    function hasRole(uint32 org, bytes32 role) external view returns (bool) {
        return _roles[org][role];
    }

    /// @inheritdoc IConsortiumRegistry
    function isActive(uint32 org) external view returns (bool) {
        return _orgs[org].status == OrgStatus.Active;
    }

    /// @inheritdoc IConsortiumRegistry
    function wasKeyValidAt(address key, uint256 time) external view returns (bool valid, uint32 org) {
        KeyInfo memory info = _keys[key];
        org = info.org;
        valid = org != 0 && time >= info.validFrom && (info.validUntil == 0 || time <= info.validUntil)
            && (info.revokedAt == 0 || time < info.revokedAt);
    }

    /// @notice The record of a key (also of a revoked one).
    /// @param key The key.
    /// @return The key's record; org 0 if unknown.
    function keyInfo(address key) external view returns (KeyInfo memory) {
        return _keys[key];
    }

    /// @notice An organisation's GLN and status.
    /// @param org The organisation id.
    /// @return gln Its GLN.
    /// @return status Its status.
    function organization(uint32 org) external view returns (uint64 gln, OrgStatus status) {
        Organization memory o = _orgs[org];
        return (o.gln, o.status);
    }

    /// @notice The organisation registered under a GLN (0 if none).
    /// @param gln The GLN.
    /// @return The organisation id.
    function organizationByGln(uint64 gln) external view returns (uint32) {
        return _orgByGln[gln];
    }

    /// @notice Whether an account is an allowed relayer.
    /// @param relayer The account.
    /// @return True if allowed.
    function isRelayer(address relayer) external view returns (bool) {
        return _relayers[relayer];
    }

    /// @notice Besu account permissioning: whether `sender` may send a transaction at all.
    /// @dev True only for the admin, allowed relayers, and currently valid keys of active organisations.
    /// The remaining parameters are part of Besu's interface and are not used.
    /// @param sender The transaction's sender.
    /// @return True if the node should accept the transaction.
    function transactionAllowed(
        address sender,
        address, /* target */
        uint256, /* value */
        uint256, /* gasPrice */
        uint256, /* gasLimit */
        bytes calldata /* payload */
    ) external view returns (bool) {
        if (sender == admin || _relayers[sender]) return true;
        KeyInfo memory info = _keys[sender];
        if (info.org == 0 || info.revokedAt != 0) return false;
        if (block.timestamp < info.validFrom || (info.validUntil != 0 && block.timestamp > info.validUntil)) {
            return false;
        }
        return _orgs[info.org].status == OrgStatus.Active;
    }

    // ------------------------------------------------------------- internal

    function _actionType(bytes4 selector) internal pure override returns (bytes32, uint256, uint256) {
        if (selector == this.addKey.selector) return (ADD_KEY_TYPEHASH, 5, 0);
        if (selector == this.revokeKey.selector) return (REVOKE_KEY_TYPEHASH, 1, 0);
        if (selector == this.rotateKey.selector) return (ROTATE_KEY_TYPEHASH, 3, 0);
        revert ActionNotRelayable(selector);
    }

    function _requireKeyAdmin(uint32 org) private view returns (address actor) {
        actor = _actor();
        if (actor == admin) return actor;
        KeyInfo memory info = _keys[actor];
        if (info.org != org || !info.keyAdmin) revert NotKeyAdmin(actor, org);
        activeOrgOf(actor); // the key-admin key itself must be valid and its org active
    }

    function _addKey(uint32 org, address key, uint40 validFrom, uint40 validUntil, bool keyAdmin, address by)
        private
    {
        _requireOrg(org);
        if (_keys[key].org != 0) revert KeyExists(key);
        uint40 from = validFrom == 0 ? uint40(block.timestamp) : validFrom;
        if (key == address(0) || (validUntil != 0 && validUntil <= from)) {
            revert InvalidKeyWindow(key, from, validUntil);
        }
        _keys[key] =
            KeyInfo({org: org, validFrom: from, validUntil: validUntil, revokedAt: 0, keyAdmin: keyAdmin});
        emit KeyAdded(org, key, from, validUntil, keyAdmin, by);
    }

    function _revokeKey(address key, address by) private {
        KeyInfo storage info = _keys[key];
        if (info.revokedAt != 0) revert KeyIsRevoked(key, info.revokedAt);
        info.revokedAt = uint40(block.timestamp);
        emit KeyRevoked(info.org, key, uint40(block.timestamp), by);
    }

    function _grantRole(uint32 org, bytes32 role) private {
        _requireKnownRole(role);
        if (!_roles[org][role]) {
            _roles[org][role] = true;
            emit RoleGranted(org, role);
        }
    }

    function _setStatus(uint32 org, OrgStatus from, OrgStatus to, bytes32 reasonHash) private {
        OrgStatus status = _requireOrg(org).status;
        if (status != from) revert InvalidOrgTransition(org, status, to);
        _orgs[org].status = to;
        emit OrganizationStatusChanged(org, from, to, reasonHash);
    }

    function _requireOrg(uint32 org) private view returns (Organization storage o) {
        o = _orgs[org];
        if (o.status == OrgStatus.None) revert UnknownOrganization(org);
    }

    function _requireKnownRole(bytes32 role) private pure {
        if (
            role != SPONSOR_ROLE && role != CMO_ROLE && role != LOGISTICS_ROLE && role != DISTRIBUTOR_ROLE
                && role != DISPENSER_ROLE && role != REGULATOR_ROLE
        ) revert UnknownRole(role);
    }
}
