"""Fetching a source's credentials, with a cache the domain's rules bound."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.registries import Fetched, Source, SourceFailed, SourceKind, keep_until, mask
from dockyard.registry import credential_helpers, ecr

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def fetch_now(
    source: Source,
    *,
    clock: Clock = _now,
    environ: Mapping[str, str] | None = None,
    helper_timeout: float = credential_helpers.TIMEOUT_SECONDS,
) -> Fetched:
    """Ask the source now, bypassing any cache. Raises ``SourceFailed``."""
    at = clock()
    try:
        if source.kind is SourceKind.STATIC:
            credentials = RegistryCredentials(
                source.host, source.settings["username"], source.secrets["password"]
            )
            return Fetched(credentials, at)
        if source.kind is SourceKind.AWS_ECR:
            found, expires = ecr.fetch(source.host, source.settings, source.secrets)
            return Fetched(found, at, expires)
        answer = credential_helpers.get(
            source.settings["helper"], source.host, timeout=helper_timeout, environ=environ
        )
        return Fetched(answer, at)
    except (ecr.EcrFailed, credential_helpers.HelperFailed) as exc:
        raise SourceFailed(
            source.host, source.label, mask(str(exc), source.secret_values())
        ) from None


@dataclass
class Sources:
    """Answers of fetching sources, each kept until ``keep_until`` says."""

    clock: Clock = _now
    helper_timeout: float = credential_helpers.TIMEOUT_SECONDS
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _kept: dict[tuple[int, str, int | None, str], tuple[Fetched, datetime]] = field(
        default_factory=dict, init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def cached(self, source: Source) -> Fetched | None:
        with self._lock:
            kept = self._kept.get(source.cache_key)
        if kept is None:
            return None
        fetched, until = kept
        if self.clock() >= until:
            self.forget(source)
            return None
        return fetched

    def fetch(self, source: Source, *, force: bool = False) -> tuple[Fetched, bool]:
        """The source's credentials and whether they were fetched just now."""
        if not force:
            kept = self.cached(source)
            if kept is not None:
                return kept, False
        fetched = fetch_now(
            source, clock=self.clock, environ=self.environ, helper_timeout=self.helper_timeout
        )
        self.keep(source, fetched)
        return fetched, True

    def keep(self, source: Source, fetched: Fetched) -> None:
        """Keep an answer as long as the rules allow (or drop the one kept)."""
        until = keep_until(source, fetched)
        with self._lock:
            if until is None:
                self._kept.pop(source.cache_key, None)
            else:
                self._kept[source.cache_key] = (fetched, until)

    def forget(self, source: Source | None = None) -> None:
        with self._lock:
            if source is None:
                self._kept.clear()
            else:
                self._kept.pop(source.cache_key, None)
