"""Security setup certificate methods: DLMS UA 1000-1 ("Blue Book") / IEC 62056-6-2, interface
class "Security setup" (class_id 64, version 1), methods 4 ``generate_key_pair``,
5 ``generate_certificate_request``, 6 ``import_certificate``, 7 ``export_certificate`` and
8 ``remove_certificate``, carried in an xDLMS action-request of DLMS UA 1000-2 Ed. 8.x
("Green Book") / IEC 62056-5-3; see docs/dlms-security.md sections 4 and 6 (clause numbers not
checked against a copy of the standards).

The parameters, after the envelope of :mod:`kms.dlms.action_request` (``C3 01 <invoke> 00 40
<logical name> <method> 01``), matched against gurux-dlms 1.0.203 in
``tests/interop/test_security_setup_interop.py``::

    4, 5  16 <certificate_type>                      enum: 0 digital signature, 1 key agreement,
                                                           2 TLS
    6     09 <A-XDR length> <X.509 DER>              a certificate is longer than 127 bytes, so
                                                     the length is 81 nn or 82 nnnn
    7, 8  02 02 16 00 02 03 16 <entity> 16 <type> 09 08 <system title>     by entity
          02 02 16 01 02 02 09 <len> <serial_number> 09 <len> <issuer>     by serial

The two octet strings of an identification by serial are carried as given. What goes in them is
not settled [U]: Gurux .NET (``ExportCertificateBySerial``, ``RemoveCertificateBySerial``) and
gurux-dlms for Python (``exportCertificateBySerial``) put the DER encoding of the serial number as
an INTEGER (``02 len value``) and the issuer's DER Name (a SEQUENCE they check parses as ASN.1);
gurux-dlms for Python's ``removeCertificateBySerial`` puts the UTF-8 *text* of both instead, and
Gurux .NET's server reads the serial of a remove as a raw big-endian number and the issuer as
ASCII. The KMS follows the DER reading (the service builds the bytes with :mod:`kms.pki`); both
must be non-empty here.

What the methods return (the CSR of method 5 and the certificate of method 7, each an
octet-string of DER) comes back in the action-response and is not parsed here.

Rules beyond the wire form, checked when building (``ValueError``) and parsing
(:class:`~kms.errors.InputError`): the certificate type of methods 4 and 5 is 0..2; the entity
and type of an identification are members of :class:`CertificateEntity` and
:class:`CertificateType`, its system title is 8 bytes; the certificate of method 6 is one DER
SEQUENCE (tag 30, a definite length that covers exactly the rest: the framing only, the content is
:mod:`kms.pki`'s to check).

Exports: :class:`CertificateType`, :class:`CertificateEntity`,
:class:`CertificateIdentificationType`, :class:`CertificateIdentificationByEntity`,
:class:`CertificateIdentificationBySerial`, :data:`CertificateIdentification`,
:class:`SecuritySetupRequest`, the ``METHOD_*`` constants, :func:`generate_key_pair_request`,
:func:`generate_certificate_request_request`, :func:`import_certificate_request`,
:func:`export_certificate_request`, :func:`remove_certificate_request` and a ``parse_*`` for each.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from kms.dlms.action_request import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    DEFAULT_SECURITY_SETUP,
    check_invoke_id_and_priority,
    check_security_setup_logical_name,
    read_security_setup_action_header,
    security_setup_action_request,
)
from kms.dlms.axdr import (
    DataType,
    Reader,
    encode_enum,
    encode_octet_string,
    encode_structure,
    enum_choices,
    enum_member,
)
from kms.dlms.system_title import SYSTEM_TITLE_LENGTH

__all__ = [
    "METHOD_EXPORT_CERTIFICATE",
    "METHOD_GENERATE_CERTIFICATE_REQUEST",
    "METHOD_GENERATE_KEY_PAIR",
    "METHOD_IMPORT_CERTIFICATE",
    "METHOD_REMOVE_CERTIFICATE",
    "CertificateEntity",
    "CertificateIdentification",
    "CertificateIdentificationByEntity",
    "CertificateIdentificationBySerial",
    "CertificateIdentificationType",
    "CertificateType",
    "SecuritySetupRequest",
    "export_certificate_request",
    "generate_certificate_request_request",
    "generate_key_pair_request",
    "import_certificate_request",
    "parse_export_certificate_request",
    "parse_generate_certificate_request_request",
    "parse_generate_key_pair_request",
    "parse_import_certificate_request",
    "parse_remove_certificate_request",
    "remove_certificate_request",
]

_E = TypeVar("_E", bound=enum.IntEnum)

METHOD_GENERATE_KEY_PAIR = 4
METHOD_GENERATE_CERTIFICATE_REQUEST = 5
METHOD_IMPORT_CERTIFICATE = 6
METHOD_EXPORT_CERTIFICATE = 7
METHOD_REMOVE_CERTIFICATE = 8

_DER_SEQUENCE = 0x30


class CertificateType(enum.IntEnum):
    """certificate_type (and key_pair_type of methods 4 and 5, which stop at TLS)."""

    DIGITAL_SIGNATURE = 0
    KEY_AGREEMENT = 1
    TLS = 2
    OTHER = 3


class CertificateEntity(enum.IntEnum):
    """certificate_entity: whose certificate it is."""

    SERVER = 0
    CLIENT = 1
    CERTIFICATION_AUTHORITY = 2
    OTHER = 3


class CertificateIdentificationType(enum.IntEnum):
    """certificate_identification_type: the CHOICE of a certificate_identification."""

    BY_ENTITY = 0
    BY_SERIAL = 1


@dataclass(frozen=True)
class CertificateIdentificationByEntity:
    """certificate_identification_by_entity: entity, type and the subject's system title."""

    certificate_entity: CertificateEntity
    certificate_type: CertificateType
    system_title: bytes

    def __post_init__(self) -> None:
        entity = enum_member(CertificateEntity, self.certificate_entity, "certificate_entity")
        object.__setattr__(self, "certificate_entity", entity)
        kind = enum_member(CertificateType, self.certificate_type, "certificate_type")
        object.__setattr__(self, "certificate_type", kind)
        title = _bytes(self.system_title, "system_title")
        if len(title) != SYSTEM_TITLE_LENGTH:
            raise ValueError(f"system_title must be 8 bytes, got {len(title)}")
        object.__setattr__(self, "system_title", title)

    def to_bytes(self) -> bytes:
        """``02 02 16 00 02 03 16 <entity> 16 <type> 09 08 <system title>``."""
        return encode_structure(
            encode_enum(CertificateIdentificationType.BY_ENTITY),
            encode_structure(
                encode_enum(self.certificate_entity),
                encode_enum(self.certificate_type),
                encode_octet_string(self.system_title),
            ),
        )


