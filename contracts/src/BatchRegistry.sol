// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IBatchRegistry} from "./interfaces/IBatchRegistry.sol";
import {IConsortiumRegistry} from "./interfaces/IConsortiumRegistry.sol";
import {RelayedActions} from "./base/RelayedActions.sol";
import {Gs1} from "./libraries/Gs1.sol";

/// @title BatchRegistry
/// @notice Products and their authorised manufacturers, batches, certificates (CoA, CoC, QP
/// certification) anchored by document hash with signer and meaning, and the batch status machine.
/// @dev Only hashes, parties and states go on chain; documents stay with their owners. A batch id is
/// keccak256(abi.encode(uint64 gtin, string lot)), so it is the same for every party.
contract BatchRegistry is IBatchRegistry, RelayedActions {
    /// @notice Kinds of certificate that can be anchored against a batch.
    enum CertificateKind {
        None,
        Analysis,
        Conformance,
        QpCertification,
        Other
    }

    /// @notice A certificate anchored against a batch; the document itself never goes on chain.
    struct Certificate {
        bytes32 documentHash; // SHA-256 of the document
        bytes32 meaning; // meaning of the signature, e.g. "released for sale"
        address signer;
        uint32 org;
        CertificateKind kind;
        uint40 anchoredAt;
    }

    /// @notice Everything recorded about a batch.
    struct Batch {
        uint64 gtin;
        uint32 expiry; // YYMMDD as on the pack (GS1 AI 17); DD 00 = end of month
        uint32 index;
        uint32 manufacturer;
        uint32 sponsor;
        BatchStatus status;
        BatchStatus suspendedFrom;
        bool qpCertified;
        bool manufacturerCertified;
        uint64 siteGln;
        uint40 createdAt;
    }

    bytes32 private constant REGISTER_PRODUCT_TYPEHASH =
        keccak256("RegisterProduct(uint64 gtin,uint256 nonce,uint256 deadline)");
    bytes32 private constant AUTHORIZE_MANUFACTURER_TYPEHASH =
        keccak256("AuthorizeManufacturer(uint64 gtin,uint32 manufacturer,uint256 nonce,uint256 deadline)");
    bytes32 private constant REVOKE_MANUFACTURER_TYPEHASH =
        keccak256("RevokeManufacturer(uint64 gtin,uint32 manufacturer,uint256 nonce,uint256 deadline)");
    bytes32 private constant CREATE_BATCH_TYPEHASH = keccak256(
        "CreateBatch(uint64 gtin,string lot,uint32 expiry,uint64 siteGln,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant ANCHOR_CERTIFICATE_TYPEHASH = keccak256(
        "AnchorCertificate(bytes32 batchId,uint8 kind,bytes32 documentHash,bytes32 meaning,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant RELEASE_TYPEHASH =
        keccak256("Release(bytes32 batchId,bytes32 reasonHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant RELEASE_WITH_CERTIFICATION_TYPEHASH = keccak256(
        "ReleaseWithCertification(bytes32 batchId,bytes32 documentHash,bytes32 meaning,bytes32 reasonHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant REJECT_TYPEHASH =
        keccak256("Reject(bytes32 batchId,bytes32 reasonHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant RECALL_TYPEHASH =
        keccak256("Recall(bytes32 batchId,bytes32 reasonHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant SUSPEND_TYPEHASH =
        keccak256("Suspend(bytes32 batchId,bytes32 reasonHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant UNSUSPEND_TYPEHASH =
        keccak256("Unsuspend(bytes32 batchId,bytes32 reasonHash,uint256 nonce,uint256 deadline)");

    bytes32 private immutable SPONSOR_ROLE;
    bytes32 private immutable CMO_ROLE;

    /// @notice The consortium registry that resolves keys to organisations.
    IConsortiumRegistry public immutable registry;
    /// @notice Number of batches ever created; indexes run from 1 to this.
    uint32 public batchCount;

    mapping(uint64 gtin => uint32 sponsor) private _productOwner;
    mapping(uint64 gtin => mapping(uint32 org => bool)) private _authorized;
    mapping(bytes32 batchId => Batch) private _batches;
    mapping(uint32 index => bytes32 batchId) private _batchIdAt;
    mapping(bytes32 batchId => Certificate[]) private _certificates;

    /// @notice The GTIN is malformed (not 14 digits with a valid check digit).
    error InvalidGtin(uint64 gtin);
    /// @notice The GLN is malformed.
    error InvalidGln(uint64 gln);
    /// @notice The GTIN is already registered to an organisation.
    error ProductExists(uint64 gtin, uint32 owner);
    /// @notice No organisation owns this GTIN.
    error UnknownProduct(uint64 gtin);
    /// @notice The organisation lacks the role the action requires.
    error MissingRole(uint32 org, bytes32 role);
    /// @notice The organisation does not own the product.
    error NotProductOwner(uint32 org, uint64 gtin);
    /// @notice The organisation is neither the product's owner nor an authorised manufacturer of it.
    error NotAuthorizedManufacturer(uint32 org, uint64 gtin);
    /// @notice A batch with this GTIN and lot exists already.
    error BatchExists(bytes32 batchId);
    /// @notice No batch has this id.
    error UnknownBatch(bytes32 batchId);
    /// @notice The lot is empty or longer than 20 characters.
    error InvalidLot(string lot);
    /// @notice The expiry is not a valid YYMMDD date.
    error InvalidExpiry(uint32 expiry);
    /// @notice The organisation may not anchor a certificate of this kind against this batch.
    error NotCertifier(uint32 org, bytes32 batchId, CertificateKind kind);
    /// @notice The certificate kind or document hash is invalid.
    error InvalidCertificate(CertificateKind kind, bytes32 documentHash);
    /// @notice The batch's status does not allow the transition.
    error InvalidBatchTransition(bytes32 batchId, BatchStatus from, BatchStatus to);
    /// @notice Release needs a QP certification anchored first or in the same call.
    error QpCertificationMissing(bytes32 batchId);
    /// @notice A batch made by a CMO needs a certificate anchored by that CMO before release.
    error ManufacturerCertificateMissing(bytes32 batchId, uint32 manufacturer);

    /// @notice A sponsor registered a GTIN it owns.
    event ProductRegistered(uint64 indexed gtin, uint32 indexed sponsor, address signer);
    /// @notice A sponsor authorised a CMO to make batches of a GTIN.
    event ManufacturerAuthorized(uint64 indexed gtin, uint32 indexed manufacturer, uint32 sponsor, address signer);
    /// @notice A sponsor withdrew a CMO's authorisation for a GTIN.
    event ManufacturerRevoked(uint64 indexed gtin, uint32 indexed manufacturer, uint32 sponsor, address signer);
    /// @notice A batch was created, in quarantine.
    event BatchCreated(
        bytes32 indexed batchId,
        uint64 indexed gtin,
        uint32 indexed manufacturer,
        uint32 index,
        string lot,
        uint32 expiry,
        uint64 siteGln,
        uint32 sponsor,
        address signer
    );
    /// @notice A certificate was anchored against a batch.
    event CertificateAnchored(
        bytes32 indexed batchId,
        bytes32 indexed documentHash,
        uint32 indexed org,
        CertificateKind kind,
        bytes32 meaning,
        address signer,
        uint256 position
    );
    /// @notice A batch changed status; who, when (block time) and why are recorded.
    event BatchStatusChanged(
        bytes32 indexed batchId,
        BatchStatus indexed from,
        BatchStatus indexed to,
        bytes32 reasonHash,
        uint32 org,
        address signer
    );

    /// @param consortium The ConsortiumRegistry.
    constructor(IConsortiumRegistry consortium) EIP712("rxledger.BatchRegistry", "1") {
        registry = consortium;
        SPONSOR_ROLE = keccak256("rxledger.role.SPONSOR");
        CMO_ROLE = keccak256("rxledger.role.CMO");
    }

    // ------------------------------------------------------------- products

    /// @notice Registers a GTIN as owned by the caller's organisation, which must hold the sponsor role.
    /// @param gtin The 14-digit GTIN.
    function registerProduct(uint64 gtin) external {
        (address signer, uint32 org) = _caller();
        if (!Gs1.isValid(gtin, 14)) revert InvalidGtin(gtin);
        if (!registry.hasRole(org, SPONSOR_ROLE)) revert MissingRole(org, SPONSOR_ROLE);
        uint32 owner = _productOwner[gtin];
        if (owner != 0) revert ProductExists(gtin, owner);
        _productOwner[gtin] = org;
        emit ProductRegistered(gtin, org, signer);
    }

    /// @notice Authorises a CMO to create and commission batches of a GTIN (product owner only).
    /// @param gtin The GTIN.
    /// @param manufacturer The CMO organisation; it must hold the CMO role.
    function authorizeManufacturer(uint64 gtin, uint32 manufacturer) external {
        (address signer, uint32 org) = _productOwnerCaller(gtin);
        if (!registry.hasRole(manufacturer, CMO_ROLE)) revert MissingRole(manufacturer, CMO_ROLE);
        _authorized[gtin][manufacturer] = true;
        emit ManufacturerAuthorized(gtin, manufacturer, org, signer);
    }

    /// @notice Withdraws a CMO's authorisation for a GTIN (existing batches are unaffected).
    /// @param gtin The GTIN.
    /// @param manufacturer The CMO organisation.
    function revokeManufacturer(uint64 gtin, uint32 manufacturer) external {
        (address signer, uint32 org) = _productOwnerCaller(gtin);
        _authorized[gtin][manufacturer] = false;
        emit ManufacturerRevoked(gtin, manufacturer, org, signer);
    }

    // -------------------------------------------------------------- batches

    /// @notice Creates a batch in quarantine; the caller's organisation becomes its manufacturer.
    /// @param gtin The product's GTIN; the caller must own it or be an authorised CMO for it.
    /// @param lot The lot number (1 to 20 characters).
    /// @param expiry Expiry date as YYMMDD (DD 00 means end of month).
    /// @param siteGln GLN of the manufacturing site.
    /// @return batchId keccak256(abi.encode(gtin, lot)).
    function createBatch(uint64 gtin, string calldata lot, uint32 expiry, uint64 siteGln)
        external
        returns (bytes32 batchId)
    {
        (address signer, uint32 org) = _caller();
        uint32 sponsor = _productOwner[gtin];
        if (sponsor == 0) revert UnknownProduct(gtin);
        if (org != sponsor) {
            if (!_authorized[gtin][org]) revert NotAuthorizedManufacturer(org, gtin);
            // An authorisation outlives a role the admin has since withdrawn; the role decides.
            if (!registry.hasRole(org, CMO_ROLE)) revert MissingRole(org, CMO_ROLE);
        }
        if (bytes(lot).length == 0 || bytes(lot).length > 20) revert InvalidLot(lot);
        if (!_validExpiry(expiry)) revert InvalidExpiry(expiry);
        if (!Gs1.isValid(siteGln, 13)) revert InvalidGln(siteGln);
        batchId = keccak256(abi.encode(gtin, lot));
        if (_batches[batchId].index != 0) revert BatchExists(batchId);
        uint32 index = ++batchCount;
        _batches[batchId] = Batch({
            gtin: gtin,
            expiry: expiry,
            index: index,
            manufacturer: org,
            sponsor: sponsor,
            status: BatchStatus.Quarantine,
            suspendedFrom: BatchStatus.None,
            qpCertified: false,
            manufacturerCertified: false,
            siteGln: siteGln,
            createdAt: uint40(block.timestamp)
        });
        _batchIdAt[index] = batchId;
        emit BatchCreated(batchId, gtin, org, index, lot, expiry, siteGln, sponsor, signer);
        emit BatchStatusChanged(batchId, BatchStatus.None, BatchStatus.Quarantine, bytes32(0), org, signer);
    }

    /// @notice Anchors a certificate against a batch. QP certifications come from the sponsor; the
    /// other kinds from the sponsor or the batch's manufacturer.
    /// @param batchId The batch.
    /// @param kind Analysis, Conformance, QpCertification or Other.
    /// @param documentHash SHA-256 of the certificate document.
    /// @param meaning The meaning of the signature (e.g. "reviewed", "approved", "released for sale").
    function anchorCertificate(bytes32 batchId, uint8 kind, bytes32 documentHash, bytes32 meaning) external {
        (address signer, uint32 org) = _caller();
        if (kind > uint8(type(CertificateKind).max)) revert InvalidCertificate(CertificateKind.None, documentHash);
        _anchor(batchId, CertificateKind(kind), documentHash, meaning, signer, org);
    }

    /// @notice Releases a batch for sale (sponsor only) once its QP certification is anchored.
    /// @param batchId The batch.
    /// @param reasonHash Hash of the release record.
    function release(bytes32 batchId, bytes32 reasonHash) external {
        (address signer, uint32 org) = _caller();
        _release(batchId, reasonHash, signer, org);
    }

    /// @notice Anchors the QP certification and releases the batch in one call (sponsor only).
    /// @param batchId The batch.
    /// @param documentHash SHA-256 of the QP certification document.
    /// @param meaning The meaning of the QP's signature.
    /// @param reasonHash Hash of the release record.
    function releaseWithCertification(bytes32 batchId, bytes32 documentHash, bytes32 meaning, bytes32 reasonHash)
        external
    {
        (address signer, uint32 org) = _caller();
        _anchor(batchId, CertificateKind.QpCertification, documentHash, meaning, signer, org);
        _release(batchId, reasonHash, signer, org);
    }

    /// @notice Rejects a batch in quarantine (final; sponsor only).
    /// @param batchId The batch.
    /// @param reasonHash Hash of the documented reason.
    function reject(bytes32 batchId, bytes32 reasonHash) external {
        _transition(batchId, BatchStatus.Rejected, reasonHash);
    }

    /// @notice Recalls a released batch (final; sponsor only).
    /// @param batchId The batch.
    /// @param reasonHash Hash of the documented reason.
    function recall(bytes32 batchId, bytes32 reasonHash) external {
        _transition(batchId, BatchStatus.Recalled, reasonHash);
    }

    /// @notice Suspends a batch in quarantine or released (sponsor only).
    /// @param batchId The batch.
    /// @param reasonHash Hash of the documented reason.
    function suspend(bytes32 batchId, bytes32 reasonHash) external {
        _transition(batchId, BatchStatus.Suspended, reasonHash);
    }

    /// @notice Lifts a suspension, back to the status the batch had before (sponsor only).
    /// @param batchId The batch.
    /// @param reasonHash Hash of the documented reason.
    function unsuspend(bytes32 batchId, bytes32 reasonHash) external {
        _transition(batchId, BatchStatus.None, reasonHash);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IBatchRegistry
    function batchCore(bytes32 batchId) public view returns (BatchCore memory core) {
        Batch storage b = _batches[batchId];
        core = BatchCore({
            batchId: batchId,
            index: b.index,
            status: b.status,
            manufacturer: b.manufacturer,
            sponsor: b.sponsor
        });
    }

    /// @inheritdoc IBatchRegistry
    function batchCoreAt(uint32 index) external view returns (BatchCore memory core) {
        return batchCore(_batchIdAt[index]);
    }

    /// @notice The full record of a batch.
    /// @param batchId The batch.
    /// @return The batch record (index 0 if unknown).
    function batch(bytes32 batchId) external view returns (Batch memory) {
        return _batches[batchId];
    }

    /// @notice The id of the batch with sequence number `index`.
    /// @param index The sequence number.
    /// @return The batch id (zero if none).
    function batchIdAt(uint32 index) external view returns (bytes32) {
        return _batchIdAt[index];
    }

    /// @notice The certificates anchored against a batch, in order.
    /// @param batchId The batch.
    /// @return The certificates.
    function certificates(bytes32 batchId) external view returns (Certificate[] memory) {
        return _certificates[batchId];
    }

    /// @notice The owner (sponsor organisation) of a GTIN, 0 if unregistered.
    /// @param gtin The GTIN.
    /// @return The sponsor organisation id.
    function productOwner(uint64 gtin) external view returns (uint32) {
        return _productOwner[gtin];
    }

    /// @notice Whether `org` is an authorised manufacturer of `gtin`.
    /// @param gtin The GTIN.
    /// @param org The organisation.
    /// @return True if authorised.
    function isAuthorizedManufacturer(uint64 gtin, uint32 org) external view returns (bool) {
        return _authorized[gtin][org];
    }

    /// @notice The batch id for a GTIN and lot.
    /// @param gtin The GTIN.
    /// @param lot The lot.
    /// @return keccak256(abi.encode(gtin, lot)).
    function batchIdOf(uint64 gtin, string calldata lot) external pure returns (bytes32) {
        return keccak256(abi.encode(gtin, lot));
    }

    // ------------------------------------------------------------- internal

    function _actionType(bytes4 selector) internal pure override returns (bytes32, uint256, uint256) {
        if (selector == this.registerProduct.selector) return (REGISTER_PRODUCT_TYPEHASH, 1, 0);
        if (selector == this.authorizeManufacturer.selector) return (AUTHORIZE_MANUFACTURER_TYPEHASH, 2, 0);
        if (selector == this.revokeManufacturer.selector) return (REVOKE_MANUFACTURER_TYPEHASH, 2, 0);
        // lot (parameter 1) is a string.
        if (selector == this.createBatch.selector) return (CREATE_BATCH_TYPEHASH, 4, PARAM_BYTES << 2);
        if (selector == this.anchorCertificate.selector) return (ANCHOR_CERTIFICATE_TYPEHASH, 4, 0);
        if (selector == this.release.selector) return (RELEASE_TYPEHASH, 2, 0);
        if (selector == this.releaseWithCertification.selector) {
            return (RELEASE_WITH_CERTIFICATION_TYPEHASH, 4, 0);
        }
        if (selector == this.reject.selector) return (REJECT_TYPEHASH, 2, 0);
        if (selector == this.recall.selector) return (RECALL_TYPEHASH, 2, 0);
        if (selector == this.suspend.selector) return (SUSPEND_TYPEHASH, 2, 0);
        if (selector == this.unsuspend.selector) return (UNSUSPEND_TYPEHASH, 2, 0);
        revert ActionNotRelayable(selector);
    }

    function _caller() private view returns (address signer, uint32 org) {
        signer = _actor();
        org = registry.activeOrgOf(signer);
    }

    function _productOwnerCaller(uint64 gtin) private view returns (address signer, uint32 org) {
        (signer, org) = _caller();
        uint32 owner = _productOwner[gtin];
        if (owner == 0) revert UnknownProduct(gtin);
        if (owner != org) revert NotProductOwner(org, gtin);
    }

    function _requireBatch(bytes32 batchId) private view returns (Batch storage b) {
        b = _batches[batchId];
        if (b.index == 0) revert UnknownBatch(batchId);
    }

    function _anchor(
        bytes32 batchId,
        CertificateKind kind,
        bytes32 documentHash,
        bytes32 meaning,
        address signer,
        uint32 org
    ) private {
        Batch storage b = _requireBatch(batchId);
        if (kind == CertificateKind.None || documentHash == bytes32(0)) {
            revert InvalidCertificate(kind, documentHash);
        }
        bool isSponsor = org == b.sponsor;
        if (kind == CertificateKind.QpCertification ? !isSponsor : (!isSponsor && org != b.manufacturer)) {
            revert NotCertifier(org, batchId, kind);
        }
        if (kind == CertificateKind.QpCertification) b.qpCertified = true;
        else if (org == b.manufacturer) b.manufacturerCertified = true;
        Certificate[] storage list = _certificates[batchId];
        list.push(
            Certificate({
                documentHash: documentHash,
                meaning: meaning,
                signer: signer,
                org: org,
                kind: kind,
                anchoredAt: uint40(block.timestamp)
            })
        );
        emit CertificateAnchored(batchId, documentHash, org, kind, meaning, signer, list.length - 1);
    }

    function _release(bytes32 batchId, bytes32 reasonHash, address signer, uint32 org) private {
        Batch storage b = _requireBatch(batchId);
        if (org != b.sponsor) revert NotProductOwner(org, b.gtin);
        if (b.status != BatchStatus.Quarantine) {
            revert InvalidBatchTransition(batchId, b.status, BatchStatus.Released);
        }
        if (!b.qpCertified) revert QpCertificationMissing(batchId);
        if (b.manufacturer != b.sponsor && !b.manufacturerCertified) {
            revert ManufacturerCertificateMissing(batchId, b.manufacturer);
        }
        b.status = BatchStatus.Released;
        emit BatchStatusChanged(batchId, BatchStatus.Quarantine, BatchStatus.Released, reasonHash, org, signer);
    }

    /// @dev Reject, recall, suspend and unsuspend (`to` None); sponsor only.
    function _transition(bytes32 batchId, BatchStatus to, bytes32 reasonHash) private {
        (address signer, uint32 org) = _caller();
        Batch storage b = _requireBatch(batchId);
        if (org != b.sponsor) revert NotProductOwner(org, b.gtin);
        BatchStatus from = b.status;
        // What the batch "really" is underneath a suspension decides reject and recall.
        BatchStatus underlying = from == BatchStatus.Suspended ? b.suspendedFrom : from;
        bool ok;
        if (to == BatchStatus.Rejected) {
            ok = underlying == BatchStatus.Quarantine;
        } else if (to == BatchStatus.Recalled) {
            ok = underlying == BatchStatus.Released;
        } else if (to == BatchStatus.Suspended) {
            ok = from == BatchStatus.Quarantine || from == BatchStatus.Released;
            if (ok) b.suspendedFrom = from;
        } else {
            ok = from == BatchStatus.Suspended;
            to = b.suspendedFrom;
        }
        if (!ok) revert InvalidBatchTransition(batchId, from, to);
        b.status = to;
        if (to != BatchStatus.Suspended) b.suspendedFrom = BatchStatus.None;
        emit BatchStatusChanged(batchId, from, to, reasonHash, org, signer);
    }

    /// @dev GS1 AI 17: YYMMDD with a real calendar date, or day 00 for "end of the month". Years
    /// are 20YY (the GS1 century rule only differs for dates 50+ years away).
    function _validExpiry(uint32 expiry) private pure returns (bool) {
        if (expiry > 991231) return false;
        uint32 year = expiry / 10000;
        uint32 month = (expiry / 100) % 100;
        uint32 day = expiry % 100;
        if (month < 1 || month > 12) return false;
        uint32 daysInMonth = 31;
        if (month == 4 || month == 6 || month == 9 || month == 11) daysInMonth = 30;
        else if (month == 2) daysInMonth = year % 4 == 0 ? 29 : 28;
        return day <= daysInMonth;
    }
}
