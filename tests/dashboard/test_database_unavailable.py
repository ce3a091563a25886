"""A database out of reach is a 503 with Retry-After, on pages and on the API, built without touching the database.
The real outage (Postgres stopped under a running gunicorn) is tests/faults/test_postgres_restart.py."""

from __future__ import annotations

import json

import pytest
from django.db import InterfaceError, OperationalError
from django.test import RequestFactory

from dashboard.middleware import DatabaseUnavailableMiddleware, server_error


def _middleware() -> DatabaseUnavailableMiddleware:
    return DatabaseUnavailableMiddleware(lambda request: None)  # process_exception never calls the next layer


@pytest.mark.parametrize("error", [OperationalError("could not connect to server"), InterfaceError("connection already closed")])
def test_a_page_whose_database_is_gone_is_a_plain_503_to_retry(error):
    response = _middleware().process_exception(RequestFactory().get("/deployments/"), error)

    assert response is not None and response.status_code == 503
    assert response["Retry-After"] == "5" and response["Content-Type"].startswith("text/html")
    assert b"Reload in 5 seconds" in response.content


def test_an_api_call_whose_database_is_gone_is_a_problem_503_to_retry():
    response = _middleware().process_exception(RequestFactory().post("/api/v1/deployments/x/predictions"),
                                               OperationalError("the database system is shutting down"))

    assert response is not None and response.status_code == 503
    assert response["Content-Type"] == "application/problem+json" and response["Retry-After"] == "5"
    body = json.loads(response.content)
    assert body["status"] == 503 and "nothing from this request was stored" in body["detail"]


def test_other_errors_are_left_to_django():
    assert _middleware().process_exception(RequestFactory().get("/"), ValueError("a bug")) is None


def test_the_500_handler_answers_503_for_a_database_error_raised_by_a_middleware_and_500_otherwise():
    request = RequestFactory().get("/")
    try:
        raise OperationalError("server closed the connection unexpectedly")
    except OperationalError:
        assert server_error(request).status_code == 503
    try:
        raise KeyError("a bug")
    except KeyError:
        assert server_error(request).status_code == 500