@dataclass(frozen=True)
class CertificateIdentificationBySerial:
    """certificate_identification_by_serial: the certificate's serial number and issuer, each as
    the octet string the meter expects (DER INTEGER and DER Name in Gurux's reading)."""

    serial_number: bytes
    issuer: bytes

    def __post_init__(self) -> None:
        for name in ("serial_number", "issuer"):
            value = _bytes(getattr(self, name), name)
            if not value:
                raise ValueError(f"{name} must not be empty")
            object.__setattr__(self, name, value)

    def to_bytes(self) -> bytes:
        """``02 02 16 01 02 02 09 <len> <serial_number> 09 <len> <issuer>``."""
        return encode_structure(
            encode_enum(CertificateIdentificationType.BY_SERIAL),
            encode_structure(
                encode_octet_string(self.serial_number), encode_octet_string(self.issuer)
            ),
        )


#: One alternative of certificate_identification.
CertificateIdentification: TypeAlias = (
    CertificateIdentificationByEntity | CertificateIdentificationBySerial
)

_IDENTIFICATION_TYPES = (CertificateIdentificationByEntity, CertificateIdentificationBySerial)
_METHOD_NAMES = {
    METHOD_GENERATE_KEY_PAIR: "generate_key_pair",
    METHOD_GENERATE_CERTIFICATE_REQUEST: "generate_certificate_request",
    METHOD_IMPORT_CERTIFICATE: "import_certificate",
    METHOD_EXPORT_CERTIFICATE: "export_certificate",
    METHOD_REMOVE_CERTIFICATE: "remove_certificate",
}


@dataclass(frozen=True)
class SecuritySetupRequest:
    """An action-request invoking one of methods 4..8; ``parameter`` is the method's argument:
    a :class:`CertificateType` (4, 5), the certificate's DER (6) or a
    :data:`CertificateIdentification` (7, 8)."""

    invoke_id_and_priority: int
    logical_name: bytes
    method_id: int
    parameter: CertificateType | bytes | CertificateIdentification

    def __post_init__(self) -> None:
        check_invoke_id_and_priority(self.invoke_id_and_priority)
        object.__setattr__(
            self, "logical_name", check_security_setup_logical_name(self.logical_name)
        )
        if isinstance(self.method_id, bool) or self.method_id not in _METHOD_NAMES:
            raise ValueError(f"method_id must be 4..8, got {self.method_id!r}")
        if self.method_id in (METHOD_GENERATE_KEY_PAIR, METHOD_GENERATE_CERTIFICATE_REQUEST):
            object.__setattr__(self, "parameter", _key_pair_type(self.parameter))
        elif self.method_id == METHOD_IMPORT_CERTIFICATE:
            object.__setattr__(self, "parameter", _certificate(self.parameter))
        elif not isinstance(self.parameter, _IDENTIFICATION_TYPES):
            raise TypeError(
                f"{_METHOD_NAMES[self.method_id]} takes a CertificateIdentification, "
                f"not {type(self.parameter).__name__}"
            )

    @property
    def method_name(self) -> str:
        """The Blue Book name of the method (``"import_certificate"``)."""
        return _METHOD_NAMES[self.method_id]

    def to_bytes(self) -> bytes:
        """The APDU."""
        parameter = self.parameter
        if isinstance(parameter, _IDENTIFICATION_TYPES):
            encoded = parameter.to_bytes()
        elif isinstance(parameter, CertificateType):
            encoded = encode_enum(parameter)
        else:
            encoded = encode_octet_string(parameter)
        return security_setup_action_request(
            self.invoke_id_and_priority, self.logical_name, self.method_id, encoded
        )


