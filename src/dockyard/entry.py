"""The ``dockyard`` command: the client commands plus ``dockyard server``."""

from __future__ import annotations

import sys
from typing import Any

# httpx's own command-line tool, which Dockyard never runs, imports rich and
# pygments when they are installed (the dev tools bring them): 40 ms of every
# command's start-up. Without it, httpx is the same HTTP client.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def _start_server(**options: Any) -> None:
    # The data directory is locked before the server's libraries load (they
    # take seconds on a busy machine), so that a second server fails at once.
    from dockyard.datadir import DataDirectoryInUse, DataDirectoryLock

    try:
        lock = DataDirectoryLock.acquire(options["data_dir"])
    except DataDirectoryInUse as exc:
        print(f"dockyard server: {exc.message}", file=sys.stderr)
        sys.exit(1)
    # Imported here so that client commands never load the server's libraries.
    from dockyard.server import ServerSettings, run

    run(ServerSettings(**options), lock)


def main() -> None:
    """The ``dockyard`` command. ``--version`` answers before click and httpx load."""
    if sys.argv[1:] == ["--version"]:
        from dockyard import __version__

        print(f"dockyard, version {__version__}")
        sys.exit(0)
    from dockyard.cli.main import main as cli_main
    from dockyard.cli.serving import server_command

    sys.exit(cli_main(extra_commands=[server_command(_start_server)]))
