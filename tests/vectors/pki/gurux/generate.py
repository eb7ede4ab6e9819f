"""Regenerate the gurux-dlms CSR fixtures in this folder (see readme.md).

Run from the repository root with the project venv:

    .venv/bin/python tests/vectors/pki/gurux/generate.py

gurux-dlms draws its keys and ECDSA nonces from Python's ``random`` module, so seeding it makes
the output byte-for-byte reproducible with gurux-dlms 1.0.203.
"""

from __future__ import annotations

import random
from pathlib import Path

from gurux_dlms.asn.GXAsn1Converter import GXAsn1Converter
from gurux_dlms.asn.GXPkcs10 import GXPkcs10
from gurux_dlms.ecdsa.enums import Ecc
from gurux_dlms.ecdsa.GXEcdsa import GXEcdsa

HERE = Path(__file__).resolve().parent
SYSTEM_TITLE = bytes.fromhex("4D4D4D0000BC614E")
#: seed -> file name. Seed 1 gives r and s below 2**255, a valid DER signature; seed 3 gives an r
#: whose top bit is set, which gurux-dlms writes without the 0x00 pad: a negative INTEGER.
FIXTURES = {1: "csr_p256_valid.der", 3: "csr_p256_negative_integer.der"}


def gurux_csr(seed: int, system_title: bytes = SYSTEM_TITLE) -> bytes:
    """A P-256 CSR made by gurux-dlms with ``random`` seeded (its P-384 signing is broken)."""
    state = random.getstate()
    try:
        random.seed(seed)
        pair = GXEcdsa.generateKeyPair(Ecc.P256)
        subject = GXAsn1Converter.systemTitleToSubject(system_title)
        return bytes(GXPkcs10.createCertificateSigningRequest(pair, subject).encoded)
    finally:
        random.setstate(state)


def main() -> None:
    for seed, name in FIXTURES.items():
        (HERE / name).write_bytes(gurux_csr(seed))
        print(name)


if __name__ == "__main__":
    main()
