"""The server side of a ciphered xDLMS exchange, as an independent meter would run it.

It completes :mod:`tests.interop.meter` (which learnt the keys from key_transfer) with the
other half of seed step 7: the head-end's glo-get-request arrives, the meter answers a
glo-get-response. Like that module it shares no code with the KMS and never imports ``kms``:
the ciphering is pyca/cryptography's AES-GCM (the tag truncated to 12 bytes; encryption-only
content deciphered as AES-CTR from J0 + 1, GCM's own counter block, so even the KMS's "encrypt
again" shortcut is checked from outside), and the get-request and get-response are
dlms-cosem's (``GetRequestFactory``, ``GetResponseNormal``). The envelopes are parsed here,
strictly.

Behaviour (docs/dlms-security.md sections 2 and 7; Blue Book Clock, class_id 8):

* Accepted: glo-get-request (0xC8) and general-glo-ciphering (0xDB) carrying a get-request,
  protected with the meter's suite, the unicast key (GUEK) and authentication, encryption or
  both; the answer uses the same form and the same SC. A general-glo-ciphering request must carry
  the client's system title, or none.
* The receive floor (the lowest acceptable IC from the client) starts at 0, is checked before
  any cryptography and moves to IC + 1 only after the tag verified; 0xFFFFFFFF is never valid.
  The meter's own send IC starts at ``first_send_ic`` and is used once.
* Refusals are unciphered exception-responses: ``D8 01 06 <lowest acceptable IC, 4 bytes>``
  (invocation-counter-error) for a replayed or lower IC, ``D8 01 05`` (deciphering-error) for a
  tag that does not verify or a protection the meter does not accept, ``D8 02 02``
  (service-unknown) for any other APDU. Why is kept in :attr:`MeterSession.last_refusal`.
* Clock 0.0.1.0.0.255 attribute 2 is answered with its time as a 12-byte octet-string
  date-time; the clock then moves one second on. Any other attribute gets data-access-result
  object-undefined.

dlms-cosem 25.1.0's ``GetResponseNormal.to_bytes`` raises ``TypeError`` (it appends the
invoke-id byte string to a bytearray as if it were an int), so the get-response-normal with
data is encoded here, ``C4 01 <invoke-id-and-priority> 00 <data>``; its parser and
``GetResponseNormalWithError`` work.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from dlms_cosem import enumerations
from dlms_cosem.cosem import Obis
from dlms_cosem.dlms_data import OctetStringData
from dlms_cosem.protocol.xdlms.get import (
    GetRequestFactory,
    GetRequestNormal,
    GetResponseNormalWithError,
)
from dlms_cosem.time import datetime_to_bytes

__all__ = ["CLOCK", "MeterSession"]

CLOCK = Obis(0, 0, 1, 0, 0, 255)

_GET_REQUEST = 0xC0
_GET_RESPONSE = 0xC4
_NORMAL = 0x01
_GLO_GET_REQUEST = 0xC8
_GLO_GET_RESPONSE = 0xCC
_GENERAL_GLO_CIPHERING = 0xDB
_TAG_LENGTH = 12
_MAX_IC = 0xFFFFFFFF
_KEY_LENGTH = {0: 16, 1: 16, 2: 32}

_DECIPHERING_ERROR = bytes.fromhex("D80105")
_SERVICE_UNKNOWN = bytes.fromhex("D80202")


class _Refused(Exception):
    def __init__(self, response: bytes, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason


@dataclass(frozen=True)
class _Request:
    general: bool
    sc: int
    ic: int
    payload: bytes


class MeterSession:
    """One meter's side of a pre-established association with the head-end ``client``."""

    def __init__(
        self,
        system_title: bytes,
        suite: int,
        keys: dict[str, bytes],
        client: bytes,
        clock: datetime.datetime,
        *,
        first_send_ic: int = 1,
    ) -> None:
        if len(system_title) != 8 or len(client) != 8:
            raise ValueError("system titles are 8 bytes")
        if suite not in _KEY_LENGTH:
            raise ValueError(f"suite must be 0, 1 or 2, got {suite}")
        for role in ("GUEK", "GAK"):
            if len(keys[role]) != _KEY_LENGTH[suite]:
                raise ValueError(f"suite {suite} needs a {_KEY_LENGTH[suite]}-byte {role}")
        self.system_title = bytes(system_title)
        self.suite = suite
        self.client = bytes(client)
        self.clock = clock
        self._ek = bytes(keys["GUEK"])
        self._ak = bytes(keys["GAK"])
        #: The lowest IC the meter accepts from the client next.
        self.receive_floor = 0
        #: The IC of the meter's next response.
        self.send_ic = first_send_ic
        self.last_refusal: str | None = None

    def handle(self, data: bytes) -> bytes:
        """Answer one ciphered request: a ciphered response or an exception-response."""
        try:
            response = self._handle(bytes(data))
        except _Refused as refusal:
            self.last_refusal = refusal.reason
            return refusal.response
        self.last_refusal = None
        return response

    # --- request --------------------------------------------------------------------------

    def _handle(self, data: bytes) -> bytes:
        request = self._parse(data)
        sc = request.sc
        if sc & 0x80 or sc & 0x40 or sc & 0x0F != self.suite or not sc & 0x30:
            raise _Refused(_DECIPHERING_ERROR, f"security control 0x{sc:02x} not accepted")
        if request.ic < self.receive_floor or request.ic == _MAX_IC:
            raise _Refused(
                bytes.fromhex("D80106") + self.receive_floor.to_bytes(4, "big"),
                f"invocation counter {request.ic} below {self.receive_floor}",
            )
        try:
            plain = self._open(sc, request.ic, request.payload)
        except InvalidTag:
            raise _Refused(_DECIPHERING_ERROR, "tag does not verify") from None
        self.receive_floor = request.ic + 1
        if not plain or plain[0] != _GET_REQUEST:
            raise _Refused(_SERVICE_UNKNOWN, "not a get-request")
        try:
            get = GetRequestFactory.from_bytes(plain)
        except (ValueError, IndexError):
            raise _Refused(_SERVICE_UNKNOWN, "get-request does not parse") from None
        if not isinstance(get, GetRequestNormal):
            raise _Refused(_SERVICE_UNKNOWN, f"{type(get).__name__} is not served")
        attribute = get.cosem_attribute
        invoke = bytes(get.invoke_id_and_priority.to_bytes())
        if (
            attribute.interface == enumerations.CosemInterface.CLOCK
            and attribute.instance == CLOCK
            and attribute.attribute == 2
        ):
            value = bytes(OctetStringData(datetime_to_bytes(self.clock)).to_bytes())
            answer = bytes([_GET_RESPONSE, _NORMAL]) + invoke + b"\x00" + value
            self.clock += datetime.timedelta(seconds=1)
        else:
            error = GetResponseNormalWithError(
                enumerations.DataAccessResult.OBJECT_UNDEFINED, get.invoke_id_and_priority
            )
            answer = bytes(error.to_bytes())
        return self._cipher(request.general, sc, answer)

    def _parse(self, data: bytes) -> _Request:
        if not data or data[0] not in (_GLO_GET_REQUEST, _GENERAL_GLO_CIPHERING):
            raise _Refused(_SERVICE_UNKNOWN, "not a glo-get-request or general-glo-ciphering")
        general = data[0] == _GENERAL_GLO_CIPHERING
        offset = 1
        if general:
            size, offset = _length(data, offset)
            title = data[offset : offset + size]
            offset += size
            if title not in (b"", self.client):
                raise _Refused(_DECIPHERING_ERROR, "general-glo-ciphering from another client")
        length, offset = _length(data, offset)
        if length != len(data) - offset or length < 5:
            raise _Refused(_SERVICE_UNKNOWN, "length disagrees with the APDU")
        sc = data[offset]
        ic = int.from_bytes(data[offset + 1 : offset + 5], "big")
        payload = data[offset + 5 :]
        return _Request(general, sc, ic, payload)

    # --- cryptography ---------------------------------------------------------------------

    def _iv(self, originator: bytes, ic: int) -> bytes:
        return originator + ic.to_bytes(4, "big")

    def _open(self, sc: int, ic: int, payload: bytes) -> bytes:
        iv = self._iv(self.client, ic)
        if not sc & 0x10:
            # Encryption only: GCM's ciphertext is AES-CTR from J0 + 1 = IV || 00000002.
            ctr = Cipher(algorithms.AES(self._ek), modes.CTR(iv + b"\x00\x00\x00\x02"))
            decryptor = ctr.decryptor()
            return decryptor.update(payload) + decryptor.finalize()
        if len(payload) < _TAG_LENGTH:
            raise InvalidTag
        body, tag = payload[:-_TAG_LENGTH], payload[-_TAG_LENGTH:]
        aad = bytes([sc]) + self._ak
        gcm = Cipher(algorithms.AES(self._ek), modes.GCM(iv, tag, min_tag_length=_TAG_LENGTH))
        decryptor = gcm.decryptor()
        if sc & 0x20:
            decryptor.authenticate_additional_data(aad)
            return decryptor.update(body) + decryptor.finalize()
        decryptor.authenticate_additional_data(aad + body)
        decryptor.finalize()
        return body

    def _cipher(self, general: bool, sc: int, apdu: bytes) -> bytes:
        ic = self.send_ic
        if ic >= _MAX_IC:
            raise _Refused(_DECIPHERING_ERROR, "send counters exhausted")
        self.send_ic += 1
        iv = self._iv(self.system_title, ic)
        aead = AESGCM(self._ek)
        aad = bytes([sc]) + self._ak
        if sc & 0x30 == 0x30:
            payload = aead.encrypt(iv, apdu, aad)[: len(apdu) + _TAG_LENGTH]
        elif sc & 0x10:
            payload = apdu + aead.encrypt(iv, b"", aad + apdu)[:_TAG_LENGTH]
        else:
            payload = aead.encrypt(iv, apdu, b"")[: len(apdu)]
        body = bytes([sc]) + ic.to_bytes(4, "big") + payload
        if general:
            head = bytes([_GENERAL_GLO_CIPHERING, 8]) + self.system_title
        else:
            head = bytes([_GLO_GET_RESPONSE])
        return head + _encode_length(len(body)) + body


def _length(data: bytes, offset: int) -> tuple[int, int]:
    """An A-XDR length at ``offset``: (value, offset after it); refuses what runs short."""
    if offset >= len(data):
        raise _Refused(_SERVICE_UNKNOWN, "truncated")
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    size = first & 0x7F
    if size not in (1, 2, 4) or offset + 1 + size > len(data):
        raise _Refused(_SERVICE_UNKNOWN, "bad length")
    return int.from_bytes(data[offset + 1 : offset + 1 + size], "big"), offset + 1 + size


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    if length < 0x100:
        return bytes([0x81, length])
    return bytes([0x82]) + length.to_bytes(2, "big")
