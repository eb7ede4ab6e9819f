"""kms.dlms.key_transfer: golden bytes, oracles (gurux-dlms, dlms-cosem), strict parsing.

gurux-dlms and dlms-cosem are imported here only: the codec under test must not depend on them.
"""

from __future__ import annotations

import re
import time

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from dlms_cosem import cosem, enumerations
from dlms_cosem.protocol.xdlms.action import ActionRequestNormal
from gurux_dlms.enums import InterfaceType, Priority
from gurux_dlms.objects import GXDLMSSecuritySetup
from gurux_dlms.secure import GXDLMSSecureClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms.dlms.key_transfer import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    KeyId,
    KeyTransferEntry,
    KeyTransferRequest,
    SecurityActivateRequest,
    key_transfer_request,
    parse_key_transfer_request,
    parse_security_activate_request,
    security_activate_request,
)
from kms.dlms.obis import security_setup_logical_name
from kms.errors import InputError

LN = bytes.fromhex("00002B0000FF")
KEK_16 = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
KEK_32 = bytes(range(32))
KEY_16 = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
KEY_32 = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
# RFC 3394 4.1 and 4.6 (notes section 8.4).
WRAPPED_24 = bytes.fromhex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
WRAPPED_40 = bytes.fromhex(
    "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"
)

# Notes section 4: "Exact bytes produced by gurux-dlms", keys 0 and 2, RFC 3394 4.1 wrapped.
GOLDEN_KEY_TRANSFER = bytes.fromhex(
    "C3 01 C1 0040 00002B0000FF 02 01"
    "01 02"
    "02 02 16 00 09 18 1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"
    "02 02 16 02 09 18 1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"
)
GOLDEN_ACTIVATE = bytes.fromhex("C3 01 C1 0040 00002B0000FF 01 01 16 03")


def entry(key_id: int, wrapped: bytes = WRAPPED_24) -> KeyTransferEntry:
    return KeyTransferEntry(KeyId(key_id), wrapped)


# --- golden bytes -----------------------------------------------------------------------------


def test_golden_key_transfer() -> None:
    assert key_transfer_request(LN, [entry(0), entry(2)]) == GOLDEN_KEY_TRANSFER


def test_golden_security_activate() -> None:
    assert security_activate_request(LN, 3) == GOLDEN_ACTIVATE


def test_suite_2_shape() -> None:
    apdu = key_transfer_request(security_setup_logical_name(1), [entry(1, WRAPPED_40)], 0x45)
    assert apdu == bytes.fromhex("C3 01 45 0040 00002B0001FF 02 01 01 01 02 02 16 01 09 28") + (
        WRAPPED_40
    )


def test_master_key_alone() -> None:
    apdu = key_transfer_request(LN, [entry(3)])
    assert apdu == bytes.fromhex("C301C1004000002B0000FF0201 0101 0202 1603 0918") + WRAPPED_24


def test_default_invoke_id_and_priority() -> None:
    # invoke id 1, confirmed, high priority: what gurux-dlms sends.
    assert DEFAULT_INVOKE_ID_AND_PRIORITY == 0xC1


# --- round trips ------------------------------------------------------------------------------


def test_parse_golden_key_transfer() -> None:
    request = parse_key_transfer_request(GOLDEN_KEY_TRANSFER)
    assert request == KeyTransferRequest(0xC1, LN, (entry(0), entry(2)))
    assert request.entries[0].key_id is KeyId.GLOBAL_UNICAST_ENCRYPTION_KEY
    assert request.entries[1].key_id is KeyId.AUTHENTICATION_KEY
    assert request.to_bytes() == GOLDEN_KEY_TRANSFER


def test_parse_golden_security_activate() -> None:
    request = parse_security_activate_request(GOLDEN_ACTIVATE)
    assert request == SecurityActivateRequest(0xC1, LN, 3)
    assert request.to_bytes() == GOLDEN_ACTIVATE


def test_entry_repr_hides_the_wrapped_key() -> None:
    assert WRAPPED_24.hex() not in repr(entry(0)).lower()
    assert "1fa68b" not in repr(parse_key_transfer_request(GOLDEN_KEY_TRANSFER)).lower()


