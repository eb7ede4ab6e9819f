"""gurux-dlms and dlms-cosem as oracles: whole ciphered APDUs built and opened by other stacks.

Like :mod:`tests.interop.meter`, this module never imports ``kms``: an oracle that shared the
KMS's codecs would agree with it by construction. Each oracle ciphers an APDU as its
originator would send it (service-specific glo- or general-glo-ciphering, 0xDB) and opens one,
checking its tag, and raises :class:`OracleRefused` when the tag does not verify.

What each stack offers, and how the gaps are filled with the stack's own primitives
(docs/dlms-security.md sections 9 and 11):

gurux-dlms (``GXDLMSChippering.encryptAesGcm`` / ``decryptAesGcm``, its own AES-GCM)
    Builds and parses both envelopes and every SC mode in suites 0, 1 and 2. Quirks:
    ``decryptAesGcm`` does *not* check the tag of an authenticated and encrypted APDU (SC 0x3s:
    it runs its GCM stream in encrypt direction and never compares); with a broadcast SC it sets
    ``p.broacast`` (sic), so the SC it puts back into the AAD lacks bit 6 and a good
    authentication-only broadcast tag fails unless ``broadcast`` is set beforehand; a broadcast
    key is only read from ``p.settings.cipher.broadcastBlockCipherKey``; and it prints debug lines
    to stdout. So :class:`Gurux` opens an APDU with ``decryptAesGcm`` and then ciphers the
    plaintext again with ``encryptAesGcm`` and requires the very same bytes: that is gurux's own
    tag check.
dlms-cosem (``dlms_cosem.security.encrypt`` / ``decrypt`` / ``gmac``, pyca underneath)
    Knows authenticated encryption only, with AAD SC || AK (right for glo- and general-glo in
    every suite); authentication-only uses its ``gmac`` over SC || AK || APDU, and encryption
    only uses ``encrypt`` for its CTR keystream (its tag, over an AAD the mode does not have, is
    dropped). It parses general-glo-ciphering (``GeneralGlobalCipher.from_bytes``) but not the
    service-specific envelopes, and ``GeneralGlobalCipher.to_bytes`` writes the ciphered-content
    length as one raw byte (0x87 for 135 bytes, ``ValueError`` above 255): :class:`DlmsCosem`
    uses it below 128 bytes and builds the envelope itself above.
"""

from __future__ import annotations

import contextlib
import io
import types
from dataclasses import dataclass
from typing import Protocol

from dlms_cosem.exceptions import DecryptionError
from dlms_cosem.protocol.xdlms.general_global_cipher import GeneralGlobalCipher
from dlms_cosem.security import SecurityControlField, decrypt, encrypt, gmac
from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.enums import Command, Security
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite

__all__ = [
    "GENERAL_GLO_CIPHERING",
    "ORACLES",
    "TAG_LENGTH",
    "DlmsCosem",
    "Envelope",
    "Gurux",
    "Opened",
    "Oracle",
    "OracleRefused",
    "axdr_length",
    "build_envelope",
    "glo_tag",
    "split_envelope",
]

GENERAL_GLO_CIPHERING = 0xDB
GENERAL_DED_CIPHERING = 0xDC
TAG_LENGTH = 12


class OracleRefused(Exception):
    """The oracle did not accept an APDU (its tag did not verify, or the bytes differ)."""


@dataclass(frozen=True)
class Opened:
    """What an oracle found in a ciphered APDU."""

    apdu: bytes
    system_title: bytes
    invocation_counter: int
    security_control: int


@dataclass(frozen=True)
class Envelope:
    """tag | [len(ST) | ST] | len | SC | IC | payload; ``system_title`` is None for glo-."""

    tag: int
    system_title: bytes | None
    security_control: int
    invocation_counter: int
    payload: bytes


def glo_tag(plain_tag: int) -> int:
    """The glo- tag of a plain service tag: + 8 for the new services, + 32 for the old ones."""
    return plain_tag + (0x08 if plain_tag >= 0xC0 else 0x20)


