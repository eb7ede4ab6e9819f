"""An optional hook that timed code reports its phases to; a no-op unless one is given.

Code that a benchmark breaks down into phases (certificate issuance:
:meth:`kms.services.pki.certificates.CertificateService.issue`) takes a ``phases`` argument and
runs each phase as ``with phases.phase("name"): ...``. Its default, :data:`NO_PHASES`, hands back
one shared do-nothing context manager: no clock is read and nothing is recorded, so the code
behaves and costs as it did without the hook (a method call and an empty ``with`` per phase).

Phases may nest (a timer that reports exclusive time subtracts the inner ones) and may run on
worker threads: the timer, not the timed code, tells them apart.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Final, Protocol

__all__ = ["NO_PHASES", "Phases"]


class Phases(Protocol):
    """Receives the phases of a timed run."""

    def phase(self, name: str) -> AbstractContextManager[object]:
        """A context manager around one phase called ``name``."""
        ...


_NOTHING: Final = nullcontext()


class _NoPhases:
    """Every phase is :data:`_NOTHING`: the default when no one times the run."""

    __slots__ = ()

    def phase(self, name: str) -> AbstractContextManager[object]:
        return _NOTHING


#: The default hook: records nothing.
NO_PHASES: Final[Phases] = _NoPhases()
