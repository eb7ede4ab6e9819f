"""The per-process cache of keys unwrapped for use: bounded, idle-expiring, zeroising.

Unwrapping a stored blob into a session object costs ~370 us on SoftHSM and GCM under a session
key ~38 us (docs/token.md section 12), so unwrapping per APDU would make protection ten times
slower.
The cache keeps what a key was unwrapped into, keyed by its ``key_version`` id (or any other
hashable name: an association's dedicated key is cached under its own):

* an encryption key (GUEK, GBEK) as a session object in the token -- its value never leaves it;
* the authentication key as a ``bytearray`` of its value -- the named exception of docs/token.md
  section 8 (``ak_on_host``): no PKCS#11 mechanism takes AAD from a key object.

At most ``capacity`` entries are kept (least recently used goes first) and an entry unused for
``idle_seconds`` goes at the next access. Whatever leaves the cache is destroyed at once: a
session object is destroyed in the token, a ``bytearray`` is overwritten with zeros. A renewed or
revoked key version is evicted by :meth:`KeyCache.evict`. The cache is not thread-safe on its own;
its owner (the APDU service) serialises access, as the token needs anyway.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from kms.hsm import Hsm, SessionKey
from kms.memory import zeroise

__all__ = ["CachedKey", "KeyCache"]

CachedKey = SessionKey | bytearray


@dataclass
class _Entry:
    value: CachedKey = field(repr=False)  # an AK's bytes, or a key's handle: never shown
    last_used: float = 0.0


class KeyCache:
    """Least-recently-used cache of unwrapped keys, by key version id."""

    def __init__(
        self,
        hsm: Hsm,
        capacity: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[Hashable], None] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("the key cache holds at least one key")
        if idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")
        self._hsm = hsm
        self._capacity = capacity
        self._idle = idle_seconds
        self._clock = clock
        #: Told the name of every entry that leaves, so holders of the key can let go too.
        self._on_evict = on_evict
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key_version_id: object) -> bool:
        return key_version_id in self._entries

    def get(self, key_version_id: Hashable) -> CachedKey | None:
        """The cached key, marked as just used, or ``None`` (expired entries go first)."""
        now = self._clock()
        self._expire(now)
        entry = self._entries.get(key_version_id)
        if entry is None:
            return None
        entry.last_used = now
        self._entries.move_to_end(key_version_id)
        return entry.value

    def touch(self, key_version_id: Hashable, value: CachedKey) -> bool:
        """Whether ``value`` is still the cached entry (then marked as just used).

        For a holder that keeps a reference to a cached key between calls (a prepared sender):
        once the cache has destroyed the key, this is false and the holder must look it up again.
        """
        entry = self._entries.get(key_version_id)
        if entry is None or entry.value is not value:
            return False
        entry.last_used = self._clock()
        self._entries.move_to_end(key_version_id)
        return True

    def put(self, key_version_id: Hashable, value: CachedKey) -> None:
        """Cache ``value``; the cache now owns it and destroys it when it leaves."""
        now = self._clock()
        self._expire(now)
        if key_version_id in self._entries:
            self.evict(key_version_id)
        self._entries[key_version_id] = _Entry(value, now)
        while len(self._entries) > self._capacity:
            name, entry = self._entries.popitem(last=False)
            self._destroy(name, entry.value)

    def evict(self, key_version_id: Hashable) -> bool:
        """Destroy and forget one key version's entry; whether there was one."""
        entry = self._entries.pop(key_version_id, None)
        if entry is None:
            return False
        self._destroy(key_version_id, entry.value)
        return True

    def clear(self) -> None:
        """Destroy every entry (at close)."""
        while self._entries:
            name, entry = self._entries.popitem(last=False)
            self._destroy(name, entry.value)

    def _expire(self, now: float) -> None:
        # Entries are in order of last use, so the expired ones are at the front.
        while self._entries:
            key_version_id, entry = next(iter(self._entries.items()))
            if now - entry.last_used < self._idle:
                return
            del self._entries[key_version_id]
            self._destroy(key_version_id, entry.value)

    def _destroy(self, name: Hashable, value: CachedKey) -> None:
        if self._on_evict is not None:
            self._on_evict(name)
        if isinstance(value, bytearray):
            zeroise(value)
        else:
            self._hsm.destroy(value)
