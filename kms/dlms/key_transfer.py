"""Security setup key transfer and activation: DLMS UA 1000-1 ("Blue Book") / IEC 62056-6-2,
interface class "Security setup" (class_id 64), method 1 ``security_activate`` and method 2
``global_key_transfer`` (version 0) / ``key_transfer`` (version 1), carried in an xDLMS
action-request (DLMS UA 1000-2 Ed. 8.x "Green Book" / IEC 62056-5-3, the ACTION service) and
using the RFC 3394 key wrap of the Green Book's key transport (clause 9.2); see
docs/dlms-security.md sections 4 and 11 (clause numbers not checked against a copy of the
standards).

The bytes, matched against gurux-dlms 1.0.203 in ``tests/dlms/test_key_transfer.py``::

    C3 01 <invoke-id-and-priority>             action-request, action-request-normal
    00 40 <logical name, 6 bytes> 02           cosem-method-descriptor: class 64, instance, method 2
    01                                         method-invocation-parameters present
    01 <n>                                     array of n key_data
      02 02 16 <key_id> 09 <len> <key_wrapped> structure {enum, octet-string}

and ``security_activate`` is ``... 00 40 <ln> 01 01 16 <security_policy>``.

Every ``key_wrapped`` is RFC 3394 AES key wrap (IV A6A6A6A6A6A6A6A6) of the key under the meter's
*current* master key (KEK): 24 bytes for a 16-byte key (suites 0 and 1) and 40 bytes for a 32-byte
key (suite 2). This module only carries those bytes; the wrap happens in the token.

Rules beyond the wire form, enforced when building (``ValueError``: the KMS builds these, so a
violation is a bug) and when parsing (:class:`~kms.errors.InputError`), so that every request this
module accepts is one the KMS could have sent:

* 1 to 4 entries, no key_id twice (a strict meter refuses a repeated key_id);
* ``MASTER_KEY`` alone in its request. Which KEK unwraps the entries after a new master key in the
  same array is not settled (Gurux's ``invoke`` and ``applyKeys`` disagree; notes section 11), so
  the KMS never asks: the new KEK goes in one request, the keys under it in the next;
* every ``key_wrapped`` 24 or 40 bytes, all of one length (all keys of a setup share a suite);
* the instance is a security setup, ``0.0.43.0.e.255``, and the reserved bits 4 and 5 of
  invoke-id-and-priority are zero (the envelope of :mod:`kms.dlms.action_request`, shared with
  the other security setup methods).

``security_policy`` is carried as a bare enum byte: its meaning differs between version 0 (values
0..3) and version 1 (a bit map with bits 0 and 1 reserved) of the class, and the same bytes are
valid in one and invalid in the other (notes section 11). The service that knows the object's
version checks it.

Exports: :class:`KeyId`, :class:`KeyTransferEntry`, :class:`KeyTransferRequest`,
:class:`SecurityActivateRequest`, :func:`key_transfer_request`,
:func:`parse_key_transfer_request`, :func:`security_activate_request`,
:func:`parse_security_activate_request`, and the constants below.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from kms.dlms.action_request import (
    ACTION_REQUEST,
    ACTION_REQUEST_NORMAL,
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    SECURITY_SETUP_CLASS_ID,
    check_invoke_id_and_priority,
    check_security_setup_logical_name,
    read_security_setup_action_header,
    security_setup_action_request,
)
from kms.dlms.axdr import (
    DataType,
    Reader,
    encode_array,
    encode_enum,
    encode_octet_string,
    encode_structure,
)

__all__ = [
    "ACTION_REQUEST",
    "ACTION_REQUEST_NORMAL",
    "DEFAULT_INVOKE_ID_AND_PRIORITY",
    "MAX_KEY_TRANSFER_ENTRIES",
    "METHOD_KEY_TRANSFER",
    "METHOD_SECURITY_ACTIVATE",
    "SECURITY_SETUP_CLASS_ID",
    "WRAPPED_KEY_LENGTHS",
    "KeyArrayRules",
    "KeyId",
    "KeyTransferEntry",
    "KeyTransferRequest",
    "SecurityActivateRequest",
    "key_transfer_request",
    "parse_key_transfer_request",
    "parse_security_activate_request",
    "read_key_entries",
    "repeated_key_id",
    "security_activate_request",
]

METHOD_SECURITY_ACTIVATE = 1
METHOD_KEY_TRANSFER = 2
# RFC 3394 output of a 16-byte key (suites 0 and 1) and of a 32-byte key (suite 2).
WRAPPED_KEY_LENGTHS = (24, 40)
MAX_KEY_TRANSFER_ENTRIES = 4

_KEY_DATA_FIELDS = 2


class KeyId(enum.IntEnum):
    """``key_id`` of a key_transfer entry (Blue Book class 64, method 2)."""

    GLOBAL_UNICAST_ENCRYPTION_KEY = 0
    GLOBAL_BROADCAST_ENCRYPTION_KEY = 1
    AUTHENTICATION_KEY = 2
    MASTER_KEY = 3


@dataclass(frozen=True)
class KeyTransferEntry:
    """One ``key_data`` structure: which key, and that key wrapped under the current KEK.

    ``key_wrapped`` is left out of the ``repr``: it is ciphertext, but a log of wrapped keys is
    worth having only to someone who later gets the KEK.
    """

    key_id: KeyId
    key_wrapped: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.key_id, bool) or not isinstance(self.key_id, int):
            raise TypeError(f"key_id must be a KeyId, not {type(self.key_id).__name__}")
        object.__setattr__(self, "key_id", KeyId(self.key_id))
        if not isinstance(self.key_wrapped, bytes | bytearray | memoryview):
            raise TypeError(f"key_wrapped must be bytes, not {type(self.key_wrapped).__name__}")
        object.__setattr__(self, "key_wrapped", bytes(self.key_wrapped))
        if len(self.key_wrapped) not in WRAPPED_KEY_LENGTHS:
            raise ValueError(
                f"key_wrapped for {self.key_id.name} must be 24 or 40 bytes (RFC 3394 of a "
                f"16- or 32-byte key), got {len(self.key_wrapped)}"
            )


@dataclass(frozen=True)
class KeyTransferRequest:
    """An action-request-normal invoking key_transfer (method 2) on a security setup."""

    invoke_id_and_priority: int
    logical_name: bytes
    entries: tuple[KeyTransferEntry, ...]

    def __post_init__(self) -> None:
        check_invoke_id_and_priority(self.invoke_id_and_priority)
        object.__setattr__(
            self, "logical_name", check_security_setup_logical_name(self.logical_name)
        )
        entries = tuple(self.entries)
        object.__setattr__(self, "entries", entries)
        if not 1 <= len(entries) <= MAX_KEY_TRANSFER_ENTRIES:
            raise ValueError(
                f"key_transfer takes 1 to {MAX_KEY_TRANSFER_ENTRIES} entries, got {len(entries)}"
            )
        for entry in entries:
            if not isinstance(entry, KeyTransferEntry):
                raise TypeError(f"entries must be KeyTransferEntry, not {type(entry).__name__}")
        problem = _key_ids_problem([entry.key_id for entry in entries])
        if problem is not None:
            raise ValueError(problem)
        if len({len(entry.key_wrapped) for entry in entries}) > 1:
            raise ValueError("key_wrapped values differ in length (one request is one suite)")

    def to_bytes(self) -> bytes:
        """The APDU: :func:`key_transfer_request` of this request's fields."""
        parameters = encode_array(
            [
                encode_structure(encode_enum(entry.key_id), encode_octet_string(entry.key_wrapped))
                for entry in self.entries
            ]
        )
        return security_setup_action_request(
            self.invoke_id_and_priority, self.logical_name, METHOD_KEY_TRANSFER, parameters
        )


