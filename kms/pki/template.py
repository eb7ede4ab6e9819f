"""End-entity certificates of a batch by filling a template: RFC 5280 section 4.1 (Certificate,
TBSCertificate) in X.690 DER, for the certificates :func:`kms.pki.profiles.end_entity_tbs`
builds.

Why: building a TBSCertificate with asn1crypto, dumping it, wrapping the signature and parsing
the result back costs about a millisecond per certificate, several token signatures' worth.
Within one batch, the certificates of one issuer, certificate type and validity period differ in
four fields only, each of a fixed length:

* serialNumber -- :func:`kms.pki.names.serial_number_from` of 16 random bytes is always a
  positive INTEGER of 17 content octets (RFC 5280 4.1.2.2);
* the subject's CN -- the system title in 16 upper-case hex characters (Green Book profile);
* subjectPublicKeyInfo -- an uncompressed point on the issuer-compatible curve has one DER length
  per curve (RFC 5480 section 2);
* the subjectKeyIdentifier -- a 20-byte SHA-1 (RFC 5280 4.2.1.2 method 1).

So every enclosing length is fixed too, and the DER of any certificate of the group is the
group's first TBSCertificate, built by asn1crypto, with these four slots overwritten.
:class:`EndEntityTemplate` finds the slots by walking that DER and refuses any value whose
length or shape would not fit its slot, so a caller falls back to asn1crypto instead of getting
different bytes. :func:`certificate_der` wraps a TBSCertificate and a token's raw ``r || s`` into
the Certificate SEQUENCE (RFC 5280 4.1.1.2 and 4.1.1.3, RFC 5758 3.2) by hand, for the same
reason.

The bytes equal asn1crypto's (tests/pki/test_template.py proves it over random serials,
system titles and keys). A template checks nothing a profile check would: the caller runs the
full :func:`kms.pki.profiles.check_certificate` on each group's first certificate, whose TBS the
template is made from, and verifies every certificate's signature.

Exports:

* :class:`EndEntityTemplate` -- ``from_tbs`` (the group's first TBSCertificate) and ``tbs``.
* :func:`certificate_der` -- Certificate DER from a TBSCertificate and a raw signature.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kms.pki._asn1 import signature_algorithm
from kms.pki._der import DerError, read_header
from kms.pki.ecdsa import der_from_raw

__all__ = ["EndEntityTemplate", "certificate_der"]

_SEQUENCE, _SET, _INTEGER, _BIT_STRING, _OCTET_STRING, _OID = 0x30, 0x31, 0x02, 0x03, 0x04, 0x06
_VERSION, _EXTENSIONS = 0xA0, 0xA3
#: DER of the OIDs the walk looks for: id-at-commonName (2.5.4.3) and
#: id-ce-subjectKeyIdentifier (2.5.29.14).
_COMMON_NAME = bytes.fromhex("550403")
_SUBJECT_KEY_IDENTIFIER = bytes.fromhex("551d0e")
_TBS_FIELDS = (_VERSION, _INTEGER, _SEQUENCE, _SEQUENCE, _SEQUENCE, _SEQUENCE, _SEQUENCE)
_TITLE_LENGTH = 8
_KEY_IDENTIFIER_LENGTH = 20
#: DER AlgorithmIdentifier of each hash's ECDSA signature algorithm (parameters absent).
_ALGORITHMS = {name: bytes(signature_algorithm(name).dump()) for name in ("sha256", "sha384")}


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, TLV start, content start, content end) of each TLV in ``data[start:end]``."""
    out = []
    while start < end:
        tag, content, stop = read_header(data, start, end)
        out.append((tag, start, content, stop))
        start = stop
    return out


def _only(children: list[tuple[int, int, int, int]], tag: int, what: str) -> tuple[int, int]:
    if len(children) != 1 or children[0][0] != tag:
        raise ValueError(f"template: {what} is not one element")
    return children[0][2], children[0][3]


def _length(value: int) -> bytes:
    if value < 0x80:
        return bytes([value])
    octets = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


