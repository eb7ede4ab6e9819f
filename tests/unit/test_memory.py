"""kms.memory: the one way the KMS wipes a secret it holds."""

from __future__ import annotations

from kms.memory import zeroise


def test_zeroise_overwrites_in_place_and_keeps_the_length() -> None:
    secret = bytearray(b"\x5a" * 33)
    view = memoryview(secret)  # another reference sees the same zeros: no copy was made
    zeroise(secret)
    assert secret == bytearray(33)
    assert bytes(view) == bytes(33)
    view.release()


def test_an_empty_buffer_stays_empty() -> None:
    empty = bytearray()
    zeroise(empty)
    assert empty == bytearray()
