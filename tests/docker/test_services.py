"""docker/services.py prints shell exports that the Makefile evals: nothing else may reach its stdout."""

from __future__ import annotations

import importlib.util
import subprocess
import uuid

from tests.conftest import ROOT


def _services():
    spec = importlib.util.spec_from_file_location("services", ROOT / "docker" / "services.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _psql(sql: str) -> str:
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAc", sql],
        capture_output=True, text=True, check=True,
    )
    return done.stdout.strip()


def test_creating_a_missing_database_prints_nothing_to_stdout(capfd):
    name = f"wk_ensure_{uuid.uuid4().hex[:8]}"
    try:
        _services().ensure_database(f"postgres://postgres@127.0.0.1:5432/{name}")

        assert capfd.readouterr().out == ""
        assert _psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}"')


def _resolve(monkeypatch, *, require: bool, **env: str) -> dict[str, str]:
    for name in ("DATABASE_URL", "REDIS_URL", "MIGRATE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return _services().resolve(require)


def test_the_demo_runs_the_app_as_the_app_role_and_migrates_as_the_owner(monkeypatch):
    exports = _resolve(monkeypatch, require=False)

    assert exports["DATABASE_URL"] == "postgres://watchkeeper_app@127.0.0.1:5432/watchkeeper"
    assert exports["MIGRATE_DATABASE_URL"] == "postgres://postgres@127.0.0.1:5432/watchkeeper"


def test_the_tests_connect_as_the_owner_who_creates_their_databases(monkeypatch):
    exports = _resolve(monkeypatch, require=True)

    assert exports["DATABASE_URL"] == "postgres://postgres@127.0.0.1:5432/watchkeeper"
    assert "MIGRATE_DATABASE_URL" not in exports


def test_a_named_database_url_is_used_as_given(monkeypatch):
    exports = _resolve(monkeypatch, require=False, DATABASE_URL="postgres://someone@127.0.0.1:5432/elsewhere")

    assert exports["DATABASE_URL"] == "postgres://someone@127.0.0.1:5432/elsewhere"
    assert "MIGRATE_DATABASE_URL" not in exports


def test_a_named_local_database_that_does_not_exist_yet_is_created_for_the_demo(monkeypatch):
    name = f"wk_named_{uuid.uuid4().hex[:8]}"
    try:
        exports = _resolve(monkeypatch, require=False, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}")

        assert exports["DATABASE_URL"] == f"postgres://postgres@127.0.0.1:5432/{name}"
        assert _psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}"')


def test_the_tests_never_create_a_named_database(monkeypatch):
    name = f"wk_named_{uuid.uuid4().hex[:8]}"
    _resolve(monkeypatch, require=True, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{name}")

    assert _psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == ""
