"""Near misses of valid APDUs for the parsers' property tests (after test_key_transfer's)."""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["mutate", "mutated"]

# Up to 4 mutations, 3 bytes each: action, position, value (one binary draw is much faster than
# a list of tuples).
_MUTATIONS = st.binary(min_size=3, max_size=12)


def mutate(data: bytes, mutations: bytes) -> bytes:
    """Flip a bit, set a byte, insert a byte, delete a byte or truncate, at some position."""
    buffer = bytearray(data)
    for i in range(0, len(mutations) - 2, 3):
        action, where, value = mutations[i] % 5, mutations[i + 1], mutations[i + 2]
        position = (where * max(len(buffer), 1) // 256) if len(buffer) > 255 else where
        position %= len(buffer) + 1
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


def mutated(*seeds: bytes) -> st.SearchStrategy[bytes]:
    """Valid ``seeds`` with up to 4 mutations each, or a random length cut, or extra bytes."""
    pool = st.sampled_from(seeds)
    return st.one_of(
        st.tuples(pool, _MUTATIONS).map(lambda t: mutate(*t)),
        st.tuples(pool, st.integers(0, 1 << 16)).map(lambda t: t[0][: t[1] % (len(t[0]) + 1)]),
        st.tuples(pool, st.binary(min_size=1, max_size=3)).map(lambda t: t[0] + t[1]),
    )
