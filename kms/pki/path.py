"""Certification path validation: RFC 5280 section 6, the subset a DLMS PKI needs (a configured
trust anchor, at most a few CAs under it, ECDSA signatures, revocation from the caller).

Path building (RFC 4158 in miniature) follows issuer name and key identifier: a certificate is
issued by a candidate whose subject equals its issuer name (RFC 5280 7.1 comparison) and, when both
are present, whose subjectKeyIdentifier equals its authorityKeyIdentifier; among several, the
first whose key verifies the signature wins. Then, from the anchor down, as section 6.1 orders it:
validity at the given time, unrecognised critical extensions, CA flags (basicConstraints cA=TRUE,
keyCertSign, pathLenConstraint) and revocation through the caller's ``is_revoked``. Policy
processing and name constraints are not implemented, so a certificate that marks them critical
fails as unrecognised.

The time is an argument: the layer has no clock, and an import that ran yesterday can be
re-checked for the time it ran.

Exports:

* :func:`validate_path` -- the path from a certificate to the anchor, or
  :class:`~kms.errors.InvalidCertificatePath` naming the certificate and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from asn1crypto import x509  # type: ignore[import-untyped, unused-ignore]

from kms.errors import CertificateProfileError, InputError, InvalidCertificatePath, InvalidSignature
from kms.pki._asn1 import HASH_OF_ALGORITHM, SIGNATURE_ALGORITHMS, name_text, utc
from kms.pki.ecdsa import verify
from kms.pki.profile_check import extensions_of

__all__ = ["MAX_PATH_LENGTH", "validate_path"]

#: root -> issuing CA -> meter is 3; a longer chain is a loop or a misconfiguration.
MAX_PATH_LENGTH = 6
#: Critical extensions this validator processes (RFC 5280 4.2: reject any other critical one).
_UNDERSTOOD = frozenset(
    {"key_usage", "basic_constraints", "extended_key_usage", "subject_alt_name", "key_identifier"}
)


def _never_revoked(certificate: Any) -> bool:
    return False


def _fail(role: str, certificate: Any, reason: str) -> InvalidCertificatePath:
    return InvalidCertificatePath(f"{role} {name_text(certificate.subject)}: {reason}")


def _same(one: Any, other: Any) -> bool:
    return bool(one.dump() == other.dump())


def _issued_by(child: Any, parent: Any) -> bool:
    if child.issuer != parent.subject:
        return False
    authority = child.authority_key_identifier
    subject = parent.key_identifier
    return authority is None or subject is None or authority == subject


def _signature_verifies(role: str, child: Any, parent: Any) -> bool:
    algorithm = child["signature_algorithm"]["algorithm"].native
    if algorithm not in SIGNATURE_ALGORITHMS:
        raise _fail(role, child, f"signature algorithm {algorithm} is not supported")
    try:
        verify(
            parent.public_key,
            child["signature_value"].native,
            child["tbs_certificate"].dump(),
            HASH_OF_ALGORITHM[algorithm],
        )
    except (InvalidSignature, CertificateProfileError, InputError):
        return False
    return True


def _role(index: int, anchor_index: int | None = None) -> str:
    """How messages name the certificate at ``index`` of a path (0 is the one being validated)."""
    if index == 0:
        return "certificate"
    return "trust anchor" if index == anchor_index else "issuing CA"


def _build(certificate: Any, intermediates: Sequence[Any], anchor: Any) -> list[Any]:
    path = [certificate]
    current = certificate
    while not _same(current, anchor):
        role = _role(len(path) - 1)
        if _issued_by(current, anchor):
            if not _signature_verifies(role, current, anchor):
                raise _fail(role, current, "signature does not verify with the trust anchor's key")
            path.append(anchor)
            break
        candidates = [
            candidate
            for candidate in intermediates
            if _issued_by(current, candidate) and not any(_same(candidate, p) for p in path)
        ]
        if not candidates:
            raise _fail(role, current, "chain does not reach the configured trust anchor")
        verified = [c for c in candidates if _signature_verifies(role, current, c)]
        if not verified:
            raise _fail(
                role,
                current,
                f"signature does not verify with the key of {name_text(candidates[0].subject)}",
            )
        current = verified[0]
        path.append(current)
        if len(path) >= MAX_PATH_LENGTH:  # the anchor would make it longer still
            raise _fail(
                "certificate", certificate, f"chain is longer than {MAX_PATH_LENGTH} certificates"
            )
    return path


def _check_validity(role: str, certificate: Any, at: datetime) -> None:
    validity = certificate["tbs_certificate"]["validity"]
    not_before = validity["not_before"].native
    not_after = validity["not_after"].native
    if at < not_before:
        raise _fail(role, certificate, f"not valid before {not_before:%Y-%m-%dT%H:%M:%SZ}")
    if at > not_after:
        raise _fail(role, certificate, f"expired at {not_after:%Y-%m-%dT%H:%M:%SZ}")


def _check_issuer(role: str, certificate: Any, intermediates_below: int) -> None:
    extensions = extensions_of(certificate["tbs_certificate"])
    constraints = extensions.get("basic_constraints")
    if constraints is None or not constraints.value["ca"].native:
        raise _fail(role, certificate, "is not a CA (basicConstraints cA=TRUE)")
    usage = extensions.get("key_usage")
    if usage is not None and "key_cert_sign" not in usage.value.native:
        raise _fail(role, certificate, "keyUsage lacks keyCertSign")
    limit = constraints.value["path_len_constraint"].native
    if limit is not None and intermediates_below > limit:
        raise _fail(role, certificate, f"pathLenConstraint {limit} exceeded")


def validate_path(
    certificate: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchor: x509.Certificate,
    *,
    at: datetime,
    is_revoked: Callable[[x509.Certificate], bool] = _never_revoked,
) -> list[x509.Certificate]:
    """The path ``[certificate, ..., anchor]`` if it validates at ``at``.

    ``intermediates`` may hold unrelated certificates; only those on the path are used. The
    anchor's own validity is checked too (OpenSSL does the same) but its signature and
    revocation are not: it is trusted by configuration. Raises
    :class:`~kms.errors.InvalidCertificatePath` naming the certificate ("issuing CA CN=...:
    expired at ...", "certificate CN=...: is revoked", "...: chain does not reach the configured
    trust anchor").
    """
    for item in (certificate, anchor, *intermediates):
        if not isinstance(item, x509.Certificate):
            raise TypeError(f"expected x509.Certificate objects, not {type(item).__name__}")
    at = utc(at, "at")
    path = _build(certificate, intermediates, anchor)
    last = len(path) - 1
    for index in range(last, -1, -1):
        current = path[index]
        role = _role(index, anchor_index=last)
        _check_validity(role, current, at)
        try:
            extensions = extensions_of(current["tbs_certificate"])
        except CertificateProfileError as error:
            raise _fail(role, current, error.message) from None
        for name, extension in extensions.items():
            if extension.critical and name not in _UNDERSTOOD:
                raise _fail(role, current, f"unrecognised critical extension {name}")
        if index > 0:
            below = sum(1 for c in path[1:index] if c.issuer != c.subject)
            _check_issuer(role, current, below)
        # The anchor is trusted by configuration; everything below it can be revoked.
        if index < last and is_revoked(current):
            raise _fail(role, current, "is revoked")
    return path
