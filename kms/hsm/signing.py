"""EC signing key pairs in the token and ``CKM_ECDSA`` with them: the audit key, the CA keys and
the KMS's other signing keys (P-256 and P-384).

Both halves are token objects labelled alike (the public half is found by the private half's
label). The token signs a digest the host computed (the hash is not secret) and returns raw
``r || s``, the form DLMS keeps; :mod:`kms.pki.ecdsa` makes the DER of X.509 from it. The
mechanisms come from the profile's ``ec_key_pair_gen`` and ``ecdsa`` jobs, the templates from
:mod:`kms.hsm.templates`.

Exports the operations :class:`kms.hsm.Hsm` offers as methods (:func:`create_ec_key_pair`,
:func:`public_key_der`, :func:`sign_digest`, :func:`sign_digests`, :func:`destroy_key_pair`)
and :data:`CURVE_OIDS`, the curves they take.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from pkcs11 import Attribute, KeyType, MechanismFlag
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from kms import errors
from kms.hsm import templates
from kms.hsm._token_access import TokenAccess
from kms.hsm.session import TokenKey

__all__ = [
    "CURVE_OIDS",
    "create_ec_key_pair",
    "destroy_key_pair",
    "public_key_der",
    "sign_digest",
    "sign_digests",
]

#: The curves of signing keys, by the names the KMS uses, as python-pkcs11 names them.
CURVE_OIDS = {"P-256": "secp256r1", "P-384": "secp384r1"}


def create_ec_key_pair(
    hsm: TokenAccess, label: str, key_id: bytes, curve: str, *, backup: bool = False
) -> TokenKey:
    """Both halves as token objects (sign-only private half); returns the private half."""
    oid = CURVE_OIDS[curve]

    def generate() -> None:
        params = hsm.pkcs11_session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(oid)}, local=True
        )
        params.generate_keypair(
            store=True,
            capabilities=MechanismFlag(0),
            mechanism=hsm.profile.mechanism("ec_key_pair_gen"),
            public_template=templates.ec_public_key(label, key_id),
            private_template=templates.ec_private_key(label, key_id, backup=backup),
        )

    hsm.call(f"generate {curve} key pair", generate)
    return TokenKey(label, "private")


def public_key_der(hsm: TokenAccess, key: TokenKey) -> bytes:
    """DER SubjectPublicKeyInfo of the public half (either half may be named)."""
    public = TokenKey(key.label, "public")
    return bytes(
        hsm.call(
            "export public key",
            lambda: encode_ec_public_key(hsm.resolve(public)),
            idempotent=True,
        )
    )


def sign_digest(hsm: TokenAccess, key: TokenKey, digest: bytes) -> bytes:
    """Raw ECDSA ``r || s`` over one host-computed digest."""
    mech = hsm.profile.mechanism("ecdsa")
    return bytes(
        hsm.call("sign", lambda: hsm.resolve(key).sign(digest, mechanism=mech), idempotent=True)
    )


def sign_digests(hsm: TokenAccess, key: TokenKey, digests: Sequence[bytes]) -> list[bytes]:
    """Raw ECDSA ``r || s`` over each digest, in one call (one lock, one key lookup); a lost
    session signs the whole list again, which is harmless."""
    mech = hsm.profile.mechanism("ecdsa")
    wanted = [bytes(d) for d in digests]

    def sign_all() -> list[bytes]:
        private = hsm.resolve(key)
        return [bytes(private.sign(d, mechanism=mech)) for d in wanted]

    return hsm.call("sign", sign_all, idempotent=True) if wanted else []


def destroy_key_pair(hsm: TokenAccess, key: TokenKey) -> None:
    """Destroy whichever halves exist, so that a ceremony can undo a half-made key pair."""

    def destroy() -> None:
        for object_class in ("private", "public"):
            half = TokenKey(key.label, object_class)
            with contextlib.suppress(errors.TokenKeyNotFound):
                hsm.resolve(half).destroy()
            hsm.forget_handle(half)

    hsm.call("destroy key pair", destroy)
