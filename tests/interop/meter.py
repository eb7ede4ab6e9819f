"""An independent simulated meter: the security setup objects (class_id 64) of one DLMS server.

It exists to check the KMS from the outside, so it shares no code with it: it never imports
``kms``. The action-request envelope is parsed by dlms-cosem (``ActionRequestNormal``); dlms-cosem
has no strict parser for a method's parameters (its ``DlmsDataParser`` silently truncates), so the
``key_transfer`` array and the ``security_activate`` enum are read by the small parser below. Keys
are unwrapped with pyca/cryptography's RFC 3394 ``aes_key_unwrap``; key check values are the first
3 bytes of AES-ECB of a zero block, as PKCS#11's ``CKA_CHECK_VALUE``.

Behaviour (DLMS UA 1000-1 "Blue Book", security setup methods 1 and 2; docs/dlms-security.md
sections 4 and 11):

* ``key_transfer`` (method 2) is all-or-nothing: every entry is checked and unwrapped before any
  key changes, and one bad entry refuses the whole request.
* Every entry is unwrapped under the KEK that is current when the request arrives, including a
  master key (key_id 3), which then replaces the KEK. So keys 0-2 sent in the *same* request as a
  new master key must be wrapped under the *old* KEK (Gurux's ``invoke`` check); the KMS avoids
  the question by sending the master key alone (notes section 11).
* Refused: a repeated key_id, a key_id above 3, a wrapped key whose length is not the suite's key
  length + 8 (24 bytes for suites 0 and 1, 40 for suite 2), and a failed unwrap.
* ``security_activate`` (method 1) stores the policy: 0..3 in version 0; in version 1 a bit map
  whose reserved bits 0 and 1 must be clear. Whether a policy may be lowered is not settled
  (notes section 4), so this meter allows it.

Suites 1 and 2 (methods 4..6 and HLS mechanism 7; the key pairs, certificates and signatures
are :mod:`tests.interop.meter_pki`'s, pyca/cryptography only):

* ``generate_key_pair`` (method 4) and ``generate_certificate_request`` (method 5) take one enum,
  0..2; method 5 answers the CSR as an octet-string. ``import_certificate`` (method 6) takes one
  octet-string of DER. A suite 0 meter has no such methods (read-write-denied), like methods 3, 7
  and 8 in every suite.
* HLS-ECDSA: :meth:`SimulatedMeter.associate` stands for the AARQ (mechanism 7) carrying CtoS and
  returns the meter's StoC (the AARE), or None when the meter rejects the association. The
  client then invokes reply_to_HLS_authentication (Association LN, class_id 15, 0.0.40.0.0.255,
  method 1) with f(StoC) as an octet-string; the meter answers f(CtoS) as an octet-string, or
  other-reason without data when f(StoC) does not verify (Gurux's server would answer success
  without data; which result a strict meter gives is not settled [U]). One reply per
  association: the challenge is spent either way.

Responses are action-response-normal, ``C7 01 <invoke> <result> 00`` without return data and
``C7 01 <invoke> 00 01 00 <Data>`` with it, the invoke-id-and-priority byte echoed as received,
the result an :class:`ActionResult`. Why a request was refused is kept in
:attr:`SimulatedMeter.last_refusal` for test diagnostics (a real meter says less). An APDU that
is not an action-request-normal at all raises ``ValueError``: a simulated meter only models the
ACTION service, so that is a fault in the test harness.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap
from dlms_cosem import enumerations
from dlms_cosem.protocol.xdlms.action import ActionRequestNormal

from .meter_pki import KeyPairType, MeterPki, PkiRefused

__all__ = ["ASSOCIATION_LN", "MANAGEMENT_SETUP", "ActionResult", "KeyPairType", "SimulatedMeter"]

MANAGEMENT_SETUP = bytes.fromhex("00002B0000FF")
#: The current association (Association LN, class_id 15): reply_to_HLS_authentication is method 1.
ASSOCIATION_LN = bytes.fromhex("0000280000FF")
_ASSOCIATION_LN_CLASS = 15

_ACTION_REQUEST = 0xC3
_ACTION_RESPONSE = 0xC7
_NORMAL = 0x01
_HEADER_LENGTH = 13  # tag, choice, invoke, class_id(2), instance(6), method, parameters flag

_TAG_ARRAY = 0x01
_TAG_STRUCTURE = 0x02
_TAG_OCTET_STRING = 0x09
_TAG_ENUM = 0x16

_SUITE_KEY_LENGTH = {0: 16, 1: 16, 2: 32}
_ROLE_BY_KEY_ID = {0: "GUEK", 1: "GBEK", 2: "GAK", 3: "KEK"}
_ROLE_ORDER = ("KEK", "GUEK", "GBEK", "GAK")


class ActionResult(enum.IntEnum):
    """Action-Result values of the Green Book used in action-responses."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    OTHER_REASON = 250


