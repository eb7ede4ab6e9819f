"""Certificate revocation lists: RFC 5280 section 5 (CRL v2, the cRLNumber and
authorityKeyIdentifier CRL extensions of 5.2.1 and 5.2.3, the reasonCode entry extension of
5.3.1), signed with the Green Book's ECDSA algorithms (docs/dlms-security.md section 6).

A CRL here is issued by the same CA key that issued the certificates it lists (no indirect CRLs,
no delta CRLs), which is what the issuer's cRLSign key usage is for.

Exports:

* :class:`RevokedCertificate` -- one entry: serial number, date, optional reason (one of
  :data:`REASONS`).
* :func:`crl_tbs` -- the unsigned TBSCertList of a CA's CRL.
* :func:`sign_crl` -- a CertificateList from a TBSCertList and a :class:`Signer`.
* :func:`load_crl` -- DER or PEM (``X509 CRL``), decoded strictly.
* :func:`verify_crl` -- the CRL is v2, from ``issuer`` and signed by its key.
* :func:`revocation_check` -- an ``is_revoked`` callable for :func:`kms.pki.path.validate_path`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import crl, x509  # type: ignore[import-untyped, unused-ignore]

from kms.errors import CertificateProfileError, InputError, InvalidSignature
from kms.pki._asn1 import (
    HASH_OF_ALGORITHM,
    SIGNATURE_ALGORITHMS,
    decode_der,
    is_pem,
    pem_blocks,
    signature_algorithm,
    utc,
    x509_time,
)
from kms.pki.ecdsa import Signer, hash_for_curve, public_key_curve, sign, verify
from kms.pki.profile_check import extensions_of

__all__ = [
    "REASONS",
    "RevokedCertificate",
    "crl_tbs",
    "load_crl",
    "revocation_check",
    "sign_crl",
    "verify_crl",
]

#: asn1crypto's CRLReason names (RFC 5280 5.3.1); 7 is unused in the standard.
REASONS = frozenset(crl.CRLReason._map.values())
_MAX_INTEGER_OCTETS = 20
_LABELS = ("X509 CRL",)
_WHAT = "CRL"


def _fits_20_octets(value: int) -> bool:
    return value.bit_length() // 8 + 1 <= _MAX_INTEGER_OCTETS


@dataclass(frozen=True)
class RevokedCertificate:
    """One CRL entry. ``reason`` is an asn1crypto CRLReason name (``"key_compromise"``,
    ``"superseded"``...) or None; ``"unspecified"`` is accepted and written as no reason, as RFC
    5280 5.3.1 asks. The date is normalised to aware UTC, whole seconds."""

    serial_number: int
    revocation_date: datetime
    reason: str | None = None

    def __post_init__(self) -> None:
        serial = self.serial_number
        if isinstance(serial, bool) or not isinstance(serial, int):
            raise TypeError(f"serial number must be int, not {type(serial).__name__}")
        if serial <= 0 or not _fits_20_octets(serial):
            raise ValueError("serial number must be positive and fit 20 DER octets")
        if self.reason is not None and self.reason not in REASONS:
            raise ValueError(
                f"unknown CRL reason {self.reason!r}; expected one of {sorted(REASONS)}"
            )
        object.__setattr__(self, "revocation_date", utc(self.revocation_date, "revocation_date"))


def _issuer_facts(issuer: x509.Certificate) -> tuple[str, bytes]:
    if not isinstance(issuer, x509.Certificate):
        raise TypeError(f"issuer must be an x509.Certificate, not {type(issuer).__name__}")
    extensions = extensions_of(issuer["tbs_certificate"])
    usage = extensions.get("key_usage")
    if usage is None or "crl_sign" not in usage.value.native:
        raise CertificateProfileError("CRL issuer's keyUsage lacks cRLSign")
    identifier = extensions.get("key_identifier")
    if identifier is None:
        raise CertificateProfileError("CRL issuer certificate has no subjectKeyIdentifier")
    return public_key_curve(issuer.public_key), bytes(identifier.value.native)


def _entry(revoked: RevokedCertificate) -> dict[str, object]:
    entry: dict[str, object] = {
        "user_certificate": revoked.serial_number,
        "revocation_date": x509_time(revoked.revocation_date, "revocation_date"),
    }
    if revoked.reason not in (None, "unspecified"):
        entry["crl_entry_extensions"] = [
            {"extn_id": "crl_reason", "critical": False, "extn_value": revoked.reason}
        ]
    return entry


def crl_tbs(
    *,
    issuer: x509.Certificate,
    revoked: Sequence[RevokedCertificate],
    this_update: datetime,
    next_update: datetime,
    crl_number: int,
) -> crl.TbsCertList:
    """The TBSCertList of ``issuer``'s CRL: v2, the signature algorithm of the issuer's curve,
    the entries in the order given, and the non-critical authorityKeyIdentifier and cRLNumber
    extensions RFC 5280 5.2 requires of a conforming CRL issuer.

    An empty ``revoked`` omits revokedCertificates altogether (RFC 5280 5.1.2.6: an empty list
    MUST be absent). Caller bugs (``next_update`` not after ``this_update``, a duplicate serial, a
    negative or oversized ``crl_number``) raise ``ValueError``.
    """
    curve, identifier = _issuer_facts(issuer)
    this_update, next_update = utc(this_update, "this_update"), utc(next_update, "next_update")
    if next_update <= this_update:
        raise ValueError("next_update must be after this_update")
    if isinstance(crl_number, bool) or not isinstance(crl_number, int):
        raise TypeError(f"crl_number must be int, not {type(crl_number).__name__}")
    if crl_number < 0 or not _fits_20_octets(crl_number):
        raise ValueError("crl_number must be non-negative and fit 20 DER octets (RFC 5280 5.2.3)")
    entries = list(revoked)
    serials = [entry.serial_number for entry in entries]
    if len(set(serials)) != len(serials):
        raise ValueError("a serial number is listed twice")
    fields: dict[str, object] = {
        "version": "v2",
        "signature": signature_algorithm(hash_for_curve(curve)),
        "issuer": issuer.subject,
        "this_update": x509_time(this_update, "this_update"),
        "next_update": x509_time(next_update, "next_update"),
        "crl_extensions": [
            {
                "extn_id": "authority_key_identifier",
                "critical": False,
                "extn_value": {"key_identifier": identifier},
            },
            {"extn_id": "crl_number", "critical": False, "extn_value": crl_number},
        ],
    }
    if entries:
        fields["revoked_certificates"] = [_entry(entry) for entry in entries]
    return crl.TbsCertList(fields)


def sign_crl(tbs: crl.TbsCertList, signer: Signer) -> crl.CertificateList:
    """``tbs`` signed by ``signer``, as a freshly parsed CertificateList; ``ValueError`` when the
    TBSCertList names another algorithm than the signer's curve implies."""
    if not isinstance(tbs, crl.TbsCertList):
        raise TypeError(f"expected a crl.TbsCertList, not {type(tbs).__name__}")
    algorithm = signature_algorithm(hash_for_curve(signer.curve))
    if tbs["signature"].dump() != algorithm.dump():
        raise ValueError(f"TBSCertList's signature algorithm is not the {signer.curve} signer's")
    signed = crl.CertificateList(
        {
            "tbs_cert_list": tbs,
            "signature_algorithm": algorithm,
            "signature": sign(signer, bytes(tbs.dump())),
        }
    )
    return crl.CertificateList.load(signed.dump(), strict=True)


