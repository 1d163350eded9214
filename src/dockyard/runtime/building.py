"""Dockerfile builds on the engine (``domain.containers.Builder``).

The engine's legacy builder runs them; the credentials for the ``FROM``
registries travel in the build request (``X-Registry-Config``), each for its
own host, and nothing is written to a docker config file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import requests
import urllib3
from docker.errors import APIError

from dockyard.domain import errors
from dockyard.domain.building import BuildFailed
from dockyard.domain.containers import RegistryCredentials
from dockyard.domain.images import ImageReference
from dockyard.runtime.engine import Engine
from dockyard.runtime.images import NOT_FOUND, UNAUTHORIZED, UNREACHABLE, registry_error


def _build_error(
    text: str,
    from_images: list[ImageReference],
    credentials: Mapping[str, RegistryCredentials],
) -> errors.DockyardError:
    lower = text.lower()
    named = [i for i in from_images if i.host in text or i.repository in text]
    # The engine does not always say which FROM failed: suspect the one whose
    # credentials were sent, then the first.
    suspects = named or [i for i in from_images if i.host in credentials] or from_images
    image = suspects[0] if suspects else None
    pulling = any(w in lower for w in UNAUTHORIZED + NOT_FOUND + UNREACHABLE)
    if image is not None and pulling:
        found = registry_error(Exception(text), image, credentials.get(image.host))
        if type(found) is errors.CredentialsRejected:  # said as a push gives them
            had = image.host in credentials
            return errors.CredentialsRejected(image.host, had_credentials=had, building=True)
        return found
    return BuildFailed(f"the build failed: {text.strip()}")


class EngineBuilder:
    """Builds on one engine, each build's ``RUN`` steps on its app's network."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def build(
        self,
        context: Path,
        *,
        app: str,
        credentials: Mapping[str, RegistryCredentials],
        from_images: list[ImageReference],
        timeout: float,
        on_line: Callable[[str], None],
    ) -> str:
        """Build the tar ``context``; return the image id (``sha256:...``).

        A client of its own carries only these credentials, each for its own
        host; the engine gets them in the build request, nothing is written
        to a docker config file.
        """
        api = self._engine.api_with(credentials, timeout)
        deadline = time.monotonic() + timeout
        image_id = None
        try:
            with context.open("rb") as archive:
                for event in api.build(
                    fileobj=archive,
                    custom_context=True,
                    rm=True,
                    forcerm=True,
                    decode=True,
                    network_mode=self._engine.network(app),  # RUN steps: as the app runs
                    # Always ask the registry: a base image another app pulled
                    # must not serve a build that lacks the credentials for it.
                    pull=True,
                    # No output for this long ends the build too (the SDK's
                    # default for builds is no read timeout at all).
                    timeout=max(1, int(timeout)),
                ):
                    if "error" in event:
                        raise _build_error(str(event["error"]), from_images, credentials)
                    if "stream" in event:
                        for line in str(event["stream"]).splitlines():
                            if line.strip():
                                on_line(line.rstrip())
                    aux = event.get("aux")
                    if isinstance(aux, dict) and "ID" in aux:
                        image_id = str(aux["ID"])
                    if time.monotonic() > deadline:
                        raise BuildFailed(f"the build took longer than {timeout:.0f} s")
        except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError):
            raise BuildFailed(f"the build took longer than {timeout:.0f} s") from None
        except APIError as exc:
            raise _build_error(str(exc.explanation or exc), from_images, credentials) from None
        finally:
            api.close()
        if image_id is None:
            raise BuildFailed("the build finished without an image")
        return image_id
