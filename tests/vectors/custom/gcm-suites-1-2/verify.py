"""Check vectors.txt with gurux-dlms (an implementation independent of generate.py's pyca).

Run from the repository root: ``.venv/bin/python tests/vectors/custom/gcm-suites-1-2/verify.py``;
``tests/dlms/test_vectors_protection.py`` runs the same check on every test run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.enums import Security
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from gurux_dlms.objects.enums.SecuritySuite import SecuritySuite

_SECURITY = {
    0x10: Security.AUTHENTICATION,
    0x20: Security.ENCRYPTION,
    0x30: Security.AUTHENTICATION_ENCRYPTION,
}


def gurux_cipher(case: dict[str, str]) -> bytes:
    """The ciphered APDU gurux-dlms builds for one case."""
    sc = int(case["sc"], 16)
    p = AesGcmParameter(
        0xC8,
        bytes.fromhex(case["system_title"]),
        bytes.fromhex(case["ek"]),
        bytes.fromhex(case["ak"]),
    )
    p.security = _SECURITY[sc & 0x30]
    p.securitySuite = SecuritySuite(sc & 0x0F)
    p.invocationCounter = int(case["ic"], 16)
    return bytes(GXDLMSChippering.encryptAesGcm(p, bytes.fromhex(case["apdu"])))


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from tests.utils import load_nist_vectors

    cases = load_nist_vectors(Path(__file__).with_name("vectors.txt").read_text().splitlines())
    bad = [c["sc"] for c in cases if gurux_cipher(c) != bytes.fromhex(c["ciphered"])]
    print(f"{len(cases) - len(bad)} of {len(cases)} cases agree with gurux-dlms", bad or "")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
