"""Secrets are replaced in place, counted once, and ordinary code, prose and diffs are untouched."""

from __future__ import annotations

import pytest

from bot.context.redaction import Redacted, redact

# Made up, and built by concatenation so that no scanner takes this file for a leak.
GITHUB = "ghp_" + "a1B2" * 9
AWS_ID = "AKIA" + "Z7Y6X5W4V3U2T1S0"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzz9" * 2
SLACK = "xoxb-" + "1234567890-0987654321-" + "AbCdEf" * 4
OPENAI = "sk-proj-" + "Ab3_" * 10
LINEAR = "lin_api_" + "q9W8e7" * 6
PEM_BODY = "MIIEpAIBAAKCAQEA7bq2\nZ3mL9sK0+abc/def==\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"id {AWS_ID} here", "id [REDACTED] here"),
        ("ASIA" + "ABCDEFGHIJKLMNOP", "[REDACTED]"),
        (f"token {GITHUB}.", "token [REDACTED]."),
        *((f"{prefix}_" + "x9" * 18, "[REDACTED]") for prefix in ("gho", "ghu", "ghs", "ghr")),
        ("github_pat_" + "11ABCDEFG_" * 4, "[REDACTED]"),
        (f"SLACK_BOT_TOKEN={SLACK}", "SLACK_BOT_TOKEN=[REDACTED]"),
        *((f"{prefix}-" + "1-2a3b4c5d6e7f", "[REDACTED]") for prefix in ("xoxp", "xoxa", "xapp")),
        (
            "post to https://hooks.slack.com/services/T0001/B0002/XXyyZZ112233 now",
            "post to https://hooks.slack.com/services/[REDACTED] now",
        ),
        (f"key: {OPENAI}", "key: [REDACTED]"),
        ("sk-" + "9aZ" * 8, "[REDACTED]"),
        (f"linear {LINEAR}", "linear [REDACTED]"),
        (
            "curl -H 'Authorization: Bearer abcdef0123456789abcdef.xyz' …",
            "curl -H 'Authorization: Bearer [REDACTED]' …",
        ),
        ("Authorization: Basic dXNlcjpodW50ZXIy", "Authorization: Basic [REDACTED]"),
    ],
)
def test_tokens(text, expected):
    assert redact(text) == Redacted(expected, 1)


@pytest.mark.parametrize(
    "label",
    [
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "DSA PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "PRIVATE KEY",
        "PGP PRIVATE KEY BLOCK",
    ],
)
def test_private_keys_are_redacted_whole(label):
    key = f"-----BEGIN {label}-----\n{PEM_BODY}-----END {label}-----"
    result = redact(f"key.pem:\n{key}\nafter")
    assert result.text == "key.pem:\n[REDACTED]\nafter"
    assert result.count == 1


def test_private_keys_inside_json_and_cut_off_keys():
    service_account = (
        '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEv\\n-----END PRIVATE KEY-----\\n", '
        '"client_email": "bot@example.iam.gserviceaccount.com"}'
    )
    assert redact(service_account).text == (
        '{"private_key": "[REDACTED]\\n", "client_email": "bot@example.iam.gserviceaccount.com"}'
    )
    assert redact(f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}").text == "[REDACTED]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('password = "hunter2"', 'password = "[REDACTED]"'),
        ("db_password: 'p4ss word'", "db_password: '[REDACTED]'"),
        ('{"client_secret": "a\\"b", "n": 1}', '{"client_secret": "[REDACTED]", "n": 1}'),
        ("'api_key' => 's3cr3t'", "'api_key' => '[REDACTED]'"),
        ("apiKey: 'abc123'", "apiKey: '[REDACTED]'"),
        ("X-Api-Key: 8f3a9c1d", "X-Api-Key: [REDACTED]"),
        ("spring.datasource.password=Tr0ub4dor", "spring.datasource.password=[REDACTED]"),
        (f"aws_secret_access_key = {AWS_SECRET}", "aws_secret_access_key = [REDACTED]"),
        (f"AWS_SECRET_ACCESS_KEY: {AWS_SECRET}", "AWS_SECRET_ACCESS_KEY: [REDACTED]"),
        ("SECRET_KEY = 'django-insecure-1x'", "SECRET_KEY = '[REDACTED]'"),
        ("pwd=hunter2 ok", "pwd=[REDACTED] ok"),
        ("auth: 'admin:admin'", "auth: '[REDACTED]'"),
        ("login(user='me', password='pa55')", "login(user='me', password='[REDACTED]')"),
        ("GET /export?token=abc123&page=2", "GET /export?token=[REDACTED]&page=2"),
        ("postgres://app:s3cret@db:5432/app", "postgres://app:[REDACTED]@db:5432/app"),
        ("redis://:hunter2@cache:6379/0", "redis://:[REDACTED]@cache:6379/0"),
    ],
)
def test_assignments_and_url_credentials(text, expected):
    result = redact(text)
    assert (result.text, result.count) == (expected, 1)