@st.composite
def requests(draw: st.DrawFn) -> KeyTransferRequest:
    """Valid requests: master key alone, or 1-3 of keys 0-2, all wrapped to one length."""
    invoke = draw(st.integers(0, 255).filter(lambda b: not b & 0x30))
    instance = draw(st.integers(0, 255))
    key_ids = draw(
        st.one_of(st.just([3]), st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True))
    )
    length = draw(st.sampled_from([24, 40]))
    entries = tuple(
        KeyTransferEntry(KeyId(key_id), draw(st.binary(min_size=length, max_size=length)))
        for key_id in key_ids
    )
    return KeyTransferRequest(invoke, security_setup_logical_name(instance), entries)


@given(requests())
def test_key_transfer_round_trip(request: KeyTransferRequest) -> None:
    apdu = key_transfer_request(
        request.logical_name, request.entries, request.invoke_id_and_priority
    )
    assert apdu == request.to_bytes()
    assert parse_key_transfer_request(apdu) == request


@given(st.integers(0, 255).filter(lambda b: not b & 0x30), st.integers(0, 255), st.integers(0, 255))
def test_security_activate_round_trip(invoke: int, instance: int, policy: int) -> None:
    ln = security_setup_logical_name(instance)
    apdu = security_activate_request(ln, policy, invoke)
    assert parse_security_activate_request(apdu) == SecurityActivateRequest(invoke, ln, policy)


# --- oracles ----------------------------------------------------------------------------------


def _gurux_client(invoke_id: int = 1, high_priority: bool = True) -> GXDLMSSecureClient:
    client = GXDLMSSecureClient(True, interfaceType=InterfaceType.PDU)
    client.settings.invokeId = invoke_id
    client.settings.priority = Priority.HIGH if high_priority else Priority.NORMAL
    return client


def _gurux_single_pdu(frames: list[bytes]) -> bytes:
    assert len(frames) == 1
    return bytes(frames[0])


@pytest.mark.parametrize(
    "key_ids", [[0], [1], [2], [0, 2], [2, 0], [0, 1], [0, 1, 2], [2, 1, 0]], ids=str
)
@pytest.mark.parametrize("instance", [0, 1])
def test_gurux_key_transfer_equals_ours(key_ids: list[int], instance: int) -> None:
    """gurux-dlms wraps with its own RFC 3394 code and frames the request its own way."""
    keys = {key_id: bytes([0x10 * (key_id + 1) + i for i in range(16)]) for key_id in key_ids}
    setup = GXDLMSSecuritySetup(f"0.0.43.0.{instance}.255")
    theirs = _gurux_single_pdu(
        setup.globalKeyTransfer(_gurux_client(), KEK_16, [(k, keys[k]) for k in key_ids])
    )
    ours = key_transfer_request(
        security_setup_logical_name(instance),
        [KeyTransferEntry(KeyId(k), aes_key_wrap(KEK_16, keys[k])) for k in key_ids],
    )
    assert ours == theirs


def test_gurux_reproduces_the_notes_golden_bytes() -> None:
    theirs = _gurux_single_pdu(
        GXDLMSSecuritySetup().globalKeyTransfer(_gurux_client(), KEK_16, [(0, KEY_16), (2, KEY_16)])
    )
    assert theirs == GOLDEN_KEY_TRANSFER


def test_gurux_invoke_id_and_priority_byte() -> None:
    client = _gurux_client(invoke_id=5, high_priority=False)
    theirs = _gurux_single_pdu(
        GXDLMSSecuritySetup().globalKeyTransfer(client, KEK_16, [(1, KEY_16)])
    )
    assert theirs == key_transfer_request(LN, [entry(1)], invoke_id_and_priority=0x45)


@pytest.mark.parametrize("policy", [0, 1, 2, 3])
def test_gurux_security_activate_equals_ours(policy: int) -> None:
    theirs = _gurux_single_pdu(GXDLMSSecuritySetup().activate(_gurux_client(), policy))
    assert theirs == security_activate_request(LN, policy)


