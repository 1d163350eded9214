"""Text from apps and builds, made fit for a log: no terminal escapes.

A build's or an app's output may colour itself or move the cursor (npm,
pytest, progress bars). Kept as it came, those escapes show as garbage in a
file, in ``git push``'s ``remote:`` lines and in JSON, and could rewrite what a
user's terminal shows; the CLI adds its own colour when it writes to one.
"""

from __future__ import annotations

import re

# CSI (colours, cursor moves), OSC (titles, links: ended by BEL or ST), and
# the other two-byte escapes; then any control character but tab.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def plain(line: str) -> str:
    """``line`` without terminal escapes or control characters (tabs are kept)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", line))
