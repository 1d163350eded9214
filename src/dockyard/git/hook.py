"""The ``pre-receive`` hook: a push to main or master becomes a deploy operation.

Runs inside ``git receive-pack`` with the pushed objects still in quarantine,
so it archives the commit itself and hands the archive to the API, which
queues the deploy. It then prints the operation's log (git shows each line
as ``remote: ...``) and exits non-zero if the deploy failed, which leaves the
branch where it was. Pushes to other branches are only stored.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import BinaryIO

from dockyard.domain.building import DEFAULT_BRANCHES, ZERO_COMMIT


def main() -> int:
    url, token, app = (
        os.environ.get(k, "") for k in ("DOCKYARD_URL", "DOCKYARD_TOKEN", "DOCKYARD_APP")
    )
    if not (url and token and app):
        print("Dockyard: this repository only accepts pushes through the Dockyard server")
        return 1
    updates = [line.split() for line in sys.stdin.read().splitlines() if line.strip()]
    deploy = None
    for _old, new, ref in updates:
        branch = ref.removeprefix("refs/heads/")
        if new == ZERO_COMMIT:
            print(f"Dockyard: deleted {ref}")
        elif ref.startswith("refs/heads/") and branch in DEFAULT_BRANCHES and deploy is None:
            deploy = (new, branch)
        else:
            print(
                f"Dockyard: stored {branch} ({new[:7]}) without deploying it; deploy it with\n"
                f"  dockyard deploy --app {app} --git-commitish {branch}"
            )
    if deploy is None:
        return 0
    commit, branch = deploy
    return _deploy(Api(url, token), app, commit, branch)


class Api:
    """Just enough of the API for the hook, with the standard library: it starts fast."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    def open(
        self, path: str, body: BinaryIO | None = None, content_type: str = ""
    ) -> http.client.HTTPResponse:
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        if body is not None:
            headers["Content-Length"] = str(os.fstat(body.fileno()).st_size)
        request = urllib.request.Request(self.url + path, data=body, headers=headers)
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            raise ApiRefused(_message(exc.read(), exc.code)) from None
        return response


class ApiRefused(Exception):
    pass


def _deploy(api: Api, app: str, commit: str, branch: str) -> int:
    query = urllib.parse.urlencode({"commit": commit, "branch": branch})
    # A file, not memory: the tree may be large (the server bounds it).
    with tempfile.TemporaryFile() as archive:
        subprocess.run(["git", "archive", "--format=tar", commit], stdout=archive, check=True)
        archive.seek(0)
        try:
            with api.open(
                f"/apps/{app}/git-deploys?{query}", archive, "application/x-tar"
            ) as answer:
                operation = json.loads(answer.read())
        except (ApiRefused, OSError) as exc:
            print(f"Dockyard: {exc}")
            return 1
    print(f"Dockyard: deploying {branch} ({commit[:7]}) as operation {operation['id']}")
    final: dict[str, object] = {}
    with api.open(f"/operations/{operation['id']}/logs?follow=true") as stream:
        for raw in stream:
            if not raw.strip():
                continue
            event = json.loads(raw)
            if event["kind"] == "log":
                print(event["line"], flush=True)
            else:
                final = event["operation"]
    if final.get("status") == "succeeded":
        return 0
    print(f"Dockyard: deploy {final.get('status', 'lost')}: {final.get('message', '')}")
    print(f"Dockyard: {branch} was not updated; the previous release keeps serving")
    return 1


def _message(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return f"the server answered {status}"


if __name__ == "__main__":
    sys.exit(main())
