"""The API's own tables (identity, signing keys, outbox, audit log, documents). They live in the same
database as the indexer's read models but on their own metadata and Alembic history: an indexer
rebuild drops and replays the read models and never touches these."""

from api.models.alerts import Alert, AlertStatus
from api.models.audit import AuditEntry
from api.models.base import ApiModel, api_metadata
from api.models.epcis import CaptureJob, EpcisEvent, EpcisEventEpc
from api.models.identity import ApiToken, User, UserRole
from api.models.notifications import Delivery, Notification, NotifierState, Webhook
from api.models.outbox import Operation, OperationStatus, OperationTx, SubmitterLease, TxStatus
from api.models.records import Document, KnownItem, ProductMaster, SignatureRecord
from api.models.signing import OrgSigner, SignerMode

__all__ = [
    "Alert",
    "AlertStatus",
    "ApiModel",
    "ApiToken",
    "AuditEntry",
    "CaptureJob",
    "Delivery",
    "Document",
    "EpcisEvent",
    "EpcisEventEpc",
    "KnownItem",
    "Notification",
    "NotifierState",
    "Operation",
    "OperationStatus",
    "OperationTx",
    "OrgSigner",
    "ProductMaster",
    "SignatureRecord",
    "SignerMode",
    "SubmitterLease",
    "TxStatus",
    "User",
    "UserRole",
    "Webhook",
    "api_metadata",
]
