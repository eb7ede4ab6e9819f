"""The CA key backup file: a CA's private key wrapped in the token under the officers' backup
wrapping key, with what a restore needs to check it.

JSON (``schema/formats/ca-key-backup.schema.json``): the CA's name, role, suite and curve, its
token label and certificate (PEM), the wrapping key's label and key check value (KCV), the
mechanism, the wrapped key (hex), the creation time, and the id of the approved request and the
officers who approved it. Nothing in it is secret without the wrapping key, which exists only in
the token, rebuilt there from the officers' components.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kms.errors import InputError
from kms.formats.files import load_document
from kms.pki import ecdsa, encoding

__all__ = ["BACKUP_FORMAT", "CaKeyBackup", "backup_document", "load_backup"]

BACKUP_FORMAT = "dlms-kms/ca-key-backup/v1"


@dataclass(frozen=True)
class CaKeyBackup:
    """A backup file as read (its blob not yet unwrapped)."""

    ca: str
    curve: str
    key_label: str
    certificate_der: bytes
    wrapping_key_label: str
    wrapping_key_kcv: str
    mechanism: str
    wrapped_key: bytes
    created_at: str
    source: str


def backup_document(
    *,
    ca: str,
    role: str,
    suite: int | None,
    curve: str,
    key_label: str,
    certificate_pem: str,
    wrapping_key_label: str,
    wrapping_key_kcv: str,
    mechanism: str,
    wrapped_key: bytes,
    created_at: str,
    request_id: object,
    approved_by: object,
) -> bytes:
    """The bytes of a backup file."""
    body = {
        "format": BACKUP_FORMAT,
        "ca": ca,
        "role": role,
        "suite": suite,
        "curve": curve,
        "key_label": key_label,
        "certificate": certificate_pem,
        "wrapping_key_label": wrapping_key_label,
        "wrapping_key_kcv": wrapping_key_kcv,
        "mechanism": mechanism,
        "wrapped_key": wrapped_key.hex(),
        "created_at": created_at,
        "request_id": request_id,
        "approved_by": approved_by,
    }
    return json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"


def _text(body: dict[str, Any], name: str, source: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InputError(f"the backup lacks {name!r}", source=source)
    return value


def load_backup(data: bytes, source: str) -> CaKeyBackup:
    """Parse a backup file; the certificate must carry a key of the curve the file names."""
    body = load_document(data, source, what="CA key backup", format=BACKUP_FORMAT)
    fields = {
        name: _text(body, name, source)
        for name in (
            "ca",
            "curve",
            "key_label",
            "certificate",
            "wrapping_key_label",
            "wrapping_key_kcv",
            "mechanism",
            "wrapped_key",
            "created_at",
        )
    }
    try:
        wrapped = bytes.fromhex(fields["wrapped_key"])
        bytes.fromhex(fields["wrapping_key_kcv"])
    except ValueError:
        raise InputError("wrapped_key and wrapping_key_kcv must be hex", source=source) from None
    certificate = encoding.load_certificate(fields["certificate"].encode("ascii"), source)
    curve = ecdsa.public_key_curve(certificate["tbs_certificate"]["subject_public_key_info"])
    if curve != fields["curve"]:
        raise InputError(f"the certificate's key is {curve}, not {fields['curve']}", source=source)
    return CaKeyBackup(
        ca=fields["ca"],
        curve=curve,
        key_label=fields["key_label"],
        certificate_der=bytes(certificate.dump()),
        wrapping_key_label=fields["wrapping_key_label"],
        wrapping_key_kcv=fields["wrapping_key_kcv"].upper(),
        mechanism=fields["mechanism"],
        wrapped_key=wrapped,
        created_at=fields["created_at"],
        source=source,
    )
