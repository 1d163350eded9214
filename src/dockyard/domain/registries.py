"""Registry credential sources: their kinds, the checks on what users give, how long a fetch lasts.

A source is bound to one registry host, for one app or for every app
(global). It either holds credentials (static) or fetches them when asked
(aws-ecr, credential-helper). Pure rules only: fetching lives in
``dockyard.registry``, storing in ``dockyard.store``.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.errors import CredentialsRejected, DockyardError, InvalidInput, NotFound

DEFAULT_CACHE_SECONDS = 300
MAX_CACHE_SECONDS = 12 * 3600
MASK = "********"

# A registry host with an optional port; also the API's JSON Schema pattern.
HOST_PATTERN = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?"
)
_HOST = re.compile(HOST_PATTERN)
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
_ROLE_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}")
_ECR_HOST = re.compile(
    r"[0-9]{12}\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})\.amazonaws\.com(?:\.cn)?"
)
_HELPER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}")
_URL = re.compile(r"https?://[^\s/?#]+(?:/[^\s?#]*)?")


class SourceKind(enum.StrEnum):
    STATIC = "static"
    AWS_ECR = "aws-ecr"
    CREDENTIAL_HELPER = "credential-helper"

    @property
    def fetches(self) -> bool:
        return self is not SourceKind.STATIC


@dataclass(frozen=True)
class Source:
    """A stored source. ``secrets`` (password, AWS secret key) are never shown."""

    host: str
    kind: SourceKind
    app_id: int | None = None  # None: every app's (global)
    settings: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    id: int = 0
    app_handle: str | None = None
    created_by: str = ""
    created_at: datetime | None = None
    last_fetched_at: datetime | None = None
    expires_at: datetime | None = None
    last_error: str = ""
    # Stored by an image deploy's --private-registry-username/--password.
    from_deploy: bool = False

    @property
    def scope(self) -> str:
        return "global" if self.app_id is None else f"app {self.app_handle or self.app_id}"

    @property
    def label(self) -> str:
        """How logs name it: ``aws-ecr source (global)``."""
        if self.from_deploy:
            return "credentials stored by a deploy"
        return f"{self.kind.value} source ({'global' if self.app_id is None else 'app'})"

    @property
    def cache_key(self) -> tuple[int, str, int | None, str]:
        # A replaced source gets a new id: its predecessor's answers are not reused.
        return (self.id, self.host, self.app_id, self.kind.value)

    def secret_values(self) -> list[str]:
        return [v for v in self.secrets.values() if v]


@dataclass(frozen=True)
class Fetched:
    """What a source answered: credentials, or None (the helper has none for the host)."""

    credentials: RegistryCredentials | None
    fetched_at: datetime
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        return (
            f"Fetched(credentials={self.credentials!r}, fetched_at={self.fetched_at!r}, "
            f"expires_at={self.expires_at!r})"
        )


def keep_until(source: Source, fetched: Fetched) -> datetime | None:
    """Until when an answer may be reused; None: use it once, keep nothing.

    ECR tokens are kept until half their lifetime is gone (an answer whose
    expiry is missing or already past is used once); a helper's answer
    carries no expiry, so it is kept ``cache_seconds`` at most.
    """
    if source.kind is SourceKind.AWS_ECR:
        expires = fetched.expires_at
        if expires is None or expires <= fetched.fetched_at:
            return None
        return fetched.fetched_at + (expires - fetched.fetched_at) / 2
    if source.kind is SourceKind.CREDENTIAL_HELPER:
        seconds = int(source.settings.get("cache_seconds", DEFAULT_CACHE_SECONDS))
        if seconds <= 0:
            return None
        return fetched.fetched_at + timedelta(seconds=seconds)
    return None


# A source whose answers may not be kept is asked again at most this often
# for credentials that running services hold.
MIN_RENEW_SECONDS = 60


@dataclass(frozen=True)
class Held:
    """What a release's running services were last given for their image host.

    ``digest`` tells one answer from another without keeping the secret;
    ``renew_at`` (None: not by time) is when to fetch and send fresh ones;
    ``owed``: the source changed and the services have not been sent it yet.
    """

    digest: str
    renew_at: datetime | None
    owed: bool = False

    @staticmethod
    def of(source: Source | None, fetched: Fetched | None) -> Held:
        credentials = fetched.credentials if fetched else None
        digest = (
            hashlib.sha256(
                f"{credentials.host}\0{credentials.username}\0{credentials.password}".encode()
            ).hexdigest()
            if credentials
            else ""
        )
        if source is None or fetched is None or not source.kind.fetches:
            return Held(digest, None)
        until = keep_until(source, fetched)
        return Held(digest, until or fetched.fetched_at + timedelta(seconds=MIN_RENEW_SECONDS))

    def due(self, now: datetime, margin: timedelta) -> bool:
        """Whether to renew now: ``margin`` (a pass of the renewer) before ``renew_at``."""
        return self.renew_at is not None and now >= self.renew_at - margin


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value (and its base64 forms' obvious pieces) replaced."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class SourceFailed(DockyardError):
    """A source could not give credentials: its own message, secrets masked."""

    kind = "registry_source_failed"

    def __init__(self, host: str, label: str, detail: str) -> None:
        super().__init__(f"the {label} for {host} failed: {detail}")
        self.host = host
        self.detail = detail


class SourceCredentialsRejected(CredentialsRejected):
    def __init__(self, host: str, label: str) -> None:
        DockyardError.__init__(
            self,
            f"the registry {host} rejected the credentials from its {label}, even freshly "
            f"fetched: check the source with `dockyard registries:test {host}`",
        )
        self.host = host


class SourceNotFound(NotFound):
    def __init__(self, host: str, scope: str) -> None:
        super().__init__(f"no registry source for {host} ({scope})")


@dataclass(frozen=True)
class NewSource:
    """A source as a user asks for it, checked: ``Source`` once stored."""

    host: str
    kind: SourceKind
    settings: dict[str, str]
    secrets: dict[str, str] = field(repr=False)


def validate_host(host: str) -> str:
    if not host or len(host) > 255 or not _HOST.fullmatch(host) or "://" in host:
        raise InvalidInput(
            f"invalid registry host {host!r}: give a host name with an optional port, "
            "e.g. registry.example.com or 123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        )
    return host.lower()


def ecr_region_of(host: str) -> str | None:
    """The region an ECR registry's host names (``ACCOUNT.dkr.ecr.REGION.amazonaws.com``)."""
    found = _ECR_HOST.fullmatch(host.rpartition(":")[0] if ":" in host else host)
    return found.group("region") if found else None


