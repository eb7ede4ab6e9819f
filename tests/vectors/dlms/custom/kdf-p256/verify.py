"""Check kdf-p256/vectors.txt and kdf-p384/vectors.txt without pyca/cryptography.

Run from the repository root: ``.venv/bin/python tests/vectors/dlms/custom/kdf-p256/verify.py``.
Z is recomputed with textbook affine point arithmetic on the SEC 2 curve parameters (slow, not
constant time: test data only), the key with ``hashlib`` as Hash(00000001 || Z || OtherInfo), and
OtherInfo from its fields; so nothing here shares code with generate.py's pyca/OpenSSL.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# SEC 2 v2, 2.4.2 (secp256r1) and 2.5.1 (secp384r1): p, a, b, G, n.
CURVES = {
    "1": (
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        -3,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        (
            0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
            0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
        ),
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
    "2": (
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        -3,
        int(
            "B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
            "C656398D8A2ED19D2A85C8EDD3EC2AEF",
            16,
        ),
        (
            int(
                "AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A38"
                "5502F25DBF55296C3A545E3872760AB7",
                16,
            ),
            int(
                "3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C0"
                "0A60B1CE1D7E819D7A431D7C90EA0E5F",
                16,
            ),
        ),
        int(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77A"
            "ECEC196ACCC52973",
            16,
        ),
    ),
}

Point = tuple[int, int] | None


def add(curve: tuple, p1: Point, p2: Point) -> Point:  # type: ignore[type-arg]
    prime, a = curve[0], curve[1]
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % prime == 0:
        return None
    if p1 == p2:
        slope = (3 * x1 * x1 + a) * pow(2 * y1, -1, prime) % prime
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, prime) % prime
    x3 = (slope * slope - x1 - x2) % prime
    return x3, (slope * (x1 - x3) - y1) % prime


def multiply(curve: tuple, k: int, point: Point) -> Point:  # type: ignore[type-arg]
    result: Point = None
    while k:
        if k & 1:
            result = add(curve, result, point)
        point = add(curve, point, point)
        k >>= 1
    return result


def check(case: dict[str, str]) -> list[str]:
    problems = []
    curve = CURVES[case["suite"]]
    size = 32 if case["suite"] == "1" else 48
    z = bytes.fromhex(case["z"])
    if "d_u" in case:
        q_v = multiply(curve, int(case["d_v"], 16), curve[3])
        shared = multiply(curve, int(case["d_u"], 16), q_v)
        assert shared is not None
        if shared[0].to_bytes(size, "big") != z:
            problems.append("Z")
    info = bytes.fromhex("608574050803") + bytes([int(case["algorithm_id"])])
    info += bytes.fromhex(case["party_u_system_title"])
    if case["scheme"] == "static_unified":
        txid = bytes.fromhex(case["transaction_id"])
        info += bytes([len(txid)]) + txid
    info += bytes.fromhex(case["party_v_system_title"])
    if info != bytes.fromhex(case["other_info"]):
        problems.append("OTHER_INFO")
    digest = hashlib.new("sha256" if case["suite"] == "1" else "sha384", b"\0\0\0\1" + z + info)
    if digest.digest()[: 16 if case["suite"] == "1" else 32] != bytes.fromhex(case["derived_key"]):
        problems.append("DERIVED_KEY")
    return problems


def main() -> int:
    sys.path.insert(0, str(HERE.parents[4]))
    from tests.utils import load_nist_vectors

    bad = 0
    for folder in ("kdf-p256", "kdf-p384"):
        text = (HERE.parent / folder / "vectors.txt").read_text(encoding="ascii")
        cases = load_nist_vectors(text.splitlines())
        for number, case in enumerate(cases):
            problems = check(case)
            bad += bool(problems)
            if problems:
                print(f"{folder} COUNT {number}: {', '.join(problems)} disagree")
        print(f"{folder}: {len(cases)} cases checked")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