def test_dlms_cosem_reads_our_envelope() -> None:
    apdu = key_transfer_request(security_setup_logical_name(2), [entry(0), entry(1), entry(2)])
    parsed = ActionRequestNormal.from_bytes(apdu)
    method = parsed.cosem_method
    assert method.interface == enumerations.CosemInterface.SECURITY_SETUP
    assert method.instance.to_bytes() == security_setup_logical_name(2)
    assert method.method == 2
    assert parsed.invoke_id_and_priority.invoke_id == 1
    assert parsed.invoke_id_and_priority.confirmed
    assert parsed.invoke_id_and_priority.high_priority
    assert parsed.data == apdu[13:]


def test_dlms_cosem_writes_our_envelope() -> None:
    ours = key_transfer_request(LN, [entry(0)])
    theirs = ActionRequestNormal(
        cosem_method=cosem.CosemMethod(
            enumerations.CosemInterface.SECURITY_SETUP, cosem.Obis(0, 0, 43, 0, 0, 255), 2
        ),
        data=ours[13:],
    ).to_bytes()
    # dlms-cosem's default invoke byte is id 0, confirmed, high priority.
    assert theirs == ours[:2] + b"\xc0" + ours[3:]


# --- builder: caller bugs are ValueError / TypeError ------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "key_transfer takes 1 to 4 entries, got 0"),
        ([entry(0), entry(1), entry(2), entry(0), entry(1)], "takes 1 to 4 entries, got 5"),
        ([entry(0), entry(0)], "key_id GLOBAL_UNICAST_ENCRYPTION_KEY appears twice"),
        ([entry(3), entry(0)], "MASTER_KEY must be alone in its key_transfer request"),
        ([entry(0), entry(3)], "MASTER_KEY must be alone"),
        ([entry(3), entry(3)], "key_id MASTER_KEY appears twice"),
        ([entry(0), entry(1, WRAPPED_40)], "key_wrapped values differ in length"),
    ],
)
def test_builder_rejects(entries: list[KeyTransferEntry], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        key_transfer_request(LN, entries)


@pytest.mark.parametrize("length", [0, 16, 23, 25, 32, 39, 41, 48])
def test_entry_rejects_wrapped_length(length: int) -> None:
    with pytest.raises(ValueError, match=f"must be 24 or 40 bytes .*got {length}$"):
        KeyTransferEntry(KeyId.AUTHENTICATION_KEY, bytes(length))


def test_entry_rejects_unknown_key_id() -> None:
    with pytest.raises(ValueError, match="4 is not a valid KeyId"):
        KeyTransferEntry(4, WRAPPED_24)  # type: ignore[arg-type]


def test_entry_coerces_int_key_id() -> None:
    assert KeyTransferEntry(2, WRAPPED_24).key_id is KeyId.AUTHENTICATION_KEY  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key_id", "wrapped"), [("0", WRAPPED_24), (True, WRAPPED_24), (0, WRAPPED_24.hex())]
)
def test_entry_rejects_types(key_id: object, wrapped: object) -> None:
    with pytest.raises(TypeError):
        KeyTransferEntry(key_id, wrapped)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"logical_name": bytes.fromhex("0100010800FF")}, ValueError, "1.0.1.8.0.255 is not a"),
        ({"logical_name": LN[:5]}, ValueError, "logical name must be 6 bytes, got 5"),
        ({"logical_name": "0.0.43.0.0.255"}, TypeError, "logical_name must be bytes"),
        ({"invoke_id_and_priority": 256}, ValueError, "must be 0..255, got 256"),
        ({"invoke_id_and_priority": -1}, ValueError, "must be 0..255, got -1"),
        ({"invoke_id_and_priority": 0xD1}, ValueError, "0xd1 sets reserved bits 4-5"),
        ({"invoke_id_and_priority": 0xE1}, ValueError, "0xe1 sets reserved bits 4-5"),
        ({"invoke_id_and_priority": True}, TypeError, "must be int"),
        ({"entries": ["x"]}, TypeError, "entries must be KeyTransferEntry"),
    ],
)
def test_builder_rejects_arguments(kwargs: dict[str, object], error: type, message: str) -> None:
    arguments: dict[str, object] = {"logical_name": LN, "entries": [entry(0)]}
    arguments.update(kwargs)
    with pytest.raises(error, match=re.escape(message)):
        key_transfer_request(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "error"), [(-1, ValueError), (256, ValueError), ("3", TypeError), (True, TypeError)]
)
def test_security_activate_rejects_policy(policy: object, error: type) -> None:
    with pytest.raises(error, match="security_policy must be"):
        security_activate_request(LN, policy)  # type: ignore[arg-type]


