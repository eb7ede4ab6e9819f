"""RFC 3394 section 4 vectors checked with pyca/cryptography.

A stand-in until the token tests (tests/hsm) feed the same file to ``CKM_AES_KEY_WRAP``: it proves
the file and the loader, so a token test failing on it points at the token, not the vectors.
The key_transfer lengths follow from these vectors: a 16-byte key wraps to 24 bytes (4.1-4.3),
a 32-byte key to 40 bytes (4.6).
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from kms.dlms.key_transfer import WRAPPED_KEY_LENGTHS
from tests.utils import load_nist_vectors, load_vectors_from_file

VECTORS: list[dict[str, Any]] = load_vectors_from_file("rfc3394/section4.txt", load_nist_vectors)
GOOD = [vector for vector in VECTORS if not vector.get("fail")]
BAD = [vector for vector in VECTORS if vector.get("fail")]


def _id(vector: dict[str, Any]) -> str:
    return f"K{len(vector['k']) * 4}-C{len(vector['c']) // 2}"


def test_file_holds_the_six_rfc_cases_and_the_fail_cases() -> None:
    assert len(GOOD) == 6
    assert len(BAD) >= 1
    for vector in VECTORS:
        for name in ("k", "p", "c"):
            if name in vector:
                assert vector[name] == vector[name].lower()
                bytes.fromhex(vector[name])


@pytest.mark.parametrize("vector", GOOD, ids=_id)
def test_wrap(vector: dict[str, Any]) -> None:
    wrapping_key = bytes.fromhex(vector["k"])
    key_to_wrap = bytes.fromhex(vector["p"])
    assert aes_key_wrap(wrapping_key, key_to_wrap) == bytes.fromhex(vector["c"])


@pytest.mark.parametrize("vector", GOOD, ids=_id)
def test_unwrap(vector: dict[str, Any]) -> None:
    wrapping_key = bytes.fromhex(vector["k"])
    wrapped_key = bytes.fromhex(vector["c"])
    assert aes_key_unwrap(wrapping_key, wrapped_key) == bytes.fromhex(vector["p"])


@pytest.mark.parametrize("vector", BAD, ids=_id)
def test_unwrap_fails(vector: dict[str, Any]) -> None:
    wrapping_key = bytes.fromhex(vector["k"])
    wrapped_key = bytes.fromhex(vector["c"])
    with pytest.raises(InvalidUnwrap):
        aes_key_unwrap(wrapping_key, wrapped_key)


def test_key_transfer_lengths_match_the_vectors() -> None:
    by_key_length = {len(v["p"]) // 2: len(v["c"]) // 2 for v in GOOD}
    assert (by_key_length[16], by_key_length[32]) == WRAPPED_KEY_LENGTHS


class TestLoader:
    def test_blocks_comments_sections_and_fail(self) -> None:
        lines = [
            "# comment",
            "[SECTION = 1]",
            "",
            "COUNT = 0",
            "K = 00",
            "COUNT = 1",
            "K = 01",
            "FAIL",
        ]
        assert load_nist_vectors(lines) == [{"k": "00"}, {"k": "01", "fail": True}]

    @pytest.mark.parametrize(
        ("lines", "message"),
        [
            (["K = 00"], "line 1: 'K' before the first COUNT"),
            (["FAIL"], "line 1: FAIL before the first COUNT"),
            (["COUNT = 0", "garbage"], "line 2: expected 'name = value'"),
        ],
    )
    def test_rejects_malformed_lines(self, lines: list[str], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            load_nist_vectors(lines)