def _check(value: str | None, pattern: re.Pattern[str], message: str) -> None:
    if value is not None and not pattern.fullmatch(value):
        raise InvalidInput(message)


def new_source(
    host: str,
    *,
    username: str | None = None,
    password: str | None = None,
    aws_ecr: bool = False,
    aws_region: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_role_arn: str | None = None,
    aws_endpoint_url: str | None = None,
    credential_helper: str | None = None,
    cache_seconds: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> NewSource:
    """Check what a user gave for ``registries:add``; name the first thing wrong."""
    host = validate_host(host)
    kinds = [
        k
        for k, on in (
            ("--username", username is not None),
            ("--aws-ecr", aws_ecr),
            ("--credential-helper", credential_helper is not None),
        )
        if on
    ]
    if len(kinds) != 1:
        raise InvalidInput(
            "pass exactly one of --username (with --password), --aws-ecr or --credential-helper"
            + (f", not {' and '.join(kinds)}" if kinds else "")
        )
    aws_given = [
        name
        for name, value in (
            ("--aws-region", aws_region),
            ("--aws-access-key-id", aws_access_key_id),
            ("--aws-secret-access-key", aws_secret_access_key),
            ("--aws-role-arn", aws_role_arn),
            ("--aws-endpoint-url", aws_endpoint_url),
        )
        if value is not None
    ]
    if not aws_ecr and aws_given:
        raise InvalidInput(f"{aws_given[0]} goes with --aws-ecr")
    if credential_helper is None and cache_seconds is not None:
        raise InvalidInput("--cache-seconds goes with --credential-helper")
    if username is not None:
        if not username or len(username) > 255:
            raise InvalidInput("--username must be 1-255 characters")
        if not password:
            raise InvalidInput("pass --password or --password-stdin with --username")
        return NewSource(host, SourceKind.STATIC, {"username": username}, {"password": password})
    if password is not None:
        raise InvalidInput("--password goes with --username")
    if credential_helper is not None:
        _check(
            credential_helper,
            _HELPER,
            f"invalid credential helper name {credential_helper!r}: give the NAME of "
            "docker-credential-NAME (letters, digits, '.', '_', '-')",
        )
        seconds = DEFAULT_CACHE_SECONDS if cache_seconds is None else cache_seconds
        if not 0 <= seconds <= MAX_CACHE_SECONDS:
            raise InvalidInput(
                f"--cache-seconds must be between 0 and {MAX_CACHE_SECONDS}, not {seconds}"
            )
        settings = {"helper": credential_helper, "cache_seconds": str(seconds)}
        return NewSource(host, SourceKind.CREDENTIAL_HELPER, settings, {})
    environ = environ or {}
    region = (
        aws_region
        or ecr_region_of(host)
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
    )
    if region is None:
        raise InvalidInput(
            f"cannot tell the AWS region of {host}: pass --aws-region "
            "(or name the registry ACCOUNT.dkr.ecr.REGION.amazonaws.com)"
        )
    _check(
        region, _REGION, f"invalid --aws-region {region!r}: expected e.g. us-east-1 or eu-west-3"
    )
    _check(
        aws_role_arn,
        _ROLE_ARN,
        f"invalid --aws-role-arn {aws_role_arn!r}: expected arn:aws:iam::ACCOUNT:role/NAME",
    )
    _check(
        aws_endpoint_url,
        _URL,
        f"invalid --aws-endpoint-url {aws_endpoint_url!r}: expected http(s)://HOST[:PORT][/PATH]",
    )
    if (aws_access_key_id is None) != (aws_secret_access_key is None):
        raise InvalidInput(
            "pass both --aws-access-key-id and --aws-secret-access-key(-stdin), or neither "
            "(the server's own AWS credentials are used)"
        )
    if aws_access_key_id is not None:
        _check(
            aws_access_key_id,
            _ACCESS_KEY_ID,
            "invalid --aws-access-key-id: expected 16 or more uppercase letters and digits",
        )
        if not aws_secret_access_key:
            raise InvalidInput("--aws-secret-access-key is empty")
    settings = {"region": region}
    if aws_role_arn:
        settings["role_arn"] = aws_role_arn
    if aws_endpoint_url:
        settings["endpoint_url"] = aws_endpoint_url
    secrets: dict[str, str] = {}
    if aws_access_key_id and aws_secret_access_key:
        # The key id is not a secret, but it names an AWS user: kept sealed too.
        secrets["access_key_id"] = aws_access_key_id
        secrets["secret_access_key"] = aws_secret_access_key
    return NewSource(host, SourceKind.AWS_ECR, settings, secrets)
