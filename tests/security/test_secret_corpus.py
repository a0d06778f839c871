"""No secret read from GitHub or Linear reaches the model, Slack, a log line or the store.

A corpus of realistic secrets (made up, correctly shaped: right prefixes, lengths and alphabets)
is planted in every place a source's text comes from: a PR's title, description and `.env` diff,
an issue's comment, a configuration file, a repository's YAML manifest, a Linear issue's title,
description and comment. Beside them sit as many look-alikes that are not secrets (UUIDs, commit
SHAs, lockfile integrity hashes, base64 images, versions, plain URLs), which must reach the model
as they are. The real bot answers a question naming all of them over signed HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import sqlite3
import string
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.context.redaction import REDACTED, redact, vendor_rules
from bot.log import VENDOR_LEVEL, VENDOR_LOGGERS
from tests.fakes.github_api import FakeGitHub
from tests.fakes.linear_api import FakeLinear
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_requests import event_body, slash_command_body
from tests.slack_bot import RunningBot, answer_updates, mention_event, running_bot

PRIVATE_CHANNEL = "G111"  # linking there needs no confirmation: linking is not under test here
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"


def shaped(alphabet: str, length: int, seed: str) -> str:
    """A random-looking string, the same every run: made up, never a real credential."""
    generator = random.Random(seed)
    return "".join(generator.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class Planted:
    """A secret (`value`) and the line it is written in, as people write it."""

    name: str
    value: str
    line: str


def planted(name: str, value: str, template: str) -> Planted:
    return Planted(name, value, template.format(value))


# Prefixes are split so that no scanner takes this file for a leak.
GH, GL, XOX = "gh", "gl", "xo" + "x"
PR_TITLE = [
    planted("github pat in a title", GH + "p_" + shaped(ALNUM, 36, "t1"), "Rotate {} after leak"),
    planted("gitlab pat in a title", GL + "pat-" + shaped(URLSAFE, 20, "t2"), "Use {} for mirror"),
]
PR_BODY = [
    planted("aws access key id", "AK" + "IA" + shaped(UPPER_DIGITS, 16, "b1"), "key id {} for CI"),
    planted("aws temporary key id", "AS" + "IA" + shaped(UPPER_DIGITS, 16, "b2"), "`{}` expires"),
    planted(
        "aws secret key in prose",
        shaped(B64, 40, "b3"),
        "The AWS secret access key is {} (rotate it)",
    ),
    planted("aws secret key assigned", shaped(B64, 40, "b4"), "aws_secret_access_key = {}"),
    planted("google api key", "AI" + "za" + "Sy" + shaped(URLSAFE, 33, "b5"), "maps key: {}"),
    planted("github oauth", GH + "o_" + shaped(ALNUM, 36, "b6"), "token {} from the app"),
    planted("github app", GH + "s_" + shaped(ALNUM, 36, "b7"), "installation {}"),
    planted("github user-to-server", GH + "u_" + shaped(ALNUM, 36, "b8"), "user {}"),
    planted("github refresh", GH + "r_" + shaped(ALNUM, 76, "b9"), "refresh {}"),
    planted("github fine-grained", "github_" + "pat_" + shaped(URLSAFE, 82, "b10"), "pat {}"),
    planted("gitlab runner", GL + "rt-" + shaped(URLSAFE, 20, "b11"), "runner {}"),
    planted("gitlab deploy", GL + "dt-" + shaped(URLSAFE, 20, "b12"), "deploy token {}"),
    planted("slack bot", XOX + "b-1234567890123-1234567890123-" + shaped(ALNUM, 24, "b13"), "{}"),
    planted(
        "slack user", XOX + "p-1234567890-1234567890-1234567890-" + shaped(HEX, 32, "b14"), "{}"
    ),
    planted("slack app", "xa" + "pp-1-A0123456789-1234567890123-" + shaped(HEX, 64, "b15"), "{}"),
    planted(
        "slack webhook",
        "T0"
        + shaped(UPPER_DIGITS, 8, "b16")
        + "/B0"
        + shaped(UPPER_DIGITS, 8, "b17")
        + "/"
        + shaped(ALNUM, 24, "b18"),
        "post to https://hooks.slack.com/services/{}",
    ),
    planted("stripe live secret", "sk" + "_live_" + shaped(ALNUM, 99, "b19"), "STRIPE={}"),
    planted("stripe restricted", "rk" + "_live_" + shaped(ALNUM, 99, "b20"), "restricted {}"),
    planted("stripe webhook secret", "wh" + "sec_" + shaped(ALNUM, 32, "b21"), "signing {}"),
    planted("stripe test secret", "sk" + "_test_" + shaped(ALNUM, 24, "b22"), "test key {}"),
    planted(
        "openai project key",
        "sk-" + "proj-" + shaped(URLSAFE, 74, "b23") + "T3Blbk" + "FJ" + shaped(URLSAFE, 74, "b24"),
        "OPENAI_API_KEY={}",
    ),
    planted("openai legacy key", "sk-" + shaped(ALNUM, 48, "b25"), "use {} for evals"),
    planted(
        "anthropic key", "sk-" + "ant-api03-" + shaped(URLSAFE, 93, "b26") + "AA", "claude: {}"
    ),
    planted("hugging face", "hf" + "_" + shaped(string.ascii_letters, 34, "b27"), "HF {}"),
    planted("twilio api key", "SK" + shaped(HEX, 32, "b28"), "twilio sid {}"),
    planted("twilio auth token", shaped(HEX, 32, "b29"), "TWILIO_AUTH_TOKEN={}"),
    planted(
        "sendgrid",
        "SG" + "." + shaped(URLSAFE, 22, "b30") + "." + shaped(URLSAFE, 43, "b31"),
        "mail with {}",
    ),
    planted("pypi", "pypi-" + "AgEIcHlwaS5vcmc" + shaped(URLSAFE, 70, "b32"), "twine {}"),
    planted("npm", "np" + "m_" + shaped(ALNUM, 36, "b33"), "//registry.npmjs.org/:_authToken={}"),
    planted("linear key", "lin" + "_api_" + shaped(ALNUM, 40, "b34"), "linear {}"),
    planted(
        "jwt",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        + "eyJ"
        + shaped(URLSAFE, 60, "b35")
        + "."
        + shaped(URLSAFE, 43, "b36"),
        "session cookie {}",
    ),
    planted("curl -u", "Cu" + shaped(ALNUM, 14, "b37"), "curl -u deploy:{} https://ci.example.com"),
    planted("mysql -p", "My" + shaped(ALNUM, 14, "b38"), "mysql -u root -p{} payments"),
    planted("--password flag", "Pw" + shaped(ALNUM, 14, "b39"), "pg_dump --password {} -h db"),
    planted("--api-key= flag", "Ak" + shaped(ALNUM, 20, "b40"), "oi-cli --api-key={} sync"),
    planted("sshpass", "Sp" + shaped(ALNUM, 12, "b41"), "sshpass -p '{}' ssh deploy@host"),
    planted("redis-cli -a", "Rc" + shaped(ALNUM, 16, "b42"), "redis-cli -h cache -a {} ping"),
    planted(
        "bearer header",
        shaped(URLSAFE, 40, "b43"),
        "curl -H 'Authorization: Bearer {}' https://api.example.com",
    ),
    planted("basic header", shaped(B64, 24, "b44") + "==", "Authorization: Basic {}"),
    planted(
        "digitalocean (gitleaks rule)", "dop" + "_v1_" + shaped(HEX, 64, "b45"), "doctl auth {}"
    ),
    planted("shopify (gitleaks rule)", "shp" + "at_" + shaped(HEX, 32, "b46"), "shop {}"),
    planted("vault (gitleaks rule)", "hv" + "s." + shaped(URLSAFE, 95, "b47"), "VAULT {}"),
    planted("doppler (gitleaks rule)", "dp.pt." + shaped(ALNUM, 43, "b48"), "doppler {}"),
    planted("databricks (gitleaks rule)", "dapi" + shaped(HEX, 32, "b49"), "databricks {}"),
]
ISSUE_COMMENT = [
    planted("postgres url", "Pg" + shaped(ALNUM, 14, "c1"), "postgres://app:{}@db:5432/app"),
    planted(
        "mongodb srv url", "Mg" + shaped(ALNUM, 14, "c2"), "mongodb+srv://svc:{}@c0.mongodb.net/x"
    ),
    planted("redis url", "Rd" + shaped(ALNUM, 14, "c3"), "REDIS=redis://:{}@cache:6379/0"),
    planted(
        "https basic", "Hb" + shaped(ALNUM, 14, "c4"), "git clone https://bot:{}@git.acme.io/x"
    ),
    planted("api_key query", shaped(ALNUM, 32, "c5"), "GET https://api.acme.io/v1?api_key={}&q=1"),
    planted("token query", shaped(ALNUM, 32, "c6"), "see https://files.acme.io/a.zip?token={}"),
    planted(
        "access_token query", shaped(ALNUM, 32, "c7"), "https://x.io/cb?access_token={}&state=1"
    ),
    planted(
        "azure sas sig",
        shaped(ALNUM, 30, "c8") + "%3D",
        "https://acme.blob.core.windows.net/c/b.txt?sv=2022-11-02&sp=r&sig={}",
    ),
    planted(
        "jdbc password",
        "Jd" + shaped(ALNUM, 12, "c9"),
        "jdbc:mysql://db:3306/pay?user=app&password={}",
    ),
    planted(
        "ado.net password",
        "An" + shaped(ALNUM, 12, "c10"),
        "Server=tcp:sql.acme.io;Database=pay;User ID=app;Password={};Encrypt=True",
    ),
    planted("pasted env DB_PASS", "Dp" + shaped(ALNUM, 14, "c11"), "DB_PASS={}"),
    planted("json client secret", shaped(URLSAFE, 32, "c12"), '{{"client_secret": "{}"}}'),
    planted("js apiKey", shaped(ALNUM, 28, "c13"), "const config = {{ apiKey: '{}' }};"),
    planted("php password", "Ph" + shaped(ALNUM, 12, "c14"), "$password = '{}';"),
    planted("x-api-key header", shaped(HEX, 32, "c15"), "X-Api-Key: {}"),
]
ENV_DIFF = [
    planted("env DB_PASS", "Ed" + shaped(ALNUM, 14, "e1"), "DB_PASS={}"),
    planted("env credentials", shaped(B64, 40, "e2"), "GCP_CREDENTIALS={}"),
    planted(
        "env passphrase",
        "correct horse " + shaped(string.ascii_lowercase, 8, "e3"),
        'GPG_PASSPHRASE="{}"',
    ),
    planted("env encryption key", shaped(B64, 44, "e4"), "ENCRYPTION_KEY={}"),
    planted("env plain word value", "tangerine" + shaped(string.digits, 4, "e5"), "ADMIN_PIN={}"),
    planted("env exported token", shaped(ALNUM, 30, "e6"), "export SENTRY_TOKEN={}"),
    planted("env salt", shaped(ALNUM, 32, "e7"), "SESSION_COOKIE_SALT='{}'"),
    planted("env datadog", shaped(HEX, 32, "e8"), "DD_API_KEY={}"),
]
MANIFEST = [
    planted("compose command flag", "Cf" + shaped(ALNUM, 14, "m1"), "    command: --password={}"),
    planted("compose env list", "Cl" + shaped(ALNUM, 14, "m2"), "      - DB_PASSWORD={}"),
    planted("compose env: key", "Ck" + shaped(ALNUM, 14, "m3"), "    env: MYSQL_ROOT_PASSWORD={}"),
    planted(
        "compose plain value", "plainword" + shaped(HEX, 4, "m4"), "      POSTGRES_PASSWORD: {}"
    ),
    planted("compose high entropy", shaped(ALNUM, 40, "m5"), "      WEBHOOK_SIGNING: {}"),
    planted("compose secret key", shaped(URLSAFE, 50, "m6"), "      SECRET_KEY_BASE: {}"),
]
FILE = [
    planted(
        "service account private key",
        shaped(B64, 64, "f1"),
        '  "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQ{}\\n-----END PRIVATE KEY-----\\n",',
    ),
    planted("service account key id", shaped(HEX, 40, "f2"), '  "private_key_secret": "{}",'),
    planted(
        "azure storage account key",
        shaped(B64, 86, "f3") + "==",
        '  "storage": "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={};'
        'EndpointSuffix=core.windows.net",',
    ),
    planted("azure ad client secret", "abc8Q~" + shaped(ALNUM, 34, "f4"), '  "aad": "{}",'),
    planted("json password", "Js" + shaped(ALNUM, 14, "f5"), '  "password": "{}",'),
    planted("json api key", shaped(ALNUM, 32, "f6"), '  "apiKey": "{}",'),
    planted(
        "rsa key body",
        shaped(B64, 64, "f7"),
        '  "pem": "-----BEGIN RSA PRIVATE KEY-----\\n{}\\n-----END RSA PRIVATE KEY-----",',
    ),
]
LINEAR_TITLE = [planted("linear title token", GH + "p_" + shaped(ALNUM, 36, "l1"), "Leaked {}")]
LINEAR_DESCRIPTION = [
    planted("linear description stripe", "sk" + "_live_" + shaped(ALNUM, 40, "l2"), "key {} here"),
    planted("linear description password", "Ld" + shaped(ALNUM, 14, "l3"), "password: '{}'"),
    planted("linear description url", "Lu" + shaped(ALNUM, 14, "l4"), "amqp://mq:{}@rabbit:5672"),
]
LINEAR_COMMENT = [
    planted(
        "linear comment slack",
        XOX + "b-1234567890-1234567890-" + shaped(ALNUM, 24, "l5"),
        "bot token {}",
    ),
    planted(
        "linear comment ssh key",
        shaped(B64, 64, "l6"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----",
    ),
]
SECRETS = [
    *PR_TITLE,
    *PR_BODY,
    *ISSUE_COMMENT,
    *ENV_DIFF,
    *MANIFEST,
    *FILE,
    *LINEAR_TITLE,
    *LINEAR_DESCRIPTION,
    *LINEAR_COMMENT,
]
# Where each group is written when it is in a file: the path decides how it is redacted.
ENV_PATH, MANIFEST_PATH, FILE_PATH = ".env", "docker-compose.yml", "config/production.json"
_FILE_PATHS = {ENV_PATH: ENV_DIFF, MANIFEST_PATH: MANIFEST, FILE_PATH: FILE}


def _uuid(seed: str) -> str:
    h = hashlib.md5(seed.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _base64_of(seed: str, size: int) -> str:
    return base64.b64encode(hashlib.sha512(seed.encode()).digest() * (size // 64)).decode()


# Look-alikes that are not secrets: each must reach the model exactly as written.
NOT_SECRETS = [
    *(_uuid(f"u{n}") for n in range(12)),
    *(hashlib.sha1(f"commit {n}".encode()).hexdigest() for n in range(10)),
    *(hashlib.sha1(f"short {n}".encode()).hexdigest()[:7] for n in range(4)),
    *(hashlib.sha256(f"digest {n}".encode()).hexdigest() for n in range(6)),
    *("sha512-" + _base64_of(f"npm {n}", 64) for n in range(8)),  # package-lock "integrity"
    *("sha1-" + _base64_of(f"yarn {n}", 64)[:28] for n in range(2)),
    *("sha256:" + hashlib.sha256(f"wheel {n}".encode()).hexdigest() for n in range(6)),
    "python@sha256:" + hashlib.sha256(b"image").hexdigest(),
    "data:image/png;base64," + _base64_of("png", 640),
    "data:image/gif;base64," + _base64_of("gif", 256),
    *("v1.4.2", "2.31.0", "1.0.0-rc.1+build.42", "^18.2.0", "~=3.11", ">=2.0,<3"),
    "https://api.example.com/v1/charges?page=2&sort=created",
    "https://github.com/acme/payments/pull/42/files#diff-1a2b3c",
    "https://registry.npmjs.org/js-tokens/-/js-tokens-4.0.0.tgz",
    "https://files.pythonhosted.org/packages/ab/cd/requests-2.31.0-py3-none-any.whl",
    "git@github.com:acme/payments.git",
    "s3://acme-artifacts/builds/2026-11-20/payments.tar.gz",
    "postgres://db.internal:5432/payments",
    "token_count: 4096",
    "max_tokens = 1000",
    "password_min_length: 12",
    "cache_key = 'users:list:v2'",
    "password = get_password()",
    "api_key = settings.api_key",
    "token: str",
    "DB_PASSWORD=${DB_PASSWORD}",
    "password: <your-password>",
    "secret: changeme",
    "auth.login.title",
    "X-Request-Id: " + _uuid("request"),
    'ETag: "' + hashlib.md5(b"etag").hexdigest() + '"',
    "#ff00aa",
    "10.0.12.34",
    "deploy@acme.io",
    "2026-11-20T10:00:00Z",
    "scikit-learn==1.5.2",
    "sk-learn-contributors-guide",
    "hf_hub_download",
    "AKIA-style ids are redacted",
    "ghp_ tokens are 40 characters",
    "node_modules/js-tokens",
    "ghcr.io/acme/payments:1.4.2",
    "arn:aws:iam::123456789012:role/deploy",
    "us-east-1",
    "0xdeadbeefcafebabe",
    "pk_live_" + "publishable51HrQ2",
    "PORT=3000",
]


def test_the_corpus_is_as_large_as_promised():
    assert len(SECRETS) >= 80 and len(NOT_SECRETS) >= len(SECRETS)
    assert len({s.value for s in SECRETS}) == len(SECRETS)


@pytest.mark.parametrize("secret", SECRETS, ids=lambda s: s.name)
def test_each_secret_shape_is_redacted_on_its_own(secret: Planted):
    path = {id(s): p for p, group in _FILE_PATHS.items() for s in group}.get(id(secret))
    result = redact(secret.line, path=path)
    assert secret.value not in result.text, result.text
    assert REDACTED in result.text


def test_look_alikes_survive():
    text = "\n".join(NOT_SECRETS)
    result = redact(text)
    assert result == type(result)(text, 0), [
        line for line in result.text.splitlines() if REDACTED in line
    ]


def test_the_vendored_gitleaks_rules_load():
    rules = vendor_rules().rules
    assert len(rules) > 200
    assert {"aws-access-token", "github-pat", "stripe-access-token", "gcp-api-key"} <= {
        rule.id for rule in rules
    }


# --- through the real bot ---

LOCK_HASHES = [value for value in NOT_SECRETS if value.startswith(("sha512-", "sha1-"))]
WHEEL_HASHES = [value for value in NOT_SECRETS if value.startswith("sha256:")]
PROSE_LOOK_ALIKES = [value for value in NOT_SECRETS if value not in (*LOCK_HASHES, *WHEEL_HASHES)]


def _lines(planted_secrets: list[Planted]) -> str:
    return "\n".join(secret.line for secret in planted_secrets)


def _package_lock() -> str:
    packages = {
        f"node_modules/pkg-{n}": {
            "version": f"1.{n}.0",
            "resolved": f"https://registry.npmjs.org/pkg-{n}/-/pkg-{n}-1.{n}.0.tgz",
            "integrity": integrity,
        }
        for n, integrity in enumerate(LOCK_HASHES)
    }
    return json.dumps(
        {"name": "payments-web", "lockfileVersion": 3, "packages": packages}, indent=2
    )


def _poetry_lock() -> str:
    return "\n".join(
        f'[[package]]\nname = "pkg-{n}"\nversion = "2.{n}.0"\nfiles = [\n'
        f'    {{file = "pkg_{n}-2.{n}.0-py3-none-any.whl", hash = "{digest}"}},\n]\n'
        for n, digest in enumerate(WHEEL_HASHES)
    )


def _plant(fake_github: FakeGitHub, fake_linear: FakeLinear) -> dict[str, str]:
    """Every secret where a source's text comes from; returns the URLs a question names."""
    manifest = "services:\n  db:\n    image: postgres:16\n" + _lines(MANIFEST) + "\n"
    config = "{\n" + _lines(FILE) + '\n  "region": "us-east-1"\n}\n'
    files = {FILE_PATH: config, "package-lock.json": _package_lock(), "poetry.lock": _poetry_lock()}
    fake_github.add_repo("acme", "payments", files=files, readme="# payments\nCharges cards.")
    # linked, not named: read as a repository, its manifests with it
    fake_github.add_repo("acme", "infra", files={MANIFEST_PATH: manifest}, readme="# infra")
    env_patch = "@@ -1,2 +1,10 @@\n LOG_LEVEL=info\n" + "".join(
        f"+{secret.line}\n" for secret in ENV_DIFF
    )
    fake_github.add_pull(
        "acme",
        "payments",
        7,
        title=" / ".join(secret.line for secret in PR_TITLE),
        body=_lines(PR_BODY) + "\n\nFor reference:\n" + "\n".join(PROSE_LOOK_ALIKES),
        files=[
            {
                "filename": ENV_PATH,
                "status": "modified",
                "additions": len(ENV_DIFF),
                "deletions": 0,
                "changes": len(ENV_DIFF),
                "patch": env_patch,
            }
        ],
        head_sha=hashlib.sha1(b"head").hexdigest(),
    )
    fake_github.add_issue(
        "acme",
        "payments",
        8,
        title="Outage on 20 November",
        body="Pasted from the incident channel.",
        comments=[secret.line for secret in ISSUE_COMMENT],
    )
    fake_linear.add_team("PAY", "Payments")
    fake_linear.add_issue(
        "PAY-9",
        title=LINEAR_TITLE[0].line,
        description=_lines(LINEAR_DESCRIPTION),
        comments=[
            ("Ada", s.line, f"2026-11-20T10:0{n}:00.000Z") for n, s in enumerate(LINEAR_COMMENT)
        ],
    )
    web = f"{fake_github.web_url}/acme/payments"
    return {
        "pull": f"{web}/pull/7",
        "issue": f"{web}/issues/8",
        "config": f"{web}/blob/main/{FILE_PATH}",
        "package-lock": f"{web}/blob/main/package-lock.json",
        "poetry": f"{web}/blob/main/poetry.lock",
    }


