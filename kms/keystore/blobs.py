"""Per-meter keys at rest: wrapped under the storage key and bound to their row.

A blob is ``b"KB" || format (1 byte) || storage key version (2 bytes, big-endian) || wrap``,
format 1 an RFC 3394 wrap (every AES key, and HLS secrets of 16, 24, 32... bytes), format 2 an
RFC 5649 wrap (HLS secrets of other lengths); like Vault's ``vault:v3:`` prefix, the header says
which storage key version unwraps it.
The binding MAC is HMAC-SHA256, computed in the token under the binding key, over a canonical,
length-prefixed encoding of (system title, security setup logical name, role, version, blob).
A blob copied to another row, or any edited byte, fails :func:`unseal` with
:class:`~kms.errors.InvalidBinding` before anything is unwrapped. Unsealing yields a session
object only.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from kms.dlms.obis import format_logical_name
from kms.dlms.system_title import format_system_title
from kms.errors import InvalidBinding, InvalidUnwrap
from kms.hsm import Hsm, KeyUse, SessionKey
from kms.keystore.hierarchy import RootKeys

_MAGIC = b"KB"
_FORMAT = 1
_FORMAT_PADDED = 2
_HEADER = struct.Struct(">2sBH")
_DOMAIN = b"dlms-kms/key-binding/v1"


@dataclass(frozen=True)
class KeyIdentity:
    """What a blob is bound to: the row's identity, not its database id."""

    system_title: bytes
    logical_name: bytes
    role: str
    version: int

    def describe(self) -> str:
        """Metadata only, safe for messages."""
        title, ln = format_system_title(self.system_title), format_logical_name(self.logical_name)
        return f"{title} {ln} {self.role} v{self.version}"


@dataclass(frozen=True)
class SealedKey:
    """A wrapped, bound key as stored in ``key_version``."""

    wrapped_key: bytes
    binding_mac: bytes
    wrapping_key_label: str
    wrapping_key_version: int


def binding_input(identity: KeyIdentity, blob: bytes) -> bytes:
    """The canonical bytes the binding MAC covers (length-prefixed, so fields cannot slide)."""
    parts = (
        _DOMAIN,
        identity.system_title,
        identity.logical_name,
        identity.role.encode("ascii"),
        struct.pack(">I", identity.version),
        blob,
    )
    return b"".join(struct.pack(">H", len(p)) + p for p in parts)


def seal(hsm: Hsm, root: RootKeys, key: SessionKey, identity: KeyIdentity) -> SealedKey:
    """Wrap ``key`` under the storage key and bind the blob to ``identity``, all in the token."""
    blob = _HEADER.pack(_MAGIC, _FORMAT, root.storage_version) + hsm.wrap_key(root.storage, key)
    mac = hsm.mac(root.binding, binding_input(identity, blob))
    return SealedKey(blob, mac, root.storage.label, root.storage_version)


def unseal(
    hsm: Hsm,
    root: RootKeys,
    identity: KeyIdentity,
    blob: bytes,
    mac: bytes,
    use: KeyUse,
    length: int,
) -> SessionKey:
    """Check the binding, then unwrap into a session object."""
    wrapped = _checked(hsm, root, identity, blob, mac)
    try:
        return hsm.unwrap_key(root.storage, wrapped, use, length)
    except InvalidUnwrap:
        raise InvalidBinding(f"stored key {identity.describe()} failed to unwrap") from None


def seal_secret(hsm: Hsm, root: RootKeys, secret: SessionKey, identity: KeyIdentity) -> SealedKey:
    """:func:`seal` for an HLS secret (any length: RFC 5649 where RFC 3394 does not fit)."""
    fmt = _FORMAT if hsm.secret_wrap_is_exact(secret.length) else _FORMAT_PADDED
    blob = _HEADER.pack(_MAGIC, fmt, root.storage_version) + hsm.wrap_secret(root.storage, secret)
    mac = hsm.mac(root.binding, binding_input(identity, blob))
    return SealedKey(blob, mac, root.storage.label, root.storage_version)


def unseal_secret(
    hsm: Hsm,
    root: RootKeys,
    identity: KeyIdentity,
    blob: bytes,
    mac: bytes,
    length: int,
    *,
    readable: bool,
) -> SessionKey:
    """Check the binding, then unwrap an HLS secret for use (``readable``: the host fallback)."""
    wrapped = _checked(hsm, root, identity, blob, mac)
    try:
        return hsm.unwrap_secret(root.storage, wrapped, length, readable=readable)
    except InvalidUnwrap:
        raise InvalidBinding(f"stored key {identity.describe()} failed to unwrap") from None


def _checked(hsm: Hsm, root: RootKeys, identity: KeyIdentity, blob: bytes, mac: bytes) -> bytes:
    """The wrapped key inside ``blob``, once its binding and header check out."""
    expected = hsm.mac(root.binding, binding_input(identity, blob))
    if not hmac.compare_digest(expected, mac):
        raise InvalidBinding(f"stored key {identity.describe()} does not match its row")
    if len(blob) < _HEADER.size:
        raise InvalidBinding(f"stored key {identity.describe()} is truncated")
    magic, fmt, version = _HEADER.unpack_from(blob)
    if magic != _MAGIC or fmt not in (_FORMAT, _FORMAT_PADDED) or version != root.storage_version:
        raise InvalidBinding(
            f"stored key {identity.describe()} is wrapped under storage key version {version}, "
            f"which this KMS does not hold"
        )
    return blob[_HEADER.size :]
