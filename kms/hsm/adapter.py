"""The PKCS#11 adapter: the only way the KMS talks to its token.

:class:`Hsm` is the operations (key generation, wrap and unwrap, MAC, signatures, GCM, data
objects) on top of :class:`kms.hsm.session.TokenSession`, which owns the lock, the one login,
the retries after a lost session and the handles (see that module for why). The operations reach
the session through :class:`kms.hsm._token_access.TokenAccess` only, and the larger ones live in
modules of their own as functions of it, which :class:`Hsm` offers as methods: key wrap
(:mod:`kms.hsm.key_wrap`), EC signing keys (:mod:`kms.hsm.signing`), EC key agreement
(:mod:`kms.hsm.ecdh`), CA key backup (:mod:`kms.hsm.trusted_wrap`) and GCM
(:mod:`kms.hsm.gcm`). Every key template is written out in :mod:`kms.hsm.templates`; every
mechanism comes from the HSM profile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass

from kms import errors
from kms.config import Config, Pin
from kms.hsm import ecdh, key_wrap, signing, templates, trusted_wrap
from kms.hsm.gcm import TokenGcm
from kms.hsm.session import Key, SessionKey, TokenKey, TokenSession
from kms.hsm.templates import KeyUse

__all__ = ["Hsm", "Key", "SessionKey", "TokenKey", "TokenSigner", "open_hsm"]


class Hsm(TokenSession):
    """A logged-in connection to one token, safe to share between the threads of a process."""

    def attributes(self, key: Key) -> dict[str, Any]:
        """Security attributes of a key, for invariant checks (never its value)."""
        names = {
            "token": Attribute.TOKEN,
            "sensitive": Attribute.SENSITIVE,
            "extractable": Attribute.EXTRACTABLE,
            "always_sensitive": Attribute.ALWAYS_SENSITIVE,
            "never_extractable": Attribute.NEVER_EXTRACTABLE,
            "wrap_with_trusted": Attribute.WRAP_WITH_TRUSTED,
            "private": Attribute.PRIVATE,
        }

        def read() -> dict[str, Any]:
            obj = self.resolve(key)
            out: dict[str, Any] = {}
            for name, attr in names.items():
                try:
                    out[name] = obj[attr]
                except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
                    out[name] = None
            return out

        return self.call("read attributes", read, idempotent=True)

    def read_value(self, key: Key) -> bytes:
        """Try to read CKA_VALUE; for tests proving the token refuses (it raises HsmError)."""
        return bytes(self.call("read value", lambda: self.resolve(key)[Attribute.VALUE]))

    # --- root keys and ceremonies ------------------------------------------------------------

    def create_storage_key(self, label: str, key_id: bytes) -> TokenKey:
        """Generate the AES-256 storage key as a non-extractable token object."""
        self.call(
            "generate storage key",
            lambda: self.pkcs11_session.generate_key(
                KeyType.AES,
                256,
                store=True,
                capabilities=MechanismFlag(0),
                mechanism=self.profile.mechanism("aes_key_gen"),
                template=templates.storage_key(label, key_id),
            ),
        )
        return TokenKey(label)

    def create_binding_key(self, label: str, key_id: bytes) -> TokenKey:
        """Generate the 256-bit generic-secret HMAC key that binds blobs to their rows."""
        self.call(
            "generate binding key",
            lambda: self.pkcs11_session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                store=True,
                capabilities=MechanismFlag(0),
                mechanism=self.profile.mechanism("generic_secret_key_gen"),
                template=templates.binding_key(label, key_id),
            ),
        )
        return TokenKey(label)

    def create_ec_key_pair(
        self, label: str, key_id: bytes, curve: str, *, backup: bool = False
    ) -> TokenKey:
        """Generate an EC key pair as token objects; returns the private half.

        ``backup`` makes the private key wrappable under a trusted key only (CA keys).
        """
        return signing.create_ec_key_pair(self, label, key_id, curve, backup=backup)

    def public_key_der(self, key: TokenKey) -> bytes:
        """DER SubjectPublicKeyInfo of the public half of an EC key pair."""
        return signing.public_key_der(self, key)

    def create_transport_key(
        self, label: str, key_id: bytes, value: bytes | None, length: int
    ) -> TokenKey:
        """Bring a vendor's master key into the token (``value``), or generate one (``None``)."""
        template = templates.transport_key(label, key_id)
        if value is None:
            self.call(
                "generate transport key",
                lambda: self.pkcs11_session.generate_key(
                    KeyType.AES,
                    length * 8,
                    store=True,
                    capabilities=MechanismFlag(0),
                    mechanism=self.profile.mechanism("aes_key_gen"),
                    template=template,
                ),
            )
        else:
            if len(value) not in (16, 32):
                raise ValueError("a transport key is 16 or 32 bytes")
            template[Attribute.VALUE] = value
            self.call("import transport key", lambda: self.pkcs11_session.create_object(template))
        return TokenKey(label)

    def check_value(self, key: Key) -> bytes:
        """The token's CKA_CHECK_VALUE: first 3 bytes of AES-ECB of a zero block.

        SoftHSM 2.6.1 sets it on generated and created keys but leaves it empty on unwrapped
        ones, so the KMS records check values when it generates a key and never asks an
        unwrapped key for one; an empty answer is an error rather than a silent ``b""``.
        """
        value = bytes(
            self.call(
                "read check value",
                lambda: self.resolve(key)[Attribute.CHECK_VALUE],
                idempotent=isinstance(key, TokenKey),
            )
        )
        if len(value) != 3:
            raise errors.HsmError(
                f"token {self.token_label!r} reports no check value for this key "
                "(SoftHSM sets none on unwrapped keys)"
            )
        return value

    # --- per-meter session keys --------------------------------------------------------------

    def generate_key(self, use: KeyUse, length: int) -> SessionKey:
        """Generate an AES key as a sensitive session object."""
        if length not in (16, 32):
            raise ValueError("AES keys are 16 or 32 bytes")
        obj = self.call(
            "generate key",
            lambda: self.pkcs11_session.generate_key(
                KeyType.AES,
                length * 8,
                capabilities=MechanismFlag(0),
                mechanism=self.profile.mechanism("aes_key_gen"),
                template=templates.SESSION_KEYS[use],
            ),
        )
        return self.session_key(obj, length, use)

    def load_known_key(self, value: bytes) -> SessionKey:
        """A throwaway session key of known value, for known-answer self-tests only."""
        template = templates.known_answer_key()
        template[Attribute.VALUE] = value
        obj = self.call("create self-test key", lambda: self.pkcs11_session.create_object(template))
        return self.session_key(obj, len(value), KeyUse.EK)

    def wrap_key(self, wrapping_key: Key, key_to_wrap: SessionKey) -> bytes:
        """RFC 3394 AES key wrap of a session key, inside the token."""
        return key_wrap.wrap_key(self, wrapping_key, key_to_wrap)

    def unwrap_key(
        self, unwrapping_key: Key, wrapped_key: bytes, use: KeyUse, length: int
    ) -> SessionKey:
        """RFC 3394 unwrap into a session object; a bad blob raises InvalidUnwrap."""
        return key_wrap.unwrap_key(self, unwrapping_key, wrapped_key, use, length)

    # --- HLS secrets (mechanism 6) ----------------------------------------------------------

    def import_secret(self, value: bytes) -> SessionKey:
        """An HLS secret entering the KMS (an audited import): a sensitive session object,
        extractable only so that it can be wrapped under the storage key."""
        if not 1 <= len(value) <= 64:
            raise ValueError("an HLS secret is 1 to 64 bytes")
        template = dict(templates.SESSION_KEYS[KeyUse.SECRET])
        template[Attribute.VALUE] = bytes(value)
        obj = self.call("import HLS secret", lambda: self.pkcs11_session.create_object(template))
        return self.session_key(obj, len(value), KeyUse.SECRET)

    @staticmethod
    def secret_wrap_is_exact(length: int) -> bool:
        """Whether a secret of ``length`` bytes wraps with RFC 3394, which unwraps exactly.

        Other lengths need RFC 5649 (``key_wrap_pad``), whose unwrap SoftHSM 2.6.1 leaves
        padded: the unwrapped secret is then ``length`` rounded up to 8 bytes of which only the
        first ``length`` are the secret (the profile flag ``wrap_pad_unwrap_keeps_padding``).
        """
        return key_wrap.secret_wrap_is_exact(length)

    def wrap_secret(self, wrapping_key: Key, secret: SessionKey) -> bytes:
        """Wrap an HLS secret in the token: RFC 3394 when its length allows, else RFC 5649."""
        return key_wrap.wrap_secret(self, wrapping_key, secret)

    def unwrap_secret(
        self, unwrapping_key: Key, wrapped: bytes, length: int, *, readable: bool
    ) -> SessionKey:
        """Unwrap an HLS secret for use: sensitive (for C_DigestKey) unless ``readable``."""
        return key_wrap.unwrap_secret(self, unwrapping_key, wrapped, length, readable=readable)

    def digest_secret(self, secret: SessionKey, message: bytes) -> bytes:
        """SHA-256(secret || message) in the token (C_DigestKey, then C_DigestUpdate)."""
        mech = self.profile.mechanism("digest_key")
        return bytes(
            self.call(
                "digest HLS secret",
                lambda: self.pkcs11_session.digest([self.resolve(secret), message], mechanism=mech),
            )
        )

    def read_secret(self, secret: SessionKey) -> bytearray:
        """The value of a secret unwrapped ``readable`` (the profile's audited fallback)."""
        if not self.profile.wrap_pad_unwrap_keeps_padding:
            raise errors.UnsupportedMechanism(
                "an HLS secret is read only where the HSM profile flags "
                "wrap_pad_unwrap_keeps_padding (its audited host fallback)",
                errors.UnsupportedReason.MISSING_FROM_PROFILE,
            )
        return self._read_value("read HLS secret", secret)

    def read_ak(self, key: SessionKey) -> bytearray:
        """The AK's bytes, only for a key unwrapped as ``AK_FOR_USE`` (docs/token.md section 8)."""
        if key.use is not KeyUse.AK_FOR_USE or not self.profile.ak_on_host:
            raise errors.UnsupportedMechanism(
                "only an authentication key unwrapped for use may be read, and only when the "
                "HSM profile flags ak_on_host",
                errors.UnsupportedReason.MISSING_FROM_PROFILE,
            )
        return self._read_value("read AK", key)

    def _read_value(self, operation: str, key: SessionKey) -> bytearray:
        """CKA_VALUE of a key made readable for one of the profile's named exceptions, into a
        buffer the caller zeroises."""
        return bytearray(self.call(operation, lambda: self.resolve(key)[Attribute.VALUE]))

    def read_dedicated_key(self, key: SessionKey) -> bytearray:
        """A new dedicated key's bytes, to place in the initiate request that carries it.

        Only for a key generated as ``DEDICATED`` and only when the profile flags
        ``dedicated_key_on_host``: no PKCS#11 mechanism encrypts a key at an offset inside a
        plaintext, so the bytes of the xDLMS InitiateRequest exist on the host for the one GCM
        call that ciphers them (under the GUEK, in the token).
        """
        if key.use is not KeyUse.DEDICATED or not self.profile.dedicated_key_on_host:
            raise errors.UnsupportedMechanism(
                "only a dedicated key being made may be read, and only when the HSM profile "
                "flags dedicated_key_on_host",
                errors.UnsupportedReason.MISSING_FROM_PROFILE,
            )
        return self._read_value("read dedicated key", key)

    def destroy(self, key: SessionKey) -> None:
        """Destroy a session key now rather than at session close."""

        def destroy() -> None:
            if self.is_live(key):  # else it died with its session
                self.resolve(key).destroy()

        self.call("destroy key", destroy)

    # --- MAC, signatures (the work is in kms.hsm.signing), GCM -------------------------------

    def mac(self, key: TokenKey, data: bytes) -> bytes:
        """HMAC (the profile's binding_mac) computed in the token."""
        mech = self.profile.mechanism("binding_mac")
        return bytes(
            self.call(
                "compute MAC",
                lambda: self.resolve(key).sign(data, mechanism=mech),
                idempotent=True,
            )
        )

    def sign_digest(self, key: TokenKey, digest: bytes) -> bytes:
        """Raw ECDSA r||s over a digest computed on the host (the hash is not secret)."""
        return signing.sign_digest(self, key, digest)

    def sign_digests(self, key: TokenKey, digests: Sequence[bytes]) -> list[bytes]:
        """Raw ECDSA r||s over each digest, back to back in one call under the token lock.

        For batches (certificate issuance): the lock, the session check and the key lookup are
        paid once rather than per signature. The lock is held for the whole list (about 1 ms per
        P-384 signature on SoftHSM), so callers pass chunks, not whole batches. A lost session
        re-runs the whole list: signing again is harmless, the earlier signatures are discarded.
        """
        return signing.sign_digests(self, key, digests)

    def signer(self, key: TokenKey, curve: str) -> TokenSigner:
        """``key`` as a :class:`kms.pki.ecdsa.Signer`: certificates and CRLs signed in the token."""
        if curve not in signing.CURVE_OIDS:
            raise ValueError(f"unknown curve {curve!r}")
        if key.object_class != "private":
            raise ValueError("a signer is the private half of a key pair")
        return TokenSigner(self, key, curve)

    def destroy_key_pair(self, key: TokenKey) -> None:
        """Destroy both halves of a token key pair (a ceremony undoing its own half-made key)."""
        signing.destroy_key_pair(self, key)

    def gcm_encrypt(
        self, key: SessionKey, iv: bytes, aad: bytes, plaintext: bytes, tag_bits: int
    ) -> bytes:
        """AES-GCM in the token; returns ciphertext || tag (tag truncated to ``tag_bits``)."""
        return TokenGcm(self, key, self.profile.mechanism("gcm"), tag_bits).encrypt(
            iv, aad, plaintext
        )

    def gcm_decrypt(
        self, key: SessionKey, iv: bytes, aad: bytes, data: bytes, tag_bits: int
    ) -> bytes:
        """AES-GCM decrypt-and-verify in the token; a bad tag raises InvalidTag."""
        cut = len(data) - tag_bits // 8
        if cut < 0:
            raise errors.InvalidTag("GCM tag did not verify")
        return TokenGcm(self, key, self.profile.mechanism("gcm"), tag_bits).decrypt(
            iv, aad, data[:cut], data[cut:]
        )

    def aead(self, key: SessionKey) -> TokenGcm:
        """AES-GCM under ``key`` with DLMS's 96-bit tag (kms.dlms.protection's cipher)."""
        if key.use not in (KeyUse.EK, KeyUse.EK_FOR_USE):
            raise ValueError(f"GCM needs an encryption key, not a {key.use.value} key")
        return TokenGcm(self, key, self.profile.mechanism("gcm"))

    # --- CA key backup (the work is in kms.hsm.trusted_wrap) ---------------------------------

    def create_trusted_wrapping_key(
        self, so_pin: Pin, label: str, key_id: bytes, value: bytearray
    ) -> TokenKey:
        """The AES-256 backup wrapping key of known ``value``: a private token object with
        CKA_TRUSTED (set by the security officer, whose PIN this takes), wrap only, sensitive and
        never extractable. The process is logged out and in again on the way, so every session
        key of this Hsm dies; the caller zeroises ``value``."""
        return trusted_wrap.create_trusted_wrapping_key(self, so_pin, label, key_id, value)

    def wrap_private_key(self, wrapping_key: TokenKey, key: TokenKey) -> bytes:
        """A token private key (a CA key) wrapped as PKCS#8 under the profile's ``ca_key_wrap``
        mechanism; the token refuses a CKA_WRAP_WITH_TRUSTED key under an untrusted key."""
        return trusted_wrap.wrap_private_key(self, wrapping_key, key)

    def load_unwrapping_key(self, value: bytearray) -> SessionKey:
        """The backup wrapping key rebuilt from ``value`` as an unwrap-only session key."""
        return trusted_wrap.load_unwrapping_key(self, value)

    def unwrap_private_key(
        self, unwrapping_key: SessionKey, wrapped: bytes, label: str, key_id: bytes
    ) -> TokenKey:
        """A backed-up CA private key unwrapped into the token as ``label``, with the template
        of a CA key; a bad blob raises InvalidUnwrap and leaves nothing behind."""
        return trusted_wrap.unwrap_private_key(self, unwrapping_key, wrapped, label, key_id)

    def create_public_key(self, label: str, key_id: bytes, public_key_der: bytes) -> TokenKey:
        """The public half of a restored key pair, from its DER SubjectPublicKeyInfo."""
        return trusted_wrap.create_public_key(self, label, key_id, public_key_der)

    def destroy_token_key(self, key: TokenKey) -> None:
        """Destroy a token key that a ceremony made but could not record (nothing half-made)."""

        def destroy() -> None:
            with contextlib.suppress(errors.TokenKeyNotFound):
                self.resolve(key).destroy()
            self.forget_handle(key)

        self.call(f"destroy {key.label}", destroy)

    # --- end of CA key backup ------------------------------------------------------------------

    def random(self, length: int) -> bytes:
        """``length`` bytes from the token's random number generator (challenges, ids)."""
        if length < 1:
            raise ValueError("ask for at least one random byte")
        return bytes(
            self.call(
                "generate random",
                lambda: self.pkcs11_session.generate_random(length * 8),
                idempotent=True,
            )
        )

    # --- EC key agreement (suites 1 and 2; the work is in kms.hsm.ecdh) ------------------------

    def generate_ephemeral_key_pair(self, curve: str) -> tuple[SessionKey, bytes]:
        """An ephemeral EC key pair: the private half as a derive-only, sensitive, unextractable
        session object (destroy it with :meth:`destroy`), and the public point raw ``x || y``
        (64 or 96 bytes, no 04 prefix: DLMS carries x || y)."""
        return ecdh.generate_ephemeral_key_pair(self, curve)

    def create_key_agreement_key_pair(self, label: str, key_id: bytes, curve: str) -> TokenKey:
        """A static EC key-agreement key pair as token objects; returns the private half, which
        can only derive (CKM_ECDH1_DERIVE), is sensitive and never extractable."""
        return ecdh.create_key_agreement_key_pair(self, label, key_id, curve)

    def public_point(self, key: TokenKey) -> bytes:
        """Raw ``x || y`` of the public half of a token EC key pair."""
        return ecdh.public_point(self, key)

    def load_known_ephemeral_key(self, curve: str, value: bytes) -> SessionKey:
        """An EC private key of known value as a derive-only session object, for known-answer
        self-tests of key agreement only."""
        return ecdh.load_known_ephemeral_key(self, curve, value)

    def agree_key(
        self,
        private: Key,
        peer_public: bytes,
        curve: str,
        other_info: bytes,
        key_length: int,
        use: KeyUse,
    ) -> ecdh.AgreedKey:
        """ECDH (CKD_NULL) of ``private`` with the peer's ``x || y``, then the SP 800-56A
        concatenation KDF over Z and ``other_info`` where the profile's ``kdf`` flag says, into a
        sensitive AES session key for ``use``. Z never leaves the token unless the profile says
        ``host``; the result records which. A peer point that is not on the curve is an
        :class:`~kms.errors.InputError`, raised before the token sees it."""
        return ecdh.agree_key(self, private, peer_public, curve, other_info, key_length, use)

    # --- end of EC key agreement ---------------------------------------------------------------

    # --- data objects ------------------------------------------------------------------------

    def _data_objects(self, label: str) -> list[Any]:
        query = {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label}
        return list(self.pkcs11_session.get_objects(query))

    def read_data(self, label: str) -> list[bytes]:
        """Values of the private token data objects labelled ``label`` (usually one)."""
        return self.call(
            f"read data object {label}",
            lambda: [bytes(obj[Attribute.VALUE]) for obj in self._data_objects(label)],
            idempotent=True,
        )

    def replace_data(self, label: str, value: bytes) -> None:
        """Store ``value`` as the private token data object ``label``, replacing older ones.

        SoftHSM refuses to change a data object's CKA_VALUE, so the new object is created first
        and the old ones destroyed after: a crash in between leaves both, never neither.
        """

        def replace() -> None:
            old = self._data_objects(label)
            self.pkcs11_session.create_object(templates.data_object(label, value))
            for obj in old:
                obj.destroy()

        self.call(f"write data object {label}", replace)


@dataclass(frozen=True)
class TokenSigner:
    """A token private key that signs host-computed digests (CKM_ECDSA, raw r||s)."""

    hsm: Hsm
    key: TokenKey
    curve: str

    def sign_digest(self, digest: bytes) -> bytes:
        return self.hsm.sign_digest(self.key, digest)


def open_hsm(config: Config) -> Hsm:
    """Open and log in to the configured token."""
    return Hsm(config)
