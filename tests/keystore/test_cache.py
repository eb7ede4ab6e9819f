"""kms.keystore.cache: bounded, idle-expiring, and whatever leaves it is destroyed (session
objects in the real token, AK bytes zeroised)."""

from __future__ import annotations

import pytest

from kms.errors import KMSError
from kms.hsm import Hsm, KeyUse
from kms.keystore.cache import KeyCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _alive(hsm: Hsm, key: object) -> bool:
    try:
        hsm.attributes(key)  # type: ignore[arg-type]
    except KMSError:
        return False
    return True


def test_the_least_recently_used_key_is_destroyed_beyond_capacity(hsm: Hsm) -> None:
    cache = KeyCache(hsm, capacity=2, idle_seconds=60)
    keys = [hsm.generate_key(KeyUse.EK, 16) for _ in range(3)]
    cache.put(1, keys[0])
    cache.put(2, keys[1])
    assert cache.get(1) is keys[0]  # 1 is now the most recent
    cache.put(3, keys[2])
    assert (1 in cache, 2 in cache, 3 in cache) == (True, False, True)
    assert not _alive(hsm, keys[1])
    assert _alive(hsm, keys[0]) and _alive(hsm, keys[2])
    cache.clear()
    assert len(cache) == 0
    assert not any(_alive(hsm, k) for k in keys)


def test_an_idle_entry_goes_at_the_next_access_and_bytes_are_zeroised(hsm: Hsm) -> None:
    clock = Clock()
    cache = KeyCache(hsm, capacity=10, idle_seconds=30, clock=clock)
    ak = bytearray(b"\xa5" * 16)
    key = hsm.generate_key(KeyUse.EK, 16)
    cache.put("ak", ak)
    cache.put("ek", key)
    clock.now += 20
    assert cache.get("ek") is key  # used: its idle time starts again
    clock.now += 15
    assert cache.get("ak") is None  # 35 s unused
    assert ak == bytearray(16)
    assert _alive(hsm, key)
    clock.now += 31
    assert cache.get("ek") is None
    assert not _alive(hsm, key)


def test_evict_and_replace_destroy_the_old_value(hsm: Hsm) -> None:
    cache = KeyCache(hsm, capacity=4, idle_seconds=60)
    first, second = bytearray(b"\x01" * 16), bytearray(b"\x02" * 16)
    cache.put(7, first)
    cache.put(7, second)
    assert first == bytearray(16) and cache.get(7) is second
    assert cache.evict(7) is True and second == bytearray(16)
    assert cache.evict(7) is False


@pytest.mark.parametrize(("capacity", "idle"), [(0, 1.0), (1, 0.0)])
def test_bad_settings_are_caller_bugs(hsm: Hsm, capacity: int, idle: float) -> None:
    with pytest.raises(ValueError):
        KeyCache(hsm, capacity=capacity, idle_seconds=idle)
