"""docker/compose.yaml, read as Docker Compose would read it (there is no Docker engine here to run it), and the
entrypoint roles it calls, run for real where they need no container."""

from __future__ import annotations

import os
import re
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

    assert published == {"web": ["127.0.0.1:8000:8000"]}


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
            assert environment["ALLOWED_HOSTS"] == "localhost,127.0.0.1", name


def test_init_secrets_makes_each_secret_once_and_keeps_it(tmp_path):
    secrets_dir = tmp_path / "secrets"
    env = {**os.environ, "SECRETS_DIR": str(secrets_dir), "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}

    first = subprocess.run(["bash", str(ENTRYPOINT), "init-secrets"], env=env, capture_output=True, text=True, check=True)
    made = {path.name: path.read_text().strip() for path in secrets_dir.iterdir()}
    again = subprocess.run(["bash", str(ENTRYPOINT), "init-secrets"], env=env, capture_output=True, text=True, check=True)

    assert set(made) == {"secret_key", "postgres_password", "app_db_password", "signing_key.pem"}
    assert all(len(value) >= 64 for value in made.values()) and len(set(made.values())) == 4
    assert made["signing_key.pem"].startswith("-----BEGIN PRIVATE KEY-----")  # Ed25519, PKCS8 (docs/serving.md)
    assert first.stdout.count("created") == 4 and again.stdout == ""
    assert {path.name: path.read_text().strip() for path in secrets_dir.iterdir()} == made
    for path in secrets_dir.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IROTH == 0 and mode & stat.S_IWOTH == 0, path.name  # not for other users
        if os.geteuid() == 0 and path.name == "signing_key.pem":  # the app's user alone: the database needs none
            assert (path.stat().st_uid, mode) == (1000, 0o400), path.name
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
