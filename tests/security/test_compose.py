"""docker/compose.yaml, read as Docker Compose would read it (there is no Docker engine here to run it), and the
entrypoint roles it calls, run for real where they need no container."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.conftest import ROOT

COMPOSE = ROOT / "docker" / "compose.yaml"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
APP_ROLE = "watchkeeper_app"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the x-app anchor and its `<<` merges, as Compose does


def _ours(compose: dict) -> dict[str, dict]:
    """The services that run our image (built from the repository), with their merged settings."""
    return {name: service for name, service in compose["services"].items() if "build" in service}


def _default_profile(compose: dict) -> dict[str, dict]:
    """What a plain `docker compose up` starts: every service without a profile."""
    return {name: service for name, service in compose["services"].items() if not service.get("profiles")}


def _words(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(word) for word in command]


def _entrypoint_roles() -> set[str]:
    case = ENTRYPOINT.read_text().split('case "$role" in', 1)[1]
    return set(re.findall(r"^  ([a-z-]+)\)$", case, flags=re.MULTILINE))


def test_no_service_sets_a_known_password(compose):
    for name, service in compose["services"].items():
        words = _words(service)
        assert "--demo-passwords" not in words and "--password" not in words, name
        environment = service.get("environment") or {}
        assert not any(key.endswith("PASSWORD") for key in environment), (name, environment)  # only *_FILE
        for key, value in environment.items():
            if key.endswith("_URL") and str(value).startswith("postgres"):
                assert urlparse(str(value)).password is None, (name, key)


def test_a_plain_up_seeds_no_demo_users(compose):
    seeding = [name for name, service in compose["services"].items() if _words(service)[:1] == ["seed"]]

    assert seeding == ["seed"]
    assert "seed" not in _default_profile(compose)
    assert compose["services"]["seed"]["profiles"] == ["demo"]


def test_the_secret_key_is_made_by_the_init_service_not_read_from_the_clone(compose):
    assert "secrets" not in compose  # no Compose secret read from a file of the clone
    assert "../var" not in COMPOSE.read_text() and "var/secret_key" not in COMPOSE.read_text()
    init = compose["services"]["init"]
    assert _words(init) == ["init-secrets"]
    assert "secrets:/secrets" in init["volumes"]
    for name, service in _ours(compose).items():
        if name == "init":
            continue
        environment = service["environment"]
        assert "SECRET_KEY" not in environment, name
        assert environment["SECRET_KEY_FILE"] == "/secrets/secret_key", name
        assert "secrets:/secrets:ro" in service["volumes"], name  # read-only: only init writes secrets
    # Nothing starts before init has made the secrets: the database waits for it, and everything else for the database.
    assert compose["services"]["postgres"]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/secrets/postgres_password"


def test_published_ports_are_bound_to_this_machine_only(compose):
    published = {name: service["ports"] for name, service in compose["services"].items() if service.get("ports")}

    assert published == {
        "web": ["127.0.0.1:8000:8000"], "prometheus": ["127.0.0.1:9090:9090"], "grafana": ["127.0.0.1:3000:3000"],
    }


def test_web_and_workers_run_as_the_app_role_and_only_migrate_as_the_owner(compose):
    for name, service in _ours(compose).items():
        if name == "init":
            assert "DATABASE_URL" not in service["environment"]
            continue
        environment = service["environment"]
        assert urlparse(environment["DATABASE_URL"]).username == APP_ROLE, name
        assert environment["DATABASE_PASSWORD_FILE"] == "/secrets/app_db_password", name
        if name == "migrate":
            assert urlparse(environment["MIGRATE_DATABASE_URL"]).username == "postgres"
            assert environment["MIGRATE_DATABASE_PASSWORD_FILE"] == "/secrets/postgres_password"
        else:
            assert "MIGRATE_DATABASE_URL" not in environment, name
            # The role and its grants exist before any app process connects.
            assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def test_every_role_compose_asks_for_is_one_the_entrypoint_knows(compose):
    roles = _entrypoint_roles()

    assert {"init-secrets", "migrate", "web", "worker", "maintenance-worker", "beat", "seed", "createadmin"} <= roles
    for name, service in _ours(compose).items():
        assert _words(service)[0] in roles, name


def test_compose_runs_with_the_settings_the_makefile_uses(compose):
    for name, service in _ours(compose).items():
        environment = service["environment"]
        assert str(environment.get("DEBUG", "false")).lower() == "false", name
        assert environment.get("WATCHKEEPER_EMBEDDED", "false") == "false", name
        if name != "init":
            # "web": the name Prometheus scrapes it by inside the compose network.
            assert environment["ALLOWED_HOSTS"] == "localhost,127.0.0.1,web", name


def test_init_secrets_makes_each_secret_once_and_keeps_it(tmp_path):
    secrets_dir = tmp_path / "secrets"
    env = {**os.environ, "SECRETS_DIR": str(secrets_dir), "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}

    first = subprocess.run(["bash", str(ENTRYPOINT), "init-secrets"], env=env, capture_output=True, text=True, check=True)
    made = {path.name: path.read_text().strip() for path in secrets_dir.iterdir()}
    again = subprocess.run(["bash", str(ENTRYPOINT), "init-secrets"], env=env, capture_output=True, text=True, check=True)

    assert set(made) == {"secret_key", "postgres_password", "app_db_password", "signing_key.pem", "metrics_token",
                         "grafana_admin_password"}
    assert all(len(value) >= 64 for value in made.values()) and len(set(made.values())) == 6
    assert made["signing_key.pem"].startswith("-----BEGIN PRIVATE KEY-----")  # Ed25519, PKCS8 (docs/serving.md)
    assert first.stdout.count("created") == 6 and again.stdout == ""
    assert {path.name: path.read_text().strip() for path in secrets_dir.iterdir()} == made
    for path in secrets_dir.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IROTH == 0 and mode & stat.S_IWOTH == 0, path.name  # not for other users
        if os.geteuid() == 0 and path.name == "signing_key.pem":  # the app's user alone: the database needs none
            assert (path.stat().st_uid, mode) == (1000, 0o400), path.name
        elif os.geteuid() == 0 and path.name == "metrics_token":  # the app's user and Prometheus's (nobody)
            assert (path.stat().st_uid, path.stat().st_gid, mode) == (1000, 65534, 0o440), path.name
        elif os.geteuid() == 0 and path.name == "grafana_admin_password":  # Grafana's user is in group 0
            assert (path.stat().st_uid, path.stat().st_gid, mode) == (1000, 0, 0o440), path.name
        elif os.geteuid() == 0:  # as compose runs it: for the app's user and the postgres image's group
            assert (path.stat().st_uid, path.stat().st_gid, mode) == (1000, 999, 0o440), path.name


def test_the_dockerfile_runs_as_an_unprivileged_user_and_has_every_role():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()

    assert re.search(r"^USER watchkeeper$", dockerfile, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["docker/entrypoint.sh"]' in dockerfile
    assert os.access(ENTRYPOINT, os.X_OK)


def test_make_demo_is_the_one_place_that_sets_the_demo_passwords():
    # Everything that starts processes: the Makefile, docker/ and CI.
    launchers = [ROOT / "Makefile", *(ROOT / "docker").iterdir(), *(ROOT / ".ci").glob("*")]

    users = [path.relative_to(ROOT) for path in launchers if path.is_file() and "--demo-passwords" in path.read_text()]

    assert users == [Path("docker/demo.sh")]


PROMETHEUS = ROOT / "docker" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "docker" / "grafana"


def test_prometheus_scrapes_the_web_service_with_the_token_the_web_checks(compose):
    config = yaml.safe_load(PROMETHEUS.read_text())
    prometheus, web = compose["services"]["prometheus"], compose["services"]["web"]
    (job,) = config["scrape_configs"]

    # The config file compose mounts is this one.
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in _words(prometheus)
    # The target is the web service on the port its image binds (docker/Dockerfile: BIND=0.0.0.0:8000).
    assert job["metrics_path"] == "/metrics" and job["scheme"] == "http"
    (target,) = [t for group in job["static_configs"] for t in group["targets"]]
    host, port = target.split(":")
    assert host in compose["services"] and _words(compose["services"][host]) == ["web"]
    assert "BIND=0.0.0.0:" + port in (ROOT / "docker" / "Dockerfile").read_text()
    assert host in web["environment"]["ALLOWED_HOSTS"].split(",")
    # The same token: the file Prometheus sends is the one the web compares against, made by init.
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"] == web["environment"]["METRICS_TOKEN_FILE"] == "/secrets/metrics_token"
    assert "secrets:/secrets:ro" in prometheus["volumes"]
    assert prometheus["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    assert "metrics_token" in ENTRYPOINT.read_text().split("init-secrets)", 1)[1].split(";;", 1)[0]


def test_every_role_writes_metrics_where_the_web_reads_them(compose):
    for name, service in _ours(compose).items():
        if name == "init":
            continue
        assert service["environment"]["METRICS_DIR"] == "/data/metrics", name
        assert "metrics:/data/metrics" in service["volumes"], name
        assert service["environment"]["LOG_FORMAT"] == "json", name
    assert "metrics" in compose["volumes"]
    assert "/data/metrics" in (ROOT / "docker" / "Dockerfile").read_text()  # made and owned by the app's user


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard_that_names_it(compose):
    grafana = compose["services"]["grafana"]
    (datasource,) = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())["datasources"]
    (provider,) = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "watchkeeper.yaml").read_text())["providers"]
    dashboard = json.loads((GRAFANA / "dashboards" / "watchkeeper.json").read_text())

    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    assert "127.0.0.1:9090:9090" in compose["services"]["prometheus"]["ports"]
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    uids |= {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel.get("targets", [])}
    assert uids == {datasource["uid"]}
    assert all(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    # No known password: Grafana's admin password is a file init makes.
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/secrets/grafana_admin_password"
    assert "grafana_admin_password" in ENTRYPOINT.read_text()


def test_web_runs_gunicorn_with_the_metrics_hook_and_without_its_raw_path_access_log():
    web = ENTRYPOINT.read_text().split("\n  web)", 1)[1].split(";;", 1)[0]
    conf = (ROOT / "docker" / "gunicorn.conf.py").read_text()

    assert "--config docker/gunicorn.conf.py" in web and "metrics_dir web" in web
    assert "--access-logfile" not in web
    assert "def child_exit(server, worker):" in conf and "mark_process_dead(worker.pid)" in conf


DEMO = ROOT / "docker" / "demo.sh"
# What `make demo` sets for its local stand-ins only (docker/demo_receivers.py on 127.0.0.1): compose has no mail
# catcher or webhook receiver, and a real deployment must not let webhooks reach private addresses.
DEMO_ONLY = {"ALERT_ALLOW_PRIVATE_URLS", "EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT"}


def _demo_exports() -> dict[str, str]:
    """The settings docker/demo.sh exports, with their `${VAR:-default}` defaults, as the demo runs them."""
    exports: dict[str, str] = {}
    for line in DEMO.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("export "):
            for word in shlex.split(line)[1:]:
                name, _, value = word.partition("=")
                # ${A:-${B:-x}} -> x: the value when nothing is set beforehand.
                while (match := re.search(r"\$\{[A-Z_]+:-([^${}]*)\}", value)) is not None:
                    value = value[: match.start()] + match.group(1) + value[match.end():]
                exports[name] = value
    return exports


def _demo_roles() -> set[str]:
    """The long-running roles `make demo` starts with Postgres and Redis (its "full" mode), besides migrate."""
    script = DEMO.read_text()
    full = script.split('if [ "$WATCHKEEPER_MODE" = full ]; then', 1)[1].split("else", 1)[0]
    before = script.split('if [ "$WATCHKEEPER_MODE" = full ]; then', 1)[0]
    return set(re.findall(r"^\s*start ([a-z-]+)$", before + full, flags=re.MULTILINE))


def test_compose_runs_the_roles_make_demo_runs_through_the_same_entrypoint(compose):
    long_running = {name: service for name, service in _ours(compose).items()
                    if name in _default_profile(compose) and service.get("restart") != "no"}

    assert {_words(service)[0] for service in long_running.values()} == _demo_roles() == {
        "web", "worker", "maintenance-worker", "beat"}
    # One command each, the role alone: queues, concurrency, gunicorn's settings are the entrypoint's, as in make demo.
    assert all(len(_words(service)) == 1 for service in long_running.values())
    # The steps before them, in the same order: migrate (and its grants, signing, static files), then the optional seed.
    assert _words(compose["services"]["migrate"]) == ["migrate"] and "docker/entrypoint.sh migrate" in DEMO.read_text()
    assert _words(compose["services"]["seed"]) == ["seed"]
    assert "make demo" in (ROOT / "Makefile").read_text() and "bash docker/demo.sh" in (ROOT / "Makefile").read_text()


def test_compose_sets_every_setting_make_demo_sets_except_its_local_receivers(compose):
    demo = _demo_exports()
    assert {"DEBUG", "MEDIA_ROOT", "SECRET_KEY_FILE", "METRICS_TOKEN_FILE", "SIGNING_KEY_FILE", "PUBLIC_URL"} <= set(demo)
    web_port = compose["services"]["web"]["ports"][0].split(":")[1]

    for name, service in _ours(compose).items():
        if name == "init":
            continue
        environment = {key: str(value) for key, value in service["environment"].items()}
        for key, value in demo.items():
            if key in DEMO_ONLY:
                assert key not in environment, (name, key)
                continue
            # A secret is read from a file in both, from the secrets volume here; a default may stand unset.
            assert key in environment or (key == "DEBUG" and value == "false"), (name, key)
            if key == "DEBUG":
                assert environment.get(key, "false") == value == "false", name
            elif key.endswith("_FILE"):
                assert environment[key].startswith("/secrets/"), (name, key)
            elif key == "PUBLIC_URL":
                # Links in notifications: the address the web is published on, as the demo's is.
                assert value == "http://127.0.0.1:8000" and environment[key] == f"http://127.0.0.1:{web_port}", name
            elif key == "MEDIA_ROOT":
                assert environment[key] == "/data/media" and "media:/data/media" in service["volumes"], name
