"""The benchmark's own SoftHSM2 token, and the KMS's ``Hsm`` with its calls counted."""

from __future__ import annotations

import functools
import inspect
import os
import secrets
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kms.config import Config
from kms.hsm import Hsm

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL = "kms-bench"

T = TypeVar("T")


def softhsm_module() -> str:
    """The PKCS#11 module to use (``$KMS_PKCS11_MODULE`` or SoftHSM2's); exits unless it is
    SoftHSM2 with ``softhsm2-util`` beside it, since the benchmark initialises a token."""
    module = os.environ.get("KMS_PKCS11_MODULE") or DEFAULT_MODULE
    if "softhsm" not in Path(module).name.lower() or shutil.which("softhsm2-util") is None:
        raise SystemExit(f"needs SoftHSM2 (softhsm2-util and {module}): it initialises a token")
    return module


def softhsm_token(workdir: Path, module: str) -> tuple[dict[str, str], str]:
    """A throwaway SoftHSM2 token; returns the children's environment and the token label."""
    from tests.softhsm import write_softhsm2_conf

    conf = write_softhsm2_conf(workdir)
    os.environ["SOFTHSM2_CONF"] = str(conf)  # before anything in any process loads the module
    pin = secrets.token_hex(8)
    result = subprocess.run(
        [
            "softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
            "--pin", pin, "--so-pin", secrets.token_hex(8), "--module", module,
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"softhsm2-util --init-token failed: {result.stderr.strip()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    env.update({"SOFTHSM2_CONF": str(conf), "KMS_USER_PIN": pin, "PYTHONHASHSEED": "0"})
    return env, TOKEN_LABEL


class CountingHsm(Hsm):
    """The KMS's :class:`~kms.hsm.Hsm`, counting its operations by name (``operations``: the
    public methods :class:`~kms.hsm.Hsm` itself defines, ``close`` and ``mechanisms`` aside)
    and its token calls (``token_calls``: every :meth:`~kms.hsm.Hsm.call`, the one way to the
    token). Open it instead of :func:`kms.hsm.open_hsm`; it behaves the same otherwise."""

    def __init__(self, config: Config) -> None:
        self.operations: Counter[str] = Counter()
        self.token_calls = 0
        super().__init__(config)

    def call(self, operation: str, fn: Callable[[], T], *, idempotent: bool = False) -> T:
        self.token_calls += 1
        return super().call(operation, fn, idempotent=idempotent)

    def reset_counts(self) -> None:
        self.operations.clear()
        self.token_calls = 0


def _counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def counted(self: CountingHsm, *args: Any, **kwargs: Any) -> Any:
        self.operations[name] += 1
        return method(self, *args, **kwargs)

    return counted


#: The operations CountingHsm counts.
COUNTED_OPERATIONS = tuple(
    name
    for name, value in vars(Hsm).items()
    if not name.startswith("_")
    and inspect.isfunction(value)
    and name not in {"close", "mechanisms"}
)
for _name in COUNTED_OPERATIONS:
    setattr(CountingHsm, _name, _counted(_name, vars(Hsm)[_name]))
