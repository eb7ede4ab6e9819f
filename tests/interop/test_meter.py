"""The simulated meter proved on its own, before anyone trusts it to judge the KMS.

Requests here are written out byte by byte (or made by gurux-dlms), never with ``kms.dlms``, and
wrapped keys come from the RFC 3394 vectors or pyca's ``aes_key_wrap``.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from dlms_cosem import enumerations
from dlms_cosem.protocol.xdlms.action import ActionResponseNormal
from gurux_dlms.enums import InterfaceType
from gurux_dlms.objects import GXDLMSSecuritySetup
from gurux_dlms.secure import GXDLMSSecureClient

from tests.interop.meter import MANAGEMENT_SETUP, ActionResult, SimulatedMeter
from tests.utils import load_nist_vectors, load_vectors_from_file

ST = bytes.fromhex("4D4D4D0000BC614E")
SETUP_1 = bytes.fromhex("00002B0001FF")
KEY_LENGTH = {0: 16, 1: 16, 2: 32}
ROLE = {0: "GUEK", 1: "GBEK", 2: "GAK", 3: "KEK"}

RFC3394: list[dict[str, Any]] = load_vectors_from_file("rfc3394/section4.txt", load_nist_vectors)
RFC_4_1 = RFC3394[0]  # 128-bit key data, 128-bit KEK
RFC_4_3 = RFC3394[2]  # 128-bit key data, 256-bit KEK
RFC_4_6 = RFC3394[5]  # 256-bit key data, 256-bit KEK


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    return bytes([0x81, n])


def key_transfer(
    entries: list[tuple[int, bytes]], ln: bytes = MANAGEMENT_SETUP, invoke: int = 0xC1
) -> bytes:
    """A key_transfer action-request, written out: C3 01 invoke 0040 ln 02 01 array..."""
    body = b"".join(
        b"\x02\x02\x16" + bytes([key_id]) + b"\x09" + _length(len(wrapped)) + wrapped
        for key_id, wrapped in entries
    )
    return (
        bytes([0xC3, 0x01, invoke, 0x00, 0x40])
        + ln
        + b"\x02\x01\x01"
        + _length(len(entries))
        + body
    )


def security_activate(policy: int, ln: bytes = MANAGEMENT_SETUP) -> bytes:
    return bytes([0xC3, 0x01, 0xC1, 0x00, 0x40]) + ln + bytes([0x01, 0x01, 0x16, policy])


def response(result: int, invoke: int = 0xC1) -> bytes:
    return bytes([0xC7, 0x01, invoke, result, 0x00])


SUCCESS = response(ActionResult.SUCCESS)


def new_meter(suite: int, kek: bytes | None = None, **kwargs: Any) -> SimulatedMeter:
    return SimulatedMeter(
        ST, suite, kek if kek is not None else os.urandom(KEY_LENGTH[suite]), **kwargs
    )


# --- RFC 3394 vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("suite", [0, 1])
@pytest.mark.parametrize("key_id", [0, 1, 2, 3])
def test_rfc3394_4_1_in_suites_0_and_1(suite: int, key_id: int) -> None:
    meter = new_meter(suite, bytes.fromhex(RFC_4_1["k"]))
    assert meter.apply(key_transfer([(key_id, bytes.fromhex(RFC_4_1["c"]))])) == SUCCESS
    assert meter.keys()[ROLE[key_id]] == bytes.fromhex(RFC_4_1["p"])


@pytest.mark.parametrize("key_id", [0, 1, 2, 3])
def test_rfc3394_4_6_in_suite_2(key_id: int) -> None:
    meter = new_meter(2, bytes.fromhex(RFC_4_6["k"]))
    assert meter.apply(key_transfer([(key_id, bytes.fromhex(RFC_4_6["c"]))])) == SUCCESS
    assert meter.keys()[ROLE[key_id]] == bytes.fromhex(RFC_4_6["p"])


def test_rfc3394_4_3_is_refused_in_suite_2() -> None:
    """A 16-byte key under a 32-byte KEK is valid RFC 3394 but no suite's key (notes s.11)."""
    kek = bytes.fromhex(RFC_4_3["k"])
    meter = new_meter(2, kek)
    assert meter.apply(key_transfer([(0, bytes.fromhex(RFC_4_3["c"]))])) == response(
        ActionResult.OTHER_REASON
    )
    assert meter.keys() == {"KEK": kek}
    assert meter.last_refusal == "key_id 0: 24-byte wrapped key in suite 2"


