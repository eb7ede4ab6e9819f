"""kms.pki.csr: CSRs made by pyca and by gurux-dlms (test-only oracle), good and bad."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from asn1crypto import csr, keys, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kms.errors import CertificateProfileError, InputError, InvalidSignature
from kms.pki.csr import CertificateRequest, load_csr
from kms.pki.names import key_identifier
from tests.pki.support import METER_ST, mutate, private_key, public_key_info
from tests.utils import VECTORS_DIR

GURUX_DIR = VECTORS_DIR / "pki" / "gurux"
CN = METER_ST.hex().upper()


def pyca_csr(
    key: object = None,
    common_name: str | None = CN,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    encoding: serialization.Encoding = serialization.Encoding.DER,
) -> bytes:
    key = private_key("P-256", 61) if key is None else key
    if hash_algorithm is None:
        p384 = isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
        hash_algorithm = hashes.SHA384() if p384 else hashes.SHA256()
    attributes = (
        [] if common_name is None else [cx509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    request = (
        cx509.CertificateSigningRequestBuilder()
        .subject_name(cx509.Name(attributes))
        .sign(key, hash_algorithm)  # type: ignore[arg-type]
    )
    return request.public_bytes(encoding)


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
@pytest.mark.parametrize("encoding", [serialization.Encoding.DER, serialization.Encoding.PEM])
def test_good_csr(curve: str, encoding: serialization.Encoding) -> None:
    key = private_key(curve, 62)
    data = pyca_csr(key, encoding=encoding)
    request = load_csr(data, "meter.csr")
    assert isinstance(request, CertificateRequest)
    assert request.system_title == METER_ST
    assert request.curve == curve
    assert request.public_key.dump() == public_key_info(key).dump()
    assert key_identifier(request.public_key) == key_identifier(public_key_info(key))
    assert request.subject.native == {"common_name": CN}
    if encoding is serialization.Encoding.DER:
        assert request.der == data
    else:
        der = cx509.load_pem_x509_csr(data).public_bytes(serialization.Encoding.DER)
        assert request.der == der


def test_pem_new_certificate_request_label() -> None:
    pem = pyca_csr(encoding=serialization.Encoding.PEM).replace(
        b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"
    )
    assert load_csr(pem).system_title == METER_ST


def test_lower_case_cn_is_accepted_and_the_title_is_canonical() -> None:
    request = load_csr(pyca_csr(common_name=CN.lower()))
    assert request.system_title == METER_ST
    assert request.subject.native == {"common_name": CN.lower()}


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def test_bad_signature() -> None:
    good = pyca_csr()
    # the last byte is the last byte of s inside the signature BIT STRING
    with pytest.raises(InvalidSignature, match=r"^CSR signature does not verify$"):
        load_csr(_flip(good, len(good) - 1))
    # a changed subject (still a valid system title) breaks the signature too
    offset = good.index(CN.encode()) + 15
    with pytest.raises(InvalidSignature, match="CSR signature does not verify"):
        load_csr(_flip(good, offset))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (
            lambda: pyca_csr(common_name="Meter 0001"),
            CertificateProfileError,
            "CSR subject CN 'Meter 0001' is not a system title",
        ),
        (
            lambda: pyca_csr(common_name=CN[:-1]),
            CertificateProfileError,
            "is not a system title \\(16 hex characters\\)",
        ),
        (lambda: pyca_csr(common_name=None), CertificateProfileError, "CSR subject has no CN"),
        (
            lambda: pyca_csr(rsa.generate_private_key(65537, 2048)),
            CertificateProfileError,
            "CSR public key algorithm is rsa, not id-ecPublicKey",
        ),
        (
            lambda: pyca_csr(
                ec.generate_private_key(ec.SECP521R1()), hash_algorithm=hashes.SHA512()
            ),
            CertificateProfileError,
            "CSR public key curve secp521r1 is not P-256 or P-384",
        ),
        (
            lambda: pyca_csr(hash_algorithm=hashes.SHA384()),
            CertificateProfileError,
            "CSR for a P-256 key is signed with ecdsa-with-SHA384",
        ),
        (
            lambda: pyca_csr(hash_algorithm=hashes.SHA512()),
            CertificateProfileError,
            "CSR signature algorithm sha512_ecdsa is not ecdsa-with-SHA256",
        ),
        (lambda: pyca_csr() + b"\x00", InputError, "CSR: bad DER: .*trailing data"),
        (lambda: pyca_csr()[:-3], InputError, "CSR: bad DER"),
        (lambda: b"", InputError, "CSR: empty input"),
        (lambda: b"CSR", InputError, "CSR: not DER or PEM"),
        (
            lambda: pyca_csr(encoding=serialization.Encoding.PEM).replace(
                b"END CERTIFICATE REQUEST", b"END CERTIFICATE REQUESTS"
            ),
            InputError,
            "PEM BEGIN CERTIFICATE REQUEST ends with END CERTIFICATE REQUESTS",
        ),
        (
            lambda: pyca_csr(encoding=serialization.Encoding.PEM).replace(
                b"CERTIFICATE REQUEST", b"CERTIFICATE"
            ),
            InputError,
            "PEM block is CERTIFICATE, expected CERTIFICATE REQUEST or NEW CERTIFICATE REQUEST",
        ),
    ],
)
def test_bad_csr(data: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        load_csr(data(), "meter.csr")  # type: ignore[operator]


def _hybrid(uncompressed: bytes) -> bytes:
    """X9.62's hybrid form: 06 or 07 (the parity of y), then x || y."""
    return bytes([6 + (uncompressed[-1] & 1)]) + uncompressed[1:]


