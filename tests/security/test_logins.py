"""Logins: failed attempts are limited per username and per address (django-axes, counted in the real Redis),
passwords pass Django's four validators everywhere but `make demo`, and a user can change their own."""

from __future__ import annotations

import io

import pytest
import redis
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from dashboard.logins import client_ip
from monitoring.models import AuditEvent, Membership
from workers import demo

PASSWORD = "correct-horse-battery"  # the conftest users' password
ATTACKER, COLLEAGUE, ELSEWHERE = "203.0.113.7", "203.0.113.8", "198.51.100.20"  # documentation addresses


@pytest.fixture(autouse=True)
def login_counts():
    """The real Redis the cache uses, with no login counts before or after each test: a lockout left behind
    would refuse the next test's (or the browser tests') logins for the whole cool-off."""
    location = settings.CACHES["default"]["LOCATION"]
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    client = redis.Redis.from_url(location)

    def clear() -> None:
        # Only the cache's own keys: the database also holds the broker's queues (never FLUSHDB).
        for key in client.scan_iter(match=f"{settings.CACHES['default']['KEY_PREFIX']}:*"):
            client.delete(key)

    clear()
    yield client
    clear()


def _log_in(username: str, password: str, *, address: str = ATTACKER, **headers: str):
    client = Client(REMOTE_ADDR=address, **headers)
    response = client.post(reverse("login"), {"username": username, "password": password})
    return client, response


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def _nothing_written() -> None:
    """The cache handler keeps counts in Redis only: no axes row, and no audit event, per attempt."""
    assert AccessAttempt.objects.count() == 0 and AccessLog.objects.count() == 0
    assert AccessFailureLog.objects.count() == 0
    assert AuditEvent.objects.count() == 0


# ---------------------------------------------------------------- the limit


def test_a_user_whose_password_is_guessed_wrong_five_times_is_locked_out_with_a_429_saying_when_to_retry(
    db, approver, login_counts
):
    statuses = [_log_in("alice", f"guess-{n}")[1].status_code for n in range(settings.AXES_FAILURE_LIMIT)]

    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    # From the guessing address even the right password is refused ...
    client, response = _log_in("alice", PASSWORD)
    assert response.status_code == 429
    assert "Try again in 15 minutes" in response.content.decode()
    assert response["Retry-After"] == "900"
    assert not _logged_in(client)
    approver.refresh_from_db()
    assert approver.last_login is None
    # Counted in the real Redis, a key per (username, address) and per address.
    counts = [login_counts.get(key) for key in login_counts.scan_iter(match="wk-cache:*")]
    assert sorted(counts) == [b"6", b"6"]
    _nothing_written()


def test_a_guesser_cannot_lock_the_owner_out_from_her_own_address(db, approver, login_counts):
    for n in range(settings.AXES_FAILURE_LIMIT + 3):
        _log_in("alice", f"guess-{n}")

    client, response = _log_in("alice", PASSWORD, address=ELSEWHERE)

    assert response.status_code == 302 and _logged_in(client)


def test_an_address_that_sprays_guesses_over_many_usernames_is_locked_out_for_every_user(db, approver):
    for n in range(settings.AXES_FAILURE_LIMIT):
        _log_in(f"user{n}", "Winter2026!")

    client, response = _log_in("alice", PASSWORD)

    assert response.status_code == 429 and not _logged_in(client)
    # alice herself is not locked: from her own address she logs in.
    client, response = _log_in("alice", PASSWORD, address=COLLEAGUE)
    assert response.status_code == 302 and _logged_in(client)


