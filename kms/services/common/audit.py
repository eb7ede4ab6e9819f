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
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature as PycaInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kms.db import AuditCheckpoint, AuditEvent, Database, Session, after_commit, lock_audit_chain
from kms.db import repository as repo
from kms.db.base import utcnow
from kms.errors import AuditChainBroken, KMSError, NotFoundError, TokenKeyNotFound
from kms.formats.audit_export import (
    CHECKPOINT_OPERATION,
    GENESIS,
    canonical_record,
    chain_hash,
    checkpoint_line,
    checkpoint_message,
    event_line,
)
from kms.formats.files import atomic_text_writer
from kms.hsm import Hsm, TokenKey
from kms.keystore import hierarchy
from kms.services.common.resources import Resources

ANCHOR_LABEL = "kms-audit-anchor"
_ANCHOR = struct.Struct(">Q32s")


@dataclass(frozen=True)
class AuditRecord:
    """One thing that happened, before it is chained."""

    operation: str
    subject: str
    details: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = "success"


def canonical_time(occurred_at: datetime.datetime) -> str:
    """An event's time as its canonical record (and the export) writes it: UTC, microseconds."""
    # SQLite hands back naive datetimes; every stored time is UTC.
    when = occurred_at.replace(tzinfo=datetime.UTC) if occurred_at.tzinfo is None else occurred_at
    return when.astimezone(datetime.UTC).isoformat(timespec="microseconds")


def canonical(
    seq: int,
    occurred_at: datetime.datetime,
    actor: str,
    operation: str,
    subject: str,
    outcome: str,
    details: str,
) -> bytes:
    """The bytes an event's hash covers (:func:`kms.formats.audit_export.canonical_record`, which
    an offline verifier of an export rebuilds them with)."""
    return canonical_record(
        seq, canonical_time(occurred_at), actor, operation, subject, outcome, details
    )


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
    return hashlib.sha384(checkpoint_message(seq, head_hash)).digest()


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
            checkpoint_message(cp.seq, cp.head_hash),
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


@dataclass(frozen=True)
class HeadStatus:
    """The head of the chain and its newest checkpoint (:func:`head_status`)."""

    head_seq: int
    checkpoint_seq: int | None
    signed_at: datetime.datetime | None
    key_label: str | None
    #: Whether the checkpoint's signature was checked (only with the token).
    signature_checked: bool

    @property
    def since_checkpoint(self) -> int:
        """Events after the newest checkpoint, which no signature covers yet."""
        return self.head_seq - (self.checkpoint_seq or 0)


def head_status(session: Session, hsm: Hsm | None) -> HeadStatus:
    """The head and the newest checkpoint, which must name an event that still holds the hash it
    signed and, given the token, verify with the audit key: :class:`AuditChainBroken` otherwise.

    A quick look for ``kms status``, not the walk of the whole chain :func:`verify` makes."""
    head = repo.audit_head(session)
    cp = repo.last_audit_checkpoint(session)
    head_seq = head.seq if head is not None else 0
    if cp is None:
        return HeadStatus(head_seq, None, None, None, False)
    event = repo.audit_event(session, cp.seq)
    if event is None or event.hash != cp.head_hash:
        raise AuditChainBroken(
            f"the newest checkpoint names event {cp.seq}, which the database "
            + ("no longer holds" if event is None else "holds with another hash")
            + ": run `kms audit verify`"
        )
    if hsm is not None:
        try:
            public = hsm.public_key_der(TokenKey(cp.key_label, "private"))
        except TokenKeyNotFound:
            raise AuditChainBroken(
                f"checkpoint {cp.id} names audit key {cp.key_label!r}, which the token lacks"
            ) from None
        _verify_signature(public, cp)
    return HeadStatus(head_seq, cp.seq, cp.signed_at, cp.key_label, hsm is not None)


def describe_event(event: AuditEvent) -> dict[str, Any]:
    """An event as plain data: its fields, ``details`` as an object, and its hash (hex)."""
    return {
        "seq": event.seq,
        "occurred_at": canonical_time(event.occurred_at),
        "actor": event.actor,
        "operation": event.operation,
        "subject": event.subject,
        "outcome": event.outcome,
        "details": json.loads(event.details),
        "hash": event.hash.hex(),
    }


