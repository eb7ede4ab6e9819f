"""The audit export (``kms audit export --out FILE.jsonl``) and its offline check.

One JSON object per line (``schema/formats/audit-export-line.schema.json``), in sequence order:

* an **event** line per audit event: ``seq``, ``occurred_at`` (ISO 8601, UTC, microseconds),
  ``actor``, ``operation``, ``subject``, ``outcome``, ``details`` (the canonical JSON text
  exactly as chained), ``prev_hash`` and ``hash`` (hex). The record the hash covers is rebuilt
  from these fields by :func:`canonical_record`, the same function the audit trail chains with.
* a **checkpoint** line right after the event it signs: ``seq``, ``head_hash``, ``signed_at``,
  ``key_label``, ``signature`` (raw r||s, hex) and ``public_key`` (the audit key's
  SubjectPublicKeyInfo as PEM), so the file is checkable with nothing but itself.

:func:`verify_export` is that check (``scripts/verify_audit_export.py`` runs it): every event
must follow the one before it (gap-free ``seq``, ``prev_hash`` = previous ``hash``; a full export
starts at seq 1 from 32 zero bytes), its hash must be SHA-256(prev_hash || record), every
checkpoint must name an exported event's hash and its ECDSA P-384 signature over
SHA-384("dlms-kms/audit-checkpoint/v1" || seq || head hash) must verify with pyca/cryptography
against the key in the line, and every ``audit.checkpoint`` event must have its checkpoint line.
An edited line breaks its hash; a dropped line breaks the sequence; a chain rewritten after an
edit breaks the signature of the next checkpoint. Events after the last checkpoint are signed by
nothing: the report counts them.

This module imports nothing of the KMS but its errors, so a verifier can take it alone.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature as PycaInvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kms.errors import AuditChainBroken, InputError

__all__ = [
    "CHECKPOINT_DOMAIN",
    "CHECKPOINT_OPERATION",
    "GENESIS",
    "ExportReport",
    "canonical_record",
    "chain_hash",
    "checkpoint_line",
    "checkpoint_message",
    "event_line",
    "read_lines",
    "verify_export",
]

GENESIS = bytes(32)
CHECKPOINT_OPERATION = "audit.checkpoint"
CHECKPOINT_DOMAIN = b"dlms-kms/audit-checkpoint/v1"
_EVENT_FIELDS = ("seq", "occurred_at", "actor", "operation", "subject", "outcome", "details")


def canonical_record(
    seq: int, occurred_at: str, actor: str, operation: str, subject: str, outcome: str, details: str
) -> bytes:
    """The bytes an event's hash covers: compact, key-sorted JSON of its seven fields, with
    ``occurred_at`` already in its canonical text (UTC, ISO 8601 to the microsecond)."""
    record = _event(seq, occurred_at, actor, operation, subject, outcome, details)
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def _event(*values: int | str) -> dict[str, int | str]:
    """The seven fields of an event, by name (in the order of :data:`_EVENT_FIELDS`)."""
    return dict(zip(_EVENT_FIELDS, values, strict=True))


def chain_hash(prev_hash: bytes, record: bytes) -> bytes:
    """SHA-256(previous hash || canonical record)."""
    return hashlib.sha256(prev_hash + record).digest()


def checkpoint_message(seq: int, head_hash: bytes) -> bytes:
    """What a checkpoint signs (with ECDSA over SHA-384)."""
    return CHECKPOINT_DOMAIN + struct.pack(">Q", seq) + head_hash


# --- writing -------------------------------------------------------------------------------------


def event_line(
    *,
    seq: int,
    occurred_at: str,
    actor: str,
    operation: str,
    subject: str,
    outcome: str,
    details: str,
    prev_hash: bytes,
    hash: bytes,
) -> str:
    """One event line (JSON, without its newline)."""
    return json.dumps(
        {
            "type": "event",
            **_event(seq, occurred_at, actor, operation, subject, outcome, details),
            "prev_hash": prev_hash.hex(),
            "hash": hash.hex(),
        },
        sort_keys=True,
    )


def checkpoint_line(
    *,
    seq: int,
    head_hash: bytes,
    signed_at: str,
    key_label: str,
    signature: bytes,
    public_key_der: bytes,
) -> str:
    """One checkpoint line (JSON, without its newline); the public key goes in as PEM."""
    public = serialization.load_der_public_key(public_key_der)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return json.dumps(
        {
            "type": "checkpoint",
            "seq": seq,
            "head_hash": head_hash.hex(),
            "signed_at": signed_at,
            "key_label": key_label,
            "algorithm": "ECDSA-P384-SHA384",
            "signature": signature.hex(),
            "public_key": pem,
        },
        sort_keys=True,
    )


# --- reading and the offline check ---------------------------------------------------------------


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line; InputError naming the line otherwise."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise InputError("not a JSON object", source=str(path), row=number) from None
            if not isinstance(obj, dict) or obj.get("type") not in ("event", "checkpoint"):
                raise InputError(
                    'each line is an object of "type" event or checkpoint',
                    source=str(path),
                    row=number,
                )
            yield number, obj


def _field(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AuditChainBroken(f"{where}: field {name!r} is missing or not a {kind.__name__}")
    return value


def _hex(obj: dict[str, Any], name: str, where: str, length: int | None = None) -> bytes:
    text = _field(obj, name, str, where)
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise AuditChainBroken(f"{where}: field {name!r} is not hexadecimal") from None
    if length is not None and len(value) != length:
        raise AuditChainBroken(f"{where}: field {name!r} is not {length} bytes")
    return value


def _check_signature(obj: dict[str, Any], seq: int, head_hash: bytes, where: str) -> str:
    """Verify a checkpoint line's signature; returns its key's fingerprint (SHA-256 of the
    DER SubjectPublicKeyInfo, hex)."""
    try:
        public = serialization.load_pem_public_key(_field(obj, "public_key", str, where).encode())
    except ValueError:
        raise AuditChainBroken(f"{where}: public_key is not a PEM public key") from None
    signature = _hex(obj, "signature", where)
    if not isinstance(public, ec.EllipticCurvePublicKey) or not signature or len(signature) % 2:
        raise AuditChainBroken(f"{where}: unusable audit key or signature")
    half = len(signature) // 2
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    try:
        public.verify(der, checkpoint_message(seq, head_hash), ec.ECDSA(hashes.SHA384()))
    except PycaInvalidSignature:
        raise AuditChainBroken(f"{where}: the checkpoint at event {seq} does not verify") from None
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class ExportReport:
    """What :func:`verify_export` checked."""

    events: int
    checkpoints: int
    first_seq: int | None
    last_seq: int | None
    #: Events after the last checkpoint, which no signature covers.
    unsigned_tail: int
    #: SHA-256 fingerprints (hex, of the DER SubjectPublicKeyInfo) of the audit public keys the
    #: checkpoints were checked with.
    keys: tuple[str, ...]


def verify_export(path: Path) -> ExportReport:
    """Check an export from the file alone (module docstring); :class:`AuditChainBroken` naming
    the first faulty line, :class:`InputError` for a file that is not an export at all."""
    return verify_lines(path.name, read_lines(path))


def verify_lines(source: str, lines: Iterable[tuple[int, dict[str, Any]]]) -> ExportReport:
    """:func:`verify_export` over lines already read."""
    hashes_at: dict[int, bytes] = {}
    checkpoint_events: list[int] = []
    signed: set[int] = set()
    keys: set[str] = set()
    prev: bytes | None = None
    first: int | None = None
    last: int | None = None
    events = checkpoints = 0
    for number, obj in lines:
        where = f"{source} line {number}"
        if obj["type"] == "checkpoint":
            seq = _field(obj, "seq", int, where)
            head_hash = _hex(obj, "head_hash", where, 32)
            if hashes_at.get(seq) != head_hash:
                raise AuditChainBroken(
                    f"{where}: the checkpoint names event {seq}, which the export "
                    + ("holds with another hash" if seq in hashes_at else "does not hold")
                )
            keys.add(_check_signature(obj, seq, head_hash, where))
            signed.add(seq)
            checkpoints += 1
            continue
        seq = _field(obj, "seq", int, where)
        values = [seq] + [_field(obj, name, str, where) for name in _EVENT_FIELDS[1:]]
        prev_hash = _hex(obj, "prev_hash", where, 32)
        digest = _hex(obj, "hash", where, 32)
        if last is None:
            if seq == 1 and prev_hash != GENESIS:
                raise AuditChainBroken(f"{where}: event 1 does not start from the genesis hash")
            first = seq
        elif seq != last + 1:
            raise AuditChainBroken(f"{where}: event {last + 1} is missing (next is {seq})")
        elif prev_hash != prev:
            raise AuditChainBroken(f"{where}: event {seq} does not link to event {last}")
        if chain_hash(prev_hash, canonical_record(*values)) != digest:
            raise AuditChainBroken(f"{where}: event {seq} was altered")
        hashes_at[seq] = digest
        if obj["operation"] == CHECKPOINT_OPERATION:
            checkpoint_events.append(seq)
        prev, last, events = digest, seq, events + 1
    missing = [seq for seq in checkpoint_events if seq not in signed]
    if missing:
        raise AuditChainBroken(
            f"{source}: the checkpoint signed at event {missing[0]} is missing from the export"
        )
    newest = max(signed, default=None)
    tail = (last - newest) if last is not None and newest is not None else events
    return ExportReport(events, checkpoints, first, last, tail, tuple(sorted(keys)))
