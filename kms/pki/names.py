"""Names and identifiers in certificates: RFC 5280 4.1.2.2 (serialNumber), 4.1.2.4 and 4.1.2.6
(issuer and subject Name), 4.2.1.1 and 4.2.1.2 (authority and subject key identifiers), with the
Green Book rule that an end entity's subject is ``CN=<system title as 16 hex characters>``
(docs/dlms-security.md section 6; GX-NET ``SystemTitleToSubject`` writes upper case).

Exports:

* :func:`system_title_name` / :func:`name_system_title` -- an 8-byte system title to its subject
  Name and back (certificates: upper-case hex only).
* :func:`name_system_title_any_case` -- the same for a CSR, where lower-case hex is tolerated.
* :func:`ca_name` -- a CA's Name (CN and optional O).
* :func:`key_identifier` -- RFC 5280 4.2.1.2 method 1 (SHA-1 of the subjectPublicKey bits).
* :func:`serial_number_from` -- a certificate serial number from token-random bytes.
"""

from __future__ import annotations

import hashlib
import re

from asn1crypto import keys, x509  # type: ignore[import-untyped, unused-ignore]

from kms.errors import CertificateProfileError

__all__ = [
    "SYSTEM_TITLE_LENGTH",
    "ca_name",
    "key_identifier",
    "name_system_title",
    "name_system_title_any_case",
    "serial_number_from",
    "system_title_name",
]

SYSTEM_TITLE_LENGTH = 8
_UPPER_HEX_TITLE = re.compile(r"[0-9A-F]{16}", re.ASCII)
_ANY_HEX_TITLE = re.compile(r"[0-9A-Fa-f]{16}", re.ASCII)
#: ub-common-name and ub-organization-name of RFC 5280 Appendix A.1.
_UB_NAME = 64
#: At most 19 random bytes, behind a 0x01 byte: 20 content octets, RFC 5280's ceiling.
_MAX_SERIAL_RANDOM = 19
_MIN_SERIAL_RANDOM = 9


def system_title_name(system_title: bytes) -> x509.Name:
    """The subject Name of an end entity: ``CN`` = the system title in 16 upper-case hex digits.

    Upper case because GX-NET writes it so and compares subjects as strings; one spelling per
    title also keeps "one certificate subject per meter" a byte comparison.
    """
    if not isinstance(system_title, bytes | bytearray):
        raise TypeError(f"system title must be bytes, not {type(system_title).__name__}")
    if len(system_title) != SYSTEM_TITLE_LENGTH:
        raise ValueError(f"system title must be 8 bytes, got {len(system_title)}")
    return x509.Name.build({"common_name": bytes(system_title).hex().upper()})


def _common_names(name: x509.Name) -> list[object]:
    if not isinstance(name, x509.Name):
        raise TypeError(f"expected an x509.Name, not {type(name).__name__}")
    return [
        attribute["value"].native
        for rdn in name.chosen
        for attribute in rdn
        if attribute["type"].native == "common_name"
    ]


def _system_title(name: x509.Name, pattern: re.Pattern[str], spelling: str) -> bytes:
    values = _common_names(name)
    if not values:
        raise CertificateProfileError("subject has no CN (the system title)")
    if len(values) > 1:
        raise CertificateProfileError(f"subject has {len(values)} CNs, expected one system title")
    value = values[0]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value) if isinstance(value, str) else type(value).__name__
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise CertificateProfileError(
            f"subject CN {shown} is not a system title ({spelling} hex characters)"
        )
    return bytes.fromhex(value)


def name_system_title(name: x509.Name) -> bytes:
    """The 8-byte system title in an end entity's subject CN (exactly 16 upper-case hex digits).

    A missing CN, several CNs or any other spelling raise
    :class:`~kms.errors.CertificateProfileError` quoting the CN. Other RDNs are allowed (the
    profile leaves them optional, notes section 6).
    """
    return _system_title(name, _UPPER_HEX_TITLE, "16 upper-case")


def name_system_title_any_case(name: x509.Name) -> bytes:
    """As :func:`name_system_title`, but lower-case hex is accepted too.

    For CSRs only: the KMS never copies a CSR's subject into a certificate (it writes
    :func:`system_title_name` of the title), so the case a meter used cannot leak into what
    the KMS issues, and refusing it would only strand a meter whose firmware writes lower case.
    """
    return _system_title(name, _ANY_HEX_TITLE, "16")


def ca_name(common_name: str, organization: str | None = None) -> x509.Name:
    """A CA's Name: ``O`` (when given) and ``CN``, as UTF8String (RFC 5280 4.1.2.6)."""
    fields = {"common_name": common_name}
    if organization is not None:
        fields["organization_name"] = organization
    for label, value in fields.items():
        if not isinstance(value, str):
            raise TypeError(f"{label} must be str, not {type(value).__name__}")
        if not value.strip() or len(value) > _UB_NAME:
            raise ValueError(f"{label} must be 1 to {_UB_NAME} characters, not blank")
    return x509.Name.build(fields)


def key_identifier(public_key: keys.PublicKeyInfo) -> bytes:
    """RFC 5280 4.2.1.2 method 1: the SHA-1 of the subjectPublicKey BIT STRING's value (the EC
    point, without tag, length or unused-bits octet).

    SHA-1 here names a key, it protects nothing, hence ``usedforsecurity=False``; pyca's
    ``SubjectKeyIdentifier.from_public_key`` computes the same bytes.
    """
    if not isinstance(public_key, keys.PublicKeyInfo):
        raise TypeError(f"expected a PublicKeyInfo, not {type(public_key).__name__}")
    bits = bytes(public_key["public_key"].contents)
    return hashlib.sha1(bits[1:], usedforsecurity=False).digest()


def serial_number_from(random_bytes: bytes) -> int:
    """A certificate serial number made of ``random_bytes`` (the caller draws 16 from the token).

    The value is ``0x01 || random_bytes[:19]`` read as an unsigned integer, so it is positive and
    never 0, its DER INTEGER has exactly ``len + 1`` content octets (at most 20, RFC 5280
    4.1.2.2) with no sign padding for a lax decoder to trip on, and it carries every random bit
    given (at least 72 for the 9-byte minimum, above the CA/Browser Forum's 64).
    """
    if not isinstance(random_bytes, bytes | bytearray):
        raise TypeError(f"random bytes must be bytes, not {type(random_bytes).__name__}")
    if len(random_bytes) < _MIN_SERIAL_RANDOM:
        raise ValueError(
            f"a serial number needs at least {_MIN_SERIAL_RANDOM} random bytes, "
            f"got {len(random_bytes)}"
        )
    chosen = bytes(random_bytes[:_MAX_SERIAL_RANDOM])
    return int.from_bytes(b"\x01" + chosen, "big")
