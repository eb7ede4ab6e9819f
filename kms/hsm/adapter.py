"""The PKCS#11 adapter: the only way the KMS talks to its token.

What DESIGN.md section 6 measured decides the shape of this module:

* **One lock per process.** python-pkcs11 initialises the module without locking arguments, so
  SoftHSM does no locking of its own and two threads calling in at once crash it. Every call into
  the library runs under :data:`_TOKEN_LOCK`; parallelism comes from processes.
* **One login session for the life of the process.** Login is per application and closing the
  session that logged in logs every session out, so an :class:`Hsm` opens one read-write session,
  logs in once (retrying a login collision with another process with a short backoff) and keeps
  it. Session objects (the per-meter keys) live in that session.
* **Retry after a lost session.** When the token answers that the session or the device is gone,
  the adapter reopens and logs in again, then retries the call once if it is idempotent and
  touches only token objects (found again by label). Session keys die with their session: using
  one afterwards raises :class:`~kms.errors.SessionLost`.
* **Nothing above sees a pkcs11 type.** Keys cross the boundary as :class:`TokenKey` (a label) and
  :class:`SessionKey` (an opaque handle); every ``PKCS11Error`` becomes a ``KMSError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pkcs11
import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from kms import errors
from kms.config import Config
from kms.hsm import templates
from kms.hsm._errors import SESSION_LOST, translate, translated
from kms.hsm.profile import Profile, load_profile
from kms.hsm.templates import KeyUse

T = TypeVar("T")

#: Serialises every call into the PKCS#11 module in this process (DESIGN.md section 6).
_TOKEN_LOCK = threading.RLock()
#: One loaded library per module path: C_Initialize may run only once per process.
_LIBS: dict[str, Any] = {}

#: Per module path: how many times this process re-initialised it. C_Initialize again voids
#: every session and object handle of every Hsm on that module, and SoftHSM hands the same
#: handle numbers out anew, so an Hsm that saw an older epoch must reopen before its next call.
_EPOCHS: dict[str, int] = {}
#: Per (module, token label): a salted digest of the PIN that logged this process in.
_LOGINS: dict[tuple[str, str], bytes] = {}
_PIN_SALT = os.urandom(16)

#: Per-meter key templates, built once: python-pkcs11 merges them into a new dict per call and
#: never changes them, and they sit on the provisioning hot path.
_SESSION_TEMPLATES = {use: templates.session_key(use) for use in KeyUse}

_CURVE_OIDS = {"P-256": "secp256r1", "P-384": "secp384r1"}


@dataclass(frozen=True)
class TokenKey:
    """A persistent token object, named by its label (the handle is the adapter's business)."""

    label: str
    object_class: str = "secret"  # "secret" | "private" | "public"


@dataclass(eq=False)
class SessionKey:
    """A per-meter key living as a session object in the adapter's session; never its value."""

    _object: Any = field(repr=False)
    _generation: int = field(repr=False)
    length: int
    use: KeyUse

    def __repr__(self) -> str:
        return f"SessionKey(use={self.use.value}, length={self.length})"


Key = TokenKey | SessionKey

_CLASS_OF = {
    "secret": ObjectClass.SECRET_KEY,
    "private": ObjectClass.PRIVATE_KEY,
    "public": ObjectClass.PUBLIC_KEY,
}


def _pin_digest(pin: str) -> bytes:
    return hashlib.sha256(_PIN_SALT + pin.encode()).digest()


def _library(module: str) -> Any:
    with _TOKEN_LOCK:
        lib = _LIBS.get(module)
        if lib is None:
            try:
                lib = pkcs11.lib(module)
            except p11e.PKCS11Error:
                raise errors.ConfigError(f"cannot load the PKCS#11 module {module}") from None
            _LIBS[module] = lib
        return lib


class Hsm:
    """A logged-in connection to one token, safe to share between the threads of a process."""

    def __init__(self, config: Config, profile: Profile | None = None) -> None:
        self._config = config
        self.profile = profile or load_profile(config.hsm_profile)
        self.token_label = config.token_label
        self._lib = _library(config.pkcs11_module)
        self._token: Any = None
        self._session: Any = None
        self._generation = 0
        self._handles: dict[tuple[str, str], Any] = {}
        self._mechanisms: frozenset[Mechanism] = frozenset()
        self._module = config.pkcs11_module
        self._epoch = _EPOCHS.get(self._module, 0)
        self._login_key = (config.pkcs11_module, config.token_label)
        with _TOKEN_LOCK:
            self._open()
        try:
            self._check_profile()
        except errors.KMSError:
            self.close()
            raise

    # --- session management ------------------------------------------------------------------

    def _find_token(self) -> Any:
        try:
            return self._lib.get_token(token_label=self.token_label)
        except p11e.PKCS11Error:
            pass
        # A token initialised (or deleted) after the library loaded is only seen correctly after
        # C_Initialize again: SoftHSM answers CKR_GENERAL_ERROR for the slot of a deleted token,
        # and a slot read while another process rewrites the token file can look empty. So
        # re-initialise and retry with a short backoff. This logs out any other Hsm of this
        # process on the same module, which reopens on its next call.
        delay = 0.02
        last: p11e.PKCS11Error | None = None
        for _attempt in range(self.profile.login_retries):
            time.sleep(delay)
            delay *= 2
            try:
                _EPOCHS[self._module] = _EPOCHS.get(self._module, 0) + 1
                self._lib.reinitialize()
                return self._lib.get_token(token_label=self.token_label)
            except p11e.PKCS11Error as exc:
                last = exc
        if last is None or isinstance(last, p11e.NoSuchToken):
            raise errors.TokenNotFound(
                f"no token labelled {self.token_label!r} in {self._config.pkcs11_module}"
            )
        raise translate(last, "find token")

    def _open(self) -> None:
        """Open the one session and log in, retrying a login collision with another process."""
        pin = self._config.require_pin()
        self._token = self._find_token()
        delay = 0.02
        for attempt in range(self.profile.login_retries + 1):
            try:
                self._session = self._token.open(rw=True, user_pin=pin.reveal())
                _LOGINS[self._login_key] = _pin_digest(pin.reveal())
                break
            except p11e.UserAlreadyLoggedIn:
                # Another Hsm of this process holds the login, which SoftHSM then grants without
                # looking at the PIN: share it only if this PIN is the one that logged in.
                if _LOGINS.get(self._login_key) != _pin_digest(pin.reveal()):
                    raise errors.PinIncorrect(
                        f"login to token {self.token_label!r}: the token refused the user PIN"
                    ) from None
                with translated(f"login to token {self.token_label!r}"):
                    self._session = self._token.open(rw=True)
                break
            except (p11e.GeneralError, p11e.DeviceError, p11e.FunctionFailed):
                if attempt == self.profile.login_retries:
                    raise errors.HsmError(
                        f"login to token {self.token_label!r} kept failing after "
                        f"{attempt + 1} attempts"
                    ) from None
                time.sleep(delay)
                delay *= 2
            except p11e.PKCS11Error as exc:
                raise translate(exc, f"login to token {self.token_label!r}") from None
        self._generation += 1
        self._epoch = _EPOCHS.get(self._module, 0)
        self._handles.clear()
        with translated("list mechanisms"):
            self._mechanisms = frozenset(self._token.slot.get_mechanisms())

    def _reopen(self) -> None:
        if self._session is not None and self._epoch == _EPOCHS.get(self._module, 0):
            with contextlib.suppress(p11e.PKCS11Error):
                self._session.close()
        self._session = None
        self._open()

    def close(self) -> None:
        """Close the session (which logs this process out of the token)."""
        with _TOKEN_LOCK:
            if self._session is not None:
                if self._epoch == _EPOCHS.get(self._module, 0):  # else the handle is not ours
                    with contextlib.suppress(p11e.PKCS11Error):
                        self._session.close()
                self._session = None
                self._handles.clear()

    def __enter__(self) -> Hsm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, operation: str, fn: Callable[[], T], *, idempotent: bool = False) -> T:
        """Run ``fn`` under the process lock with errors translated; retry a lost session once."""
        with _TOKEN_LOCK:
            if self._session is None:
                raise errors.SessionLost(f"{operation}: the token session is closed")
            if self._epoch != _EPOCHS.get(self._module, 0):
                # Another Hsm re-initialised the module: our handles now name other objects.
                self._reopen()
            try:
                return fn()
            except SESSION_LOST as exc:
                lost = exc
            except p11e.PKCS11Error as exc:
                raise translate(exc, operation) from None
            self._reopen()
            if not idempotent:
                raise translate(lost, operation) from None
            try:
                return fn()
            except p11e.PKCS11Error as exc:
                raise translate(exc, operation) from None

    def _check_profile(self) -> None:
        """Every mechanism the profile names must be offered by the token: check it once."""
        for job, mech in self.profile.mechanisms.items():
            if mech not in self._mechanisms:
                raise errors.UnsupportedMechanism(
                    f"token {self.token_label!r} lacks {mech.name}, which profile "
                    f"{self.profile.name!r} names for {job}",
                    errors.UnsupportedReason.MISSING_FROM_TOKEN,
                )

    def mechanisms(self) -> list[str]:
        """Names of the mechanisms the token offers (for ``kms selftest``)."""
        return sorted(m.name if isinstance(m, Mechanism) else hex(int(m)) for m in self._mechanisms)

    # --- object handles ----------------------------------------------------------------------

    def _resolve(self, key: Key) -> Any:
        if isinstance(key, SessionKey):
            if key._generation != self._generation:
                raise errors.SessionLost("a session key outlived the session that held it")
            return key._object
        cache_key = (key.label, key.object_class)
        handle = self._handles.get(cache_key)
        if handle is None:
            try:
                handle = self._session.get_key(
                    object_class=_CLASS_OF[key.object_class], label=key.label
                )
            except p11e.NoSuchKey:
                raise errors.TokenKeyNotFound(
                    f"token {self.token_label!r} has no {key.object_class} key labelled "
                    f"{key.label!r}"
                ) from None
            except p11e.MultipleObjectsReturned:
                raise errors.HsmError(
                    f"token {self.token_label!r} has several keys labelled {key.label!r}"
                ) from None
            self._handles[cache_key] = handle
        return handle

    def has_token_key(self, key: TokenKey) -> bool:
        """Whether the token holds ``key`` (by label and class)."""

        def find() -> bool:
            try:
                self._resolve(key)
            except errors.TokenKeyNotFound:
                return False
            return True

        return self._call(f"find {key.label}", find, idempotent=True)

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
            obj = self._resolve(key)
            out: dict[str, Any] = {}
            for name, attr in names.items():
                try:
                    out[name] = obj[attr]
                except (p11e.AttributeTypeInvalid, p11e.AttributeSensitive):
                    out[name] = None
            return out

        return self._call("read attributes", read, idempotent=True)

    def read_value(self, key: Key) -> bytes:
        """Try to read CKA_VALUE; for tests proving the token refuses (it raises HsmError)."""
        return bytes(self._call("read value", lambda: self._resolve(key)[Attribute.VALUE]))

    # --- root keys and ceremonies ------------------------------------------------------------

    def create_storage_key(self, label: str, key_id: bytes) -> TokenKey:
        """Generate the AES-256 storage key as a non-extractable token object."""
        self._call(
            "generate storage key",
            lambda: self._session.generate_key(
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
        self._call(
            "generate binding key",
            lambda: self._session.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                store=True,
                capabilities=MechanismFlag(0),
                mechanism=self.profile.mechanism("generic_secret_key_gen"),
                template=templates.binding_key(label, key_id),
            ),
        )
        return TokenKey(label)

    def create_ec_key_pair(self, label: str, key_id: bytes, curve: str) -> TokenKey:
        """Generate an EC key pair as token objects; returns the private half."""
        oid = _CURVE_OIDS[curve]

        def generate() -> None:
            params = self._session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(oid)}, local=True
            )
            params.generate_keypair(
                store=True,
                capabilities=MechanismFlag(0),
                mechanism=self.profile.mechanism("ec_key_pair_gen"),
                public_template=templates.ec_public_key(label, key_id),
                private_template=templates.ec_private_key(label, key_id),
            )

        self._call(f"generate {curve} key pair", generate)
        return TokenKey(label, "private")

    def public_key_der(self, key: TokenKey) -> bytes:
        """DER SubjectPublicKeyInfo of the public half of an EC key pair."""
        public = TokenKey(key.label, "public")
        return bytes(
            self._call(
                "export public key",
                lambda: encode_ec_public_key(self._resolve(public)),
                idempotent=True,
            )
        )

    def create_transport_key(
        self, label: str, key_id: bytes, value: bytes | None, length: int
    ) -> TokenKey:
        """Bring a vendor's master key into the token (``value``), or generate one (``None``)."""
        template = templates.transport_key(label, key_id)
        if value is None:
            self._call(
                "generate transport key",
                lambda: self._session.generate_key(
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
            self._call("import transport key", lambda: self._session.create_object(template))
        return TokenKey(label)

    def check_value(self, key: Key) -> bytes:
        """The token's CKA_CHECK_VALUE: first 3 bytes of AES-ECB of a zero block.

        SoftHSM 2.6.1 sets it on generated and created keys but leaves it empty on unwrapped
        ones, so the KMS records check values when it generates a key and never asks an
        unwrapped key for one; an empty answer is an error rather than a silent ``b""``.
        """
        value = bytes(
            self._call(
                "read check value",
                lambda: self._resolve(key)[Attribute.CHECK_VALUE],
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
        obj = self._call(
            "generate key",
            lambda: self._session.generate_key(
                KeyType.AES,
                length * 8,
                capabilities=MechanismFlag(0),
                mechanism=self.profile.mechanism("aes_key_gen"),
                template=_SESSION_TEMPLATES[use],
            ),
        )
        return SessionKey(obj, self._generation, length, use)

    def load_known_key(self, value: bytes) -> SessionKey:
        """A throwaway session key of known value, for known-answer self-tests only."""
        template = templates.known_answer_key()
        template[Attribute.VALUE] = value
        obj = self._call("create self-test key", lambda: self._session.create_object(template))
        return SessionKey(obj, self._generation, len(value), KeyUse.EK)

    def wrap_key(self, wrapping_key: Key, key_to_wrap: SessionKey) -> bytes:
        """RFC 3394 AES key wrap of a session key, inside the token."""
        mech = self.profile.mechanism("key_wrap")
        return bytes(
            self._call(
                "wrap key",
                lambda: self._resolve(wrapping_key).wrap_key(
                    self._resolve(key_to_wrap), mechanism=mech
                ),
            )
        )

    def unwrap_key(
        self, unwrapping_key: Key, wrapped_key: bytes, use: KeyUse, length: int
    ) -> SessionKey:
        """RFC 3394 unwrap into a session object; a bad blob raises InvalidUnwrap."""
        mech = self.profile.mechanism("key_wrap")
        if len(wrapped_key) != length + 8:
            raise errors.InvalidUnwrap("wrapped key has the wrong length")

        def unwrap() -> Any:
            try:
                return self._resolve(unwrapping_key).unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.AES,
                    wrapped_key,
                    mechanism=mech,
                    capabilities=MechanismFlag(0),
                    template=_SESSION_TEMPLATES[use],
                )
            except p11e.GeneralError:
                # SoftHSM answers a failed RFC 3394 integrity check with CKR_GENERAL_ERROR.
                raise errors.InvalidUnwrap("wrapped key failed its integrity check") from None

        obj = self._call("unwrap key", unwrap)
        return SessionKey(obj, self._generation, length, use)

    def read_ak(self, key: SessionKey) -> bytearray:
        """The AK's bytes, only for a key unwrapped as ``AK_FOR_USE`` (DESIGN.md section 6)."""
        if key.use is not KeyUse.AK_FOR_USE or not self.profile.ak_on_host:
            raise errors.UnsupportedMechanism(
                "only an authentication key unwrapped for use may be read, and only when the "
                "HSM profile flags ak_on_host",
                errors.UnsupportedReason.MISSING_FROM_PROFILE,
            )
        return bytearray(self._call("read AK", lambda: self._resolve(key)[Attribute.VALUE]))

    def destroy(self, key: SessionKey) -> None:
        """Destroy a session key now rather than at session close."""

        def destroy() -> None:
            if key._generation == self._generation:  # else it died with its session
                key._object.destroy()

        self._call("destroy key", destroy)

    # --- MAC, signatures, GCM ----------------------------------------------------------------

    def mac(self, key: TokenKey, data: bytes) -> bytes:
        """HMAC (the profile's binding_mac) computed in the token."""
        mech = self.profile.mechanism("binding_mac")
        return bytes(
            self._call(
                "compute MAC",
                lambda: self._resolve(key).sign(data, mechanism=mech),
                idempotent=True,
            )
        )

    def sign_digest(self, key: TokenKey, digest: bytes) -> bytes:
        """Raw ECDSA r||s over a digest computed on the host (the hash is not secret)."""
        mech = self.profile.mechanism("ecdsa")
        return bytes(
            self._call(
                "sign", lambda: self._resolve(key).sign(digest, mechanism=mech), idempotent=True
            )
        )

    def gcm_encrypt(
        self, key: SessionKey, iv: bytes, aad: bytes, plaintext: bytes, tag_bits: int
    ) -> bytes:
        """AES-GCM in the token; returns ciphertext || tag (tag truncated to ``tag_bits``)."""
        mech = self.profile.mechanism("gcm")
        params = GCMParams(iv, aad, tag_bits)
        return bytes(
            self._call(
                "GCM encrypt",
                lambda: self._resolve(key).encrypt(
                    plaintext, mechanism=mech, mechanism_param=params
                ),
            )
        )

    def gcm_decrypt(
        self, key: SessionKey, iv: bytes, aad: bytes, data: bytes, tag_bits: int
    ) -> bytes:
        """AES-GCM decrypt-and-verify in the token; a bad tag raises InvalidTag."""
        mech = self.profile.mechanism("gcm")
        params = GCMParams(iv, aad, tag_bits)

        def decrypt() -> bytes:
            try:
                return bytes(
                    self._resolve(key).decrypt(data, mechanism=mech, mechanism_param=params)
                )
            except (p11e.GeneralError, p11e.EncryptedDataInvalid, p11e.DataInvalid):
                # SoftHSM reports a GCM tag mismatch as a bare CKR_GENERAL_ERROR.
                raise errors.InvalidTag("GCM tag did not verify") from None

        return self._call("GCM decrypt", decrypt)

    # --- data objects ------------------------------------------------------------------------

    def _data_objects(self, label: str) -> list[Any]:
        query = {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label}
        return list(self._session.get_objects(query))

    def read_data(self, label: str) -> list[bytes]:
        """Values of the private token data objects labelled ``label`` (usually one)."""
        return self._call(
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
            self._session.create_object(templates.data_object(label, value))
            for obj in old:
                obj.destroy()

        self._call(f"write data object {label}", replace)

    def random(self, length: int) -> bytes:
        """Bytes from the token's RNG."""
        return bytes(
            self._call("generate random", lambda: self._session.generate_random(length * 8))
        )


def open_hsm(config: Config) -> Hsm:
    """Open and log in to the configured token."""
    return Hsm(config)


def sha_digest(data: bytes, curve: str) -> bytes:
    """The ECDSA message digest for a curve: SHA-256 for P-256, SHA-384 for P-384."""
    return hashlib.sha384(data).digest() if curve == "P-384" else hashlib.sha256(data).digest()
