"""The PKCS#11 adapter (kms/hsm/adapter.py) against a real SoftHSM2 token.

Known answers come from outside the token: RFC 3394 section 4 (tests/vectors/rfc3394), the Green
Book glo-get-request example with SC 0x30 (the same vector as kms/hsm/selftest.py), and pyca's
``aes_key_wrap``, ``Cipher(AES, ECB)`` and ``AESGCM`` over keys of known value. A key's value is
known to a test only if the test put it into the token (``load_known_key``, a transport key of
known value) or wrapped it under a key of known value and unwrapped it with pyca.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature as PycaInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from cryptography.hazmat.primitives.serialization import load_der_public_key

from kms.config import Config, Pin
from kms.db import repository as repo
from kms.errors import (
    ConfigError,
    HsmError,
    InvalidTag,
    InvalidUnwrap,
    KMSError,
    PinIncorrect,
    SessionLost,
    TokenNotFound,
    UnsupportedMechanism,
)
from kms.hsm import Hsm, KeyUse, SessionKey, TokenKey
from kms.keystore import hierarchy
from tests.kms_fixtures import TRANSPORT_KEYS, Kms
from tests.utils import load_nist_vectors, load_vectors_from_file

RFC3394: list[dict[str, Any]] = load_vectors_from_file("rfc3394/section4.txt", load_nist_vectors)
RFC3394_GOOD = [v for v in RFC3394 if not v.get("fail")]
RFC3394_BAD = [v for v in RFC3394 if v.get("fail")]

# Green Book glo-get-request, security control 0x30 (authenticated and encrypted).
GB_EK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
GB_AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
GB_IV = bytes.fromhex("4D4D4D0000BC614E01234567")
GB_APDU = bytes.fromhex("C0010000080000010000FF0200")
GB_CIPHERTEXT = bytes.fromhex("411312FF935A47566827C467BC")
GB_TAG = bytes.fromhex("7D825C3BE4A77C3FCC056B6B")
GB_AAD = b"\x30" + GB_AK


def _kcv(value: bytes) -> bytes:
    """PKCS#11 CKA_CHECK_VALUE of an AES key: AES-ECB of a zero block, first 3 bytes."""
    encryptor = Cipher(algorithms.AES(value), modes.ECB()).encryptor()  # noqa: S305
    return (encryptor.update(bytes(16)) + encryptor.finalize())[:3]


def _vector_id(vector: dict[str, Any]) -> str:
    return f"COUNT{RFC3394.index(vector)}-K{len(vector['k']) * 4}-C{len(vector['c']) // 2}"


def _root_keys(kms: Kms) -> list[TokenKey]:
    return [kms.root.storage, kms.root.binding, kms.root.audit] + [
        TokenKey(label) for label in TRANSPORT_KEYS
    ]


# --- invariant 2: root keys are token objects that never leave the token ---------------------


def test_root_and_transport_keys_are_sensitive_non_extractable_token_objects(kms: Kms) -> None:
    for key in _root_keys(kms):
        attrs = kms.hsm.attributes(key)
        assert attrs["token"] is True, key.label
        assert attrs["sensitive"] is True, key.label
        assert attrs["extractable"] is False, key.label
        assert attrs["private"] is True, key.label


def test_generated_root_keys_were_never_extractable(kms: Kms) -> None:
    """Keys generated in the token report CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE.

    The two imported transport keys are left out on purpose: PKCS#11 2.40 section 4.4 has the
    token set both to false for an object made by C_CreateObject (its value was known outside),
    and SoftHSM does. A transport key *generated* through the ceremony is checked instead.
    """
    with kms.db.begin() as session:
        hierarchy.create_transport_key(kms.hsm, session, "generated-tk", None, 32)
    for key in [kms.root.storage, kms.root.binding, kms.root.audit, TokenKey("generated-tk")]:
        attrs = kms.hsm.attributes(key)
        assert attrs["never_extractable"] in (True, None), key.label
        assert attrs["always_sensitive"] in (True, None), key.label
        assert (attrs["token"], attrs["sensitive"], attrs["extractable"]) == (True, True, False)


def test_the_value_of_a_root_or_transport_key_cannot_be_read(kms: Kms) -> None:
    for key in _root_keys(kms):
        with pytest.raises(HsmError):
            kms.hsm.read_value(key)


