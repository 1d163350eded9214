"""What every use case is handed: the store and the in-process events."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.services.events import Events
from dockyard.store.repository import Store


@dataclass(frozen=True)
class Platform:
    store: Store
    events: Events
    public_url: str
    # Seconds each operation waits once started: lets tests interrupt and
    # cancel running operations (``DOCKYARD_OPERATION_HOLD_SECONDS``).
    hold_seconds: float = 0.0

    def git_remote(self, handle: str) -> str:
        return f"{self.public_url}/git/{handle}.git"
