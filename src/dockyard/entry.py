"""The ``dockyard`` command: the client commands plus ``dockyard server``."""

from __future__ import annotations

import sys
from typing import Any

from dockyard.cli.main import main as cli_main
from dockyard.cli.serving import server_command


def _start_server(**options: Any) -> None:
    # Imported here so that client commands never load the server's libraries.
    from dockyard.server import ServerSettings, run

    run(ServerSettings(**options))


def main() -> None:
    sys.exit(cli_main(extra_commands=[server_command(_start_server)]))
