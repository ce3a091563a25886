"""Static files: Plotly and our CSS and JS, served locally."""

from __future__ import annotations

from django.templatetags.static import static

# ---------------------------------------------------------------- charts, static files, empty states


def test_plotly_js_is_served_locally_from_the_installed_package(client):
    response = client.get(static("plotly/plotly.min.js"))

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert len(body) > 1_000_000
    assert b"plotly" in body[:2000].lower()


def test_our_css_and_js_are_served(client):
    assert client.get(static("css/app.css")).status_code == 200
    assert client.get(static("js/app.js")).status_code == 200