@pytest.mark.parametrize("vector", [v for v in RFC3394 if v.get("fail")], ids=lambda v: v["c"][:8])
def test_rfc3394_fail_vectors_are_refused(vector: dict[str, Any]) -> None:
    kek = bytes.fromhex(vector["k"])
    suite = 0 if len(kek) == 16 else 2
    meter = new_meter(suite, kek)
    assert meter.apply(key_transfer([(0, bytes.fromhex(vector["c"]))])) == response(
        ActionResult.OTHER_REASON
    )
    assert meter.keys() == {"KEK": kek}


# --- keys wrapped with pyca -------------------------------------------------------------------


@pytest.mark.parametrize("suite", [0, 1, 2])
def test_global_keys_under_the_initial_kek(suite: int) -> None:
    kek = os.urandom(KEY_LENGTH[suite])
    keys = {key_id: os.urandom(KEY_LENGTH[suite]) for key_id in (0, 1, 2)}
    meter = new_meter(suite, kek)
    apdu = key_transfer([(k, aes_key_wrap(kek, v)) for k, v in keys.items()])
    assert meter.apply(apdu) == SUCCESS
    assert meter.keys() == {"KEK": kek, "GUEK": keys[0], "GBEK": keys[1], "GAK": keys[2]}
    assert meter.last_refusal is None


@pytest.mark.parametrize("suite", [0, 1, 2])
def test_master_key_then_global_keys_under_it(suite: int) -> None:
    """The KMS's order: the new KEK alone, then the global keys wrapped under the new KEK."""
    old_kek, new_kek = os.urandom(KEY_LENGTH[suite]), os.urandom(KEY_LENGTH[suite])
    guek = os.urandom(KEY_LENGTH[suite])
    meter = new_meter(suite, old_kek)
    assert meter.apply(key_transfer([(3, aes_key_wrap(old_kek, new_kek))])) == SUCCESS
    assert meter.keys() == {"KEK": new_kek}
    # Under the old KEK the next request fails, and changes nothing ...
    refused = meter.apply(key_transfer([(0, aes_key_wrap(old_kek, guek))]))
    assert refused == response(ActionResult.OTHER_REASON)
    assert meter.keys() == {"KEK": new_kek}
    # ... under the new one it succeeds.
    assert meter.apply(key_transfer([(0, aes_key_wrap(new_kek, guek))])) == SUCCESS
    assert meter.keys() == {"KEK": new_kek, "GUEK": guek}


def test_master_key_in_the_same_request_unwraps_the_rest_under_the_old_kek() -> None:
    old_kek, new_kek, guek = os.urandom(16), os.urandom(16), os.urandom(16)
    meter = new_meter(0, old_kek)
    apdu = key_transfer([(3, aes_key_wrap(old_kek, new_kek)), (0, aes_key_wrap(old_kek, guek))])
    assert meter.apply(apdu) == SUCCESS
    assert meter.keys() == {"KEK": new_kek, "GUEK": guek}


def test_check_values() -> None:
    """AES-ECB of a zero block under an all-zero key (FIPS-197 / well-known values)."""
    assert new_meter(0, bytes(16)).check_values() == {"KEK": "66E94B"}
    assert new_meter(2, bytes(32)).check_values() == {"KEK": "DC95C0"}
    kek = bytes(16)
    meter = new_meter(0, kek)
    meter.apply(key_transfer([(2, bytes.fromhex(RFC_4_1["c"]))]))  # wrong KEK: refused
    assert meter.check_values() == {"KEK": "66E94B"}


def test_check_values_follow_the_keys() -> None:
    kek = bytes.fromhex(RFC_4_1["k"])
    meter = new_meter(0, kek)
    meter.apply(key_transfer([(0, bytes.fromhex(RFC_4_1["c"]))]))
    values = meter.check_values()
    assert set(values) == {"KEK", "GUEK"}
    assert all(len(v) == 6 and v == v.upper() for v in values.values())
    assert values["KEK"] != values["GUEK"]


def test_security_setups_are_independent() -> None:
    kek = os.urandom(16)
    meter = new_meter(0, kek, setups=[MANAGEMENT_SETUP, SETUP_1])
    key = os.urandom(16)
    assert meter.apply(key_transfer([(2, aes_key_wrap(kek, key))], ln=SETUP_1)) == SUCCESS
    assert meter.keys(SETUP_1) == {"KEK": kek, "GAK": key}
    assert meter.keys(MANAGEMENT_SETUP) == {"KEK": kek}