def axdr_length(length: int) -> bytes:
    """An A-XDR length: one byte below 0x80, else 0x81 / 0x82 / 0x84 and the value."""
    if length < 0x80:
        return bytes([length])
    for size, prefix in ((1, 0x81), (2, 0x82), (4, 0x84)):
        if length < 1 << (8 * size):
            return bytes([prefix]) + length.to_bytes(size, "big")
    raise ValueError(f"length {length} does not fit an A-XDR length")


def _read_length(data: bytes, offset: int) -> tuple[int, int]:
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    size = first & 0x7F
    return int.from_bytes(data[offset + 1 : offset + 1 + size], "big"), offset + 1 + size


def build_envelope(tag: int, system_title: bytes | None, sc: int, ic: int, payload: bytes) -> bytes:
    """The envelope of :class:`Envelope`, lengths in A-XDR."""
    body = bytes([sc]) + ic.to_bytes(4, "big") + payload
    head = bytes([tag])
    if system_title is not None:
        head += axdr_length(len(system_title)) + system_title
    return head + axdr_length(len(body)) + body


def split_envelope(data: bytes) -> Envelope:
    """The fields of a glo-/ded- or general-glo/ded-ciphering APDU (lenient: test input is well
    formed)."""
    offset = 1
    system_title = None
    if data[0] in (GENERAL_GLO_CIPHERING, GENERAL_DED_CIPHERING):
        size, offset = _read_length(data, offset)
        system_title, offset = data[offset : offset + size], offset + size
    length, offset = _read_length(data, offset)
    if length != len(data) - offset:
        raise ValueError(f"length {length} but {len(data) - offset} bytes follow")
    return Envelope(
        data[0],
        system_title,
        data[offset],
        int.from_bytes(data[offset + 1 : offset + 5], "big"),
        data[offset + 5 :],
    )


def _keys(keys: dict[str, bytes], sc: int) -> tuple[bytes, bytes]:
    """(EK, AK) for ``sc``: the GBEK when the key-set bit is set, else the GUEK."""
    return keys["GBEK" if sc & 0x40 else "GUEK"], keys["GAK"]


class Oracle(Protocol):
    """Another stack's view of ciphered APDUs."""

    name: str

    def cipher(
        self,
        keys: dict[str, bytes],
        sc: int,
        originator: bytes,
        ic: int,
        apdu: bytes,
        *,
        general: bool = False,
        send_system_title: bool = True,
    ) -> bytes:
        """``apdu`` ciphered by ``originator`` with IC ``ic``: glo- (the tag from ``apdu[0]``)
        or, with ``general``, general-glo-ciphering carrying the originator's system title
        (or an empty one when not ``send_system_title``)."""
        ...

    def open(self, keys: dict[str, bytes], originator: bytes, data: bytes) -> Opened:
        """The APDU inside ``data``, sent by ``originator``; :class:`OracleRefused` unless its
        tag verifies."""
        ...


class Gurux:
    """gurux-dlms 1.0.203 (module docstring: how its quirks are worked around)."""

    name = "gurux-dlms"

    def _parameter(
        self, keys: dict[str, bytes], sc: int, originator: bytes, ic: int, tag: int
    ) -> AesGcmParameter:
        ek, ak = _keys(keys, sc)
        p = AesGcmParameter(tag, originator, ek, ak)
        p.security = Security(sc & 0x30)
        p.securitySuite = SecuritySuite(sc & 0x0F)
        p.broadcast = bool(sc & 0x40)
        p.invocationCounter = ic
        return p

    def cipher(
        self,
        keys: dict[str, bytes],
        sc: int,
        originator: bytes,
        ic: int,
        apdu: bytes,
        *,
        general: bool = False,
        send_system_title: bool = True,
    ) -> bytes:
        tag = Command.GENERAL_GLO_CIPHERING if general else glo_tag(apdu[0])
        p = self._parameter(keys, sc, originator, ic, tag)
        p.ignoreSystemTitle = not send_system_title
        return bytes(GXDLMSChippering.encryptAesGcm(p, apdu))

    def open(self, keys: dict[str, bytes], originator: bytes, data: bytes) -> Opened:
        envelope = split_envelope(data)  # only to know the SC before gurux reads it
        sc = envelope.security_control
        ek, ak = _keys(keys, sc)
        p = AesGcmParameter(0, originator, keys["GUEK"], ak)
        p.settings = types.SimpleNamespace(cipher=types.SimpleNamespace(broadcastBlockCipherKey=ek))
        p.broadcast = bool(sc & 0x40)  # gurux sets `p.broacast` itself (sic)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # its debug lines
                plain = bytes(GXDLMSChippering.decryptAesGcm(None, p, GXByteBuffer(data)))
        except ValueError as exc:
            raise OracleRefused(f"gurux-dlms: {exc}") from exc
        title = bytes(p.systemTitle)
        general = data[0] == GENERAL_GLO_CIPHERING
        again = self.cipher(
            keys,
            sc,
            title,
            p.invocationCounter,
            plain,
            general=general,
            send_system_title=not general or bool(envelope.system_title),
        )
        if again != data:  # the tag, and for glo- the tag byte (plain + 8 / + 32), too
            raise OracleRefused("gurux-dlms: ciphering the plaintext again gives other bytes")
        return Opened(plain, title, p.invocationCounter, sc)


