"""kms.pki._der: the schema-free DER rules the loaders add on top of asn1crypto's BER parser."""

from __future__ import annotations

import pytest
from asn1crypto import core, x509
from cryptography import x509 as cx509
from hypothesis import given
from hypothesis import strategies as st

from kms.errors import InputError
from kms.pki import encoding
from kms.pki._der import DerError, check_der
from tests.pki.support import Pki
from tests.utils import VECTORS_DIR


def test_everything_real_passes(pki: Pki) -> None:
    for certificate in (pki.root, pki.issuing["P-256"], pki.leaf("P-384")):
        check_der(certificate.dump())
    check_der((VECTORS_DIR / "pki" / "gurux" / "csr_p256_valid.der").read_bytes())


@pytest.mark.parametrize(
    ("data", "reason", "offset"),
    [
        (b"\x30\x80\x02\x01\x01\x00\x00", "indefinite length", 0),
        (b"\x30\x81\x03\x02\x01\x01", "non-minimal length", 0),
        (b"\x30\x82\x00\x83" + b"\x04\x81\x80" + bytes(128), "non-minimal length", 0),
        (b"\x30\x85\x01\x00\x00\x00\x00", "length out of range", 0),
        (b"\x30\x03\x02\x01", "length 3 runs past the end", 0),
        (b"\x30\x03\x02\x02\x01", "length 2 runs past the end", 2),
        (b"\x30\x03\x02\x01\x01\x00", "1 bytes of trailing data", 5),
        (b"\x30\x04\x24\x02\x04\x00", "constructed string", 2),
        (b"\x30\x03\x01\x01\x01", "BOOLEAN is not 00 or FF", 2),
        (b"\x30\x04\x02\x02\x00\x7f", "non-minimal INTEGER", 2),
        (b"\x30\x04\x02\x02\xff\x80", "non-minimal INTEGER", 2),
        (b"\x30\x02\x02\x00", "empty INTEGER", 2),
        (b"\x30\x03\x03\x01\x01", "bad BIT STRING unused-bits octet", 2),
        (b"\x30\x04\x03\x02\x08\x00", "bad BIT STRING unused-bits octet", 2),
        (b"\x30\x03\x1f\x80\x01", "bad high tag number", 2),
        (b"\x30", "truncated header", 0),
        (b"", "empty input", 0),
    ],
)
def test_rules(data: bytes, reason: str, offset: int) -> None:
    with pytest.raises(DerError) as caught:
        check_der(data)
    assert (caught.value.reason, caught.value.offset) == (reason, offset)


def test_depth_is_bounded() -> None:
    nested = b"\x30\x00"
    for _ in range(40):  # 40 SEQUENCEs of SEQUENCE: 82 bytes, short-form lengths throughout
        nested = bytes([0x30, len(nested)]) + nested
    with pytest.raises(DerError, match="nested too deep"):
        check_der(nested)
    check_der(nested[-2 * 30 :])  # 30 levels are fine


@given(st.integers(min_value=-(2**200), max_value=2**200))
def test_minimal_integers_pass(value: int) -> None:
    encoded = core.Integer(value).dump()
    check_der(bytes([0x30, len(encoded)]) + encoded)


def test_a_ber_certificate_asn1crypto_accepts_is_refused(pki: Pki) -> None:
    """Re-encode the outer length of a certificate in a longer form than needed: asn1crypto loads
    it and its signature still verifies (the TBS bytes are untouched), OpenSSL/pyca refuse it."""
    der = pki.leaf("P-256").dump()
    assert der[1] == 0x82
    ber = b"\x30\x83\x00" + der[2:]
    assert x509.Certificate.load(ber, strict=True).native["tbs_certificate"]["serial_number"]
    with pytest.raises(ValueError):
        cx509.load_der_x509_certificate(ber)
    with pytest.raises(InputError, match="certificate: bad DER: non-minimal length at offset 0"):
        encoding.load_certificate(ber)