@dataclass(frozen=True)
class SecurityActivateRequest:
    """An action-request-normal invoking security_activate (method 1) on a security setup."""

    invoke_id_and_priority: int
    logical_name: bytes
    security_policy: int

    def __post_init__(self) -> None:
        check_invoke_id_and_priority(self.invoke_id_and_priority)
        object.__setattr__(
            self, "logical_name", check_security_setup_logical_name(self.logical_name)
        )
        policy = self.security_policy
        if isinstance(policy, bool) or not isinstance(policy, int):
            raise TypeError(f"security_policy must be int, not {type(policy).__name__}")
        if not 0 <= policy <= 0xFF:
            raise ValueError(f"security_policy must be 0..255, got {policy}")

    def to_bytes(self) -> bytes:
        """The APDU: :func:`security_activate_request` of this request's fields."""
        return security_setup_action_request(
            self.invoke_id_and_priority,
            self.logical_name,
            METHOD_SECURITY_ACTIVATE,
            encode_enum(self.security_policy),
        )


def key_transfer_request(
    logical_name: bytes,
    entries: Sequence[KeyTransferEntry],
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY,
) -> bytes:
    """The action-request that transfers ``entries`` to the security setup ``logical_name``.

    Raises ``ValueError`` or ``TypeError`` when the request breaks a rule in the module
    docstring: the KMS builds these, so a bad one is a bug, not bad input.
    """
    return KeyTransferRequest(invoke_id_and_priority, logical_name, tuple(entries)).to_bytes()


def security_activate_request(
    logical_name: bytes,
    security_policy: int,
    invoke_id_and_priority: int = DEFAULT_INVOKE_ID_AND_PRIORITY,
) -> bytes:
    """The action-request that activates ``security_policy`` (an enum byte) on ``logical_name``."""
    return SecurityActivateRequest(invoke_id_and_priority, logical_name, security_policy).to_bytes()


