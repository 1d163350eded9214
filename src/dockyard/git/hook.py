"""The ``pre-receive`` hook: a push to main or master becomes a deploy operation.

Runs inside ``git receive-pack`` with the pushed objects still in quarantine,
so it archives the commit itself and hands the archive to the API, which
queues the deploy. It then prints the operation's log (git shows each line
as ``remote: ...``) and exits non-zero if the deploy failed, which leaves the
branch where it was. Pushes to other branches are only stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import httpx

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
    with httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(60, read=None),
    ) as client:
        return _deploy(client, app, commit, branch)


def _deploy(client: httpx.Client, app: str, commit: str, branch: str) -> int:
    with tempfile.TemporaryFile() as archive:
        subprocess.run(["git", "archive", "--format=tar", commit], stdout=archive, check=True)
        archive.seek(0)
        response = client.post(
            f"/apps/{app}/git-deploys",
            params={"commit": commit, "branch": branch},
            content=archive.read(),
            headers={"Content-Type": "application/x-tar"},
        )
    if response.status_code >= 400:
        print(f"Dockyard: {_message(response)}")
        return 1
    operation = response.json()
    print(f"Dockyard: deploying {branch} ({commit[:7]}) as operation {operation['id']}")
    final: dict[str, object] = {}
    with client.stream(
        "GET", f"/operations/{operation['id']}/logs", params={"follow": "true"}
    ) as stream:
        for raw in stream.iter_lines():
            if not raw:
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


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        return f"the server answered {response.status_code}"


if __name__ == "__main__":
    sys.exit(main())
