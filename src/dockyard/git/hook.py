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
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, BinaryIO

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

    def open(self, path: str) -> http.client.HTTPResponse:
        request = urllib.request.Request(self.url + path, headers=self.headers)
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=60)
        except urllib.error.HTTPError as exc:
            raise ApiRefused(_message(exc.read(), exc.code)) from None
        return response

    def upload(self, path: str, body: BinaryIO, content_type: str) -> Any:
        """POST a file and return the JSON answer.

        It asks first (``Expect: 100-continue``): a body the server refuses
        from its size is never sent, and the refusal is read instead of a
        connection reset halfway through the upload.
        """
        url = urllib.parse.urlsplit(self.url + path)
        size = os.fstat(body.fileno()).st_size
        head = [
            f"POST {url.path}?{url.query} HTTP/1.1",
            f"Host: {url.netloc}",
            f"Content-Type: {content_type}",
            f"Content-Length: {size}",
            "Expect: 100-continue",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        with socket.create_connection((url.hostname or "", url.port or 80), timeout=60) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            reply = sock.makefile("rb")
            status = _status(reply)
            if status == 100:
                sock.sendfile(body)
                status = _status(reply)
            data = reply.read()
        if status >= 400:
            raise ApiRefused(_message(data, status))
        return json.loads(data)


def _status(reply: BinaryIO) -> int:
    """Read an answer's status line and headers; return its status."""
    parts = reply.readline(65536).split(None, 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError("the server's answer is not HTTP")
    while reply.readline(65536) not in (b"\r\n", b"\n", b""):
        pass
    return int(parts[1])


class ApiRefused(Exception):
    pass


def _deploy(api: Api, app: str, commit: str, branch: str) -> int:
    query = urllib.parse.urlencode({"commit": commit, "branch": branch})
    # A file, not memory: the tree may be large (the server bounds it).
    with tempfile.TemporaryFile() as archive:
        subprocess.run(["git", "archive", "--format=tar", commit], stdout=archive, check=True)
        archive.seek(0)
        try:
            operation = api.upload(f"/apps/{app}/git-deploys?{query}", archive, "application/x-tar")
        except (ApiRefused, OSError, ValueError) as exc:
            print(f"Dockyard: {exc}")
            return 1
    print(f"Dockyard: deploying {branch} ({commit[:7]}) as operation {operation['id']}")
    final: dict[str, object] = {}
    last = ""  # the log's last line: the error, when the deploy failed
    with api.open(f"/operations/{operation['id']}/logs?follow=true") as stream:
        for raw in stream:
            if not raw.strip():
                continue
            event = json.loads(raw)
            if event["kind"] == "log":
                last = str(event["line"])
                print(last, flush=True)
            else:
                final = event["operation"]
    if final.get("status") == "succeeded":
        return 0
    message = str(final.get("message", ""))
    said = last == f"ERROR: {message}"  # each error once
    print(f"Dockyard: deploy {final.get('status', 'lost')}" + ("" if said else f": {message}"))
    if _has_release(api, app):
        print(f"Dockyard: {branch} was not updated; the previous release keeps serving")
    else:
        print(f"Dockyard: {branch} was not updated; {app} has no release yet")
    return 1


def _has_release(api: Api, app: str) -> bool:
    """Whether the app serves a release (so a failed deploy leaves it serving)."""
    try:
        with api.open(f"/apps/{app}") as answer:
            return json.loads(answer.read()).get("release") is not None
    except (ApiRefused, OSError, ValueError):
        return True  # unknown: the safer thing to say is that nothing changed


def _message(body: bytes, status: int) -> str:
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return f"the server answered {status}"


if __name__ == "__main__":
    sys.exit(main())
