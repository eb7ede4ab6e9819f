"""The action-request-normal envelope of a security setup method: DLMS UA 1000-2 Ed. 8.x ("Green
Book") / IEC 62056-5-3, the xDLMS ACTION service (Action-Request-Normal), addressed to interface
class "Security setup" (class_id 64) of DLMS UA 1000-1 ("Blue Book") / IEC 62056-6-2; see
docs/dlms-security.md section 4 (clause numbers not checked against a copy of the standards).

Every security setup method the KMS invokes travels in the same envelope::

    C3 01 <invoke-id-and-priority>       action-request, action-request-normal
    00 40 <logical name, 6 bytes> <m>    cosem-method-descriptor: class 64, instance, method m
    01 <parameters>                      method-invocation-parameters present, one COSEM Data

This module writes and reads that envelope once, for :mod:`kms.dlms.key_transfer` (methods 1 and
2), :mod:`kms.dlms.key_agreement` (method 3) and :mod:`kms.dlms.security_setup` (methods 4 to 8),
so that the rules on it are checked the same way everywhere:

* the instance is a security setup, ``0.0.43.0.e.255``;
* the reserved bits 4 and 5 of invoke-id-and-priority are zero;
* the parameters are present (every security setup method takes one).

Building with a bad value is a caller bug (``ValueError`` / ``TypeError``); reading one is an
:class:`~kms.errors.InputError` naming the field and the offset.

Exports: :data:`ACTION_REQUEST`, :data:`ACTION_REQUEST_NORMAL`, :data:`SECURITY_SETUP_CLASS_ID`,
:data:`DEFAULT_INVOKE_ID_AND_PRIORITY`, :data:`DEFAULT_SECURITY_SETUP`,
:func:`security_setup_action_request`, :func:`read_security_setup_action_header`,
:func:`check_invoke_id_and_priority`, :func:`check_security_setup_logical_name`,
:func:`action_response_return_data` (the meter's answer: ``C7 01 <invoke> <result> 01 00 <Data>``,
Action-Response-Normal with its return data, the form gurux-dlms writes).
"""

from __future__ import annotations

from kms.dlms.axdr import Reader
from kms.dlms.obis import (
    LOGICAL_NAME_LENGTH,
    format_logical_name,
    is_security_setup_logical_name,
    security_setup_logical_name,
)

__all__ = [
    "ACTION_REQUEST",
    "ACTION_REQUEST_NORMAL",
    "ACTION_RESPONSE",
    "DEFAULT_INVOKE_ID_AND_PRIORITY",
    "DEFAULT_SECURITY_SETUP",
    "SECURITY_SETUP_CLASS_ID",
    "action_response_return_data",
    "check_invoke_id_and_priority",
    "check_security_setup_logical_name",
    "read_security_setup_action_header",
    "security_setup_action_request",
]

ACTION_REQUEST = 0xC3
ACTION_REQUEST_NORMAL = 0x01
SECURITY_SETUP_CLASS_ID = 64
# Invoke id 1, confirmed service class (bit 6), high priority (bit 7): what Gurux sends.
DEFAULT_INVOKE_ID_AND_PRIORITY = 0xC1
#: ``0.0.43.0.0.255``, the security setup of the management association.
DEFAULT_SECURITY_SETUP = security_setup_logical_name(0)

ACTION_RESPONSE = 0xC7
_ACTION_RESPONSE_NORMAL = 0x01
_RETURN_DATA_PRESENT = 0x01
_GET_DATA_RESULT_DATA = 0x00
_RESERVED_INVOKE_BITS = 0x30
_PARAMETERS_PRESENT = 0x01


def security_setup_action_request(
    invoke_id_and_priority: int, logical_name: bytes, method_id: int, parameters: bytes
) -> bytes:
    """The action-request-normal invoking ``method_id`` of the security setup ``logical_name``
    with the already encoded COSEM Data ``parameters``."""
    check_invoke_id_and_priority(invoke_id_and_priority)
    logical_name = check_security_setup_logical_name(logical_name)
    if isinstance(method_id, bool) or not isinstance(method_id, int):
        raise TypeError(f"method_id must be int, not {type(method_id).__name__}")
    if not 1 <= method_id <= 0xFF:
        raise ValueError(f"method_id must be 1..255, got {method_id}")
    return (
        bytes([ACTION_REQUEST, ACTION_REQUEST_NORMAL, invoke_id_and_priority])
        + SECURITY_SETUP_CLASS_ID.to_bytes(2, "big")
        + logical_name
        + bytes([method_id, _PARAMETERS_PRESENT])
        + bytes(parameters)
    )


