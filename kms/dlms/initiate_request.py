"""The xDLMS InitiateRequest: DLMS UA 1000-2 Ed. 8.x ("Green Book") / IEC 62056-5-3, clause 9
(the xDLMS-Initiate service carried in the AARQ's user-information, and its glo- form that
carries the dedicated key); see docs/dlms-security.md sections 2.4 and 8.3 (clause numbers not
checked against a copy of the standard).

A-XDR wire form (the conformance block is BER, as the Green Book defines it)::

    01                                  initiateRequest
    00 | 01 len dedicated-key           dedicated-key OCTET STRING OPTIONAL
    00 | 01 bb                          response-allowed BOOLEAN DEFAULT TRUE (00: the default)
    00 | 01 qq                          proposed-quality-of-service Integer8 OPTIONAL
    vv                                  proposed-dlms-version-number (6)
    5F 1F 04 00 cc cc cc                proposed-conformance: [APPLICATION 31] BIT STRING (24 bits)
    mm mm                               client-max-receive-pdu-size Unsigned16

The Green Book's glo-initiate-request vector (notes 8.3) is exactly this with a 16-byte dedicated
key, the defaults, version 6, conformance 0x007E1F and 0x04B0. The dedicated key travels only
inside a ciphered glo-initiate-request (tag 0x21); building a plain one with a key is allowed
here (the services never send it), and its ``repr`` never shows the key.

Exports: :data:`INITIATE_REQUEST`, :data:`DLMS_VERSION`, :class:`InitiateRequest`,
:func:`parse_initiate_request`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kms.dlms.axdr import Reader

__all__ = ["DLMS_VERSION", "INITIATE_REQUEST", "InitiateRequest", "parse_initiate_request"]

INITIATE_REQUEST = 0x01
DLMS_VERSION = 6
_CONFORMANCE_TAG = b"\x5f\x1f"
_CONFORMANCE_HEADER = _CONFORMANCE_TAG + b"\x04\x00"
#: The conformance block of the Green Book vector: get, set, action, selective access, block
#: transfer with get/set/action, multiple references, attribute0 (LN referencing).
DEFAULT_CONFORMANCE = 0x007E1F


@dataclass(frozen=True)
class InitiateRequest:
    """The fields of an InitiateRequest in wire order (``dedicated_key`` hidden from repr)."""

    dedicated_key: bytes | bytearray | None = field(default=None, repr=False)
    response_allowed: bool = True
    proposed_quality_of_service: int | None = None
    proposed_dlms_version_number: int = DLMS_VERSION
    proposed_conformance: int = DEFAULT_CONFORMANCE
    client_max_receive_pdu_size: int = 0xFFFF

    def __post_init__(self) -> None:
        if self.dedicated_key is not None:
            if not isinstance(self.dedicated_key, bytes | bytearray):
                raise TypeError("dedicated_key must be bytes")
            if len(self.dedicated_key) not in (16, 32):
                raise ValueError(
                    f"a dedicated key is 16 or 32 bytes, not {len(self.dedicated_key)}"
                )
        for name, value, top in (
            ("proposed_dlms_version_number", self.proposed_dlms_version_number, 0xFF),
            ("proposed_conformance", self.proposed_conformance, 0xFFFFFF),
            ("client_max_receive_pdu_size", self.client_max_receive_pdu_size, 0xFFFF),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise ValueError(f"{name} must be 0..{top:#x}, got {value!r}")
        qos = self.proposed_quality_of_service
        if qos is not None and not 0 <= qos <= 0xFF:
            raise ValueError(f"proposed_quality_of_service must be 0..255, got {qos}")

    def to_bytes(self) -> bytearray:
        """The encoded request, as a ``bytearray`` so that a caller holding a dedicated key in
        it can zeroise it after use."""
        out = bytearray([INITIATE_REQUEST])
        if self.dedicated_key is None:
            out.append(0)
        else:
            out += bytes([1, len(self.dedicated_key)])
            out += self.dedicated_key
        out += b"\x00" if self.response_allowed else b"\x01\x00"
        qos = self.proposed_quality_of_service
        out += b"\x00" if qos is None else bytes([1, qos])
        out.append(self.proposed_dlms_version_number)
        out += _CONFORMANCE_HEADER + self.proposed_conformance.to_bytes(3, "big")
        out += self.client_max_receive_pdu_size.to_bytes(2, "big")
        return out


def parse_initiate_request(data: bytes) -> InitiateRequest:
    """Parse an InitiateRequest strictly: :class:`~kms.errors.InputError` names field and
    offset for a wrong tag, a bad optional/boolean byte, a dedicated key that is not 16 or 32
    bytes, a wrong conformance header, and truncated or trailing input."""
    reader = Reader(data, source="InitiateRequest")
    reader.expect_byte(INITIATE_REQUEST, "tag", "initiateRequest")
    key: bytes | None = None
    if _optional(reader, "dedicated_key"):
        at = reader.offset
        length = reader.length("dedicated_key")
        if length not in (16, 32):
            raise reader.error(
                f"a dedicated key is 16 or 32 bytes, got {length}", "dedicated_key", at
            )
        key = reader.take(length, "dedicated_key")
    allowed = True
    if _optional(reader, "response_allowed"):
        at = reader.offset
        value = reader.u8("response_allowed")
        if value not in (0, 1):
            raise reader.error(f"a BOOLEAN is 00 or 01, got 0x{value:02x}", "response_allowed", at)
        allowed = bool(value)
    qos = (
        reader.u8("proposed_quality_of_service")
        if _optional(reader, "proposed_quality_of_service")
        else None
    )
    version = reader.u8("proposed_dlms_version_number")
    at = reader.offset
    if reader.take(4, "proposed_conformance") != _CONFORMANCE_HEADER:
        raise reader.error(
            "expected 5F 1F 04 00 (conformance, 24 bits)", "proposed_conformance", at
        )
    conformance = int.from_bytes(reader.take(3, "proposed_conformance"), "big")
    pdu_size = reader.u16("client_max_receive_pdu_size")
    reader.done()
    return InitiateRequest(key, allowed, qos, version, conformance, pdu_size)


def _optional(reader: Reader, field: str) -> bool:
    at = reader.offset
    flag = reader.u8(field)
    if flag not in (0, 1):
        raise reader.error(f"expected 00 (absent) or 01 (present), got 0x{flag:02x}", field, at)
    return flag == 1