@dataclass(frozen=True)
class EndEntityTemplate:
    """The DER of one group's TBSCertificates, cut around its four variable slots.

    ``pieces`` are the fixed bytes before the serial, between serial and CN, between CN and
    subjectPublicKeyInfo, between that and the SKI, and after the SKI.
    """

    pieces: tuple[bytes, bytes, bytes, bytes, bytes]
    serial_length: int
    public_key_length: int
    #: The subjectPublicKeyInfo up to the point (algorithm, curve, BIT STRING header and its
    #: unused-bits octet): a key whose DER starts otherwise is not this group's.
    public_key_prefix: bytes

    @classmethod
    def from_tbs(
        cls, tbs_der: bytes, *, serial_number: int, system_title: bytes, public_key_der: bytes
    ) -> EndEntityTemplate:
        """The template of ``tbs_der``, an end-entity TBSCertificate of the profile made with
        these values. ``ValueError`` when its shape is not that (then there is no template and
        the caller builds every certificate with asn1crypto)."""
        tbs_der = bytes(tbs_der)
        try:
            tag, start, end = read_header(tbs_der, 0, len(tbs_der))
            fields = _children(tbs_der, start, end)
            if tag != _SEQUENCE or end != len(tbs_der) or len(fields) != 8:
                raise ValueError("template: not a TBSCertificate with version and extensions")
            if tuple(f[0] for f in fields[:7]) != _TBS_FIELDS or fields[7][0] != _EXTENSIONS:
                raise ValueError("template: TBSCertificate fields are not the profile's")
            serial = fields[1][2], fields[1][3]
            title = cls._common_name(tbs_der, fields[5])
            public_key = fields[6][1], fields[6][3]
            identifier = cls._key_identifier(tbs_der, fields[7])
        except DerError as error:
            raise ValueError(f"template: {error}") from None
        if not serial[1] <= title[0] < title[1] <= public_key[0] < public_key[1] <= identifier[0]:
            raise ValueError("template: slots out of order")
        pieces = (
            tbs_der[: serial[0]],
            tbs_der[serial[1] : title[0]],
            tbs_der[title[1] : public_key[0]],
            tbs_der[public_key[1] : identifier[0]],
            tbs_der[identifier[1] :],
        )
        public_key_der = bytes(public_key_der)
        bits_start = cls._point_offset(public_key_der)
        template = cls(
            pieces=pieces,
            serial_length=serial[1] - serial[0],
            public_key_length=public_key[1] - public_key[0],
            public_key_prefix=public_key_der[:bits_start],
        )
        if template.tbs(serial_number, system_title, public_key_der) != tbs_der:
            raise ValueError("template: the TBSCertificate was not made with these values")
        return template

    @staticmethod
    def _common_name(der: bytes, subject: tuple[int, int, int, int]) -> tuple[int, int]:
        rdn = _only(_children(der, subject[2], subject[3]), _SET, "subject")
        attribute = _only(_children(der, *rdn), _SEQUENCE, "subject RDN")
        kind, value = _children(der, *attribute)
        if kind[0] != _OID or der[kind[2] : kind[3]] != _COMMON_NAME:
            raise ValueError("template: subject is not a CN")
        if value[3] - value[2] != 2 * _TITLE_LENGTH:
            raise ValueError("template: subject CN is not a system title")
        return value[2], value[3]

    @staticmethod
    def _key_identifier(der: bytes, extensions: tuple[int, int, int, int]) -> tuple[int, int]:
        listed = _only(_children(der, extensions[2], extensions[3]), _SEQUENCE, "extensions")
        for _tag, _start, content, stop in _children(der, *listed):
            parts = _children(der, content, stop)
            if parts[0][0] != _OID or der[parts[0][2] : parts[0][3]] != _SUBJECT_KEY_IDENTIFIER:
                continue
            if parts[-1][0] != _OCTET_STRING:
                raise ValueError("template: SKI extnValue is not an OCTET STRING")
            value = _only(_children(der, parts[-1][2], parts[-1][3]), _OCTET_STRING, "SKI")
            if value[1] - value[0] != _KEY_IDENTIFIER_LENGTH:
                raise ValueError("template: SKI is not a SHA-1")
            return value
        raise ValueError("template: no subjectKeyIdentifier")

    @staticmethod
    def _point_offset(public_key_der: bytes) -> int:
        """Where the EC point starts in a SubjectPublicKeyInfo (after the BIT STRING's
        unused-bits octet): what RFC 5280 4.2.1.2 method 1 hashes."""
        try:
            tag, start, end = read_header(public_key_der, 0, len(public_key_der))
            parts = _children(public_key_der, start, end)
        except DerError as error:
            raise ValueError(f"template: subjectPublicKeyInfo: {error}") from None
        if tag != _SEQUENCE or len(parts) != 2 or parts[1][0] != _BIT_STRING:
            raise ValueError("template: not a subjectPublicKeyInfo")
        return parts[1][2] + 1

    def fits(self, serial_number: int, public_key_der: bytes) -> bool:
        """Whether a certificate with this serial and key is of this template's group: the
        serial's DER INTEGER and the key's DER have the slots' lengths and the key the group's
        algorithm and curve."""
        return (
            serial_number > 0
            and (serial_number.bit_length() >> 3) + 1 == self.serial_length
            and len(public_key_der) == self.public_key_length
            and public_key_der.startswith(self.public_key_prefix)
        )

    def tbs(self, serial_number: int, system_title: bytes, public_key_der: bytes) -> bytes:
        """The DER TBSCertificate with these values: byte for byte what
        :func:`kms.pki.profiles.end_entity_tbs` makes with them. ``ValueError`` when they do not
        fit (:meth:`fits`; a system title is 8 bytes)."""
        if not self.fits(serial_number, public_key_der) or len(system_title) != _TITLE_LENGTH:
            raise ValueError("template: serial number, system title or key does not fit")
        point = public_key_der[len(self.public_key_prefix) :]
        before, after_serial, after_title, after_key, after_identifier = self.pieces
        return b"".join(
            (
                before,
                serial_number.to_bytes(self.serial_length, "big"),
                after_serial,
                system_title.hex().upper().encode("ascii"),
                after_title,
                public_key_der,
                after_key,
                hashlib.sha1(point, usedforsecurity=False).digest(),
                after_identifier,
            )
        )


def certificate_der(tbs_der: bytes, hash_name: str, raw_signature: bytes) -> bytes:
    """The DER Certificate: SEQUENCE { tbsCertificate, signatureAlgorithm (ECDSA with
    ``hash_name``, parameters absent), signatureValue BIT STRING (the DER Ecdsa-Sig-Value of
    ``raw_signature``, no unused bits) }. What asn1crypto dumps for the same three values."""
    try:
        algorithm = _ALGORITHMS[hash_name]
    except KeyError:
        raise ValueError(f"no ECDSA signature algorithm for hash {hash_name!r}") from None
    signature = b"\x00" + der_from_raw(raw_signature)
    body = b"".join((tbs_der, algorithm, bytes([_BIT_STRING]), _length(len(signature)), signature))
    return bytes([_SEQUENCE]) + _length(len(body)) + body
