"""Load held (issue 15): 20 concurrent clients of the watchkeeper client send predictions and labels for
--minutes while a few users browse the dashboard and real workers evaluate and check drift, all on 127.0.0.1.

Started as production starts them (docker/entrypoint.sh): gunicorn (gthread, WEB_WORKERS x WEB_THREADS), one
Celery worker on the default queue and beat, with evaluation and drift checks every minute (not every 60 / 30) so
a short run still has them competing with ingestion. Each client paces itself at --rate rows/s in predict calls of
--call-rows rows (with its own ids) and sends true labels for half its rows a few seconds later.

Reported: sustained rows/s stored (and offered), p95 server time of the ingest and label POSTs (gunicorn's own
request timer, access log %(D)s), p95 of the browsed pages (server time and as the browsing thread saw it), the
evaluations and drift checks the workers finished meanwhile, and rows counted back from Postgres: index rows,
distinct ids and rows in batch headers against the rows the clients predicted (0 lost, 0 duplicated), and labels
stored against labels sent. Baseline in the same run: /healthz under the same load (what any request costs then).

Always runs on its own database (BENCH_LOAD_DATABASE_URL, default wk_bench_load, created and migrated if missing),
Redis database (BENCH_LOAD_REDIS_URL, default db 10) and a temporary MEDIA_ROOT.

    PYTHONPATH=client .venv/bin/python bench/load.py [--minutes 10] [--clients 20] [--rate 100] [--browsers 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
os.environ["DATABASE_URL"] = os.environ.get("BENCH_LOAD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wk_bench_load")
os.environ["REDIS_URL"] = os.environ.get("BENCH_LOAD_REDIS_URL", "redis://127.0.0.1:6379/10")
os.environ.pop("CACHE_URL", None)
_tmp = Path(tempfile.mkdtemp(prefix="wk-bench-load-"))
os.environ["MEDIA_ROOT"] = str(_tmp / "media")
os.environ.setdefault("SIGNING_KEY_FILE", str(_tmp / "signing-key.pem"))
# Every minute, so a 2-minute run already has evaluations and drift checks competing with ingestion.
os.environ["EVALUATION_INTERVAL_MINUTES"] = "1"
os.environ["DRIFT_INTERVAL_MINUTES"] = "1"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "client"))

from docker.services import ensure_database

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
import django

django.setup()
ensure_database(os.environ["DATABASE_URL"])
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command

call_command("migrate", verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)  # the pages render with the manifest storage

from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from watchkeeper_client import Deployment as ClientDeployment
from watchkeeper_client.errors import Refused

from monitoring import services, signing
from monitoring.maintenance.export import estimator_to_onnx
from monitoring.models import Dataset, Deployment, DriftReport, EvaluationRun, Prediction, PredictionBatch

N_FEATURES = 20
signing.key_file_create(Path(os.environ["SIGNING_KEY_FILE"]))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _deployments(n: int, run: str, by: User) -> list[tuple[Deployment, str]]:
    """n deployments of one logistic regression, each with a reference and a labelled evaluation dataset."""
    X, y = make_classification(n_samples=6000, n_features=N_FEATURES, n_informative=8, random_state=0)
    y = y.astype(str)
    estimator = LogisticRegression(max_iter=500).fit(X[:3000].astype("float32"), y[:3000])
    model = estimator_to_onnx(estimator, feature_names=[f"f{i}" for i in range(N_FEATURES)], class_labels=["0", "1"])
    team = services.team_get_or_create(name=f"Bench load {run}")
    services.membership_set(team=team, user=by, role="viewer", by=None)
    made = []
    for i in range(n):
        deployment = services.deployment_create_from_model(team=team, name=f"load-{run}-{i}", data=model, by=by)
        services.dataset_register(deployment=deployment, kind=Dataset.Kind.REFERENCE, name="reference",
                                  X=X[3000:5000], y=y[3000:5000], by=by)
        services.dataset_register(deployment=deployment, kind=Dataset.Kind.EVALUATION, name="evaluation",
                                  X=X[5000:], y=y[5000:], by=by)
        _, token = services.token_create(deployment=deployment, name="load", by=by)
        made.append((Deployment.objects.get(pk=deployment.pk), token))
    return made


def _session_cookie(user: User) -> str:
    """A logged-in session for the browsing threads, as the login view would leave it."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    from django.conf import settings

    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def _start(role: str, env: dict, log: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["bash", "docker/entrypoint.sh", role, *args], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_for_web(port: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            # A response, not just a connection: gunicorn's master accepts before its workers have booted.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("gunicorn did not answer /healthz within 300 s")


class Client(threading.Thread):
    """One serving process: predicts `call_rows` rows at `rate` rows/s and sends labels for half of them."""

    def __init__(self, index: int, url: str, slug: str, token: str, *, rate: float, call_rows: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.index, self.rate, self.call_rows, self.stop = index, rate, call_rows, stop
        self.handle = ClientDeployment(url, token, slug, instance=f"load-{index}")
        self.predicted = 0
        self.labelled = 0
        self.label_errors: list[str] = []
        self.runner = None

    def run(self) -> None:
        rng = np.random.default_rng(self.index)
        self.runner = runner = self.handle.model(poll_wait=30)
        pending: list[tuple[float, dict]] = []
        interval = self.call_rows / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            X = rng.normal(size=(self.call_rows, N_FEATURES)).astype(np.float32)
            ids = [f"c{self.index}-{self.predicted + k}" for k in range(self.call_rows)]
            outcome = runner.predict(X, ids=ids)
            self.predicted += self.call_rows
            # The truth arrives later for half the rows.
            pending.append((time.monotonic() + 5, 0, {ids[k]: str(outcome.labels[k]) for k in range(0, self.call_rows, 2)}))
            while pending and pending[0][0] <= time.monotonic():
                self._send_labels(pending)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        runner.flush(timeout=60)
        while pending:
            time.sleep(max(0.0, pending[0][0] - time.monotonic()))
            self._send_labels(pending)

    def _send_labels(self, pending: list) -> None:
        _, attempt, labels = pending.pop(0)
        try:
            self.labelled += self.handle.labels(labels)["received"]
        except Refused as exc:
            # 422: some of these rows are still in the client's buffer or a retry (an unknown id refuses the
            # whole batch, storing nothing); the truth is sent again a little later, as a real labeller would.
            if exc.status == 422 and attempt < 20:
                pending.append((time.monotonic() + 3, attempt + 1, labels))
                pending.sort(key=lambda entry: entry[0])
            else:
                self.label_errors.append(repr(exc))
        except Exception as exc:  # reported, not fatal: the count back shows what was stored
            self.label_errors.append(repr(exc))


def _browse(port: int, cookie: str, paths: list[str], stop: threading.Event, seen: list[tuple[str, int, float]]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    k = 0
    while not stop.is_set():
        path = paths[k % len(paths)]
        k += 1
        start = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            seen.append((path, response.status, (time.perf_counter() - start) * 1000))
        except OSError as exc:  # counted as a failed view; the user reloads on a new connection
            seen.append((path, 0, (time.perf_counter() - start) * 1000))
            print(f"page {path}: {exc!r}", flush=True)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        time.sleep(1.0)  # a user reads the page before the next click


def _server_times(access_log: Path) -> list[tuple[str, str, str, float]]:
    rows = []
    for line in access_log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].isdigit():
            rows.append((parts[0], parts[1], parts[2], int(parts[3]) / 1000))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--deployments", type=int, default=4, help="the clients are spread over these")
    parser.add_argument("--rate", type=float, default=100.0, help="rows/s per client")
    parser.add_argument("--call-rows", type=int, default=50, help="rows per predict call")
    parser.add_argument("--browsers", type=int, default=3, help="threads browsing pages")
    args = parser.parse_args()

    run = time.strftime("%Y%m%d%H%M%S")
    user, _ = User.objects.get_or_create(username="bench-load")
    made = _deployments(args.deployments, run, user)
    cookie = _session_cookie(user)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    access_log = _tmp / "access.log"
    env = dict(os.environ, BIND=f"127.0.0.1:{port}", DEBUG="false", ALLOWED_HOSTS="127.0.0.1",
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    processes = [
        _start("web", env, _tmp / "web.log", "--access-logfile", str(access_log),
               "--access-logformat", "%(m)s %(U)s %(s)s %(D)s"),
        _start("worker", env, _tmp / "worker.log", "--hostname", f"bench-load-{run}@%h"),
        _start("beat", env, _tmp / "beat.log", "--schedule", str(_tmp / "beat-schedule")),
    ]
    stop = threading.Event()
    try:
        _wait_for_web(port)
        workers, threads = os.environ.get("WEB_WORKERS", "2"), os.environ.get("WEB_THREADS", "100")
        print(f"gunicorn gthread {workers} x {threads}, 1 Celery worker (concurrency "
              f"{os.environ.get('WORKER_CONCURRENCY', '2')}) + beat; {os.cpu_count()} cores shared with the clients")
        print(f"{args.clients} clients over {args.deployments} deployments, {args.rate:.0f} rows/s each in calls of "
              f"{args.call_rows}; {args.browsers} users browsing; {args.minutes:g} minutes")
        clients = [Client(i, url, made[i % len(made)][0].slug, made[i % len(made)][1], rate=args.rate,
                          call_rows=args.call_rows, stop=stop) for i in range(args.clients)]
        slugs = [d.slug for d, _ in made]
        pages = ["/", "/alerts"] + [f"/d/{s}/" for s in slugs]
        seen: list[tuple[str, int, float]] = []
        browsers = [threading.Thread(target=_browse, args=(port, cookie, pages[i:] + pages[:i], stop, seen), daemon=True)
                    for i in range(args.browsers)]
        started = time.monotonic()
        for thread in clients + browsers:
            thread.start()
        health = []
        while time.monotonic() - started < args.minutes * 60:
            probe = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            health.append((time.perf_counter() - probe) * 1000)
            time.sleep(1.0)
        stop.set()
        offered_s = time.monotonic() - started
        for thread in browsers:
            thread.join(timeout=60)
        for client in clients:
            client.join(timeout=120)
        drained_s = time.monotonic() - started
        for client in clients:
            if client.runner is not None:
                client.runner.close(timeout=60)

        predicted = sum(c.predicted for c in clients)
        deployment_ids = [d.pk for d, _ in made]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            # Batches not indexed in their request are indexed by the beat task every 15 s.
            if Prediction.objects.filter(deployment_id__in=deployment_ids).count() >= predicted:
                break
            time.sleep(2)
        time.sleep(3)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*), count(DISTINCT (deployment_id, request_id)), count(label_index) "
                           "FROM monitoring_prediction WHERE deployment_id = ANY(%s)", [deployment_ids])
            index_rows, distinct, labelled_rows = cursor.fetchone()
        in_batches = sum(PredictionBatch.objects.filter(deployment_id__in=deployment_ids).values_list("n_rows", flat=True))
        stats = [c.runner.stats for c in clients if c.runner is not None and c.runner.stats is not None]
        dropped = sum(s.dropped_rows for s in stats)
        rejected = sum(s.rejected_rows for s in stats)
        retries = sum(s.retries for s in stats)
        labels_sent = sum(c.labelled for c in clients)
        label_errors = [e for c in clients for e in c.label_errors]
        evaluations = EvaluationRun.objects.filter(deployment_id__in=deployment_ids).count()
        drift_checks = DriftReport.objects.filter(deployment_id__in=deployment_ids).count()

        times = _server_times(access_log)
        ingest = [t for m, u, s, t in times if m == "POST" and u.endswith("/predictions") and s in ("200", "201", "202")]
        label_posts = [t for m, u, s, t in times if m == "POST" and u.endswith("/labels") and s == "200"]
        page_server = [t for m, u, s, t in times if m == "GET" and (u in ("/", "/alerts") or u.startswith("/d/")) and s == "200"]
        healthz_server = [t for m, u, s, t in times if m == "GET" and u == "/healthz" and s == "200"]
        failed = [(m, u, s) for m, u, s, _ in times if s.startswith("5")]
        page_seen = [ms for _, status, ms in seen if status == 200]
        bad_pages = [(p, status) for p, status, _ in seen if status != 200]

        print(f"rows: {predicted:,} predicted in {offered_s:.0f} s = {predicted / offered_s:,.0f} rows/s offered; "
              f"{in_batches:,} stored = {in_batches / drained_s:,.0f} rows/s sustained (until the last was stored)")
        print(f"ingest POST /predictions: {len(ingest):,} batches, server time p50 {_median(ingest):.1f} ms, "
              f"p95 {_pct(ingest, 0.95):.1f} ms, max {max(ingest, default=float('nan')):.0f} ms; client retries {retries}")
        print(f"labels POST /labels: {len(label_posts):,} requests, server time p95 {_pct(label_posts, 0.95):.1f} ms; "
              f"{labels_sent:,} labels received, {labelled_rows:,} rows labelled in Postgres; errors {len(label_errors)}"
              + (f" e.g. {label_errors[0]}" if label_errors else ""))
        print(f"pages ({len(page_seen):,} views of {len(pages)} pages by {args.browsers} users): server time "
              f"p50 {_median(page_server):.0f} ms, p95 {_pct(page_server, 0.95):.0f} ms; as seen "
              f"p95 {_pct(page_seen, 0.95):.0f} ms; non-200 {len(bad_pages)}"
              + (f" e.g. {bad_pages[0]}" if bad_pages else ""))
        print(f"baseline /healthz under the same load: server time p95 {_pct(healthz_server, 0.95):.1f} ms, "
              f"as seen p95 {_pct(health, 0.95):.1f} ms")
        print(f"workers meanwhile: {evaluations} evaluations, {drift_checks} drift reports; 5xx responses {len(failed)}")
        lost = predicted - distinct
        duplicated = (index_rows - distinct) + max(in_batches - predicted, 0)
        print(f"counted back: {index_rows:,} index rows, {distinct:,} distinct ids, {in_batches:,} rows in batch headers "
              f"for {predicted:,} predicted -> lost {lost}, duplicated {duplicated}; client-side dropped {dropped}, "
              f"rejected {rejected}; labels sent {labels_sent:,} vs stored {labelled_rows:,}")
        if lost or duplicated or dropped or rejected or labelled_rows != labels_sent:
            raise SystemExit("rows or labels were lost or duplicated")
    finally:
        stop.set()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