def read_security_setup_action_header(
    reader: Reader, method_id: int, method_name: str
) -> tuple[int, bytes]:
    """Read the envelope up to the method parameters; ``(invoke-id-and-priority, logical name)``.

    ``method_name`` says in a message what ``method_id`` is (``"key_transfer"``).
    """
    reader.expect_byte(ACTION_REQUEST, "tag", "action-request")
    reader.expect_byte(ACTION_REQUEST_NORMAL, "action_request_type", "action-request-normal")
    invoke_at = reader.offset
    invoke = reader.u8("invoke_id_and_priority")
    if invoke & _RESERVED_INVOKE_BITS:
        raise reader.error(
            f"reserved bits 4-5 set in 0x{invoke:02x}", "invoke_id_and_priority", invoke_at
        )
    class_at = reader.offset
    class_id = reader.u16("class_id")
    if class_id != SECURITY_SETUP_CLASS_ID:
        raise reader.error(
            f"expected class_id 64 (security setup), got {class_id}", "class_id", class_at
        )
    ln_at = reader.offset
    logical_name = reader.take(LOGICAL_NAME_LENGTH, "instance_id")
    if not is_security_setup_logical_name(logical_name):
        raise reader.error(
            f"logical name {format_logical_name(logical_name)} is not a security setup "
            "(0.0.43.0.e.255)",
            "instance_id",
            ln_at,
        )
    reader.expect_byte(method_id, "method_id", method_name)
    reader.expect_byte(_PARAMETERS_PRESENT, "method_invocation_parameters", "parameters present")
    return invoke, logical_name


def check_invoke_id_and_priority(invoke: int) -> None:
    """``ValueError`` / ``TypeError`` unless ``invoke`` is a byte with bits 4 and 5 clear."""
    if isinstance(invoke, bool) or not isinstance(invoke, int):
        raise TypeError(f"invoke_id_and_priority must be int, not {type(invoke).__name__}")
    if not 0 <= invoke <= 0xFF:
        raise ValueError(f"invoke_id_and_priority must be 0..255, got {invoke}")
    if invoke & _RESERVED_INVOKE_BITS:
        raise ValueError(f"invoke_id_and_priority 0x{invoke:02x} sets reserved bits 4-5")


def check_security_setup_logical_name(logical_name: bytes) -> bytes:
    """``logical_name`` as bytes; ``ValueError`` / ``TypeError`` unless it is 0.0.43.0.e.255."""
    if not isinstance(logical_name, bytes | bytearray | memoryview):
        raise TypeError(f"logical_name must be bytes, not {type(logical_name).__name__}")
    logical_name = bytes(logical_name)
    if not is_security_setup_logical_name(logical_name):
        raise ValueError(
            f"logical name {format_logical_name(logical_name)} is not a security setup "
            "(0.0.43.0.e.255)"
        )
    return logical_name


def action_response_return_data(apdu: bytes, *, source: str = "action-response") -> bytes:
    """The COSEM Data a successful Action-Response-Normal returns:
    ``C7 01 <invoke> 00 01 00 <Data>`` (action-result success, return parameters present, the
    data choice of Get-Data-Result). A refusal names its Action-Result code; a response without
    data, or anything else, is an :class:`~kms.errors.InputError` naming the field and offset."""
    reader = Reader(apdu, source=source)
    reader.expect_tag(ACTION_RESPONSE, "action-response tag")
    reader.expect_byte(_ACTION_RESPONSE_NORMAL, "action-response choice", "action-response-normal")
    reader.u8("invoke-id-and-priority")
    result = reader.u8("action-result")
    if result != 0:
        raise reader.error(
            f"the meter refused the action (Action-Result {result})", "action-result"
        )
    reader.expect_byte(_RETURN_DATA_PRESENT, "return-parameters", "present")
    reader.expect_byte(_GET_DATA_RESULT_DATA, "get-data-result", "data")
    return reader.take(reader.remaining, "data")
