"""`oi-bot`: the Slack server. Not built yet: the Slack front door is the next piece of work."""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "oi-bot: the Slack server is not available yet; use the `oi` terminal command.",
        file=sys.stderr,
    )
    return 2
