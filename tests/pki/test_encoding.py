"""kms.pki.encoding: strict DER/PEM loading, PEM output as pyca writes it, mutated input."""

from __future__ import annotations

import base64
import contextlib

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms.errors import CertificateProfileError, InputError, InvalidSignature
from kms.pki import encoding
from kms.pki.profiles import check_certificate
from tests.pki.support import Pki, make_pki, mutate, to_pyca

_PKI = make_pki()
LEAF = _PKI.leaf("P-256")
LEAF_DER = LEAF.dump()
LEAF_PEM = encoding.certificate_pem(LEAF)
BUNDLE = (
    encoding.certificate_pem(_PKI.issuing["P-256"]) + b"\n" + encoding.certificate_pem(_PKI.root)
)


def test_pem_is_what_pyca_writes(pki: Pki) -> None:
    for certificate in (pki.root, pki.issuing["P-384"], pki.leaf("P-384")):
        expected = to_pyca(certificate).public_bytes(serialization.Encoding.PEM)
        assert encoding.certificate_pem(certificate) == expected


def test_load_der_and_pem() -> None:
    assert encoding.load_certificate(LEAF_DER).dump() == LEAF_DER
    assert encoding.load_certificate(LEAF_PEM).dump() == LEAF_DER
    assert encoding.load_certificate(b"\n  " + LEAF_PEM.replace(b"\n", b"\r\n")).dump() == LEAF_DER
    assert encoding.load_certificate(bytearray(LEAF_DER)).dump() == LEAF_DER


def test_load_certificates() -> None:
    loaded = encoding.load_certificates(BUNDLE, "chain.pem")
    assert [c.dump() for c in loaded] == [_PKI.issuing["P-256"].dump(), _PKI.root.dump()]
    assert [c.dump() for c in encoding.load_certificates(LEAF_DER)] == [LEAF_DER]


def _pem(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return f"-----BEGIN {label}-----\n".encode() + body + f"-----END {label}-----\n".encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "certificate: empty input"),
        (b"hello", "certificate: not DER or PEM"),
        (LEAF_DER + b"\x00", "certificate: bad DER: .*trailing data"),
        (LEAF_DER[:-1], "certificate: bad DER"),
        (
            _pem("CERTIFICATE REQUEST", LEAF_DER),
            "PEM block is CERTIFICATE REQUEST, expected CERTIFICATE",
        ),
        (
            LEAF_PEM.replace(b"END CERTIFICATE", b"END X509 CRL"),
            "PEM BEGIN CERTIFICATE ends with END X509 CRL",
        ),
        (b"issued by us\n" + LEAF_PEM, "not DER or PEM"),
        (LEAF_PEM + b"trailer\n", "text outside a PEM block"),
        (LEAF_PEM.replace(b"\n", b"\n!", 1), "bad base64"),
        (LEAF_PEM.replace(b"\n", b" trailer\n", 1), "no complete PEM block"),
        (LEAF_PEM.replace(b"-----END", b"A-----END", 1), "bad base64"),
        (LEAF_PEM + LEAF_PEM, "2 PEM blocks, expected one"),
        (b"-----BEGIN CERTIFICATE-----\n", "no complete PEM block"),
        (_pem("CERTIFICATE", b"\x30\x03\x02\x01\x01"), "bad DER"),
    ],
)
def test_load_certificate_refuses(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        encoding.load_certificate(data, source="meter.pem")
    assert caught.value.source == "meter.pem"
    assert caught.value.message.startswith("meter.pem: certificate")


def test_bundle_names_the_bad_member() -> None:
    bad = BUNDLE + _pem("CERTIFICATE", b"\x30\x00")
    with pytest.raises(InputError, match="certificate 3: bad DER"):
        encoding.load_certificates(bad, "chain.pem")
    with pytest.raises(InputError, match="PEM block is X509 CRL"):
        encoding.load_certificates(BUNDLE + _pem("X509 CRL", b"\x30\x00"))


def test_pem_or_der_by_suffix() -> None:
    assert encoding.pem_or_der(LEAF_DER, "CERTIFICATE", ".der") == LEAF_DER
    assert encoding.pem_or_der(LEAF_DER, "CERTIFICATE", ".DER") == LEAF_DER
    assert encoding.pem_or_der(LEAF_DER, "CERTIFICATE", ".pem") == LEAF_PEM
    assert encoding.pem_or_der(LEAF_DER, "CERTIFICATE", "") == LEAF_PEM
    assert encoding.pem_or_der(b"\x30\x00", "X509 CRL", ".crl").startswith(b"-----BEGIN X509 CRL")
    with pytest.raises(ValueError, match="not a PEM label"):
        encoding.pem_or_der(b"", "x509 crl", ".pem")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_certificates_fail_cleanly(data: st.DataObject) -> None:
    """Only the three documented errors may come out, of the loader or of the profile check
    that follows a successful load (a flipped bit can leave a well-formed certificate)."""
    base = data.draw(st.sampled_from([LEAF_DER, _PKI.root.dump(), _PKI.issuing["P-384"].dump()]))
    mutated = mutate(data, base)
    try:
        certificate = encoding.load_certificate(mutated, "fuzz")
        check_certificate(certificate, issuer=_PKI.issuing["P-256"])
    except (InputError, CertificateProfileError, InvalidSignature):
        pass


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_pem_fails_cleanly(data: st.DataObject) -> None:
    mutated = mutate(data, LEAF_PEM)
    with contextlib.suppress(InputError):
        encoding.load_certificate(mutated, "fuzz.pem")
