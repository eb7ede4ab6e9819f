"""A private SoftHSM2 configuration, shared by the tests, the benchmarks and the demo.

SoftHSM2 reads ``SOFTHSM2_CONF`` once, when the module is initialised; pointing it at a
configuration of our own keeps every token we make out of the system token directory.
"""

from __future__ import annotations

from pathlib import Path


def write_softhsm2_conf(directory: Path) -> Path:
    """Write ``directory/softhsm2.conf`` with its token directory ``directory/tokens``."""
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    return conf
