"""How much one user may ask of the platform, and the checks that hold them to it.

Every input a tenant controls has a bound the server's operator can set
(``dockyard server --max-...``): configuration keys, key length and total
size per app, request bodies, git-deploy and push archives (as sent and as
unpacked) and operations queued per app. Each check runs before anything is
written, and its error names the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dockyard.domain.configuration import ConfigChange
from dockyard.domain.errors import Conflict, DockyardError, InvalidInput

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def human(size: int) -> str:
    """``1 GiB``, ``2 MiB``, ``1536 bytes``: exact, never rounded."""
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


def _bytes(size: int) -> str:
    """``1048576 bytes (1 MiB)``, or ``20 bytes``."""
    exact = f"{size} bytes"
    return exact if human(size) == exact else f"{exact} ({human(size)})"


class LimitExceeded(InvalidInput):
    """A request would go beyond one of the server's limits (answered 422)."""

    kind = "limit_exceeded"


class TooLarge(DockyardError):
    """A request body or archive is larger than the server accepts (answered 413)."""

    kind = "too_large"


class TooManyQueued(Conflict):
    """The app already has as many operations waiting as the server allows (409)."""

    kind = "limit_exceeded"

    def __init__(self, handle: str, queued: int, limit: int) -> None:
        super().__init__(
            f"app {handle} has {queued} operations queued; the limit is {limit}: "
            "wait for some to finish, or cancel some"
        )


@dataclass(frozen=True)
class Limits:
    config_keys: int = 1000
    config_key_length: int = 255
    config_bytes: int = 1 * MIB
    request_body: int = 2 * MIB
    archive_bytes: int = 1 * GIB
    unpacked_bytes: int = 4 * GIB
    archive_entries: int = 100_000
    queued_operations: int = 100

    def check_change(self, current: Mapping[str, str], change: ConfigChange) -> dict[str, str]:
        """The configuration ``change`` makes of ``current``, if it is within the limits."""
        for key in (*change.set, *change.unset):
            if len(key) > self.config_key_length:
                raise LimitExceeded(
                    f"the configuration key {key[:32]}... is {len(key)} characters long; "
                    f"the limit is {self.config_key_length}"
                )
        if len(change.unset) > self.config_keys:
            raise LimitExceeded(
                f"the change unsets {len(change.unset)} keys; "
                f"the limit is {self.config_keys} per app"
            )
        values = change.apply(current)
        self.check_configuration(values)
        return values

    def check_configuration(self, values: Mapping[str, str]) -> None:
        if len(values) > self.config_keys:
            raise LimitExceeded(
                f"configuration would have {len(values)} keys; "
                f"the limit is {self.config_keys} per app"
            )
        size = sum(
            len(k.encode()) + len(v.encode("utf-8", "surrogatepass")) for k, v in values.items()
        )
        if size > self.config_bytes:
            raise LimitExceeded(
                f"configuration would be {size} bytes (keys and values); "
                f"the limit is {_bytes(self.config_bytes)} per app"
            )
