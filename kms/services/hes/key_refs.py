"""What the keys in use are, without their values: the references a process keeps so that it can
unwrap a key again without the database, and name it in messages.

:class:`KeyRef` is one stored key version of a meter, :class:`SetupKeys` a security setup with
the key versions it has in use by role (:class:`InUse`: the ACTIVE one that protects and
verifies, and a PENDING successor that renewal brings in beside it, and why a role without an
ACTIVE version is unusable), :class:`DedicatedRef` the dedicated key of an open association.
Built by :mod:`kms.services.hes.setup_keys` and :mod:`kms.services.hes.dedicated_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kms.db import KeyRole, KeyState, KeyVersion
from kms.dlms.obis import format_logical_name
from kms.dlms.suites import SecuritySuite
from kms.dlms.system_title import format_system_title
from kms.errors import KeyStateError, NotFoundError
from kms.keystore.blobs import KeyIdentity

__all__ = [
    "ADVICE",
    "DedicatedRef",
    "InUse",
    "KeyRef",
    "SetupKeys",
    "dedicated_identity",
    "key_ref",
]

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


@dataclass(frozen=True)
class InUse:
    """The versions of one role a setup has in use, side by side.

    Renewal (seed step 6) stores the new version PENDING while the meter still runs on the
    ACTIVE one, so both must be at hand: the ACTIVE one protects and verifies, the PENDING one is
    what the renewal confirms (or abandons). Either may be missing.
    """

    active: KeyRef | None = None
    pending: KeyRef | None = None

    def refs(self) -> tuple[KeyRef, ...]:
        """The versions held (ACTIVE first)."""
        return tuple(ref for ref in (self.active, self.pending) if ref is not None)


@dataclass
class SetupKeys:
    """A security setup of a meter, as the protecting process knows it."""

    setup_id: int
    system_title: bytes
    logical_name: bytes
    suite: SecuritySuite
    #: The versions in use of each role that has an ACTIVE or a PENDING one.
    versions: dict[KeyRole, InUse]
    #: The state of each role that has no ACTIVE version (for the error when it is asked for).
    unusable: dict[KeyRole, KeyState]

    def key(self, role: KeyRole) -> KeyRef:
        """The ACTIVE version of ``role``, or :class:`~kms.errors.KeyStateError` saying why not.

        The one protect and verify use: a PENDING version is never used for an APDU.
        """
        ref = self.active(role)
        if ref is not None:
            return ref
        where = f"{format_system_title(self.system_title)} {format_logical_name(self.logical_name)}"
        state = self.unusable.get(role)
        if state is None:
            raise NotFoundError(f"meter {where} has no {role.value}")
        raise KeyStateError(f"the {role.value} of meter {where} is {state.value}: {ADVICE[state]}")

    def active(self, role: KeyRole) -> KeyRef | None:
        """The ACTIVE version of ``role``, if there is one."""
        in_use = self.versions.get(role)
        return in_use.active if in_use is not None else None

    def pending(self, role: KeyRole) -> KeyRef | None:
        """The newest PENDING version of ``role`` (the successor renewal brings in), if any."""
        in_use = self.versions.get(role)
        return in_use.pending if in_use is not None else None

    def refs(self) -> tuple[KeyRef, ...]:
        """Every version held, of every role (what to forget when the setup goes)."""
        return tuple(ref for in_use in self.versions.values() for ref in in_use.refs())


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
