"""Generate vectors.txt with pyca/cryptography: the Green Book 8.1 request under suites 1 and 2.

Run from the repository root: ``.venv/bin/python tests/vectors/custom/gcm-suites-1-2/generate.py``.
Checked independently by verify.py (gurux-dlms).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

EK32 = bytes(range(32))
AK32 = bytes(range(0xD0, 0xF0))
ST = bytes.fromhex("4D4D4D0000BC614E")
IC = 0x01234567
APDU = bytes.fromhex("C0010000080000010000FF0200")


def cipher(ek: bytes, ak: bytes, sc: int) -> bytes:
    iv = ST + IC.to_bytes(4, "big")
    if sc & 0x30 == 0x30:
        payload = AESGCM(ek).encrypt(iv, APDU, bytes([sc]) + ak)[: len(APDU) + 12]
    elif sc & 0x10:
        payload = APDU + AESGCM(ek).encrypt(iv, b"", bytes([sc]) + ak + APDU)[:12]
    else:
        payload = AESGCM(ek).encrypt(iv, APDU, b"")[: len(APDU)]
    body = bytes([sc]) + IC.to_bytes(4, "big") + payload
    return bytes([0xC8, len(body)]) + body


def main() -> None:
    lines = [
        "# Self-generated (NOT from a standard): the Green Book Table 40 get-request (8.1) under",
        "# suite 1 (16-byte EK/AK: the first 16 bytes below) and suite 2 (32-byte EK/AK), made",
        "# by generate.py (pyca/cryptography), checked by verify.py (gurux-dlms);",
        "# docs/dlms-security.md section 8.6 prints COUNT 2 and the tag of COUNT 3.",
        "",
    ]
    count = 0
    for suite, length in ((1, 16), (2, 32)):
        for mode in (0x10, 0x20, 0x30):
            sc = mode | suite
            ek, ak = EK32[:length], AK32[:length]
            lines += [
                f"COUNT = {count}",
                f"EK = {ek.hex()}",
                f"AK = {ak.hex()}",
                f"SYSTEM_TITLE = {ST.hex()}",
                f"IC = {IC:08x}",
                f"SC = {sc:02x}",
                f"APDU = {APDU.hex()}",
                f"CIPHERED = {cipher(ek, ak, sc).hex()}",
                "",
            ]
            count += 1
    Path(__file__).with_name("vectors.txt").write_text("\n".join(lines), encoding="ascii")


if __name__ == "__main__":
    main()
