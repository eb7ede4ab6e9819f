"""Ceremony requests and approvals: the two files of an M-of-N ceremony.

A *request* is canonical JSON (sorted keys, no spaces, ASCII) naming the ceremony, its
parameters, a random id and an expiry; its exact bytes are what each officer signs, so an
officer can check and sign it with their own tools (``openssl dgst -sha256 -sign``) as well as
with ``kms ceremony approve``. A request that is not canonical was edited after it was made and
is refused. An *approval* is ``{"format", "officer", "request_id", "signature"}`` with the
officer's ECDSA signature (DER, hex) over the request's bytes.

Schemas: ``schema/formats/ceremony-request.schema.json`` and
``ceremony-approval.schema.json``. Whether an approval is valid (the officer, their key, the
quorum) is the approvals service's question (:mod:`kms.services.common.approvals`); this module
only reads and writes the files.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kms.errors import InputError
from kms.formats.files import load_document

__all__ = [
    "APPROVAL_FORMAT",
    "CEREMONIES",
    "REQUEST_FORMAT",
    "ApprovalFile",
    "CeremonyRequest",
    "approval_file",
    "canonical",
    "check_parameters",
    "describe_parameters",
    "load_approval",
    "load_request",
    "request_document",
]

REQUEST_FORMAT = "dlms-kms/ceremony-request/v1"
APPROVAL_FORMAT = "dlms-kms/ceremony-approval/v1"
#: Ceremonies a request may name, each with the parameters it takes.
CEREMONIES: Mapping[str, frozenset[str]] = {
    "create-root-ca": frozenset(),
    "create-issuing-ca": frozenset({"suite"}),
    "rotate-issuing-ca": frozenset({"suite"}),
    # The wrapping key is named by its check value: officers approve a backup under the key
    # they saw made from their components, not under whatever trusted key an operator has.
    "backup-ca-key": frozenset({"ca", "wrapping_key_kcv"}),
    "restore-ca-key": frozenset({"ca"}),
    # Revoking a CA certificate retires the CA and every certificate under it.
    "revoke-ca-certificate": frozenset({"serial", "reason"}),
    "add-officer": frozenset({"name", "public_key_sha256"}),
    "remove-officer": frozenset({"name"}),
}


@dataclass(frozen=True)
class CeremonyRequest:
    """A request as signed: ``text`` is the exact bytes every approval covers."""

    ceremony: str
    parameters: Mapping[str, Any]
    request_id: str
    expires_at: datetime.datetime
    text: bytes


@dataclass(frozen=True)
class ApprovalFile:
    """One officer's approval as handed in (not yet verified)."""

    officer: str
    request_id: str
    signature: bytes
    source: str


def canonical(obj: Mapping[str, Any]) -> bytes:
    """The canonical JSON of ``obj``: the bytes officers sign."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _names(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "no parameters"


def describe_parameters(parameters: Mapping[str, Any]) -> str:
    """A request's parameters as a person reads them, spelled as the CLI options are
    (``reason ca-compromise, serial 01AB``), never as a Python dict."""
    return ", ".join(
        f"{name} {str(value).replace('_', '-') if name == 'reason' else value}"
        for name, value in sorted(parameters.items())
    )


def check_parameters(ceremony: str, parameters: Mapping[str, Any], source: str) -> None:
    """InputError unless ``ceremony`` is known and takes exactly ``parameters``."""
    expected = CEREMONIES.get(ceremony)
    if expected is None:
        raise InputError(
            f"unknown ceremony {ceremony}; expected one of {', '.join(sorted(CEREMONIES))}",
            source=source,
        )
    if set(parameters) != expected:
        raise InputError(
            f"ceremony {ceremony} takes {_names(expected)}, not {_names(parameters)}",
            source=source,
        )


def request_document(
    ceremony: str,
    parameters: Mapping[str, Any],
    request_id: str,
    created: datetime.datetime,
    expires: datetime.datetime,
) -> bytes:
    """The bytes of a new request file (canonical JSON)."""
    check_parameters(ceremony, parameters, "request")
    return canonical(
        {
            "format": REQUEST_FORMAT,
            "ceremony": ceremony,
            "parameters": dict(parameters),
            "request_id": request_id,
            "created_at": created.isoformat(),
            "expires_at": expires.isoformat(),
        }
    )


def load_request(data: bytes, source: str) -> CeremonyRequest:
    """Parse a request file; it must be canonical, so that its bytes are what was signed."""
    body = load_document(data, source, what="ceremony request", format=REQUEST_FORMAT)
    if canonical(body) != data:
        raise InputError(
            "the request is not in canonical form (edited after it was made?); officers sign "
            "its exact bytes",
            source=source,
        )
    ceremony, parameters = body.get("ceremony"), body.get("parameters")
    if not isinstance(ceremony, str) or not isinstance(parameters, dict):
        raise InputError("the request lacks its ceremony or parameters", source=source)
    check_parameters(ceremony, parameters, source)
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or len(request_id) != 32:
        raise InputError("the request id is not 32 hex digits", source=source)
    try:
        bytes.fromhex(request_id)
        expires = datetime.datetime.fromisoformat(str(body.get("expires_at")))
    except ValueError:
        raise InputError("the request id or expiry is malformed", source=source) from None
    if expires.tzinfo is None:
        raise InputError("the request expiry has no time zone", source=source)
    return CeremonyRequest(ceremony, parameters, request_id, expires, data)


def load_approval(data: bytes, source: str) -> ApprovalFile:
    """Parse an approval file (JSON: officer, request_id, signature as DER hex)."""
    try:
        body = json.loads(data)
        officer, request_id = body["officer"], body["request_id"]
        signature = bytes.fromhex(body["signature"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise InputError(
            "not an approval file (JSON with officer, request_id and a hex signature)",
            source=source,
        ) from None
    if body.get("format") != APPROVAL_FORMAT:
        raise InputError(f"not an approval file (format is not {APPROVAL_FORMAT})", source=source)
    if not isinstance(officer, str) or not isinstance(request_id, str):
        raise InputError("officer and request_id must be strings", source=source)
    return ApprovalFile(officer, request_id, signature, source)


def approval_file(officer: str, request: CeremonyRequest, signature_der: bytes) -> bytes:
    """The approval file an officer hands in."""
    body = {
        "format": APPROVAL_FORMAT,
        "officer": officer,
        "request_id": request.request_id,
        "signature": signature_der.hex(),
    }
    return json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"
