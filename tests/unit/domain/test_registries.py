"""Credential sources: what users may give, and how long an answer is kept."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.errors import InvalidInput
from dockyard.domain.registries import (
    MIN_RENEW_SECONDS,
    Fetched,
    Held,
    Source,
    SourceKind,
    ecr_region_of,
    keep_until,
    mask,
    new_source,
)

AT = datetime(2026, 12, 4, 12, 3, tzinfo=UTC)
CREDS = RegistryCredentials("r.example.com", "AWS", "s3cret")


def test_ecr_token_is_kept_until_half_its_lifetime() -> None:
    source = Source("r.example.com", SourceKind.AWS_ECR)
    fetched = Fetched(CREDS, AT, AT + timedelta(hours=12))
    assert keep_until(source, fetched) == AT + timedelta(hours=6)


@pytest.mark.parametrize("expires", [None, AT, AT - timedelta(days=4000)])
def test_ecr_answer_without_usable_expiry_is_used_once(expires: datetime | None) -> None:
    source = Source("r.example.com", SourceKind.AWS_ECR)
    assert keep_until(source, Fetched(CREDS, AT, expires)) is None


def test_helper_answer_is_kept_cache_seconds() -> None:
    source = Source("r.example.com", SourceKind.CREDENTIAL_HELPER, settings={"cache_seconds": "30"})
    assert keep_until(source, Fetched(CREDS, AT)) == AT + timedelta(seconds=30)
    default = Source("r.example.com", SourceKind.CREDENTIAL_HELPER)
    assert keep_until(default, Fetched(CREDS, AT)) == AT + timedelta(seconds=300)
    never = Source("r.example.com", SourceKind.CREDENTIAL_HELPER, settings={"cache_seconds": "0"})
    assert keep_until(never, Fetched(CREDS, AT)) is None


def test_static_sources_are_not_cached() -> None:
    assert keep_until(Source("r.example.com", SourceKind.STATIC), Fetched(CREDS, AT)) is None


def test_region_from_an_ecr_host() -> None:
    assert ecr_region_of("123456789012.dkr.ecr.eu-west-3.amazonaws.com") == "eu-west-3"
    assert ecr_region_of("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com") == "us-gov-west-1"
    assert ecr_region_of("registry.example.com") is None


def test_new_ecr_source_takes_the_region_from_the_host_then_the_environment() -> None:
    found = new_source("123456789012.dkr.ecr.eu-west-3.amazonaws.com", aws_ecr=True)
    assert found.kind is SourceKind.AWS_ECR
    assert found.settings == {"region": "eu-west-3"}
    from_env = new_source(
        "127.0.0.1:5000", aws_ecr=True, environ={"AWS_DEFAULT_REGION": "us-east-1"}
    )
    assert from_env.settings["region"] == "us-east-1"


def test_new_ecr_source_keeps_the_secret_key_apart() -> None:
    found = new_source(
        "127.0.0.1:5000",
        aws_ecr=True,
        aws_region="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI",
        aws_role_arn="arn:aws:iam::123456789012:role/pull",
        aws_endpoint_url="http://127.0.0.1:5555",
    )
    assert "wJalrXUtnFEMI" not in repr(found) and "wJalrXUtnFEMI" not in str(found.settings)
    assert found.secrets == {
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI",
    }
    assert found.settings["role_arn"] == "arn:aws:iam::123456789012:role/pull"


@pytest.mark.parametrize(
    ("host", "options", "message"),
    [
        ("https://r.example.com", {"aws_ecr": True}, "invalid registry host"),
        ("r.example.com/path", {"aws_ecr": True}, "invalid registry host"),
        ("r.example.com", {"aws_ecr": True}, "cannot tell the AWS region"),
        ("r.example.com", {"aws_ecr": True, "aws_region": "Mars-1"}, "invalid --aws-region"),
        (
            "r.example.com",
            {"aws_ecr": True, "aws_region": "us-east-1", "aws_role_arn": "role/pull"},
            "invalid --aws-role-arn",
        ),
        (
            "r.example.com",
            {
                "aws_ecr": True,
                "aws_region": "us-east-1",
                "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
            },
            "pass both --aws-access-key-id",
        ),
        ("r.example.com", {"credential_helper": "../evil"}, "invalid credential helper name"),
        ("r.example.com", {"username": "u"}, "pass --password or --password-stdin"),
        ("r.example.com", {}, "pass exactly one of"),
        ("r.example.com", {"username": "u", "password": "p", "aws_ecr": True}, "pass exactly one"),
        (
            "r.example.com",
            {"username": "u", "password": "p", "aws_region": "us-east-1"},
            "goes with",
        ),
        ("r.example.com", {"credential_helper": "x", "cache_seconds": -1}, "--cache-seconds must"),
    ],
)
def test_bad_input_names_what_is_wrong(host: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        new_source(host, **options)  # type: ignore[arg-type]


def test_mask_replaces_every_secret() -> None:
    assert mask("token s3cret and s3cret2", ["s3cret", "s3cret2"]) == "token ******** and ********"


def test_held_credentials_are_renewed_a_margin_before_the_cache_would_drop_them() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ecr = Source("1.dkr.ecr.us-east-1.amazonaws.com", SourceKind.AWS_ECR, None, {"region": "x"})
    token = RegistryCredentials(ecr.host, "AWS", "token")
    held = Held.of(ecr, Fetched(token, at, at + timedelta(hours=12)))
    assert held.renew_at == at + timedelta(hours=6)  # half the token's lifetime
    assert not held.due(at + timedelta(hours=5, minutes=59), timedelta(seconds=10))
    assert held.due(at + timedelta(hours=5, minutes=59, seconds=55), timedelta(seconds=10))
    assert "token" not in repr(held) and held.digest
    assert held.digest != Held.of(ecr, Fetched(replace(token, password="new"), at)).digest
    # An answer that may not be kept: asked again at most every MIN_RENEW_SECONDS.
    expired = Held.of(ecr, Fetched(token, at, at - timedelta(hours=1)))
    assert expired.renew_at == at + timedelta(seconds=MIN_RENEW_SECONDS)
    helper = Source("r.example.com", SourceKind.CREDENTIAL_HELPER, 1, {"cache_seconds": "30"})
    assert Held.of(helper, Fetched(token, at)).renew_at == at + timedelta(seconds=30)
    static = Source("r.example.com", SourceKind.STATIC, 1)
    assert not Held.of(static, Fetched(token, at)).due(at + timedelta(days=9), timedelta())
    assert Held.of(None, None) == Held("", None)
