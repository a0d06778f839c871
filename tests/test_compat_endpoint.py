"""Check a real model server with the whole `oi` command: an operator's one-command test.

    OI_COMPAT_BASE_URL=http://localhost:11434/v1 OI_COMPAT_MODEL=llama3.2 \
        .venv/bin/pytest tests/test_compat_endpoint.py -s

`OI_COMPAT_API_KEY` is sent as OPENAI_API_KEY when the server wants one; any `OI_…` variable set
around the command (`OI_STRUCTURED_OUTPUT`, `OI_LLM_TIMEOUT_SECONDS`) applies. Skipped when the
two variables are unset, so the suite never leaves loopback on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.core.answer import Answer

OI = Path(sys.executable).with_name("oi")
BASE_URL = os.environ.get("OI_COMPAT_BASE_URL", "")
MODEL = os.environ.get("OI_COMPAT_MODEL", "")
QUESTION = (
    "Our payment service retries calls to the card provider on timeouts. "
    "What could go wrong, and what should we change first?"
)

pytestmark = pytest.mark.skipif(
    not (BASE_URL and MODEL),
    reason="set OI_COMPAT_BASE_URL and OI_COMPAT_MODEL (and OI_COMPAT_API_KEY if needed) "
    "to check a model server",
)


def test_the_server_answers_oi_with_a_valid_answer():
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    environment.update(OPENAI_BASE_URL=BASE_URL, OPENAI_MODEL=MODEL)
    if os.environ.get("OI_COMPAT_API_KEY"):
        environment["OPENAI_API_KEY"] = os.environ["OI_COMPAT_API_KEY"]
    deadline = float(environment.get("OI_LLM_DEADLINE_SECONDS", "180"))
    result = subprocess.run(
        [str(OI), "backend-engineer", QUESTION, "--json", "-v"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=deadline + 30,
    )
    said = [line for line in result.stderr.splitlines() if line.startswith("oi: ")]
    assert result.returncode == 0, "\n".join(said) or result.stderr[-2000:]
    answer = Answer.model_validate(json.loads(result.stdout))
    settled = [line for line in result.stderr.splitlines() if "llm.structured_output" in line]
    repaired = any("llm.invalid_output" in line for line in result.stderr.splitlines())
    print(f"\n{MODEL} at {BASE_URL} answered oi.")
    configured = os.environ.get("OI_STRUCTURED_OUTPUT", "auto")
    mode = settled[0] if settled else configured.replace("auto", "json_schema")
    print(f"Structured output: {mode}")
    print("It needed the one repair." if repaired else "It fitted the schema at once.")
    print(f"Summary: {answer.summary}")
