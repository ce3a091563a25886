"""Settings for a TLS deployment, read from the environment, and the Content-Security-Policy every page gets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from monitoring import services
from monitoring.models import EvaluationRun
from tests.conftest import ROOT

PRINT_SETTINGS = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
from django.conf import settings
print(json.dumps({name: getattr(settings, name) for name in (
    "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")}))
"""
TLS_NAMES = ["SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_SSL_REDIRECT",
             "TRUST_X_FORWARDED_PROTO", "SECURE_COOKIES"]


def _settings_with(**env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in TLS_NAMES}
    return subprocess.run([sys.executable, "-c", PRINT_SETTINGS], cwd=ROOT, env=clean | env,
                          capture_output=True, text=True, timeout=60)


def test_tls_settings_are_off_by_default_for_plain_http_on_this_machine():
    done = _settings_with()

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "SECURE_HSTS_SECONDS": 0, "SECURE_HSTS_INCLUDE_SUBDOMAINS": False, "SECURE_HSTS_PRELOAD": False,
        "SECURE_SSL_REDIRECT": False, "SECURE_PROXY_SSL_HEADER": None, "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
    }


def test_a_tls_deployment_turns_each_one_on_from_the_environment():
    done = _settings_with(
        SECURE_HSTS_SECONDS="31536000", SECURE_HSTS_INCLUDE_SUBDOMAINS="true", SECURE_HSTS_PRELOAD="true",
        SECURE_SSL_REDIRECT="true", TRUST_X_FORWARDED_PROTO="true", SECURE_COOKIES="true",
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "SECURE_HSTS_SECONDS": 31536000, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True, "SECURE_HSTS_PRELOAD": True,
        "SECURE_SSL_REDIRECT": True, "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True,
    }


@pytest.mark.parametrize("name, value", [("SECURE_SSL_REDIRECT", "yes please"), ("SECURE_HSTS_SECONDS", "a year")])
def test_a_mistyped_tls_setting_stops_the_process_at_start(name, value):
    done = _settings_with(**{name: value})

    assert done.returncode != 0
    assert f"ConfigError: {name} must be" in done.stderr


def _tls(settings, *, proxy: bool = False) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if proxy else None


def test_with_tls_on_plain_http_is_redirected_and_https_answers_with_hsts(settings, db):
    _tls(settings)

    plain = Client().get("/login/")
    secure = Client().get("/login/", secure=True)

    assert plain.status_code == 301 and plain["Location"] == "https://testserver/login/"
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_health_probes_are_not_redirected(settings, db):
    _tls(settings)

    assert Client().get("/healthz").status_code != 301


def test_x_forwarded_proto_counts_only_when_the_proxy_is_trusted(settings, db):
    _tls(settings)
    assert Client().get("/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 301  # a client's claim

    _tls(settings, proxy=True)
    assert Client().get("/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200


# ---------------------------------------------------------------- Content-Security-Policy


class _Inline(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' for scripts would block."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names and names.get("type") != "application/json":
            self.found.append(f"inline <script> at line {self.getpos()[0]}")
        self.found += [f"{name}= on <{tag}>" for name in names if name.startswith("on")]
        self.found += [f"style= on <{tag}>" for name in names if name == "style"]
        if any((value or "").strip().lower().startswith("javascript:") for value in names.values()):
            self.found.append(f"javascript: URL on <{tag}>")


def _inline(html: str) -> list[str]:
    parser = _Inline()
    parser.feed(html)
    return parser.found


@pytest.fixture
def history(deployment, operator):
    """A few evaluations, so the deployment page draws its charts, and a candidate, so the compare page exists."""
    active = deployment.active_version()
    for days_ago in (3, 2, 1):
        run = EvaluationRun.objects.create(
            deployment=deployment, version=active, source=EvaluationRun.Source.EVALUATION_SET,
            dataset=deployment.evaluation_dataset, measured_at=timezone.now() - timedelta(days=days_ago),
        )
        services.evaluation_complete(run=run, metrics={"n_rows": 219, "accuracy": 0.95, "f1_macro": 0.94,
                                                       "roc_auc": 0.99, "latency_p95_ms": 0.1})
    from tests.conftest import trained_model

    services.version_register(deployment=deployment, data=trained_model(C=0.5)[0], by=operator)
    return deployment


def test_every_page_has_the_policy_and_no_inline_script_or_style(client, approver, history):
    client.force_login(approver)
    pages = ["/", "/alerts", "/d/tumour/", "/d/tumour/audit", "/d/tumour/versions/new", "/d/tumour/versions/2/compare",
             reverse("password_change")]

    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert _inline(response.content.decode()) == [], url
    assert 'data-chart="metrics"' in client.get("/d/tumour/").content.decode()  # the charts are on the page


def test_the_login_page_and_api_docs_have_the_policy_too(client, db):
    for url in ["/login/", "/api/v1/docs"]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self';")
        assert _inline(response.content.decode()) == [], url


def test_no_template_has_an_inline_script_or_style():
    for path in (ROOT / "templates").rglob("*.html"):
        found = _inline(path.read_text())
        if path.parent.name == "emails":
            # Mail clients drop <style> and external CSS, so HTML mail styles inline; the page CSP never serves it.
            found = [f for f in found if not f.startswith("style= ")]
        assert found == [], (path.relative_to(ROOT), found)


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
def test_a_browser_draws_the_charts_with_no_policy_violation(live_server, approver, history):
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM calls while Playwright's loop runs in this thread
    violations: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("console", lambda message: violations.append(message.text)
                if "Content Security Policy" in message.text else None)
        # A real login through the form: the limits of django-axes let a right password straight in.
        page.goto(f"{live_server.url}/login/")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "correct-horse-battery")
        page.click("main button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        for url in ["/d/tumour/", "/d/tumour/versions/2/compare", "/api/v1/docs"]:
            page.goto(f"{live_server.url}{url}")
            page.wait_for_load_state("networkidle")
        page.goto(f"{live_server.url}/d/tumour/")
        page.wait_for_selector("#chart-metrics .main-svg")  # plotly drew
        zone_cookie = [c for c in page.context.cookies() if c["name"] == "tz"]
        browser.close()

    assert violations == []
    assert zone_cookie  # timezone.js, no longer inline, still ran
