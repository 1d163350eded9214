"""An app's configuration: environment variables, secrets and changes to them.

A configuration is a plain mapping of names to values. Changes arrive as
Aptible-style ``KEY=VALUE`` arguments (``KEY=`` unsets) and are applied as
one ``ConfigChange`` to make the next version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dockyard.domain.errors import InvalidConfigArgument

MAX_VALUE_BYTES = 64 * 1024
MASK = "********"

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")

# Registry credentials are for the platform's pulls, never for the app's processes.
REGISTRY_CREDENTIAL_KEYS = frozenset(
    f"{prefix}_PRIVATE_REGISTRY_{suffix}"
    for prefix in ("DOCKYARD", "APTIBLE")
    for suffix in ("USERNAME", "PASSWORD", "HOST")
)


def is_secret(key: str) -> bool:
    """Whether a value is encrypted at rest and masked in output."""
    upper = key.upper()
    return any(word in upper for word in _SECRET_WORDS)


def validate_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidConfigArgument(
            f"invalid configuration key {key!r}: use letters, digits and underscores, "
            "not starting with a digit"
        )
    return key


def validate_value(key: str, value: str) -> str:
    if "\x00" in value:
        raise InvalidConfigArgument(f"the value of {key} contains a NUL character")
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise InvalidConfigArgument(
            f"the value of {key} is {size} bytes; the limit is {MAX_VALUE_BYTES} bytes"
        )
    return value


def _describe(argument: str) -> str:
    """Name an argument in an error without echoing what may be a secret value."""
    if not is_secret(argument):
        return repr(argument)
    name = re.split(r"[=\s]", argument, maxsplit=1)[0]
    return repr(f"{name}…")


@dataclass(frozen=True)
class ConfigChange:
    """Values to set and keys to remove, applied together."""

    set: Mapping[str, str] = field(default_factory=dict)
    unset: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for key, value in self.set.items():
            validate_key(key)
            validate_value(key, value)
        for key in self.unset:
            validate_key(key)
        both = set(self.set) & self.unset
        if both:
            raise InvalidConfigArgument(
                f"{', '.join(sorted(both))} cannot be both set and unset in one change"
            )

    @classmethod
    def from_arguments(cls, arguments: Iterable[str]) -> ConfigChange:
        """Parse ``KEY=VALUE`` arguments; ``KEY=`` unsets ``KEY``; each key once."""
        values: dict[str, str] = {}
        unset: set[str] = set()
        seen: set[str] = set()
        for argument in arguments:
            key, equals, value = argument.partition("=")
            if not equals:
                raise InvalidConfigArgument(
                    f"invalid argument {_describe(argument)}: expected KEY=VALUE"
                )
            if not _KEY.fullmatch(key):
                raise InvalidConfigArgument(
                    f"invalid argument {_describe(argument)}: {key!r} is not a valid key "
                    "(letters, digits and underscores, not starting with a digit)"
                )
            if key in seen:  # FOO=bar FOO=baz: which one was meant?
                raise InvalidConfigArgument(f"{key} is given more than once: give each key once")
            seen.add(key)
            if value:
                values[key] = value
            else:
                unset.add(key)
        return cls(set=values, unset=frozenset(unset))

    @property
    def empty(self) -> bool:
        return not self.set and not self.unset

    def apply(self, current: Mapping[str, str]) -> dict[str, str]:
        result = {k: v for k, v in current.items() if k not in self.unset}
        result.update(self.set)
        return result

    def summary(self) -> str:
        """Describe the change by key names only: never by value."""
        parts = []
        if self.set:
            parts.append("setting " + ", ".join(sorted(self.set)))
        if self.unset:
            parts.append("unsetting " + ", ".join(sorted(self.unset)))
        return "; ".join(parts) or "no changes"


def masked(values: Mapping[str, str]) -> dict[str, str]:
    return {k: (MASK if is_secret(k) else v) for k, v in values.items()}


def process_environment(values: Mapping[str, str]) -> dict[str, str]:
    """The environment an app's containers get: registry credentials removed."""
    return {k: v for k, v in values.items() if k not in REGISTRY_CREDENTIAL_KEYS}
