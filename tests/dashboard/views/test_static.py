"""Static files: Plotly and our CSS and JS, served locally under hashed names, compressed, cached for long."""

from __future__ import annotations

import gzip
import re

from django.templatetags.static import static

from dashboard.staticfinders import PACKAGE_DATA

# Django's ManifestStaticFilesStorage: name.<12 hex digits>.ext
HASHED = re.compile(r"\.[0-9a-f]{12}\.\w+$")
YEAR = 365 * 24 * 3600


def _max_age(response) -> int:
    match = re.search(r"max-age=(\d+)", response["Cache-Control"])
    assert match, response["Cache-Control"]
    return int(match.group(1))


def test_plotly_js_is_served_locally_from_the_installed_package(client):
    response = client.get(static("plotly/plotly.min.js"))

    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body == (PACKAGE_DATA / "plotly.min.js").read_bytes()


def test_plotly_has_a_hashed_name_a_long_immutable_lifetime_and_is_gzipped_when_accepted(client):
    url = static("plotly/plotly.min.js")
    assert HASHED.search(url), url

    response = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate, br")

    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert _max_age(response) >= YEAR and "immutable" in response["Cache-Control"]
    compressed = b"".join(response.streaming_content)
    assert len(compressed) < 0.4 * (PACKAGE_DATA / "plotly.min.js").stat().st_size
    assert gzip.decompress(compressed) == (PACKAGE_DATA / "plotly.min.js").read_bytes()


def test_a_client_that_does_not_accept_gzip_gets_the_plain_file(client):
    response = client.get(static("plotly/plotly.min.js"), HTTP_ACCEPT_ENCODING="identity")

    assert response.status_code == 200
    assert "Content-Encoding" not in response
    assert b"".join(response.streaming_content)[:2000].lower().count(b"plotly") > 0


def test_pages_name_their_static_files_by_hash(client, viewer, deployment):
    client.force_login(viewer)
    html = client.get(f"/d/{deployment.slug}/").content.decode()

    for name in ("css/app.css", "js/app.js", "js/timezone.js", "plotly/plotly.min.js", "img/favicon.svg"):
        url = static(name)
        assert HASHED.search(url) and url in html, name


def test_our_css_and_js_are_served(client):
    for name in ("css/app.css", "js/app.js", "js/timezone.js"):
        response = client.get(static(name))
        assert response.status_code == 200, name
        assert _max_age(response) >= YEAR, name


def test_the_favicon_is_at_favicon_ico(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 302
    assert response["Location"] == static("img/favicon.svg")
    icon = client.get(response["Location"])
    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content)