@pytest.mark.parametrize("use", [KeyUse.KEK, KeyUse.EK, KeyUse.AK], ids=lambda u: u.value)
@pytest.mark.parametrize("length", [16, 32])
def test_per_meter_keys_are_sensitive_extractable_session_objects(
    hsm: Hsm, use: KeyUse, length: int
) -> None:
    key = hsm.generate_key(use, length)
    attrs = hsm.attributes(key)
    assert (attrs["token"], attrs["sensitive"], attrs["extractable"]) == (False, True, True)
    # Generated AKs are sensitive too: only an AK unwrapped AK_FOR_USE is readable (section 6).
    with pytest.raises(HsmError):
        hsm.read_value(key)
    assert "length" in repr(key)
    hsm.destroy(key)


def test_read_ak_refuses_a_generated_ak(hsm: Hsm) -> None:
    key = hsm.generate_key(KeyUse.AK, 16)
    with pytest.raises(UnsupportedMechanism):
        hsm.read_ak(key)


def test_an_ak_unwrapped_for_use_reads_back_its_value(hsm: Hsm) -> None:
    kek_value = secrets.token_bytes(16)
    kek = hsm.load_known_key(kek_value)
    ak = hsm.unwrap_key(kek, aes_key_wrap(kek_value, GB_AK), KeyUse.AK_FOR_USE, 16)
    assert hsm.attributes(ak)["sensitive"] is False
    assert hsm.read_ak(ak) == bytearray(GB_AK)


# --- key wrap -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", RFC3394_GOOD, ids=_vector_id)
def test_wrap_and_unwrap_match_rfc3394(hsm: Hsm, vector: dict[str, Any]) -> None:
    kek_value, key_value = bytes.fromhex(vector["k"]), bytes.fromhex(vector["p"])
    wrapped = bytes.fromhex(vector["c"])
    kek = hsm.load_known_key(kek_value)
    assert hsm.wrap_key(kek, hsm.load_known_key(key_value)) == wrapped
    # SoftHSM sets no CKA_CHECK_VALUE on an unwrapped key: compare by wrapping it again.
    unwrapped = hsm.unwrap_key(kek, wrapped, KeyUse.KEK, len(key_value))
    assert hsm.wrap_key(kek, unwrapped) == wrapped


@pytest.mark.parametrize("kek_length", [16, 32])
@pytest.mark.parametrize("key_length", [16, 32])
def test_wrap_matches_pyca(hsm: Hsm, kek_length: int, key_length: int) -> None:
    kek_value, key_value = secrets.token_bytes(kek_length), secrets.token_bytes(key_length)
    kek = hsm.load_known_key(kek_value)
    wrapped = hsm.wrap_key(kek, hsm.load_known_key(key_value))
    assert wrapped == aes_key_wrap(kek_value, key_value)
    assert len(wrapped) == key_length + 8


@pytest.mark.parametrize("use", [KeyUse.KEK, KeyUse.EK, KeyUse.AK], ids=lambda u: u.value)
def test_a_generated_key_wraps_to_what_pyca_unwraps(hsm: Hsm, use: KeyUse) -> None:
    """Wrapping a generated key under a key of known value reveals it to the test (only)."""
    kek_value = secrets.token_bytes(32)
    kek = hsm.load_known_key(kek_value)
    key = hsm.generate_key(use, 32)
    value = aes_key_unwrap(kek_value, hsm.wrap_key(kek, key))
    assert len(value) == 32
    assert hsm.check_value(key) == _kcv(value)


@pytest.mark.parametrize("vector", RFC3394_BAD, ids=_vector_id)
def test_unwrap_of_a_bad_rfc3394_blob_raises_invalid_unwrap(
    hsm: Hsm, vector: dict[str, Any]
) -> None:
    kek = hsm.load_known_key(bytes.fromhex(vector["k"]))
    wrapped = bytes.fromhex(vector["c"])
    length = 16 if len(wrapped) <= 24 else 32
    with pytest.raises(InvalidUnwrap) as info:
        hsm.unwrap_key(kek, wrapped, KeyUse.EK, length)
    assert type(info.value) is InvalidUnwrap