def parse_key_transfer_request(apdu: bytes) -> KeyTransferRequest:
    """Parse a key_transfer action-request strictly.

    Raises :class:`~kms.errors.InputError` naming the field and the byte offset for anything
    :func:`key_transfer_request` would not have produced: another APDU, class or method, a wrong
    data tag, a truncated or trailing byte, or a broken rule of the module docstring. It raises
    nothing else for any ``bytes`` input.
    """
    reader = Reader(apdu, source="key_transfer action-request")
    invoke, logical_name = read_security_setup_action_header(
        reader, METHOD_KEY_TRANSFER, "key_transfer"
    )
    pairs = read_key_entries(reader, _KEY_DATA_RULES)
    reader.done()
    entries = tuple(KeyTransferEntry(key_id, value) for key_id, value in pairs)
    return KeyTransferRequest(invoke, logical_name, entries)


def parse_security_activate_request(apdu: bytes) -> SecurityActivateRequest:
    """Parse a security_activate action-request strictly (the policy byte is not interpreted).

    Raises :class:`~kms.errors.InputError` naming the field and the byte offset, and nothing else
    for any ``bytes`` input.
    """
    reader = Reader(apdu, source="security_activate action-request")
    invoke, logical_name = read_security_setup_action_header(
        reader, METHOD_SECURITY_ACTIVATE, "security_activate"
    )
    security_policy = reader.enum("security_policy")
    reader.done()
    return SecurityActivateRequest(invoke, logical_name, security_policy)


# --- shared by the builder and the parser -----------------------------------------------------


@dataclass(frozen=True)
class KeyArrayRules:
    """How a method's ``array of structure {key_id: enum, <data_field>: octet-string}`` reads:
    its name and its method's in messages, 1 to ``max_entries`` entries, the key-id rule
    (``ids_problem``), and the octet-string's allowed ``lengths`` (``length_rule`` words them)."""

    array: str
    method: str
    max_entries: int
    data_field: str
    lengths: Collection[int]
    length_rule: str
    ids_problem: Callable[[Sequence[KeyId]], str | None]


def read_key_entries(reader: Reader, rules: KeyArrayRules) -> list[tuple[KeyId, bytes]]:
    """Read the key array that both key_transfer (method 2) and key_agreement (method 3) carry,
    with their shared rules: known key ids, and all octet-strings of one length, since one
    request is one suite. Errors name ``array[i].field`` and the offset."""
    array, data_field, lengths = rules.array, rules.data_field, rules.lengths
    array_at = reader.offset
    reader.expect_tag(DataType.ARRAY, array)
    count = reader.length(array)
    if not 1 <= count <= rules.max_entries:
        raise reader.error(
            f"{rules.method} takes 1 to {rules.max_entries} entries, got {count}", array, array_at
        )
    key_ids: list[KeyId] = []
    values: list[bytes] = []
    for index in range(count):
        name = f"{array}[{index}]"
        reader.expect_tag(DataType.STRUCTURE, name)
        fields_at = reader.offset
        fields = reader.length(name)
        if fields != _KEY_DATA_FIELDS:
            raise reader.error(
                f"{array} structure must have 2 fields, got {fields}", name, fields_at
            )
        key_id_at = reader.offset
        value = reader.enum(f"{name}.key_id")
        if value > KeyId.MASTER_KEY:
            raise reader.error(
                f"unknown key_id {value}; expected 0..3", f"{name}.key_id", key_id_at
            )
        key_ids.append(KeyId(value))
        problem = rules.ids_problem(key_ids)
        if problem is not None:
            raise reader.error(problem, f"{name}.key_id", key_id_at)
        data_at = reader.offset
        data = reader.octet_string(f"{name}.{data_field}")
        if len(data) not in lengths:
            raise reader.error(
                f"{data_field} must be {rules.length_rule}, got {len(data)}",
                f"{name}.{data_field}",
                data_at,
            )
        if values and len(data) != len(values[0]):
            raise reader.error(
                f"{data_field} is {len(data)} bytes but {array}[0]'s is {len(values[0])} "
                "(one request is one suite)",
                f"{name}.{data_field}",
                data_at,
            )
        values.append(data)
    return list(zip(key_ids, values, strict=True))


def repeated_key_id(key_ids: Sequence[KeyId]) -> str | None:
    """The problem of a key id listed twice, or None."""
    if len(set(key_ids)) != len(key_ids):
        repeated = next(key_id for key_id in key_ids if key_ids.count(key_id) > 1)
        return f"key_id {repeated.name} appears twice"
    return None


def _key_ids_problem(key_ids: Sequence[KeyId]) -> str | None:
    """What is wrong with this list of key ids, or None (the builder and the parser ask)."""
    repeated = repeated_key_id(key_ids)
    if repeated is not None:
        return repeated
    if KeyId.MASTER_KEY in key_ids and len(key_ids) > 1:
        return "MASTER_KEY must be alone in its key_transfer request"
    return None


_KEY_DATA_RULES = KeyArrayRules(
    array="key_data",
    method="key_transfer",
    max_entries=MAX_KEY_TRANSFER_ENTRIES,
    data_field="key_wrapped",
    lengths=WRAPPED_KEY_LENGTHS,
    length_rule="24 or 40 bytes (RFC 3394 of a 16- or 32-byte key)",
    ids_problem=_key_ids_problem,
)