@pytest.mark.parametrize(
    "text",
    [
        'password = ""',
        "password: None",
        "token: null",
        "secret = nil",
        "password: <your-password>",
        "DB_PASSWORD=${DB_PASSWORD}",
        "token: ${{ secrets.GITHUB_TOKEN }}",
        "password: changeme",
        "api_key = 'xxxxxxxx'",
        "password: '********'",
        "OPENAI_API_KEY=sk-… oi backend-engineer",
        "password = '...'",
        "postgres://app:${PASSWORD}@db/app",
        "auth: true",
    ],
)
def test_empty_and_placeholder_values_are_kept(text):
    assert redact(text) == Redacted(text, 0)


def test_secret_inside_a_secret_assignment_counts_once():
    result = redact(f'GITHUB_TOKEN="{GITHUB}"\nurl = "https://x-access-token:{GITHUB}@github.com"')
    assert result.text == (
        'GITHUB_TOKEN="[REDACTED]"\nurl = "https://x-access-token:[REDACTED]@github.com"'
    )
    assert result.count == 2


def test_unquoted_names_are_code_except_in_configuration_files():
    text = "password: supersecret\ntoken: hunter2\n"
    assert redact(text).text == "password: supersecret\ntoken: [REDACTED]\n"
    result = redact(text, path="deploy/values.yaml")
    assert (result.text, result.count) == ("password: [REDACTED]\ntoken: [REDACTED]\n", 2)


ENV = """\
# database
DATABASE_URL=postgres://app:s3cret@db/app
export LOG_LEVEL=INFO
STRIPE_KEY="rk_live_abc"
EMPTY=
PORT = 3000
"""


@pytest.mark.parametrize("path", [".env", "deploy/.env", ".env.production", "app/.env.local"])
def test_every_value_of_a_dotenv_file(path):
    result = redact(ENV, path=path)
    assert result.text == (
        "# database\n"
        "DATABASE_URL=postgres://app:[REDACTED]@db/app\n"
        "export LOG_LEVEL=[REDACTED]\n"
        'STRIPE_KEY="[REDACTED]"\n'
        "EMPTY=\n"
        "PORT = [REDACTED]\n"
    )
    assert result.count == 4


@pytest.mark.parametrize("path", [".env.example", ".env.sample", ".env.template", "env.py", None])
def test_examples_and_other_files_keep_ordinary_values(path):
    result = redact(ENV, path=path)
    assert result.text == ENV.replace("app:s3cret@", "app:[REDACTED]@")
    assert result.count == 1


def test_secrets_on_both_sides_of_a_diff():
    diff = (
        "@@ -1,4 +1,4 @@\n"
        " import os\n"
        '-API_KEY = "0ld-k3y-0ld"\n'
        '+API_KEY = os.environ["API_KEY"]\n'
        f"-slack = '{SLACK}'\n"
        "+slack = settings.slack_token\n"
        "+-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "+b3BlbnNzaC1rZXk\n"
        "+-----END OPENSSH PRIVATE KEY-----\n"
    )
    result = redact(diff)
    assert result.text == (
        "@@ -1,4 +1,4 @@\n"
        " import os\n"
        '-API_KEY = "[REDACTED]"\n'
        '+API_KEY = os.environ["API_KEY"]\n'
        "-slack = '[REDACTED]'\n"
        "+slack = settings.slack_token\n"
        "+[REDACTED]\n"
    )
    assert result.count == 3


PYTHON = '''\
"""Connect to the database; the password comes from the environment."""

import os
from dataclasses import dataclass


@dataclass
class Settings:
    password: str
    api_key: str | None = None
    max_tokens: int = 1000
    token_count: int = 0
    auth_url: str = "https://auth.example.com/login"


def connect(settings: Settings, password: str = "") -> None:
    token = os.environ["GITHUB_TOKEN"]
    secret = get_secret(name="db", version=2)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if password == settings.password or password != secret:
        auth = settings.auth
    api_key = api_key or self._api_key
    log.info("token: %s, password: {masked}", token_type)
    raise ValueError("password: must be at least 12 characters")
'''

