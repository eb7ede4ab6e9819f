"""The Green Book certificate profile as data: DLMS UA 1000-2 Ed. 8.x / IEC 62056-5-3, the
certificate clauses as quoted in docs/dlms-security.md section 6 (secondary sources and Gurux's
``GXx509Certificate`` checks; the clause numbers were not checked against the standard) and the
security setup object (class_id 64) enums of section 4.

The builders (:mod:`kms.pki.profiles`) and the checker (:mod:`kms.pki.profile_check`) both read
these tables, so what the KMS issues and what it accepts cannot drift apart.

Exports:

* :class:`CertificateType` -- security setup ``certificate_type`` (0 signing, 1 key agreement,
  2 TLS), with the CLI words.
* :func:`curve_for_suite` -- P-256 for suite 1, P-384 for suite 2.
* :class:`Validity` -- a certificate's notBefore/notAfter, aware UTC, whole seconds.
* :data:`KEY_USAGE` / :data:`CA_KEY_USAGE` / :data:`TLS_EXTENDED_KEY_USAGE` -- the extension
  contents the profile requires, in asn1crypto's names.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from kms.dlms.suites import SecuritySuite
from kms.errors import InputError
from kms.pki._asn1 import utc

__all__ = [
    "CA_KEY_USAGE",
    "CA_OPTIONAL_KEY_USAGE",
    "KEY_USAGE",
    "TLS_EXTENDED_KEY_USAGE",
    "CertificateType",
    "Validity",
    "curve_for_suite",
]

_DIGITS = re.compile(r"[0-9]{1,2}", re.ASCII)


class CertificateType(enum.IntEnum):
    """The ``certificate_type`` enum of security setup methods 4, 5 and 7 (notes section 4), as
    far as the profile issues it: with the CLI's words.

    Type 3 ("other") exists on the wire (:class:`kms.dlms.security_setup.CertificateType`, the
    codec's enum, has it) but the profile gives it no key usage, so the KMS neither issues nor
    classifies it; the values are the wire's, so ``int()`` of either is what a meter sees.
    """

    DIGITAL_SIGNATURE = 0
    KEY_AGREEMENT = 1
    TLS = 2

    @classmethod
    def parse(cls, text: str) -> CertificateType:
        """The type named by CLI text: ``signing``, ``key-agreement`` or ``tls``; also a member
        name (``KEY_AGREEMENT``, ``key-agreement``) or its number, case-insensitively.

        Anything else raises :class:`~kms.errors.InputError` (field ``certificate_type``).
        """
        if isinstance(text, CertificateType):
            return text
        if not isinstance(text, str):
            raise TypeError(f"certificate type must be str, not {type(text).__name__}")
        word = text.strip().lower()
        for member in cls:
            if word in (
                member.cli_name,
                member.name.lower(),
                member.name.lower().replace("_", "-"),
            ):
                return member
        if _DIGITS.fullmatch(word) and int(word) in {member.value for member in cls}:
            return cls(int(word))
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InputError(
            f"unknown certificate type {shown!r}; expected signing, key-agreement or tls",
            field="certificate_type",
        )

    @property
    def cli_name(self) -> str:
        """The word the CLI uses for this type."""
        return _CLI_NAMES[self]


_CLI_NAMES = {
    CertificateType.DIGITAL_SIGNATURE: "signing",
    CertificateType.KEY_AGREEMENT: "key-agreement",
    CertificateType.TLS: "tls",
}


def curve_for_suite(suite: SecuritySuite) -> str:
    """The curve of a suite's keys: ``"P-256"`` for suite 1, ``"P-384"`` for suite 2.

    Suite 0 is symmetric only, so asking it for a curve is a request the KMS cannot serve
    (:class:`~kms.errors.InputError`).
    """
    suite = SecuritySuite(suite)
    if suite is SecuritySuite.ECDH_ECDSA_AES_GCM_128_SHA_256:
        return "P-256"
    if suite is SecuritySuite.ECDH_ECDSA_AES_GCM_256_SHA_384:
        return "P-384"
    raise InputError("suite 0 has no public-key operations", field="security_suite")


@dataclass(frozen=True)
class Validity:
    """A certificate's validity period (RFC 5280 4.1.2.5).

    Both ends are normalised to aware UTC with whole seconds, since that is all X.509 can carry:
    the value stored here is the value the certificate will hold. A naive datetime, or a
    period that ends before it starts, is a caller bug (``ValueError``).
    """

    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        not_before = utc(self.not_before, "not_before")
        not_after = utc(self.not_after, "not_after")
        if not_after <= not_before:
            raise ValueError(f"not_after {not_after:%Y-%m-%dT%H:%M:%SZ} is not after not_before")
        object.__setattr__(self, "not_before", not_before)
        object.__setattr__(self, "not_after", not_after)


#: keyUsage per end-entity type, exactly (GX-NET ``GXx509Certificate``, notes section 6).
KEY_USAGE: dict[CertificateType, frozenset[str]] = {
    CertificateType.DIGITAL_SIGNATURE: frozenset({"digital_signature"}),
    CertificateType.KEY_AGREEMENT: frozenset({"key_agreement"}),
    CertificateType.TLS: frozenset({"digital_signature", "key_agreement"}),
}
#: keyUsage of a CA: keyCertSign is required; cRLSign is issued, as the KMS signs CRLs with the
#: same key; digitalSignature is tolerated on imported CAs (OCSP signing).
CA_KEY_USAGE = frozenset({"key_cert_sign", "crl_sign"})
CA_OPTIONAL_KEY_USAGE = frozenset({"crl_sign", "digital_signature"})
#: extendedKeyUsage of a TLS certificate; Gurux refuses any other purpose.
TLS_EXTENDED_KEY_USAGE = ("server_auth", "client_auth")