@pytest.mark.parametrize("curve", ["P-256", "P-384"])
@pytest.mark.parametrize(("form", "words"), [("compressed", "compressed"), ("hybrid", "hybrid")])
def test_a_point_not_in_the_uncompressed_form_is_refused(curve: str, form: str, words: str) -> None:
    """RFC 5480 allows a compressed key; DLMS peers read x || y only, so the profile does not."""
    key = private_key(curve, 63)
    public = key.public_key()
    x962 = serialization.Encoding.X962
    point = (
        public.public_bytes(x962, serialization.PublicFormat.CompressedPoint)
        if form == "compressed"
        else _hybrid(public.public_bytes(x962, serialization.PublicFormat.UncompressedPoint))
    )
    uncompressed = public_key_info(key)
    info = csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": x509.Name.build({"common_name": CN}),
            "subject_pk_info": keys.PublicKeyInfo(
                {"algorithm": uncompressed["algorithm"], "public_key": point}
            ),
            "attributes": [],
        }
    )
    hash_name = "sha384" if curve == "P-384" else "sha256"
    algorithm = hashes.SHA384() if curve == "P-384" else hashes.SHA256()
    request = csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": f"{hash_name}_ecdsa"},
            "signature": key.sign(info.dump(), ec.ECDSA(algorithm)),
        }
    )
    if form == "compressed":  # pyca takes it, signature and all: only the profile refuses it
        assert cx509.load_der_x509_csr(request.dump()).is_signature_valid
    with pytest.raises(CertificateProfileError, match=f"{words} .*{curve} point"):
        load_csr(request.dump())


def test_version_must_be_v1() -> None:
    key = private_key("P-256", 63)
    request = csr.CertificationRequest.load(pyca_csr(key))
    info = csr.CertificationRequestInfo.load(request["certification_request_info"].dump())
    info["version"] = 1
    signature = key.sign(info.dump(force=True), ec.ECDSA(hashes.SHA256()))
    edited = csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": request["signature_algorithm"],
            "signature": signature,
        }
    )
    with pytest.raises(InputError, match="CSR: version field is 1, RFC 2986 defines only 0"):
        load_csr(edited.dump(force=True))


def test_input_error_names_the_source() -> None:
    with pytest.raises(InputError) as caught:
        load_csr(b"\x30\x00", "meter-4D4D.csr")
    assert caught.value.source == "meter-4D4D.csr"
    assert str(caught.value).startswith("meter-4D4D.csr: CSR: bad DER")


# --- gurux-dlms, the test-only oracle (tests/vectors/pki/gurux/readme.md) ----------------------

GURUX_FILES = {  # as recorded in tests/vectors/pki/gurux/readme.md
    "csr_p256_valid.der": ("205c990dd8a552c59cad466db58c8d494d64fbe9d6df2babe477eb2717bc7e7f"),
    "csr_p256_negative_integer.der": (
        "3efdf20f2ab914871db26f34af7ab92b8c1d018d90de512ed34ded10fb6a2241"
    ),
}


@pytest.mark.parametrize(("name", "sha256"), GURUX_FILES.items())
def test_gurux_fixtures_are_the_recorded_files(name: str, sha256: str) -> None:
    assert hashlib.sha256((GURUX_DIR / name).read_bytes()).hexdigest() == sha256


def test_gurux_csr_loads() -> None:
    request = load_csr((GURUX_DIR / "csr_p256_valid.der").read_bytes(), "gurux")
    assert request.system_title == METER_ST
    assert request.curve == "P-256"


def test_gurux_negative_integer_signature_is_refused() -> None:
    data = (GURUX_DIR / "csr_p256_negative_integer.der").read_bytes()
    assert not cx509.load_der_x509_csr(data).is_signature_valid  # pyca agrees
    with pytest.raises(InvalidSignature, match="CSR signature does not verify"):
        load_csr(data)


def _gurux_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gurux_generate", GURUX_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generator_reproduces_the_fixtures() -> None:
    generator = _gurux_generator()
    for seed, name in generator.FIXTURES.items():
        assert generator.gurux_csr(seed) == (GURUX_DIR / name).read_bytes()


def test_live_gurux_csrs_agree_with_pyca() -> None:
    """kms.pki accepts a gurux-dlms CSR exactly when pyca finds its signature valid."""
    generator = _gurux_generator()
    verdicts = set()
    for seed in range(100, 124):
        title = seed.to_bytes(8, "big")
        data = generator.gurux_csr(seed, title)
        valid = cx509.load_der_x509_csr(data).is_signature_valid
        if valid:
            assert load_csr(data).system_title == title
        else:
            with pytest.raises(InvalidSignature):
                load_csr(data)
        verdicts.add(valid)
    assert verdicts == {True, False}  # both paths were exercised


# --- mutated input ---------------------------------------------------------------------------

BASES = [
    pyca_csr(),
    pyca_csr(private_key("P-384", 64)),
    (GURUX_DIR / "csr_p256_valid.der").read_bytes(),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_csrs_fail_cleanly(data: st.DataObject) -> None:
    mutated = mutate(data, data.draw(st.sampled_from(BASES)))
    with contextlib.suppress(InputError, CertificateProfileError, InvalidSignature):
        load_csr(mutated, "fuzz")


def test_fixture_dir_has_a_readme() -> None:
    assert (GURUX_DIR / "readme.md").is_file()
    assert Path(GURUX_DIR / "generate.py").is_file()
