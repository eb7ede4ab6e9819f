"""The KMS's checker of the Green Book certificate profile (DLMS UA 1000-2 Ed. 8.x, certificate
clauses as quoted in docs/dlms-security.md sections 6 and 11) on top of RFC 5280 section 4 (the
certificate and its standard extensions).

A certificate the KMS issues, imports or hands to a meter goes through :func:`check_certificate`
first. Each rule is one ``if`` that raises :class:`~kms.errors.CertificateProfileError` naming the
rule, in a fixed order, so the first broken rule is the one reported. The rules include every
check GX-NET's ``GXx509Certificate`` makes (notes section 6) and add RFC 5280's (exact keyUsage
sets, time encodings, serial number size, no unknown critical extension), so the KMS never issues
or accepts what a Gurux-based meter would refuse.

Exports (re-exported by :mod:`kms.pki.profiles`):

* :func:`check_certificate` -- every profile rule, then the issuer's signature.
* :func:`certificate_type_of` -- the DLMS certificate type its keyUsage spells, None for a CA.
* :func:`entity_of` -- server, client or CA, derived the way GX-NET derives it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from asn1crypto import core, x509  # type: ignore[import-untyped, unused-ignore]

from kms.dlms.security_setup import CertificateEntity
from kms.errors import CertificateProfileError, InvalidSignature
from kms.pki._asn1 import (
    HASH_OF_ALGORITHM,
    SIGNATURE_ALGORITHMS,
    name_text,
    time_encoding_is_canonical,
)
from kms.pki.ecdsa import hash_for_curve, public_key_curve, verify
from kms.pki.names import name_system_title
from kms.pki.rules import (
    CA_OPTIONAL_KEY_USAGE,
    KEY_USAGE,
    TLS_EXTENDED_KEY_USAGE,
    CertificateType,
)

__all__ = ["certificate_type_of", "check_certificate", "entity_of", "extensions_of"]

#: RFC 5280 names of the extensions, for messages.
_LABELS = {
    "key_usage": "keyUsage",
    "extended_key_usage": "extendedKeyUsage",
    "basic_constraints": "basicConstraints",
    "key_identifier": "subjectKeyIdentifier",
    "authority_key_identifier": "authorityKeyIdentifier",
    "certificate_policies": "certificatePolicies",
    "subject_alt_name": "subjectAltName",
    "name_constraints": "nameConstraints",
}
#: The extensions the KMS understands well enough to honour when marked critical.
_CRITICAL_ALLOWED = frozenset({"key_usage", "basic_constraints", "extended_key_usage"})
_BIT_LABELS = {
    "digital_signature": "digitalSignature",
    "key_agreement": "keyAgreement",
    "key_cert_sign": "keyCertSign",
    "crl_sign": "cRLSign",
    "server_auth": "serverAuth",
    "client_auth": "clientAuth",
}
_MAX_SERIAL_OCTETS = 20
_MIN_SERIAL_BITS = 64


class Extension(NamedTuple):
    """One decoded extension: its criticality and its parsed value."""

    critical: bool
    value: Any


def _label(name: str) -> str:
    return _LABELS.get(name, name)


def _bits(names: Any) -> str:
    return "{" + ", ".join(_BIT_LABELS.get(str(n), str(n)) for n in sorted(names)) + "}"


def _fail(rule: str) -> CertificateProfileError:
    return CertificateProfileError(rule)


def extensions_of(tbs: Any, field: str = "extensions") -> dict[str, Extension]:
    """The extensions of a TBSCertificate (or TBSCertList) by asn1crypto name (dotted OID when
    unknown). RFC 5280 4.2 forbids two instances of one extension; the second is refused here,
    since two keyUsage values would let each reader pick a different one."""
    found: dict[str, Extension] = {}
    listed = tbs[field]
    if isinstance(listed, core.Void):
        return found
    for extension in listed:
        name = extension["extn_id"].native
        if name in found:
            raise _fail(f"extension {_label(name)} appears twice")
        value = extension["extn_value"]
        # Only a known extension has a spec; asn1crypto would parse an unknown one as generic
        # BER, which the loaders never forced and which nothing here reads: keep its bytes.
        known = name in type(extension)._oid_specs
        found[name] = Extension(
            bool(extension["critical"].native), value.parsed if known else value.native
        )
    return found


def _is_ca(extensions: dict[str, Extension]) -> bool:
    constraints = extensions.get("basic_constraints")
    return constraints is not None and bool(constraints.value["ca"].native)


def _key_usage(extensions: dict[str, Extension]) -> frozenset[str] | None:
    usage = extensions.get("key_usage")
    return None if usage is None else frozenset(usage.value.native)


def _type_for_usage(usage: frozenset[str]) -> CertificateType | None:
    for certificate_type, expected in KEY_USAGE.items():
        if usage == expected:
            return certificate_type
    return None


def _self_signed(tbs: Any, extensions: dict[str, Extension]) -> bool:
    if tbs["issuer"] != tbs["subject"]:
        return False
    authority = extensions.get("authority_key_identifier")
    subject = extensions.get("key_identifier")
    if authority is None or subject is None:
        return True
    return bool(authority.value["key_identifier"].native == subject.value.native)


def _signing_curve(issuer: Any) -> str:
    try:
        return public_key_curve(issuer.public_key)
    except CertificateProfileError as error:
        raise _fail(f"issuer's {error.message}") from None


def certificate_type_of(certificate: x509.Certificate) -> CertificateType | None:
    """The DLMS certificate type spelled by ``certificate``'s keyUsage (exact sets, notes
    section 6): digitalSignature = signing, keyAgreement = key agreement, both = TLS.

    None for a CA (basicConstraints cA=TRUE), and for a keyUsage that is absent or matches no type
    (:func:`check_certificate` names what is wrong with it).
    """
    extensions = extensions_of(certificate["tbs_certificate"])
    usage = _key_usage(extensions)
    if _is_ca(extensions) or usage is None:
        return None
    return _type_for_usage(usage)


def entity_of(
    certificate: x509.Certificate, server_system_title: bytes | None = None
) -> CertificateEntity:
    """The ``certificate_entity`` GX-NET reports for ``certificate`` (security setup attribute 6):
    CA when basicConstraints says cA=TRUE, server when the subject CN is the server's system title,
    client otherwise. :attr:`~CertificateEntity.OTHER` is never derived.
    """
    extensions = extensions_of(certificate["tbs_certificate"])
    if _is_ca(extensions):
        return CertificateEntity.CERTIFICATION_AUTHORITY
    if server_system_title is not None:
        try:
            title = name_system_title(certificate.subject)
        except CertificateProfileError:
            return CertificateEntity.CLIENT
        if title == bytes(server_system_title):
            return CertificateEntity.SERVER
    return CertificateEntity.CLIENT


def check_certificate(
    certificate: x509.Certificate,
    *,
    issuer: x509.Certificate | None = None,
    certificate_type: CertificateType | None = None,
    system_title: bytes | None = None,
    is_ca: bool | None = None,
) -> None:
    """Raise :class:`~kms.errors.CertificateProfileError` naming the first profile rule that
    ``certificate`` breaks, then check its signature (:class:`~kms.errors.InvalidSignature`).

    ``certificate_type`` and ``system_title`` pin what an end entity must be; ``is_ca`` pins CA
    or end entity (by default basicConstraints decides, and a given ``certificate_type`` means an
    end entity). The signature is checked with ``issuer``'s key, or with the certificate's own
    key when no issuer is given and the certificate is self-signed by name and key identifiers
    (a root); otherwise it is left to path validation. A signing key that is not a point on its
    curve is an :class:`~kms.errors.InputError`.
    """
    if not isinstance(certificate, x509.Certificate):
        raise TypeError(f"expected an x509.Certificate, not {type(certificate).__name__}")
    if is_ca and certificate_type is not None:
        raise ValueError("a CA certificate has no certificate_type")
    tbs = certificate["tbs_certificate"]

    version = tbs["version"].native
    if version != "v3":
        raise _fail(f"certificate is X.509 {version}, not v3")

    outer, inner = certificate["signature_algorithm"], tbs["signature"]
    algorithm = outer["algorithm"].native
    if algorithm not in SIGNATURE_ALGORITHMS:
        raise _fail(
            f"signature algorithm {algorithm} is not ecdsa-with-SHA256 or ecdsa-with-SHA384"
        )
    if not isinstance(outer["parameters"], core.Void):
        raise _fail("signature algorithm parameters are present (RFC 5758 3.2: must be absent)")
    if inner.dump() != outer.dump():
        raise _fail("tbsCertificate signature differs from signatureAlgorithm (RFC 5280 4.1.1.2)")
    extensions = extensions_of(tbs)
    signer = issuer
    if signer is None and _self_signed(tbs, extensions):
        signer = certificate
    signer_curve = _signing_curve(signer) if signer is not None else None
    if signer_curve is not None and algorithm != _algorithm_for(signer_curve):
        raise _fail(
            f"signature algorithm {SIGNATURE_ALGORITHMS[algorithm]} does not follow the issuer's "
            f"{signer_curve} key ({SIGNATURE_ALGORITHMS[_algorithm_for(signer_curve)]})"
        )

    curve = public_key_curve(tbs["subject_public_key_info"])
    implied = signer_curve or ("P-384" if algorithm == "sha384_ecdsa" else "P-256")
    if curve == "P-384" and implied == "P-256":
        raise _fail("a P-384 certificate must be signed by a P-384 CA, not a P-256 one")

    serial = tbs["serial_number"]
    if serial.native <= 0:
        raise _fail("serial number is not positive")
    if len(serial.contents) > _MAX_SERIAL_OCTETS:
        raise _fail(f"serial number has {len(serial.contents)} octets, more than 20")
    if serial.native.bit_length() < _MIN_SERIAL_BITS:
        raise _fail("serial number is shorter than 64 bits")

    validity = tbs["validity"]
    for field, label in (("not_before", "notBefore"), ("not_after", "notAfter")):
        if not time_encoding_is_canonical(validity[field]):
            wants = "UTCTime" if validity[field].name == "general_time" else "GeneralizedTime"
            raise _fail(f"{label} in {validity[field].native.year} must be {wants} (RFC 5280)")
    if validity["not_after"].native <= validity["not_before"].native:
        raise _fail("validity notAfter is not after notBefore")

    for name, extension in extensions.items():
        if extension.critical and name not in _CRITICAL_ALLOWED:
            raise _fail(f"critical extension {_label(name)} is not allowed by the profile")

    ca = _is_ca(extensions) if is_ca is None and certificate_type is None else bool(is_ca)
    usage = _key_usage(extensions)
    if usage is None:
        raise _fail("keyUsage is missing")
    if not extensions["key_usage"].critical:
        raise _fail("keyUsage is not critical")
    resolved: CertificateType | None = None
    if ca:
        if "key_cert_sign" not in usage:
            raise _fail(f"CA keyUsage {_bits(usage)} lacks keyCertSign")
        if usage - {"key_cert_sign"} - CA_OPTIONAL_KEY_USAGE:
            raise _fail(f"CA keyUsage {_bits(usage)} has more than keyCertSign, cRLSign")
    else:
        derived = _type_for_usage(usage)
        if certificate_type is not None and derived is not certificate_type:
            expected = KEY_USAGE[certificate_type]
            raise _fail(
                f"keyUsage {_bits(usage)} is not the {certificate_type.cli_name} set "
                f"{_bits(expected)}"
            )
        if derived is None:
            raise _fail(f"keyUsage {_bits(usage)} matches no certificate type")
        resolved = derived

    purposes = extensions.get("extended_key_usage")
    if resolved is CertificateType.TLS:
        if purposes is None:
            raise _fail("extendedKeyUsage is missing (TLS certificates need serverAuth/clientAuth)")
        named = list(purposes.value.native)
        if not named or any(p not in TLS_EXTENDED_KEY_USAGE for p in named):
            raise _fail(f"extendedKeyUsage {_bits(named)} allows more than serverAuth, clientAuth")
    elif purposes is not None:
        raise _fail("extendedKeyUsage is only allowed on TLS certificates")

    if "key_identifier" not in extensions:
        raise _fail("subjectKeyIdentifier is missing")
    authority = extensions.get("authority_key_identifier")
    if authority is None:
        raise _fail("authorityKeyIdentifier is missing")
    authority_id = authority.value["key_identifier"].native
    if authority_id is None:
        raise _fail("authorityKeyIdentifier has no keyIdentifier")
    if issuer is not None:
        issuer_id = extensions_of(issuer["tbs_certificate"]).get("key_identifier")
        if issuer_id is None:
            raise _fail("issuer certificate has no subjectKeyIdentifier")
        if authority_id != issuer_id.value.native:
            raise _fail("authorityKeyIdentifier is not the issuer's subjectKeyIdentifier")

    constraints = extensions.get("basic_constraints")
    if ca:
        if constraints is None or not constraints.value["ca"].native:
            raise _fail("basicConstraints cA=TRUE is missing on a CA certificate")
        if not constraints.critical:
            raise _fail("basicConstraints is not critical on a CA certificate")
    else:
        if constraints is not None and constraints.value["ca"].native:
            raise _fail("end-entity certificate has basicConstraints cA=TRUE")
        title = name_system_title(tbs["subject"])
        if system_title is not None and title != bytes(system_title):
            raise _fail(
                f"subject CN {title.hex().upper()} is not the system title "
                f"{bytes(system_title).hex().upper()}"
            )

    if issuer is not None and tbs["issuer"] != issuer.subject:
        raise _fail(
            f"issuer name {name_text(tbs['issuer'])} is not the issuer certificate's subject "
            f"{name_text(issuer.subject)}"
        )

    if signer is not None:
        try:
            verify(
                signer.public_key,
                certificate["signature_value"].native,
                tbs.dump(),
                HASH_OF_ALGORITHM[algorithm],
            )
        except InvalidSignature:
            raise InvalidSignature(
                "certificate signature does not verify with the issuer's key"
            ) from None


def _algorithm_for(curve: str) -> str:
    return f"{hash_for_curve(curve)}_ecdsa"