# --- builders -----------------------------------------------------------------------------------


def generate_key_pair_request(
    certificate_type: int,
    *,
    invoke: int = DEFAULT_INVOKE_ID_AND_PRIORITY,
    logical_name: bytes = DEFAULT_SECURITY_SETUP,
) -> bytes:
    """Method 4: have the meter generate the key pair of ``certificate_type`` (0..2)."""
    return _request(METHOD_GENERATE_KEY_PAIR, certificate_type, invoke, logical_name)


def generate_certificate_request_request(
    certificate_type: int,
    *,
    invoke: int = DEFAULT_INVOKE_ID_AND_PRIORITY,
    logical_name: bytes = DEFAULT_SECURITY_SETUP,
) -> bytes:
    """Method 5: ask the meter for a PKCS #10 CSR of its ``certificate_type`` (0..2) key pair."""
    return _request(METHOD_GENERATE_CERTIFICATE_REQUEST, certificate_type, invoke, logical_name)


def import_certificate_request(
    certificate_der: bytes,
    *,
    invoke: int = DEFAULT_INVOKE_ID_AND_PRIORITY,
    logical_name: bytes = DEFAULT_SECURITY_SETUP,
) -> bytes:
    """Method 6: give the meter an X.509 certificate (DER)."""
    return _request(METHOD_IMPORT_CERTIFICATE, certificate_der, invoke, logical_name)


def export_certificate_request(
    identification: CertificateIdentification,
    *,
    invoke: int = DEFAULT_INVOKE_ID_AND_PRIORITY,
    logical_name: bytes = DEFAULT_SECURITY_SETUP,
) -> bytes:
    """Method 7: ask the meter for the certificate ``identification`` names."""
    return _request(METHOD_EXPORT_CERTIFICATE, identification, invoke, logical_name)


def remove_certificate_request(
    identification: CertificateIdentification,
    *,
    invoke: int = DEFAULT_INVOKE_ID_AND_PRIORITY,
    logical_name: bytes = DEFAULT_SECURITY_SETUP,
) -> bytes:
    """Method 8: have the meter remove the certificate ``identification`` names."""
    return _request(METHOD_REMOVE_CERTIFICATE, identification, invoke, logical_name)


def _request(method_id: int, parameter: object, invoke: int, logical_name: bytes) -> bytes:
    return SecuritySetupRequest(invoke, logical_name, method_id, parameter).to_bytes()  # type: ignore[arg-type]


# --- parsers ------------------------------------------------------------------------------------


def parse_generate_key_pair_request(apdu: bytes) -> SecuritySetupRequest:
    """Parse a generate_key_pair action-request strictly (:class:`~kms.errors.InputError`)."""
    return _parse(apdu, METHOD_GENERATE_KEY_PAIR, _read_key_pair_type)


def parse_generate_certificate_request_request(apdu: bytes) -> SecuritySetupRequest:
    """Parse a generate_certificate_request action-request strictly."""
    return _parse(apdu, METHOD_GENERATE_CERTIFICATE_REQUEST, _read_key_pair_type)


def parse_import_certificate_request(apdu: bytes) -> SecuritySetupRequest:
    """Parse an import_certificate action-request strictly, DER framing included."""
    return _parse(apdu, METHOD_IMPORT_CERTIFICATE, _read_certificate)


def parse_export_certificate_request(apdu: bytes) -> SecuritySetupRequest:
    """Parse an export_certificate action-request strictly."""
    return _parse(apdu, METHOD_EXPORT_CERTIFICATE, _read_identification)


def parse_remove_certificate_request(apdu: bytes) -> SecuritySetupRequest:
    """Parse a remove_certificate action-request strictly."""
    return _parse(apdu, METHOD_REMOVE_CERTIFICATE, _read_identification)