def describe_checkpoint(cp: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as plain data (the signature in hex)."""
    return {
        "id": cp.id,
        "seq": cp.seq,
        "head_hash": cp.head_hash.hex(),
        "signed_at": canonical_time(cp.signed_at),
        "key_label": cp.key_label,
        "signature": cp.signature.hex(),
    }


class AuditService:
    """The audit trail's use cases (``Services.audit``): sign its head, check it whole, read it
    (list, show, export). The functions above are the steps other services take inside their
    own transactions.

    Reading needs the database only; an export that holds checkpoints also opens the token, for
    the audit key's public half (a checkpoint row records the key's label, not the key).
    """

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

    def events(
        self,
        *,
        after_seq: int | None = None,
        since: datetime.datetime | None = None,
        operation: str | None = None,
        actor: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The events matching every filter given (:func:`describe_event`), oldest first; with
        ``limit``, the newest ``limit`` of them. ``after_seq``: events after that seq;
        ``since``: events at or after that time."""
        with self._resources.database().begin() as session:
            rows = repo.find_audit_events(
                session,
                after_seq=after_seq,
                since=since,
                operation=operation,
                actor=actor,
                subject=subject,
                limit=limit,
            )
            return [describe_event(row) for row in rows]

    def event(self, seq: int) -> dict[str, Any]:
        """One event whole: :func:`describe_event`, its ``prev_hash``, and the earliest
        ``checkpoint`` whose signature covers it (``None`` while none does)."""
        with self._resources.database().begin() as session:
            row = repo.audit_event(session, seq)
            if row is None:
                raise NotFoundError(f"no audit event {seq}")
            covering = repo.audit_checkpoint_covering(session, seq)
            return {
                **describe_event(row),
                "details_text": row.details,
                "prev_hash": row.prev_hash.hex(),
                "checkpoint": describe_checkpoint(covering) if covering is not None else None,
            }

    def export(self, out: Path, *, since: int = 0, force: bool = False) -> dict[str, Any]:
        """Write the events after ``since`` and their checkpoints to ``out`` as JSON Lines
        (:mod:`kms.formats.audit_export`), atomically; an existing ``out`` is refused unless
        ``force`` (an export is evidence: an earlier one is never replaced by accident). The
        export is a faithful copy, not a check: :func:`kms.formats.audit_export.verify_export`
        checks it offline, ``kms audit verify`` checks the database."""
        db = self._resources.database()  # the schema gate before the token login
        with db.begin() as session:
            checkpoints = [cp for cp in repo.audit_checkpoints(session) if cp.seq > since]
            keys: dict[str, bytes] = {}
            if checkpoints:
                hsm = self._resources.hsm()
                for label in sorted({cp.key_label for cp in checkpoints}):
                    keys[label] = hsm.public_key_der(TokenKey(label, "private"))
            pending = {cp.id: cp for cp in checkpoints}
            by_seq: dict[int, list[AuditCheckpoint]] = {}
            for cp in checkpoints:
                by_seq.setdefault(cp.seq, []).append(cp)
            events, first, last = 0, None, None
            with atomic_text_writer(out, overwrite=force, what="audit export") as handle:
                for event in repo.audit_events(session, after_seq=since):
                    handle.write(_event_line(event) + "\n")
                    for cp in by_seq.get(event.seq, []):
                        handle.write(_checkpoint_line(cp, keys[cp.key_label]) + "\n")
                        del pending[cp.id]
                    first = event.seq if first is None else first
                    last, events = event.seq, events + 1
                # A checkpoint whose event is gone is still exported: the offline check names it.
                for cp in pending.values():
                    handle.write(_checkpoint_line(cp, keys[cp.key_label]) + "\n")
        return {
            "path": str(out),
            "events": events,
            "checkpoints": len(checkpoints),
            "first_seq": first,
            "last_seq": last,
        }


def _event_line(event: AuditEvent) -> str:
    return event_line(
        seq=event.seq,
        occurred_at=canonical_time(event.occurred_at),
        actor=event.actor,
        operation=event.operation,
        subject=event.subject,
        outcome=event.outcome,
        details=event.details,
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


def _checkpoint_line(cp: AuditCheckpoint, public_key_der: bytes) -> str:
    return checkpoint_line(
        seq=cp.seq,
        head_hash=cp.head_hash,
        signed_at=canonical_time(cp.signed_at),
        key_label=cp.key_label,
        signature=cp.signature,
        public_key_der=public_key_der,
    )
