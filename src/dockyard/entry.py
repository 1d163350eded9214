"""The ``dockyard`` command: the client commands plus ``dockyard server``."""

from __future__ import annotations

import sys
from typing import Any

# httpx's own command-line tool, which Dockyard never runs, imports rich and
# pygments when they are installed (the dev tools bring them): 40 ms of every
# command's start-up. Without it, httpx is the same HTTP client.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from dockyard.cli.main import main as cli_main  # noqa: E402
from dockyard.cli.serving import server_command  # noqa: E402


def _start_server(**options: Any) -> None:
    # Imported here so that client commands never load the server's libraries.
    from dockyard.server import ServerSettings, run

    run(ServerSettings(**options))


def main() -> None:
    sys.exit(cli_main(extra_commands=[server_command(_start_server)]))
