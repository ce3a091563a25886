#!/usr/bin/env python3
"""Find (and if need be start) Postgres and Redis, then print shell exports for the Makefile.

    eval "$(python docker/services.py)"             # demo: falls back to embedded SQLite + in-process tasks
    eval "$(python docker/services.py --require)"   # tests: real Postgres and Redis, or fail

DATABASE_URL / REDIS_URL, when set, are used as given and never replaced by a fallback:
an operator who named a server wants that server. Messages go to stderr, exports to stdout.
Standard library only: it runs before the virtualenv has anything installed.

For the demo on the local Postgres, the app connects as APP_ROLE, which may only SELECT and INSERT on the audit
log, and the owner (MIGRATE_DATABASE_URL) migrates; `entrypoint.sh migrate` creates the role and its grants.
The tests connect as the owner: they create and drop their own databases.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

LOCAL_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/watchkeeper"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
APP_ROLE = "watchkeeper_app"


def say(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr)


def reachable(url: str, default_port: int, timeout: float = 1.0) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_reachable(url: str, port: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if reachable(url, port):
            return True
        time.sleep(0.5)
    return False


def start_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or not shutil.which("pg_ctlcluster"):
        say("no local Postgres cluster to start")
        return
    say(f"starting local Postgres {versions[-1]}")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)


def start_redis() -> None:
    if not shutil.which("redis-server"):
        say("no local redis-server to start")
        return
    say("starting local Redis")
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
         "--save", "", "--appendonly", "no"],
        check=False,
    )


def ensure_database(url: str) -> None:
    """Create the database named in a local Postgres URL if it does not exist yet."""
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    psql = shutil.which("psql")
    if not psql or not name:
        return
    base = ["psql", "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432), "-U", parsed.username or "postgres"]
    exists = subprocess.run(
        base + ["-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
        capture_output=True, text=True, check=False,
    )
    if exists.returncode == 0 and exists.stdout.strip() != "1":
        say(f"creating database {name}")
        # stdout is eval'd by the caller: psql's "CREATE DATABASE" must not reach it.
        subprocess.run(base + ["-d", "postgres", "-c", f'CREATE DATABASE "{name}"'], check=False,
                       stdout=subprocess.DEVNULL)


def as_role(url: str, role: str) -> str:
    """The same server and database, as another role (no password: the local cluster trusts 127.0.0.1)."""
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    return parsed._replace(netloc=f"{role}@{host}:{parsed.port or 5432}").geturl()


def resolve(require: bool) -> dict[str, str]:
    exports: dict[str, str] = {}
    database_url = os.environ.get("DATABASE_URL") or ""
    named_database = bool(database_url)
    redis_url = os.environ.get("REDIS_URL") or ""

    if database_url:
        if not wait_reachable(database_url, 5432, 10):
            sys.exit(f"[services] DATABASE_URL is set but {urlparse(database_url).hostname} does not answer")
        postgres = True
        if not require and urlparse(database_url).hostname in ("127.0.0.1", "localhost"):
            # A demo beside another (DATABASE_URL=.../wk_demo make demo) starts on a database of its own.
            ensure_database(database_url)
    else:
        database_url = LOCAL_DATABASE_URL
        if not reachable(database_url, 5432):
            start_postgres()
        postgres = wait_reachable(database_url, 5432, 20)
        if postgres:
            ensure_database(database_url)

    if redis_url:
        if not wait_reachable(redis_url, 6379, 10):
            sys.exit(f"[services] REDIS_URL is set but {urlparse(redis_url).hostname} does not answer")
        redis = True
    else:
        redis_url = LOCAL_REDIS_URL
        if not reachable(redis_url, 6379):
            start_redis()
        redis = wait_reachable(redis_url, 6379, 10)

    if require and not (postgres and redis):
        sys.exit("[services] the test suite needs real Postgres and Redis, and they could not be started")

    if postgres and not require and not named_database:
        exports["DATABASE_URL"] = as_role(database_url, APP_ROLE)
        exports["MIGRATE_DATABASE_URL"] = database_url
        exports["WATCHKEEPER_EMBEDDED"] = "false"
        say(f"database: Postgres at {urlparse(database_url).hostname}:{urlparse(database_url).port or 5432}, the app "
            f"as the role {APP_ROLE}, migrations as {urlparse(database_url).username}")
    elif postgres:
        exports["DATABASE_URL"] = database_url
        exports["WATCHKEEPER_EMBEDDED"] = "false"
        say(f"database: Postgres at {urlparse(database_url).hostname}:{urlparse(database_url).port or 5432}")
    else:
        exports["WATCHKEEPER_EMBEDDED"] = "true"
        say("database: Postgres is not reachable, so using the EMBEDDED SQLite database in var/ "
            "(demo only: tasks run in-process, no separate worker or beat)")
    if postgres and redis:
        exports["REDIS_URL"] = redis_url
        exports["TASKS_IN_PROCESS"] = "false"
        say(f"broker: Redis at {urlparse(redis_url).hostname}:{urlparse(redis_url).port or 6379}")
    elif postgres:
        exports["TASKS_IN_PROCESS"] = "true"
        say("broker: Redis is not reachable, so tasks run IN-PROCESS (no separate worker or beat)")
    exports["WATCHKEEPER_MODE"] = "full" if postgres and redis else "embedded"
    return exports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require", action="store_true", help="fail instead of falling back to embedded mode")
    args = parser.parse_args()
    for key, value in resolve(args.require).items():
        print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