def test_invoke_id_and_priority_is_echoed() -> None:
    kek = os.urandom(16)
    apdu = key_transfer([(0, aes_key_wrap(kek, os.urandom(16)))], invoke=0x45)
    assert new_meter(0, kek).apply(apdu) == response(0, invoke=0x45)


def test_dlms_cosem_reads_the_response() -> None:
    kek = os.urandom(16)
    reply = new_meter(0, kek).apply(key_transfer([(0, aes_key_wrap(kek, os.urandom(16)))]))
    parsed = ActionResponseNormal.from_bytes(reply)
    assert parsed.status == enumerations.ActionResultStatus.SUCCESS


def test_gurux_built_request_is_accepted() -> None:
    """gurux-dlms wraps with its own RFC 3394 code (16-byte KEK only) and frames the request."""
    kek = bytes.fromhex(RFC_4_1["k"])
    keys = [(0, os.urandom(16)), (1, os.urandom(16)), (2, os.urandom(16))]
    client = GXDLMSSecureClient(True, interfaceType=InterfaceType.PDU)
    (frame,) = GXDLMSSecuritySetup().globalKeyTransfer(client, kek, keys)
    meter = new_meter(0, kek)
    assert meter.apply(bytes(frame)) == SUCCESS
    assert meter.keys() == {"KEK": kek, "GUEK": keys[0][1], "GBEK": keys[1][1], "GAK": keys[2][1]}


# --- refusals: all-or-nothing -----------------------------------------------------------------


@pytest.mark.parametrize("suite", [0, 1, 2])
def test_tampered_wrap_refuses_the_whole_request(suite: int) -> None:
    kek = os.urandom(KEY_LENGTH[suite])
    good = aes_key_wrap(kek, os.urandom(KEY_LENGTH[suite]))
    bad = bytearray(aes_key_wrap(kek, os.urandom(KEY_LENGTH[suite])))
    bad[-1] ^= 0x01
    meter = new_meter(suite, kek)
    assert meter.apply(key_transfer([(0, good), (2, bytes(bad))])) == response(
        ActionResult.OTHER_REASON
    )
    assert meter.keys() == {"KEK": kek}
    assert meter.last_refusal == "key_id 2: unwrap failed"


def test_tampered_master_key_keeps_the_old_kek() -> None:
    kek = os.urandom(16)
    bad = bytearray(aes_key_wrap(kek, os.urandom(16)))
    bad[0] ^= 0x80
    meter = new_meter(0, kek)
    assert meter.apply(key_transfer([(3, bytes(bad))])) == response(ActionResult.OTHER_REASON)
    assert meter.keys() == {"KEK": kek}


@pytest.mark.parametrize(("suite", "key_length"), [(0, 32), (1, 32), (2, 16), (0, 24), (2, 24)])
def test_wrong_key_length_for_the_suite(suite: int, key_length: int) -> None:
    kek = os.urandom(KEY_LENGTH[suite])
    meter = new_meter(suite, kek)
    reply = meter.apply(key_transfer([(0, aes_key_wrap(kek, os.urandom(key_length)))]))
    assert reply == response(ActionResult.OTHER_REASON)
    assert meter.keys() == {"KEK": kek}
    assert meter.last_refusal is not None
    assert "wrapped key in suite" in meter.last_refusal


def test_repeated_key_id() -> None:
    kek = os.urandom(16)
    wrapped = [aes_key_wrap(kek, os.urandom(16)) for _ in range(2)]
    meter = new_meter(0, kek)
    assert meter.apply(key_transfer([(0, wrapped[0]), (0, wrapped[1])])) == response(
        ActionResult.OTHER_REASON
    )
    assert meter.keys() == {"KEK": kek}
    assert meter.last_refusal == "key_id 0 repeated"


def test_unknown_key_id() -> None:
    kek = os.urandom(16)
    meter = new_meter(0, kek)
    reply = meter.apply(key_transfer([(4, aes_key_wrap(kek, os.urandom(16)))]))
    assert reply == response(ActionResult.OTHER_REASON)
    assert meter.keys() == {"KEK": kek}


def test_empty_array() -> None:
    meter = new_meter(0)
    assert meter.apply(key_transfer([])) == response(ActionResult.OTHER_REASON)


def _valid(kek: bytes) -> bytes:
    return key_transfer([(0, aes_key_wrap(kek, bytes(16)))])