@pytest.mark.parametrize("position", [0, 7, 8, -1])
def test_unwrap_of_a_tampered_blob_raises_invalid_unwrap(hsm: Hsm, position: int) -> None:
    kek_value, key_value = secrets.token_bytes(32), secrets.token_bytes(16)
    kek = hsm.load_known_key(kek_value)
    tampered = bytearray(aes_key_wrap(kek_value, key_value))
    tampered[position] ^= 0x01
    with pytest.raises(InvalidUnwrap) as info:
        hsm.unwrap_key(kek, bytes(tampered), KeyUse.EK, 16)
    assert type(info.value) is InvalidUnwrap


@pytest.mark.parametrize(("blob_length", "length"), [(16, 16), (23, 16), (40, 16), (24, 32)])
def test_unwrap_of_a_blob_of_the_wrong_length_raises_invalid_unwrap(
    hsm: Hsm, blob_length: int, length: int
) -> None:
    kek = hsm.load_known_key(secrets.token_bytes(16))
    with pytest.raises(KMSError) as info:
        hsm.unwrap_key(kek, secrets.token_bytes(blob_length), KeyUse.EK, length)
    assert type(info.value) is InvalidUnwrap


def test_wrap_under_the_storage_key_round_trips(kms: Kms) -> None:
    key = kms.hsm.generate_key(KeyUse.EK, 16)
    wrapped = kms.hsm.wrap_key(kms.root.storage, key)
    back = kms.hsm.unwrap_key(kms.root.storage, wrapped, KeyUse.EK, 16)
    assert kms.hsm.wrap_key(kms.root.storage, back) == wrapped


# --- GCM ----------------------------------------------------------------------------------------


def test_gcm_matches_the_green_book_vector(hsm: Hsm) -> None:
    ek = hsm.load_known_key(GB_EK)
    protected = hsm.gcm_encrypt(ek, GB_IV, GB_AAD, GB_APDU, 96)
    assert protected == GB_CIPHERTEXT + GB_TAG
    assert hsm.gcm_decrypt(ek, GB_IV, GB_AAD, protected, 96) == GB_APDU


@pytest.mark.parametrize("position", [len(GB_CIPHERTEXT), len(GB_CIPHERTEXT) + len(GB_TAG) - 1, 0])
def test_gcm_decrypt_of_a_flipped_tag_or_ciphertext_raises_invalid_tag(
    hsm: Hsm, position: int
) -> None:
    ek = hsm.load_known_key(GB_EK)
    tampered = bytearray(GB_CIPHERTEXT + GB_TAG)
    tampered[position] ^= 0x80
    with pytest.raises(KMSError) as info:
        hsm.gcm_decrypt(ek, GB_IV, GB_AAD, bytes(tampered), 96)
    assert type(info.value) is InvalidTag


def test_gcm_decrypt_under_another_aad_raises_invalid_tag(hsm: Hsm) -> None:
    ek = hsm.load_known_key(GB_EK)
    with pytest.raises(KMSError) as info:
        hsm.gcm_decrypt(ek, GB_IV, b"\x30" + bytes(16), GB_CIPHERTEXT + GB_TAG, 96)
    assert type(info.value) is InvalidTag


@pytest.mark.parametrize("plaintext_length", [0, 1, 13, 64])
def test_gcm_matches_pyca_with_a_96_bit_tag(hsm: Hsm, plaintext_length: int) -> None:
    """An empty plaintext is GMAC, as the KMS runs it (SoftHSM has no CKM_AES_GMAC)."""
    value, iv = secrets.token_bytes(16), secrets.token_bytes(12)
    aad, plaintext = secrets.token_bytes(17), secrets.token_bytes(plaintext_length)
    full = AESGCM(value).encrypt(iv, plaintext, aad)
    expected = full[:plaintext_length] + full[plaintext_length:][:12]
    ek = hsm.load_known_key(value)
    assert hsm.gcm_encrypt(ek, iv, aad, plaintext, 96) == expected
    assert hsm.gcm_decrypt(ek, iv, aad, expected, 96) == plaintext


# --- check values -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [16, 32])
def test_check_value_of_a_known_key_matches_pyca(hsm: Hsm, length: int) -> None:
    value = secrets.token_bytes(length)
    assert hsm.check_value(hsm.load_known_key(value)) == _kcv(value)


def test_check_value_of_an_imported_transport_key_matches_pyca_and_the_database(
    kms: Kms,
) -> None:
    with kms.db.begin() as session:
        for label, value in TRANSPORT_KEYS.items():
            assert kms.hsm.check_value(TokenKey(label)) == _kcv(value)
            row = repo.root_key_by_label(session, label)
            assert row is not None
            assert row.check_value == _kcv(value)