async def link_sources(bot: RunningBot, fake_slack: FakeSlack) -> None:
    """Link a repository and the Linear team to the channel, as a channel's admin would."""
    for link in ("link github acme/infra", "link linear PAY"):
        url = fake_slack.response_url(link)
        await bot.send(slash_command_body(link, channel=PRIVATE_CHANNEL, response_url=url))
    await bot.wait_for(lambda fake: len(fake.calls_to("response_url")) == 2)
    replies = [call.args["text"] for call in fake_slack.calls_to("response_url")]
    assert all(reply.startswith("Linked") for reply in replies), replies


def _stored(database: Path) -> str:
    """Every row of every table of the bot's SQLite store, as text."""
    with sqlite3.connect(database) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        rows = [
            repr(row) for table in tables for row in connection.execute(f'SELECT * FROM "{table}"')
        ]
    return "\n".join(rows)


async def test_no_secret_reaches_the_model_slack_the_logs_or_the_store(
    caplog,
    capsys,
    settings_for,
    fake_slack: FakeSlack,
    fake_openai: FakeOpenAI,
    fake_github,
    fake_linear,
    tmp_path,
):
    caplog.set_level(logging.DEBUG)  # every line logged, vendors at their level as deployed
    for vendor in VENDOR_LOGGERS:
        caplog.set_level(VENDOR_LEVEL, logger=vendor)
    urls = _plant(fake_github, fake_linear)
    settings = settings_for(oi_link_policy="anyone", oi_context_token_budget=200_000)
    async with running_bot(settings, fake_slack) as bot:
        await link_sources(bot, fake_slack)
        question = "<@UBOT> is this safe to ship? " + " ".join(f"<{url}>" for url in urls.values())
        await bot.send(
            event_body(
                mention_event(question + " PAY-9", channel=PRIVATE_CHANNEL), event_id="Ev-corpus"
            )
        )
        await bot.wait_for(lambda fake: len(answer_updates(fake)) == 1)
        await bot.settle()

    prompt = json.dumps(fake_openai.requests[0], ensure_ascii=False)
    posted = json.dumps([call.args for call in fake_slack.calls], ensure_ascii=False)
    printed = capsys.readouterr()  # structlog's default logger prints; stdlib's go to caplog
    logged = "\n".join((caplog.text, printed.out, printed.err))
    stored = _stored(Path(settings.database_url.removeprefix("sqlite:///")))
    # everything was read: each place's text is in the prompt, redacted, and in the store
    for marker in (
        "Outage on 20 November",
        " LOG_LEVEL=[REDACTED]",
        "image: postgres:16",
        "us-east-1",
    ):
        assert marker in prompt, marker
    assert "PAY-9" in prompt and "Leaked [REDACTED]" in prompt
    assert "Rotate [REDACTED] after leak" in posted  # the PR's title, in Sources
    assert "Pasted from the incident channel." in stored
    assert "context.redacted" in logged  # the bot's log lines were captured
    leaks = {
        where: [secret.name for secret in SECRETS if secret.value in text]
        for where, text in (
            ("prompt", prompt),
            ("slack", posted),
            ("logs", logged),
            ("store", stored),
        )
    }
    assert leaks == {"prompt": [], "slack": [], "logs": [], "store": []}
    assert [value for value in NOT_SECRETS if _json_text(value) not in prompt] == []


def _json_text(value: str) -> str:
    """`value` as it is written inside a JSON string."""
    return json.dumps(value, ensure_ascii=False)[1:-1]
