"""ECR tokens through boto3, against moto's in-process AWS (no network)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from dockyard.registry import ecr

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def test_token_becomes_aws_user_and_password(aws: None) -> None:
    credentials, expires = ecr.fetch(HOST, {"region": "us-east-1"}, {})
    assert (credentials.host, credentials.username) == (HOST, "AWS")
    assert credentials.password == "123456789012-auth-token"
    assert expires == datetime(2015, 1, 1, tzinfo=UTC)  # moto's: already expired


def test_given_keys_and_an_assumed_role(aws: None) -> None:
    settings = {"region": "us-east-1", "role_arn": "arn:aws:iam::123456789012:role/pull"}
    secrets = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "k"}
    credentials, _ = ecr.fetch(HOST, settings, secrets)
    assert credentials.username == "AWS"


def test_aws_words_are_read_from_an_xml_answer() -> None:
    text = (
        '<?xml version="1.0"?><ErrorResponse><Errors><Error><Code>InvalidClientTokenId</Code>'
        "<Message>The security token included in the request is invalid.</Message>"
        "</Error></Errors></ErrorResponse>"
    )
    error = ClientError({"Error": {"Code": "403", "Message": text}}, "GetAuthorizationToken")
    assert ecr._message(error) == (
        "InvalidClientTokenId: The security token included in the request is invalid."
    )
