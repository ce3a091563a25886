"""A private Watchkeeper stack for the faults suite: its own Postgres cluster and redis-server on free ports, the
app under gunicorn and real Celery worker and beat processes, all started, stopped and restarted by the tests.

Private because the tests stop and restart these services: the shared Postgres (5432) and Redis (6379) serve
the other test sessions and CI, and are never touched here. The test process itself stays on pytest-django's
database; it reaches the private one over SQL (`Stack.sql`) and through `manage.py` run against it (`Stack.manage`).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kombu.exceptions
import psycopg2
import redis.exceptions
import urllib3

ROOT = Path(__file__).resolve().parent.parent.parent
DATABASE = "watchkeeper_faults"
# Room for the seeded models and datasets, and what the tests store there.
MEDIA_DISK_BYTES = 16 * 1024 * 1024
# Every batch's columns go to the media store, so ingestion exercises it (8 MB in production).
BATCH_COLUMNS_IN_MEDIA_FROM_BYTES = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, *, up: bool = True, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not come {'up' if up else 'down'} within {timeout} s")


def postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise FileNotFoundError(f"{name} not found (install postgresql)")
    return found


class PrivatePostgres:
    """initdb + pg_ctl into a temporary directory. initdb refuses to run as root, so as root the cluster belongs
    to the `postgres` system user (runuser), in a directory of its own outside pytest's root-only tmp tree."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="wk-faults-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        self._run(postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")

    def start(self) -> None:
        # fsync off: the cluster lives for one test session, and its durability is not what is under test.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """fast: open connections are cut and their transactions rolled back, as in a restart or failover."""
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = DATABASE) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.base = base
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.base / "redis.log", "a")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def stop(self) -> None:
        """Redis gone, and with it every queued message (no persistence, as with `--save ''` in production
        setups that treat the broker as disposable): what was queued must be found again by the sweeps."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        wait_port(self.port, up=False)

    def pause(self) -> None:
        """Redis hung (SIGSTOP): the kernel still accepts connections on its port, nothing answers. A client
        without a socket timeout waits for ever; a refused connection (stop) would fail at once."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Stack:
    """Postgres, Redis, the web app, workers and beat, with the environment they share."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.postgres = PrivatePostgres()
        self.redis = PrivateRedis(base)
        # MEDIA_ROOT: a small disk of its own where the machine allows a mount (tests/faults/test_disk_full.py
        # fills it), else a plain directory.
        self.media = base / "media"
        self.media.mkdir(exist_ok=True)
        self.media_is_tmpfs = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={MEDIA_DISK_BYTES}", "tmpfs", str(self.media)], capture_output=True
        ).returncode == 0
        self.web_port = free_port()
        self.hook_port = free_port()  # where the seeded webhook channel delivers (tests/faults/test_redis_down.py)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.seeded: dict[str, Any] = {}  # the deployments tests/faults/conftest.py made, by slug
        self.seeded_models: dict[str, int] = {}  # and those with a model: their ids

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": self.postgres.url(), "REDIS_URL": self.redis.url, "MEDIA_ROOT": str(self.media),
            "WATCHKEEPER_EMBEDDED": "false", "TASKS_IN_PROCESS": "false", "DEBUG": "false",
            "SECRET_KEY": env.get("SECRET_KEY") or "faults-only", "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "ALERT_ALLOW_PRIVATE_URLS": "true", "ALERT_DELIVERY_LEASE_SECONDS": "5", "LOG_LEVEL": "INFO",
            "PYTHONPATH": f"{ROOT}:{ROOT / 'client'}",
            "BATCH_COLUMNS_IN_MEDIA_FROM_BYTES": str(BATCH_COLUMNS_IN_MEDIA_FROM_BYTES),
            # Beat's check sweeps (production: a minute) as often as its other sweeps, so the suite waits less.
            "CHECK_SWEEP_SECONDS": "15",
        })
        env.update(extra)
        return env

    # ------------------------------------------------------------ services

    def start_services(self) -> None:
        """Postgres and Redis, then the web app and a worker (each imports the app for tens of seconds on a busy
        machine, and needs no table until it is used) while the database migrates."""
        self.postgres.init()
        self.postgres.start()
        subprocess.run([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.postgres.port), "-U", "postgres",
                        DATABASE], check=True)
        self.redis.start()
        web = self.spawn_web("web", self.web_port)
        self.start_worker()
        self.manage("migrate", "--noinput", "-v0")
        self.wait_web("web", web, self.web_port)

    def manage(self, *args: str, **env: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(**env),
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def django(self, code: str, **env: str) -> Any:
        """Run Python against the private stack (Django set up), and return what it prints as JSON."""
        out = self.manage("shell", "-c", code, **env)
        return json.loads(out.strip().splitlines()[-1])

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg2.connect(self.postgres.url()) as connection, connection.cursor() as cursor:
            cursor.execute(query, params)
            rows = cursor.fetchall() if cursor.description else []
        connection.close()
        return rows

    def spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = open(self.base / f"{name}.log", "a")
        # Its own process group: a kill reaches the process and its children (gunicorn's and Celery's) at once.
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=self.env(**env), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def spawn_web(self, name: str, port: int, **env: str) -> subprocess.Popen[bytes]:
        # --preload: the app is imported once, before the workers fork, so the first request does not wait for it.
        return self.spawn(name, ["gunicorn", "dashboard.wsgi:application", "--bind", f"127.0.0.1:{port}", "--preload",
                                 "--workers", "2", "--worker-class", "gthread", "--threads", "8", "--timeout", "60",
                                 "--no-control-socket"], **env)

    def wait_web(self, name: str, process: subprocess.Popen[bytes], port: int) -> str:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log(name)[-3000:]}")
            try:
                if urllib3.request("GET", f"{url}/healthz", retries=False, timeout=2.0).status == 200:
                    return url
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{name} did not answer /healthz within 180 s:\n{self.log(name)[-3000:]}")

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_worker(self, name: str = "worker", queues: str = "default", **env: str) -> subprocess.Popen[bytes]:
        """Named `<name>@<host>`; ready once it answers a ping (`worker_ready`)."""
        return self.spawn(name, ["celery", "-A", "dashboard", "worker", "--loglevel=INFO", f"--queues={queues}",
                                 "-n", f"{name}@%h", "--concurrency=1", "--pool=prefork", "--without-gossip",
                                 "--without-mingle"], **env)

    def start_beat(self) -> subprocess.Popen[bytes]:
        return self.spawn("beat", ["celery", "-A", "dashboard", "beat", "--loglevel=INFO",
                                   f"--schedule={self.base / 'beat-schedule'}"])

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _celery(self):
        """A client of the private broker. Never the current app: the test process's own tasks (on_commit
        enqueues of later tests) would go to this broker, stopped at the end of the suite, and be lost."""
        from celery import Celery

        return Celery(broker=self.redis.url, set_as_current=False)

    def worker_ready(self, name: str = "worker", timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:  # a new client each time: one from before a Redis restart holds a dead connection
                if self._celery().control.ping(timeout=1.0, destination=[f"{name}@{os.uname().nodename}"]):
                    return
            except (OSError, redis.exceptions.RedisError, kombu.exceptions.OperationalError):
                time.sleep(0.5)
        raise TimeoutError(f"worker {name} did not answer a ping within {timeout} s:\n{self.log(name)[-3000:]}")

    def send_task(self, task: str, *args: int) -> None:
        """Queue workers.tasks.<task> on the private broker, as the app would."""
        self._celery().send_task(f"workers.tasks.{task}", args=list(args), queue="default", serializer="json")

    def destroy(self) -> None:
        for name in list(self.processes):  # nothing graceful to wait for at the end of the session
            self.stop_process(name, signal.SIGKILL)
        self.redis.stop()
        self.postgres.destroy()
        if self.media_is_tmpfs:
            subprocess.run(["umount", "-l", str(self.media)], check=False)