# --- HMAC and ECDSA -----------------------------------------------------------------------------


def test_binding_mac_is_deterministic_and_depends_on_the_data(kms: Kms) -> None:
    first = kms.hsm.mac(kms.root.binding, b"meter 1, GUEK, v1")
    assert len(first) == 32  # HMAC-SHA256
    assert kms.hsm.mac(kms.root.binding, b"meter 1, GUEK, v1") == first
    assert kms.hsm.mac(kms.root.binding, b"meter 1, GUEK, v2") != first
    assert kms.hsm.mac(kms.root.binding, b"") != first


def test_audit_signature_verifies_with_pyca_on_p384_sha384(kms: Kms) -> None:
    message = b"audit checkpoint 1..42"
    digest = hashlib.sha384(message).digest()
    assert digest == hashlib.sha384(message).digest()
    raw = kms.hsm.sign_digest(kms.root.audit, digest)
    assert len(raw) == 96  # r || s, 48 bytes each
    public = load_der_public_key(kms.hsm.public_key_der(kms.root.audit))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP384R1)
    signature = encode_dss_signature(
        int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big")
    )
    public.verify(signature, message, ec.ECDSA(hashes.SHA384()))
    with pytest.raises(PycaInvalidSignature):
        public.verify(signature, message + b"!", ec.ECDSA(hashes.SHA384()))


def test_sign_digests_signs_each_digest_in_order(kms: Kms) -> None:
    messages = [f"certificate {i}".encode() for i in range(5)]
    digests = [hashlib.sha384(m).digest() for m in messages]
    raws = kms.hsm.sign_digests(kms.root.audit, digests)
    assert len(raws) == 5 and all(len(raw) == 96 for raw in raws)
    assert len(set(raws)) == 5  # ECDSA's random k: never the same signature twice
    public = load_der_public_key(kms.hsm.public_key_der(kms.root.audit))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for raw, message in zip(raws, messages, strict=True):
        signature = encode_dss_signature(
            int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big")
        )
        public.verify(signature, message, ec.ECDSA(hashes.SHA384()))
    with pytest.raises(PycaInvalidSignature):  # the first signature is not the second's
        signature = encode_dss_signature(
            int.from_bytes(raws[0][:48], "big"), int.from_bytes(raws[0][48:], "big")
        )
        public.verify(signature, messages[1], ec.ECDSA(hashes.SHA384()))
    assert kms.hsm.sign_digests(kms.root.audit, []) == []


# --- threads: one shared Hsm, one lock ------------------------------------------------------------


def test_eight_threads_share_one_hsm(kms: Kms) -> None:
    """Without the adapter's lock SoftHSM dies here with SIGSEGV or CKR_GENERAL_ERROR."""
    hsm, storage, binding = kms.hsm, kms.root.storage, kms.root.binding
    messages = [f"message {i}".encode() for i in range(10)]
    expected_macs = [hsm.mac(binding, m) for m in messages]
    uses = [KeyUse.KEK, KeyUse.EK, KeyUse.AK]
    start = threading.Barrier(8)

    def work(worker: int) -> int:
        start.wait()
        live: list[tuple[SessionKey, bytes]] = []
        done = 0
        for i in range(200):
            step = i % 5
            if step == 0 or not live:
                key = hsm.generate_key(uses[(worker + i) % 3], 16 if (worker + i) % 2 else 32)
                live.append((key, hsm.check_value(key)))
            elif step == 1:
                key, _ = live[-1]
                wrapped = hsm.wrap_key(storage, key)
                assert len(wrapped) == key.length + 8
                assert hsm.wrap_key(storage, key) == wrapped  # RFC 3394 is deterministic
            elif step == 2:
                key, kcv = live[0]
                assert hsm.check_value(key) == kcv
            elif step == 3:
                assert hsm.mac(binding, messages[i % 10]) == expected_macs[i % 10]
            else:
                key, _ = live.pop(0)
                hsm.destroy(key)
            done += 1
        for key, _ in live:
            hsm.destroy(key)
        return done

    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(work, range(8)))
    assert counts == [200] * 8
    assert [hsm.mac(binding, m) for m in messages] == expected_macs