def test_a_made_up_x_forwarded_for_does_not_dodge_the_address_limit(db, approver):
    for n in range(settings.AXES_FAILURE_LIMIT):
        _log_in(f"user{n}", "Winter2026!", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")

    client, response = _log_in("alice", PASSWORD, HTTP_X_FORWARDED_FOR="10.0.0.99")

    assert response.status_code == 429 and not _logged_in(client)


def test_a_locked_out_guess_costs_no_password_hash(db, approver, monkeypatch):
    for n in range(settings.AXES_FAILURE_LIMIT):
        _log_in("alice", f"guess-{n}")
    hashed = []
    real_verify = PBKDF2PasswordHasher.verify
    monkeypatch.setattr(PBKDF2PasswordHasher, "verify", lambda self, *a: hashed.append(1) or real_verify(self, *a))

    _, response = _log_in("alice", PASSWORD)

    assert response.status_code == 429
    assert hashed == []


def test_fewer_failures_than_the_limit_still_let_the_right_password_in(db, approver):
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        _log_in("alice", f"guess-{n}")

    client, response = _log_in("alice", PASSWORD)

    assert response.status_code == 302 and _logged_in(client)


def test_the_address_is_read_from_x_forwarded_for_only_as_far_as_our_proxies_go(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")

    assert client_ip(request) == "10.1.1.1"  # no proxy configured: the header is the client's own words
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.7"  # what our proxy appended, not what the client wrote before it
    settings.TRUSTED_PROXY_COUNT = 3
    assert client_ip(request) == "10.1.1.1"  # fewer entries than proxies: not through them, so the connection


# ---------------------------------------------------------------- password validators


@pytest.mark.parametrize(
    "password, message",
    [
        ("Ab1!xyz", "This password is too short. It must contain at least 8 characters."),
        ("password123", "This password is too common."),
        ("83920174659", "This password is entirely numeric."),
        ("bob-builder", "The password is too similar to the username."),
    ],
)
def test_create_user_refuses_a_password_each_validator_rejects(db, team, tmp_path, password, message):
    secret = tmp_path / "password"
    secret.write_text(password + "\n")

    with pytest.raises(CommandError) as refused:
        call_command("create_user", "bob-builder", "--team", team.name, "--role", "viewer",
                     "--password-file", str(secret), stdout=io.StringIO())

    assert message in str(refused.value)
    assert not User.objects.filter(username="bob-builder").exists()
    assert AuditEvent.objects.count() == 0


def test_create_user_prompts_twice_and_refuses_two_different_passwords(db, team, monkeypatch):
    answers = iter(["first-Passw0rd-here", "second-Passw0rd-here"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))

    with pytest.raises(CommandError, match=r"The two passwords differ; nothing was created."):
        call_command("create_user", "admin", "--team", team.name, "--role", "approver", "--prompt", stdout=io.StringIO())

    assert not User.objects.filter(username="admin").exists()
    assert AuditEvent.objects.count() == 0


def test_create_user_prompts_for_the_first_admins_password_and_prints_none(db, team, monkeypatch):
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "chosen-by-the-admin-7")
    out = io.StringIO()

    call_command("create_user", "admin", "--team", team.name, "--role", "approver", "--prompt", stdout=out)

    admin = User.objects.get(username="admin")
    assert admin.check_password("chosen-by-the-admin-7")
    assert Membership.objects.get(user=admin).role == "approver"
    assert "chosen-by-the-admin-7" not in out.getvalue() and "Password" not in out.getvalue()


def test_seed_demo_refuses_a_weak_password_unless_it_is_the_make_demo_flag(db):
    with pytest.raises(CommandError, match="The password is too weak: This password is too short"):
        call_command("seed_demo", "--password", "demo", stdout=io.StringIO())

    assert not User.objects.exists()
    assert AuditEvent.objects.count() == 0


def test_the_demo_users_get_random_passwords_and_keep_theirs_unless_make_demo_asks_for_demo(db):
    team = demo.services.team_get_or_create(name=demo.TEAM_NAME)
    logged: list[str] = []
    users = demo.users_ensure(team=team, password=None, log=logged.append)

    assert not any(user.check_password("demo") for user in users.values())
    assert len(logged) == 3 and all("(shown once)" in line for line in logged)
    users["viewer"].set_password("viewers-own-choice-1")
    users["viewer"].save()

    logged.clear()
    demo.users_ensure(team=team, password=None, log=logged.append)  # a second seed, as compose's `seed` would run
    assert User.objects.get(username="viewer").check_password("viewers-own-choice-1")
    assert logged == []

    demo.users_ensure(team=team, password=demo.DEMO_PASSWORD, check=False)  # `make demo` only
    assert User.objects.get(username="viewer").check_password("demo")


# ---------------------------------------------------------------- changing one's password


def test_the_header_links_to_the_password_change_page(client, viewer):
    client.force_login(viewer)

    page = client.get(reverse("overview")).content.decode()

    assert f'href="{reverse("password_change")}"' in page


def test_a_user_changes_their_password_and_stays_logged_in(client, viewer):
    client.force_login(viewer)

    response = client.post(reverse("password_change"), {
        "old_password": PASSWORD, "new_password1": "a-new-longer-secret-9", "new_password2": "a-new-longer-secret-9",
    })

    assert response.status_code == 302 and response["Location"] == reverse("password_change_done")
    viewer.refresh_from_db()
    assert viewer.check_password("a-new-longer-secret-9")
    assert client.get(reverse("overview")).status_code == 200


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("not-my-password", "a-new-longer-secret-9", "Your old password was entered incorrectly."),
        (PASSWORD, "password123", "This password is too common."),
        (PASSWORD, "vera", "This password is too short."),
    ],
)
def test_a_wrong_old_password_or_a_weak_new_one_changes_nothing(client, viewer, old, new, message):
    client.force_login(viewer)
    before = User.objects.get(pk=viewer.pk).password

    response = client.post(reverse("password_change"), {"old_password": old, "new_password1": new, "new_password2": new})

    assert response.status_code == 200
    assert message in response.content.decode()
    assert User.objects.get(pk=viewer.pk).password == before


def test_the_password_change_page_needs_a_login(client, db):
    response = client.get(reverse("password_change"))

    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_wrong_old_passwords_on_the_change_page_count_as_failed_logins(db, viewer, login_counts):
    client = Client(REMOTE_ADDR=ATTACKER)
    client.force_login(viewer)
    before = viewer.password
    statuses = []
    for n in range(settings.AXES_FAILURE_LIMIT + 1):
        response = client.post(reverse("password_change"), {
            "old_password": f"guess-{n}", "new_password1": "a-much-better-phrase-42", "new_password2": "a-much-better-phrase-42",
        })
        statuses.append(response.status_code)

    assert statuses[: settings.AXES_FAILURE_LIMIT - 1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    assert statuses[-1] == 429
    viewer.refresh_from_db()
    assert viewer.password == before