def test_security_activate_rejects_logical_name() -> None:
    with pytest.raises(ValueError, match="is not a security setup"):
        security_activate_request(bytes.fromhex("0000280000FF"), 3)


# --- parser: malformed input is InputError naming field and offset ----------------------------

G = GOLDEN_KEY_TRANSFER.hex()
H = G[:26]  # header through "parameters present": 13 bytes
W = WRAPPED_24.hex()
E0 = "0202 1600 0918" + W  # key_data[0] = {0, wrapped}, at offsets 15..44
RFC = "(RFC 3394 of a 16- or 32-byte key)"
KT = "key_data"


def _apdu(body: str) -> bytes:
    return bytes.fromhex(body.replace(" ", ""))


PARSER_ERRORS = [
    (b"", "tag", "truncated: need 1 byte, 0 left at offset 0"),
    (_apdu("c4" + G[2:]), "tag", "expected 0xc3 (action-request), got 0xc4 at offset 0"),
    (_apdu("cb" + G[2:]), "tag", "expected 0xc3 (action-request), got 0xcb at offset 0"),
    (_apdu("c302" + G[4:]), "action_request_type", "got 0x02 at offset 1"),
    (
        _apdu("c301f1" + G[6:]),
        "invoke_id_and_priority",
        "reserved bits 4-5 set in 0xf1 at offset 2",
    ),
    (_apdu("c301c10001" + G[10:]), "class_id", "expected class_id 64 (security setup), got 1"),
    (_apdu("c301c1004001000108"), "instance_id", "truncated: need 6 bytes, 4 left at offset 5"),
    (
        _apdu("c301c100400100010800ff" + G[22:]),
        "instance_id",
        "logical name 1.0.1.8.0.255 is not a security setup (0.0.43.0.e.255) at offset 5",
    ),
    (
        _apdu(G[:22] + "01" + G[24:]),
        "method_id",
        "expected 0x02 (key_transfer), got 0x01 at offset 11",
    ),
    (
        _apdu(G[:24] + "00"),
        "method_invocation_parameters",
        "expected 0x01 (parameters present), got 0x00 at offset 12",
    ),
    (_apdu(G[:24] + "02" + G[26:]), "method_invocation_parameters", "got 0x02 at offset 12"),
    (_apdu(H), KT, "truncated: need 1 byte, 0 left at offset 13"),
    (_apdu(H + "02" + G[28:]), KT, "expected tag 0x01 (array), got 0x02 at offset 13"),
    (_apdu(H + "0100"), KT, "key_transfer takes 1 to 4 entries, got 0 at offset 13"),
    (_apdu(H + "0105"), KT, "takes 1 to 4 entries, got 5 at offset 13"),
    (_apdu(H + "01820100"), KT, "takes 1 to 4 entries, got 256 at offset 13"),
    (_apdu(H + "018102"), KT, "non-minimal A-XDR length encoding 0x81 for 2 at offset 14"),
    (_apdu(H + "0180"), KT, "bad A-XDR length form 0x80 at offset 14"),
    (_apdu(H + "0101"), "key_data[0]", "truncated: need 1 byte, 0 left at offset 15"),
    (_apdu(H + "0101 01"), "key_data[0]", "expected tag 0x02 (structure), got 0x01 at offset 15"),
    (
        _apdu(H + "0101 0203 1600 0918" + W + "1600"),
        "key_data[0]",
        "key_data structure must have 2 fields, got 3 at offset 16",
    ),
    (
        _apdu(H + "0101 0202 1100 0918" + W),
        "key_data[0].key_id",
        "expected tag 0x16 (enum), got 0x11 at offset 17",
    ),
    (
        _apdu(H + "0101 0202 1604 0918" + W),
        "key_data[0].key_id",
        "unknown key_id 4; expected 0..3 at offset 17",
    ),
    (_apdu(H + "0101 0202 16ff 0918" + W), "key_data[0].key_id", "unknown key_id 255"),
    (
        _apdu(H + "0101 0202 1600 0a18" + W),
        "key_data[0].key_wrapped",
        "expected tag 0x09 (octet-string), got 0x0a at offset 19",
    ),
    (
        _apdu(H + "0101 0202 1600 0910" + W[:32]),
        "key_data[0].key_wrapped",
        f"key_wrapped must be 24 or 40 bytes {RFC}, got 16 at offset 19",
    ),
    (
        _apdu(H + "0101 0202 1600 0900"),
        "key_data[0].key_wrapped",
        f"must be 24 or 40 bytes {RFC}, got 0 at offset 19",
    ),
    (
        _apdu(H + "0101 0202 1600 0918" + W[:-2]),
        "key_data[0].key_wrapped",
        "truncated: need 24 bytes, 23 left at offset 21",
    ),
    (
        _apdu(H + "0101 0202 1600 09"),
        "key_data[0].key_wrapped",
        "truncated: need 1 byte, 0 left at offset 20",
    ),
    (
        _apdu(H + "0102" + E0 + "0202 1600 0918" + W),
        "key_data[1].key_id",
        "key_id GLOBAL_UNICAST_ENCRYPTION_KEY appears twice at offset 47",
    ),
    (
        _apdu(H + "0102 0202 1603 0918" + W + "0202 1600 0918" + W),
        "key_data[1].key_id",
        "MASTER_KEY must be alone in its key_transfer request at offset 47",
    ),
    (
        _apdu(H + "0102" + E0 + "0202 1603 0918" + W),
        "key_data[1].key_id",
        "MASTER_KEY must be alone in its key_transfer request at offset 47",
    ),
    (
        _apdu(H + "0102" + E0 + "0202 1601 0928" + WRAPPED_40.hex()),
        "key_data[1].key_wrapped",
        "key_wrapped is 40 bytes but key_data[0]'s is 24 (one request is one suite) at offset 49",
    ),
    (_apdu(H + "0102" + E0), "key_data[1]", "truncated: need 1 byte, 0 left at offset 45"),
    (GOLDEN_KEY_TRANSFER + b"\x00", "end", "1 trailing byte at offset 75"),
    (GOLDEN_ACTIVATE, "method_id", "expected 0x02 (key_transfer), got 0x01 at offset 11"),
]


