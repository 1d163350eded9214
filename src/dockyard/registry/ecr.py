"""AWS ECR: GetAuthorizationToken with boto3, from given keys or the server's own.

An optional role is assumed first (STS). ``endpoint_url`` (or the server's
``AWS_ENDPOINT_URL_ECR``, which boto3 reads itself) points at another ECR
API. The token decodes to ``AWS:<password>``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.loaders import Loader, create_loader

from dockyard.domain.containers import RegistryCredentials

_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})


# Reading botocore's service models is most of a client's cost (~140 ms);
# one loader, which caches what it read, serves every fetch. Sessions stay
# one per fetch, so no source's keys are ever another's.
_LOADER: Loader = create_loader()


def _session(**credentials: Any) -> boto3.session.Session:
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core, **credentials)


class EcrFailed(Exception):
    """AWS refused or could not be reached; AWS's own message, safe to show once masked."""


_XML_ERROR = re.compile(
    r"<Code>(?P<code>[^<]*)</Code>.*?<Message>(?P<message>[^<]*)</Message>", re.S
)


def _message(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, text = str(error.get("Code", "")), str(error.get("Message", "") or exc)
        # Some endpoints answer in XML where JSON was expected: read AWS's words from it.
        found = _XML_ERROR.search(text)
        if found:
            code, text = found.group("code"), found.group("message")
        return f"{code}: {text}" if code else text
    return str(exc) or type(exc).__name__


def fetch(
    host: str, settings: Mapping[str, str], secrets: Mapping[str, str]
) -> tuple[RegistryCredentials, datetime | None]:
    """The registry credentials ECR issues now, and when they expire."""
    try:
        session = _session(
            aws_access_key_id=secrets.get("access_key_id") or None,
            aws_secret_access_key=secrets.get("secret_access_key") or None,
            region_name=settings["region"],
        )
        role = settings.get("role_arn")
        if role:
            sts: Any = session.client("sts", config=_CONFIG)
            assumed = sts.assume_role(RoleArn=role, RoleSessionName="dockyard")["Credentials"]
            session = _session(
                aws_access_key_id=assumed["AccessKeyId"],
                aws_secret_access_key=assumed["SecretAccessKey"],
                aws_session_token=assumed["SessionToken"],
                region_name=settings["region"],
            )
        ecr: Any = session.client(
            "ecr", endpoint_url=settings.get("endpoint_url") or None, config=_CONFIG
        )
        data = ecr.get_authorization_token()["authorizationData"]
    except (BotoCoreError, ClientError) as exc:
        raise EcrFailed(_message(exc)) from None
    if not data:
        raise EcrFailed("GetAuthorizationToken returned no authorization data")
    token = str(data[0].get("authorizationToken", ""))
    try:
        username, _, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise EcrFailed("GetAuthorizationToken returned a token that is not base64") from None
    if not password:
        raise EcrFailed("GetAuthorizationToken returned a token without a password")
    expires = data[0].get("expiresAt")
    if isinstance(expires, datetime):
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    else:
        expires = None
    return RegistryCredentials(host, username, password), expires
