"""The audit trail: a hash chain over every operation on key material, checkpointed in the token.

Each event's hash is SHA-256(previous hash || canonical record), where the canonical record is
compact, key-sorted JSON of (seq, occurred_at, actor, operation, subject, outcome, details). The
first event chains from 32 zero bytes. Events are appended in the same transaction as the change
they describe, under the chain lock (:func:`kms.db.lock_audit_chain`), so two writers never fork
the chain.

A checkpoint signs SHA-384("dlms-kms/audit-checkpoint/v1" || seq || head hash) with the audit key
(ECDSA P-384) in the token. :func:`verify` walks the chain and checks every checkpoint with
pyca/cryptography against the public key exported from the token. What it detects: an edited
event (its hash), a deleted or re-ordered event (the links and the gap-free sequence), and a
truncated tail up to the last checkpoint (the checkpoint names a seq and hash that must exist).
Events appended after the last checkpoint can be truncated undetected: checkpoint often.

The anchor. Signatures alone do not stop someone with write access to the database from deleting
the newest checkpoints together with the events they cover. So each checkpoint also writes its
(seq, head hash) into a private data object in the token (``kms-audit-anchor``), which only a
logged-in user can change, and :func:`verify` requires the database to still hold the anchored
checkpoint and its event. Every ``audit.checkpoint`` event must also keep its checkpoint row. The
anchor is written once the checkpoint's transaction has committed; if that write fails, the token
keeps the previous anchor, which still verifies, and the next checkpoint moves it on.

Details hold metadata only (system titles, labels, check values), never a key byte.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature as PycaInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kms.db import AuditCheckpoint, Database, Session, after_commit, lock_audit_chain
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.errors import AuditChainBroken, KMSError, TokenKeyNotFound
from kms.hsm import Hsm, TokenKey
from kms.keystore import hierarchy
from kms.services.common.resources import Resources

GENESIS = bytes(32)
ANCHOR_LABEL = "kms-audit-anchor"
CHECKPOINT_OPERATION = "audit.checkpoint"
_CHECKPOINT_DOMAIN = b"dlms-kms/audit-checkpoint/v1"
_ANCHOR = struct.Struct(">Q32s")


@dataclass(frozen=True)
class AuditRecord:
    """One thing that happened, before it is chained."""

    operation: str
    subject: str
    details: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = "success"


def canonical(
    seq: int,
    occurred_at: datetime.datetime,
    actor: str,
    operation: str,
    subject: str,
    outcome: str,
    details: str,
) -> bytes:
    """The bytes an event's hash covers."""
    # SQLite hands back naive datetimes; every stored time is UTC.
    when = occurred_at.replace(tzinfo=datetime.UTC) if occurred_at.tzinfo is None else occurred_at
    record = {
        "seq": seq,
        "occurred_at": when.astimezone(datetime.UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "operation": operation,
        "subject": subject,
        "outcome": outcome,
        "details": details,
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def chain_hash(prev_hash: bytes, record: bytes) -> bytes:
    """SHA-256(previous hash || canonical record)."""
    return hashlib.sha256(prev_hash + record).digest()


def append(session: Session, actor: str, records: Sequence[AuditRecord]) -> int:
    """Chain and insert ``records`` in the caller's transaction; returns the new head seq."""
    lock_audit_chain(session)
    head = repo.audit_head(session)
    seq, prev = (head.seq, head.hash) if head is not None else (0, GENESIS)
    now = utcnow()
    rows = []
    for record in records:
        seq += 1
        details = json.dumps(dict(record.details), sort_keys=True, separators=(",", ":"))
        digest = chain_hash(
            prev,
            canonical(seq, now, actor, record.operation, record.subject, record.outcome, details),
        )
        rows.append(
            {
                "seq": seq,
                "occurred_at": now,
                "actor": actor,
                "operation": record.operation,
                "subject": record.subject,
                "outcome": record.outcome,
                "details": details,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    repo.insert_audit_events(session, rows)
    return seq


def record_failure(db: Database, actor: str, operation: str, subject: str, error: KMSError) -> None:
    """Audit a failed operation on key material in a transaction of its own.

    The operation's own transaction rolled back with its events, yet a failure (a blob that does
    not match its row, a token that refused) is exactly what an auditor must see. The error's code
    and message carry metadata only (:mod:`kms.errors`). If the database itself failed, this can
    fail too; the original error is what the caller raises either way.
    """
    record = AuditRecord(
        operation, subject, {"error": error.code, "message": error.message}, "failure"
    )
    with contextlib.suppress(KMSError), db.begin() as session:
        append(session, actor, [record])


def _checkpoint_digest(seq: int, head_hash: bytes) -> bytes:
    return hashlib.sha384(_CHECKPOINT_DOMAIN + struct.pack(">Q", seq) + head_hash).digest()


def checkpoint(hsm: Hsm, session: Session, audit_key: TokenKey, actor: str) -> AuditCheckpoint:
    """Sign the chain head in the token and record the checkpoint (itself audited first)."""
    append(session, actor, [AuditRecord(CHECKPOINT_OPERATION, audit_key.label)])
    head = repo.audit_head(session)
    assert head is not None
    signature = hsm.sign_digest(audit_key, _checkpoint_digest(head.seq, head.hash))
    row = AuditCheckpoint(
        seq=head.seq,
        head_hash=head.hash,
        signed_at=utcnow(),
        key_label=audit_key.label,
        signature=signature,
    )
    repo.add(session, row)
    # Anchor only what committed: an anchor ahead of the database would read as a truncation.
    anchor = _ANCHOR.pack(row.seq, row.head_hash)
    after_commit(session, lambda: hsm.replace_data(ANCHOR_LABEL, anchor))
    return row


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` checked."""

    events: int
    checkpoints: int
    head_seq: int
    head_hash: str


def _verify_signature(public_der: bytes, cp: AuditCheckpoint) -> None:
    public = serialization.load_der_public_key(public_der)
    if not isinstance(public, ec.EllipticCurvePublicKey) or len(cp.signature) % 2:
        raise AuditChainBroken(f"checkpoint {cp.id}: unusable audit key or signature")
    half = len(cp.signature) // 2
    der = encode_dss_signature(
        int.from_bytes(cp.signature[:half], "big"), int.from_bytes(cp.signature[half:], "big")
    )
    try:
        public.verify(
            der,
            _CHECKPOINT_DOMAIN + struct.pack(">Q", cp.seq) + cp.head_hash,
            ec.ECDSA(hashes.SHA384()),
        )
    except PycaInvalidSignature:
        raise AuditChainBroken(
            f"checkpoint {cp.id} (seq {cp.seq}): signature does not verify"
        ) from None


def _check_anchor(
    hsm: Hsm, hashes_at: dict[int, bytes], checkpoints: Sequence[AuditCheckpoint]
) -> None:
    """The checkpoint anchored in the token must still be in the database, with its event."""
    values = hsm.read_data(ANCHOR_LABEL)
    if not values:
        if checkpoints:
            raise AuditChainBroken(
                f"the database holds checkpoints but token {hsm.token_label!r} holds no audit "
                "anchor: this database does not belong to this token, or the anchor was removed"
            )
        return
    if any(len(value) != _ANCHOR.size for value in values):
        raise AuditChainBroken("the audit anchor in the token is malformed")
    # Two anchors exist only if a checkpoint stopped between creating one and removing the other.
    seq, head_hash = max(_ANCHOR.unpack(value) for value in values)
    if hashes_at.get(seq) != head_hash or not any(
        cp.seq == seq and cp.head_hash == head_hash for cp in checkpoints
    ):
        raise AuditChainBroken(
            f"the token anchors the checkpoint at event {seq}, which the database no longer "
            "holds: the log was truncated or rolled back"
        )


def verify(hsm: Hsm, session: Session) -> VerifyReport:
    """Walk the chain and every checkpoint; :class:`AuditChainBroken` at the first fault."""
    hashes_at: dict[int, bytes] = {}
    checkpoints = repo.audit_checkpoints(session)
    wanted = {cp.seq for cp in checkpoints}
    checkpoint_events: list[int] = []
    prev, expected_seq, count = GENESIS, 1, 0
    for event in repo.audit_events(session):
        if event.seq != expected_seq:
            raise AuditChainBroken(f"audit event {expected_seq} is missing (next is {event.seq})")
        if event.prev_hash != prev:
            raise AuditChainBroken(
                f"audit event {event.seq} does not link to event {event.seq - 1}"
            )
        record = canonical(
            event.seq,
            event.occurred_at,
            event.actor,
            event.operation,
            event.subject,
            event.outcome,
            event.details,
        )
        if chain_hash(prev, record) != event.hash:
            raise AuditChainBroken(f"audit event {event.seq} was altered")
        if event.seq in wanted:
            hashes_at[event.seq] = event.hash
        if event.operation == CHECKPOINT_OPERATION:
            checkpoint_events.append(event.seq)
        prev, expected_seq, count = event.hash, expected_seq + 1, count + 1
    keys: dict[str, bytes] = {}
    for cp in checkpoints:
        if cp.seq not in hashes_at:
            raise AuditChainBroken(
                f"checkpoint {cp.id} covers event {cp.seq}, which is missing: the log was truncated"
            )
        if hashes_at[cp.seq] != cp.head_hash:
            raise AuditChainBroken(f"checkpoint {cp.id} does not match event {cp.seq}")
        if cp.key_label not in keys:
            try:
                keys[cp.key_label] = hsm.public_key_der(TokenKey(cp.key_label, "private"))
            except TokenKeyNotFound:
                raise AuditChainBroken(
                    f"checkpoint {cp.id} names audit key {cp.key_label!r}, which the token lacks"
                ) from None
        _verify_signature(keys[cp.key_label], cp)
    # After each checkpoint's own checks (the more precise diagnosis), what only the anchor and
    # the checkpoint events can tell: checkpoints deleted, or the tail rolled back.
    missing = sorted(set(checkpoint_events) - wanted)
    if missing:
        raise AuditChainBroken(f"the checkpoint signed at event {missing[0]} was deleted")
    _check_anchor(hsm, hashes_at, checkpoints)
    return VerifyReport(count, len(checkpoints), expected_seq - 1, prev.hex())


class AuditService:
    """The audit trail's use cases (``Services.audit``): sign its head, check it whole. The
    functions above are the steps other services take inside their own transactions."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def checkpoint(self, *, actor: str) -> dict[str, Any]:
        """Sign the head of the chain with the audit key in the token; returns the checkpoint's
        seq, head hash (hex) and key label."""
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        with db.begin() as session:
            root = hierarchy.load_root_keys(hsm, session)
            row = checkpoint(hsm, session, root.audit, actor)
            return {"seq": row.seq, "head_hash": row.head_hash.hex(), "key": row.key_label}

    def verify(self) -> VerifyReport:
        """Walk the whole chain and every checkpoint (:func:`verify`)."""
        db = self._resources.database()  # the schema gate before the token login
        hsm = self._resources.hsm()
        with db.begin() as session:
            return verify(hsm, session)
