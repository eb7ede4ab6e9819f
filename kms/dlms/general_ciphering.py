"""The general-ciphering APDU (tag 0xDD): DLMS UA 1000-2 Ed. 8.x ("Green Book") / IEC 62056-5-3,
the xDLMS APDUs of clause 9 (General-Ciphering and its Key-Info); see docs/dlms-security.md
sections 2.3, 2.6 and 10 (clause numbers not checked against a copy of the standard).

The A-XDR wire form, every OCTET STRING being an A-XDR length (:mod:`kms.dlms.axdr`) and its
bytes::

    DD | transaction-id | originator-system-title | recipient-system-title | date-time
       | other-information | key-info OPTIONAL | ciphered-content

    key-info:         00 (absent) or 01 (present), then the Key-Info CHOICE:
      identified-key  00 | key-id (ENUMERATED, 1 byte)
      wrapped-key     01 | kek-id (ENUMERATED, 1 byte) | len | key-ciphered-data
      agreed-key      02 | len | key-parameters | len | key-ciphered-data
    ciphered-content: len | SC | IC(4) | payload

``len`` of ciphered-content counts the security header (SC, the security control byte, and IC,
the invocation counter) and the payload; the payload -- ciphertext || tag, APDU || tag or
ciphertext, depending on SC -- is carried without being interpreted, and so are the
transaction id, the date-time, the other-information and the key-info octet strings. The
compression bit of SC is allowed here (notes section 2.1). A system title is 8 bytes or empty.

Only the agreed-key form has an implementation to compare with: Gurux .NET and Java write
``01 02 01 kp <key-ciphered-data>`` with kp 01 (One-Pass Diffie-Hellman C(1e,1s)) or 02 (Static
Unified Model C(0e,2s), key-ciphered-data empty), and gurux-dlms (Python) reads it. The
identified-key and wrapped-key bytes follow from the ASN.1 of notes section 2.6; no
implementation or device capture confirms them [U].

Parsers are strict: a wrong tag, a truncated field, a non-minimal A-XDR length, a system title
that is neither 0 nor 8 bytes, a key-info presence byte other than 00/01, an unknown Key-Info
CHOICE tag, key-id or kek-id, a ciphered-content length that disagrees with the bytes that follow
(which covers trailing input) or is shorter than the 5-byte security header, and a reserved
suite raise :class:`~kms.errors.InputError` naming the field and the offset, and nothing else is
raised for any ``bytes`` input.

Exports: :data:`GENERAL_CIPHERING`, :class:`KeyInfoChoice`, :class:`KeyId`, :class:`KekId`,
:class:`IdentifiedKey`, :class:`WrappedKey`, :class:`AgreedKey`, :data:`KeyInfo`,
:class:`GeneralCipheringApdu`, :func:`parse_general_ciphering_apdu`,
:func:`general_ciphering_aad_fields`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from kms.dlms.axdr import Reader, encode_length, enum_member
from kms.dlms.security_control import (
    SECURITY_HEADER_LENGTH,
    SecurityControl,
    check_invocation_counter,
    read_security_header,
    security_header,
)
from kms.dlms.system_title import SYSTEM_TITLE_LENGTH

__all__ = [
    "GENERAL_CIPHERING",
    "AgreedKey",
    "GeneralCipheringApdu",
    "IdentifiedKey",
    "KekId",
    "KeyId",
    "KeyInfo",
    "KeyInfoChoice",
    "WrappedKey",
    "general_ciphering_aad_fields",
    "parse_general_ciphering_apdu",
]

GENERAL_CIPHERING = 0xDD

_ABSENT = 0x00
_PRESENT = 0x01


class KeyInfoChoice(enum.IntEnum):
    """The Key-Info CHOICE tags: which key protects the ciphered content."""

    IDENTIFIED_KEY = 0
    WRAPPED_KEY = 1
    AGREED_KEY = 2


class KeyId(enum.IntEnum):
    """Key-Id of an identified-key: a global key the recipient already holds.

    Not :class:`kms.dlms.key_transfer.KeyId`: only the two encryption keys can be named here.
    """

    GLOBAL_UNICAST_ENCRYPTION_KEY = 0
    GLOBAL_BROADCAST_ENCRYPTION_KEY = 1


class KekId(enum.IntEnum):
    """Kek-Id of a wrapped-key: the key-encrypting key (KEK) the content key is wrapped under."""

    MASTER_KEY = 0


@dataclass(frozen=True)
class IdentifiedKey:
    """identified-key [0]: the content is ciphered under a global key the recipient holds.

    GBREF (Table 21, notes section 2.6, secondary source) says this form is only usable between a
    client and a server; a third party uses wrapped-key or agreed-key.
    """

    choice: ClassVar[KeyInfoChoice] = KeyInfoChoice.IDENTIFIED_KEY

    key_id: KeyId

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", enum_member(KeyId, self.key_id, "key_id"))

    def to_bytes(self) -> bytes:
        """The Key-Info CHOICE: ``00 kk``."""
        return bytes([self.choice, self.key_id])


@dataclass(frozen=True)
class WrappedKey:
    """wrapped-key [1]: the content key travels wrapped under the master key (KEK).

    ``key_ciphered_data`` (RFC 3394 output under the KEK, in the notes' reading) is carried
    without a length check and left out of the ``repr``, as ``key_transfer`` does with wrapped
    keys.
    """

    choice: ClassVar[KeyInfoChoice] = KeyInfoChoice.WRAPPED_KEY

    kek_id: KekId
    key_ciphered_data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kek_id", enum_member(KekId, self.kek_id, "kek_id"))
        object.__setattr__(
            self, "key_ciphered_data", _bytes(self.key_ciphered_data, "key_ciphered_data")
        )

    def to_bytes(self) -> bytes:
        """The Key-Info CHOICE: ``01 kek-id len key-ciphered-data``."""
        return bytes([self.choice, self.kek_id]) + _octet_string(self.key_ciphered_data)


@dataclass(frozen=True)
class AgreedKey:
    """agreed-key [2]: the content key comes from a key agreement (suites 1 and 2).

    ``key_parameters`` names the scheme; Gurux writes one byte, 01 for One-Pass Diffie-Hellman
    C(1e,1s) (``key_ciphered_data`` is then the ephemeral public key x || y and its signature)
    and 02 for the Static Unified Model C(0e,2s) (``key_ciphered_data`` empty). Both are carried
    as octet strings without being interpreted.
    """

    choice: ClassVar[KeyInfoChoice] = KeyInfoChoice.AGREED_KEY

    key_parameters: bytes
    key_ciphered_data: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_parameters", _bytes(self.key_parameters, "key_parameters"))
        object.__setattr__(
            self, "key_ciphered_data", _bytes(self.key_ciphered_data, "key_ciphered_data")
        )

    def to_bytes(self) -> bytes:
        """The Key-Info CHOICE: ``02 len key-parameters len key-ciphered-data``."""
        return (
            bytes([self.choice])
            + _octet_string(self.key_parameters)
            + _octet_string(self.key_ciphered_data)
        )


#: One alternative of the Key-Info CHOICE.
KeyInfo: TypeAlias = IdentifiedKey | WrappedKey | AgreedKey

_KEY_INFO_TYPES = (IdentifiedKey, WrappedKey, AgreedKey)


@dataclass(frozen=True)
class GeneralCipheringApdu:
    """A general-ciphering APDU (0xDD), fields in wire order.

    ``key_info`` is ``None`` when the OPTIONAL key-info is absent. ``payload`` is everything
    after the security header, uninterpreted. Building one with a system title that is neither 0
    nor 8 bytes, a non-bytes field, a ``key_info`` of another type, an IC outside 0..2**32 - 1 is
    a caller bug (``ValueError`` / ``TypeError``).
    """

    transaction_id: bytes
    originator_system_title: bytes
    recipient_system_title: bytes
    date_time: bytes
    other_information: bytes
    key_info: KeyInfo | None
    security_control: SecurityControl
    invocation_counter: int
    payload: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("transaction_id", "date_time", "other_information"):
            object.__setattr__(self, name, _bytes(getattr(self, name), name))
        for name in ("originator_system_title", "recipient_system_title"):
            system_title = _bytes(getattr(self, name), name)
            if len(system_title) not in (0, SYSTEM_TITLE_LENGTH):
                raise ValueError(f"{name} must be 0 or 8 bytes, got {len(system_title)}")
            object.__setattr__(self, name, system_title)
        if self.key_info is not None and not isinstance(self.key_info, _KEY_INFO_TYPES):
            raise TypeError(
                "key_info must be IdentifiedKey, WrappedKey, AgreedKey or None, "
                f"not {type(self.key_info).__name__}"
            )
        if not isinstance(self.security_control, SecurityControl):
            raise TypeError(
                "security_control must be SecurityControl, "
                f"not {type(self.security_control).__name__}"
            )
        check_invocation_counter(self.invocation_counter)
        object.__setattr__(self, "payload", _bytes(self.payload, "payload"))

    def to_bytes(self) -> bytes:
        """DD | the five octet strings | key-info | len | SC | IC | payload."""
        key_info = (
            bytes([_ABSENT])
            if self.key_info is None
            else bytes([_PRESENT]) + self.key_info.to_bytes()
        )
        content = security_header(self.security_control, self.invocation_counter) + self.payload
        return (
            bytes([GENERAL_CIPHERING])
            + general_ciphering_aad_fields(self)
            + key_info
            + encode_length(len(content))
            + content
        )


def general_ciphering_aad_fields(apdu: GeneralCipheringApdu) -> bytes:
    """transaction-id || originator-system-title || recipient-system-title || date-time ||
    other-information, each in its A-XDR form (length, then value).

    This is the part of the general-ciphering AAD that follows SC || AK (AK: the authentication
    key) in the Green Book form as GBREF quotes its Table 38 (notes section 2.3, a secondary
    source): AAD = SC || AK || these fields, and || APDU in authentication-only mode. They are
    also exactly the bytes the APDU carries between its tag and key-info. The sources disagree
    [U, notes section 10]: the notes read Gurux .NET, Java and C as authenticating SC || AK
    only, while gurux-dlms (Python) adds these fields when the suite is not 0 and a recipient
    system title is set -- but writes its own IC, as 8 bytes, in place of the transaction id.
    Which form a meter expects is to be tested against that meter.
    """
    if not isinstance(apdu, GeneralCipheringApdu):
        raise TypeError(f"apdu must be GeneralCipheringApdu, not {type(apdu).__name__}")
    return b"".join(
        _octet_string(value)
        for value in (
            apdu.transaction_id,
            apdu.originator_system_title,
            apdu.recipient_system_title,
            apdu.date_time,
            apdu.other_information,
        )
    )


def parse_general_ciphering_apdu(data: bytes) -> GeneralCipheringApdu:
    """Parse a general-ciphering APDU strictly (module docstring)."""
    reader = Reader(data, source="general-ciphering APDU")
    reader.expect_byte(GENERAL_CIPHERING, "tag", "general-ciphering")
    transaction_id = _read_octet_string(reader, "transaction_id")
    originator_system_title = _read_system_title(reader, "originator_system_title")
    recipient_system_title = _read_system_title(reader, "recipient_system_title")
    date_time = _read_octet_string(reader, "date_time")
    other_information = _read_octet_string(reader, "other_information")
    key_info = _read_key_info(reader)
    length_at = reader.offset
    length = reader.length("ciphered_content")
    if length != reader.remaining:
        raise reader.error(
            f"ciphered-content length {length} disagrees with the {reader.remaining} byte(s) "
            "that follow",
            "ciphered_content",
            length_at,
        )
    if length < SECURITY_HEADER_LENGTH:
        raise reader.error(
            f"ciphered-content length {length} is too short for the 5-byte security header",
            "ciphered_content",
            length_at,
        )
    security_control, invocation_counter = read_security_header(reader)
    payload = reader.take(reader.remaining, "payload")
    reader.done()
    return GeneralCipheringApdu(
        transaction_id,
        originator_system_title,
        recipient_system_title,
        date_time,
        other_information,
        key_info,
        security_control,
        invocation_counter,
        payload,
    )


# --- reading ---------------------------------------------------------------------------------


def _read_octet_string(reader: Reader, name: str) -> bytes:
    return reader.take(reader.length(name), name)


def _read_system_title(reader: Reader, name: str) -> bytes:
    length_at = reader.offset
    length = reader.length(name)
    if length not in (0, SYSTEM_TITLE_LENGTH):
        raise reader.error(
            f"{name.replace('_', '-')} length must be 0 or 8, got {length}", name, length_at
        )
    return reader.take(length, name)


def _read_key_info(reader: Reader) -> KeyInfo | None:
    presence_at = reader.offset
    presence = reader.u8("key_info")
    if presence == _ABSENT:
        return None
    if presence != _PRESENT:
        raise reader.error(
            f"key-info presence byte must be 0x00 (absent) or 0x01 (present), got 0x{presence:02x}",
            "key_info",
            presence_at,
        )
    choice_at = reader.offset
    choice = reader.u8("key_info")
    if choice == KeyInfoChoice.IDENTIFIED_KEY:
        return IdentifiedKey(reader.enumerated(KeyId, "key_id"))
    if choice == KeyInfoChoice.WRAPPED_KEY:
        kek_id = reader.enumerated(KekId, "kek_id")
        return WrappedKey(kek_id, _read_octet_string(reader, "key_ciphered_data"))
    if choice == KeyInfoChoice.AGREED_KEY:
        key_parameters = _read_octet_string(reader, "key_parameters")
        return AgreedKey(key_parameters, _read_octet_string(reader, "key_ciphered_data"))
    raise reader.error(
        f"unknown key-info choice tag 0x{choice:02x}; expected 0 (identified-key), "
        "1 (wrapped-key) or 2 (agreed-key)",
        "key_info",
        choice_at,
    )


def _octet_string(value: bytes) -> bytes:
    return encode_length(len(value)) + value


def _bytes(value: bytes, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)