def _parse(
    apdu: bytes,
    method_id: int,
    read: Callable[[Reader], CertificateType | bytes | CertificateIdentification],
) -> SecuritySetupRequest:
    name = _METHOD_NAMES[method_id]
    reader = Reader(apdu, source=f"{name} action-request")
    invoke, logical_name = read_security_setup_action_header(reader, method_id, name)
    parameter = read(reader)
    reader.done()
    return SecuritySetupRequest(invoke, logical_name, method_id, parameter)


def _read_key_pair_type(reader: Reader) -> CertificateType:
    at = reader.offset
    value = reader.enum("certificate_type")
    if value > CertificateType.TLS:
        raise reader.error(
            f"unknown key pair type {value}; expected 0 (digital_signature), "
            "1 (key_agreement) or 2 (tls)",
            "certificate_type",
            at,
        )
    return CertificateType(value)


def _read_certificate(reader: Reader) -> bytes:
    reader.expect_tag(DataType.OCTET_STRING, "certificate")
    length = reader.length("certificate")
    at = reader.offset
    certificate = reader.take(length, "certificate")
    problem = _der_framing_problem(certificate)
    if problem is not None:
        raise reader.error(problem, "certificate", at)
    return certificate


def _read_identification(reader: Reader) -> CertificateIdentification:
    _expect_structure(reader, 2, "certificate_identification")
    at = reader.offset
    choice = reader.enum("certificate_identification_type")
    if choice == CertificateIdentificationType.BY_ENTITY:
        _expect_structure(reader, 3, "certificate_identification_by_entity")
        entity = _read_enum(reader, CertificateEntity, "certificate_entity")
        kind = _read_enum(reader, CertificateType, "certificate_type")
        at = reader.offset
        title = reader.octet_string("system_title")
        if len(title) != SYSTEM_TITLE_LENGTH:
            raise reader.error(
                f"system_title must be 8 bytes, got {len(title)}", "system_title", at
            )
        return CertificateIdentificationByEntity(entity, kind, title)
    if choice == CertificateIdentificationType.BY_SERIAL:
        _expect_structure(reader, 2, "certificate_identification_by_serial")
        values = []
        for name in ("serial_number", "issuer"):
            at = reader.offset
            value = reader.octet_string(name)
            if not value:
                raise reader.error(f"{name} is empty", name, at)
            values.append(value)
        return CertificateIdentificationBySerial(*values)
    raise reader.error(
        f"unknown certificate_identification_type {choice}; expected 0 (by_entity) or "
        "1 (by_serial)",
        "certificate_identification_type",
        at,
    )


def _expect_structure(reader: Reader, fields: int, name: str) -> None:
    reader.expect_tag(DataType.STRUCTURE, name)
    at = reader.offset
    count = reader.length(name)
    if count != fields:
        raise reader.error(f"{name} must have {fields} fields, got {count}", name, at)


def _read_enum(reader: Reader, enum_type: type[_E], name: str) -> _E:
    at = reader.offset
    value = reader.enum(name)
    try:
        return enum_type(value)
    except ValueError:
        raise reader.error(
            f"unknown {name} {value}; expected {enum_choices(enum_type)}", name, at
        ) from None


# --- checks shared by the builders and the parsers ----------------------------------------------


def _key_pair_type(value: object) -> CertificateType:
    kind = enum_member(CertificateType, value, "certificate_type")
    if kind is CertificateType.OTHER:
        raise ValueError("certificate_type of a key pair must be 0..2, got 3 (other)")
    return kind


def _certificate(value: object) -> bytes:
    certificate = _bytes(value, "certificate_der")
    problem = _der_framing_problem(certificate)
    if problem is not None:
        raise ValueError(problem)
    return certificate


def _der_framing_problem(der: bytes) -> str | None:
    """Why ``der`` is not one DER SEQUENCE TLV filling it exactly, or None."""
    if not der:
        return "certificate is empty"
    if der[0] != _DER_SEQUENCE:
        return f"certificate must be a DER SEQUENCE (tag 0x30), got tag 0x{der[0]:02x}"
    if len(der) < 2:
        return "certificate DER is truncated in its length"
    first = der[1]
    if first < 0x80:
        length, header = first, 2
    else:
        size = first & 0x7F
        if size == 0 or size > 4 or len(der) < 2 + size:
            return f"certificate DER has a bad or truncated length (0x{first:02x})"
        length = int.from_bytes(der[2 : 2 + size], "big")
        header = 2 + size
        if length < 0x80 or der[2] == 0:
            return "certificate DER length is not minimal"
    if header + length != len(der):
        return f"certificate DER says {header + length} bytes, the octet-string holds {len(der)}"
    return None


def _bytes(value: object, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)
