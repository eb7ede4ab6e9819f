"""What the keys in use are, without their values: the references a process keeps so that it can
unwrap a key again without the database, and name it in messages.

:class:`KeyRef` is one stored key version of a meter, :class:`SetupKeys` a security setup with
its ACTIVE key versions by role (and why the others are unusable), :class:`DedicatedRef` the
dedicated key of an open association. Built by :mod:`kms.services.hes.working_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kms.db import KeyRole, KeyState, KeyVersion
from kms.dlms.obis import format_logical_name
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title
from kms.errors import KeyStateError, NotFoundError
from kms.keystore.blobs import KeyIdentity

__all__ = ["ADVICE", "DedicatedRef", "KeyRef", "SetupKeys", "dedicated_identity", "key_ref"]

ADVICE = {
    KeyState.PENDING: "confirm the meter's keys first (`kms provision confirm`)",
    KeyState.RETIRED: "it was replaced; a retired key is never used again",
    KeyState.REVOKED: "it was revoked and may not be used",
    KeyState.DESTROYED: "it was destroyed",
}


@dataclass(frozen=True)
class KeyRef:
    """One stored key version: what it takes to unwrap it again, and to name it."""

    id: int
    identity: KeyIdentity
    length: int
    wrapped_key: bytes = field(repr=False)
    binding_mac: bytes = field(repr=False)

    @property
    def role(self) -> KeyRole:
        """GUEK, GBEK, GAK or KEK."""
        return KeyRole(self.identity.role)

    def describe(self) -> str:
        """Metadata only, safe for messages."""
        return self.identity.describe()


@dataclass
class SetupKeys:
    """A security setup of a meter, as the protecting process knows it."""

    setup_id: int
    system_title: bytes
    logical_name: bytes
    suite: SecuritySuite
    keys: dict[KeyRole, KeyRef]
    #: The state of each role that has no ACTIVE version (for the error when it is asked for).
    unusable: dict[KeyRole, KeyState]

    def key(self, role: KeyRole) -> KeyRef:
        """The ACTIVE version of ``role``, or :class:`~kms.errors.KeyStateError` saying why not."""
        ref = self.keys.get(role)
        if ref is not None:
            return ref
        where = f"{format_system_title(self.system_title)} {format_logical_name(self.logical_name)}"
        state = self.unusable.get(role)
        if state is None:
            raise NotFoundError(f"meter {where} has no {role.value}")
        raise KeyStateError(f"the {role.value} of meter {where} is {state.value}: {ADVICE[state]}")


@dataclass(frozen=True)
class DedicatedRef:
    """An open association's dedicated key: what it takes to unwrap it, and its setup."""

    id: int
    handle: str
    setup: SetupKeys
    identity: KeyIdentity
    length: int
    wrapped_key: bytes = field(repr=False)
    binding_mac: bytes = field(repr=False)

    def describe(self) -> str:
        """Metadata only, safe for messages."""
        return f"dedicated key of association {self.handle}"

    @property
    def cache_name(self) -> tuple[str, int]:
        """Its name in the key cache and the counter maps (apart from key version ids)."""
        return ("association", self.id)


def dedicated_identity(system_title: bytes, logical_name: bytes, handle: str) -> KeyIdentity:
    """What an association's stored dedicated key is bound to."""
    return KeyIdentity(system_title, logical_name, f"DEDICATED:{handle}", 1)


def key_ref(system_title: bytes, logical_name: bytes, version: KeyVersion) -> KeyRef:
    """The reference to a stored key version of a meter's security setup."""
    return KeyRef(
        id=version.id,
        identity=KeyIdentity(system_title, logical_name, version.role.value, version.version),
        length=version.key_length,
        wrapped_key=version.wrapped_key,
        binding_mac=version.binding_mac,
    )