def load_crl(data: bytes, source: str | None = None) -> crl.CertificateList:
    """The CRL in ``data`` (DER, or PEM with one ``X509 CRL`` block), fully decoded."""
    if is_pem(data):
        blocks = pem_blocks(data, _LABELS, _WHAT, source)
        if len(blocks) != 1:
            raise InputError(f"{_WHAT}: {len(blocks)} PEM blocks, expected one", source=source)
        data = blocks[0]
    return decode_der(crl.CertificateList, data, _WHAT, source)


def verify_crl(certificate_list: crl.CertificateList, issuer: x509.Certificate) -> None:
    """Check that ``certificate_list`` is a v2 CRL of ``issuer``: its issuer name, its
    authorityKeyIdentifier and its ECDSA algorithm (:class:`~kms.errors.CertificateProfileError`),
    then its signature (:class:`~kms.errors.InvalidSignature`).
    """
    tbs = certificate_list["tbs_cert_list"]
    if tbs["version"].native != "v2":
        raise CertificateProfileError("CRL is not v2")
    curve, identifier = _issuer_facts(issuer)
    algorithm = certificate_list["signature_algorithm"]
    name = algorithm["algorithm"].native
    if name not in SIGNATURE_ALGORITHMS or algorithm.dump() != tbs["signature"].dump():
        raise CertificateProfileError(f"CRL signature algorithm {name} is not the issuer's")
    if HASH_OF_ALGORITHM[name] != hash_for_curve(curve):
        raise CertificateProfileError(
            f"CRL signature algorithm {SIGNATURE_ALGORITHMS[name]} does not follow the issuer's "
            f"{curve} key"
        )
    if tbs["issuer"] != issuer.subject:
        raise CertificateProfileError("CRL issuer name is not the issuer certificate's subject")
    authority = extensions_of(tbs, "crl_extensions").get("authority_key_identifier")
    if authority is not None and authority.value["key_identifier"].native != identifier:
        raise CertificateProfileError("CRL authorityKeyIdentifier is not the issuer's key")
    try:
        verify(
            issuer.public_key,
            certificate_list["signature"].native,
            tbs.dump(),
            hash_for_curve(curve),
        )
    except InvalidSignature:
        raise InvalidSignature("CRL signature does not verify with the issuer's key") from None


def revocation_check(
    certificate_lists: Sequence[crl.CertificateList],
) -> Callable[[x509.Certificate], bool]:
    """An ``is_revoked`` for :func:`kms.pki.path.validate_path` from already verified CRLs.

    A serial number is unique only per issuer (RFC 5280 4.1.2.2), so an entry revokes a
    certificate when both its serial number and its issuer name match the CRL's.
    """
    # Name.hashable is asn1crypto's RFC 5280 7.1 comparison form (case-folded, spaces squeezed).
    revoked: set[tuple[str, int]] = set()
    for certificate_list in certificate_lists:
        tbs = certificate_list["tbs_cert_list"]
        issuer = str(tbs["issuer"].hashable)
        for entry in tbs["revoked_certificates"].native or []:
            revoked.add((issuer, int(entry["user_certificate"])))

    def is_revoked(certificate: x509.Certificate) -> bool:
        return (str(certificate.issuer.hashable), int(certificate.serial_number)) in revoked

    return is_revoked
