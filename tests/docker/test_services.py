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
