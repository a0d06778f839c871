"""The core stands alone: importing it loads no vendor SDK, so it can be read, tested and reused
without Slack, OpenAI, GitHub, Linear or a database (STYLE.md: composition happens in the front
doors)."""

from __future__ import annotations

import json
import subprocess
import sys

VENDOR_SDKS = {
    "aiohttp",
    "alembic",
    "asyncpg",
    "github",
    "gql",
    "httpx",
    "openai",
    "requests",
    "rich",
    "slack_bolt",
    "slack_sdk",
    "sqlalchemy",
    "structlog",
    "urllib3",
}

_IMPORT_THE_CORE = """
import json, pkgutil, importlib, sys
import bot.core
for module in pkgutil.iter_modules(bot.core.__path__):
    importlib.import_module(f"bot.core.{module.name}")
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_importing_the_core_loads_no_vendor_sdk():
    loaded = subprocess.run(
        [sys.executable, "-c", _IMPORT_THE_CORE], capture_output=True, text=True, check=True
    )
    roots = set(json.loads(loaded.stdout))
    assert "bot" in roots  # the core itself was imported
    assert roots & VENDOR_SDKS == set()
