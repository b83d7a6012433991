// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IBatchRegistry} from "./interfaces/IBatchRegistry.sol";
import {IConsortiumRegistry} from "./interfaces/IConsortiumRegistry.sol";
import {RelayedActions} from "./base/RelayedActions.sol";

/// @title CustodyLedger
/// @notice Serialised units and logistic containers: commissioning, aggregation, the shipment
/// handshake, decommissioning with undo, and suspect product, with the release rules of every batch
/// enforced on each movement.
/// @dev Units are keyed by a bytes32 digest of their canonical SGTIN and containers by a digest of their
/// SSCC; clear-text serials never reach the chain. Each unit is one storage slot. A packed item's
/// custody is its root container's: only roots carry holder and shipment. Unpacking a whole container
/// (`unpackAll`) is O(1): the container is marked dissolved and its children become roots that inherit
/// custody from it until they are next written. Every custody action carries the digest of the EPCIS
/// event it corresponds to (CBV 2.0 Event Hash ID), or zero.
contract CustodyLedger is RelayedActions {
    /// @notice Unit states: Active, or the reason it was decommissioned.
    uint8 public constant ACTIVE = 1;
    uint8 public constant DISPENSED = 2;
    uint8 public constant DESTROYED = 3;
    uint8 public constant SAMPLE = 4;
    uint8 public constant FREE_SAMPLE = 5;
    uint8 public constant EXPORTED = 6;
    uint8 public constant STOLEN = 7;
    uint8 public constant LOCKED = 8;
    uint8 public constant CHECKED_OUT = 9;
    /// @notice Container state after `unpackAll`; final.
    uint8 public constant DISSOLVED = 2;

    /// @notice Suspect states of a unit or a batch.
    uint8 public constant NOT_SUSPECT = 0;
    uint8 public constant SUSPECT = 1;
    uint8 public constant ILLEGITIMATE = 2;

    /// @notice Window within which the decommissioning organisation may undo a reversible decommission.
    uint256 public constant UNDO_WINDOW = 240 hours;
    /// @notice Maximum nesting height of containers (a pallet of cases of units has height 2).
    uint8 public constant MAX_HEIGHT = 8;

    bytes32 private constant REGULATOR_ROLE = keccak256("rxledger.role.REGULATOR");
    bytes32 private constant LOGISTICS_ROLE = keccak256("rxledger.role.LOGISTICS");
    bytes32 private constant DISTRIBUTOR_ROLE = keccak256("rxledger.role.DISTRIBUTOR");

    uint8 private constant KIND_UNIT = 1;
    uint8 private constant KIND_CONTAINER = 2;

    bytes32 private constant COMMISSION_TYPEHASH = keccak256(
        "Commission(bytes32 batchId,bytes32[] containerKeys,bytes32[] keys,bytes32 eventHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant PACK_TYPEHASH = keccak256(
        "Pack(bytes32 containerKey,bytes32[] keys,bytes32 eventHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant UNPACK_TYPEHASH = keccak256(
        "Unpack(bytes32 containerKey,bytes32[] keys,bytes32 eventHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant UNPACK_ALL_TYPEHASH =
        keccak256("UnpackAll(bytes32[] containerKeys,bytes32 eventHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant SHIP_TYPEHASH = keccak256(
        "Ship(bytes32 shipmentId,uint32 to,bytes32[] keys,bytes32 referenceHash,bytes32 eventHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant RECEIVE_SHIPMENT_TYPEHASH = keccak256(
        "ReceiveShipment(bytes32 shipmentId,bytes32[] keys,bytes32 eventHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant REJECT_SHIPMENT_TYPEHASH = keccak256(
        "RejectShipment(bytes32 shipmentId,bytes32[] keys,bytes32 reasonHash,bytes32 eventHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant REPORT_MISSING_TYPEHASH = keccak256(
        "ReportMissing(bytes32 shipmentId,bytes32[] keys,bytes32 reasonHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant RECLAIM_SHIPMENT_TYPEHASH = keccak256(
        "ReclaimShipment(bytes32 shipmentId,bytes32[] keys,bytes32 reasonHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant DECOMMISSION_TYPEHASH =
        keccak256("Decommission(bytes32[] keys,uint8 reason,bytes32 eventHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant UNDO_DECOMMISSION_TYPEHASH =
        keccak256("UndoDecommission(bytes32[] keys,bytes32 eventHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant ANCHOR_EVENTS_TYPEHASH =
        keccak256("AnchorEvents(bytes32[] eventHashes,uint256 nonce,uint256 deadline)");
    bytes32 private constant FLAG_SUSPECT_TYPEHASH =
        keccak256("FlagSuspect(bytes32[] keys,bytes32 reasonHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant CLEAR_SUSPECT_TYPEHASH =
        keccak256("ClearSuspect(bytes32[] keys,bytes32 reasonHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant CONFIRM_ILLEGITIMATE_TYPEHASH =
        keccak256("ConfirmIllegitimate(bytes32[] keys,bytes32 reasonHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant FLAG_BATCH_SUSPECT_TYPEHASH = keccak256(
        "FlagBatchSuspect(bytes32 batchId,bytes32 reasonHash,bytes32 heldUnit,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant CLEAR_BATCH_SUSPECT_TYPEHASH =
        keccak256("ClearBatchSuspect(bytes32 batchId,bytes32 reasonHash,uint256 nonce,uint256 deadline)");
    bytes32 private constant CONFIRM_BATCH_ILLEGITIMATE_TYPEHASH = keccak256(
        "ConfirmBatchIllegitimate(bytes32 batchId,bytes32 reasonHash,uint256 nonce,uint256 deadline)"
    );

    /// @dev One storage slot per unit or container.
    struct Item {
        uint8 kind; // 0 none, 1 unit, 2 container
        uint8 state; // unit: ACTIVE or decommission reason; container: ACTIVE or DISSOLVED
        uint8 suspect; // units: NOT_SUSPECT, SUSPECT, ILLEGITIMATE
        uint8 height; // containers: nesting height
        uint32 batch; // unit: batch index; container: first batch carried
        uint32 holder; // custodian; authoritative only while parent == 0
        uint88 parent; // key of the container, 0 = none (container keys fit in 88 bits)
        uint32 shipment; // shipment sequence number while in transit, else 0
        uint40 aux; // unit: decommissioned at; container: units of its first batch
    }

    /// @notice A shipment between two organisations and its outcome so far.
    struct Shipment {
        uint32 seq;
        uint32 from;
        uint32 to;
        uint32 items;
        uint32 pending;
        uint32 received;
        uint32 rejected;
        uint32 missing;
        uint40 dispatchedAt;
    }

    /// @notice A unit as the ledger sees it, custody resolved through its containers.
    struct UnitView {
        bool exists;
        uint8 state;
        uint8 suspect;
        uint8 batchSuspect;
        uint32 batchIndex;
        uint32 holder;
        bool packed;
        bytes32 parentKey; // zero unless packed
        bytes32 shipmentId; // zero unless in transit
        uint40 decommissionedAt;
    }

    /// @notice A container as the ledger sees it.
    struct ContainerView {
        bool exists;
        uint8 state;
        uint8 height;
        uint32 holder;
        bool packed;
        bytes32 parentKey;
        bytes32 shipmentId;
        uint32[] batches;
        uint256[] counts;
    }

    /// @notice The consortium registry.
    IConsortiumRegistry public immutable registry;
    /// @notice The batch registry.
    IBatchRegistry public immutable batches;
    /// @notice Number of shipments ever dispatched; sequence numbers run from 1.
    uint32 public shipmentCount;

    mapping(bytes32 key => uint256 item) private _units; // Item, packed by _enc
    mapping(uint88 key => uint256 item) private _containers; // Item, packed by _enc
    mapping(uint88 key => uint32[]) private _extraBatches;
    mapping(uint88 key => mapping(uint32 batch => uint256)) private _extraCount;
    mapping(uint88 key => mapping(uint32 batch => bool)) private _extraListed;
    mapping(bytes32 shipmentId => Shipment) private _shipments;
    mapping(uint32 seq => bytes32 shipmentId) private _shipmentIdAt;
    mapping(uint32 batch => uint8) private _batchSuspect;

    /// @notice Unit keys are digests of at least 89 significant bits (container keys fit in 88).
    error InvalidUnitKey(bytes32 key);
    /// @notice A unit with this key exists already.
    error DuplicateSerial(bytes32 key);
    /// @notice No unit or container has this key.
    error UnknownItem(bytes32 key);
    /// @notice The key names a container where a unit is required.
    error NotAUnit(bytes32 key);
    /// @notice The key is not a container key (container keys are non-zero and fit in 88 bits).
    error NotAContainer(bytes32 key);
    /// @notice No batch has this id.
    error UnknownBatch(bytes32 batchId);
    /// @notice Only the batch's manufacturer commissions its units.
    error NotManufacturer(uint32 org, bytes32 batchId);
    /// @notice The batch is rejected, recalled or suspended: no new units.
    error BatchNotCommissionable(bytes32 batchId, IBatchRegistry.BatchStatus status);
    /// @notice The caller's organisation does not hold the item.
    error NotHolder(bytes32 key, uint32 holder);
    /// @notice The item is packed in a container; act on its root container or unpack it first.
    error ItemPacked(bytes32 key);
    /// @notice The item is in transit.
    error InTransit(bytes32 key, bytes32 shipmentId);
    /// @notice The unit has been decommissioned for `state`.
    error AlreadyDecommissioned(bytes32 key, uint8 state);
    /// @notice The unit has already been dispensed: the classic counterfeit signal.
    error AlreadyDispensed(bytes32 key);
    /// @notice The container was dissolved by unpackAll and can no longer be used.
    error ContainerDissolved(bytes32 key);
    /// @notice A container cannot be packed into itself.
    error SelfPacking(bytes32 key);
    /// @notice Packing would nest containers deeper than MAX_HEIGHT.
    error NestingTooDeep(bytes32 containerKey, uint8 height);
    /// @notice The item is not a direct child of the container.
    error NotInContainer(bytes32 key, bytes32 containerKey);
    /// @notice The unit (or its batch) is flagged suspect or illegitimate.
    error SuspectItem(bytes32 key, uint8 suspect);
    /// @notice The unit's batch is flagged suspect or illegitimate.
    error SuspectBatch(bytes32 key, bytes32 batchId, uint8 suspect);
    /// @notice Product of an unreleased batch moves only between its manufacturer and its sponsor.
    error BatchNotReleased(bytes32 key, bytes32 batchId, IBatchRegistry.BatchStatus status);
    /// @notice Product of a recalled batch may only be returned toward the sponsor or destroyed.
    error RecalledProduct(bytes32 key, bytes32 batchId, uint32 to);
    /// @notice A shipment with this id exists already.
    error ShipmentExists(bytes32 shipmentId);
    /// @notice No shipment has this id.
    error UnknownShipment(bytes32 shipmentId);
    /// @notice Shipments go to another, active organisation.
    error InvalidDestination(uint32 to);
    /// @notice A list of keys is empty.
    error EmptyList();
    /// @notice Units to commission cannot be split evenly into the containers given.
    error UnevenAggregation(uint256 units, uint256 containers);
    /// @notice Only the addressee settles a shipment.
    error NotAddressee(bytes32 shipmentId, uint32 org);
    /// @notice Only the sender reclaims a shipment.
    error NotSender(bytes32 shipmentId, uint32 org);
    /// @notice The addressee is active and can settle the shipment itself.
    error AddresseeActive(bytes32 shipmentId, uint32 to);
    /// @notice The item is not pending in this shipment.
    error NotInShipment(bytes32 key, bytes32 shipmentId);
    /// @notice The decommission reason is not one of the reason codes.
    error InvalidReason(uint8 reason);
    /// @notice The unit is active; there is nothing to undo.
    error NotDecommissioned(bytes32 key);
    /// @notice Destroyed, exported and stolen are final.
    error DecommissionFinal(bytes32 key, uint8 state);
    /// @notice Only the organisation that decommissioned a unit can undo it.
    error NotDecommissioner(bytes32 key, uint32 org);
    /// @notice The undo window closed at `deadline`.
    error UndoWindowClosed(bytes32 key, uint256 deadline);
    /// @notice The organisation may not change the suspect status of this item or batch.
    error NotAuthorizedForSuspect(uint32 org, bytes32 subject);
    /// @notice The suspect status does not allow this transition.
    error InvalidSuspectTransition(bytes32 subject, uint8 from, uint8 to);

    /// @notice A container was created, held by `org`.
    event ContainerCreated(bytes32 indexed containerKey, uint32 indexed org, address signer);
    /// @notice Units were commissioned into a batch, split evenly into `containerKeys` if any.
    event UnitsCommissioned(
        bytes32 indexed batchId,
        uint32 indexed org,
        address signer,
        bytes32 eventHash,
        bytes32[] containerKeys,
        bytes32[] keys
    );
    /// @notice Units or containers were packed into a container.
    event ItemsPacked(
        bytes32 indexed containerKey, uint32 indexed org, address signer, bytes32 eventHash, bytes32[] keys
    );
    /// @notice Units or containers were taken out of a container.
    event ItemsUnpacked(
        bytes32 indexed containerKey, uint32 indexed org, address signer, bytes32 eventHash, bytes32[] keys
    );
    /// @notice Containers were emptied as a whole; their direct children are loose now.
    event ContainersEmptied(uint32 indexed org, address signer, bytes32 eventHash, bytes32[] containerKeys);
    /// @notice Root items left `from` for `to`; they are in transit until received or rejected.
    event ShipmentDispatched(
        bytes32 indexed shipmentId,
        uint32 indexed from,
        uint32 indexed to,
        address signer,
        bytes32 referenceHash,
        bytes32 eventHash,
        bytes32[] keys
    );
    /// @notice The addressee received items of a shipment; custody moved to it.
    event ShipmentReceived(
        bytes32 indexed shipmentId, uint32 indexed org, address signer, bytes32 eventHash, bytes32[] keys
    );
    /// @notice The addressee rejected items of a shipment; custody returned to the sender.
    event ShipmentRejected(
        bytes32 indexed shipmentId,
        uint32 indexed org,
        address signer,
        bytes32 reasonHash,
        bytes32 eventHash,
        bytes32[] keys
    );
    /// @notice The addressee reported items of a shipment missing; custody returned to the sender.
    event ShipmentDiscrepancyRecorded(
        bytes32 indexed shipmentId, uint32 indexed org, address signer, bytes32 reasonHash, bytes32[] keys
    );
    /// @notice The sender took back items in transit to an addressee no longer active.
    event ShipmentReclaimed(
        bytes32 indexed shipmentId, uint32 indexed org, address signer, bytes32 reasonHash, bytes32[] keys
    );
    /// @notice Every item of a shipment was settled.
    event ShipmentClosed(bytes32 indexed shipmentId, uint32 received, uint32 rejected, uint32 missing);
    /// @notice Units were decommissioned by their holder for `reason`.
    event UnitsDecommissioned(
        uint8 indexed reason, uint32 indexed org, address signer, bytes32 eventHash, bytes32[] keys
    );
    /// @notice Decommissions were undone by the organisation that made them.
    event DecommissionsUndone(uint32 indexed org, address signer, bytes32 eventHash, bytes32[] keys);
    /// @notice EPCIS events that change no custody (inspections, sensor readings, business
    /// transactions) were anchored by their digests.
    event EventsAnchored(uint32 indexed org, address signer, bytes32[] eventHashes);
    /// @notice Units' suspect status changed.
    event UnitsSuspectStatusChanged(
        uint8 indexed status, uint32 indexed org, address signer, bytes32 reasonHash, bytes32[] keys
    );
    /// @notice A batch's suspect status changed.
    event BatchSuspectStatusChanged(
        bytes32 indexed batchId, uint8 indexed status, uint32 indexed org, address signer, bytes32 reasonHash
    );

    /// @param consortium The ConsortiumRegistry.
    /// @param batchRegistry The BatchRegistry.
    constructor(IConsortiumRegistry consortium, IBatchRegistry batchRegistry)
        EIP712("rxledger.CustodyLedger", "1")
    {
        registry = consortium;
        batches = batchRegistry;
    }

    // -------------------------------------------------------- commissioning

    /// @notice Commissions units into a batch; only the batch's manufacturer may. With container keys
    /// the units go straight into those containers (aggregation at the packing line), created if new:
    /// `keys` is split into `containerKeys.length` equal consecutive groups, one per container.
    /// @param batchId The batch (quarantined or released).
    /// @param containerKeys Digests of the SSCCs to commission into, or empty for loose units.
    /// @param keys Digests of the units' canonical SGTINs; none may exist anywhere yet.
    /// @param eventHash Digest of the EPCIS commissioning event, or zero.
    function commission(bytes32 batchId, bytes32[] calldata containerKeys, bytes32[] calldata keys, bytes32 eventHash)
        external
    {
        (address signer, uint32 org) = _caller();
        IBatchRegistry.BatchCore memory core = batches.batchCore(batchId);
        if (core.index == 0) revert UnknownBatch(batchId);
        if (core.manufacturer != org) revert NotManufacturer(org, batchId);
        if (core.status != IBatchRegistry.BatchStatus.Quarantine && core.status != IBatchRegistry.BatchStatus.Released)
        {
            revert BatchNotCommissionable(batchId, core.status);
        }
        uint256 groups = containerKeys.length;
        if (keys.length == 0) revert EmptyList();
        if (groups != 0 && keys.length % groups != 0) revert UnevenAggregation(keys.length, groups);
        uint256 perGroup = groups == 0 ? keys.length : keys.length / groups;
        uint256 k;
        for (uint256 g = 0; g < (groups == 0 ? 1 : groups); ++g) {
            uint88 parent;
            if (groups != 0) {
                Item memory box;
                (parent, box) = _openContainer(containerKeys[g], org, signer);
                if (box.height == 0) box.height = 1;
                _addContent(parent, box, core.index, perGroup);
                _containers[parent] = _enc(box);
            }
            Item memory fresh = Item({
                kind: KIND_UNIT,
                state: ACTIVE,
                suspect: NOT_SUSPECT,
                height: 0,
                batch: core.index,
                holder: org,
                parent: parent,
                shipment: 0,
                aux: 0
            });
            uint256 word = _enc(fresh);
            // Hot loop (the journey's gas budget): one SLOAD and one SSTORE per unit.
            uint256 end = k + perGroup;
            uint256 bad = type(uint256).max;
            assembly ("memory-safe") {
                mstore(32, _units.slot)
                for {} lt(k, end) { k := add(k, 1) } {
                    let key := calldataload(add(keys.offset, shl(5, k)))
                    mstore(0, key)
                    let slot := keccak256(0, 64)
                    if or(iszero(shr(88, key)), sload(slot)) {
                        bad := k
                        break
                    }
                    sstore(slot, word)
                }
            }
            if (bad != type(uint256).max) {
                bytes32 key = keys[bad];
                if (uint256(key) >> 88 == 0) revert InvalidUnitKey(key);
                revert DuplicateSerial(key);
            }
        }
        emit UnitsCommissioned(batchId, org, signer, eventHash, containerKeys, keys);
    }

    // ---------------------------------------------------------- aggregation

    /// @notice Packs root units or containers held by the caller into a container (created if new).
    /// @param containerKey Digest of the container's SSCC.
    /// @param keys Units or containers to pack: active, held by the caller, not packed, not in transit.
    /// @param eventHash Digest of the EPCIS packing event, or zero.
    function pack(bytes32 containerKey, bytes32[] calldata keys, bytes32 eventHash) external {
        (address signer, uint32 org) = _caller();
        (uint88 parent, Item memory box) = _openContainer(containerKey, org, signer);
        for (uint256 i = 0; i < keys.length; ++i) {
            bytes32 key = keys[i];
            (uint88 cid, Item memory it) = _load(key);
            if (cid == parent) revert SelfPacking(key);
            _requireMovable(key, it, org);
            uint8 height = 1;
            if (cid == 0) {
                _requireNotSuspect(key, it);
                _addContent(parent, box, it.batch, 1);
            } else {
                height = it.height + 1;
                _transferContent(cid, it, parent, box, true);
            }
            if (height > box.height) box.height = height;
            it.parent = parent;
            it.holder = org;
            _store(key, cid, it);
        }
        if (box.height > MAX_HEIGHT) revert NestingTooDeep(containerKey, box.height);
        _containers[parent] = _enc(box);
        emit ItemsPacked(containerKey, org, signer, eventHash, keys);
    }

    /// @notice Takes direct children out of a root container held by the caller.
    /// @param containerKey Digest of the container's SSCC.
    /// @param keys Its direct children to take out.
    /// @param eventHash Digest of the EPCIS unpacking event, or zero.
    function unpack(bytes32 containerKey, bytes32[] calldata keys, bytes32 eventHash) external {
        (address signer, uint32 org) = _caller();
        (uint88 parent, Item memory box) = _loadContainer(containerKey);
        _requireMovable(containerKey, box, org);
        for (uint256 i = 0; i < keys.length; ++i) {
            bytes32 key = keys[i];
            (uint88 cid, Item memory it) = _load(key);
            if (it.parent != parent) revert NotInContainer(key, containerKey);
            if (cid == 0) _removeContent(parent, box, it.batch, 1);
            else _transferContent(cid, it, parent, box, false);
            it.parent = 0;
            it.holder = org;
            _store(key, cid, it);
        }
        _containers[parent] = _enc(box);
        emit ItemsUnpacked(containerKey, org, signer, eventHash, keys);
    }

    /// @notice Empties root containers held by the caller, each as a whole and in constant gas: their
    /// direct children become loose items of the caller, and the containers are retired for good.
    /// @param containerKeys Digests of the containers' SSCCs.
    /// @param eventHash Digest of the EPCIS unpacking event, or zero.
    function unpackAll(bytes32[] calldata containerKeys, bytes32 eventHash) external {
        (address signer, uint32 org) = _caller();
        if (containerKeys.length == 0) revert EmptyList();
        for (uint256 i = 0; i < containerKeys.length; ++i) {
            (uint88 id, Item memory box) = _loadContainer(containerKeys[i]);
            _requireMovable(containerKeys[i], box, org);
            // Pin custody on the dissolved container: its children inherit it from here on.
            box.parent = 0;
            box.holder = org;
            box.state = DISSOLVED;
            _containers[id] = _enc(box);
        }
        emit ContainersEmptied(org, signer, eventHash, containerKeys);
    }

    // ------------------------------------------------------------ shipments

    /// @notice Ships root items held by the caller to organisation `to`; they stay in the caller's
    /// custody, in transit, until `to` receives or rejects them. Release rules of every batch carried
    /// apply: unreleased product moves only between its manufacturer and its sponsor; recalled product
    /// only to its sponsor or to a distributor or logistics partner on its way back.
    /// @param shipmentId Caller-chosen unique id (e.g. the digest of the despatch advice).
    /// @param to The addressee organisation.
    /// @param keys Root units or containers.
    /// @param referenceHash Digest of the shipment's documents (e.g. DSCSA transaction information).
    /// @param eventHash Digest of the EPCIS shipping event, or zero.
    function ship(bytes32 shipmentId, uint32 to, bytes32[] calldata keys, bytes32 referenceHash, bytes32 eventHash)
        external
    {
        (address signer, uint32 org) = _caller();
        if (to == org || !registry.isActive(to)) revert InvalidDestination(to);
        if (_shipments[shipmentId].seq != 0 || shipmentId == bytes32(0)) revert ShipmentExists(shipmentId);
        if (keys.length == 0) revert EmptyList();
        uint32 seq = ++shipmentCount;
        _shipments[shipmentId] = Shipment({
            seq: seq,
            from: org,
            to: to,
            items: uint32(keys.length),
            pending: uint32(keys.length),
            received: 0,
            rejected: 0,
            missing: 0,
            dispatchedAt: uint40(block.timestamp)
        });
        _shipmentIdAt[seq] = shipmentId;
        MoveContext memory ctx = MoveContext({from: org, to: to, lastIndex: 0, last: _noBatch(), returnOk: 0});
        for (uint256 i = 0; i < keys.length; ++i) {
            bytes32 key = keys[i];
            (uint88 cid, Item memory it) = _load(key);
            _requireMovable(key, it, org);
            if (cid == 0) {
                _requireNotSuspect(key, it);
                _checkMove(ctx, key, it.batch);
            } else {
                _checkContainerMove(ctx, key, cid, it);
            }
            it.parent = 0;
            it.holder = org;
            it.shipment = seq;
            _store(key, cid, it);
        }
        emit ShipmentDispatched(shipmentId, org, to, signer, referenceHash, eventHash, keys);
    }

    /// @notice The addressee receives items of a shipment: custody moves to it.
    /// @param shipmentId The shipment.
    /// @param keys Items of the shipment still in transit.
    /// @param eventHash Digest of the EPCIS receiving event, or zero.
    function receiveShipment(bytes32 shipmentId, bytes32[] calldata keys, bytes32 eventHash) external {
        (address signer, uint32 org) = _caller();
        Shipment storage s = _settle(shipmentId, keys, _addressee(shipmentId, org));
        s.received += uint32(keys.length);
        emit ShipmentReceived(shipmentId, org, signer, eventHash, keys);
        _closeIfDone(shipmentId, s);
    }

    /// @notice The addressee rejects items of a shipment: custody returns to the sender.
    /// @param shipmentId The shipment.
    /// @param keys Items of the shipment still in transit.
    /// @param reasonHash Digest of the documented reason.
    /// @param eventHash Digest of the EPCIS event, or zero.
    function rejectShipment(bytes32 shipmentId, bytes32[] calldata keys, bytes32 reasonHash, bytes32 eventHash)
        external
    {
        (address signer, uint32 org) = _caller();
        _addressee(shipmentId, org);
        Shipment storage s = _settle(shipmentId, keys, _shipments[shipmentId].from);
        s.rejected += uint32(keys.length);
        emit ShipmentRejected(shipmentId, org, signer, reasonHash, eventHash, keys);
        _closeIfDone(shipmentId, s);
    }

    /// @notice The addressee records a partial receipt: these items did not arrive. Custody returns to
    /// the sender, which must investigate; the discrepancy is on record.
    /// @param shipmentId The shipment.
    /// @param keys Items of the shipment that did not arrive.
    /// @param reasonHash Digest of the discrepancy report.
    function reportMissing(bytes32 shipmentId, bytes32[] calldata keys, bytes32 reasonHash) external {
        (address signer, uint32 org) = _caller();
        _addressee(shipmentId, org);
        Shipment storage s = _settle(shipmentId, keys, _shipments[shipmentId].from);
        s.missing += uint32(keys.length);
        emit ShipmentDiscrepancyRecorded(shipmentId, org, signer, reasonHash, keys);
        _closeIfDone(shipmentId, s);
    }

    /// @notice The sender takes back items still in transit to an addressee that has since been
    /// suspended or offboarded (nobody else could ever settle them); custody returns to the sender.
    /// @param shipmentId The shipment.
    /// @param keys Items of the shipment still in transit.
    /// @param reasonHash Digest of the documented reason.
    function reclaimShipment(bytes32 shipmentId, bytes32[] calldata keys, bytes32 reasonHash) external {
        (address signer, uint32 org) = _caller();
        Shipment storage s = _shipments[shipmentId];
        if (s.seq == 0) revert UnknownShipment(shipmentId);
        if (s.from != org) revert NotSender(shipmentId, org);
        if (registry.isActive(s.to)) revert AddresseeActive(shipmentId, s.to);
        _settle(shipmentId, keys, org);
        s.rejected += uint32(keys.length);
        emit ShipmentReclaimed(shipmentId, org, signer, reasonHash, keys);
        _closeIfDone(shipmentId, s);
    }

    // ------------------------------------------------------ decommissioning

    /// @notice Decommissions root units held by the caller. Dispensed, sample, free sample, locked and
    /// checked-out can be undone by the same organisation within UNDO_WINDOW; destroyed, exported and
    /// stolen are final. Suspect or illegitimate units may only be destroyed; dispensing, samples and
    /// export need a released batch.
    /// @param keys The units.
    /// @param reason DISPENSED, DESTROYED, SAMPLE, FREE_SAMPLE, EXPORTED, STOLEN, LOCKED or CHECKED_OUT.
    /// @param eventHash Digest of the EPCIS decommissioning event, or zero.
    function decommission(bytes32[] calldata keys, uint8 reason, bytes32 eventHash) external {
        (address signer, uint32 org) = _caller();
        if (reason < DISPENSED || reason > CHECKED_OUT) revert InvalidReason(reason);
        // The dispensing counter's hot loop. A fast path in assembly handles units whose parent and
        // batch match the last ones checked (a tote is mostly one case of one batch): one SLOAD and
        // one SSTORE each. Anything else (first unit, a new case or batch, any refusal) goes through
        // the Solidity path below, which checks everything, refreshes the caches or reverts with the
        // precise error. The journey's gas budget per unit depends on this loop.
        DecommissionCache memory c;
        c.org = org;
        c.reason = reason;
        c.stamp = (uint256(reason) << 8) | (uint256(org) << 64) | (uint256(uint40(block.timestamp)) << 216);
        uint256 n = keys.length;
        uint256 i;
        while (i < n) {
            // A unit passes the fast path when its packed word matches the cached pattern: active unit,
            // last batch checked, last parent seen (whose holder is the caller), not in transit, not
            // suspect unless destroying; a loose unit (no parent) must also name the caller as holder.
            uint256 mask;
            uint256 expected = 1; // matches nothing until the caches are filled
            if (c.batch != 0 && (c.parent == 0 || c.parentHolder == org)) {
                mask = 0xffff | (MASK32 << 32) | (MASK88 << 96) | (MASK32 << 184);
                if (reason != DESTROYED) mask |= 0xff << 16;
                expected = ACTIVE_UNIT | (c.batch << 32) | (c.parent << 96);
                if (c.parent == 0) {
                    mask |= MASK32 << 64;
                    expected |= uint256(org) << 64;
                }
            }
            uint256 stamp = c.stamp;
            assembly ("memory-safe") {
                mstore(32, _units.slot)
                for {} lt(i, n) { i := add(i, 1) } {
                    mstore(0, calldataload(add(keys.offset, shl(5, i))))
                    let slot := keccak256(0, 64)
                    let w := sload(slot)
                    if iszero(eq(and(w, mask), expected)) { break }
                    sstore(slot, or(and(w, KEEP_ON_DECOMMISSION), stamp))
                }
            }
            if (i < n) {
                _decommissionChecked(keys[i], c);
                ++i;
            }
        }
        emit UnitsDecommissioned(reason, org, signer, eventHash, keys);
    }

    /// @notice Undoes reversible decommissions made by the caller's organisation within UNDO_WINDOW.
    /// @param keys The units.
    /// @param eventHash Digest of the EPCIS event, or zero.
    function undoDecommission(bytes32[] calldata keys, bytes32 eventHash) external {
        (address signer, uint32 org) = _caller();
        for (uint256 i = 0; i < keys.length; ++i) {
            bytes32 key = keys[i];
            Item memory it = _dec(_units[key]);
            _requireUnit(key, it);
            uint8 state = it.state;
            if (state == ACTIVE) revert NotDecommissioned(key);
            if (state == DESTROYED || state == EXPORTED || state == STOLEN) revert DecommissionFinal(key, state);
            if (it.holder != org) revert NotDecommissioner(key, org);
            uint256 deadline = uint256(it.aux) + UNDO_WINDOW;
            if (block.timestamp > deadline) revert UndoWindowClosed(key, deadline);
            it.state = ACTIVE;
            it.aux = 0;
            _units[key] = _enc(it);
        }
        emit DecommissionsUndone(org, signer, eventHash, keys);
    }

    // -------------------------------------------------------- anchoring

    /// @notice Anchors the digests of EPCIS events that change no custody (an inspection, a sensor
    /// reading, a business transaction), so their existence at this block can be proven later.
    /// Custody events carry their digest in the action that applies them instead.
    /// @param eventHashes Digests of the events (CBV 2.0 Event Hash IDs).
    function anchorEvents(bytes32[] calldata eventHashes) external {
        if (eventHashes.length == 0) revert EmptyList();
        (address signer, uint32 org) = _caller();
        emit EventsAnchored(org, signer, eventHashes);
    }

    // -------------------------------------------------------- suspect product

    /// @notice Flags loose units as suspect: by their holder, their batch's sponsor or a regulator.
    /// Suspect units cannot be packed, shipped or dispensed.
    /// @param keys The units (not packed).
    /// @param reasonHash Digest of the documented reason.
    function flagSuspect(bytes32[] calldata keys, bytes32 reasonHash) external {
        _setUnitsSuspect(keys, NOT_SUSPECT, SUSPECT, reasonHash, true);
    }

    /// @notice Clears suspect units found legitimate: by their batch's sponsor or a regulator.
    /// @param keys The units.
    /// @param reasonHash Digest of the investigation's conclusion.
    function clearSuspect(bytes32[] calldata keys, bytes32 reasonHash) external {
        _setUnitsSuspect(keys, SUSPECT, NOT_SUSPECT, reasonHash, false);
    }

    /// @notice Confirms suspect units illegitimate (they may then only be destroyed): by their
    /// batch's sponsor or a regulator.
    /// @param keys The units.
    /// @param reasonHash Digest of the investigation's conclusion.
    function confirmIllegitimate(bytes32[] calldata keys, bytes32 reasonHash) external {
        _setUnitsSuspect(keys, SUSPECT, ILLEGITIMATE, reasonHash, false);
    }

    /// @notice Flags a batch as suspect: by its sponsor, its manufacturer, a regulator, or any
    /// organisation that holds one of its units (named in `heldUnit`).
    /// @param batchId The batch.
    /// @param reasonHash Digest of the documented reason.
    /// @param heldUnit A unit of the batch held by the caller; zero for sponsor, manufacturer, regulator.
    function flagBatchSuspect(bytes32 batchId, bytes32 reasonHash, bytes32 heldUnit) external {
        (address signer, uint32 org) = _caller();
        IBatchRegistry.BatchCore memory core = _requireBatch(batchId);
        if (org != core.sponsor && org != core.manufacturer && !registry.hasRole(org, REGULATOR_ROLE)) {
            Item memory it = _dec(_units[heldUnit]);
            if (it.kind != KIND_UNIT || it.batch != core.index || _holderOf(it) != org) {
                revert NotAuthorizedForSuspect(org, batchId);
            }
        }
        _setBatchSuspect(core, NOT_SUSPECT, SUSPECT, reasonHash, org, signer);
    }

    /// @notice Clears a suspect batch: by its sponsor or a regulator.
    /// @param batchId The batch.
    /// @param reasonHash Digest of the investigation's conclusion.
    function clearBatchSuspect(bytes32 batchId, bytes32 reasonHash) external {
        (address signer, uint32 org, IBatchRegistry.BatchCore memory core) = _batchJudge(batchId);
        _setBatchSuspect(core, SUSPECT, NOT_SUSPECT, reasonHash, org, signer);
    }

    /// @notice Confirms a suspect batch illegitimate: its units may then only be destroyed.
    /// @param batchId The batch.
    /// @param reasonHash Digest of the investigation's conclusion.
    function confirmBatchIllegitimate(bytes32 batchId, bytes32 reasonHash) external {
        (address signer, uint32 org, IBatchRegistry.BatchCore memory core) = _batchJudge(batchId);
        _setBatchSuspect(core, SUSPECT, ILLEGITIMATE, reasonHash, org, signer);
    }

    // ---------------------------------------------------------------- views

    /// @notice A unit's state with custody resolved through its containers.
    /// @param key The unit's key.
    /// @return v The unit view (exists false if unknown).
    function unit(bytes32 key) external view returns (UnitView memory v) {
        Item memory it = _dec(_units[key]);
        if (it.kind != KIND_UNIT) return v;
        (bool root, uint32 holder, uint32 seq) = _custody(it);
        v = UnitView({
            exists: true,
            state: it.state,
            suspect: it.suspect,
            batchSuspect: _batchSuspect[it.batch],
            batchIndex: it.batch,
            holder: holder,
            packed: !root,
            parentKey: root ? bytes32(0) : bytes32(uint256(it.parent)),
            shipmentId: _shipmentIdAt[seq],
            decommissionedAt: it.state == ACTIVE ? 0 : it.aux
        });
    }

    /// @notice A container's state with custody resolved, and the batches it carries with unit counts.
    /// @param key The container's key.
    /// @return v The container view (exists false if unknown).
    function container(bytes32 key) external view returns (ContainerView memory v) {
        if (uint256(key) >> 88 != 0) return v;
        uint88 id = uint88(uint256(key));
        Item memory it = _dec(_containers[id]);
        if (it.kind != KIND_CONTAINER) return v;
        (bool root, uint32 holder, uint32 seq) = _custody(it);
        uint32[] storage extra = _extraBatches[id];
        uint32[] memory list = new uint32[](extra.length + 1);
        uint256[] memory counts = new uint256[](extra.length + 1);
        uint256 n;
        if (it.aux != 0) {
            list[n] = it.batch;
            counts[n++] = it.aux;
        }
        for (uint256 i = 0; i < extra.length; ++i) {
            uint256 c = _extraCount[id][extra[i]];
            if (c != 0) {
                list[n] = extra[i];
                counts[n++] = c;
            }
        }
        assembly ("memory-safe") {
            mstore(list, n)
            mstore(counts, n)
        }
        v = ContainerView({
            exists: true,
            state: it.state,
            height: it.height,
            holder: holder,
            packed: !root,
            parentKey: root ? bytes32(0) : bytes32(uint256(it.parent)),
            shipmentId: _shipmentIdAt[seq],
            batches: list,
            counts: counts
        });
    }

    /// @notice A shipment's parties and outcome so far.
    /// @param shipmentId The shipment.
    /// @return The shipment (seq 0 if unknown).
    function shipment(bytes32 shipmentId) external view returns (Shipment memory) {
        return _shipments[shipmentId];
    }

    /// @notice A batch's suspect status.
    /// @param batchId The batch.
    /// @return NOT_SUSPECT, SUSPECT or ILLEGITIMATE.
    function batchSuspect(bytes32 batchId) external view returns (uint8) {
        return _batchSuspect[batches.batchCore(batchId).index];
    }

    // ------------------------------------------------------------- internal

    /// @dev Working state of a movement check: the parties, a one-entry batch cache, and whether
    /// `to` may take back recalled product (0 unknown, 1 yes, 2 no).
    struct MoveContext {
        uint32 from;
        uint32 to;
        uint32 lastIndex;
        IBatchRegistry.BatchCore last;
        uint8 returnOk;
    }

    function _actionType(bytes4 selector) internal pure override returns (bytes32, uint256, uint256) {
        if (selector == this.commission.selector) {
            return (COMMISSION_TYPEHASH, 4, (PARAM_WORD_ARRAY << 2) | (PARAM_WORD_ARRAY << 4));
        }
        if (selector == this.pack.selector) return (PACK_TYPEHASH, 3, PARAM_WORD_ARRAY << 2);
        if (selector == this.unpack.selector) return (UNPACK_TYPEHASH, 3, PARAM_WORD_ARRAY << 2);
        if (selector == this.unpackAll.selector) return (UNPACK_ALL_TYPEHASH, 2, PARAM_WORD_ARRAY);
        if (selector == this.ship.selector) return (SHIP_TYPEHASH, 5, PARAM_WORD_ARRAY << 4);
        if (selector == this.receiveShipment.selector) {
            return (RECEIVE_SHIPMENT_TYPEHASH, 3, PARAM_WORD_ARRAY << 2);
        }
        if (selector == this.rejectShipment.selector) return (REJECT_SHIPMENT_TYPEHASH, 4, PARAM_WORD_ARRAY << 2);
        if (selector == this.reportMissing.selector) return (REPORT_MISSING_TYPEHASH, 3, PARAM_WORD_ARRAY << 2);
        if (selector == this.reclaimShipment.selector) {
            return (RECLAIM_SHIPMENT_TYPEHASH, 3, PARAM_WORD_ARRAY << 2);
        }
        if (selector == this.decommission.selector) return (DECOMMISSION_TYPEHASH, 3, PARAM_WORD_ARRAY);
        if (selector == this.undoDecommission.selector) return (UNDO_DECOMMISSION_TYPEHASH, 2, PARAM_WORD_ARRAY);
        if (selector == this.anchorEvents.selector) return (ANCHOR_EVENTS_TYPEHASH, 1, PARAM_WORD_ARRAY);
        if (selector == this.flagSuspect.selector) return (FLAG_SUSPECT_TYPEHASH, 2, PARAM_WORD_ARRAY);
        if (selector == this.clearSuspect.selector) return (CLEAR_SUSPECT_TYPEHASH, 2, PARAM_WORD_ARRAY);
        if (selector == this.confirmIllegitimate.selector) {
            return (CONFIRM_ILLEGITIMATE_TYPEHASH, 2, PARAM_WORD_ARRAY);
        }
        if (selector == this.flagBatchSuspect.selector) return (FLAG_BATCH_SUSPECT_TYPEHASH, 3, 0);
        if (selector == this.clearBatchSuspect.selector) return (CLEAR_BATCH_SUSPECT_TYPEHASH, 2, 0);
        if (selector == this.confirmBatchIllegitimate.selector) {
            return (CONFIRM_BATCH_ILLEGITIMATE_TYPEHASH, 2, 0);
        }
        revert ActionNotRelayable(selector);
    }

    function _caller() private view returns (address signer, uint32 org) {
        signer = _actor();
        org = registry.activeOrgOf(signer);
    }

    /// @dev Loads a unit or a container by key; `cid` is the container's key as uint88, 0 for a unit.
    /// Container keys fit in 88 bits and unit keys do not, so the key alone says which it is.
    function _load(bytes32 key) private view returns (uint88 cid, Item memory it) {
        if (uint256(key) >> 88 == 0) return _loadContainer(key);
        it = _dec(_units[key]);
        if (it.kind == 0) revert UnknownItem(key);
    }

    function _loadContainer(bytes32 key) private view returns (uint88 id, Item memory it) {
        if (uint256(key) >> 88 != 0) revert NotAContainer(key);
        id = uint88(uint256(key));
        it = _dec(_containers[id]);
        if (it.kind == 0) revert UnknownItem(key);
    }

    function _store(bytes32 key, uint88 cid, Item memory it) private {
        if (cid == 0) _units[key] = _enc(it);
        else _containers[cid] = _enc(it);
    }

    /// @dev Gets the container to fill, creating it for `org` if new; it must be a root the caller
    /// holds, active and not in transit.
    function _openContainer(bytes32 key, uint32 org, address signer) private returns (uint88 id, Item memory box) {
        if (key == bytes32(0) || uint256(key) >> 88 != 0) revert NotAContainer(key);
        id = uint88(uint256(key));
        uint256 w = _containers[id];
        if (w == 0) {
            box = Item({
                kind: KIND_CONTAINER,
                state: ACTIVE,
                suspect: NOT_SUSPECT,
                height: 0,
                batch: 0,
                holder: org,
                parent: 0,
                shipment: 0,
                aux: 0
            });
            emit ContainerCreated(key, org, signer);
        } else {
            box = _dec(w);
            _requireMovable(key, box, org);
            box.parent = 0;
            box.holder = org;
        }
    }

    /// @dev The item must be a root, held by `org`, not in transit, active (and, for containers, not
    /// dissolved).
    function _requireMovable(bytes32 key, Item memory it, uint32 org) private view {
        if (it.state != ACTIVE) {
            if (it.kind == KIND_CONTAINER) revert ContainerDissolved(key);
            if (it.state == DISPENSED) revert AlreadyDispensed(key);
            revert AlreadyDecommissioned(key, it.state);
        }
        (bool root, uint32 holder, uint32 seq) = _custody(it);
        if (!root) revert ItemPacked(key);
        if (seq != 0) revert InTransit(key, _shipmentIdAt[seq]);
        if (holder != org) revert NotHolder(key, holder);
    }

    /// @dev Whether the item is a root, who holds it, and its shipment if in transit (roots only).
    function _custody(Item memory it) private view returns (bool root, uint32 holder, uint32 seq) {
        if (it.parent == 0) return (true, it.holder, it.shipment);
        Item memory p = _dec(_containers[it.parent]);
        root = p.state == DISSOLVED;
        if (root) return (true, _holderOf(p), 0);
        // Packed: custody and transit are the root's.
        while (p.parent != 0) {
            Item memory up = _dec(_containers[p.parent]);
            if (up.state == DISSOLVED) break;
            p = up;
        }
        return (false, _holderOf(p), p.shipment);
    }

    function _holderOf(Item memory it) private view returns (uint32) {
        while (it.parent != 0) it = _dec(_containers[it.parent]);
        return it.holder;
    }

    function _requireNotSuspect(bytes32 key, Item memory it) private view {
        if (it.suspect != NOT_SUSPECT) revert SuspectItem(key, it.suspect);
        uint8 s = _batchSuspect[it.batch];
        if (s != NOT_SUSPECT) revert SuspectBatch(key, batches.batchCoreAt(it.batch).batchId, s);
    }

    function _requireBatch(bytes32 batchId) private view returns (IBatchRegistry.BatchCore memory core) {
        core = batches.batchCore(batchId);
        if (core.index == 0) revert UnknownBatch(batchId);
    }

    // ---- container contents (the batches a container carries, with unit counts)

    function _addContent(uint88 id, Item memory box, uint32 batch, uint256 n) private {
        // A batch is counted in exactly one place: the first slot, or the extra list. An emptied
        // first slot is reused only by a batch that has no units counted among the extras.
        if (box.batch == batch || (box.aux == 0 && _extraCount[id][batch] == 0)) {
            box.batch = batch;
            box.aux += uint40(n);
            return;
        }
        if (!_extraListed[id][batch]) {
            _extraListed[id][batch] = true;
            _extraBatches[id].push(batch);
        }
        _extraCount[id][batch] += n;
    }

    function _removeContent(uint88 id, Item memory box, uint32 batch, uint256 n) private {
        if (box.batch == batch && box.aux != 0) box.aux -= uint40(n);
        else _extraCount[id][batch] -= n;
    }

    /// @dev Adds (or removes) everything child container `cid` carries to (from) container `id`.
    function _transferContent(uint88 cid, Item memory child, uint88 id, Item memory box, bool add) private {
        if (child.aux != 0) {
            if (add) _addContent(id, box, child.batch, child.aux);
            else _removeContent(id, box, child.batch, child.aux);
        }
        uint32[] storage extra = _extraBatches[cid];
        for (uint256 i = 0; i < extra.length; ++i) {
            uint256 c = _extraCount[cid][extra[i]];
            if (c == 0) continue;
            if (add) _addContent(id, box, extra[i], c);
            else _removeContent(id, box, extra[i], c);
        }
    }

    // ---- movement rules

    function _checkContainerMove(MoveContext memory ctx, bytes32 key, uint88 id, Item memory box) private view {
        if (box.aux != 0) _checkMove(ctx, key, box.batch);
        uint32[] storage extra = _extraBatches[id];
        for (uint256 i = 0; i < extra.length; ++i) {
            if (_extraCount[id][extra[i]] != 0) _checkMove(ctx, key, extra[i]);
        }
    }

    function _checkMove(MoveContext memory ctx, bytes32 key, uint32 batch) private view {
        if (batch != ctx.lastIndex) {
            ctx.last = batches.batchCoreAt(batch);
            ctx.lastIndex = batch;
        }
        IBatchRegistry.BatchCore memory core = ctx.last;
        uint8 suspect = _batchSuspect[batch];
        if (suspect != NOT_SUSPECT) revert SuspectBatch(key, core.batchId, suspect);
        IBatchRegistry.BatchStatus status = core.status;
        if (status == IBatchRegistry.BatchStatus.Released) return;
        if (status == IBatchRegistry.BatchStatus.Recalled) {
            if (ctx.to == core.sponsor) return;
            if (ctx.returnOk == 0) {
                bool ok = registry.hasRole(ctx.to, DISTRIBUTOR_ROLE) || registry.hasRole(ctx.to, LOGISTICS_ROLE);
                ctx.returnOk = ok ? 1 : 2;
            }
            if (ctx.returnOk == 1) return;
            revert RecalledProduct(key, core.batchId, ctx.to);
        }
        // Quarantine, suspended or rejected: only between manufacturer and sponsor.
        bool fromOk = ctx.from == core.manufacturer || ctx.from == core.sponsor;
        bool toOk = ctx.to == core.manufacturer || ctx.to == core.sponsor;
        if (!fromOk || !toOk) revert BatchNotReleased(key, core.batchId, status);
    }

    /// @dev Settles items of a shipment (receive, reject or missing): `newHolder` gets custody.
    function _settle(bytes32 shipmentId, bytes32[] calldata keys, uint32 newHolder)
        private
        returns (Shipment storage s)
    {
        s = _shipments[shipmentId];
        uint32 seq = s.seq;
        if (keys.length == 0) revert EmptyList();
        for (uint256 i = 0; i < keys.length; ++i) {
            bytes32 key = keys[i];
            (uint88 cid, Item memory it) = _load(key);
            if (it.shipment != seq || it.parent != 0) revert NotInShipment(key, shipmentId);
            it.shipment = 0;
            it.holder = newHolder;
            _store(key, cid, it);
        }
        s.pending -= uint32(keys.length);
    }

    /// @dev Reverts unless the shipment exists and `org` is its addressee; returns `org`.
    function _addressee(bytes32 shipmentId, uint32 org) private view returns (uint32) {
        Shipment storage s = _shipments[shipmentId];
        if (s.seq == 0) revert UnknownShipment(shipmentId);
        if (s.to != org) revert NotAddressee(shipmentId, org);
        return org;
    }

    function _closeIfDone(bytes32 shipmentId, Shipment storage s) private {
        if (s.pending == 0) emit ShipmentClosed(shipmentId, s.received, s.rejected, s.missing);
    }

    // ---- suspect product

    function _setUnitsSuspect(bytes32[] calldata keys, uint8 from, uint8 to, bytes32 reasonHash, bool holderMay)
        private
    {
        (address signer, uint32 org) = _caller();
        bool regulator = registry.hasRole(org, REGULATOR_ROLE);
        uint32 lastIndex;
        IBatchRegistry.BatchCore memory core;
        for (uint256 i = 0; i < keys.length; ++i) {
            bytes32 key = keys[i];
            Item memory it = _dec(_units[key]);
            _requireUnit(key, it);
            (bool root, uint32 holder,) = _custody(it);
            if (!root) revert ItemPacked(key);
            if (!regulator) {
                if (it.batch != lastIndex) {
                    core = batches.batchCoreAt(it.batch);
                    lastIndex = it.batch;
                }
                if (org != core.sponsor && !(holderMay && holder == org)) revert NotAuthorizedForSuspect(org, key);
            }
            if (it.suspect != from) revert InvalidSuspectTransition(key, it.suspect, to);
            it.suspect = to;
            it.parent = 0;
            it.holder = holder;
            _units[key] = _enc(it);
        }
        emit UnitsSuspectStatusChanged(to, org, signer, reasonHash, keys);
    }

    function _batchJudge(bytes32 batchId)
        private
        view
        returns (address signer, uint32 org, IBatchRegistry.BatchCore memory core)
    {
        (signer, org) = _caller();
        core = _requireBatch(batchId);
        if (org != core.sponsor && !registry.hasRole(org, REGULATOR_ROLE)) revert NotAuthorizedForSuspect(org, batchId);
    }

    function _setBatchSuspect(
        IBatchRegistry.BatchCore memory core,
        uint8 from,
        uint8 to,
        bytes32 reasonHash,
        uint32 org,
        address signer
    ) private {
        uint8 current = _batchSuspect[core.index];
        if (current != from) revert InvalidSuspectTransition(core.batchId, current, to);
        _batchSuspect[core.index] = to;
        emit BatchSuspectStatusChanged(core.batchId, to, org, signer, reasonHash);
    }

    function _noBatch() private pure returns (IBatchRegistry.BatchCore memory core) {}

    function _requireUnit(bytes32 key, Item memory it) private pure {
        if (it.kind != KIND_UNIT) {
            if (it.kind == 0) revert UnknownItem(key);
            revert NotAUnit(key);
        }
    }

    // ---- decommissioning checks on packed words

    // Literals, because inline assembly reads only literal constants.
    uint256 private constant MASK32 = 0xffffffff;
    uint256 private constant MASK88 = 0xffffffffffffffffffffff;
    /// @dev kind UNIT (1) and state ACTIVE (1) in the low two bytes of a packed item.
    uint256 private constant ACTIVE_UNIT = 0x0101;
    /// @dev Keeps kind, suspect, height and batch; clears state, holder, parent, shipment and aux.
    uint256 private constant KEEP_ON_DECOMMISSION = 0xffffffffffff00ff;

    /// @dev The caller, the reason, the new-state stamp, and the caches of the fast path: the last
    /// parent container seen with its holder (0 while it is not dissolved, i.e. the unit is packed)
    /// and the last batch that passed the checks for this reason.
    struct DecommissionCache {
        uint32 org;
        uint8 reason;
        uint256 stamp;
        uint256 parent;
        uint256 parentHolder;
        uint256 batch;
    }

    /// @dev Decommissions one unit with every check spelled out, refreshing the caches.
    function _decommissionChecked(bytes32 key, DecommissionCache memory c) private {
        uint256 w = _units[key];
        if (w & 0xFFFF != ACTIVE_UNIT) _revertNotActiveUnit(key, w);
        uint256 parent = (w >> 96) & MASK88;
        uint256 holder;
        if (parent == 0) {
            uint256 seq = (w >> 184) & MASK32;
            if (seq != 0) revert InTransit(key, _shipmentIdAt[uint32(seq)]);
            holder = (w >> 64) & MASK32;
            c.parent = 0;
        } else {
            if (parent != c.parent) {
                Item memory p = _dec(_containers[uint88(parent)]);
                c.parentHolder = p.state == DISSOLVED ? _holderOf(p) : 0;
                c.parent = parent;
            }
            if (c.parentHolder == 0) revert ItemPacked(key);
            holder = c.parentHolder;
        }
        if (holder != c.org) revert NotHolder(key, uint32(holder));
        uint256 batch = (w >> 32) & MASK32;
        if (batch != c.batch) {
            _checkBatchForDecommission(key, uint32(batch), c.reason);
            c.batch = batch;
        }
        if (c.reason != DESTROYED && (w >> 16) & 0xFF != NOT_SUSPECT) revert SuspectItem(key, uint8(w >> 16));
        _units[key] = (w & KEEP_ON_DECOMMISSION) | c.stamp;
    }

    function _revertNotActiveUnit(bytes32 key, uint256 w) private pure {
        if (w == 0) revert UnknownItem(key);
        if (uint8(w) != KIND_UNIT) revert NotAUnit(key);
        uint8 state = uint8(w >> 8);
        if (state == DISPENSED) revert AlreadyDispensed(key);
        revert AlreadyDecommissioned(key, state);
    }

    /// @dev Reverts unless units of `batch` may be decommissioned for `reason`: suspect and
    /// illegitimate batches only destroyed; dispensing, samples and export only from a released batch.
    function _checkBatchForDecommission(bytes32 key, uint32 batch, uint8 reason) private view {
        uint8 suspect = _batchSuspect[batch];
        bool saleLike = reason == DISPENSED || reason == SAMPLE || reason == FREE_SAMPLE || reason == EXPORTED;
        if ((suspect == NOT_SUSPECT || reason == DESTROYED) && !saleLike) return;
        IBatchRegistry.BatchCore memory core = batches.batchCoreAt(batch);
        if (suspect != NOT_SUSPECT && reason != DESTROYED) revert SuspectBatch(key, core.batchId, suspect);
        if (saleLike && core.status != IBatchRegistry.BatchStatus.Released) {
            revert BatchNotReleased(key, core.batchId, core.status);
        }
    }

    // ---- Item codec: one word per item, so every read and write is a single SLOAD / SSTORE.

    function _enc(Item memory it) private pure returns (uint256 w) {
        w = uint256(it.kind) | (uint256(it.state) << 8) | (uint256(it.suspect) << 16) | (uint256(it.height) << 24)
            | (uint256(it.batch) << 32) | (uint256(it.holder) << 64) | (uint256(it.parent) << 96)
            | (uint256(it.shipment) << 184) | (uint256(it.aux) << 216);
    }

    function _dec(uint256 w) private pure returns (Item memory it) {
        it.kind = uint8(w);
        it.state = uint8(w >> 8);
        it.suspect = uint8(w >> 16);
        it.height = uint8(w >> 24);
        it.batch = uint32(w >> 32);
        it.holder = uint32(w >> 64);
        it.parent = uint88(w >> 96);
        it.shipment = uint32(w >> 184);
        it.aux = uint40(w >> 216);
    }
}