README = """\
# oi

Set `SLACK_BOT_TOKEN` (xoxb-…) and `SLACK_SIGNING_SECRET`, then run
`OPENAI_API_KEY=sk-… oi backend-engineer "review this"`. Tokens are read from the
environment; the password for the store is in `DATABASE_URL`
(`postgresql+asyncpg://postgres@127.0.0.1:5432/test`). See
https://github.com/acme/payments/pull/42 and the task-tracking-sheet-for-q3-2024.
Auth: the bot uses a bearer token from the settings. Risk-assessment-of-the-new-flow.
| `GITHUB_TOKEN`, `GITHUB_API_URL` | GitHub (Enterprise: its `/api/v3` URL) | — |
"""

DIFF = """\
diff --git a/bot/llm.py b/bot/llm.py
@@ -10,7 +10,7 @@ class LLMClient:
-        self._token = token
+        self._api_key = api_key
+        headers = {"Authorization": f"Bearer {self._api_key}"}
-    password: str
+    password: SecretStr
"""


@pytest.mark.parametrize("text", [PYTHON, README, DIFF])
def test_ordinary_code_prose_and_diffs_are_untouched(text):
    assert redact(text, path="src/app.py") == Redacted(text, 0)
    assert redact(text) == Redacted(text, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("    command: --password=Tr0ub4dor", "    command: --password=[REDACTED]"),
        ("    env: DB_PASSWORD=Tr0ub4dor", "    env: DB_PASSWORD=[REDACTED]"),
        ("pg_dump --password 'pa ss' -h db", "pg_dump --password '[REDACTED]' -h db"),
        ("curl -u deploy:hunter22 https://x", "curl -u deploy:[REDACTED] https://x"),
        ("mysql -u root -phunter22 app", "mysql -u root -p[REDACTED] app"),
        ("DB_PASS=hunter22", "DB_PASS=[REDACTED]"),
        ("PGPASSWORD=hunter22 psql", "PGPASSWORD=[REDACTED] psql"),
        ("ENCRYPTION_KEY: 'abc'", "ENCRYPTION_KEY: '[REDACTED]'"),
        ("SIGNING_SALT=9fQ2xL7pR4mZ8vK1", "SIGNING_SALT=[REDACTED]"),
        (
            "AccountName=a;AccountKey=c2VjcmV0==;Suffix=x",
            "AccountName=a;AccountKey=[REDACTED];Suffix=x",
        ),
        (
            "https://a.blob.core.windows.net/c?sv=1&sig=abc%2B",
            "https://a.blob.core.windows.net/c?sv=1&sig=[REDACTED]",
        ),
    ],
)
def test_secrets_behind_harmless_keys_flags_and_names(text, expected):
    assert redact(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "pg_dump --password $PGPASSWORD",
        "mkdir -p build && git push -u origin main",
        "docker run -u 1000:1000 app",
        "CACHE_KEY = 'users:list'",
        "cache_key: users-list-v2",
    ],
)
def test_flags_and_keys_that_hold_no_secret_are_kept(text):
    assert redact(text) == Redacted(text, 0)


def test_a_dotenv_diff_is_redacted_line_by_line():
    diff = "@@ -1 +1,2 @@\n LOG_LEVEL=info\n+STRIPE_WEBHOOK=whatever-value\n-OLD=gone"
    assert redact(diff, path=".env").text == (
        "@@ -1 +1,2 @@\n LOG_LEVEL=[REDACTED]\n+STRIPE_WEBHOOK=[REDACTED]\n-OLD=[REDACTED]"
    )


@pytest.mark.parametrize("offset", [-30, -5, 0, 5])
def test_a_secret_across_a_scanning_window_is_redacted_whole(offset):
    padding = "x " * ((32_768 + offset) // 2)
    result = redact(f"{padding}{GITHUB} and token = 'hunter22'")
    assert GITHUB[4:] not in result.text and "hunter22" not in result.text
    assert result.count == 2


def test_a_huge_text_is_cut_before_it_is_scanned():
    result = redact("y" * 1_000_000 + GITHUB)
    assert result.text.endswith("… (cut here: 1,000,040 characters in all)")
    assert GITHUB not in result.text