class DlmsCosem:
    """dlms-cosem 25.1.0 (module docstring: what it lacks and what stands in for it)."""

    name = "dlms-cosem"

    @staticmethod
    def _field(sc: int) -> SecurityControlField:
        return SecurityControlField.from_bytes(bytes([sc]))

    def cipher(
        self,
        keys: dict[str, bytes],
        sc: int,
        originator: bytes,
        ic: int,
        apdu: bytes,
        *,
        general: bool = False,
        send_system_title: bool = True,
    ) -> bytes:
        ek, ak = _keys(keys, sc)
        field = self._field(sc)
        if field.authenticated and field.encrypted:
            payload = encrypt(field, originator, ic, ek, apdu, ak)
        elif field.authenticated:
            payload = apdu + gmac(field, originator, ic, ek, ak, apdu)
        else:
            payload = encrypt(field, originator, ic, ek, apdu, ak)[:-TAG_LENGTH]
        if not general:
            return build_envelope(glo_tag(apdu[0]), None, sc, ic, payload)
        title = originator if send_system_title else b""
        if len(payload) + 5 < 0x80:
            return bytes(GeneralGlobalCipher(title or None, field, ic, payload).to_bytes())
        return build_envelope(GENERAL_GLO_CIPHERING, title, sc, ic, payload)

    def open(self, keys: dict[str, bytes], originator: bytes, data: bytes) -> Opened:
        if data[0] == GENERAL_GLO_CIPHERING:
            parsed = GeneralGlobalCipher.from_bytes(data)
            sc = parsed.security_control.to_bytes()[0]
            title = bytes(parsed.system_title or b"") or originator
            ic, payload = parsed.invocation_counter, bytes(parsed.ciphered_text)
        else:
            envelope = split_envelope(data)
            sc, title = envelope.security_control, originator
            ic, payload = envelope.invocation_counter, envelope.payload
        ek, ak = _keys(keys, sc)
        field = self._field(sc)
        if field.authenticated and field.encrypted:
            try:
                plain = bytes(decrypt(field, title, ic, ek, payload, ak))
            except DecryptionError as exc:
                raise OracleRefused(f"dlms-cosem: {exc}") from exc
        elif field.authenticated:
            plain, tag = payload[:-TAG_LENGTH], payload[-TAG_LENGTH:]
            if gmac(field, title, ic, ek, ak, plain) != tag:
                raise OracleRefused("dlms-cosem: GMAC does not verify")
        else:
            plain = encrypt(field, title, ic, ek, payload, ak)[:-TAG_LENGTH]
        if data[0] != GENERAL_GLO_CIPHERING and glo_tag(plain[0]) != data[0]:
            raise OracleRefused("dlms-cosem: the glo- tag does not match the APDU inside")
        return Opened(plain, title, ic, sc)


ORACLES: tuple[Oracle, ...] = (Gurux(), DlmsCosem())