@pytest.mark.parametrize(("apdu", "field", "message"), PARSER_ERRORS)
def test_parser_rejects(apdu: bytes, field: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_key_transfer_request(apdu)
    assert info.value.field == field
    assert info.value.source == "key_transfer action-request"
    assert str(info.value).startswith(f"key_transfer action-request, field {field!r}: ")
    assert message in str(info.value)


ACTIVATE_ERRORS = [
    (GOLDEN_ACTIVATE[:-1], "security_policy", "truncated: need 1 byte, 0 left at offset 14"),
    (
        GOLDEN_ACTIVATE[:-2] + b"\x11\x03",
        "security_policy",
        "expected tag 0x16 (enum), got 0x11 at offset 13",
    ),
    (GOLDEN_ACTIVATE + b"\x03", "end", "1 trailing byte at offset 15"),
    (GOLDEN_KEY_TRANSFER, "method_id", "expected 0x01 (security_activate), got 0x02"),
    (GOLDEN_ACTIVATE[:12] + b"\x00", "method_invocation_parameters", "got 0x00 at offset 12"),
    (
        GOLDEN_ACTIVATE[:5] + bytes.fromhex("0000280000FF") + GOLDEN_ACTIVATE[11:],
        "instance_id",
        "0.0.40.0.0.255 is not a security setup",
    ),
]


@pytest.mark.parametrize(("apdu", "field", "message"), ACTIVATE_ERRORS)
def test_security_activate_parser_rejects(apdu: bytes, field: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_security_activate_request(apdu)
    assert info.value.field == field
    assert info.value.source == "security_activate action-request"
    assert message in str(info.value)


def test_parser_error_carries_no_key_bytes() -> None:
    apdu = _apdu(G[:26] + "0102 0202 1600 0918" + W + "0202 1600 0918" + W)
    with pytest.raises(InputError) as info:
        parse_key_transfer_request(apdu)
    assert W not in str(info.value).lower()


# --- property tests: the parsers raise InputError and nothing else ----------------------------

PARSER_SETTINGS = settings(
    max_examples=10000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# A spread of valid requests to mutate: drawn once, so the 10,000 examples go to mutations.
SEEDS = [
    GOLDEN_KEY_TRANSFER,
    key_transfer_request(LN, [entry(3)]),
    key_transfer_request(LN, [entry(3, WRAPPED_40)]),
    key_transfer_request(LN, [entry(0), entry(1), entry(2)], 0x45),
    key_transfer_request(
        security_setup_logical_name(7), [entry(2, WRAPPED_40), entry(0, WRAPPED_40)]
    ),
]
# Up to 4 mutations, 3 bytes each: action, position, value (one binary draw is much faster than
# a list of tuples, which keeps each 10,000-example run to a few seconds).
MUTATIONS = st.binary(min_size=3, max_size=12)


def _mutate(apdu: bytes, mutations: bytes) -> bytes:
    """Flip a bit, set a byte, insert a byte, delete a byte or truncate, at some position."""
    buffer = bytearray(apdu)
    for i in range(0, len(mutations) - 2, 3):
        action, where, value = mutations[i] % 5, mutations[i + 1], mutations[i + 2]
        position = where % (len(buffer) + 1)
        if action == 0 and position < len(buffer):
            buffer[position] ^= 1 << (value % 8)
        elif action == 1 and position < len(buffer):
            buffer[position] = value
        elif action == 2:
            buffer.insert(position, value)
        elif action == 3 and position < len(buffer):
            del buffer[position]
        elif action == 4:
            del buffer[position:]
    return bytes(buffer)


def _parse_or_input_error(apdu: bytes) -> KeyTransferRequest | None:
    try:
        request = parse_key_transfer_request(apdu)
    except InputError:
        return None
    # Anything accepted is exactly what the builder would write.
    assert request.to_bytes() == apdu
    return request


@PARSER_SETTINGS
@given(st.binary(max_size=120))
def test_parser_on_arbitrary_bytes(apdu: bytes) -> None:
    _parse_or_input_error(apdu)


@PARSER_SETTINGS
@given(st.binary(max_size=60))
def test_parser_on_arbitrary_bodies(body: bytes) -> None:
    """A valid header, so the fuzzing reaches the parameters."""
    _parse_or_input_error(GOLDEN_KEY_TRANSFER[:13] + body)


@PARSER_SETTINGS
@given(st.sampled_from(SEEDS), MUTATIONS)
def test_parser_on_mutated_requests(seed: bytes, mutations: bytes) -> None:
    _parse_or_input_error(_mutate(seed, mutations))


@PARSER_SETTINGS
@given(MUTATIONS)
def test_security_activate_parser_on_mutated_requests(
    mutations: bytes,
) -> None:
    apdu = _mutate(GOLDEN_ACTIVATE, mutations)
    try:
        request = parse_security_activate_request(apdu)
    except InputError:
        return
    assert request.to_bytes() == apdu


def test_parser_is_fast() -> None:
    """A coarse guard that the 10,000-example runs above stay well inside their budget."""
    start = time.perf_counter()
    for _ in range(2000):
        parse_key_transfer_request(GOLDEN_KEY_TRANSFER)
    assert time.perf_counter() - start < 2.0
