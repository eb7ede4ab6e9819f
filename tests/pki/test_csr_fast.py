"""kms.pki.csr's hand decoder of the common CSR shape: for any input, good or damaged, load_csr
answers exactly what the strict asn1crypto decoder answers (the same request, or the same error
and message), and the meters' own shapes do take the hand path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms.errors import CertificateProfileError, InputError, InvalidSignature
from kms.pki import csr
from tests.pki.support import METER_ST, mutate, private_key
from tests.utils import VECTORS_DIR

GURUX_DIR = VECTORS_DIR / "pki" / "gurux"


def _csr(curve: str, seed: int, cn: str, printable: bool = False) -> bytes:
    key = private_key(curve, seed)
    kind = _ASN1Type.PrintableString if printable else _ASN1Type.UTF8String
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, cn, _type=kind)])
    hash_algorithm = hashes.SHA384() if curve == "P-384" else hashes.SHA256()
    request = cx509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hash_algorithm)
    return request.public_bytes(serialization.Encoding.DER)


CN = METER_ST.hex().upper()
#: Shapes meters send: the hand decoder takes each of them.
PLAIN = [
    _csr("P-256", 81, CN),
    _csr("P-384", 82, CN),
    _csr("P-256", 83, CN.lower()),
    _csr("P-256", 84, CN, printable=True),
    (GURUX_DIR / "csr_p256_valid.der").read_bytes(),
    (GURUX_DIR / "csr_p256_negative_integer.der").read_bytes(),  # its signature fails
]
#: Shapes the hand decoder leaves to asn1crypto (other subject, other pairing).
OTHER = [
    _csr("P-256", 85, "Meter 0001"),
    _csr("P-256", 86, CN[:-1]),
    cx509.CertificateSigningRequestBuilder()
    .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, CN)]))
    .sign(private_key("P-256", 87), hashes.SHA384())
    .public_bytes(serialization.Encoding.DER),
]


def _answer(data: bytes) -> tuple[object, ...]:
    try:
        request = csr.load_csr(data, "fuzz.csr")
    except (InputError, CertificateProfileError, InvalidSignature) as error:
        return (type(error).__name__, str(error))
    return (
        request.der,
        request.subject.dump(),
        request.system_title,
        request.public_key.dump(),
        request.curve,
    )


@pytest.fixture
def decoder_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """load_csr with the hand path switched off: the asn1crypto decoder answers everything."""
    with monkeypatch.context() as patch:
        patch.setattr(csr, "_plain", lambda _data: None)
        yield


def _both(data: bytes) -> tuple[tuple[object, ...], tuple[object, ...]]:
    fast = _answer(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csr, "_plain", lambda _data: None)
        slow = _answer(data)
    return fast, slow


@pytest.mark.parametrize("data", PLAIN, ids=range(len(PLAIN)))
def test_meter_shapes_take_the_hand_path_and_agree(data: bytes) -> None:
    assert csr._plain(data) is not None
    fast, slow = _both(data)
    assert fast == slow


@pytest.mark.parametrize("data", OTHER, ids=range(len(OTHER)))
def test_other_shapes_are_left_to_the_decoder(data: bytes) -> None:
    assert csr._plain(data) is None
    fast, slow = _both(data)
    assert fast == slow and fast[0] == "CertificateProfileError"


def test_pem_takes_the_hand_path_too() -> None:
    pem = cx509.load_der_x509_csr(PLAIN[0]).public_bytes(serialization.Encoding.PEM)
    assert _answer(pem) == _answer(PLAIN[0])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_csrs_get_the_decoders_answer(data: st.DataObject) -> None:
    """Bit flips, truncations, insertions, deletions and bad lengths anywhere (in the signature,
    the point, the CN, the headers): the hand path never accepts, refuses or words a refusal
    differently from the strict decoder."""
    damaged = mutate(data, data.draw(st.sampled_from(PLAIN)))
    fast, slow = _both(damaged)
    assert fast == slow
