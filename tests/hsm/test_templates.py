"""Key templates (kms/hsm/templates.py): every capability written out, none by default.

python-pkcs11's DEFAULT_KEY_CAPABILITIES give an AES key encrypt, sign and wrap at once, and
SoftHSM fills in its own defaults for anything a template leaves out; so every secret-key template
must set each capability attribute itself, and grant only what its job needs. Templates are found
by inspecting the module, so a template added later is covered without touching this file.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from pkcs11 import Attribute, ObjectClass

from kms.hsm import templates
from kms.hsm.templates import KeyUse

CAPABILITIES = (
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.WRAP,
    Attribute.UNWRAP,
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.DERIVE,
)
#: Templates that are not secret keys, and so are outside the seven-capability rule.
KEY_PAIR_TEMPLATES = {
    "ec_private_key",
    "ec_public_key",
    "key_agreement_private_key",
    "key_agreement_public_key",
    "ephemeral_private_key",
    "ephemeral_public_key",
    "known_answer_ec_private_key",
    "restored_ec_private_key",
    "ec_public_key_object",
}
DATA_TEMPLATES = {"data_object"}
#: C_CopyObject templates: the attributes a copy changes, nothing more.
COPY_TEMPLATES = {"trusted_wrapping_key_copy", "restored_key_copy"}

_ARGUMENTS: dict[str, Any] = {
    "label": "kms-test",
    "key_id": b"kms-test",
    "value": b"v",
    "ec_params": b"p",
    "ec_point": b"q",
}


def _instances() -> list[tuple[str, dict[Attribute, Any]]]:
    """Every public template function of the module, called once per KeyUse where it takes one."""
    found: list[tuple[str, dict[Attribute, Any]]] = []
    for name, function in inspect.getmembers(templates, inspect.isfunction):
        if name.startswith("_") or function.__module__ != templates.__name__:
            continue
        parameters = inspect.signature(function).parameters
        if "use" in parameters:
            for use in KeyUse:
                found.append((f"{name}({use.value})", _call(function, use=use)))
        else:
            found.append((name, _call(function)))
    return found


def _call(function: Callable[..., dict[Attribute, Any]], **extra: Any) -> dict[Attribute, Any]:
    parameters = inspect.signature(function).parameters
    return function(**{k: v for k, v in _ARGUMENTS.items() if k in parameters}, **extra)


INSTANCES = _instances()
SECRET = [(name, t) for name, t in INSTANCES if t.get(Attribute.CLASS) == ObjectClass.SECRET_KEY]

#: What each secret key may do, by template (the style rule: only what its job needs).
GRANTED = {
    "storage_key": {Attribute.WRAP, Attribute.UNWRAP},
    "transport_key": {Attribute.WRAP, Attribute.UNWRAP},
    "binding_key": {Attribute.SIGN, Attribute.VERIFY},
    "session_key(KEK)": {Attribute.WRAP, Attribute.UNWRAP},
    "session_key(EK)": {Attribute.ENCRYPT, Attribute.DECRYPT},
    "session_key(EK_FOR_USE)": {Attribute.ENCRYPT, Attribute.DECRYPT},
    "session_key(AK)": set(),
    "session_key(AK_FOR_USE)": set(),
    "session_key(SECRET)": set(),
    "session_key(DEDICATED)": set(),
    "session_key(KEK_FOR_USE)": {Attribute.WRAP, Attribute.UNWRAP},
    # An EC key: session_key makes no AES key for it, so the AES template it gets grants nothing.
    "session_key(EPHEMERAL)": set(),
    "shared_secret": set(),  # Z: C_DigestKey needs no capability
    "secret_for_use": set(),
    "known_answer_key": {Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.WRAP, Attribute.UNWRAP},
    # CA key backup: the trusted key only wraps where it is made, the rebuilt one only unwraps.
    "trusted_wrapping_key_by_so": {Attribute.WRAP},
    "backup_unwrapping_key": {Attribute.UNWRAP},
}


def test_every_template_is_either_a_secret_key_or_a_known_key_pair_half() -> None:
    names = {name.split("(")[0] for name, _ in INSTANCES}
    secret = {name.split("(")[0] for name, _ in SECRET}
    assert names - secret == KEY_PAIR_TEMPLATES | DATA_TEMPLATES | COPY_TEMPLATES
    assert {name for name, _ in SECRET} == set(GRANTED)


@pytest.mark.parametrize(("name", "template"), SECRET, ids=[name for name, _ in SECRET])
def test_a_secret_key_template_sets_every_capability_explicitly(
    name: str, template: dict[Attribute, Any]
) -> None:
    missing = [a.name for a in CAPABILITIES if a not in template]
    assert missing == [], f"{name} relies on the token's default for {missing}"
    assert all(isinstance(template[a], bool) for a in CAPABILITIES)
    granted = {a for a in CAPABILITIES if template[a]}
    assert granted == GRANTED[name]


@pytest.mark.parametrize(("name", "template"), SECRET, ids=[name for name, _ in SECRET])
def test_a_secret_key_template_states_token_sensitive_and_extractable(
    name: str, template: dict[Attribute, Any]
) -> None:
    for attribute in (Attribute.TOKEN, Attribute.SENSITIVE, Attribute.EXTRACTABLE):
        assert isinstance(template.get(attribute), bool), f"{name} leaves {attribute.name} out"
    if template[Attribute.TOKEN]:
        assert (template[Attribute.SENSITIVE], template[Attribute.EXTRACTABLE]) == (True, False)
    else:
        # Per-meter keys leave the token only by C_WrapKey; only the AK for use is readable,
        # and an EK unwrapped to protect APDUs never leaves it again.
        in_use = {
            "session_key(EK_FOR_USE)",
            "session_key(KEK_FOR_USE)",
            "session_key(EPHEMERAL)",
            "secret_for_use",
            "shared_secret",
            "trusted_wrapping_key_by_so",
            "backup_unwrapping_key",
        }
        assert template[Attribute.EXTRACTABLE] is (name not in in_use)
        readable = {"session_key(AK_FOR_USE)", "session_key(DEDICATED)"}
        assert template[Attribute.SENSITIVE] is (name not in readable)


def test_the_data_object_template_is_private_and_holds_no_key_capability() -> None:
    template = templates.data_object("kms-test", b"v")
    assert template[Attribute.CLASS] == ObjectClass.DATA
    assert (template[Attribute.TOKEN], template[Attribute.PRIVATE]) == (True, True)
    assert not {Attribute.WRAP, Attribute.SIGN, Attribute.ENCRYPT} & set(template)


#: Capability attributes of an EC private key template.
PRIVATE_CAPABILITIES = (
    Attribute.DECRYPT,
    Attribute.UNWRAP,
    Attribute.SIGN,
    Attribute.SIGN_RECOVER,
    Attribute.DERIVE,
)


@pytest.mark.parametrize(
    "name", ["key_agreement_private_key", "ephemeral_private_key", "known_answer_ec_private_key"]
)
def test_a_key_agreement_private_key_can_only_derive_and_never_leaves_the_token(name: str) -> None:
    template = _call(getattr(templates, name))
    assert {a for a in PRIVATE_CAPABILITIES if template[a]} == {Attribute.DERIVE}
    assert all(isinstance(template[a], bool) for a in PRIVATE_CAPABILITIES)
    assert (template[Attribute.SENSITIVE], template[Attribute.EXTRACTABLE]) == (True, False)
    assert template[Attribute.TOKEN] is (name == "key_agreement_private_key")


@pytest.mark.parametrize("name", ["key_agreement_public_key", "ephemeral_public_key"])
def test_a_key_agreement_public_key_can_do_nothing(name: str) -> None:
    template = _call(getattr(templates, name))
    public = (Attribute.ENCRYPT, Attribute.WRAP, Attribute.VERIFY, Attribute.VERIFY_RECOVER)
    assert [template[a] for a in (*public, Attribute.DERIVE)] == [False] * 5


def test_z_is_readable_only_for_the_host_kdf() -> None:
    assert (
        templates.shared_secret()[Attribute.SENSITIVE],
        templates.shared_secret()[Attribute.EXTRACTABLE],
    ) == (True, False)
    readable = templates.shared_secret(readable=True)
    assert (readable[Attribute.SENSITIVE], readable[Attribute.EXTRACTABLE]) == (False, True)


def test_the_so_makes_the_backup_key_public_trusted_and_modifiable_for_the_copy() -> None:
    template = templates.trusted_wrapping_key_by_so("kms-test", b"kms-test")
    assert template[Attribute.TRUSTED] is True
    assert (template[Attribute.TOKEN], template[Attribute.PRIVATE]) == (False, False)
    assert template[Attribute.MODIFIABLE] is True
    copy = templates.trusted_wrapping_key_copy()
    assert copy == {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.MODIFIABLE: False}
    assert list(copy)[-1] is Attribute.MODIFIABLE  # SoftHSM refuses what follows it


def test_a_restored_ca_key_gets_the_template_of_a_ca_key() -> None:
    restored = templates.restored_ec_private_key("kms-test", b"kms-test")
    made = templates.ec_private_key("kms-test", b"kms-test", backup=True)
    same = (Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.WRAP_WITH_TRUSTED, Attribute.SIGN)
    assert all(restored[a] == made[a] for a in (*same, *PRIVATE_CAPABILITIES))
    assert restored[Attribute.TOKEN] is False  # copied into the token by restored_key_copy()
    assert templates.restored_key_copy() == {Attribute.TOKEN: True, Attribute.MODIFIABLE: False}