@pytest.mark.parametrize(
    ("mutate", "result"),
    [
        (lambda a: a + b"\x00", ActionResult.TYPE_UNMATCHED),  # trailing byte
        (lambda a: a[:-1], ActionResult.TYPE_UNMATCHED),  # truncated key_wrapped
        (lambda a: a[:13] + b"\x02" + a[14:], ActionResult.TYPE_UNMATCHED),  # not an array
        (lambda a: a[:15] + b"\x01" + a[16:], ActionResult.TYPE_UNMATCHED),  # not a structure
        (lambda a: a[:16] + b"\x03" + a[17:], ActionResult.TYPE_UNMATCHED),  # 3 fields
        (lambda a: a[:17] + b"\x11" + a[18:], ActionResult.TYPE_UNMATCHED),  # key_id not enum
        (lambda a: a[:19] + b"\x0a" + a[20:], ActionResult.TYPE_UNMATCHED),  # not octet-string
        (lambda a: a[:12] + b"\x00", ActionResult.TYPE_UNMATCHED),  # no parameters
        (lambda a: a[:12] + b"\x02" + a[13:], ActionResult.TYPE_UNMATCHED),  # bad flag
        (lambda a: a[:10], ActionResult.TYPE_UNMATCHED),  # truncated descriptor
        (lambda a: a[:5] + bytes.fromhex("00002B0005FF") + a[11:], ActionResult.OBJECT_UNDEFINED),
        (lambda a: a[:3] + b"\x00\x01" + a[5:], ActionResult.OBJECT_CLASS_INCONSISTENT),
        (lambda a: a[:3] + b"\x00\x63" + a[5:], ActionResult.OBJECT_CLASS_INCONSISTENT),
        (lambda a: a[:11] + b"\x03" + a[12:], ActionResult.READ_WRITE_DENIED),  # method 3
    ],
)
def test_malformed_requests(mutate: Any, result: ActionResult) -> None:
    kek = os.urandom(16)
    meter = new_meter(0, kek)
    assert meter.apply(mutate(_valid(kek))) == response(result)
    assert meter.keys() == {"KEK": kek}


@pytest.mark.parametrize("apdu", [b"", b"\xc3", b"\xc3\x02\xc1", b"\xc0\x01\xc1" + bytes(10)])
def test_not_an_action_request_is_a_harness_bug(apdu: bytes) -> None:
    with pytest.raises(ValueError, match="not an action-request-normal"):
        new_meter(0).apply(apdu)


# --- security_activate ------------------------------------------------------------------------


def test_security_activate_version_0() -> None:
    meter = new_meter(0)
    assert meter.apply(security_activate(3)) == SUCCESS
    assert meter.security_policy() == 3
    assert meter.apply(security_activate(4)) == response(ActionResult.OTHER_REASON)
    assert meter.security_policy() == 3


def test_security_activate_version_1() -> None:
    meter = new_meter(0, version=1)
    assert meter.apply(security_activate(3)) == response(ActionResult.OTHER_REASON)
    assert meter.apply(security_activate(0x6C)) == SUCCESS
    assert meter.security_policy() == 0x6C


def test_security_activate_malformed() -> None:
    meter = new_meter(0)
    assert meter.apply(security_activate(3) + b"\x00") == response(ActionResult.TYPE_UNMATCHED)
    assert meter.apply(security_activate(3)[:-2] + b"\x11\x03") == response(
        ActionResult.TYPE_UNMATCHED
    )


# --- construction and independence -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((ST[:7], 0, bytes(16)), "system title must be 8 bytes"),
        ((ST, 3, bytes(16)), "suite must be 0, 1 or 2"),
        ((ST, 0, bytes(32)), "suite 0 needs a 16-byte KEK"),
        ((ST, 2, bytes(16)), "suite 2 needs a 32-byte KEK"),
        ((ST, 0, bytes(16), [bytes.fromhex("0100010800FF")]), "not a security setup"),
        ((ST, 0, bytes(16), [MANAGEMENT_SETUP, MANAGEMENT_SETUP]), "listed twice"),
        ((ST, 0, bytes(16), []), "at least one security setup"),
    ],
)
def test_constructor_rejects(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatedMeter(*args)


def test_unknown_setup_in_inspection() -> None:
    with pytest.raises(KeyError):
        new_meter(0).keys(SETUP_1)


def test_keys_returns_a_copy() -> None:
    meter = new_meter(0)
    meter.keys()["KEK"] = b"x"
    assert meter.keys()["KEK"] != b"x"


def test_meter_shares_no_code_with_the_kms() -> None:
    source = (Path(__file__).parent / "meter.py").read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported
    assert not {name for name in imported if name == "kms" or name.startswith(("kms.", "tests."))}
