"""Generate kdf-p256/vectors.txt and kdf-p384/vectors.txt with pyca/cryptography.

Run from the repository root: ``.venv/bin/python tests/vectors/dlms/custom/kdf-p256/generate.py``.
Z comes from pyca's ECDH where both private keys are known (for docs/dlms-security.md 8.6 only
Z and d_U are known, so Z is carried as printed there), the key from pyca's ``ConcatKDFHash``,
and OtherInfo is written out here byte by byte from notes section 5, not by ``kms.dlms.kdf``.
Checked independently by verify.py (pure-Python curve arithmetic and hashlib).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

HERE = Path(__file__).resolve().parent
ALGORITHM_ID = bytes.fromhex("608574050803")  # DER content of 2.16.756.5.8.3, last arc appended
ST_U = bytes.fromhex("4D4D4D0000000001")
ST_V = bytes.fromhex("4D4D4D0000BC614E")
# The head-end (client) title of the test KMS: U in the Ephemeral Unified Model cases.
ST_CLIENT = bytes.fromhex("4B4D5300000000A1")
# RFC 6979 A.2.5 (P-256) and A.2.6 (P-384) private keys for party U.
D_U_256 = int("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16)
D_U_384 = int(
    "6B9D3DAD2E1B8C1C05B19875B6659F4DE23C3B667BF297BA9AA47740787137D8"
    "96D5724E4C70A825F872C9EA60D2EDF5",
    16,
)
# Group orders of P-256 and P-384 (SEC 2).
N_256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
N_384 = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)
# Party V: SHA-256 / SHA-384 of a fixed label, reduced modulo the group order.
D_V_256 = int.from_bytes(hashlib.sha256(b"kms test vector: party V, P-256").digest(), "big") % N_256
D_V_384 = int.from_bytes(hashlib.sha384(b"kms test vector: party V, P-384").digest(), "big") % N_384
# docs/dlms-security.md 8.6: Z of ECDH(d_U, Q_V) on P-256 (d_V printed only in part).
Z_NOTES = bytes.fromhex("6FA56CB9C3CC995ACD44E0C987925EC5B132A0B7CC37E25BE4055028DC715D5F")
TXID = bytes.fromhex("0000000000000001")


def party_u(scheme: str) -> bytes:
    return ST_CLIENT if scheme == "ephemeral_unified" else ST_U


def other_info(scheme: str, algorithm_id: int, txid: bytes) -> bytes:
    head = ALGORITHM_ID + bytes([algorithm_id]) + party_u(scheme)
    if scheme == "static_unified":
        return head + bytes([len(txid)]) + txid + ST_V
    return head + ST_V


def derive(suite: int, z: bytes, info: bytes) -> bytes:
    algorithm = hashes.SHA256() if suite == 1 else hashes.SHA384()
    return ConcatKDFHash(algorithm, 16 if suite == 1 else 32, info).derive(z)


def shared_secret(curve: ec.EllipticCurve, d_u: int, d_v: int) -> bytes:
    u = ec.derive_private_key(d_u, curve)
    return u.exchange(ec.ECDH(), ec.derive_private_key(d_v, curve).public_key())


def block(count: int, fields: dict[str, str]) -> list[str]:
    return [f"COUNT = {count}", *(f"{name} = {value}" for name, value in fields.items()), ""]


def cases(suite: int) -> list[dict[str, str]]:
    curve: ec.EllipticCurve = ec.SECP256R1() if suite == 1 else ec.SECP384R1()
    d_u, d_v = (D_U_256, D_V_256) if suite == 1 else (D_U_384, D_V_384)
    size = 32 if suite == 1 else 48
    gcm, wrap = (0, 2) if suite == 1 else (1, 3)
    z = shared_secret(curve, d_u, d_v)
    plan: list[tuple[str, int, bytes | None, bytes]] = []
    if suite == 1:
        plan += [("one_pass", gcm, None, Z_NOTES), ("static_unified", gcm, None, Z_NOTES)]
    plan += [
        ("one_pass", gcm, z, z),
        ("static_unified", gcm, z, z),
        ("ephemeral_unified", gcm, z, z),
        ("one_pass", wrap, z, z),
        ("static_unified", wrap, z, z),
    ]
    out = []
    for scheme, algorithm_id, known, secret in plan:
        txid = TXID if known is None else bytes.fromhex("0123456789ABCDEF")
        info = other_info(scheme, algorithm_id, txid)
        fields = {"SUITE": str(suite), "SCHEME": scheme, "ALGORITHM_ID": str(algorithm_id)}
        if known is not None:
            fields["D_U"] = d_u.to_bytes(size, "big").hex()
            fields["D_V"] = d_v.to_bytes(size, "big").hex()
        fields["Z"] = secret.hex()
        fields["PARTY_U_SYSTEM_TITLE"] = party_u(scheme).hex()
        fields["PARTY_V_SYSTEM_TITLE"] = ST_V.hex()
        if scheme == "static_unified":
            fields["TRANSACTION_ID"] = txid.hex()
        fields["OTHER_INFO"] = info.hex()
        fields["DERIVED_KEY"] = derive(suite, secret, info).hex()
        out.append(fields)
    return out


HEADER = [
    "# Self-generated (NOT from a standard): the SP 800-56A concatenation KDF as DLMS key",
    "# agreement uses it (docs/dlms-security.md section 5), made by generate.py (pyca/cryptography",
    "# ECDH and ConcatKDFHash), checked by verify.py (pure-Python curve arithmetic and hashlib).",
    "# SCHEME one_pass: OTHER_INFO = AlgorithmID || ST_U || ST_V; static_unified: AlgorithmID ||",
    "# ST_U || 08 || TRANSACTION_ID || ST_V; ephemeral_unified: AlgorithmID || ST_client (U) ||",
    "# ST_server (V). Z = x(d_U * Q_V); D_U/D_V absent where only Z is known.",
]


def main() -> None:
    for suite, folder in ((1, "kdf-p256"), (2, "kdf-p384")):
        lines = [*HEADER]
        if suite == 1:
            lines.append("# COUNT 0 and 1 are the two KDF vectors of docs/dlms-security.md 8.6.")
        lines.append("")
        for count, fields in enumerate(cases(suite)):
            lines += block(count, fields)
        (HERE.parent / folder / "vectors.txt").write_text("\n".join(lines), encoding="ascii")


if __name__ == "__main__":
    main()