# --- lost sessions --------------------------------------------------------------------------------
#
# A real loss (token restart, device unplugged) cannot be staged inside a test process, and the
# adapter rightly offers no way to lose its session on purpose. Closing its python-pkcs11 session
# behind its back gives the token's own answer to a lost session (CKR_SESSION_HANDLE_INVALID) and,
# because it was the session that logged in, logs the application out, as a real loss does.


def _lose_session(hsm: Hsm) -> None:
    hsm.pkcs11_session.close()


def test_an_idempotent_call_recovers_a_lost_session_and_logs_in_again(kms: Kms) -> None:
    before = kms.hsm.mac(kms.root.binding, b"x")
    _lose_session(kms.hsm)
    # The binding key is CKA_PRIVATE: finding it again proves the reopened session logged in.
    assert kms.hsm.mac(kms.root.binding, b"x") == before
    key = kms.hsm.generate_key(KeyUse.EK, 16)
    assert len(kms.hsm.wrap_key(kms.root.storage, key)) == 24


# python-pkcs11's search iterator, dropped by the failed lookup, runs C_FindObjectsFinal on the dead
# session in its __del__ and reports SessionHandleInvalid as an unraisable exception: noise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_has_token_key_recovers_a_lost_session(kms: Kms) -> None:
    _lose_session(kms.hsm)
    assert kms.hsm.has_token_key(TokenKey("no-such-key")) is False
    assert kms.hsm.has_token_key(TokenKey(kms.root.audit.label, "public")) is True
    assert kms.hsm.generate_key(KeyUse.EK, 16).length == 16


def test_a_session_key_made_before_the_loss_raises_session_lost(kms: Kms) -> None:
    stale = kms.hsm.generate_key(KeyUse.EK, 16)
    _lose_session(kms.hsm)
    assert kms.hsm.mac(kms.root.binding, b"x")  # recovers
    with pytest.raises(KMSError) as info:
        kms.hsm.gcm_encrypt(stale, GB_IV, GB_AAD, GB_APDU, 96)
    assert type(info.value) is SessionLost
    with pytest.raises(SessionLost):
        kms.hsm.wrap_key(kms.root.storage, stale)
    with pytest.raises(SessionLost):
        kms.hsm.check_value(stale)
    kms.hsm.destroy(stale)  # a key that died with its session is already gone: no error


def test_a_non_idempotent_call_on_a_lost_session_raises_session_lost_then_recovers(
    kms: Kms,
) -> None:
    _lose_session(kms.hsm)
    with pytest.raises(SessionLost):
        kms.hsm.generate_key(KeyUse.EK, 16)
    assert kms.hsm.generate_key(KeyUse.EK, 16).length == 16


def test_a_closed_hsm_is_not_reopened(kms: Kms) -> None:
    kms.hsm.close()
    with pytest.raises(SessionLost):
        kms.hsm.mac(kms.root.binding, b"x")


# --- login and configuration errors -------------------------------------------------------------

WRONG_PIN = "wrong-pin-5f3c9a"


def _all_text(exc: BaseException) -> str:
    """Everything an operator could see of an error: str, repr, traceback, chained errors."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None:
        parts += [repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def test_a_wrong_pin_raises_pin_incorrect_without_showing_the_pin(kms_config: Config) -> None:
    with pytest.raises(KMSError) as info:
        Hsm(dataclasses.replace(kms_config, user_pin=Pin(WRONG_PIN)))
    assert type(info.value) is PinIncorrect
    text = _all_text(info.value)
    assert WRONG_PIN not in text
    assert kms_config.require_pin().reveal() not in text


def test_a_wrong_pin_is_refused_while_another_hsm_of_the_process_is_logged_in(
    hsm: Hsm, kms_config: Config
) -> None:
    with pytest.raises(PinIncorrect):
        Hsm(dataclasses.replace(kms_config, user_pin=Pin(WRONG_PIN))).close()


def test_an_unknown_token_label_raises_token_not_found(kms_config: Config) -> None:
    with pytest.raises(KMSError) as info:
        Hsm(dataclasses.replace(kms_config, token_label="no-such-token-label"))
    assert type(info.value) is TokenNotFound
    assert "no-such-token-label" in str(info.value)


def test_a_missing_pin_raises_config_error_naming_the_variables(kms_config: Config) -> None:
    with pytest.raises(KMSError) as info:
        Hsm(dataclasses.replace(kms_config, user_pin=None))
    assert type(info.value) is ConfigError
    assert "KMS_USER_PIN" in str(info.value)