class _Refused(Exception):
    """A request the meter turns down; carries the result code and the reason."""

    def __init__(self, result: ActionResult, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


class _SecuritySetup:
    __slots__ = ("keys", "pki", "security_policy")

    def __init__(self, kek: bytes, pki: MeterPki | None) -> None:
        self.keys: dict[str, bytes] = {"KEK": kek}
        self.security_policy = 0
        self.pki = pki


@dataclass
class _Association:
    """An association opened with mechanism 7 and waiting for reply_to_HLS_authentication."""

    client: bytes
    ctos: bytes
    stoc: bytes
    pki: MeterPki
    authenticated: bool = False


class SimulatedMeter:
    """The security setups of one simulated meter, driven by action-request APDUs."""

    def __init__(
        self,
        system_title: bytes,
        suite: int,
        initial_kek: bytes,
        setups: Iterable[bytes] = (MANAGEMENT_SETUP,),
        *,
        version: int = 0,
        trust_anchors: Iterable[bytes] = (),
    ) -> None:
        if len(system_title) != 8:
            raise ValueError(f"system title must be 8 bytes, got {len(system_title)}")
        if suite not in _SUITE_KEY_LENGTH:
            raise ValueError(f"suite must be 0, 1 or 2, got {suite}")
        if len(initial_kek) != _SUITE_KEY_LENGTH[suite]:
            raise ValueError(
                f"suite {suite} needs a {_SUITE_KEY_LENGTH[suite]}-byte KEK, got {len(initial_kek)}"
            )
        if version not in (0, 1):
            raise ValueError(f"security setup version must be 0 or 1, got {version}")
        self.system_title = bytes(system_title)
        self.suite = suite
        self.version = version
        self.key_length = _SUITE_KEY_LENGTH[suite]
        self._setups: dict[bytes, _SecuritySetup] = {}
        anchors = tuple(bytes(der) for der in trust_anchors)
        for logical_name in setups:
            name = bytes(logical_name)
            if len(name) != 6 or name[:4] != b"\x00\x00\x2b\x00" or name[5] != 0xFF:
                raise ValueError(f"{name.hex()} is not a security setup logical name")
            if name in self._setups:
                raise ValueError(f"security setup {name.hex()} listed twice")
            pki = MeterPki(self.system_title, suite, anchors) if suite else None
            self._setups[name] = _SecuritySetup(bytes(initial_kek), pki)
        if not self._setups:
            raise ValueError("a meter needs at least one security setup")
        self.last_refusal: str | None = None
        self._association: _Association | None = None

    # --- inspection -------------------------------------------------------------------------

    def keys(self, logical_name: bytes = MANAGEMENT_SETUP) -> dict[str, bytes]:
        """The keys of one security setup: KEK, GUEK, GBEK, GAK (only those set)."""
        held = self._setups[bytes(logical_name)].keys
        return {role: held[role] for role in _ROLE_ORDER if role in held}

    def check_values(self, logical_name: bytes = MANAGEMENT_SETUP) -> dict[str, str]:
        """Upper-case hex of the first 3 bytes of AES-ECB(key, 16 zero bytes), per key."""
        return {role: _check_value(key) for role, key in self.keys(logical_name).items()}

    def security_policy(self, logical_name: bytes = MANAGEMENT_SETUP) -> int:
        """The security policy last activated on a security setup (0 at start)."""
        return self._setups[bytes(logical_name)].security_policy

    def pki(self, logical_name: bytes = MANAGEMENT_SETUP) -> MeterPki:
        """The key pairs and certificates of a suite 1 or 2 security setup."""
        pki = self._setups[bytes(logical_name)].pki
        if pki is None:
            raise ValueError("a suite 0 meter has no key pairs")
        return pki

    @property
    def authenticated(self) -> bool:
        """Whether the current association's client proved itself with f(StoC)."""
        return self._association is not None and self._association.authenticated

    # --- HLS-ECDSA ----------------------------------------------------------------------------

    def associate(
        self,
        client_system_title: bytes,
        ctos: bytes,
        *,
        logical_name: bytes = MANAGEMENT_SETUP,
        stoc: bytes | None = None,
    ) -> bytes | None:
        """An AARQ with mechanism 7 and CtoS: the meter's StoC, or None if it rejects it."""
        self._association = None
        pki = self._setups[bytes(logical_name)].pki
        reason = None
        if pki is None:
            reason = "HLS-ECDSA needs suite 1 or 2"
        elif not 32 <= len(ctos) <= 64:
            reason = f"CtoS is {len(ctos)} bytes, not 32..64"
        elif pki.public_key(KeyPairType.DIGITAL_SIGNATURE) is None:
            reason = "no digital signature key pair"
        if reason is not None or pki is None:
            self.last_refusal = reason
            return None
        challenge = os.urandom(32) if stoc is None else bytes(stoc)
        self._association = _Association(bytes(client_system_title), bytes(ctos), challenge, pki)
        self.last_refusal = None
        return challenge

    def _reply_to_hls_authentication(self, apdu: bytes) -> bytes:
        if int.from_bytes(apdu[3:5], "big") != _ASSOCIATION_LN_CLASS:
            raise _Refused(ActionResult.OBJECT_CLASS_INCONSISTENT, "not an association LN")
        if apdu[11] != 1:
            raise _Refused(ActionResult.READ_WRITE_DENIED, f"association method {apdu[11]}")
        f_stoc = _octet_string(apdu[13:] if apdu[12] else None, "reply_to_HLS_authentication")
        association = self._association
        if association is None or association.authenticated:
            raise _Refused(ActionResult.READ_WRITE_DENIED, "no HLS authentication pending")
        self._association = None  # one answer per challenge
        try:
            association.pki.check_f_stoc(
                association.client, association.stoc, association.ctos, f_stoc
            )
        except PkiRefused as refused:
            raise _Refused(ActionResult.OTHER_REASON, str(refused)) from None
        association.authenticated = True
        self._association = association
        f_ctos = association.pki.f_ctos(association.client, association.ctos, association.stoc)
        return _encode_octet_string(f_ctos)

    # --- the ACTION service -----------------------------------------------------------------

    def apply(self, apdu: bytes) -> bytes:
        """Apply one action-request; return the action-response."""
        apdu = bytes(apdu)
        if len(apdu) < 3 or apdu[0] != _ACTION_REQUEST or apdu[1] != _NORMAL:
            raise ValueError("not an action-request-normal (C3 01 ...)")
        invoke = apdu[2]
        try:
            data = self._apply(apdu)
        except _Refused as refusal:
            self.last_refusal = refusal.reason
            return bytes([_ACTION_RESPONSE, _NORMAL, invoke, refusal.result, 0x00])
        self.last_refusal = None
        head = bytes([_ACTION_RESPONSE, _NORMAL, invoke, ActionResult.SUCCESS])
        return head + (b"\x00" if data is None else b"\x01\x00" + data)

    def _apply(self, apdu: bytes) -> bytes | None:
        if len(apdu) < _HEADER_LENGTH:
            raise _Refused(ActionResult.TYPE_UNMATCHED, "truncated cosem-method-descriptor")
        if apdu[12] not in (0, 1):
            raise _Refused(ActionResult.TYPE_UNMATCHED, "method-invocation-parameters flag")
        logical_name = apdu[5:11]
        if logical_name == ASSOCIATION_LN:
            return self._reply_to_hls_authentication(apdu)
        setup = self._setups.get(logical_name)
        try:
            request = ActionRequestNormal.from_bytes(apdu)
        except ValueError:
            # dlms-cosem knows no interface class with this class_id.
            request = None
        if setup is None:
            raise _Refused(ActionResult.OBJECT_UNDEFINED, f"no object {logical_name.hex()}")
        method = request.cosem_method if request is not None else None
        if method is None or method.interface != enumerations.CosemInterface.SECURITY_SETUP:
            raise _Refused(ActionResult.OBJECT_CLASS_INCONSISTENT, "not a security setup class")
        assert method.instance.to_bytes() == logical_name
        parameters = None if request is None or request.data is None else bytes(request.data)
        if method.method == 1:
            self._security_activate(setup, parameters)
        elif method.method == 2:
            self._key_transfer(setup, parameters)
        elif method.method in (4, 5, 6) and setup.pki is not None:
            return self._public_key_method(setup.pki, method.method, parameters)
        else:
            raise _Refused(ActionResult.READ_WRITE_DENIED, f"method {method.method}")
        return None

    def _public_key_method(
        self, pki: MeterPki, method: int, parameters: bytes | None
    ) -> bytes | None:
        try:
            if method == 6:
                pki.import_certificate(_octet_string(parameters, "import_certificate"))
                return None
            if parameters is None or len(parameters) != 2 or parameters[0] != _TAG_ENUM:
                raise _Refused(ActionResult.TYPE_UNMATCHED, f"method {method} takes one enum")
            if parameters[1] > KeyPairType.TLS:
                raise _Refused(ActionResult.OTHER_REASON, f"key pair type {parameters[1]}")
            kind = KeyPairType(parameters[1])
            if method == 4:
                pki.generate_key_pair(kind)
                return None
            return _encode_octet_string(pki.certificate_request(kind))
        except PkiRefused as refused:
            raise _Refused(ActionResult.OTHER_REASON, str(refused)) from None

    def _security_activate(self, setup: _SecuritySetup, parameters: bytes | None) -> None:
        if parameters is None or len(parameters) != 2 or parameters[0] != _TAG_ENUM:
            raise _Refused(ActionResult.TYPE_UNMATCHED, "security_activate takes one enum")
        policy = parameters[1]
        if self.version == 0 and policy > 3:
            raise _Refused(ActionResult.OTHER_REASON, f"policy {policy} is not a v0 policy")
        if self.version == 1 and policy & 0x03:
            raise _Refused(ActionResult.OTHER_REASON, f"policy 0x{policy:02x} sets reserved bits")
        setup.security_policy = policy

    def _key_transfer(self, setup: _SecuritySetup, parameters: bytes | None) -> None:
        if parameters is None:
            raise _Refused(ActionResult.TYPE_UNMATCHED, "key_transfer needs parameters")
        entries = _parse_key_data(parameters)
        if not entries:
            raise _Refused(ActionResult.OTHER_REASON, "empty key_transfer")
        kek = setup.keys["KEK"]
        new_keys: dict[str, bytes] = {}
        for key_id, key_wrapped in entries:
            role = _ROLE_BY_KEY_ID.get(key_id)
            if role is None:
                raise _Refused(ActionResult.OTHER_REASON, f"unknown key_id {key_id}")
            if role in new_keys:
                raise _Refused(ActionResult.OTHER_REASON, f"key_id {key_id} repeated")
            if len(key_wrapped) != self.key_length + 8:
                raise _Refused(
                    ActionResult.OTHER_REASON,
                    f"key_id {key_id}: {len(key_wrapped)}-byte wrapped key in suite {self.suite}",
                )
            try:
                new_keys[role] = aes_key_unwrap(kek, key_wrapped)
            except InvalidUnwrap:
                raise _Refused(
                    ActionResult.OTHER_REASON, f"key_id {key_id}: unwrap failed"
                ) from None
        setup.keys.update(new_keys)


def _parse_key_data(data: bytes) -> list[tuple[int, bytes]]:
    """array of structure {key_id enum, key_wrapped octet-string}, nothing after it."""
    position = 0

    def byte() -> int:
        nonlocal position
        if position >= len(data):
            raise _Refused(ActionResult.TYPE_UNMATCHED, "key_transfer parameters truncated")
        position += 1
        return data[position - 1]

    def tag(expected: int) -> None:
        if byte() != expected:
            raise _Refused(ActionResult.TYPE_UNMATCHED, f"expected data tag 0x{expected:02x}")

    def length() -> int:
        first = byte()
        if first < 0x80:
            return first
        if first not in (0x81, 0x82, 0x84):
            raise _Refused(ActionResult.TYPE_UNMATCHED, "bad length")
        value = 0
        for _ in range(first & 0x7F):
            value = value << 8 | byte()
        return value

    tag(_TAG_ARRAY)
    count = length()
    entries: list[tuple[int, bytes]] = []
    for _ in range(count):
        tag(_TAG_STRUCTURE)
        if length() != 2:
            raise _Refused(ActionResult.TYPE_UNMATCHED, "key_data is not a 2-field structure")
        tag(_TAG_ENUM)
        key_id = byte()
        tag(_TAG_OCTET_STRING)
        size = length()
        if position + size > len(data):
            raise _Refused(ActionResult.TYPE_UNMATCHED, "key_wrapped truncated")
        entries.append((key_id, data[position : position + size]))
        position += size
    if position != len(data):
        raise _Refused(ActionResult.TYPE_UNMATCHED, "trailing bytes after key_transfer array")
    return entries


def _octet_string(parameters: bytes | None, method: str) -> bytes:
    """One octet-string filling the parameters exactly (A-XDR length 1, 0x81, 0x82 or 0x84 form)."""
    if not parameters or parameters[0] != _TAG_OCTET_STRING or len(parameters) < 2:
        raise _Refused(ActionResult.TYPE_UNMATCHED, f"{method} takes one octet-string")
    first, start = parameters[1], 2
    size = first
    if first >= 0x80:
        start = 2 + (first & 0x7F)
        if first not in (0x81, 0x82, 0x84) or len(parameters) < start:
            raise _Refused(ActionResult.TYPE_UNMATCHED, f"{method}: bad length")
        size = int.from_bytes(parameters[2:start], "big")
    if start + size != len(parameters):
        raise _Refused(ActionResult.TYPE_UNMATCHED, f"{method}: length disagrees with the data")
    return parameters[start:]


def _encode_octet_string(value: bytes) -> bytes:
    size = len(value)
    if size < 0x80:
        length = bytes([size])
    elif size < 0x100:
        length = bytes([0x81, size])
    else:
        length = b"\x82" + size.to_bytes(2, "big")
    return bytes([_TAG_OCTET_STRING]) + length + value


def _check_value(key: bytes) -> str:
    # ECB of one zero block is the definition of a key check value, not a way to encrypt data.
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
    return (encryptor.update(bytes(16)) + encryptor.finalize())[:3].hex().upper()
